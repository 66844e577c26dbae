//! Replies read together: a reader that finds several small replies one after another in
//! its buffer (a pipelining caller's, typically) takes them all, looks their callers up
//! under one lock of the call table, then hands each its reply.

use std::sync::Arc;

use super::Link;
use super::calls::{RawReply, Settled, Slot};
use super::token::{Role, Stop};

/// The most replies delivered together.
const MAX_REPLIES: usize = 64;

/// One reply read, and (once looked up) the slot of the caller it is for.
struct ReadReply {
    id: u64,
    reply: RawReply,
    slot: Option<Arc<Slot>>,
}

impl ReadReply {
    fn new(id: u64, reply: RawReply) -> Self {
        Self {
            id,
            reply,
            slot: None,
        }
    }
}

/// Replies read and not yet delivered: the first, and those right behind it (held apart,
/// so that a lone reply, a sequential call's, costs no allocation).
pub(super) struct Replies {
    first: ReadReply,
    more: Vec<ReadReply>,
}

impl Replies {
    /// The replies starting with the one just read.
    #[inline]
    pub(super) fn new(id: u64, reply: RawReply) -> Self {
        Self {
            first: ReadReply::new(id, reply),
            more: Vec::new(),
        }
    }

    /// Adds the reply read right behind the last.
    #[inline]
    pub(super) fn push(&mut self, id: u64, reply: RawReply) {
        if self.more.capacity() == 0 {
            self.more.reserve_exact(MAX_REPLIES - 1);
        }
        self.more.push(ReadReply::new(id, reply));
    }

    /// Whether another reply may join before they are delivered.
    #[inline]
    pub(super) fn has_room(&self) -> bool {
        1 + self.more.len() < MAX_REPLIES
    }

    /// Hands every reply to its caller, in the order read: `mine` (the reader's own call)
    /// comes back as `Stop::ReplyRead`; a reader in `role` that woke a sleeping caller
    /// hands over (`Stop::HandOver`) so that callers read for themselves. Replies nobody
    /// waits for (timed out, cancelled) are dropped.
    pub(super) fn deliver(self, link: &Link, role: Role, mine: Option<u64>) -> Option<Stop> {
        let Self {
            mut first,
            mut more,
        } = self;
        {
            let mut calls = link.calls();
            first.slot = calls.complete(first.id);
            for read in &mut more {
                read.slot = calls.complete(read.id);
            }
        }
        let mut own = None;
        let mut woke = false;
        for ReadReply { id, reply, slot } in std::iter::once(first).chain(more) {
            let Some(slot) = slot.filter(|slot| slot.settle(Settled::Replied)) else {
                continue;
            };
            if mine == Some(id) {
                // Our own reply: straight to the caller, no slot round trip.
                own = Some(reply);
            } else {
                woke |= slot.deliver(Ok(reply));
            }
        }
        if let Some(reply) = own {
            return Some(Stop::ReplyRead(Ok(reply)));
        }
        if woke && matches!(role, Role::Server | Role::Background) {
            // A caller is waiting: let it read for itself from now on.
            link.token.note_caller_activity();
            return Some(Stop::HandOver);
        }
        None
    }
}
