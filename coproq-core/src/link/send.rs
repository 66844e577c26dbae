//! Frames on their way out: calls, events, replies, cancels and grants.
//!
//! Calls and events wait while the peer's window is full (see `credit`), at most until
//! their deadline, and read meanwhile where nobody else does (the grant they wait for
//! comes in on the link). Replies and control frames never wait for the window.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::calls::{Settled, Slot};
use super::context::Deadline;
use super::writer::{Flush, Lane, Refused};
use super::{ENTRY_ID, Link, clock, dispatch, encode_error};
use crate::error::{Error, Result};
use crate::wire::message::{self, CallHead, EncodeError, EncodedArgs};
use crate::wire::{direct, run};

/// How long a call whose link closed while it was being sent waits for the link's end,
/// to say how it ended (see `Link::closed_while_sending`).
const CLOSED_WHILE_SENDING: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a call or event did not go.
enum NotSent {
    /// The link is closed.
    Closed,
    /// Its deadline passed while it waited for room in the peer's window.
    TimedOut,
}

impl Link {
    /// Sends a call and registers its slot. `Flush::Now` when the caller will wait at
    /// once; `Flush::Soon` lets pipelined calls share writes. The peer learns `deadline`.
    #[inline]
    pub(crate) fn start_call<A: Serialize + ?Sized>(
        self: &Arc<Self>,
        name: &str,
        args: &A,
        flush: Flush,
        deadline: Option<Deadline>,
    ) -> Result<(u64, Arc<Slot>)> {
        let id = self.next_id();
        let slot = Arc::new(Slot::default());
        if self.calls().insert(id, Arc::clone(&slot)).is_err() {
            return Err(Error::NotConnected);
        }
        let at = deadline.map(|d| d.at);
        let head = CallHead {
            id,
            name,
            deadline: clock::to_wire(at, self.shared_clock),
        };
        let sent = if let Some(len) = direct::large_bytes(args, self.writer.passes_descriptors()) {
            self.send_large(name, args, at, |buf, max| {
                message::encode_call_head(buf, head, len, max)
            })
        } else {
            self.send_work(flush, at, |buf, _, max| {
                message::encode_call(buf, head, args, max)
            })
        };
        let failed = match sent {
            Ok(Ok(())) => return Ok((id, slot)),
            Ok(Err(e)) => encode_error(name, e),
            Err(NotSent::Closed) => self.closed_while_sending(&slot),
            Err(NotSent::TimedOut) => match deadline {
                Some(deadline) => Error::Timeout {
                    method: name.to_owned(),
                    after: deadline.after,
                },
                None => Error::NotConnected,
            },
        };
        self.calls().remove(id);
        Err(failed)
    }

    /// The error of a call whose link closed while it was being sent: how the link ended,
    /// once it has (a peer that died in the middle of the call's frame is `Disconnected`,
    /// with its exit status), or `NotConnected` if it does not end at once.
    #[cold]
    fn closed_while_sending(&self, slot: &Slot) -> Error {
        // The reader sees the end moments after the writer: it waits briefly for the
        // peer's exit status, then fails every call in the table, this one too.
        self.wait_ended(CLOSED_WHILE_SENDING);
        match slot.take_reply() {
            Some(Err(e)) => e,
            _ => Error::NotConnected,
        }
    }

    /// Sends a call whose arguments were encoded before, its reply to land in `slot` (a
    /// pool's call, whose slot outlives one worker), without waiting for room: when the
    /// peer's window has none, nothing is sent and the call stays the caller's
    /// (`Ok(None)`; the hook of [`Link::set_on_room`] runs when room comes). Writes wait
    /// at most until `write_until` (the flusher writes the rest). Fails without settling
    /// `slot`.
    pub(crate) fn try_start_encoded_call(
        &self,
        name: &str,
        args: &EncodedArgs,
        deadline: Option<Instant>,
        slot: &Arc<Slot>,
        (flush, write_until): (Flush, Option<Instant>),
    ) -> Result<Option<u64>> {
        let id = self.next_id();
        if self.calls().insert(id, Arc::clone(slot)).is_err() {
            return Err(Error::NotConnected);
        }
        let head = CallHead {
            id,
            name,
            deadline: clock::to_wire(deadline, self.shared_clock),
        };
        let sent = self
            .writer
            .send(Lane::Work, flush, write_until, |buf, _, max| {
                message::encode_call_encoded(buf, head, args, max)
            });
        let failed = match sent {
            Ok(Ok(())) => return Ok(Some(id)),
            Ok(Err(e)) => encode_error(name, e),
            Err(Refused::Closed) => Error::NotConnected,
            Err(Refused::NoRoom) => {
                self.calls().remove(id);
                return Ok(None);
            }
        };
        self.calls().remove(id);
        Err(failed)
    }

    /// Sends a one-way event, waiting while the peer's window is full (back-pressure).
    #[inline]
    pub(crate) fn emit<A: Serialize + ?Sized>(
        self: &Arc<Self>,
        name: &str,
        args: &A,
    ) -> Result<()> {
        match self.send_work(Flush::Soon, None, |buf, open, max| {
            run::encode_event(buf, open, name, args, max)
        }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(encode_error(name, e)),
            Err(NotSent::Closed | NotSent::TimedOut) => Err(Error::NotConnected),
        }
    }

    /// Sends a call or event that `build` appends, charged to the peer's window: waits
    /// while it has no room, at most until `deadline`.
    #[inline]
    fn send_work<E>(
        self: &Arc<Self>,
        flush: Flush,
        deadline: Option<Instant>,
        build: impl FnOnce(&mut Vec<u8>, &mut Option<run::EventRun>, u32) -> Result<(), E>,
    ) -> std::result::Result<std::result::Result<(), E>, NotSent> {
        let mut build = build;
        loop {
            match self
                .writer
                .send_or_return(Lane::Work, flush, deadline, build)
            {
                Ok(appended) => return Ok(appended),
                Err((Refused::Closed, _)) => return Err(NotSent::Closed),
                Err((Refused::NoRoom, unused)) => {
                    build = unused;
                    self.wait_for_room(deadline)?;
                }
            }
        }
    }

    /// Sends a call whose arguments are one large byte string, written straight from the
    /// caller's memory after the head that `head` builds.
    fn send_large<A: Serialize + ?Sized>(
        self: &Arc<Self>,
        name: &str,
        value: &A,
        deadline: Option<Instant>,
        head: impl FnOnce(&mut Vec<u8>, u32) -> std::result::Result<(), EncodeError>,
    ) -> std::result::Result<std::result::Result<(), EncodeError>, NotSent> {
        let mut buf = Vec::new();
        if let Err(e) = head(&mut buf, self.writer.peer_max()) {
            return Ok(Err(e));
        }
        loop {
            let sent = direct::with_bytes(value, self.writer.passes_descriptors(), |bytes| {
                self.writer.send_direct(Lane::Work, &buf, bytes, deadline)
            });
            match sent {
                Some(Ok(())) => return Ok(Ok(())),
                Some(Err(Refused::Closed)) => return Err(NotSent::Closed),
                Some(Err(Refused::NoRoom)) => self.wait_for_room(deadline)?,
                None => {
                    return Ok(Err(EncodeError::Value(crate::wire::WireError::Mismatch(
                        format!("{name}: the arguments serialized differently twice"),
                    ))));
                }
            }
        }
    }

    /// Waits until the peer's window has room, at most until `deadline`.
    fn wait_for_room(
        self: &Arc<Self>,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), NotSent> {
        match dispatch::wait_for_room(self, deadline) {
            Ok(()) if self.writer.is_closed() => Err(NotSent::Closed),
            Ok(()) => Ok(()),
            Err(dispatch::TimedOut) => Err(NotSent::TimedOut),
        }
    }

    /// Registers `slot` for a grant if the peer's window has no room; whether it has
    /// room.
    pub(super) fn room_or_register(&self, slot: &Arc<Slot>) -> bool {
        self.writer.room_or_register(slot)
    }

    /// Forgets a thread that stopped waiting for room.
    pub(super) fn unregister_room_waiter(&self, slot: &Arc<Slot>) {
        self.writer.unregister(slot);
    }

    /// Whether the peer's window has room now.
    pub(super) fn has_room(&self) -> bool {
        self.writer.has_room()
    }

    /// Sends a reply whose value is one large byte string straight from the handler's
    /// memory; false if `value` is not one (the caller then sends it the usual way).
    pub(crate) fn send_direct_reply<T: Serialize + ?Sized>(&self, id: u64, value: &T) -> bool {
        let Some(len) = direct::large_bytes(value, self.writer.passes_descriptors()) else {
            return false;
        };
        let mut head = Vec::new();
        if message::encode_reply_head(&mut head, id, len, self.writer.peer_max()).is_err() {
            // Too large for the peer: the usual way reports it.
            return false;
        }
        let sent = direct::with_bytes(value, self.writer.passes_descriptors(), |bytes| {
            self.writer.send_direct(Lane::Reply, &head, bytes, None)
        });
        // A closed link drops the reply, as for any other; a value that did not serialize
        // as bytes this time goes the usual way.
        sent.is_some()
    }

    /// Sends a reply that `build` appends; a closed link drops it.
    #[inline]
    pub(crate) fn send_reply(&self, flush: Flush, build: impl FnOnce(&mut Vec<u8>, u32)) {
        let _ = self.writer.send(Lane::Reply, flush, None, |buf, _, max| {
            build(buf, max);
            Ok::<(), ()>(())
        });
    }

    /// Sends a small control frame that `build` appends, soon, never waiting.
    fn send_control(&self, flush: Flush, build: impl FnOnce(&mut Vec<u8>)) {
        // A write now ends at once (`deadline` now): what the pipe cannot take at once is
        // left to the flusher.
        let deadline = (flush == Flush::Now).then(Instant::now);
        let _ = self
            .writer
            .send(Lane::Control, flush, deadline, |buf, _, _| {
                build(buf);
                Ok::<(), ()>(())
            });
    }

    /// Tells the parent that its call `id` starts running now.
    pub(super) fn send_started(&self, id: u64) {
        self.send_control(Flush::Soon, |buf| message::encode_started(buf, id));
    }

    /// Grants the peer `bytes` more of calls and events.
    pub(super) fn send_credit(&self, bytes: u64) {
        self.send_control(Flush::Soon, |buf| message::encode_credit(buf, bytes));
    }

    /// Tells the peer that nobody waits for call `id` any more (the call stays in the
    /// table, for a pool to count it until the worker answers).
    pub(crate) fn send_cancel(&self, id: u64) {
        // Written now, as far as the pipe takes it without waiting: the sooner the peer
        // has it, the likelier the call is skipped before it starts. Never waits: a
        // cancel goes however full the pipe is.
        self.send_control(Flush::Now, |buf| message::encode_cancel(buf, id));
    }

    /// Registers a slot for the reply to [`ENTRY_ID`], which no call uses: a fork
    /// worker's report that its entry returned. Call before anyone reads.
    pub(crate) fn expect_entry_report(&self) -> Result<Arc<Slot>> {
        let slot = Arc::new(Slot::default());
        self.calls()
            .insert(ENTRY_ID, Arc::clone(&slot))
            .map_err(|_| Error::NotConnected)?;
        Ok(slot)
    }

    /// Forgets a call whose caller stopped waiting; a late reply is then dropped.
    pub(crate) fn forget_call(&self, id: u64) {
        let slot = self.calls().remove(id);
        if let Some(slot) = slot {
            slot.settle(Settled::Forgotten);
        }
    }

    /// Forgets a call and tells the peer: if it has not started the call, it never will.
    pub(crate) fn cancel_call(&self, id: u64) {
        self.forget_call(id);
        self.send_cancel(id);
    }

    #[inline]
    fn next_id(&self) -> u64 {
        self.next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}
