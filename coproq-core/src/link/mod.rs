//! One connection between two ends, independent of how its two byte streams were made.
//!
//! - [`io`]: the two streams, as the reader and the writer see them.
//! - [`token`]: the read token: who reads, who waits to, what waits to run.
//! - [`reader`]: frames in, read by whichever thread holds the read token.
//! - [`replies`]: replies read together, delivered under one lock of the call table.
//! - [`read_buffer`]: the buffer frames are read into, sized to the traffic.
//! - [`batch`]: the calls and events the serving loop read in one go.
//! - [`writer`]: frames out, coalesced into few writes, by the sender or the link's own
//!   flusher.
//! - [`send`]: calls, events and cancels on their way out, waiting for room in the
//!   peer's window where they must.
//! - [`credit`]: flow control: the window each side grants the other.
//! - [`calls`]: calls in flight and the slots their callers wait in.
//! - [`dispatch`]: the serving loop, the background reader, and waiting for replies.
//! - [`crew`]: concurrent serving: the threads that run several calls at once.
//! - [`handlers`]: the handler table the dispatcher looks names up in.
//! - [`responder`]: sending the one reply of one call.
//! - [`map_run`]: serving a run of calls (a `map`'s items), answered in one reply.
//! - [`cancels`]: the calls the peer cancelled.
//! - [`tasks`]: async handlers' futures in flight, and the executor that polls them.
//! - [`context`]: what this thread serves and handles: the link, the call's deadline and
//!   cancel.
//! - [`clock`]: deadlines on the wire.
//! - [`heartbeat`]: pings, and ending a link whose peer fell silent.
//! - [`spin`]: polling briefly before sleeping until the peer answers.
//!
//! There is no thread between the pipe and a caller. Whoever needs input holds the read
//! token: a caller waiting for its reply reads it itself (one wake-up per side, as on a
//! raw pipe), routing what else arrives to the slots and inbox it belongs to; the serving
//! thread reads calls and answers them on the spot. The token passes to the next queued
//! waiter when its holder stops. Background readers (the serving loop, and the parent's
//! reader thread) take it only after callers have been quiet for a tick, so a busy caller
//! keeps reading for itself. No reader ever stops for lack of room: the peer never sends
//! more calls and events than this end's window holds (see [`credit`]).

mod batch;
pub(crate) mod calls;
mod cancels;
mod clock;
pub(crate) mod context;
mod credit;
mod crew;
pub(crate) mod dispatch;
mod handlers;
mod heartbeat;
mod io;
mod map_run;
mod read_buffer;
mod reader;
mod replies;
mod responder;
mod send;
mod spin;
pub(crate) mod tasks;
#[cfg(test)]
mod tests;
mod token;
mod writer;

use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{DisconnectCause, Error};
use crate::wire::message::{self, EncodeError};
use crate::wire::{ForkEntry, Hello, frame};
use calls::Calls;
use cancels::Cancels;
use credit::Inflow;
pub(crate) use handlers::{EVENTS_METHOD, Handlers, LookupCache, METHODS_METHOD, Owner};
use heartbeat::{Heard, Heartbeat};
pub(crate) use io::{Input, Output, PipeInput, PipeOutput};
use read_buffer::ReadBuffer;
pub(crate) use responder::Responder;
pub(crate) use spin::DEFAULT_SPIN;
use spin::{Site, Spin};
use token::Token;
pub(crate) use writer::Flush;
use writer::{Lane, Shutdown, Writer};

/// How a peer that vanished ended, as the parent learns it from the worker's process.
#[derive(Debug, Clone)]
pub(crate) struct PeerGone {
    pub(crate) status: Option<ExitStatus>,
    pub(crate) cause: DisconnectCause,
    pub(crate) postmortem: Option<std::sync::Arc<crate::error::Postmortem>>,
}

impl PeerGone {
    fn error(&self) -> Error {
        Error::disconnected(self.status, self.cause.clone(), self.postmortem.clone())
    }
}

/// Called by whoever reads the end of the peer's stream, to learn how the peer ended.
pub(crate) type EofHook = Box<dyn FnOnce() -> PeerGone + Send>;

/// A frame in progress must keep arriving: a peer that sends nothing for this long in the
/// middle of one breaks the protocol, and what it sent is let go (see
/// [`LinkOptions::frame_stall`] for links with heartbeats).
pub(crate) const FRAME_STALL: Duration = Duration::from_secs(10);

/// Settings of one link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkOptions {
    /// The largest frame payload accepted from the peer.
    pub(crate) max_frame: u32,
    /// Say on stderr why the link ends when the peer breaks the protocol (a worker's
    /// user sees no error otherwise; a parent's callers get `Protocol` errors).
    pub(crate) report_protocol_errors: bool,
    /// How long a thread waiting for the peer spins before it sleeps; `None`: a parent
    /// takes [`DEFAULT_SPIN`], a worker what its parent's `Hello` says.
    pub(crate) spin: Option<Duration>,
    /// How many of the peer's calls this end runs at once; `None`: a parent runs one at
    /// a time, a worker as many as its parent's `Hello` says.
    pub(crate) concurrency: Option<u32>,
    /// A parent asks its worker to say when each call starts (a pool's time limits).
    pub(crate) report_starts: bool,
    /// A parent's limit on its worker's data, in bytes, which the worker sets on itself.
    pub(crate) memory_limit: Option<u64>,
}

impl LinkOptions {
    /// How long a frame in progress may pause: [`FRAME_STALL`], or two heartbeat
    /// intervals where heartbeats are on (a peer half-way through a frame cannot ping,
    /// and a stall is a more precise error than silence, which ends the link after
    /// three).
    pub(crate) fn frame_stall(heartbeat: Option<Duration>) -> Duration {
        heartbeat.map_or(FRAME_STALL, |interval| interval * 2)
    }
}

/// The read side: only the token holder touches it.
pub(super) struct Stream {
    input: ReadBuffer<Input>,
    /// The socket descriptors arrive through (see `wire::descriptors`), closed with the
    /// stream.
    descriptors: Option<Arc<std::os::fd::OwnedFd>>,
}

/// Both ends share this; handles, the serving thread and readers each hold it.
///
/// Locks, and the order in which they may be held together (never the reverse):
///
/// 1. `stream`: held by the reader (the read-token holder) for as long as it reads.
/// 2. `calls`: taken briefly, also under `stream` (to complete a reply).
/// 3. the token's lock: taken briefly, also under `stream` and after `calls` (`end`
///    takes `calls`, releases it, then takes the token's).
///
/// The writer's lock and each slot's lock are leaves: nothing else is taken while one is
/// held, except that the writer wakes slots waiting for room after releasing its own.
/// `end` only *tries* `stream` (the reader may hold it), so it never waits for it while
/// holding another lock.
pub(crate) struct Link {
    writer: Arc<Writer>,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
    pub(crate) handlers: Arc<Handlers>,
    stream: Mutex<Option<Stream>>,
    token: Token,
    /// The calls and events this end received and has not yet run, against its window.
    inflow: Inflow,
    /// Both ends read the same monotonic clock: deadlines travel as its time.
    shared_clock: bool,
    max_frame: u32,
    report_protocol_errors: bool,
    /// Large frame buffers for reuse.
    buffers: Arc<frame::BufferPool>,
    on_eof: Mutex<Option<EofHook>>,
    /// What the EOF hook said, once it ran.
    gone: std::sync::OnceLock<PeerGone>,
    serving: AtomicBool,
    /// The peer's stream ended without a `Bye`: it died, so queued work is moot.
    abandoned: AtomicBool,
    /// Calls the peer cancelled.
    pub(crate) cancels: Cancels,
    /// Async handlers' futures in flight.
    pub(crate) tasks: tasks::Tasks,
    /// The threads that serve the peer's calls, where more than one may run at once.
    crew: Option<crew::Crew>,
    /// The parent asked to be told when each of its calls starts.
    report_starts: bool,
    /// Runs once when the link ends (the parent learns that its worker is gone).
    on_end: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Runs whenever the peer grants room (a pool sends the calls it held back).
    on_room: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// When the peer was last heard from.
    heartbeat: Arc<Heartbeat>,
    /// How long waiting threads spin before they sleep.
    spin: Spin,
    /// Whether spinning pays: for replies read from the pipe, for calls and events read
    /// from it, and for a reply or the read token handed over by another thread.
    spin_sites: SpinSites,
}

/// The places that wait for the peer, each learning on its own whether spinning pays.
#[derive(Debug, Default)]
struct SpinSites {
    replies: Site,
    requests: Site,
    handoffs: Site,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

/// The call id whose reply is a fork worker's report that its entry returned (calls are
/// numbered from 1).
pub(crate) const ENTRY_ID: u64 = 0;

/// A worker's `Hello` is a few dozen bytes; anything much longer is not one.
pub(crate) const WORKER_HELLO_MAX: u32 = 4096;

/// How a link starts.
#[derive(Debug)]
pub(crate) struct Connect {
    pub(crate) options: LinkOptions,
    /// What our `Hello` carries for the peer (a parent's fork entry).
    pub(crate) entry: Option<ForkEntry>,
    /// This side is the parent (the peer must be a worker, and the reverse).
    pub(crate) parent: bool,
    /// Parent: the heartbeat interval the worker is asked to keep.
    pub(crate) heartbeat: Option<Duration>,
    /// The peer may share this machine's clock (a parent: the worker runs here).
    pub(crate) offer_clock: bool,
    /// The largest `Hello` accepted from the peer.
    pub(crate) peer_hello_max: u32,
    /// How long to wait for the peer's `Hello`.
    pub(crate) timeout: Duration,
    /// This end of the socket that passes descriptors (a link to a local worker), used
    /// if the peer says it has the other.
    pub(crate) descriptors: Option<std::os::fd::OwnedFd>,
}

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// Nothing arrived within the timeout.
    Silent(Duration),
    /// The peer closed the link before its `Hello`.
    Closed,
    /// What arrived is not a `Hello` this side can speak with.
    Refused(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Silent(timeout) => write!(f, "no handshake from the peer within {timeout:?}"),
            Self::Closed => f.write_str("the peer closed the link before the handshake"),
            Self::Refused(reason) => f.write_str(reason),
        }
    }
}

/// Refuses a peer whose `Hello` says it cannot be this side's peer: a second parent or
/// worker, or one that grants too small a window.
fn check_peer(peer: &Hello, parent: bool) -> std::result::Result<(), HandshakeError> {
    if peer.parent == parent {
        let role = if parent { "parent" } else { "worker" };
        return Err(HandshakeError::Refused(format!(
            "the peer is a coproq {role} too (a command that echoes its input back?)"
        )));
    }
    if peer.window < credit::MIN_WINDOW {
        return Err(HandshakeError::Refused(format!(
            "the peer grants a window of {} bytes, below the least of {}",
            peer.window,
            credit::MIN_WINDOW
        )));
    }
    Ok(())
}

impl Link {
    /// Starts a link on two streams: sends our `Hello` and waits for the peer's, all
    /// within the timeout.
    pub(crate) fn connect(
        input: Input,
        output: Output,
        connect: Connect,
        handlers: Arc<Handlers>,
        on_eof: Option<EofHook>,
    ) -> std::result::Result<(Arc<Self>, Hello), HandshakeError> {
        let Connect {
            options,
            entry,
            parent,
            heartbeat,
            offer_clock,
            peer_hello_max,
            timeout,
            descriptors,
        } = connect;
        let deadline = Instant::now().checked_add(timeout);
        let writer = Writer::new(output);
        let our_spin = options.spin.unwrap_or(DEFAULT_SPIN);
        let hello = Hello {
            max_frame: options.max_frame,
            entry,
            parent,
            heartbeat_ms: heartbeat.map_or(0, |h| {
                u32::try_from(h.as_millis()).unwrap_or(u32::MAX).max(1)
            }),
            spin_us: u32::try_from(our_spin.as_micros()).unwrap_or(u32::MAX),
            window: credit::RECEIVE_WINDOW,
            concurrency: options.concurrency.unwrap_or(1),
            report_starts: parent && options.report_starts,
            memory_limit: options.memory_limit.filter(|_| parent).unwrap_or(0),
            clock_us: if offer_clock { clock::offer() } else { 0 },
            descriptors: descriptors.is_some(),
            pid: std::process::id(),
        };
        let sent = writer.send(Lane::Control, Flush::Now, deadline, |buf, _, _| {
            message::encode_hello(buf, &hello);
            Ok::<(), ()>(())
        });
        if sent.is_err() || writer.is_closed() {
            return Err(HandshakeError::Closed);
        }
        // The buffer starts at 16 KiB, which holds hundreds of small frames per read
        // (larger frames are read past it), and grows only while the peer streams.
        let heartbeat_state = Arc::new(Heartbeat::default());
        let mut input = ReadBuffer::new(Heard::boxed(input, Arc::clone(&heartbeat_state)));
        input.get_mut().set_deadline(deadline);
        let peer = handshake(&mut input, peer_hello_max, timeout);
        input.get_mut().set_deadline(None);
        let peer = peer?;
        check_peer(&peer, parent)?;
        writer.set_peer(peer.max_frame, peer.window);
        // Descriptors travel where both sides hold their end of the socket.
        let descriptors = writer.use_descriptors(descriptors.filter(|_| peer.descriptors));
        // The peer is on this machine where it passes descriptors.
        let local_peer = descriptors.as_ref().map(|_| peer.pid);
        // A worker spins as its parent does, unless it chose for itself.
        let spin = match options.spin {
            None if !parent => Duration::from_micros(u64::from(peer.spin_us)),
            _ => our_spin,
        };
        // A worker runs as many calls at once as its parent asks, unless it chose.
        let concurrency = match options.concurrency {
            None if !parent => peer.concurrency,
            own => own.unwrap_or(1),
        };
        let crew = (concurrency > 1).then(|| {
            let serve: crew::ServeLoop = if parent {
                dispatch::run_queued
            } else {
                dispatch::serve_loop
            };
            crew::Crew::new(concurrency as usize, serve)
        });
        let shared_clock = (offer_clock || !parent) && clock::is_shared(peer.clock_us);
        let link = Arc::new(Self {
            writer,
            calls: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(ENTRY_ID + 1),
            handlers,
            stream: Mutex::new(Some(Stream { input, descriptors })),
            token: Token::default(),
            inflow: Inflow::new(credit::RECEIVE_WINDOW),
            shared_clock,
            max_frame: options.max_frame,
            report_protocol_errors: options.report_protocol_errors,
            buffers: Arc::default(),
            on_eof: Mutex::new(on_eof),
            gone: std::sync::OnceLock::new(),
            serving: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            cancels: Cancels::default(),
            tasks: tasks::Tasks::default(),
            crew,
            report_starts: !parent && peer.report_starts,
            on_end: Mutex::new(None),
            on_room: Mutex::new(None),
            heartbeat: heartbeat_state,
            spin: Spin::new(spin, local_peer),
            spin_sites: SpinSites::default(),
        });
        Ok((link, peer))
    }

    #[inline]
    fn calls(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `on_end` once when the link ends (at once if it has ended).
    pub(crate) fn set_on_end(&self, on_end: Box<dyn FnOnce() + Send>) {
        *self.on_end.lock().unwrap_or_else(PoisonError::into_inner) = Some(on_end);
        if self.is_ended() {
            let on_end = self
                .on_end
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(on_end) = on_end {
                on_end();
            }
        }
    }

    /// Runs `on_room` whenever the peer grants room in its window.
    pub(crate) fn set_on_room(&self, on_room: Arc<dyn Fn() + Send + Sync>) {
        *self.on_room.lock().unwrap_or_else(PoisonError::into_inner) = Some(on_room);
    }

    /// The peer granted `bytes`: senders waiting for room go ahead.
    fn room_granted(&self, bytes: u64) {
        self.writer.grant(bytes);
        let on_room = self
            .on_room
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(on_room) = on_room {
            on_room();
        }
    }

    /// Writes what is buffered now (before the caller blocks on something else), at most
    /// until `deadline`.
    #[inline]
    pub(crate) fn flush(&self, deadline: Option<Instant>) {
        self.writer.flush(deadline);
    }

    /// Has the link's flusher write what is buffered, without waiting here.
    pub(crate) fn flush_later(&self) {
        self.writer.flush_later();
    }

    /// Says `Bye` and closes our sending half once what is buffered is written (by the
    /// flusher: this never waits for the pipe): the peer sees the end of its input and
    /// winds down. New calls fail with `NotConnected`.
    pub(crate) fn shutdown(&self) {
        let mut bye = Vec::new();
        message::encode_bye(&mut bye);
        self.writer.shutdown(Shutdown::Graceful(&bye));
    }

    /// Waits until every frame sent so far is written: an end about to exit calls this,
    /// so that its last replies reach the peer.
    pub(crate) fn drain_output(&self) {
        self.writer.drain();
    }

    /// Waits until the stream has ended, at most `timeout`; whether it has.
    pub(crate) fn wait_ended(&self, timeout: Duration) -> bool {
        self.token.wait_ended(timeout)
    }

    /// The crew that serves this end, if it runs more than one call at once.
    #[inline]
    pub(crate) fn crew(&self) -> Option<&crew::Crew> {
        self.crew.as_ref()
    }

    /// Tells the parent that its call `id` starts now, if it asked to know.
    #[inline]
    pub(crate) fn starting(&self, id: u64) {
        if self.report_starts {
            self.send_started(id);
        }
    }

    /// Whether a call or event waits to run: queued, or whole in the read buffer.
    pub(crate) fn has_work_waiting(&self) -> bool {
        self.token.has_queued()
            || self.stream.try_lock().is_ok_and(|stream| {
                stream
                    .as_ref()
                    .is_some_and(|s| frame::whole_frame_buffered(s.input.buffer()))
            })
    }

    /// Whether the stream has ended.
    #[inline]
    pub(crate) fn is_ended(&self) -> bool {
        self.token.is_ended()
    }

    /// What the parent learned of its worker's death, once the link saw it (a pool
    /// reports it with the worker's restart).
    pub(crate) fn postmortem(&self) -> Option<Arc<crate::error::Postmortem>> {
        self.gone.get().and_then(|gone| gone.postmortem.clone())
    }

    /// Whether the peer vanished without a `Bye`.
    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Claims the right to dispatch; only one thread may serve a link.
    pub(crate) fn claim_serving(&self) -> bool {
        !self.serving.swap(true, Ordering::AcqRel)
    }
}

impl crate::ready::Room for Link {
    /// Whether the writer would take a frame now without blocking the sender.
    fn poll_room(&self, waker: &std::task::Waker) -> bool {
        self.writer.poll_writable(waker)
    }
}

/// Reads the peer's `Hello` (at most `timeout`, which the input's deadline also bounds
/// while the frame arrives), with errors that say what the peer is.
fn handshake(
    input: &mut ReadBuffer<Input>,
    max: u32,
    timeout: Duration,
) -> std::result::Result<Hello, HandshakeError> {
    use std::io::BufRead;
    if input.buffer().is_empty() && !input.get_ref().wait_readable(timeout) {
        return Err(HandshakeError::Silent(timeout));
    }
    let mut buf = Vec::new();
    let mut read = frame::read_frame(input, max, &mut buf);
    // A ping before any hello is the exit watch's wake (see `PipeInput::woken_on_exit`):
    // the worker exited before it said anything, which the next read tells.
    while matches!(read, Ok(true)) && message::is_ping(&buf) {
        read = frame::read_frame(input, max, &mut buf);
    }
    // What the peer sent, for an error that quotes it.
    let seen = |input: &mut ReadBuffer<Input>, first: &[u8]| {
        let mut bytes = first.to_vec();
        bytes.extend_from_slice(input.fill_buf().unwrap_or_default());
        bytes
    };
    match read {
        Ok(true) => message::decode_hello(&buf).map_err(|e| {
            HandshakeError::Refused(describe_stranger(&buf).unwrap_or_else(|| e.to_string()))
        }),
        Ok(false) => Err(HandshakeError::Closed),
        Err(frame::FrameError::TooLarge { len, .. }) => {
            let first = seen(input, &(len as u32).to_le_bytes());
            Err(HandshakeError::Refused(
                describe_stranger(&first).unwrap_or_else(|| {
                    format!(
                        "the peer is not a coproq endpoint (its first frame claims {len} bytes)"
                    )
                }),
            ))
        }
        Err(frame::FrameError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err(HandshakeError::Silent(timeout))
        }
        Err(e) => Err(HandshakeError::Refused(format!("handshake failed: {e}"))),
    }
}

/// What a peer that does not speak the protocol sent instead, if it reads as text: a
/// program that prints, where a worker was expected.
fn describe_stranger(first: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(first.get(..first.len().min(80))?)
        .ok()
        .or_else(|| {
            // Cut in the middle of a character: up to where it is whole.
            let cut = first.get(..first.len().min(80))?;
            let valid = std::str::from_utf8(cut).err()?.valid_up_to();
            std::str::from_utf8(&cut[..valid]).ok()
        })?;
    let printable = |c: char| !c.is_control() || c.is_whitespace();
    if text.chars().count() < 4 || !text.chars().all(printable) {
        return None;
    }
    Some(format!(
        "the peer is not a coproq endpoint: it printed text instead of speaking the protocol: {:?}",
        text.trim_end()
    ))
}

pub(crate) fn encode_error(name: &str, e: EncodeError) -> Error {
    let reason = match e {
        EncodeError::Value(reason) => reason.to_string(),
        EncodeError::TooLarge(e) => format!("{e} (the peer's maximum frame size)"),
    };
    Error::Encode {
        method: name.to_owned(),
        reason,
    }
}
