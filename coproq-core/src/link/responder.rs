//! Sending the one reply of one call.

use std::sync::Arc;

use serde::Serialize;

use super::map_run::RunReply;
use super::{Flush, Link};
use crate::wire::{OutcomeKind, message};

/// Sends the one reply of one call.
pub(crate) struct Responder {
    link: Arc<Link>,
    id: u64,
    /// Whether the reply may wait to share a write with the next ones.
    flush: Flush,
    /// For an item of a run of calls: the run's reply, and the item's place in it.
    item: Option<(Arc<RunReply>, usize)>,
}

impl Responder {
    #[inline]
    pub(crate) fn new(link: Arc<Link>, id: u64, flush: Flush) -> Self {
        Self {
            link,
            id,
            flush,
            item: None,
        }
    }

    /// The responder of item `index` of the run of calls `id`, whose reply goes into
    /// `run` (see `link::map_run`).
    pub(crate) fn for_item(link: Arc<Link>, id: u64, run: Arc<RunReply>, index: usize) -> Self {
        Self {
            link,
            id,
            flush: Flush::Soon,
            item: Some((run, index)),
        }
    }

    /// The link the reply goes out on.
    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// The id of the call it answers.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// This responder, writing its reply at once (for an answer that comes later, from
    /// anywhere, and must not wait to share a write).
    pub(crate) fn flush_now(self) -> Self {
        Self {
            flush: Flush::Now,
            ..self
        }
    }

    /// Replies with what a handler returned (a `Result` is unwrapped).
    #[inline]
    pub(crate) fn send<T: Serialize + ?Sized>(self, value: &T) {
        if self.item.is_none() {
            self.link.cancels.settle(self.id);
            if self.link.send_direct_reply(self.id, value) {
                return;
            }
        }
        self.send_encoded(|buf, id, max| message::encode_reply(buf, id, value, max));
    }

    /// Replies with the handler's error value `e`, whose text is `text`.
    pub(crate) fn send_error<E: Serialize + ?Sized>(self, e: &E, text: String) {
        self.send_encoded(|buf, id, max| message::encode_error_reply(buf, id, e, text, max));
    }

    /// Sends the reply that `encode` builds, or a failure saying why it could not.
    #[inline]
    fn send_encoded(
        self,
        encode: impl FnOnce(&mut Vec<u8>, u64, u32) -> Result<(), message::EncodeError>,
    ) {
        let id = self.id;
        if let Some((run, index)) = self.item {
            let max = self.link.writer.peer_max();
            return run.put(index, |buf| {
                let start = buf.len();
                if let Err(e) = encode(buf, id, max) {
                    buf.truncate(start);
                    message::encode_failure(buf, id, OutcomeKind::Failed, failed_reply(e));
                }
            });
        }
        self.link.cancels.settle(id);
        self.link.send_reply(self.flush, |buf, max| {
            let start = buf.len();
            if let Err(e) = encode(buf, id, max) {
                buf.truncate(start);
                message::encode_failure(buf, id, OutcomeKind::Failed, failed_reply(e));
            }
        });
    }

    /// Whether the caller cancelled this call (reading what has arrived first, if nobody
    /// else is reading).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.link.read_ahead();
        self.link.cancels.contains(self.id)
    }

    /// Replies with a failure.
    pub(crate) fn fail(self, kind: OutcomeKind, message: String) {
        let id = self.id;
        if let Some((run, index)) = self.item {
            return run.put(index, |buf| message::encode_failure(buf, id, kind, message));
        }
        self.link.cancels.settle(id);
        self.link.send_reply(self.flush, |buf, _| {
            message::encode_failure(buf, id, kind, message);
        });
    }
}

/// What a caller is told of a reply that could not be encoded.
fn failed_reply(e: message::EncodeError) -> String {
    let reason = match e {
        message::EncodeError::Value(reason) => reason.to_string(),
        message::EncodeError::TooLarge(e) => e.to_string(),
    };
    format!("reply could not be sent: {reason}")
}
