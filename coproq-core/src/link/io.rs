//! The two byte streams of a link, as the reader and the writer see them.
//!
//! Both are usually pipe ends that no other process shares ([`PipeInput`],
//! [`PipeOutput`]). On the parent they also watch the worker's exit, so that a worker
//! whose own children still hold the pipes open is seen gone at once: its stream ends
//! once what it wrote is read, and a write towards it fails. A read inside a frame waits
//! at most a stall limit for the rest, so a peer that stops half-way cannot pin what it
//! sent; a write waits at most until its caller's deadline.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, Direction, Waited};

/// A byte stream from the peer that can say whether a read would block.
pub(crate) trait InputStream: Read + Send {
    /// Waits until a read would not block (data, the end, an error, or the peer's exit),
    /// at most `timeout`; whether it would not.
    fn wait_readable(&self, timeout: Duration) -> bool;

    /// While `polling`, a read that finds nothing fails with `WouldBlock` at once instead
    /// of waiting; false if this stream cannot (a spinning reader then polls it with
    /// [`InputStream::wait_readable`] instead).
    fn set_polling(&mut self, polling: bool) -> bool {
        let _ = polling;
        false
    }

    /// Whether a frame has been read in part (its next bytes may wait at most the stall
    /// limit) or the stream is between frames (it may be idle for as long as it likes).
    fn set_mid_frame(&mut self, mid_frame: bool) {
        let _ = mid_frame;
    }

    /// Bounds every wait for input by `deadline` (a start's), or lifts the bound.
    fn set_deadline(&mut self, deadline: Option<Instant>) {
        let _ = deadline;
    }
}

impl InputStream for File {
    fn wait_readable(&self, timeout: Duration) -> bool {
        sys::wait_readable(self.as_fd(), timeout)
    }
}

/// A boxed input stream.
pub(crate) type Input = Box<dyn InputStream>;

/// The read end of a pipe of our own (no other process shares it), whose reads can be
/// tried without waiting: a spinning reader's attempt reads what has arrived in the same
/// system call that finds out whether anything has, where a look first would take two.
///
/// Between frames, a read that must wait is a plain blocking read (the descriptor turns
/// non-blocking when a spin needs it, and back when a read would have to wait, so a
/// reader that never spins, on one CPU, reads as on any pipe). Where the worker's exit is
/// watched, it must still end such a read: either the exit wakes it (see
/// [`PipeInput::woken_on_exit`]), or every wait polls the pipe beside the watch. Inside a
/// frame, and under a start's deadline, waits poll, bounded by the stall limit.
pub(crate) struct PipeInput {
    file: File,
    /// The worker's exit: once it has exited and what it wrote is read, the stream ends.
    exit: Option<Arc<OwnedFd>>,
    /// Set when the watched worker has exited (its exit also wakes a blocked read): from
    /// then on, waits poll. `None` with an exit watch: waits always poll.
    woken: Option<Arc<AtomicBool>>,
    /// The longest a read inside a frame waits for the next bytes.
    stall: Option<Duration>,
    /// No wait for input lasts past this.
    deadline: Option<Instant>,
    /// The descriptor is non-blocking now.
    nonblocking: bool,
    /// A spinning reader is trying: a read that finds nothing fails.
    polling: bool,
    /// A frame has been read in part.
    mid_frame: bool,
}

impl PipeInput {
    fn new(file: File) -> Self {
        Self {
            file,
            exit: None,
            woken: None,
            stall: None,
            deadline: None,
            nonblocking: false,
            polling: false,
            mid_frame: false,
        }
    }

    /// `file`, read as a pipe end of our own (a worker's: its parent's death ends it).
    pub(crate) fn boxed(file: File) -> Input {
        Box::new(Self::new(file))
    }

    /// `file`, whose writer `exit` watches: every wait polls beside the watch, and one
    /// inside a frame lasts at most `stall` (for pipes whose write end only the worker's
    /// side holds: a command's stdout).
    pub(crate) fn watched(file: File, exit: Arc<OwnedFd>, stall: Duration) -> Input {
        Box::new(Self {
            exit: Some(exit),
            stall: Some(stall),
            ..Self::new(file)
        })
    }

    /// `file`, whose writer `exit` watches, with `wake` a copy of the pipe's write end:
    /// when the worker exits, a ping written through `wake` ends a read blocked between
    /// frames, so that such reads need not poll. Falls back to
    /// [`PipeInput::watched`] where the exit cannot be waited for.
    pub(crate) fn woken_on_exit(
        file: File,
        exit: Arc<OwnedFd>,
        wake: File,
        stall: Duration,
    ) -> Input {
        let woken = Arc::new(AtomicBool::new(false));
        let on_exit = {
            let woken = Arc::clone(&woken);
            Box::new(move || {
                woken.store(true, Ordering::Release);
                let mut ping = Vec::new();
                crate::wire::message::encode_ping(&mut ping);
                // Without waiting: a full pipe has data for the reader, which then polls.
                if sys::set_nonblocking(wake.as_fd(), true).is_ok() {
                    let _ = (&wake).write(&ping);
                }
            })
        };
        if !sys::on_exit(Arc::clone(&exit), on_exit) {
            return Self::watched(file, exit, stall);
        }
        Box::new(Self {
            exit: Some(exit),
            woken: Some(woken),
            stall: Some(stall),
            ..Self::new(file)
        })
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> bool {
        let done = sys::set_nonblocking(self.file.as_fd(), nonblocking).is_ok();
        if done {
            self.nonblocking = nonblocking;
        }
        done
    }

    /// Whether a read that finds nothing may block in the kernel (or must poll: inside a
    /// frame, under a deadline, or where the worker's exit would not end the read).
    #[inline]
    fn may_block(&self) -> bool {
        if self.deadline.is_some() || self.mid_frame && self.stall.is_some() {
            return false;
        }
        match (&self.exit, &self.woken) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(woken)) => !woken.load(Ordering::Acquire),
        }
    }

    /// Waits for the next bytes after a read found none: true to read again, `Ok(false)`
    /// at the end (the writer exited and everything it wrote has been read).
    fn wait_for_bytes(&mut self) -> io::Result<bool> {
        let stall = if self.mid_frame { self.stall } else { None };
        let until_deadline = self
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let limit = match (stall, until_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let exit = self.exit.as_deref().map(AsFd::as_fd);
        match sys::wait_fd(self.file.as_fd(), Direction::Read, exit, limit) {
            Waited::Ready => Ok(true),
            Waited::Exited => Ok(false),
            Waited::TimedOut if until_deadline == limit => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not send all of its first message in time",
            )),
            Waited::TimedOut => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer stopped sending in the middle of a frame: nothing arrived for {:?}",
                    limit.unwrap_or_default()
                ),
            )),
        }
    }
}

impl Read for PipeInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.nonblocking && !self.may_block() {
            self.set_nonblocking(true);
        }
        let mut writer_gone = false;
        loop {
            match self.file.read(buf) {
                Ok(n) => {
                    if n > 0 {
                        self.mid_frame = true;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.polling => {
                    return Err(e);
                }
                // The worker has exited and nothing is left of what it wrote: the end,
                // whoever else holds the pipe open.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && writer_gone => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.may_block() => {
                    // About to wait: blocking reads sleep in the kernel in one call.
                    if !self.set_nonblocking(false) {
                        self.file.wait_readable(Duration::MAX);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    writer_gone = !self.wait_for_bytes()?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl InputStream for PipeInput {
    fn wait_readable(&self, timeout: Duration) -> bool {
        let exit = self.exit.as_deref().map(AsFd::as_fd);
        sys::wait_fd(self.file.as_fd(), Direction::Read, exit, Some(timeout)) != Waited::TimedOut
    }

    fn set_polling(&mut self, polling: bool) -> bool {
        if polling && !self.nonblocking && !self.set_nonblocking(true) {
            return false;
        }
        self.polling = polling;
        true
    }

    fn set_mid_frame(&mut self, mid_frame: bool) {
        self.mid_frame = mid_frame;
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }
}

/// A byte stream towards the peer.
pub(crate) trait OutputStream: Send {
    /// Writes `bytes` until all are written or `deadline` passes (`None`: however long it
    /// takes); how many were written. An error means the stream is broken.
    fn write_until(&mut self, bytes: &[u8], deadline: Option<Instant>) -> io::Result<usize>;
}

/// A boxed output stream.
pub(crate) type Output = Box<dyn OutputStream>;

/// The write end of a pipe. Where no other process shares it (`nonblocking`), a write
/// that finds the pipe full waits for room beside the exit watch and at most until its
/// deadline; otherwise (a worker's stdout, which its starter may share) writes block.
pub(crate) struct PipeOutput {
    file: File,
    nonblocking: bool,
    /// The worker's exit: a write towards a worker that exited fails, whoever else holds
    /// the pipe open.
    exit: Option<Arc<OwnedFd>>,
}

impl PipeOutput {
    /// `file`, a pipe end of our own, written without blocking; `exit` watches the
    /// process that reads it.
    pub(crate) fn boxed(file: File, exit: Option<Arc<OwnedFd>>) -> Output {
        let nonblocking = sys::set_nonblocking(file.as_fd(), true).is_ok();
        Box::new(Self {
            file,
            nonblocking,
            exit,
        })
    }

    /// `file`, written with blocking writes (it may be shared with another process,
    /// whose view of the descriptor must not change).
    pub(crate) fn boxed_blocking(file: File) -> Output {
        Box::new(Self {
            file,
            nonblocking: false,
            exit: None,
        })
    }
}

impl OutputStream for PipeOutput {
    fn write_until(&mut self, bytes: &[u8], deadline: Option<Instant>) -> io::Result<usize> {
        if !self.nonblocking {
            self.file.write_all(bytes)?;
            return Ok(bytes.len());
        }
        let mut written = 0;
        while written < bytes.len() {
            match self.file.write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let limit = match deadline {
                        Some(deadline) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Ok(written);
                            }
                            Some(left)
                        }
                        None => None,
                    };
                    let exit = self.exit.as_deref().map(AsFd::as_fd);
                    match sys::wait_fd(self.file.as_fd(), Direction::Write, exit, limit) {
                        Waited::Ready => {}
                        Waited::TimedOut => return Ok(written),
                        Waited::Exited => {
                            return Err(io::Error::new(
                                io::ErrorKind::BrokenPipe,
                                "the worker exited",
                            ));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch on a process that outlives the test (this one's parent... is not a child:
    /// a pipe nobody writes to serves).
    fn never_exits() -> Arc<OwnedFd> {
        let (reader, writer) = io::pipe().unwrap();
        std::mem::forget(writer);
        Arc::new(OwnedFd::from(reader))
    }

    fn pipe() -> (File, File) {
        let (r, w) = io::pipe().unwrap();
        (File::from(OwnedFd::from(r)), File::from(OwnedFd::from(w)))
    }

    #[test]
    fn a_write_to_a_full_pipe_returns_at_its_deadline_with_what_it_wrote() {
        let (_reader, writer) = pipe();
        let mut out = PipeOutput::boxed(writer, None);
        let big = vec![7u8; 8 << 20];
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        let written = out.write_until(&big, Some(deadline)).unwrap();
        assert!(written > 0 && written < big.len(), "{written}");
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_read_inside_a_frame_stalls_out_and_one_between_frames_does_not() {
        let (reader, mut writer) = pipe();
        let mut input = PipeInput::watched(reader, never_exits(), Duration::from_millis(40));
        writer.write_all(b"abc").unwrap();
        let mut buf = [0u8; 16];
        input.set_mid_frame(false);
        assert_eq!(input.read(&mut buf).unwrap(), 3);
        // Bytes of a frame came: the next wait is bounded.
        let err = input.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        // Between frames, the same wait lasts until data comes.
        input.set_mid_frame(false);
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            writer.write_all(b"d").unwrap();
            writer
        });
        assert_eq!(input.read(&mut buf).unwrap(), 1);
        drop(later.join().unwrap());
        assert_eq!(input.read(&mut buf).unwrap(), 0, "the end of the stream");
    }

    #[test]
    fn the_stream_of_an_exited_worker_ends_though_the_pipe_stays_open() {
        let (reader, mut writer) = pipe();
        let child = std::process::Command::new("true").spawn().unwrap();
        let watch = Arc::new(sys::watch_exit(child.id()).unwrap());
        let mut input = PipeInput::watched(reader, Arc::clone(&watch), Duration::from_secs(10));
        writer.write_all(b"last words").unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(input.read(&mut buf).unwrap(), 10);
        // `writer` is still open here, as a grandchild would hold it.
        assert_eq!(input.read(&mut buf).unwrap(), 0);
        let (_reader, writer) = pipe();
        let mut out = PipeOutput::boxed(writer, Some(watch));
        let err = out.write_until(&vec![0u8; 8 << 20], None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let mut child = child;
        let _ = child.wait();
    }

    #[test]
    fn an_exit_wakes_a_read_blocked_between_frames() {
        let (reader, writer) = pipe();
        let wake = writer.try_clone().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let watch = Arc::new(sys::watch_exit(child.id()).unwrap());
        let mut input = PipeInput::woken_on_exit(reader, watch, wake, Duration::from_secs(10));
        // `writer` stays open here, as a grandchild would hold it: only the exit can end
        // this read, which blocks in the kernel until the ping.
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let mut ping = Vec::new();
        crate::wire::message::encode_ping(&mut ping);
        assert_eq!(input.read(&mut buf).unwrap(), ping.len());
        assert_eq!(&buf[..ping.len()], &ping[..]);
        input.set_mid_frame(false);
        assert_eq!(input.read(&mut buf).unwrap(), 0, "then the end");
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(writer);
        let _ = child.wait();
    }
}
