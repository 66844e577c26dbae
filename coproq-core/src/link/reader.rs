//! Reading: what the holder of the read token does.
//!
//! The holder owns the stream until it releases the token (see `token`). It reads frame
//! after frame, each in a few named steps, until its role or its goal says stop: wait for
//! input (spinning first, flushing what we have to say), take what lies whole in the
//! buffer (the serving loop, into its batch), or read one frame and route it: replies to
//! their slots, calls and events to the inbox in arrival order (or back to a serving
//! thread to run at once), cancels, pings and grants to where they count.
//!
//! Whoever reads the end of the stream, or a malformed frame, ends the link: every
//! waiting caller is failed and the call table closed, so no `call` can block forever
//! (`Disconnected` at the end of the stream, and when the peer died in the middle of a
//! frame, with its exit status via the EOF hook; `Protocol` for a peer that is alive and
//! wrong, after which our sending half closes too).

use std::io::BufRead;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::Batch;
use super::calls::{self, RawReply};
use super::credit;
use super::replies::Replies;
use super::token::{Goal, Queued, Role, Stop};
use super::writer::Shutdown;
use super::{Link, Stream, clock};
use crate::error::Error;
use crate::sys;
use crate::wire::frame::{self, FrameError};
use crate::wire::{self, Message, message, run};

/// How long a reader on a link with heartbeats waits for input before it looks whether
/// the heartbeat ended the link.
const HEARTBEAT_SLICE: Duration = Duration::from_millis(50);

/// The most calls and events the serving loop reads before it runs them.
const MAX_BATCH: usize = 256;

/// What one read step came to.
enum ReadStep {
    /// A message to route, and what it costs the peer's window (calls and events).
    Message(Message, u64),
    /// Something was taken into the stream's events or the batch: look again.
    Again,
    /// The serving loop's batch is full.
    BatchFull,
    /// The stream ended between frames.
    End,
    /// The stream ended or broke inside a frame.
    Cut(String),
    /// The peer broke the protocol.
    Broken(String),
}

/// Why no frame was read: the [`ReadStep`] it comes to.
enum Unread {
    End,
    Cut(String),
    Broken(String),
}

impl From<Unread> for ReadStep {
    fn from(unread: Unread) -> Self {
        match unread {
            Unread::End => Self::End,
            Unread::Cut(why) => Self::Cut(why),
            Unread::Broken(why) => Self::Broken(why),
        }
    }
}

/// How the stream ended.
enum Ending {
    Stream { bye: bool },
    Cut(String),
    Broken(String),
}

impl Link {
    /// Reads frames while holding the token, until `role` should stop or `goal` is
    /// reached; releases the token before returning.
    pub(crate) fn read_as(
        self: &Arc<Self>,
        role: Role,
        goal: Goal<'_>,
        deadline: Option<Instant>,
    ) -> Stop {
        self.read_then_release(role, goal, deadline, None)
    }

    /// The serving loop's read, holding the token: waits for input, then reads into
    /// `batch` every call and event that has arrived (up to `MAX_BATCH`), so that they
    /// run one after another without the token changing hands in between; releases the
    /// token before returning.
    pub(crate) fn read_batch(self: &Arc<Self>, batch: &mut Batch) -> Stop {
        self.read_then_release(Role::Server, Goal::None, None, Some(batch))
    }

    fn read_then_release(
        self: &Arc<Self>,
        role: Role,
        goal: Goal<'_>,
        deadline: Option<Instant>,
        batch: Option<&mut Batch>,
    ) -> Stop {
        let stop = self.read_until_stop(role, goal, deadline, batch);
        if !matches!(stop, Stop::Ended) {
            self.token.release();
        }
        stop
    }

    /// The reading loop: stop if we should; otherwise route the rest of a run, or wait
    /// for input and read; route what was read.
    fn read_until_stop(
        self: &Arc<Self>,
        role: Role,
        goal: Goal<'_>,
        deadline: Option<Instant>,
        mut batch: Option<&mut Batch>,
    ) -> Stop {
        let mut guard = self
            .stream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(stop) = self.stop_before_reading(role, goal) {
                return stop;
            }
            let Some(stream) = guard.as_mut() else {
                return Stop::Ended;
            };
            // A batch runs before the serving loop waits for more.
            if batch.as_ref().is_some_and(|b| !b.is_empty())
                && !frame::whole_frame_buffered(stream.input.buffer())
            {
                return Stop::Batch;
            }
            if !self.wait_for_input(stream, role, deadline) {
                return Stop::TimedOut;
            }
            // Calls and events that lie whole in the buffer join the batch in place;
            // anything else is read as a frame of its own.
            let read = match batch.as_deref_mut() {
                Some(batch) => self.take_in_place(stream, batch),
                None => None,
            };
            let read = read.unwrap_or_else(|| self.read_frame(stream));
            let ending = match read {
                // Nothing follows a goodbye.
                ReadStep::Message(Message::Bye, _) => Ending::Stream { bye: true },
                ReadStep::Message(message, cost) => {
                    match self.route(message, cost, role, goal, stream, batch.as_deref_mut()) {
                        Some(stop) => return stop,
                        None => continue,
                    }
                }
                ReadStep::Again => continue,
                ReadStep::BatchFull => return Stop::Batch,
                ReadStep::End => Ending::Stream { bye: false },
                ReadStep::Cut(reason) => Ending::Cut(reason),
                ReadStep::Broken(reason) => Ending::Broken(reason),
            };
            // Nobody reads this stream again: it goes before the link ends.
            *guard = None;
            drop(guard);
            match ending {
                Ending::Stream { bye } => self.end_of_stream(bye),
                Ending::Cut(reason) => self.ended_inside_a_frame(&reason),
                Ending::Broken(reason) => self.broken(&reason),
            }
            return Stop::Ended;
        }
    }

    /// Whether to stop before reading another frame: the reply or the room waited for is
    /// there (another reader may have taken it in), or the role says someone else should
    /// read now.
    #[inline]
    fn stop_before_reading(&self, role: Role, goal: Goal<'_>) -> Option<Stop> {
        // What we wait for may have come while another thread read.
        let reached = match goal {
            Goal::Reply { slot, .. } => slot.has_reply(),
            Goal::Room => self.has_room(),
            Goal::None => false,
        };
        if reached {
            return Some(Stop::Reached);
        }
        self.token.should_stop(role)
    }

    /// Before a read that would block: what we buffered must not wait for our next send,
    /// and a reader with a deadline waits only until then (one reading ahead does not
    /// wait at all). False if nothing arrived in time.
    fn wait_for_input(&self, stream: &mut Stream, role: Role, deadline: Option<Instant>) -> bool {
        let buffered = !stream.input.buffer().is_empty();
        // Between frames the next read may wait as long as the peer is idle; in the
        // middle of one, the input bounds the wait.
        stream.input.get_mut().set_mid_frame(buffered);
        if buffered {
            return true;
        }
        if self.writer.has_pending() {
            self.writer.flush_later();
        }
        if role == Role::ReadAhead {
            return stream.input.get_ref().wait_readable(Duration::ZERO);
        }
        // An answer that comes quickly is taken without sleeping.
        let site = match role {
            Role::Caller | Role::NestedServer => &self.spin_sites.replies,
            Role::Server | Role::Background | Role::ReadAhead => &self.spin_sites.requests,
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
        let arrived = self.spin.until_peer(site, || {
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

    /// The serving loop's step: takes the calls and events that lie whole in the buffer
    /// into the batch, in place. `None` when there were none (the general path reads the
    /// next frame).
    fn take_in_place(&self, stream: &mut Stream, batch: &mut Batch) -> Option<ReadStep> {
        let taken = match stream.input.fill_buf() {
            Ok(buffered) => batch.take_in_place(buffered, self.max_frame, self.max_batch()),
            Err(_) => super::batch::Taken::default(),
        };
        if taken.used > 0 {
            stream.input.consume(taken.used);
            if let Err(overflow) = self.inflow.receive(taken.cost, taken.last) {
                return Some(ReadStep::Broken(overflow.to_string()));
            }
            return Some(if batch.len() >= self.max_batch() {
                ReadStep::BatchFull
            } else {
                ReadStep::Again
            });
        }
        // A frame cut off at the end of the buffer: its rest is read into the buffer, to
        // be taken in place (a run of events, in particular, would otherwise become one
        // message per event).
        if let Some(need) = frame::cut_frame_len(stream.input.buffer(), self.max_frame)
            && stream.input.fill_to(need)
        {
            return Some(ReadStep::Again);
        }
        None
    }

    /// Reads the next frame.
    #[inline]
    fn next_frame(&self, stream: &mut Stream) -> Result<frame::FrameBuf, Unread> {
        let read = frame::next_frame(
            &mut stream.input,
            self.max_frame,
            Some(&self.buffers),
            message::byte_string_at,
        );
        match read {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(Unread::End),
            Err(e @ FrameError::Truncated { .. }) => Err(Unread::Cut(e.to_string())),
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(Unread::Broken(e.to_string()))
            }
            Err(FrameError::Io(e)) => Err(Unread::Cut(format!("read failed: {e}"))),
            Err(e @ FrameError::TooLarge { .. }) => Err(Unread::Broken(e.to_string())),
        }
    }

    /// The descriptors a `Descriptors` frame announced (`count`, or why the frame is
    /// malformed): the peer sent them before it, so they wait in the socket.
    fn receive_descriptors(
        stream: &Stream,
        count: Result<u32, crate::wire::WireError>,
    ) -> Result<Vec<std::os::fd::OwnedFd>, Unread> {
        let count = count.map_err(|e| Unread::Broken(e.to_string()))?;
        let Some(socket) = stream.descriptors.as_deref() else {
            return Err(Unread::Broken(
                "descriptors announced on a link that passes none".into(),
            ));
        };
        sys::recv_group(socket.as_fd(), count as usize).map_err(|e| {
            Unread::Broken(match e {
                sys::DescriptorRecvError::Nothing => {
                    format!("{count} descriptors announced, and none sent before")
                }
                sys::DescriptorRecvError::Malformed(reason) => reason,
                sys::DescriptorRecvError::Failed(e) => {
                    format!("the descriptor socket failed: {e}")
                }
            })
        })
    }

    /// Reads and decodes one frame (a run of events as one message), with the
    /// descriptors announced right before it, if any.
    fn read_frame(&self, stream: &mut Stream) -> ReadStep {
        let mut frame = match self.next_frame(stream) {
            Ok(frame) => frame,
            Err(unread) => return unread.into(),
        };
        let mut descriptors = Vec::new();
        if let Some(count) = message::announced_descriptors(frame.as_slice()) {
            descriptors = match Self::receive_descriptors(stream, count) {
                Ok(group) => group,
                Err(unread) => return unread.into(),
            };
            frame = match self.next_frame(stream) {
                Ok(frame) => frame,
                // The group closes here.
                Err(unread) => return unread.into(),
            };
        }
        // All of it: a large frame's bytes may lie in a buffer of their own.
        let len = frame.len();
        // A run of events stays whole, one message, until it runs.
        let decoded = if run::is_run(frame.as_slice()) {
            run::decode(frame, Some(&self.buffers))
        } else {
            message::decode_pooled(frame, Some(&self.buffers))
        };
        let mut message = match decoded {
            Ok(message) => message,
            Err(reason) => return ReadStep::Broken(reason.to_string()),
        };
        if !descriptors.is_empty() {
            match &mut message {
                Message::Call { body, .. }
                | Message::Event { body }
                | Message::Reply { body, .. } => {
                    body.set_descriptors(descriptors);
                }
                _ => {
                    return ReadStep::Broken(
                        "descriptors announced for a message that carries none".into(),
                    );
                }
            }
        }
        let events = match &message {
            Message::Call { .. } | Message::Event { .. } => 1,
            Message::Run { events, .. } => *events as usize,
            _ => 0,
        };
        if events == 0 {
            return ReadStep::Message(message, 0);
        }
        let cost = credit::cost(len, events);
        match self.inflow.receive(cost, cost) {
            Ok(()) => ReadStep::Message(message, cost),
            Err(overflow) => ReadStep::Broken(overflow.to_string()),
        }
    }

    /// Routes one message: a reply to its caller's slot (or back to the reader that
    /// waits for it), a call or event to the serving thread (at once, if that is the
    /// reader) or the inbox, a cancel, ping or grant to where it counts. `Some` if the
    /// reader should stop here.
    fn route(
        &self,
        message: Message,
        cost: u64,
        role: Role,
        goal: Goal<'_>,
        stream: &mut Stream,
        batch: Option<&mut Batch>,
    ) -> Option<Stop> {
        match message {
            Message::Reply { id, outcome, body } => {
                let mut replies = Replies::new(id, RawReply { outcome, body });
                self.take_following_replies(stream, &mut replies);
                return replies.deliver(self, role, goal.reply_id());
            }
            Message::Cancel { id } => {
                self.cancels.record(id);
                self.tasks.cancelled(id);
            }
            Message::Started { id } => {
                let slot = self.calls().get(id);
                if let Some(slot) = slot {
                    slot.started();
                }
            }
            // A Bye is taken where it is read (it ends the stream); a Ping was heard
            // when the input noted the time.
            Message::Bye | Message::Ping => {}
            Message::Credit { bytes } => {
                self.room_granted(bytes);
                if let Goal::Room = goal
                    && self.has_room()
                {
                    return Some(Stop::Reached);
                }
            }
            Message::Call { id, deadline, body } => {
                let queued = Queued {
                    message: Message::Call { id, deadline, body },
                    cost,
                    // Counted from now where it came as what remained of it.
                    deadline: clock::from_wire(deadline, Instant::now),
                };
                return self.route_request(queued, role, batch);
            }
            message @ (Message::Event { .. } | Message::Run { .. }) => {
                let queued = Queued {
                    message,
                    cost,
                    deadline: None,
                };
                return self.route_request(queued, role, batch);
            }
        }
        None
    }

    /// Routes a call or event: into the serving loop's batch, back to a serving thread to
    /// run now, or into the inbox.
    fn route_request(&self, queued: Queued, role: Role, batch: Option<&mut Batch>) -> Option<Stop> {
        match (role, batch) {
            (Role::Server, Some(batch)) => {
                // Keep reading what has arrived (the loop stops where more input would
                // mean waiting for it).
                batch.push(queued);
                (batch.len() >= self.max_batch()).then_some(Stop::Batch)
            }
            (Role::Server | Role::NestedServer, _) => Some(Stop::Run(queued)),
            (Role::Caller | Role::Background | Role::ReadAhead, _) => {
                self.token.enqueue(queued);
                None
            }
        }
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

    /// Reads, without waiting, whatever has arrived, if nobody else is reading: calls and
    /// events go to the inbox, replies to their callers, cancels are noted. Everything
    /// the peer sends fits this end's window, so a cancel is seen however many calls
    /// arrived before it.
    pub(crate) fn read_ahead(self: &Arc<Self>) {
        if self.token.try_take(Role::ReadAhead) {
            self.read_as(Role::ReadAhead, Goal::None, None);
        }
    }

    /// How many calls and events the serving loop reads before it runs them: one where a
    /// crew serves (a call that runs long has nothing read behind it, which the next
    /// member reads instead).
    #[inline]
    fn max_batch(&self) -> usize {
        if self.crew.is_some() { 1 } else { MAX_BATCH }
    }

    /// The peer's stream ended between frames.
    fn end_of_stream(&self, bye: bool) {
        if !bye {
            // The peer died: nothing it asked for can be answered any more.
            self.writer.shutdown(Shutdown::Discard);
            self.abandoned
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let gone = self.peer_gone();
        self.end(|| {
            gone.as_ref()
                .map_or_else(Error::stream_ended, super::PeerGone::error)
        });
    }

    /// The stream ended or broke in the middle of a frame: a peer that died doing so is
    /// `Disconnected` (its exit status says how), one still alive broke the protocol.
    fn ended_inside_a_frame(&self, reason: &str) {
        match self.peer_gone() {
            Some(gone) if gone.status.is_some() => {
                self.writer.shutdown(Shutdown::Discard);
                self.abandoned
                    .store(true, std::sync::atomic::Ordering::Release);
                self.end(|| gone.error());
            }
            _ => self.broken(reason),
        }
    }

    /// How the peer ended, once (from the EOF hook, which waits briefly for its exit).
    fn peer_gone(&self) -> Option<super::PeerGone> {
        let hook = self
            .on_eof
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let gone = hook.map(|hook| hook())?;
        let _ = self.gone.set(gone.clone());
        Some(gone)
    }

    /// How the peer ended, for a link that ends after `close` took the worker's status:
    /// what the EOF hook says, with that status where it knows none.
    pub(crate) fn peer_gone_after_close(
        &self,
        status: Option<std::process::ExitStatus>,
    ) -> super::PeerGone {
        match self.peer_gone() {
            Some(gone) => super::PeerGone {
                status: gone.status.or(status),
                ..gone
            },
            None => super::PeerGone {
                status,
                cause: crate::error::DisconnectCause::Ended,
                postmortem: None,
            },
        }
    }

    /// The stream broke or carried a malformed frame: the link is over.
    fn broken(&self, reason: &str) {
        crate::trace::event!(WARN, reason, "protocol error: the link is closed");
        self.writer.shutdown(Shutdown::Discard);
        self.abandoned
            .store(true, std::sync::atomic::Ordering::Release);
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
        self.token.end();
        // Async handlers' futures look whether they can still answer; idle crew members
        // leave.
        self.tasks.ended();
        if let Some(crew) = &self.crew {
            crew.end();
        }
        // Senders waiting for room learn that there will be none.
        self.writer.wake_room_waiters();
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
