//! One connection between two ends, independent of how its two byte streams were made.
//!
//! - [`batch`]: the calls and events the serving loop read in one go.
//! - [`calls`]: calls in flight and the slots their callers wait in.
//! - [`writer`]: frames out, coalesced into few writes.
//! - [`reader`]: frames in, read by whichever thread holds the read token.
//! - [`replies`]: replies read together, delivered under one lock of the call table.
//! - [`read_buffer`]: the buffer frames are read into, sized to the traffic.
//! - [`dispatch`]: the serving loop, the background reader, and waiting for replies.
//! - [`handlers`]: the handler table the dispatcher looks names up in.
//! - [`responder`]: sending the one reply of one call.
//! - [`cancels`]: the calls the peer cancelled.
//! - [`context`]: the deadline and cancel of the call a thread is handling.
//! - [`heartbeat`]: pings, and ending a link whose peer fell silent.
//! - [`spin`]: polling briefly before sleeping until the peer answers.
//!
//! There is no thread between the pipe and a caller. Whoever needs input holds the read
//! token: a caller waiting for its reply reads it itself (one wake-up per side, as on a
//! raw pipe), routing what else arrives to the slots and inbox it belongs to; the serving
//! thread reads calls and answers them on the spot. The token passes to the next queued
//! waiter when its holder stops. Background readers (the serving loop, and the parent's
//! reader thread) take it only after callers have been quiet for a tick, so a busy caller
//! keeps reading for itself.

mod batch;
pub(crate) mod calls;
mod cancels;
pub(crate) mod context;
pub(crate) mod dispatch;
mod handlers;
mod heartbeat;
mod read_buffer;
mod reader;
mod replies;
mod responder;
mod spin;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::VecDeque;
use std::io::Read;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::wire::message::{self, CallHead, EncodeError, EncodedArgs};
use crate::wire::{Entry, Hello, Message, direct, frame, run};
use calls::{Calls, Settled, Slot};
use cancels::Cancels;
pub(crate) use handlers::{Handlers, METHODS_METHOD, Owner, Recent};
use read_buffer::ReadBuffer;
pub(crate) use responder::Responder;
pub(crate) use spin::DEFAULT_SPIN;
use spin::{Site, Spin};
use writer::{Closed, Shutdown, Writer};
pub(crate) use writer::{Flush, Output};

/// A byte stream from the peer that can say whether a read would block.
pub(crate) trait InputStream: Read + Send {
    /// Waits until a read would not block, at most `timeout`; whether it would not.
    fn wait_readable(&self, timeout: Duration) -> bool;

    /// While `polling`, a read that finds nothing fails with `WouldBlock` at once instead
    /// of waiting; false if this stream cannot (a spinning reader then polls it with
    /// [`InputStream::wait_readable`] instead).
    fn set_polling(&mut self, polling: bool) -> bool {
        let _ = polling;
        false
    }
}

impl InputStream for std::fs::File {
    fn wait_readable(&self, timeout: Duration) -> bool {
        use std::os::fd::AsFd;
        crate::sys::wait_readable(self.as_fd(), timeout)
    }
}

/// The read end of a pipe of our own (no other process shares it), whose reads can be
/// tried without waiting: a spinning reader's attempt reads what has arrived in the same
/// system call that finds out whether anything has, where a look first would take two.
/// The descriptor turns non-blocking when a spin first needs it, and back when a read
/// would have to wait, so a reader that never spins (one CPU) reads as on any pipe.
pub(crate) struct PipeInput {
    file: std::fs::File,
    /// The descriptor is non-blocking now.
    nonblocking: bool,
    /// A spinning reader is trying: a read that finds nothing fails.
    polling: bool,
}

impl PipeInput {
    pub(crate) fn boxed(file: std::fs::File) -> Input {
        Box::new(Self {
            file,
            nonblocking: false,
            polling: false,
        })
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> bool {
        use std::os::fd::AsFd;
        let done = crate::sys::set_nonblocking(self.file.as_fd(), nonblocking).is_ok();
        if done {
            self.nonblocking = nonblocking;
        }
        done
    }
}

impl Read for PipeInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.file.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !self.polling => {
                    // About to wait: blocking reads sleep in the kernel in one call.
                    if !self.set_nonblocking(false) {
                        self.file.wait_readable(Duration::MAX);
                    }
                }
                read => return read,
            }
        }
    }
}

impl InputStream for PipeInput {
    fn wait_readable(&self, timeout: Duration) -> bool {
        self.file.wait_readable(timeout)
    }

    fn set_polling(&mut self, polling: bool) -> bool {
        if polling && !self.nonblocking && !self.set_nonblocking(true) {
            return false;
        }
        self.polling = polling;
        true
    }
}

/// A boxed input stream.
pub(crate) type Input = Box<dyn InputStream>;

/// Called by whoever reads the end of the peer's stream, to learn the worker's status.
pub(crate) type EofHook = Box<dyn FnOnce() -> Option<ExitStatus> + Send>;

/// How many received calls and events may wait for dispatch before readers stop reading:
/// beyond this, a fast sender blocks on the full pipe (back-pressure).
const INBOX_CAPACITY: usize = 1024;

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
}

/// The read side: only the token holder touches it.
pub(super) struct Stream {
    input: ReadBuffer<Input>,
    /// The events of a run that was read whole but could not run in place, one message
    /// each, to be routed one at a time as if read one by one (at most
    /// `run::MAX_RUN_EVENTS`).
    events: VecDeque<Message>,
    /// The peer said goodbye.
    bye: bool,
}

/// The read token and its traffic: who reads, who waits to, what waits to be dispatched.
#[derive(Default)]
struct ReadState {
    /// The read token is taken.
    reading: bool,
    /// Callers waiting for the token, first come first served.
    queue: VecDeque<Arc<Slot>>,
    /// Received calls and events not yet dispatched, in arrival order.
    inbox: VecDeque<Message>,
    /// The serving thread's slot while it waits: poked when work arrives.
    dispatcher: Option<Arc<Slot>>,
    /// The stream has ended.
    ended: bool,
    /// Bumped whenever a caller reads or is handed its reply: background readers stay
    /// away while it moves.
    caller_activity: u64,
}

/// Lock-free copies of the `ReadState` counts that readers check before every frame,
/// written whenever its lock is released.
#[derive(Default)]
struct ReadCounts {
    queued: AtomicUsize,
    inboxed: AtomicUsize,
    ended: AtomicBool,
}

/// The `read_state` lock; updates the `ReadCounts` when released.
struct ReadStateGuard<'a> {
    guard: MutexGuard<'a, ReadState>,
    counts: &'a ReadCounts,
}

impl std::ops::Deref for ReadStateGuard<'_> {
    type Target = ReadState;
    fn deref(&self) -> &ReadState {
        &self.guard
    }
}

impl std::ops::DerefMut for ReadStateGuard<'_> {
    fn deref_mut(&mut self) -> &mut ReadState {
        &mut self.guard
    }
}

impl Drop for ReadStateGuard<'_> {
    fn drop(&mut self) {
        self.counts
            .queued
            .store(self.guard.queue.len(), Ordering::Relaxed);
        self.counts
            .inboxed
            .store(self.guard.inbox.len(), Ordering::Relaxed);
        self.counts.ended.store(self.guard.ended, Ordering::Release);
    }
}

/// Both ends share this; handles, the serving thread and readers each hold it.
///
/// Locks, and the order in which they may be held together (never the reverse):
///
/// 1. `stream`: held by the reader (the read-token holder) for as long as it reads.
/// 2. `calls`: taken briefly, also under `stream` (to complete a reply).
/// 3. `read_state`: taken briefly, also under `stream` and after `calls` (`end` takes
///    `calls`, releases it, then takes `read_state`).
///
/// The writer's lock and each slot's lock are leaves: nothing else is taken while one is
/// held. `end` only *tries* `stream` (the reader may hold it), so it never waits for it
/// while holding another lock.
pub(crate) struct Link {
    writer: Arc<Writer>,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
    pub(crate) handlers: Arc<Handlers>,
    stream: Mutex<Option<Stream>>,
    read_state: Mutex<ReadState>,
    /// Copies of `read_state` for readers' per-frame checks, which then take no lock.
    counts: ReadCounts,
    /// Signalled (with `read_state`) when the stream ends.
    ended: Condvar,
    max_frame: u32,
    report_protocol_errors: bool,
    /// Large frame buffers for reuse.
    pool: Arc<frame::Pool>,
    on_eof: Mutex<Option<EofHook>>,
    serving: AtomicBool,
    /// The peer's stream ended without a `Bye`: it died, so queued work is moot.
    abandoned: AtomicBool,
    /// Calls the peer cancelled.
    pub(crate) cancels: Cancels,
    /// Runs once when the link ends (the parent learns that its worker is gone).
    on_end: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// When the peer was last heard from.
    pub(crate) heartbeat: heartbeat::Heartbeat,
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

/// What became of a frame written straight from the sender's memory.
#[derive(Debug)]
enum Direct {
    Sent,
    /// The value did not serialize as one byte string this time: nothing was written.
    NotBytes,
    /// The frame exceeds the peer's limit: nothing was written.
    TooLarge(EncodeError),
    /// The link is closed.
    Closed,
}

/// A worker's `Hello` is a few dozen bytes; anything much longer is not one.
pub(crate) const WORKER_HELLO_MAX: u32 = 4096;

/// How a link starts.
#[derive(Debug)]
pub(crate) struct Connect {
    pub(crate) options: LinkOptions,
    /// What our `Hello` carries for the peer (a parent's fork entry).
    pub(crate) entry: Option<Entry>,
    /// This side is the parent (the peer must be a worker, and the reverse).
    pub(crate) parent: bool,
    /// Parent: the heartbeat interval the worker is asked to keep.
    pub(crate) heartbeat: Option<Duration>,
    /// The largest `Hello` accepted from the peer.
    pub(crate) peer_hello_max: u32,
    /// How long to wait for the peer's `Hello`.
    pub(crate) timeout: Duration,
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

impl Link {
    /// Starts a link on two streams: sends our `Hello` and waits for the peer's.
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
            peer_hello_max,
            timeout,
        } = connect;
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
        };
        let sent = writer.send(Flush::Now, |buf, _| {
            message::encode_hello(buf, &hello);
            Ok::<(), ()>(())
        });
        if sent.is_err() || writer.is_closed() {
            return Err(HandshakeError::Closed);
        }
        // The buffer starts at 16 KiB, which holds hundreds of small frames per read
        // (larger frames are read past it), and grows only while the peer streams.
        let mut input = ReadBuffer::new(input);
        let peer = handshake(&mut input, peer_hello_max, timeout)?;
        if peer.parent == parent {
            let role = if parent { "parent" } else { "worker" };
            return Err(HandshakeError::Refused(format!(
                "the peer is a coproq {role} too (a command that echoes its input back?)"
            )));
        }
        writer.set_peer_max(peer.max_frame);
        // A worker spins as its parent does, unless it chose for itself.
        let spin = match options.spin {
            None if !parent => Duration::from_micros(u64::from(peer.spin_us)),
            _ => our_spin,
        };
        let link = Arc::new(Self {
            writer,
            calls: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(ENTRY_ID + 1),
            handlers,
            stream: Mutex::new(Some(Stream {
                input,
                events: VecDeque::new(),
                bye: false,
            })),
            read_state: Mutex::new(ReadState::default()),
            counts: ReadCounts::default(),
            ended: Condvar::new(),
            max_frame: options.max_frame,
            report_protocol_errors: options.report_protocol_errors,
            pool: Arc::default(),
            on_eof: Mutex::new(on_eof),
            serving: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            cancels: Cancels::default(),
            on_end: Mutex::new(None),
            heartbeat: heartbeat::Heartbeat::default(),
            spin: Spin::new(spin),
            spin_sites: SpinSites::default(),
        });
        Ok((link, peer))
    }

    #[inline]
    fn calls(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_state(&self) -> ReadStateGuard<'_> {
        ReadStateGuard {
            guard: self
                .read_state
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            counts: &self.counts,
        }
    }

    /// Sends a call and registers its slot. `Flush::Now` when the caller will wait at
    /// once; `Flush::Soon` lets pipelined calls share writes. The peer learns what remains
    /// of `deadline`.
    #[inline]
    pub(crate) fn start_call<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
        flush: Flush,
        deadline: Option<Instant>,
    ) -> Result<(u64, Arc<Slot>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::default());
        if self.calls().insert(id, Arc::clone(&slot)).is_err() {
            return Err(Error::NotConnected);
        }
        let head = CallHead {
            id,
            name,
            deadline: deadline.map(|d| d.saturating_duration_since(Instant::now())),
        };
        if let Some(len) = direct::large_bytes(args) {
            let sent = self.send_direct(args, |buf, max| {
                message::encode_call_head(buf, head, len, max)
            });
            let failure = match sent {
                Direct::Sent => return Ok((id, slot)),
                Direct::TooLarge(e) => encode_error(name, e),
                Direct::Closed => Error::NotConnected,
                Direct::NotBytes => Error::Encode {
                    method: name.to_owned(),
                    reason: "the arguments serialized differently twice".into(),
                },
            };
            self.calls().remove(id);
            return Err(failure);
        }
        let sent = self
            .writer
            .send(flush, |buf, max| message::encode_call(buf, head, args, max));
        match sent {
            Ok(Ok(())) => Ok((id, slot)),
            failed => {
                self.calls().remove(id);
                Err(match failed {
                    Ok(Err(e)) => encode_error(name, e),
                    _ => Error::NotConnected,
                })
            }
        }
    }

    /// Sends a call whose arguments were encoded before, its reply to land in `slot` (a
    /// pool's call, whose slot outlives one worker). Fails without settling `slot`.
    pub(crate) fn start_encoded_call(
        &self,
        name: &str,
        args: &EncodedArgs,
        deadline: Option<Instant>,
        slot: &Arc<Slot>,
        flush: Flush,
    ) -> Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self.calls().insert(id, Arc::clone(slot)).is_err() {
            return Err(Error::NotConnected);
        }
        let head = CallHead {
            id,
            name,
            deadline: deadline.map(|d| d.saturating_duration_since(Instant::now())),
        };
        let sent = self.writer.send(flush, |buf, max| {
            message::encode_call_encoded(buf, head, args, max)
        });
        match sent {
            Ok(Ok(())) => Ok(id),
            failed => {
                self.calls().remove(id);
                Err(match failed {
                    Ok(Err(e)) => encode_error(name, e),
                    _ => Error::NotConnected,
                })
            }
        }
    }

    /// Writes a frame whose body is `value`, one large byte string, straight from the
    /// caller's memory after the head that `head` builds.
    fn send_direct<A: Serialize + ?Sized>(
        &self,
        value: &A,
        head: impl FnOnce(&mut Vec<u8>, u32) -> std::result::Result<(), EncodeError>,
    ) -> Direct {
        let mut buf = Vec::new();
        if let Err(e) = head(&mut buf, self.writer.peer_max()) {
            return Direct::TooLarge(e);
        }
        let mut whole = true;
        let sent = self.writer.send_exclusive(|out| {
            whole = direct::write(out, &buf, value)?;
            Ok(())
        });
        match sent {
            Ok(()) if whole => Direct::Sent,
            Ok(()) => Direct::NotBytes,
            Err(Closed) => Direct::Closed,
        }
    }

    /// Sends a reply whose value is one large byte string straight from the handler's
    /// memory; false if `value` is not one (the caller then sends it the usual way).
    pub(crate) fn send_direct_reply<T: Serialize + ?Sized>(&self, id: u64, value: &T) -> bool {
        let Some(len) = direct::large_bytes(value) else {
            return false;
        };
        let sent = self.send_direct(value, |head, max| {
            message::encode_reply_head(head, id, len, max)
        });
        match sent {
            // A closed link drops the reply, as for any other.
            Direct::Sent | Direct::Closed => true,
            // Too large for the peer: the usual way reports it.
            Direct::TooLarge(_) | Direct::NotBytes => false,
        }
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

    /// Tells the peer that nobody waits for call `id` any more (the call stays in the
    /// table, for a pool to count it until the worker answers).
    pub(crate) fn send_cancel(&self, id: u64) {
        // `Soon`: the flusher writes it moments later, and many dropped calls share a write.
        let _ = self.writer.send(Flush::Soon, |buf, _| {
            message::encode_cancel(buf, id);
            Ok::<(), ()>(())
        });
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

    /// Sends a one-way event.
    #[inline]
    pub(crate) fn emit<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<()> {
        match self.writer.send_in_run(Flush::Soon, |buf, run, max| {
            run::encode_event(buf, run, name, args, max)
        }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(encode_error(name, e)),
            Err(_) => Err(Error::NotConnected),
        }
    }

    /// Sends a frame built by `build` (a reply); a closed link drops it.
    #[inline]
    pub(crate) fn send_with(&self, flush: Flush, build: impl FnOnce(&mut Vec<u8>, u32)) {
        let _ = self.writer.send(flush, |buf, max| {
            build(buf, max);
            Ok::<(), ()>(())
        });
    }

    /// Writes what is buffered now (before the caller blocks on something else).
    #[inline]
    pub(crate) fn flush(&self) {
        self.writer.flush();
    }

    /// Says `Bye` (if the stream is free) and closes our sending half: the peer sees the
    /// end of its input and winds down. New calls fail with `NotConnected`.
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
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self
            .read_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !state.ended {
            state = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.ended
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .ended
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
        true
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

/// Reads the peer's `Hello`, with errors that say what the peer is.
fn handshake(
    input: &mut ReadBuffer<Input>,
    max: u32,
    timeout: Duration,
) -> std::result::Result<Hello, HandshakeError> {
    if input.buffer().is_empty() && !input.get_ref().wait_readable(timeout) {
        return Err(HandshakeError::Silent(timeout));
    }
    let mut buf = Vec::new();
    match frame::read_frame(input, max, &mut buf) {
        Ok(true) => message::decode_hello(&buf).map_err(|e| HandshakeError::Refused(e.to_string())),
        Ok(false) => Err(HandshakeError::Closed),
        Err(frame::FrameError::TooLarge { len, .. }) => Err(HandshakeError::Refused(format!(
            "the peer is not a coproq endpoint (its first frame claims {len} bytes)"
        ))),
        Err(e) => Err(HandshakeError::Refused(format!("handshake failed: {e}"))),
    }
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
