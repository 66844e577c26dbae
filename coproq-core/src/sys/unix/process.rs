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
use std::os::fd::{AsRawFd, RawFd};
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
    let inherit = [fds.child_read.as_raw_fd(), fds.child_write.as_raw_fd()];
    let hook = move || {
        // Between fork and exec: only async-signal-safe calls, no allocation.
        for fd in inherit {
            // SAFETY: fcntl on a descriptor this (child) process owns; no memory involved.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl, which is async-signal-safe, and allocates nothing.
    unsafe { cmd.pre_exec(hook) };
    if own_group {
        cmd.process_group(0);
    }
    // The std `Child` is taken apart at once: we keep its pid (and reap it ourselves) and
    // its piped stdio, whose ends would otherwise close and break the worker's output.
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
/// link's child descriptors (in a process group of its own if `own_group`).
pub(crate) fn spawn_self(marker: (&str, &str), fds: &LinkFds, own_group: bool) -> io::Result<u32> {
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
    let inherit = [fds.child_read.as_raw_fd(), fds.child_write.as_raw_fd()];
    let started = on_launcher(Box::new(move || {
        posix_spawn(&path, &arg0, &env, inherit, own_group).map(|pid| (pid, ChildStdio::default()))
    }));
    started.map(|(pid, _)| pid)
}

fn cstring(s: OsString) -> io::Result<CString> {
    CString::new(s.into_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the environment"))
}

/// `posix_spawn(path)` with argv `[arg0]`, environment `env`, and `inherit` kept open;
/// in a new process group if `own_group`.
fn posix_spawn(
    path: &CString,
    arg0: &CString,
    env: &[CString],
    inherit: [RawFd; 2],
    own_group: bool,
) -> io::Result<u32> {
    let arg_vector = [arg0.as_ptr().cast_mut(), std::ptr::null_mut()];
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());
    let check = |code: libc::c_int| {
        if code == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(code))
        }
    };
    // SAFETY: the file actions and attributes are initialised before use and destroyed
    // on every path; every pointer handed to posix_spawn outlives the call (argv and envp
    // point into CStrings owned by the caller, and both arrays end with a null pointer).
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&raw mut actions))?;
        if let Err(e) = check(libc::posix_spawnattr_init(&raw mut attr)) {
            libc::posix_spawn_file_actions_destroy(&raw mut actions);
            return Err(e);
        }
        let result = (|| {
            for fd in inherit {
                keep_open(&raw mut actions, fd)?;
            }
            // A clean signal state, as std gives its children: no blocked signals, and
            // SIGPIPE back to its default (the worker then sets what it needs).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut empty);
            check(libc::posix_spawnattr_setsigmask(
                &raw mut attr,
                &raw const empty,
            ))?;
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&raw mut pipe);
            libc::sigaddset(&raw mut pipe, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(
                &raw mut attr,
                &raw const pipe,
            ))?;
            let mut flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            if own_group {
                // Group 0: a new group whose id is the child's pid.
                check(libc::posix_spawnattr_setpgroup(&raw mut attr, 0))?;
                flags |= libc::POSIX_SPAWN_SETPGROUP;
            }
            check(libc::posix_spawnattr_setflags(&raw mut attr, flags as _))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &raw mut pid,
                path.as_ptr(),
                &raw const actions,
                &raw const attr,
                arg_vector.as_ptr(),
                envp.as_ptr(),
            ))?;
            Ok(pid as u32)
        })();
        libc::posix_spawnattr_destroy(&raw mut attr);
        libc::posix_spawn_file_actions_destroy(&raw mut actions);
        result
    }
}

/// A file action that keeps `fd` open across exec under its own number.
///
/// # Safety
///
/// `actions` must be initialised.
unsafe fn keep_open(actions: *mut libc::posix_spawn_file_actions_t, fd: RawFd) -> io::Result<()> {
    #[cfg(target_vendor = "apple")]
    // SAFETY: per this function's contract.
    let code = unsafe { libc::posix_spawn_file_actions_addinherit_np(actions, fd) };
    // `dup2(fd, fd)` clears close-on-exec (Austin Group issue 411; glibc ≥ 2.29, musl).
    #[cfg(not(target_vendor = "apple"))]
    // SAFETY: per this function's contract.
    let code = unsafe { libc::posix_spawn_file_actions_adddup2(actions, fd, fd) };
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
    }
}

/// In a worker, first thing: die with the parent whose pid the marker gave. On Linux the
/// kernel sends SIGKILL when it goes; everywhere, a worker whose parent is already gone
/// (it died before this ran) exits now.
pub(crate) fn die_with_parent(parent: u32) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if parent_pid() != parent {
        std::process::exit(0);
    }
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
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: waitpid writes one int through a valid pointer.
        let got = unsafe { libc::waitpid(pid as libc::pid_t, &raw mut status, flags) };
        match got {
            0 => return Reaped::Running,
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            -1 => return Reaped::Gone,
            _ => return Reaped::Exited(ExitStatus::from_raw(status)),
        }
    }
}

/// Sends SIGKILL to child `pid` (not yet reaped, so the pid is still ours).
pub(crate) fn kill(pid: u32) {
    // SAFETY: sending a signal; no memory involved.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// Sleeps until process `pid` (a child of ours) exits or `timeout` passes; false if this
/// cannot be waited for here (the caller then polls). Linux: a pidfd, readable on exit.
pub(crate) fn wait_exit(pid: u32, timeout: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let Ok(fd) = i32::try_from(fd) else {
            return false;
        };
        if fd < 0 {
            return false;
        }
        // SAFETY: the descriptor was just opened and is owned here alone.
        let pidfd = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        super::wait_readable(std::os::fd::AsFd::as_fd(&pidfd), timeout);
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
