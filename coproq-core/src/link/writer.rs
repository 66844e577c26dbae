//! The sending half of a link: frames are appended to one buffer and written in batches.
//!
//! A sender that needs its frame on the wire now (a call about to be waited for, a reply)
//! writes the whole buffer itself, unless a write is already under way, which then takes
//! its frame along. A sender that does not (`call_async`, `emit`) only appends, and the
//! process-wide flusher thread writes the batch moments later; past `HIGH_WATER` bytes
//! the sender writes (and blocks) itself: that is the back-pressure. One write at a time,
//! outside the lock, so appending never waits for the pipe.
//!
//! Shutting down never waits for a write blocked on a full pipe (the peer may be stopped):
//! it marks the writer closed, and the write under way finishes what is buffered (or, when
//! the link is abandoned, discards it) and drops the stream when it returns.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::Waker;

use crossbeam_channel::Sender;

use crate::wire::run::EventRun;

/// A byte stream towards the peer.
pub(crate) type Output = Box<dyn Write + Send>;

/// Above this many buffered bytes, a sender writes itself instead of leaving it to the
/// flusher.
const HIGH_WATER: usize = 256 * 1024;

/// Below this many buffered bytes, the writer has room for an async sender's next frame
/// (a quarter of `HIGH_WATER`: frames of moderate size append without blocking, and an
/// async sender yields often).
const ROOM: usize = HIGH_WATER / 4;

/// Buffers up to this size are always kept for reuse; bigger ones while they are used.
const KEEP_CAPACITY: usize = 1 << 20;

/// When a frame must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Before `send` returns, or by the write under way.
    Now,
    /// Soon, by the flusher thread (or by the next `Now`).
    Soon,
}

/// The link is closed for sending.
#[derive(Debug)]
pub(crate) struct Closed;

/// How a writer shuts down.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shutdown<'a> {
    /// Write what is buffered, then this last frame (a `Bye`), then close the stream.
    Graceful(&'a [u8]),
    /// Drop what is buffered and close the stream (the peer is gone or broke the protocol).
    Discard,
}

struct Outbox {
    buf: Vec<u8>,
    spare: Vec<u8>,
    out: Option<Output>,
    writing: bool,
    scheduled: bool,
    closed: bool,
    /// Senders sleeping until a write finishes (std's condvar would make a system call
    /// per notify even with nobody to wake).
    sleepers: usize,
    /// Futures waiting for room in the buffer.
    wakers: Vec<Waker>,
    /// The run of events that ends `buf`, which the next event may join; forgotten
    /// whenever `buf` is taken or cleared.
    run: Option<EventRun>,
}

impl Outbox {
    /// Takes the stream back after a write done outside the lock. A broken stream closes
    /// it here, and so does a shutdown once nothing is left to write.
    fn put_back(&mut self, out: Output, ok: bool) {
        if !ok {
            self.buf.clear();
            self.run = None;
            self.closed = true;
        } else if !(self.closed && self.buf.is_empty()) {
            self.out = Some(out);
        }
    }
}

pub(crate) struct Writer {
    state: Mutex<Outbox>,
    written: Condvar,
    /// Some bytes wait in the buffer (a cheap check for readers about to block).
    pending: AtomicBool,
    peer_max: AtomicU32,
    this: Weak<Writer>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(out: Output) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            state: Mutex::new(Outbox {
                buf: Vec::new(),
                spare: Vec::new(),
                out: Some(out),
                writing: false,
                scheduled: false,
                closed: false,
                sleepers: 0,
                wakers: Vec::new(),
                run: None,
            }),
            written: Condvar::new(),
            pending: AtomicBool::new(false),
            peer_max: AtomicU32::new(0),
            this: this.clone(),
        })
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The largest payload the peer accepts (known after the handshake).
    #[inline]
    pub(crate) fn peer_max(&self) -> u32 {
        self.peer_max.load(Ordering::Relaxed)
    }

    pub(crate) fn set_peer_max(&self, max: u32) {
        self.peer_max.store(max, Ordering::Relaxed);
    }

    /// Appends a frame built by `build` (which gets the buffer and the peer's limit and
    /// may fail, leaving nothing behind), then writes as `flush` says.
    pub(crate) fn send<E>(
        &self,
        flush: Flush,
        build: impl FnOnce(&mut Vec<u8>, u32) -> Result<(), E>,
    ) -> Result<Result<(), E>, Closed> {
        self.send_in_run(flush, |buf, _, max| build(buf, max))
    }

    /// [`Writer::send`], where `build` also gets the run of events that ends the buffer
    /// (for an event, which may join it).
    #[inline]
    pub(crate) fn send_in_run<E>(
        &self,
        flush: Flush,
        build: impl FnOnce(&mut Vec<u8>, &mut Option<EventRun>, u32) -> Result<(), E>,
    ) -> Result<Result<(), E>, Closed> {
        let mut state = self.lock();
        if state.closed || state.out.is_none() && !state.writing {
            return Err(Closed);
        }
        let start = state.buf.len();
        let outbox = &mut *state;
        if let Err(e) = build(&mut outbox.buf, &mut outbox.run, self.peer_max()) {
            state.buf.truncate(start);
            return Ok(Err(e));
        }
        self.pending.store(true, Ordering::Release);
        match flush {
            Flush::Now => {
                if !state.writing {
                    self.write_out(state);
                }
            }
            Flush::Soon if state.buf.len() >= HIGH_WATER => {
                // Back-pressure: wait for the write under way, then write ourselves.
                state = self.sleep_while(state, |s| s.writing && s.buf.len() >= HIGH_WATER);
                if !state.writing {
                    self.write_out(state);
                }
            }
            Flush::Soon => {
                if !state.writing && !state.scheduled {
                    state.scheduled = true;
                    drop(state);
                    flusher().send(self.this.clone()).ok();
                }
            }
        }
        Ok(Ok(()))
    }

    /// Whether a `Flush::Soon` frame of moderate size would be taken now without blocking
    /// (the buffer is well below `HIGH_WATER`, or the writer is closed, so that sending
    /// fails at once); if not, `waker` is woken when that changes.
    pub(crate) fn poll_writable(&self, waker: &Waker) -> bool {
        let mut state = self.lock();
        if state.closed || state.buf.len() < ROOM {
            return true;
        }
        if !state.wakers.iter().any(|w| w.will_wake(waker)) {
            state.wakers.push(waker.clone());
        }
        false
    }

    /// Sleeps until a write ends and `cond` no longer holds.
    fn sleep_while<'a>(
        &'a self,
        mut state: MutexGuard<'a, Outbox>,
        cond: impl Fn(&Outbox) -> bool,
    ) -> MutexGuard<'a, Outbox> {
        while cond(&state) {
            state.sleepers += 1;
            state = self
                .written
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.sleepers -= 1;
        }
        state
    }

    /// Runs `write` with the stream to itself, after the frames already buffered (for a
    /// frame written straight from the caller's memory). Waits for a write under way.
    pub(crate) fn send_exclusive(
        &self,
        write: impl FnOnce(&mut Output) -> std::io::Result<()>,
    ) -> Result<(), Closed> {
        let mut state = self.sleep_while(self.lock(), |s| s.writing);
        if state.closed {
            return Err(Closed);
        }
        let Some(mut out) = state.out.take() else {
            return Err(Closed);
        };
        state.writing = true;
        state.scheduled = false;
        let mut queued = std::mem::take(&mut state.buf);
        state.run = None;
        self.pending.store(false, Ordering::Release);
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
        let ok = out
            .write_all(&queued)
            .and_then(|()| write(&mut out))
            .and_then(|()| out.flush())
            .is_ok();
        queued.clear();
        let mut state = self.lock();
        if state.spare.capacity() < queued.capacity() {
            state.spare = queued;
        }
        state.put_back(out, ok);
        if !state.buf.is_empty() && state.out.is_some() {
            // Frames appended meanwhile: write them before letting go.
            self.write_out(state);
        } else {
            state.writing = false;
            if state.sleepers > 0 {
                self.written.notify_all();
            }
        }
        if ok { Ok(()) } else { Err(Closed) }
    }

    /// Writes whatever is buffered, unless a write is already under way.
    pub(crate) fn flush(&self) {
        if !self.has_pending() {
            return;
        }
        let state = self.lock();
        if !state.writing && !state.buf.is_empty() {
            self.write_out(state);
        }
    }

    /// Has the flusher thread write what is buffered (for a reader about to block, which
    /// must never block on a write itself: the peer may be waiting for us to read).
    pub(crate) fn flush_later(&self) {
        let mut state = self.lock();
        if !state.writing && !state.scheduled && !state.buf.is_empty() {
            state.scheduled = true;
            drop(state);
            flusher().send(self.this.clone()).ok();
        }
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Writes batches until the buffer is empty; the caller saw `writing == false`.
    fn write_out<'a>(&'a self, mut state: MutexGuard<'a, Outbox>) {
        state.writing = true;
        state.scheduled = false;
        while !state.buf.is_empty() {
            let Some(mut out) = state.out.take() else {
                break;
            };
            let mut batch = std::mem::take(&mut state.spare);
            std::mem::swap(&mut batch, &mut state.buf);
            state.run = None;
            self.pending.store(false, Ordering::Release);
            let wakers = std::mem::take(&mut state.wakers);
            drop(state);
            // The buffer is empty now: futures waiting for room go ahead.
            wakers.into_iter().for_each(Waker::wake);
            let ok = out.write_all(&batch).and_then(|()| out.flush()).is_ok();
            state = self.lock();
            // Keep a big buffer while big batches keep coming (bulk transfers then write
            // from warm memory); give it back once batches shrink.
            if batch.len() * 4 < batch.capacity() && batch.capacity() > KEEP_CAPACITY {
                batch = Vec::new();
            }
            batch.clear();
            state.spare = batch;
            state.put_back(out, ok);
            if state.sleepers > 0 {
                self.written.notify_all();
            }
        }
        self.pending.store(!state.buf.is_empty(), Ordering::Release);
        state.writing = false;
        if state.sleepers > 0 {
            self.written.notify_all();
        }
    }

    /// Closes the writer: new frames are refused from now on. Never blocks on a write
    /// under way, which then finishes (or discards) the buffer and closes the stream.
    pub(crate) fn shutdown(&self, how: Shutdown<'_>) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        std::mem::take(&mut state.wakers)
            .into_iter()
            .for_each(Waker::wake);
        state.run = None;
        match how {
            Shutdown::Graceful(last) => state.buf.extend_from_slice(last),
            Shutdown::Discard => state.buf.clear(),
        }
        if state.writing {
            return;
        }
        if let Some(mut out) = state.out.take() {
            let _ = out.write_all(&state.buf).and_then(|()| out.flush());
        }
        state.buf.clear();
        self.pending.store(false, Ordering::Release);
    }

    /// Waits until everything buffered so far is written (or the stream broke): for an end
    /// about to exit, whose last replies must not die in the buffer.
    pub(crate) fn drain(&self) {
        let mut state = self.lock();
        loop {
            state = self.sleep_while(state, |s| s.writing);
            if state.buf.is_empty() || state.out.is_none() {
                return;
            }
            self.write_out(state);
            state = self.lock();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// The process-wide thread that writes `Flush::Soon` batches.
fn flusher() -> &'static Sender<Weak<Writer>> {
    static FLUSHER: OnceLock<Sender<Weak<Writer>>> = OnceLock::new();
    FLUSHER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Weak<Writer>>();
        let spawned = std::thread::Builder::new()
            .name("coproq-flusher".into())
            .spawn(move || {
                for writer in rx {
                    if let Some(writer) = writer.upgrade() {
                        writer.flush();
                    }
                }
            });
        if spawned.is_err() {
            // No thread: `Soon` degrades to the next `Now` or reader flush.
            crate::error::say(format_args!(
                "coproq: cannot start the flusher thread; batched frames wait for the next call"
            ));
        }
        tx
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn append(bytes: &'static [u8]) -> impl FnOnce(&mut Vec<u8>, u32) -> Result<(), ()> {
        move |buf, _| {
            buf.extend_from_slice(bytes);
            Ok(())
        }
    }

    #[test]
    fn now_writes_everything_buffered_in_one_batch() {
        let sink = Sink::default();
        let writer = Writer::new(Box::new(sink.clone()));
        {
            // Keep the flusher from racing: mark a write as scheduled.
            writer.lock().scheduled = true;
        }
        writer.send(Flush::Soon, append(b"a")).unwrap().unwrap();
        writer.send(Flush::Soon, append(b"b")).unwrap().unwrap();
        writer.send(Flush::Now, append(b"c")).unwrap().unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![b"abc".to_vec()]);
        assert!(!writer.has_pending());
    }

    #[test]
    fn soon_is_written_by_the_flusher() {
        let sink = Sink::default();
        let writer = Writer::new(Box::new(sink.clone()));
        writer.send(Flush::Soon, append(b"x")).unwrap().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sink.0.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the flusher never wrote"
            );
            std::thread::yield_now();
        }
        assert_eq!(sink.0.lock().unwrap().concat(), b"x");
    }

    #[test]
    fn a_failed_build_leaves_nothing_and_shutdown_closes() {
        let sink = Sink::default();
        let writer = Writer::new(Box::new(sink.clone()));
        let failed = writer.send(Flush::Now, |buf: &mut Vec<u8>, _| {
            buf.extend_from_slice(b"partial");
            Err("no")
        });
        assert!(matches!(failed, Ok(Err("no"))));
        writer.shutdown(Shutdown::Graceful(b"bye"));
        assert_eq!(sink.0.lock().unwrap().concat(), b"bye");
        assert!(writer.send(Flush::Now, append(b"late")).is_err());
    }
}
