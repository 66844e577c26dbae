//! Unix backend: pipes, the start-up hook, and how a child inherits its link.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};

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

/// Makes `cmd` hand the child its two link descriptors (under their own numbers, which
/// the worker marker names) and, on Linux, die with its parent.
pub(crate) fn configure_child(cmd: &mut Command, fds: &LinkFds) {
    let inherit = [fds.child_read.as_raw_fd(), fds.child_write.as_raw_fd()];
    let parent = std::process::id();
    let hook = move || {
        // Between fork and exec: only async-signal-safe calls.
        for fd in inherit {
            // SAFETY: fcntl on a descriptor this (child) process owns; no memory involved.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        set_parent_death_signal(parent)
    };
    // SAFETY: the hook only calls fcntl, prctl and getppid, which are async-signal-safe,
    // and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(parent: u32) -> io::Result<()> {
    // SAFETY: plain syscalls without pointers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before the signal was armed.
        if libc::getppid() as u32 != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
#[allow(clippy::unnecessary_wraps)]
fn set_parent_death_signal(_parent: u32) -> io::Result<()> {
    // No such signal here: the worker notices its parent's death by the end of its pipe.
    Ok(())
}

/// Spawns `cmd`. On Linux this goes through one long-lived launcher thread, because the
/// parent-death signal fires when the *thread* that forked the child exits: a worker
/// forked from a short-lived thread (each test of `cargo test` runs on one) would die
/// with it.
#[cfg_attr(target_os = "linux", allow(unused_mut))]
pub(crate) fn spawn(mut cmd: Command) -> io::Result<Child> {
    #[cfg(target_os = "linux")]
    {
        use std::sync::OnceLock;
        type Job = (Command, crossbeam_channel::Sender<io::Result<Child>>);
        static LAUNCHER: OnceLock<io::Result<crossbeam_channel::Sender<Job>>> = OnceLock::new();
        let launcher = LAUNCHER.get_or_init(|| {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            std::thread::Builder::new()
                .name("coproq-launcher".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })?;
            Ok(tx)
        });
        let launcher = launcher
            .as_ref()
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        launcher
            .send((cmd, tx))
            .map_err(|_| io::Error::other("the launcher thread is gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the launcher thread is gone"))?
    }
    #[cfg(not(target_os = "linux"))]
    cmd.spawn()
}

/// The path to re-execute for a fork worker. Linux's `/proc/self/exe` still works when
/// the file was replaced or deleted (a rebuild during a test run).
pub(crate) fn self_exe() -> io::Result<PathBuf> {
    if cfg!(target_os = "linux") {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    }
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

impl crate::link::InputStream for File {
    fn wait_readable(&self, timeout: std::time::Duration) -> bool {
        let mut fds = libc::pollfd {
            fd: self.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up: a sub-millisecond wait must still wait.
        let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: one valid pollfd on the stack.
            let ready = unsafe { libc::poll(&raw mut fds, 1, millis) };
            if ready >= 0 {
                // Hang-up and errors count as readable: the read reports them.
                return ready > 0;
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return true;
            }
        }
    }
}

/// Sleeps until process `pid` (a child of ours) exits or `timeout` passes; false if this
/// cannot be waited for here (the caller then polls). Linux: a pidfd, readable on exit.
pub(crate) fn wait_exit(pid: u32, timeout: std::time::Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let Ok(fd) = i32::try_from(fd) else {
            return false;
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: the descriptor was just opened and is owned here alone.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
        crate::link::InputStream::wait_readable(&File::from(pidfd), timeout);
        true
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pid, timeout);
        false
    }
}

/// This process's parent.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Ignores SIGPIPE, so that writing to a vanished peer is an error, not death. Rust's
/// runtime does this before `main`, but a fork worker runs before `main`.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The start-up hook: runs before `main` in every program that links coproq, and turns
/// the process into a worker if a coproq parent started it as one.
extern "C" fn start_hook() {
    crate::launch::on_start();
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

/// Touches the hook's static so that the linker keeps the object file that holds it
/// (a `#[used]` static alone does not pull an object out of an rlib).
pub(crate) fn ensure_start_hook_linked() {
    // SAFETY: reading an initialised static through a valid pointer.
    let _ = unsafe { std::ptr::read_volatile(&raw const START_HOOK) };
}
