//! The calls and events a serving thread read in one go, to run one after another.
//!
//! The frames of calls and events that lie whole in the read buffer are copied out
//! together, in one copy, and stay where they were copied: each runs from those bytes,
//! its handler decoding the arguments in place, with no message of its own. Anything the
//! reader decoded on its own (a large frame, one that arrived in pieces) joins the batch
//! as a message.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::wire::frame::HEADER_LEN;
use crate::wire::{Message, Request};

/// A batch's bytes above this capacity are let go once it has run, so that one burst of
/// large frames does not stay in memory.
const KEEP_BYTES: usize = 64 * 1024;

/// One call or event of a batch.
#[derive(Debug)]
pub(crate) enum Batched {
    /// Decoded on its own (boxed: rare, and large beside an in-place entry).
    Message(Box<Message>),
    /// In the batch's bytes.
    InPlace(Request),
}

/// Calls and events read and not yet run, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The copied frames that `InPlace` entries lie in. Shared with the entry that runs,
    /// so that a handler waiting for a reply can run the rest of the batch meanwhile.
    bytes: Rc<Vec<u8>>,
    queue: VecDeque<Batched>,
}

impl Batch {
    /// How many calls and events wait.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Adds a message decoded on its own.
    pub(crate) fn push(&mut self, message: Message) {
        self.queue.push_back(Batched::Message(Box::new(message)));
    }

    /// Takes the whole call and event frames at the start of `buffered` until the batch
    /// holds `limit`, copying them into the batch; returns how many bytes of `buffered`
    /// they took (0: the first frame is something else, or not whole, or over
    /// `max_frame`: the general path reads it).
    pub(crate) fn take_in_place(&mut self, buffered: &[u8], max_frame: u32, limit: usize) -> usize {
        if self.queue.is_empty() {
            match Rc::get_mut(&mut self.bytes) {
                Some(bytes) if bytes.capacity() <= KEEP_BYTES => bytes.clear(),
                _ => self.bytes = Rc::default(),
            }
        }
        // Entries wait in the bytes, and a running one shares them: append only where
        // nothing else holds them (always, for the serving loop's own reads).
        let Some(bytes) = Rc::get_mut(&mut self.bytes) else {
            return 0;
        };
        let base = bytes.len();
        let mut at = 0;
        while self.queue.len() < limit {
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
            let Some(request) = Request::decode(payload, base + at + HEADER_LEN) else {
                break;
            };
            self.queue.push_back(Batched::InPlace(request));
            at += HEADER_LEN + payload.len();
        }
        bytes.extend_from_slice(&buffered[..at]);
        at
    }

    /// The next call or event, the bytes an in-place one lies in, and whether it was the
    /// last.
    pub(crate) fn pop(&mut self) -> Option<(Batched, Rc<Vec<u8>>, bool)> {
        let next = self.queue.pop_front()?;
        Some((next, Rc::clone(&self.bytes), self.queue.is_empty()))
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
        let (Batched::InPlace(call), bytes, last) = batch.pop().unwrap() else {
            panic!("not in place")
        };
        assert!(!last);
        assert_eq!(call.call, Some((4, None)));
        let mut args = call.args(&bytes);
        assert_eq!(args.name(), "add");
        assert_eq!(args.decode::<(u8, u8)>().unwrap(), (1, 2));
        let (Batched::InPlace(event), bytes, last) = batch.pop().unwrap() else {
            panic!("not in place")
        };
        assert!(last && event.call.is_none());
        assert_eq!(event.args(&bytes).decode::<u64>().unwrap(), 7);
        assert!(batch.pop().is_none());
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
    fn a_running_entry_keeps_its_bytes_while_the_rest_runs() {
        let buf = frames();
        let mut batch = Batch::default();
        batch.take_in_place(&buf, u32::MAX, 64);
        let (Batched::InPlace(call), held, _) = batch.pop().unwrap() else {
            panic!("not in place")
        };
        // A nested read while `held` is out cannot append to the shared bytes.
        assert_eq!(batch.take_in_place(&buf, u32::MAX, 64), 0);
        batch.pop().unwrap();
        // Once the batch has run, new bytes replace the held ones, which stay intact.
        assert!(batch.take_in_place(&buf, u32::MAX, 64) > 0);
        assert_eq!(call.args(&held).decode::<(u8, u8)>().unwrap(), (1, 2));
    }
}
