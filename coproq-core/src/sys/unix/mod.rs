//! Unix backend: pipes, the start-up hook, and how a child inherits its link.
//!
//! - `process`: spawning, parent death, reaping and killing.

mod process;

pub(crate) use process::{
    ChildStdio, Reaped, die_with_parent, kill, parent_pid, reap, spawn_command, spawn_self,
    wait_exit,
};

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The two pipes of a link: the parent keeps one end of each, the child the other.
#[derive(Debug)]
pub(crate) struct LinkFds {
    /// Parent's read end (worker → parent).
    pub(crate) parent_read: File,
    /// Parent's write end (parent → worker).
    pub(crate) parent_write: File,
    /// Child's read end (parent → worker); closed in the parent after spawning.
    pub(crate) child_read: OwnedFd,
    /// Child's write end (worker → parent); closed in the parent after spawning.
    pub(crate) child_write: OwnedFd,
}

/// Creates the two pipes, all ends close-on-exec (std's `pipe` sets it atomically), so
/// no other child of this process can inherit them.
pub(crate) fn link_fds() -> io::Result<LinkFds> {
    let (to_parent_read, to_parent_write) = io::pipe()?;
    let (to_worker_read, to_worker_write) = io::pipe()?;
    enlarge_pipe(&to_parent_write);
    enlarge_pipe(&to_worker_write);
    Ok(LinkFds {
        parent_read: File::from(OwnedFd::from(to_parent_read)),
        parent_write: File::from(OwnedFd::from(to_worker_write)),
        child_read: OwnedFd::from(to_worker_read),
        child_write: OwnedFd::from(to_parent_write),
    })
}

/// Asks for 1 MiB pipe buffers (Linux; the unprivileged maximum by default): bulk
/// transfers then need a sixteenth of the wake-ups. Best effort: the default size works.
fn enlarge_pipe(pipe: &impl AsRawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on an open descriptor; no memory involved.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
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
    for fd in [read, write] {
        // SAFETY: fstat writes into a zeroed stat buffer we own.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &raw mut stat) } == -1 {
            return Err(io::Error::last_os_error());
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} is not a pipe"),
            ));
        }
        // SAFETY: plain fcntl on a descriptor checked above.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: both descriptors are open, distinct, and from here on owned by these Files
    // alone: the marker that named them has been removed from the environment.
    Ok(unsafe { (File::from_raw_fd(read), File::from_raw_fd(write)) })
}

/// Waits until `fd` is readable (or at its end, or in error: the read reports those), at
/// most `timeout`; whether it is.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up: a sub-millisecond wait must still wait.
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd on the stack.
        let ready = unsafe { libc::poll(&raw mut fds, 1, millis) };
        if ready >= 0 {
            return ready > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return true;
        }
    }
}

/// Ignores SIGPIPE, so that writing to a vanished peer is an error, not death. Rust's
/// runtime does this before `main`, but a fork worker runs before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
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
