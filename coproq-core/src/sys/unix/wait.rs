//! Waiting on a link's descriptor with a limit, beside a watch on the worker's exit, so
//! that no wait outlives its deadline and none outlives the worker: a pipe that the
//! worker's own children still hold open would otherwise keep a reader or a writer
//! waiting after the worker is gone.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// Which way a wait looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Until there is something to read (or the end of the stream).
    Read,
    /// Until there is room to write (or the reader is gone).
    Write,
}

/// What a wait came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The descriptor is ready (or in error, or hung up: the next read or write says so).
    Ready,
    /// The watched process exited, and the descriptor is not ready.
    Exited,
    /// The limit passed first.
    TimedOut,
}

/// Waits until `fd` is ready in `direction`, the process that `exit` watches (see
/// [`watch_exit`]) has exited, or `limit` passes (`None`: no limit). A descriptor that is
/// ready wins over an exit seen at the same time, so what a worker wrote before it died
/// is still read.
pub(crate) fn wait_fd(
    fd: BorrowedFd<'_>,
    direction: Direction,
    exit: Option<BorrowedFd<'_>>,
    limit: Option<Duration>,
) -> Waited {
    let flags = match direction {
        Direction::Read => PollFlags::IN,
        Direction::Write => PollFlags::OUT,
    };
    let deadline = limit.and_then(|limit| Instant::now().checked_add(limit));
    loop {
        let timeout = match deadline {
            Some(deadline) => Some(deadline.saturating_duration_since(Instant::now())),
            None => limit,
        };
        let timespec = timeout.and_then(|t| Timespec::try_from(t).ok());
        let mut fds = [
            PollFd::from_borrowed_fd(fd, flags),
            // A watch turns readable (a pidfd) or hangs up (a pipe) when the process exits.
            PollFd::from_borrowed_fd(exit.unwrap_or(fd), PollFlags::IN),
        ];
        let used = if exit.is_some() { 2 } else { 1 };
        match poll(&mut fds[..used], timespec.as_ref()) {
            Ok(0) => return Waited::TimedOut,
            Ok(_) if !fds[0].revents().is_empty() => return Waited::Ready,
            Ok(_) => return Waited::Exited,
            Err(rustix::io::Errno::INTR) => {}
            // Let the read or write report it.
            Err(_) => return Waited::Ready,
        }
    }
}

/// A descriptor that turns readable once process `pid`, a child of this process, has
/// exited (without reaping it, so that its status can still be learned).
///
/// On Linux this is a pidfd. Elsewhere (and on kernels without pidfds) a thread waits
/// for the exit with `waitid(WNOWAIT)` and then closes the write end of a pipe, whose read
/// end is returned: a pipe whose writers are gone polls as readable.
pub(crate) fn watch_exit(pid: u32) -> io::Result<OwnedFd> {
    let Some(child) = rustix::process::Pid::from_raw(pid as i32) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "pid 0"));
    };
    #[cfg(target_os = "linux")]
    if let Ok(pidfd) = rustix::process::pidfd_open(child, rustix::process::PidfdFlags::empty()) {
        return Ok(pidfd);
    }
    let (watch, exited) = io::pipe()?;
    std::thread::Builder::new()
        .name("coproq-exit-watch".into())
        .spawn(move || {
            use rustix::process::{WaitId, WaitIdOptions, waitid};
            let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
            // Reaped elsewhere meanwhile (ECHILD), or any other error: it is gone.
            while let Err(rustix::io::Errno::INTR) = waitid(WaitId::Pid(child), options) {}
            drop(exited);
        })?;
    Ok(OwnedFd::from(watch))
}

/// What runs when a watched process exits.
type OnExit = Box<dyn FnOnce() + Send>;

/// Watches registered and not yet taken in by the watcher thread.
static NEW_WATCHES: std::sync::Mutex<Vec<(std::sync::Arc<OwnedFd>, OnExit)>> =
    std::sync::Mutex::new(Vec::new());

/// Runs `on_exit` once the process that `exit` (from [`watch_exit`]) watches has exited,
/// on one process-wide thread that polls every watch; the callback must be quick and
/// must not block. False (and `on_exit` dropped) if that thread could not be started.
pub(crate) fn on_exit(exit: std::sync::Arc<OwnedFd>, on_exit: OnExit) -> bool {
    use std::io::Write;
    // Written to when a watch is added, to wake the thread.
    static ADDED: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let Some(added) = ADDED.get_or_init(start_exit_watcher) else {
        return false;
    };
    NEW_WATCHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((exit, on_exit));
    let _ = (&*added).write(&[1]);
    true
}

/// Starts the watcher thread; the pipe that wakes it.
fn start_exit_watcher() -> Option<std::fs::File> {
    let (added_read, added) = io::pipe().ok()?;
    let added_read = OwnedFd::from(added_read);
    std::thread::Builder::new()
        .name("coproq-exit-watch".into())
        .spawn(move || watch_exits(&added_read))
        .ok()?;
    Some(std::fs::File::from(OwnedFd::from(added)))
}

/// The watcher thread: polls the watches, and runs the callbacks of those that fired.
fn watch_exits(added: &OwnedFd) {
    let mut watches: Vec<(std::sync::Arc<OwnedFd>, OnExit)> = Vec::new();
    loop {
        let new = std::mem::take(
            &mut *NEW_WATCHES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        watches.extend(new);
        let fired: Vec<usize> = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(watches.len() + 1);
            fds.push(PollFd::new(added, PollFlags::IN));
            fds.extend(
                watches
                    .iter()
                    .map(|(fd, _)| PollFd::new(&**fd, PollFlags::IN)),
            );
            match poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                // Nothing sensible to do but look again a little later.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
            if !fds[0].revents().is_empty() {
                let mut bytes = [0u8; 64];
                let _ = rustix::io::read(added, &mut bytes);
            }
            fds[1..]
                .iter()
                .enumerate()
                .filter(|(_, fd)| !fd.revents().is_empty())
                .map(|(i, _)| i)
                .collect()
        };
        // From the highest index down, so that each removal leaves the rest in place.
        for i in fired.into_iter().rev() {
            let (_, on_exit) = watches.swap_remove(i);
            on_exit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::process::Command;

    #[test]
    fn a_wait_ends_at_data_at_its_limit_or_at_an_exit() {
        let (mut reader, mut writer) = io::pipe().unwrap();
        let started = Instant::now();
        let waited = wait_fd(
            reader.as_fd(),
            Direction::Read,
            None,
            Some(Duration::from_millis(30)),
        );
        assert_eq!(waited, Waited::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(30));
        writer.write_all(b"x").unwrap();
        assert_eq!(
            wait_fd(reader.as_fd(), Direction::Read, None, None),
            Waited::Ready
        );
        let mut byte = [0u8];
        reader.read_exact(&mut byte).unwrap();

        // A child that exits while the pipe stays open (we hold its write end).
        let child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let watch = watch_exit(child.id()).unwrap();
        let waited = wait_fd(
            reader.as_fd(),
            Direction::Read,
            Some(watch.as_fd()),
            Some(Duration::from_secs(20)),
        );
        assert_eq!(waited, Waited::Exited);
        // Not reaped by the watch: its status is still there to be had.
        let mut child = child;
        assert_eq!(child.wait().unwrap().code(), Some(3));
    }
}
