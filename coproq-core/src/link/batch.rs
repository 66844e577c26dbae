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

use crate::wire::frame::HEADER_LEN;
use crate::wire::{Message, Request, run};

/// A batch's bytes above this capacity are let go once it has run, so that one burst of
/// large frames does not stay in memory.
const KEEP_BYTES: usize = 64 * 1024;

/// One call or event of a batch.
enum Entry {
    /// In the batch's bytes.
    InPlace(Request),
    /// Decoded on its own; taken when it runs (boxed: rare, and large beside an in-place
    /// entry).
    Message(Cell<Option<Box<Message>>>),
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InPlace(request) => f.debug_tuple("InPlace").field(request).finish(),
            Self::Message(_) => f.write_str("Message"),
        }
    }
}

/// The next call or event of a batch.
#[derive(Debug)]
pub(crate) enum Batched<'a> {
    /// In the batch's bytes: where its parts lie.
    InPlace(&'a Request),
    /// Decoded on its own.
    Message(Box<Message>),
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
    entries: Vec<Entry>,
    /// The next entry to run.
    next: Cell<usize>,
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
            self.bytes.clear();
            if self.bytes.capacity() > KEEP_BYTES {
                self.bytes = Vec::new();
            }
        }
    }

    /// Adds a message decoded on its own.
    pub(crate) fn push(&mut self, message: Message) {
        self.reset_if_done();
        self.entries
            .push(Entry::Message(Cell::new(Some(Box::new(message)))));
    }

    /// Takes the whole call and event frames at the start of `buffered` until the batch
    /// holds `limit` (a run of events joins whole, one entry per event), copying them
    /// into the batch; returns how many bytes of `buffered`
    /// they took (0: the first frame is something else, or not whole, or over
    /// `max_frame`: the general path reads it).
    pub(crate) fn take_in_place(&mut self, buffered: &[u8], max_frame: u32, limit: usize) -> usize {
        self.reset_if_done();
        let base = self.bytes.len();
        let mut at = 0;
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
            if let Some(request) = Request::decode(payload, payload_at) {
                self.entries.push(Entry::InPlace(request));
            } else if !run::push_requests(payload, payload_at, &mut self.entries, Entry::InPlace) {
                break;
            }
            at += HEADER_LEN + payload.len();
        }
        self.bytes.extend_from_slice(&buffered[..at]);
        at
    }

    /// The next call or event (moving the cursor past it), and whether it was the last.
    pub(crate) fn next(&self) -> Option<(Batched<'_>, bool)> {
        let at = self.next.get();
        let entry = self.entries.get(at)?;
        self.next.set(at + 1);
        let last = at + 1 == self.entries.len();
        let next = match entry {
            Entry::InPlace(request) => Batched::InPlace(request),
            // Taken once: the cursor has moved past it.
            Entry::Message(message) => Batched::Message(message.take()?),
        };
        Some((next, last))
    }

    /// The bytes in-place entries lie in.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::{self, CallHead};

    fn frames() -> Vec<u8> {
        let mut buf = Vec::new();
        let head = CallHead {
            id: 4,
            name: "add",
            deadline: None,
        };
        message::encode_call(&mut buf, head, &(1u8, 2u8), u32::MAX).unwrap();
        message::encode_event(&mut buf, "tick", &7u64, u32::MAX).unwrap();
        message::encode_cancel(&mut buf, 4);
        buf
    }

    #[test]
    fn takes_calls_and_events_up_to_anything_else() {
        let buf = frames();
        let mut batch = Batch::default();
        let used = batch.take_in_place(&buf, u32::MAX, 64);
        assert_eq!(batch.len(), 2);
        // The cancel is left for the general path.
        assert_eq!(&buf[used..], {
            let mut cancel = Vec::new();
            message::encode_cancel(&mut cancel, 4);
            cancel
        });
        let (Batched::InPlace(call), last) = batch.next().unwrap() else {
            panic!("not in place")
        };
        assert!(!last);
        assert_eq!(call.call, Some((4, None)));
        let mut args = call.args(batch.bytes());
        assert_eq!(args.name(), "add");
        assert_eq!(args.decode::<(u8, u8)>().unwrap(), (1, 2));
        let (Batched::InPlace(event), last) = batch.next().unwrap() else {
            panic!("not in place")
        };
        assert!(last && event.call.is_none());
        assert_eq!(event.args(batch.bytes()).decode::<u64>().unwrap(), 7);
        assert!(batch.next().is_none());
        assert!(batch.is_empty());
    }

    #[test]
    fn stops_at_the_limit_a_partial_frame_and_an_oversized_one() {
        let buf = frames();
        let mut batch = Batch::default();
        assert!(batch.take_in_place(&buf, u32::MAX, 1) > 0);
        assert_eq!(batch.len(), 1);

        let mut batch = Batch::default();
        for cut in 0..HEADER_LEN + 10 {
            assert_eq!(batch.take_in_place(&buf[..cut], u32::MAX, 64), 0);
        }
        assert_eq!(batch.take_in_place(&buf, 8, 64), 0);
        assert!(batch.is_empty());
    }

    #[test]
    fn messages_keep_their_place_and_a_batch_that_has_run_starts_afresh() {
        let buf = frames();
        let mut batch = Batch::default();
        let used = batch.take_in_place(&buf, u32::MAX, 64);
        batch.push(Message::Cancel { id: 9 });
        batch.take_in_place(&buf[..used], u32::MAX, 64);
        assert_eq!(batch.len(), 5);
        let mut kinds = Vec::new();
        while let Some((next, _)) = batch.next() {
            kinds.push(matches!(next, Batched::InPlace(_)));
        }
        assert_eq!(kinds, [true, true, false, true, true]);
        // Run through: the next fill starts from nothing.
        batch.take_in_place(&buf[..used], u32::MAX, 64);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.bytes().len(), used);
    }
}
