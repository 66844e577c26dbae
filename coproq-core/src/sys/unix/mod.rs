//! Unix backend: pipes, waiting for input, the start-up hook, and how a child inherits
//! its link. System calls go through rustix's safe wrappers.
//!
//! - `process`: spawning, parent death, reaping and killing.
//! - `wait`: waiting on a descriptor with a limit, beside a watch on a process's exit.
//! - `descriptors`: the socket pair beside a link's pipes that passes descriptors.
//! - `shared_memory`: sealed memory objects, made, checked and mapped read-only.
//! - `memory`: a worker's memory limit and resident size, and out-of-memory kills.
//! - `libc`: the calls rustix does not wrap (`posix_spawn`, a signal disposition, the
//!   secure-execution flag).

mod descriptors;
mod libc;
mod memory;
mod process;
mod shared_memory;
mod wait;

pub(crate) use self::libc::{ignore_sigpipe, secure_execution};
pub(crate) use descriptors::{
    MAX_DESCRIPTORS, RecvError as DescriptorRecvError, SendError as DescriptorSendError,
    recv_group, send_group,
};
pub(crate) use memory::{OomCounter, limit_memory, oom_kills, resident_bytes};
pub(crate) use shared_memory::{Mapping, create_sealed, open_sealed};
pub(crate) use wait::{Direction, Waited, on_exit, wait_fd, watch_exit};

pub(crate) use process::{
    ChildStdio, Reaped, die_with_parent, exit_signal, is_sigkill, kill, parent_death_signalled,
    parent_pid, reap, self_exe, signal_name, spawn_command, spawn_piped, spawn_self, wait_exit,
};

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FileType, fstat};
use rustix::io::{FdFlags, fcntl_setfd};

/// The two pipes of a link and its descriptor socket pair: the parent keeps one end of
/// each, the child the other.
#[derive(Debug)]
pub(crate) struct LinkFds {
    /// Parent's read end (worker → parent).
    pub(crate) parent_read: File,
    /// Parent's write end (parent → worker).
    pub(crate) parent_write: File,
    /// Parent's end of the socket that passes descriptors (both ways).
    pub(crate) parent_descriptors: OwnedFd,
    /// Child's read end (parent → worker); closed in the parent after spawning.
    pub(crate) child_read: OwnedFd,
    /// Child's write end (worker → parent); closed in the parent after spawning.
    pub(crate) child_write: OwnedFd,
    /// Child's end of the descriptor socket; closed in the parent after spawning.
    pub(crate) child_descriptors: OwnedFd,
}

/// Creates the two pipes and the socket pair, all ends close-on-exec (std's `pipe` sets
/// it atomically), so no other child of this process can inherit them.
pub(crate) fn link_fds() -> io::Result<LinkFds> {
    let (to_parent_read, to_parent_write) = io::pipe()?;
    let (to_worker_read, to_worker_write) = io::pipe()?;
    let (parent_descriptors, child_descriptors) = descriptors::socket_pair()?;
    enlarge_pipe(&to_parent_write);
    enlarge_pipe(&to_worker_write);
    Ok(LinkFds {
        parent_read: File::from(OwnedFd::from(to_parent_read)),
        parent_write: File::from(OwnedFd::from(to_worker_write)),
        parent_descriptors,
        child_read: OwnedFd::from(to_worker_read),
        child_write: OwnedFd::from(to_parent_write),
        child_descriptors,
    })
}

/// Asks for 1 MiB pipe buffers (Linux; the unprivileged maximum by default): bulk
/// transfers then need a sixteenth of the wake-ups. Best effort: the default size works.
fn enlarge_pipe(pipe: &impl AsFd) {
    #[cfg(target_os = "linux")]
    let _ = rustix::pipe::fcntl_setpipe_size(pipe, 1 << 20);
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
}

/// In a worker: adopts the two descriptors that the marker names, after checking that
/// they are open pipes, and makes them close-on-exec so the worker's own children do
/// not inherit them.
pub(crate) fn take_link_fds(read: RawFd, write: RawFd) -> io::Result<(File, File)> {
    if read == write || read < 3 || write < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid link descriptors",
        ));
    }
    for raw in [read, write] {
        // SAFETY: only borrowed for the two calls below, which fail cleanly (EBADF) if
        // `raw` is not open; it is adopted below only once both succeeded.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let stat = fstat(fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {raw} is not a pipe"),
            ));
        }
        fcntl_setfd(fd, FdFlags::CLOEXEC)?;
    }
    // SAFETY: both descriptors are open, distinct, and from here on owned by these Files
    // alone: the marker that named them has been removed from the environment.
    Ok(unsafe { (File::from_raw_fd(read), File::from_raw_fd(write)) })
}

/// In a worker: adopts the descriptor socket that the marker names, after checking that
/// it is an open socket other than the link's pipes, and makes it close-on-exec.
pub(crate) fn take_descriptor_socket(raw: RawFd, pipes: [RawFd; 2]) -> io::Result<OwnedFd> {
    if raw < 3 || pipes.contains(&raw) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid descriptor socket",
        ));
    }
    // SAFETY: only borrowed for the two calls below, which fail cleanly (EBADF) if `raw`
    // is not open; it is adopted below only once both succeeded.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    if !descriptors::is_socket(fd) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {raw} is not a socket"),
        ));
    }
    fcntl_setfd(fd, FdFlags::CLOEXEC)?;
    // SAFETY: open, not one of the pipes, and from here on owned by this OwnedFd alone
    // (the marker that named it has been removed from the environment).
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Makes `raw` close-on-exec, if it is open: a worker's link descriptors must not leak
/// into processes it starts, even before its `main` adopts them.
pub(crate) fn close_on_exec(raw: RawFd) -> io::Result<()> {
    // SAFETY: only borrowed for one fcntl, which fails cleanly (EBADF) if `raw` is not
    // open.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    fcntl_setfd(fd, FdFlags::CLOEXEC)?;
    Ok(())
}

/// Takes this process's stdin and stdout as a link's two streams (on new descriptors),
/// then points descriptor 1 at stderr, so that printing cannot corrupt the link, and
/// descriptor 0 at `/dev/null`, so that reading stdin cannot steal its bytes.
pub(crate) fn take_stdio() -> io::Result<(File, File)> {
    use std::io::Write;
    let read = rustix::io::fcntl_dupfd_cloexec(io::stdin(), 3)?;
    let write = rustix::io::fcntl_dupfd_cloexec(io::stdout(), 3)?;
    // What was printed before goes where it was meant to go.
    let _ = io::stdout().flush();
    rustix::stdio::dup2_stdout(io::stderr())?;
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok((File::from(read), File::from(write)))
}

/// Makes reads of `fd` return `WouldBlock` instead of waiting, or wait again (for a
/// descriptor that no other process shares: the flag belongs to the open file, not to
/// the descriptor).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    let flags = if nonblocking {
        flags | rustix::fs::OFlags::NONBLOCK
    } else {
        flags - rustix::fs::OFlags::NONBLOCK
    };
    rustix::fs::fcntl_setfl(fd, flags)?;
    Ok(())
}

/// Blocks until the other end of `fd` hangs up (every writer of a pipe closed it, or the
/// socket's peer did), without reading from it.
pub(crate) fn wait_hangup(fd: BorrowedFd<'_>) {
    // No events asked for: only a hang-up or an error (always reported) ends the wait, so
    // data waiting to be read does not.
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::empty())];
    loop {
        match poll(&mut fds, None) {
            Ok(ready) if ready > 0 => return,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Whether process `pid` may run on a CPU this process may not: then it can run while
/// a thread of ours waits for it, even where this process has one CPU. False where
/// either's CPUs cannot be read (and off Linux, which has no affinity to read).
pub(crate) fn may_run_elsewhere(pid: u32) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::thread::{CpuSet, sched_getaffinity};
        let Some(peer) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        let (Ok(ours), Ok(theirs)) = (sched_getaffinity(None), sched_getaffinity(Some(peer)))
        else {
            return false;
        };
        (0..CpuSet::MAX_CPU).any(|cpu| theirs.is_set(cpu) && !ours.is_set(cpu))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = pid;
        false
    }
}

/// A monotonic clock that is cheap to read but advances only every few milliseconds (a
/// scheduler tick on Linux), for telling slow handlers from fast ones on the hot path.
pub(crate) fn coarse_now() -> std::time::Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let clock = rustix::time::ClockId::MonotonicCoarse;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let clock = rustix::time::ClockId::Monotonic;
    let now = rustix::time::clock_gettime(clock);
    std::time::Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// The machine's monotonic clock (`CLOCK_MONOTONIC`), which every process on it shares
/// (within one time namespace), in microseconds.
pub(crate) fn monotonic_micros() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000
}

/// Waits until `fd` is readable (or at its end, or in error: the read reports those), at
/// most `timeout`; whether it is.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let timeout = Timespec::try_from(timeout).ok();
    let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
    loop {
        match poll(&mut fds, timeout.as_ref()) {
            Ok(ready) => return ready > 0,
            Err(rustix::io::Errno::INTR) => {}
            // Let the read report it.
            Err(_) => return true,
        }
    }
}

/// Declares `$hook` to run before `main` in every program that links this crate (through
/// `.init_array` or `__mod_init_func`), and `fn ensure_start_hook_linked()`, which keeps
/// the object that holds it linked (a `#[used]` static alone does not pull an object out
/// of an rlib).
macro_rules! before_main {
    ($hook:path) => {
        extern "C" fn start_hook() {
            $hook();
        }

        // SAFETY: these sections hold pointers to functions the loader calls before
        // `main`, with no arguments; `start_hook` is exactly such a function, and it is
        // the only thing placed there.
        #[used]
        #[cfg_attr(
            any(target_os = "linux", target_os = "android", target_os = "freebsd"),
            unsafe(link_section = ".init_array")
        )]
        #[cfg_attr(
            target_vendor = "apple",
            unsafe(link_section = "__DATA,__mod_init_func")
        )]
        static START_HOOK: extern "C" fn() = start_hook;

        /// Touches the start-up hook's static, so that the linker keeps it.
        pub(crate) fn ensure_start_hook_linked() {
            // SAFETY: reading an initialised static through a valid pointer.
            let _ = unsafe { std::ptr::read_volatile(&raw const START_HOOK) };
        }
    };
}
pub(crate) use before_main;

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use rustix::process::Pid;
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

    /// A child process, killed when dropped.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn only(cpu: usize) -> CpuSet {
        let mut set = CpuSet::new();
        set.set(cpu);
        set
    }

    #[test]
    fn a_peer_may_run_elsewhere_only_on_a_cpu_we_may_not() {
        let allowed: Vec<usize> = {
            let ours = sched_getaffinity(None).expect("our CPUs");
            (0..CpuSet::MAX_CPU).filter(|&c| ours.is_set(c)).collect()
        };
        let child = Child(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("sleep"),
        );
        let pid = Pid::from_raw(i32::try_from(child.0.id()).expect("pid")).expect("pid");
        // On Linux affinity is per thread: this test thread pins itself alone.
        let test_thread = std::thread::spawn(move || {
            sched_setaffinity(None, &only(allowed[0])).expect("pin ourselves");
            sched_setaffinity(Some(pid), &only(allowed[0])).expect("pin the child");
            let same_cpu = super::may_run_elsewhere(child.0.id());
            let other_cpu = allowed.get(1).map(|&other| {
                sched_setaffinity(Some(pid), &only(other)).expect("pin the child");
                super::may_run_elsewhere(child.0.id())
            });
            (same_cpu, other_cpu)
        });
        let (same_cpu, other_cpu) = test_thread.join().expect("the test thread");
        assert!(!same_cpu, "a peer on our only CPU cannot run while we spin");
        // One CPU in all: there is no other to pin the child to.
        if let Some(other_cpu) = other_cpu {
            assert!(other_cpu, "a peer pinned to another CPU can");
        }
        assert!(!super::may_run_elsewhere(u32::MAX), "no such process");
    }
}
