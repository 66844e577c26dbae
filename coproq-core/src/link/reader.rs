//! Reading: what the holder of the read token does.
//!
//! Policy: the token holder owns the stream until it releases the token, which passes it
//! to the first queued waiter (or frees it). Replies go straight to their slots; calls and
//! events go to the inbox in arrival order, or are handed back to the serving thread to
//! run at once. Whoever reads the end of the stream, or a malformed frame, ends the link:
//! every waiting caller is failed and the call table closed, so no `call` can block
//! forever (`Disconnected` at the end of the stream, with the worker's exit status via the
//! EOF hook; `Protocol` for a malformed frame, after which our sending half closes too).

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::batch::Batch;
use super::calls::{self, RawReply, Slot};
use super::replies::Replies;
use super::writer::{Flush, Shutdown};
use super::{INBOX_CAPACITY, Link, Stream};
use crate::error::Error;
use crate::wire::frame::{self, FrameError};
use crate::wire::{self, Message, WireError, message, run};

/// How long a reader on a link with heartbeats waits for input before it looks whether
/// the heartbeat ended the link.
const HEARTBEAT_SLICE: Duration = Duration::from_millis(50);

/// The most calls and events the serving loop reads before it runs them.
const MAX_BATCH: usize = 256;

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
    /// Reads what has arrived, without waiting, to queue it (and see cancels) while the
    /// serving thread is busy.
    Ahead,
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
    /// The reader's own reply is in its slot (someone else read it).
    ReplyInSlot,
    /// The reader's own reply, read just now by the reader itself.
    ReplyRead(super::calls::Delivery),
    /// A call or event for a nested server (the serving thread inside a handler, waiting
    /// for its own reply) to run now.
    Run(Message),
    /// The serving loop read a batch of calls and events (everything that had arrived,
    /// up to `MAX_BATCH`) into the batch it passed.
    Batch,
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
        let mut state = self.read_state();
        if state.reading || state.ended {
            return false;
        }
        if matches!(role, Role::Caller) && state.inbox.len() >= INBOX_CAPACITY {
            return false;
        }
        state.reading = true;
        if matches!(role, Role::Caller | Role::NestedServer) {
            state.caller_activity += 1;
        }
        true
    }

    /// Takes the token for a background reader if it is free and callers have not
    /// touched it since `seen`; returns the current activity count either way.
    pub(crate) fn try_take_token_quiet(&self, seen: u64) -> (bool, u64) {
        let mut state = self.read_state();
        let activity = state.caller_activity;
        if state.reading || state.ended || activity != seen || !state.queue.is_empty() {
            return (false, activity);
        }
        state.reading = true;
        (true, activity)
    }

    /// Releases the token: to the first queued waiter, or free.
    pub(crate) fn release_token(&self) {
        let mut state = self.read_state();
        match state.queue.pop_front() {
            Some(next) => next.promote(),
            None => state.reading = false,
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
        let stop = self.read_until_stop(role, mine, deadline, None);
        if !matches!(stop, Stop::Ended) {
            self.release_token();
        }
        stop
    }

    /// The serving loop's read, holding the token: waits for input, then reads into
    /// `batch` every call and event that has arrived (up to `MAX_BATCH`), so that they
    /// run one after another without the token changing hands in between; releases the
    /// token before returning.
    pub(crate) fn read_batch(self: &Arc<Self>, batch: &mut Batch) -> Stop {
        let stop = self.read_until_stop(Role::Server, None, None, Some(batch));
        if !matches!(stop, Stop::Ended) {
            self.release_token();
        }
        stop
    }

    /// The reading loop: stop if we should, wait for input (flushing first), read one
    /// frame, route it; until a stop.
    fn read_until_stop(
        self: &Arc<Self>,
        role: Role,
        mine: Option<(u64, &Slot)>,
        deadline: Option<Instant>,
        mut batch: Option<&mut Batch>,
    ) -> Stop {
        let mut guard = self
            .stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            // Stop before reading more: our reply is in, or another should read now.
            if mine.is_some_and(|(_, slot)| slot.has_reply()) {
                return Stop::ReplyInSlot;
            }
            if let Some(stop) = self.should_stop(role) {
                return stop;
            }
            let Some(stream) = guard.as_mut() else {
                return Stop::Ended;
            };
            // The rest of a run of events read whole comes before anything read later.
            if let Some(event) = stream.events.pop_front() {
                if let Some(stop) = self.route(event, role, mine, stream, batch.as_deref_mut()) {
                    return stop;
                }
                continue;
            }
            // A batch runs before the serving loop waits for more (a cancel or a reply
            // after its last call may have drained the buffer, or left part of a frame).
            if batch.as_ref().is_some_and(|b| !b.is_empty())
                && !frame::whole_frame_buffered(stream.input.buffer())
            {
                return Stop::Batch;
            }
            if !self.input_ready(stream, role, deadline) {
                return Stop::TimedOut;
            }
            // Calls and events that lie whole in the buffer join the batch in place.
            if let Some(batch) = batch.as_deref_mut() {
                let used = match stream.input.fill_buf() {
                    Ok(buffered) => batch.take_in_place(buffered, self.max_frame, MAX_BATCH),
                    Err(_) => 0,
                };
                if used > 0 {
                    stream.input.consume(used);
                    self.heartbeat.heard();
                    if batch.len() >= MAX_BATCH {
                        return Stop::Batch;
                    }
                    continue;
                }
                // A frame cut off at the end of the buffer: its rest is read into the
                // buffer, to be taken in place (a run of events, in particular, would
                // otherwise become one message per event).
                if let Some(need) = frame::cut_frame_len(stream.input.buffer(), self.max_frame)
                    && stream.input.fill_to(need)
                {
                    continue;
                }
            }
            // One frame in, decoded.
            let read = frame::next_frame(
                &mut stream.input,
                self.max_frame,
                Some(&self.pool),
                message::byte_string_at,
            );
            let message = match read {
                Ok(Some(frame)) if run::is_run(frame.as_slice()) => {
                    // Its events are routed one by one, from the top of the loop.
                    self.heartbeat.heard();
                    match run::decode(frame.as_slice()) {
                        Ok(events) => {
                            stream.events.extend(events);
                            continue;
                        }
                        Err(reason) => Err(reason),
                    }
                }
                Ok(Some(frame)) => {
                    self.heartbeat.heard();
                    message::decode_pooled(frame, Some(&self.pool))
                }
                Ok(None) => {
                    let bye = stream.bye;
                    *guard = None;
                    drop(guard);
                    self.end_of_stream(bye);
                    return Stop::Ended;
                }
                Err(FrameError::Io(e)) => Err(WireError::Malformed(format!("read failed: {e}"))),
                Err(e) => Err(WireError::Malformed(e.to_string())),
            };
            // Routed where it belongs.
            match message {
                Ok(message) => {
                    if let Some(stop) =
                        self.route(message, role, mine, stream, batch.as_deref_mut())
                    {
                        return stop;
                    }
                }
                Err(reason) => {
                    *guard = None;
                    drop(guard);
                    self.broken(&reason.to_string());
                    return Stop::Ended;
                }
            }
        }
    }

    /// Before a read that would block: what we buffered must not wait for our next send,
    /// and a reader with a deadline waits only until then (one reading ahead does not
    /// wait at all). False if nothing arrived in time.
    fn input_ready(&self, stream: &mut Stream, role: Role, deadline: Option<Instant>) -> bool {
        if !stream.input.buffer().is_empty() {
            return true;
        }
        if self.writer.has_pending() {
            self.writer.flush_later();
        }
        if role == Role::Ahead {
            return stream.input.get_ref().wait_readable(Duration::ZERO);
        }
        // An answer that comes quickly is taken without sleeping.
        let site = match role {
            Role::Caller | Role::NestedServer => &self.spin_sites.replies,
            Role::Server | Role::Background | Role::Ahead => &self.spin_sites.requests,
        };
        if self.spin_for_input(stream, site) {
            return true;
        }
        if self.heartbeat.is_on() {
            // The heartbeat may end the link while nothing arrives: wait in slices, and
            // stop (the slots hold their errors by then) once it has.
            loop {
                let left = deadline.map_or(HEARTBEAT_SLICE, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                if stream
                    .input
                    .get_ref()
                    .wait_readable(left.min(HEARTBEAT_SLICE))
                {
                    return true;
                }
                if self.is_ended() || left <= HEARTBEAT_SLICE && deadline.is_some() {
                    return false;
                }
            }
        }
        match deadline {
            Some(deadline) => {
                let now = Instant::now();
                now < deadline && stream.input.get_ref().wait_readable(deadline - now)
            }
            None => true,
        }
    }

    /// Spins until input arrives (reading it into the buffer where the stream allows) or
    /// the budget runs out; whether it arrived.
    fn spin_for_input(&self, stream: &mut Stream, site: &super::Site) -> bool {
        let input = &mut stream.input;
        // Whether reads can be tried without waiting: asked at the first poll only, so a
        // wait that does not spin leaves the stream as it is.
        let mut tries = None;
        let arrived = self.spin.until(site, || {
            if *tries.get_or_insert_with(|| input.get_mut().set_polling(true)) {
                // Data, the end of the stream, or an error for the read to report.
                !matches!(input.fill_buf(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            } else {
                input.get_ref().wait_readable(Duration::ZERO)
            }
        });
        if tries == Some(true) {
            input.get_mut().set_polling(false);
        }
        arrived
    }

    /// Routes one message: a reply to its caller's slot (or back to the reader that waits
    /// for it), a call or event to the serving thread (at once, if that is the reader) or
    /// the inbox. `Some` if the reader should stop here.
    fn route(
        &self,
        message: Message,
        role: Role,
        mine: Option<(u64, &Slot)>,
        stream: &mut Stream,
        batch: Option<&mut Batch>,
    ) -> Option<Stop> {
        match message {
            Message::Reply { id, outcome, body } => {
                let mut replies = Replies::new(id, RawReply { outcome, body });
                self.take_following_replies(stream, &mut replies);
                return replies.deliver(self, role, mine);
            }
            Message::Bye => stream.bye = true,
            Message::Cancel { id } => self.cancels.record(id),
            // Heard: `read_until_stop` noted the time.
            Message::Ping => {}
            message => match (role, batch) {
                (Role::Server, Some(batch)) => {
                    // Keep reading what has arrived (the loop stops where more input
                    // would mean waiting for it).
                    batch.push(message);
                    return (batch.len() >= MAX_BATCH).then_some(Stop::Batch);
                }
                (Role::Server | Role::NestedServer, _) => return Some(Stop::Run(message)),
                (Role::Caller | Role::Background | Role::Ahead, _) => self.enqueue(message),
            },
        }
        None
    }

    /// Takes the small replies that lie whole in the buffer right behind one just read,
    /// to be delivered with it. Anything else (or a reply that does not decode) stays in
    /// the buffer for the general path.
    fn take_following_replies(&self, stream: &mut Stream, replies: &mut Replies) {
        while replies.has_room() {
            let buffered = stream.input.buffer();
            let Some((frame, used)) = frame::small_frame(buffered, self.max_frame)
                .filter(|(frame, _)| wire::is_reply(frame.as_slice()))
            else {
                return;
            };
            let Ok(Message::Reply { id, outcome, body }) = message::decode_pooled(frame, None)
            else {
                return;
            };
            stream.input.consume(used);
            replies.push(id, RawReply { outcome, body });
        }
    }

    /// Whether a reader in `role` should hand over before reading more (lock-free: it
    /// runs before every frame).
    fn should_stop(&self, role: Role) -> Option<Stop> {
        let counts = &self.counts;
        if counts.ended.load(Ordering::Acquire) {
            return Some(Stop::Ended);
        }
        let (queued, inboxed) = (
            counts.queued.load(Ordering::Relaxed),
            counts.inboxed.load(Ordering::Relaxed),
        );
        let stop = match role {
            // A caller stops when the inbox is full: that is the back-pressure. So does a
            // read-ahead.
            Role::Caller | Role::Ahead => inboxed >= INBOX_CAPACITY,
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
        let mut state = self.read_state();
        if let Some(message) = state.inbox.pop_front() {
            let flush = if state.inbox.is_empty() {
                Flush::Now
            } else {
                Flush::Soon
            };
            return ServeStep::Run(message, flush);
        }
        if state.ended {
            return ServeStep::Ended;
        }
        if !state.reading && state.caller_activity == seen && state.queue.is_empty() {
            state.reading = true;
            return ServeStep::Read;
        }
        ServeStep::Wait(state.caller_activity)
    }

    /// Queues a received call or event for the serving thread.
    fn enqueue(&self, message: Message) {
        let mut state = self.read_state();
        state.inbox.push_back(message);
        if let Some(dispatcher) = &state.dispatcher {
            dispatcher.poke();
        }
    }

    /// Reads, without waiting, whatever has arrived, if nobody else is reading: calls and
    /// events go to the inbox, replies to their callers, cancels are noted.
    pub(crate) fn read_ahead(self: &Arc<Self>) {
        if self.try_take_token(Role::Ahead) {
            self.read_as(Role::Ahead, None, None);
        }
    }

    /// Before a caller sleeps in `slot` until another thread hands it its reply or the
    /// token: spins briefly, so that a quick hand-over does not need a wake-up.
    pub(crate) fn spin_for_handoff(&self, slot: &Slot) {
        if !slot.rearm() {
            self.spin
                .until(&self.spin_sites.handoffs, || slot.signalled());
        }
    }

    /// How often callers have used the token (for background readers' patience).
    pub(crate) fn caller_activity(&self) -> u64 {
        self.read_state().caller_activity
    }

    /// Takes the next queued call or event.
    pub(crate) fn next_queued(&self) -> Option<Message> {
        self.read_state().inbox.pop_front()
    }

    /// Registers (or clears) the serving thread's slot to poke when work arrives.
    pub(crate) fn set_dispatcher(&self, slot: Option<Arc<Slot>>) -> bool {
        let mut state = self.read_state();
        let has_work = !state.inbox.is_empty() || state.ended;
        state.dispatcher = slot;
        has_work
    }

    /// Queues `slot` for the token; false if the token is free (take it instead).
    pub(crate) fn queue_for_token(&self, slot: &Arc<Slot>) -> bool {
        let mut state = self.read_state();
        if !state.reading || state.ended {
            return false;
        }
        if !state.queue.iter().any(|s| Arc::ptr_eq(s, slot)) {
            state.queue.push_back(Arc::clone(slot));
        }
        true
    }

    /// Leaves the queue; returns true if the token was handed over meanwhile (then the
    /// caller holds it and must release it).
    pub(crate) fn leave_queue(&self, slot: &Arc<Slot>) -> bool {
        let mut state = self.read_state();
        state.queue.retain(|s| !Arc::ptr_eq(s, slot));
        drop(state);
        slot.take_promotion()
    }

    /// Whether the stream has ended.
    pub(crate) fn is_ended(&self) -> bool {
        self.counts.ended.load(Ordering::Acquire)
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
        self.end(|| Error::Disconnected { status });
    }

    /// The stream broke or carried a malformed frame: the link is over.
    fn broken(&self, reason: &str) {
        self.writer.shutdown(Shutdown::Discard);
        self.abandoned.store(true, Ordering::Release);
        if self.report_protocol_errors {
            crate::error::say(format_args!(
                "coproq worker: protocol error on the link to the parent: {reason}; stopping"
            ));
        }
        self.end(|| Error::Protocol(reason.to_owned()));
    }

    /// Ends the link now, failing every waiting caller with `error`.
    pub(crate) fn end(&self, error: impl Fn() -> Error) {
        let slots = self.calls().close();
        calls::fail_slots(slots, error);
        let mut state = self.read_state();
        state.ended = true;
        state.reading = false;
        for slot in state.queue.drain(..) {
            slot.poke();
        }
        if let Some(dispatcher) = &state.dispatcher {
            dispatcher.poke();
        }
        drop(state);
        self.ended.notify_all();
        // Nobody reads any more: drop the stream (closing our end of the pipe) if it is
        // still here.
        if let Ok(mut stream) = self.stream.try_lock() {
            *stream = None;
        }
        let on_end = self
            .on_end
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(on_end) = on_end {
            on_end();
        }
    }
}
