//! Runs of events: consecutive events of one name and shape in one frame.
//!
//! A run is an event's header (another kind, same layout) followed by one or more items,
//! each a `u32` length and the bincode bytes of one event's value. A sender joins an event
//! to the run that ends its buffer when the name and the shape match, so a stream of
//! events costs each one its value rather than a header: fewer bytes to write, copy and
//! read, and one header to parse per run. A receiver takes a run's events in place, one
//! batch entry each, or (a run that must be read on its own) one message each; either way
//! every event is routed and run exactly as if it had come in a frame of its own.

use std::ops::Range;

use serde::Serialize;

use super::header::{self, Header};
use super::message::{Args, Body, EncodeError, Message, Request, header_prefix, seal};
use super::{WireError, codec, descriptors, frame};

/// The most events one run carries. A reader that cannot run a run's events where they
/// lie makes a message of each, and this bounds how many one frame makes; a longer run
/// is a protocol error.
pub(crate) const MAX_RUN_EVENTS: usize = 1024;

/// A run stops growing at about this many bytes (a new one starts), and only an event
/// whose frame is smaller than this starts one.
const MAX_RUN_BYTES: usize = 64 * 1024;

/// The run of events at the end of a sender's buffer, which the next event of the same
/// name and shape joins.
///
/// Only valid while the run's frame is the last thing in that buffer: whoever takes or
/// clears the buffer forgets the run.
#[derive(Debug, Clone)]
pub(crate) struct EventRun {
    /// Where the frame starts.
    start: usize,
    /// Where it ends (the buffer's length when the last event joined).
    end: usize,
    name: Range<usize>,
    shape: Range<usize>,
    events: usize,
}

impl EventRun {
    /// Where the run `run` starts and how many events it holds: a sender tells from it
    /// whether the event it just appended joined the run (same start, one more event).
    #[inline]
    pub(crate) fn stamp(run: Option<&Self>) -> Option<(usize, usize)> {
        run.map(|run| (run.start, run.events))
    }
}

/// Appends the event `name` with `args` to `buf`: joined to `run` if that is the last
/// frame in `buf` and its events have the same name and shape, otherwise as a frame of its
/// own, which (if small) starts a new run.
#[inline]
pub(crate) fn encode_event<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    run: &mut Option<EventRun>,
    name: &str,
    args: &T,
    max: u32,
) -> Result<(), EncodeError> {
    if let Some(open) = run.as_mut().filter(|open| {
        open.end == buf.len()
            && open.events < MAX_RUN_EVENTS
            && buf
                .get(open.name.clone())
                .is_some_and(|run_name| super::same_bytes(run_name, name.as_bytes()))
    }) && join_run(buf, open, args, max)?
    {
        return Ok(());
    }
    *run = None;
    let start = header_prefix(buf, &Header::Event { name, shape: &[] });
    let name_end = buf.len();
    codec::encode_shaped(args, buf)
        .map_err(EncodeError::Value)
        .and_then(|()| seal(buf, start, max))
        .inspect_err(|_| buf.truncate(start))?;
    // An event that brings descriptors travels in a frame of its own, announced by the
    // frame before it.
    if buf.len() - start < MAX_RUN_BYTES && descriptors::collected() == 0 {
        *run = start_run(buf, start, name_end - name.len()..name_end, max);
    }
    Ok(())
}

/// Appends `args` to `open`, the run that ends `buf`, if its shape is the run's and the
/// run has room; whether it did (if not, `buf` is as it was).
#[inline]
fn join_run<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    open: &mut EventRun,
    args: &T,
    max: u32,
) -> Result<bool, EncodeError> {
    let mark = buf.len();
    let held = descriptors::collected();
    // The item's length goes first; the shape is recorded after it to be compared, then
    // the value takes its place.
    buf.extend_from_slice(&[0; 4]);
    let body_at = buf.len();
    if let Err(e) = codec::record_shape(args, buf) {
        buf.truncate(mark);
        return Err(EncodeError::Value(e));
    }
    let same_shape = buf
        .get(open.shape.clone())
        .is_some_and(|shape| super::same_bytes(shape, &buf[body_at..]));
    buf.truncate(body_at);
    if !same_shape {
        buf.truncate(mark);
        return Ok(false);
    }
    if let Err(e) = codec::encode_value(args, buf) {
        buf.truncate(mark);
        return Err(EncodeError::Value(e));
    }
    if descriptors::collected() != held {
        // It brings descriptors: it goes in a frame of its own instead.
        descriptors::forget_after(held);
        buf.truncate(mark);
        return Ok(false);
    }
    let frame_len = buf.len() - open.start - frame::HEADER_LEN;
    let (Ok(body_len), Ok(frame_len32)) =
        (u32::try_from(buf.len() - body_at), u32::try_from(frame_len))
    else {
        buf.truncate(mark);
        return Ok(false);
    };
    if frame_len > MAX_RUN_BYTES || frame_len32 > max {
        buf.truncate(mark);
        return Ok(false);
    }
    buf[mark..body_at].copy_from_slice(&body_len.to_le_bytes());
    buf[open.start..open.start + frame::HEADER_LEN].copy_from_slice(&frame_len32.to_le_bytes());
    open.events += 1;
    open.end = buf.len();
    Ok(true)
}

/// Where the shape and the body of a value encoded with its shape at `at` lie.
pub(super) fn shaped_parts(buf: &[u8], at: usize) -> Option<(Range<usize>, usize)> {
    let len = u64::from_le_bytes(*buf.get(at..)?.first_chunk::<8>()?);
    let shape_end = (at + 8).checked_add(usize::try_from(len).ok()?)?;
    (shape_end <= buf.len()).then_some((at + 8..shape_end, shape_end))
}

/// Turns the event frame at `start`, the last in `buf`, into a run of that one event;
/// `None` (leaving the frame as it is) if the longer frame would exceed `max`.
fn start_run(buf: &mut Vec<u8>, start: usize, name: Range<usize>, max: u32) -> Option<EventRun> {
    let (shape, body_at) = shaped_parts(buf, name.end)?;
    let body_len = u32::try_from(buf.len() - body_at).ok()?;
    let frame_len = u32::try_from(buf.len() + 4 - start - frame::HEADER_LEN)
        .ok()
        .filter(|&len| len <= max)?;
    buf.extend_from_slice(&[0; 4]);
    buf.copy_within(body_at..body_at + body_len as usize, body_at + 4);
    buf[body_at..body_at + 4].copy_from_slice(&body_len.to_le_bytes());
    buf[start..start + frame::HEADER_LEN].copy_from_slice(&frame_len.to_le_bytes());
    header::make_run(&mut buf[start + frame::HEADER_LEN..]);
    Some(EventRun {
        start,
        end: buf.len(),
        name,
        shape,
        events: 1,
    })
}

/// Appends to `out`, made by `wrap`, the request of every event of the run whose payload
/// is `payload`, starting at `at` in a batch's bytes; false (leaving `out` as it was) if
/// `payload` is not a well-formed run.
pub(crate) fn push_requests<T>(
    payload: &[u8],
    at: usize,
    out: &mut Vec<T>,
    wrap: impl Fn(Request) -> T,
) -> bool {
    // Every part ends within the payload: if its end fits the offsets, all do.
    if u32::try_from(at + payload.len()).is_err() {
        return false;
    }
    let moved = |range: Range<usize>| at + range.start..at + range.end;
    let before = out.len();
    let mut fits = true;
    let whole = each_event(payload, |name, shape, value| {
        match Request::event_at(moved(name), moved(shape), moved(value)) {
            Some(request) => out.push(wrap(request)),
            None => fits = false,
        }
    });
    if !(whole && fits) {
        out.truncate(before);
    }
    whole && fits
}

/// Calls `each` with where the name, the shape and the value of every event of the run
/// whose payload is `payload` lie in it, in one pass that checks the items as it goes;
/// false if `payload` is not a well-formed run, with one to [`MAX_RUN_EVENTS`] items
/// that fill it exactly (`each` may have been called for the items before the fault).
fn each_event(
    payload: &[u8],
    mut each: impl FnMut(Range<usize>, Range<usize>, Range<usize>),
) -> bool {
    let Some(head) = header::decode_request(payload).filter(|head| head.run) else {
        return false;
    };
    let origin = payload.as_ptr() as usize;
    let range = |part: &[u8]| {
        let start = part.as_ptr() as usize - origin;
        start..start + part.len()
    };
    let (name, shape) = (range(head.name), range(head.shape));
    let mut items = RunItems {
        payload,
        at: head.body,
    };
    let mut count = 0;
    loop {
        match items.step() {
            NextItem::Item(value) if count < MAX_RUN_EVENTS => {
                count += 1;
                each(name.clone(), shape.clone(), value);
            }
            NextItem::End => return count > 0,
            NextItem::Item(_) | NextItem::Malformed => return false,
        }
    }
}

/// The items of a run, as ranges of its payload.
struct RunItems<'a> {
    payload: &'a [u8],
    at: usize,
}

enum NextItem {
    Item(Range<usize>),
    End,
    Malformed,
}

impl RunItems<'_> {
    fn step(&mut self) -> NextItem {
        if self.at == self.payload.len() {
            return NextItem::End;
        }
        let Some(len) = self
            .payload
            .get(self.at..)
            .and_then(<[u8]>::first_chunk::<4>)
        else {
            return NextItem::Malformed;
        };
        let start = self.at + 4;
        let end = start + u32::from_le_bytes(*len) as usize;
        if end > self.payload.len() {
            return NextItem::Malformed;
        }
        self.at = end;
        NextItem::Item(start..end)
    }
}

/// Whether `payload` is a run of events (which [`decode`] decodes, not
/// `message::decode_pooled`).
pub(crate) fn is_run(payload: &[u8]) -> bool {
    header::is_run(payload)
}

/// A run of events read on its own, kept whole as one message (checked item by item
/// first), its buffer going back to `pool` when done with.
pub(crate) fn decode(
    frame: frame::FrameBuf,
    pool: Option<&std::sync::Arc<frame::BufferPool>>,
) -> Result<Message, WireError> {
    let malformed = || WireError::Malformed("malformed message: a malformed run of events".into());
    let payload = frame.as_slice();
    let mut parts = None;
    let mut events = 0u32;
    let whole = each_event(payload, |name, shape, value| {
        events += 1;
        parts.get_or_insert((name, shape, value.start - 4));
    });
    let (name, shape, items) = parts.filter(|_| whole).ok_or_else(malformed)?;
    // Only heap buffers go back to the pool.
    let pool = pool
        .filter(|_| !matches!(&frame, frame::FrameBuf::Inline { .. }))
        .cloned();
    let body = Body::run(frame, pool, name, shape, items).ok_or_else(malformed)?;
    Ok(Message::Run { body, events })
}

/// The event of a run's body that starts at `at`, and where the next one starts; `None`
/// after the last (a checked run: see [`decode`]). A cursor over the run that whoever
/// runs its next event (the loop that started it, or a wait inside one of its listeners)
/// moves on; the first event starts at [`Body::first_run_event`].
pub(crate) fn event_at(body: &Body, at: usize) -> Option<(Args<'_>, usize)> {
    let mut items = RunItems {
        payload: body.payload(),
        at,
    };
    match items.step() {
        NextItem::Item(value) => Some((body.run_event(value), items.at)),
        NextItem::End | NextItem::Malformed => None,
    }
}

/// The events of a run's body, one after another.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn events(body: &Body) -> impl Iterator<Item = Args<'_>> {
    let mut at = body.first_run_event();
    std::iter::from_fn(move || {
        let (args, next) = event_at(body, at)?;
        at = next;
        Some(args)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::encode_event as encode_single;

    /// The frames in `buf`, as payloads.
    fn frames(buf: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            out.push(&buf[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        out
    }

    /// Every event of a run, decoded as `T` both ways a reader reads it: in place, and
    /// one message each; the two must agree.
    fn events<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        payload: &[u8],
    ) -> Vec<(String, T)> {
        let mut bytes = vec![0; 3];
        bytes.extend_from_slice(payload);
        let mut in_place = Vec::new();
        let mut requests = Vec::new();
        assert!(push_requests(payload, 3, &mut requests, |request| request));
        for request in requests {
            let mut args = request.args(&bytes);
            in_place.push((args.name().to_owned(), args.decode::<T>().unwrap()));
        }
        let Message::Run { body, events } = decode(payload.to_vec().into(), None).unwrap() else {
            panic!("not a run")
        };
        let messages: Vec<_> = super::events(&body)
            .map(|mut args| (args.name().to_owned(), args.decode::<T>().unwrap()))
            .collect();
        assert_eq!(messages.len(), events as usize);
        assert_eq!(in_place, messages);
        in_place
    }

    #[test]
    fn events_of_one_name_and_shape_join_one_frame_and_read_back_in_order() {
        let mut buf = Vec::new();
        let mut open = None;
        for i in 0..5u64 {
            encode_event(&mut buf, &mut open, "tick", &i, u32::MAX).unwrap();
        }
        let frames = frames(&buf);
        assert_eq!(frames.len(), 1);
        assert!(is_run(frames[0]));
        let ticks: Vec<(String, u64)> = events(frames[0]);
        assert_eq!(
            ticks,
            (0..5).map(|i| ("tick".to_owned(), i)).collect::<Vec<_>>()
        );
        // Each event costs its value and its length, not a header.
        let mut single = Vec::new();
        encode_single(&mut single, "tick", &0u64, u32::MAX).unwrap();
        assert_eq!(buf.len(), single.len() + 4 + 4 * (8 + 4));
    }

    #[test]
    fn another_name_shape_or_frame_between_starts_a_new_frame() {
        let mut buf = Vec::new();
        let mut open = None;
        let mut emit = |buf: &mut Vec<u8>, name: &str, value: &dyn erased::Value| {
            value.emit(buf, &mut open, name);
        };
        emit(&mut buf, "a", &1u64);
        emit(&mut buf, "a", &2u64);
        emit(&mut buf, "b", &3u64);
        emit(&mut buf, "b", &String::from("four"));
        emit(&mut buf, "b", &String::from("five"));
        // A frame of something else in between: the run is no longer last.
        crate::wire::message::encode_ping(&mut buf);
        emit(&mut buf, "b", &String::from("six"));
        let frames = frames(&buf);
        let runs: Vec<bool> = frames.iter().map(|f| is_run(f)).collect();
        assert_eq!(runs, [true, true, true, false, true]);
        assert_eq!(events::<u64>(frames[0]).len(), 2);
        assert_eq!(events::<u64>(frames[1]).len(), 1);
        let strings: Vec<(String, String)> = events(frames[2]);
        assert_eq!(strings[1], ("b".to_owned(), "five".to_owned()));
        assert_eq!(events::<String>(frames[4]).len(), 1);
    }

    /// Emitting values of different types through one closure.
    mod erased {
        pub(super) trait Value {
            fn emit(&self, buf: &mut Vec<u8>, open: &mut Option<super::EventRun>, name: &str);
        }
        impl<T: serde::Serialize> Value for T {
            fn emit(&self, buf: &mut Vec<u8>, open: &mut Option<super::EventRun>, name: &str) {
                super::encode_event(buf, open, name, self, u32::MAX).unwrap();
            }
        }
    }

    #[test]
    fn a_run_stops_at_its_limits_and_at_the_peers_frame_size() {
        let mut buf = Vec::new();
        let mut open = None;
        for i in 0..=(MAX_RUN_EVENTS as u64) {
            encode_event(&mut buf, &mut open, "t", &i, u32::MAX).unwrap();
        }
        let counts: Vec<usize> = frames(&buf)
            .iter()
            .map(|f| events::<u64>(f).len())
            .collect();
        assert_eq!(counts, [MAX_RUN_EVENTS, 1]);

        // A small peer limit: no frame ever exceeds it, and nothing is lost.
        let max = 60;
        let (mut buf, mut open) = (Vec::new(), None);
        for i in 0..10u64 {
            encode_event(&mut buf, &mut open, "t", &i, max).unwrap();
        }
        let small = frames(&buf);
        assert!(small.iter().all(|f| f.len() <= max as usize));
        let all: Vec<u64> = small
            .iter()
            .flat_map(|f| {
                if is_run(f) {
                    events::<u64>(f).into_iter().map(|(_, v)| v).collect()
                } else {
                    vec![]
                }
            })
            .collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());

        // A large event travels on its own, as a plain event frame.
        let (mut buf, mut open) = (Vec::new(), None);
        let big = crate::bytes::ByteBuf(vec![1u8; MAX_RUN_BYTES]);
        encode_event(&mut buf, &mut open, "big", &big, u32::MAX).unwrap();
        encode_event(&mut buf, &mut open, "big", &big, u32::MAX).unwrap();
        let frames = frames(&buf);
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|f| !is_run(f)));
    }

    #[test]
    fn a_value_that_fails_to_encode_leaves_the_buffer_and_the_run_as_they_were() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let mut buf = Vec::new();
        let mut open = None;
        encode_event(&mut buf, &mut open, "t", &1u64, u32::MAX).unwrap();
        let before = buf.clone();
        assert!(encode_event(&mut buf, &mut open, "t", &Refuses, u32::MAX).is_err());
        assert_eq!(buf, before);
        encode_event(&mut buf, &mut open, "t", &2u64, u32::MAX).unwrap();
        let frames = frames(&buf);
        assert_eq!(frames.len(), 1);
        assert_eq!(events::<u64>(frames[0]).len(), 2);
    }

    #[test]
    fn malformed_runs_are_refused_whole_never_a_panic() {
        let mut buf = Vec::new();
        let mut open = None;
        for i in 0..3u64 {
            encode_event(&mut buf, &mut open, "tick", &i, u32::MAX).unwrap();
        }
        let payload = frames(&buf)[0].to_vec();
        let refused = |payload: &[u8]| {
            // Whatever `out` held stays, and nothing is added.
            let mut out = vec![None];
            let taken = push_requests(payload, 0, &mut out, Some);
            !taken && out.len() == 1 && decode(payload.to_vec().into(), None).is_err()
        };
        // Cut anywhere but at an item's end.
        let item_ends = [payload.len() - 24, payload.len() - 12, payload.len()];
        for cut in 0..payload.len() {
            if item_ends.contains(&cut) {
                assert!(!refused(&payload[..cut]), "cut at {cut}");
            } else {
                assert!(refused(&payload[..cut]), "cut at {cut}");
            }
        }
        // An item longer than what follows it.
        let mut long = payload.clone();
        let last = payload.len() - 12;
        long[last..last + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(refused(&long));
        // More events than a run may carry.
        let mut many = payload[..payload.len() - 36].to_vec();
        for _ in 0..=MAX_RUN_EVENTS {
            many.extend_from_slice(&0u32.to_le_bytes());
        }
        assert!(refused(&many));
    }
}
