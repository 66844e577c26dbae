//! Reading: what the holder of the read token does.
//!
//! Policy: the token holder owns the stream until it releases the token, which passes it
//! to the first queued waiter (or frees it). Replies go straight to their slots; calls and
//! events go to the inbox in arrival order, or are handed back to the serving thread to
//! run at once. Whoever reads the end of the stream, or a malformed frame, ends the link:
//! every waiting caller is failed and the call table closed, so no `call` can block
//! forever (`Disconnected` at the end of the stream, with the worker's exit status via the
//! EOF hook; `Protocol` for a malformed frame, after which our sending half closes too).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::calls::{RawReply, Slot};
use super::writer::{Flush, Shutdown};
use super::{INBOX_CAPACITY, Link};
use crate::error::Error;
use crate::wire::frame::{self, FrameError};
use crate::wire::{Message, message};

/// Who is reading, which decides when to stop and what to do with calls and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A thread waiting for its own reply; reads for everyone meanwhile.
    Caller,
    /// The serving thread waiting for its own reply inside a handler: like a caller, but
    /// it runs the calls and events it reads.
    NestedServer,
    /// The serving loop: reads calls and events to run them.
    Server,
    /// The parent's reader thread: reads when nobody else does.
    Background,
}

/// What the serving loop does next.
pub(crate) enum ServeStep {
    /// Run this queued call or event.
    Run(Message, Flush),
    /// Read: the token was taken.
    Read,
    /// Wait; callers' activity count is this.
    Wait(u64),
    /// The link has ended.
    Ended,
}

/// Why a reader stopped (having released the token).
#[derive(Debug)]
pub(crate) enum Stop {
    /// The reader's own reply is in its slot.
    Mine,
    /// The reader's own reply, read just now.
    Reply(super::calls::Delivery),
    /// A call or event for the serving thread to run now; `more` if further input is
    /// already buffered (so its reply may wait to share a write).
    Run { message: Message, more: bool },
    /// Someone else should read now (queued callers, inbox work, a full inbox).
    StepBack,
    /// The caller's deadline passed.
    TimedOut,
    /// The stream has ended.
    Ended,
}

impl Link {
    /// Takes the read token if it is free. Callers and nested servers count as caller
    /// activity, which keeps background readers away.
    pub(crate) fn try_take_token(&self, role: Role) -> bool {
        let mut ctl = self.ctl();
        if ctl.reading || ctl.ended {
            return false;
        }
        if matches!(role, Role::Caller) && ctl.inbox.len() >= INBOX_CAPACITY {
            return false;
        }
        ctl.reading = true;
        if matches!(role, Role::Caller | Role::NestedServer) {
            ctl.caller_activity += 1;
        }
        true
    }

    /// Takes the token for a background reader if it is free and callers have not
    /// touched it since `seen`; returns the current activity count either way.
    pub(crate) fn try_take_token_quiet(&self, seen: u64) -> (bool, u64) {
        let mut ctl = self.ctl();
        let activity = ctl.caller_activity;
        if ctl.reading || ctl.ended || activity != seen || !ctl.queue.is_empty() {
            return (false, activity);
        }
        ctl.reading = true;
        (true, activity)
    }

    /// Releases the token: to the first queued waiter, or free.
    pub(crate) fn release_token(&self) {
        let mut ctl = self.ctl();
        match ctl.queue.pop_front() {
            Some(next) => next.promote(),
            None => ctl.reading = false,
        }
    }

    /// Reads frames while holding the token, until `role` should stop; releases the token
    /// before returning.
    pub(crate) fn read_as(
        self: &Arc<Self>,
        role: Role,
        mine: Option<(u64, &Slot)>,
        deadline: Option<Instant>,
    ) -> Stop {
        let stop = self.read_until_stop(role, mine, deadline);
        if !matches!(stop, Stop::Ended) {
            self.release_token();
        }
        stop
    }

    fn read_until_stop(
        self: &Arc<Self>,
        role: Role,
        mine: Option<(u64, &Slot)>,
        deadline: Option<Instant>,
    ) -> Stop {
        let mut guard = self
            .stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if mine.is_some_and(|(_, slot)| slot.has_reply()) {
                return Stop::Mine;
            }
            if let Some(stop) = self.should_stop(role) {
                return stop;
            }
            let Some(stream) = guard.as_mut() else {
                return Stop::Ended;
            };
            if stream.input.buffer().is_empty() {
                // About to block: what we buffered must not wait for our next send.
                if self.writer.has_pending() {
                    self.writer.flush_later();
                }
                if let Some(deadline) = deadline {
                    let now = Instant::now();
                    if now >= deadline || !stream.input.get_ref().wait_readable(deadline - now) {
                        return Stop::TimedOut;
                    }
                }
            }
            let read =
                if let Some(small) = frame::take_small_frame(&mut stream.input, self.max_frame) {
                    Ok(Some(small))
                } else {
                    // The length prefix is usually buffered already: a large frame gets a
                    // large pooled buffer, a small one a small buffer.
                    let hint = stream
                        .input
                        .buffer()
                        .first_chunk::<4>()
                        .map_or(0, |len| u32::from_le_bytes(*len) as usize);
                    let mut head = self.pool.take(hint);
                    frame::read_frame_split(
                        &mut stream.input,
                        self.max_frame,
                        &mut head,
                        message::byte_string_at,
                    )
                    .map(|read| match read {
                        frame::Frame::End => None,
                        frame::Frame::Whole => Some(self.pool.fit(head).into()),
                        frame::Frame::Split(tail) => Some(frame::FrameBuf::Split { head, tail }),
                    })
                };
            let message = match read {
                Ok(Some(frame)) => message::decode_pooled(frame, Some(&self.pool)),
                Ok(None) => {
                    let bye = stream.bye;
                    *guard = None;
                    drop(guard);
                    self.end_of_stream(bye);
                    return Stop::Ended;
                }
                Err(FrameError::Io(e)) => Err(format!("read failed: {e}")),
                Err(e) => Err(e.to_string()),
            };
            match message {
                Ok(Message::Reply { id, outcome, body }) => {
                    let slot = self.calls().complete(id);
                    if mine.is_some_and(|(my_id, _)| my_id == id) && slot.is_some() {
                        // Our own reply: straight to the caller, no slot round trip.
                        return Stop::Reply(Ok(RawReply { outcome, body }));
                    }
                    let woke =
                        slot.is_some_and(|slot| slot.deliver(Ok(RawReply { outcome, body })));
                    if woke && matches!(role, Role::Server | Role::Background) {
                        // A caller is waiting: let it read for itself from now on.
                        self.ctl().caller_activity += 1;
                        return Stop::StepBack;
                    }
                }
                Ok(Message::Bye) => stream.bye = true,
                Ok(message) => match role {
                    Role::Server | Role::NestedServer => {
                        return Stop::Run {
                            message,
                            more: !stream.input.buffer().is_empty(),
                        };
                    }
                    Role::Caller | Role::Background => self.enqueue(message),
                },
                Err(reason) => {
                    *guard = None;
                    drop(guard);
                    self.broken(reason);
                    return Stop::Ended;
                }
            }
        }
    }

    /// Whether a reader in `role` should hand over before reading more (lock-free: it
    /// runs before every frame).
    fn should_stop(&self, role: Role) -> Option<Stop> {
        let mirror = &self.mirror;
        if mirror.ended.load(Ordering::Acquire) {
            return Some(Stop::Ended);
        }
        let (queued, inboxed) = (
            mirror.queued.load(Ordering::Relaxed),
            mirror.inboxed.load(Ordering::Relaxed),
        );
        let stop = match role {
            // A caller stops when the inbox is full: that is the back-pressure.
            Role::Caller => inboxed >= INBOX_CAPACITY,
            // The serving thread runs what is queued before reading anything newer.
            Role::NestedServer => inboxed > 0,
            // Callers waiting for the token come before background reading.
            Role::Server => queued > 0 || inboxed > 0,
            Role::Background => queued > 0,
        };
        stop.then_some(Stop::StepBack)
    }

    /// One step of the serving loop, under one lock: run the next queued call or event,
    /// read (the token is then taken), wait, or stop.
    pub(crate) fn serve_step(&self, seen: u64) -> ServeStep {
        let mut ctl = self.ctl();
        if let Some(message) = ctl.inbox.pop_front() {
            let flush = if ctl.inbox.is_empty() {
                Flush::Now
            } else {
                Flush::Soon
            };
            return ServeStep::Run(message, flush);
        }
        if ctl.ended {
            return ServeStep::Ended;
        }
        if !ctl.reading && ctl.caller_activity == seen && ctl.queue.is_empty() {
            ctl.reading = true;
            return ServeStep::Read;
        }
        ServeStep::Wait(ctl.caller_activity)
    }

    /// Queues a received call or event for the serving thread.
    fn enqueue(&self, message: Message) {
        let mut ctl = self.ctl();
        ctl.inbox.push_back(message);
        if let Some(dispatcher) = &ctl.dispatcher {
            dispatcher.poke();
        }
    }

    /// How often callers have used the token (for background readers' patience).
    pub(crate) fn caller_activity(&self) -> u64 {
        self.ctl().caller_activity
    }

    /// Takes the next queued call or event.
    pub(crate) fn next_queued(&self) -> Option<Message> {
        self.ctl().inbox.pop_front()
    }

    /// Registers (or clears) the serving thread's slot to poke when work arrives.
    pub(crate) fn set_dispatcher(&self, slot: Option<Arc<Slot>>) -> bool {
        let mut ctl = self.ctl();
        let has_work = !ctl.inbox.is_empty() || ctl.ended;
        ctl.dispatcher = slot;
        has_work
    }

    /// Queues `slot` for the token; false if the token is free (take it instead).
    pub(crate) fn queue_for_token(&self, slot: &Arc<Slot>) -> bool {
        let mut ctl = self.ctl();
        if !ctl.reading || ctl.ended {
            return false;
        }
        if !ctl.queue.iter().any(|s| Arc::ptr_eq(s, slot)) {
            ctl.queue.push_back(Arc::clone(slot));
        }
        true
    }

    /// Leaves the queue; returns true if the token was handed over meanwhile (then the
    /// caller holds it and must release it).
    pub(crate) fn leave_queue(&self, slot: &Arc<Slot>) -> bool {
        let mut ctl = self.ctl();
        ctl.queue.retain(|s| !Arc::ptr_eq(s, slot));
        drop(ctl);
        slot.take_promotion()
    }

    /// Whether the stream has ended.
    pub(crate) fn is_ended(&self) -> bool {
        self.mirror.ended.load(Ordering::Acquire)
    }

    /// The peer's stream ended between frames.
    fn end_of_stream(&self, bye: bool) {
        if !bye {
            // The peer died: nothing it asked for can be answered any more.
            self.writer.shutdown(Shutdown::Discard);
            self.abandoned.store(true, Ordering::Release);
        }
        let hook = self
            .on_eof
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let status = hook.and_then(|hook| hook());
        self.end(&Error::Disconnected { status });
    }

    /// The stream broke or carried a malformed frame: the link is over.
    fn broken(&self, reason: String) {
        self.writer.shutdown(Shutdown::Discard);
        self.abandoned.store(true, Ordering::Release);
        if self.report_protocol_errors {
            eprintln!(
                "coproq worker: protocol error on the link to the parent: {reason}; stopping"
            );
        }
        self.end(&Error::Protocol(reason));
    }

    /// Ends the link now, failing every waiting caller with `error`.
    pub(crate) fn end(&self, error: &Error) {
        self.calls().fail_all(error);
        let mut ctl = self.ctl();
        ctl.ended = true;
        ctl.reading = false;
        for slot in ctl.queue.drain(..) {
            slot.poke();
        }
        if let Some(dispatcher) = &ctl.dispatcher {
            dispatcher.poke();
        }
        drop(ctl);
        self.ended.notify_all();
        // Nobody reads any more: drop the stream (closing our end of the pipe) if it is
        // still here.
        if let Ok(mut stream) = self.stream.try_lock() {
            *stream = None;
        }
    }
}
