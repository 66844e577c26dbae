//! The calls and events a serving thread read in one go, to run one after another.
//!
//! The frames of calls and events that lie whole in the read buffer are copied out
//! together, in one copy, and stay where they were copied: each runs from those bytes,
//! its handler decoding the arguments in place, with no message of its own. Anything the
//! reader decoded on its own (a large frame, one that arrived in pieces) joins the batch
//! as a message.
//!
//! A batch is filled only once all of it has run, and only by the serving loop, which
//! then holds it alone (`Rc::get_mut`); while entries run, it is shared and only read, so
//! the bytes a running handler decodes from cannot change under it.

use std::cell::Cell;
use std::time::Instant;

use super::credit;
use super::token::Queued;
use crate::wire::frame::HEADER_LEN;
use crate::wire::{Request, run};

/// A batch's bytes above this capacity are let go once it has run, so that one burst of
/// large frames does not stay in memory.
const KEEP_BYTES: usize = 64 * 1024;

/// One call or event of a batch.
enum BatchItem {
    /// In the batch's bytes, with what it costs the peer's window until it runs.
    InPlace { request: Request, cost: u64 },
    /// Decoded on its own; taken when it runs (boxed: rare, and large beside an in-place
    /// entry).
    Queued(Cell<Option<Box<Queued>>>),
}

impl std::fmt::Debug for BatchItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InPlace { request, cost } => f
                .debug_struct("InPlace")
                .field("request", request)
                .field("cost", cost)
                .finish(),
            Self::Queued(_) => f.write_str("Queued"),
        }
    }
}

/// The next call or event of a batch.
#[derive(Debug)]
pub(crate) enum Batched<'a> {
    /// In the batch's bytes: where its parts lie, and what it costs the peer's window.
    InPlace { request: &'a Request, cost: u64 },
    /// Decoded on its own.
    Queued(Box<Queued>),
}

/// What [`Batch::take_in_place`] took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Bytes of the buffer.
    pub(crate) used: usize,
    /// What the calls and events cost the peer's window.
    pub(crate) cost: u64,
    /// What the last frame of them cost.
    pub(crate) last: u64,
}

/// Calls and events read together, run one after another in arrival order.
///
/// It is filled while nothing runs, then only read: the serving loop and, while a handler
/// waits for a reply, that wait run its entries in turn, sharing the batch (behind an
/// `Rc`) and its cursor, so that nothing runs twice and no entry is copied out.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The copied frames that in-place entries lie in.
    bytes: Vec<u8>,
    entries: Vec<BatchItem>,
    /// The next entry to run.
    next: Cell<usize>,
    /// When its calls arrived (read once per batch, where a call's deadline counts from
    /// its arrival).
    arrived: Option<Instant>,
}

impl Batch {
    /// How many calls and events wait.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.next.get()
    }

    /// Whether none waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets what has run, letting large bytes go: the batch is ready to be filled.
    #[inline]
    fn reset_if_done(&mut self) {
        if self.is_empty() && !self.entries.is_empty() {
            self.entries.clear();
            self.next.set(0);
            self.arrived = None;
            self.bytes.clear();
            if self.bytes.capacity() > KEEP_BYTES {
                self.bytes = Vec::new();
            }
        }
    }

    /// Adds a call or event decoded on its own.
    pub(crate) fn push(&mut self, queued: Queued) {
        self.reset_if_done();
        self.entries
            .push(BatchItem::Queued(Cell::new(Some(Box::new(queued)))));
    }

    /// Takes the whole call and event frames at the start of `buffered` until the batch
    /// holds `limit` (a run of events joins whole, one entry per event), copying them
    /// into the batch; returns how many bytes of `buffered` they took and what they cost
    /// (nothing: the first frame is something else, or not whole, or over `max_frame`:
    /// the general path reads it).
    pub(crate) fn take_in_place(&mut self, buffered: &[u8], max_frame: u32, limit: usize) -> Taken {
        self.reset_if_done();
        let base = self.bytes.len();
        let mut at = 0;
        let mut cost = 0;
        let mut last = 0;
        let mut deadlines = false;
        while self.len() < limit {
            let Some((len, rest)) = buffered
                .get(at..)
                .and_then(<[u8]>::split_first_chunk::<HEADER_LEN>)
            else {
                break;
            };
            let len = u32::from_le_bytes(*len);
            if len > max_frame {
                break;
            }
            let Some(payload) = rest.get(..len as usize) else {
                break;
            };
            let payload_at = base + at + HEADER_LEN;
            let before = self.entries.len();
            if let Some(request) = Request::decode(payload, payload_at) {
                deadlines |= request.call.is_some_and(|(_, deadline)| deadline != 0);
                self.entries.push(BatchItem::InPlace { request, cost: 0 });
            } else if !run::push_requests(payload, payload_at, &mut self.entries, |request| {
                BatchItem::InPlace { request, cost: 0 }
            }) {
                break;
            }
            let frame_cost = credit::cost(payload.len(), self.entries.len() - before);
            share_cost(&mut self.entries[before..], frame_cost);
            cost += frame_cost;
            last = frame_cost;
            at += HEADER_LEN + payload.len();
        }
        self.bytes.extend_from_slice(&buffered[..at]);
        if deadlines && self.arrived.is_none() {
            self.arrived = Some(Instant::now());
        }
        Taken {
            used: at,
            cost,
            last,
        }
    }

    /// The next call or event (moving the cursor past it), and whether it was the last.
    #[inline]
    pub(crate) fn next(&self) -> Option<(Batched<'_>, bool)> {
        let at = self.next.get();
        let entry = self.entries.get(at)?;
        self.next.set(at + 1);
        let last = at + 1 == self.entries.len();
        let next = match entry {
            BatchItem::InPlace { request, cost } => Batched::InPlace {
                request,
                cost: *cost,
            },
            // Taken once: the cursor has moved past it.
            BatchItem::Queued(queued) => Batched::Queued(queued.take()?),
        };
        Some((next, last))
    }

    /// When the batch's calls arrived (now, if it did not need to know).
    pub(crate) fn arrived(&self) -> Instant {
        self.arrived.unwrap_or_else(Instant::now)
    }

    /// The bytes in-place entries lie in.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Shares a frame's cost among the in-place entries it made (a run makes several).
fn share_cost(entries: &mut [BatchItem], cost: u64) {
    let n = entries.len() as u64;
    let mut left = cost;
    for (i, entry) in entries.iter_mut().enumerate() {
        if let BatchItem::InPlace { cost: share, .. } = entry {
            *share = if i as u64 + 1 == n { left } else { cost / n };
            left -= *share;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use crate::wire::message::{self, CallHead};

    fn frames() -> Vec<u8> {
        let mut buf = Vec::new();
        let head = CallHead {
            id: 4,
            name: "add",
            deadline: 0,
        };
        message::encode_call(&mut buf, head, &(1u8, 2u8), u32::MAX).unwrap();
        message::encode_event(&mut buf, "tick", &7u64, u32::MAX).unwrap();
        message::encode_cancel(&mut buf, 4);
        buf
    }

    /// The length of the first frame of `buf`, prefix included.
    fn first_frame_len(buf: &[u8]) -> usize {
        HEADER_LEN + u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize
    }

    #[test]
    fn takes_calls_and_events_up_to_anything_else() {
        let buf = frames();
        let mut batch = Batch::default();
        let taken = batch.take_in_place(&buf, u32::MAX, 64);
        assert_eq!(batch.len(), 2);
        // The cancel is left for the general path.
        assert_eq!(&buf[taken.used..], {
            let mut cancel = Vec::new();
            message::encode_cancel(&mut cancel, 4);
            cancel
        });
        // Each frame costs its bytes and one message's share.
        assert_eq!(
            taken.cost,
            taken.used as u64 + 2 * credit::PER_MESSAGE,
            "two frames of {} bytes",
            taken.used
        );
        let (
            Batched::InPlace {
                request: call,
                cost,
            },
            last,
        ) = batch.next().unwrap()
        else {
            panic!("not in place")
        };
        assert!(!last);
        assert_eq!(cost, first_frame_len(&buf) as u64 + credit::PER_MESSAGE);
        assert_eq!(call.call, Some((4, 0)));
        let mut args = call.args(batch.bytes());
        assert_eq!(args.name(), "add");
        assert_eq!(args.decode::<(u8, u8)>().unwrap(), (1, 2));
        let (Batched::InPlace { request: event, .. }, last) = batch.next().unwrap() else {
            panic!("not in place")
        };
        assert!(last && event.call.is_none());
        assert_eq!(event.args(batch.bytes()).decode::<u64>().unwrap(), 7);
        assert!(batch.next().is_none());
        assert!(batch.is_empty());
    }

    #[test]
    fn a_run_shares_its_cost_among_its_events() {
        let mut buf = Vec::new();
        let mut open = None;
        for i in 0..3u64 {
            run::encode_event(&mut buf, &mut open, "tick", &i, u32::MAX).unwrap();
        }
        let mut batch = Batch::default();
        let taken = batch.take_in_place(&buf, u32::MAX, 64);
        assert_eq!(taken.used, buf.len());
        assert_eq!(taken.cost, credit::cost(buf.len() - HEADER_LEN, 3));
        let mut shares = 0;
        while let Some((Batched::InPlace { cost, .. }, _)) = batch.next() {
            shares += cost;
        }
        assert_eq!(shares, taken.cost);
    }

    #[test]
    fn stops_at_the_limit_a_partial_frame_and_an_oversized_one() {
        let buf = frames();
        let mut batch = Batch::default();
        assert!(batch.take_in_place(&buf, u32::MAX, 1).used > 0);
        assert_eq!(batch.len(), 1);

        let mut batch = Batch::default();
        for cut in 0..HEADER_LEN + 10 {
            assert_eq!(
                batch.take_in_place(&buf[..cut], u32::MAX, 64),
                Taken::default()
            );
        }
        assert_eq!(batch.take_in_place(&buf, 8, 64), Taken::default());
        assert!(batch.is_empty());
    }

    #[test]
    fn messages_keep_their_place_and_a_batch_that_has_run_starts_afresh() {
        let buf = frames();
        let mut batch = Batch::default();
        let used = batch.take_in_place(&buf, u32::MAX, 64).used;
        batch.push(Queued {
            message: Message::Cancel { id: 9 },
            cost: 0,
            deadline: None,
        });
        batch.take_in_place(&buf[..used], u32::MAX, 64);
        assert_eq!(batch.len(), 5);
        let mut kinds = Vec::new();
        while let Some((next, _)) = batch.next() {
            kinds.push(matches!(next, Batched::InPlace { .. }));
        }
        assert_eq!(kinds, [true, true, false, true, true]);
        // Run through: the next fill starts from nothing.
        batch.take_in_place(&buf[..used], u32::MAX, 64);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.bytes().len(), used);
    }
}
