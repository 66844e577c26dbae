//! Starting, watching and ending worker processes.
//!
//! Fork workers start with `posix_spawn`: no copy of this process's page tables, which
//! for a large parent costs more than the whole exec. The link descriptors survive exec
//! through `dup2(fd, fd)` file actions, which clear close-on-exec (POSIX, glibc ≥ 2.29,
//! musl) or `addinherit_np` (macOS). Workers from a user's `Command` start through std,
//! with a pre-exec hook doing the same. Either way the worker arms its own parent-death
//! signal when it starts (see `die_with_parent`).
//!
//! All spawning happens on one long-lived launcher thread, because Linux's parent-death
//! signal fires when the *thread* that spawned a child exits: a worker started from a
//! short-lived thread (each test of `cargo test` runs on one) would die with it.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::io::{FdFlags, fcntl_setfd};
use rustix::process::{Pid, Signal, WaitOptions, getppid, kill_process, waitpid};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use super::LinkFds;

/// The stdin, stdout and stderr of a started worker that its `Command` set to
/// `Stdio::piped()`: the parent's ends, for the user to take.
#[derive(Debug, Default)]
pub(crate) struct ChildStdio {
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Option<ChildStdout>,
    pub(crate) stderr: Option<ChildStderr>,
}

/// A started process: its pid and its piped stdio.
type Started = io::Result<(u32, ChildStdio)>;

type Job = Box<dyn FnOnce() -> Started + Send>;

/// Runs `job` (which starts a process) on the launcher thread.
fn on_launcher(job: Job) -> Started {
    type Launcher = crossbeam_channel::Sender<(Job, crossbeam_channel::Sender<Started>)>;
    static LAUNCHER: OnceLock<io::Result<Launcher>> = OnceLock::new();
    let launcher = LAUNCHER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<(Job, crossbeam_channel::Sender<Started>)>();
        std::thread::Builder::new()
            .name("coproq-launcher".into())
            .spawn(move || {
                for (job, reply) in rx {
                    let _ = reply.send(job());
                }
            })?;
        Ok(tx)
    });
    let launcher = launcher
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    launcher
        .send((job, tx))
        .map_err(|_| io::Error::other("the launcher thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the launcher thread is gone"))?
}

/// Starts a user's `Command` as a worker holding the link's child descriptors (in a
/// process group of its own if `own_group`).
pub(crate) fn spawn_command(
    mut cmd: Command,
    fds: &LinkFds,
    own_group: bool,
) -> io::Result<(u32, ChildStdio)> {
    let inherit = [
        fds.child_read.as_raw_fd(),
        fds.child_write.as_raw_fd(),
        fds.child_descriptors.as_raw_fd(),
    ];
    let hook = move || {
        // Between fork and exec: only async-signal-safe calls, no allocation.
        for fd in inherit {
            // SAFETY: a descriptor this (child) process holds open; borrowed for one call.
            fcntl_setfd(unsafe { BorrowedFd::borrow_raw(fd) }, FdFlags::empty())?;
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl (a plain system call through rustix), which is
    // async-signal-safe, and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
    if own_group {
        cmd.process_group(0);
    }
    launch_command(cmd)
}

/// Spawns `cmd` on the launcher thread. The std `Child` is taken apart at once: we keep
/// its pid (and reap it ourselves) and its piped stdio, whose ends would otherwise close
/// and break the worker's output.
fn launch_command(mut cmd: Command) -> io::Result<(u32, ChildStdio)> {
    on_launcher(Box::new(move || {
        let mut child = cmd.spawn()?;
        let stdio = ChildStdio {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        Ok((child.id(), stdio))
    }))
}

/// Starts this executable again, with `marker` added to the environment, holding the
/// link's child descriptors, with its stderr on `stderr` where given (in a process group
/// of its own if `own_group`).
pub(crate) fn spawn_self(
    marker: (&str, &str),
    fds: &LinkFds,
    stderr: Option<BorrowedFd<'_>>,
    own_group: bool,
) -> io::Result<u32> {
    let path = cstring(self_exe()?.into_os_string())?;
    let arg0 = cstring(
        std::env::args_os()
            .next()
            .unwrap_or_else(|| OsString::from("coproq-worker")),
    )?;
    let mut env = Vec::new();
    for (key, value) in std::env::vars_os() {
        if key != marker.0 {
            let mut entry = key.into_vec();
            entry.push(b'=');
            entry.extend(value.into_vec());
            env.push(cstring(OsString::from_vec(entry))?);
        }
    }
    env.push(cstring(OsString::from(format!(
        "{}={}",
        marker.0, marker.1
    )))?);
    let inherit = [
        fds.child_read.as_raw_fd(),
        fds.child_write.as_raw_fd(),
        fds.child_descriptors.as_raw_fd(),
    ];
    // The descriptor outlives the launch: the caller holds it until this returns.
    let stderr = stderr.map(|fd| fd.as_raw_fd());
    let started = on_launcher(Box::new(move || {
        super::libc::posix_spawn(&path, &arg0, &env, inherit, stderr, own_group)
            .map(|pid| (pid, ChildStdio::default()))
    }));
    started.map(|(pid, _)| pid)
}

fn cstring(s: OsString) -> io::Result<CString> {
    CString::new(s.into_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the environment"))
}

/// The kernel will end this worker when its parent dies (see [`die_with_parent`]).
static PARENT_DEATH_SIGNALLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// In a worker, first thing: die with the parent whose pid the marker gave. On Linux the
/// kernel sends SIGKILL when it goes; everywhere, a worker whose parent died while this
/// armed it (after the caller checked) exits now.
pub(crate) fn die_with_parent(parent: u32) {
    #[cfg(target_os = "linux")]
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_ok() {
        PARENT_DEATH_SIGNALLED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if parent_pid() != parent {
        std::process::exit(0);
    }
}

/// Whether the kernel ends this worker when its parent dies, so that nothing needs to
/// watch for it.
pub(crate) fn parent_death_signalled() -> bool {
    PARENT_DEATH_SIGNALLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts `cmd` with its stdin, stdout and stderr piped to us (a worker whose link runs
/// over its stdio); returns its pid and the three pipes.
pub(crate) fn spawn_piped(mut cmd: Command, own_group: bool) -> io::Result<(u32, ChildStdio)> {
    use std::process::Stdio;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        cmd.process_group(0);
    }
    launch_command(cmd)
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

/// What became of a child.
#[derive(Debug)]
pub(crate) enum Reaped {
    /// Still running.
    Running,
    /// Exited, and now reaped.
    Exited(ExitStatus),
    /// Not ours to reap any more (reaped elsewhere): treat as gone, status unknown.
    Gone,
}

/// Reaps child `pid` if it has exited (`block`: waits until it does).
pub(crate) fn reap(pid: u32, block: bool) -> Reaped {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return Reaped::Gone;
    };
    let options = if block {
        WaitOptions::empty()
    } else {
        WaitOptions::NOHANG
    };
    loop {
        match waitpid(Some(pid), options) {
            Ok(None) => return Reaped::Running,
            Ok(Some((_, status))) => return Reaped::Exited(ExitStatus::from_raw(status.as_raw())),
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Reaped::Gone,
        }
    }
}

/// Sends SIGKILL to child `pid` (not yet reaped, so the pid is still ours).
pub(crate) fn kill(pid: u32) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

/// Sleeps until process `pid` (a child of ours) exits or `timeout` passes; false if this
/// cannot be waited for here (the caller then polls). Linux: a pidfd, readable on exit.
pub(crate) fn wait_exit(pid: u32, timeout: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        let pidfd = Pid::from_raw(pid as i32)
            .map(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()));
        let Some(Ok(pidfd)) = pidfd else {
            return false;
        };
        super::wait_readable(pidfd.as_fd(), timeout);
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
    Pid::as_raw(getppid()) as u32
}

/// The signal that ended a process with `status`, if one did.
pub(crate) fn exit_signal(status: ExitStatus) -> Option<i32> {
    status.signal()
}

/// Whether `signal` is SIGKILL.
pub(crate) fn is_sigkill(signal: i32) -> bool {
    signal == libc::SIGKILL
}

/// The name of signal `signal` (`"SIGKILL"`), for the signals that end processes.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}
