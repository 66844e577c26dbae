//! The sending half of a link: whole frames, written under one lock.
//!
//! A writer blocked on a full pipe holds the lock; that is the back-pressure. Shutting
//! down must not wait for such a writer (the peer may be stopped), so `shutdown` marks
//! the writer closed and drops the stream at once if it can, or else the blocked writer
//! drops it as soon as its write returns.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// A byte stream towards the peer.
pub(crate) type Output = Box<dyn Write + Send>;

pub(crate) struct Writer {
    out: Mutex<Option<Output>>,
    closed: AtomicBool,
    peer_max: AtomicU32,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// The link is closed for sending.
#[derive(Debug)]
pub(crate) struct Closed;

impl Writer {
    pub(crate) fn new(out: Output) -> Self {
        Self {
            out: Mutex::new(Some(out)),
            closed: AtomicBool::new(false),
            peer_max: AtomicU32::new(0),
        }
    }

    /// The largest payload the peer accepts (known after the handshake).
    pub(crate) fn peer_max(&self) -> u32 {
        self.peer_max.load(Ordering::Relaxed)
    }

    pub(crate) fn set_peer_max(&self, max: u32) {
        self.peer_max.store(max, Ordering::Relaxed);
    }

    /// Writes one whole frame.
    pub(crate) fn send(&self, frame: &[u8]) -> Result<(), Closed> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let result = match out.as_mut() {
            Some(stream) if !self.closed.load(Ordering::Acquire) => stream
                .write_all(frame)
                .and_then(|()| stream.flush())
                .map_err(|_| Closed),
            _ => Err(Closed),
        };
        if result.is_err() || self.closed.load(Ordering::Acquire) {
            *out = None;
        }
        result
    }

    /// Sends `last` (a `Bye`) if the stream is free within a short while, then closes it.
    pub(crate) fn shutdown(&self, last: Option<&[u8]>) {
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            match self.out.try_lock() {
                Ok(mut out) => {
                    self.closed.store(true, Ordering::Release);
                    if let (Some(stream), Some(frame)) = (out.as_mut(), last) {
                        let _ = stream.write_all(frame).and_then(|()| stream.flush());
                    }
                    *out = None;
                    return;
                }
                Err(TryLockError::Poisoned(p)) => {
                    self.closed.store(true, Ordering::Release);
                    *p.into_inner() = None;
                    return;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TryLockError::WouldBlock) => {
                    // A writer is stuck on a full pipe: it drops the stream when it returns.
                    self.closed.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
