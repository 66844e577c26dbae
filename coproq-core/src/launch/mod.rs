//! Starting workers: the only module that knows processes, file descriptors and the
//! operating system.
//!
//! - [`fork`]: re-exec of the current executable running a function.
//! - [`spawn`]: separate worker binaries and their `Coprocess::parent()`.
//! - [`process`]: the parent's hold on a worker (wait, kill, reap).
//! - `sys`: the platform backend (pipes, inheritance, parent death, start-up hook).
//!
//! The parent marks a worker with one environment variable, `COPROQ_WORKER`, holding the
//! mode and the two descriptor numbers. A start-up hook that runs before `main` in every
//! program linking coproq removes the marker (so the worker's own children are not
//! mistaken for workers) and, for a fork worker, runs the worker there and then exits.

pub(crate) mod fork;
mod process;
pub(crate) mod spawn;
mod sys;

use std::fmt;
use std::io;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::coprocess::{Coprocess, Options};
use crate::error::{Error, Result};
use crate::handler::Handlers;
use crate::link::{EofHook, Link};
pub(crate) use process::WorkerProcess;

/// The environment variable that marks a worker.
const MARKER: &str = "COPROQ_WORKER";

/// How long the reader waits for a worker that closed its pipe to exit, to report its
/// exit status with `Disconnected`.
const EXIT_STATUS_WAIT: Duration = Duration::from_millis(200);

/// Set in a process that runs as a worker.
static IS_WORKER: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Fork,
    Spawn,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fork => "fork",
            Self::Spawn => "spawn",
        })
    }
}

/// The marker: `mode:read_fd:write_fd:parent_pid`.
fn parse_marker(value: &str) -> Option<(Mode, i32, i32, u32)> {
    let mut parts = value.split(':');
    let mode = match parts.next()? {
        "fork" => Mode::Fork,
        "spawn" => Mode::Spawn,
        _ => return None,
    };
    let read = parts.next()?.parse().ok()?;
    let write = parts.next()?.parse().ok()?;
    let parent = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((mode, read, write, parent))
}

/// Runs before `main` (see `sys::start_hook`).
pub(crate) fn on_start() {
    let Some(value) = std::env::var_os(MARKER) else {
        return;
    };
    // SAFETY: the start-up hook runs before `main`, while the process has one thread.
    unsafe { std::env::remove_var(MARKER) };
    IS_WORKER.store(true, Ordering::Relaxed);
    match value.to_str().and_then(parse_marker) {
        Some((mode, read, write, parent)) => {
            sys::die_with_parent(parent);
            match mode {
                Mode::Fork => fork::run_worker(read, write),
                Mode::Spawn => spawn::stash(read, write),
            }
        }
        None => worker_exit_with(&format!(
            "{MARKER} is set but malformed: {}",
            value.display()
        )),
    }
}

/// Ends a worker that cannot work, with a message that says why.
pub(crate) fn worker_exit_with(message: &str) -> ! {
    eprintln!(
        "coproq: this process was started as a coproq worker, but {message}; \
         a worker must be started by coproq::fork or Coprocess::spawn"
    );
    std::process::exit(2)
}

/// Tells a worker's user why it is about to stop (a parent sees errors on its calls).
pub(crate) fn report_protocol_error(reason: &str) {
    if IS_WORKER.load(Ordering::Relaxed) {
        eprintln!("coproq worker: protocol error on the link to the parent: {reason}; stopping");
    }
}

/// How a parent starts its worker.
#[derive(Debug)]
pub(crate) enum Launch {
    /// This executable again, running an entry function.
    Fork,
    /// A user's command.
    Command(Command),
}

/// Parent side: starts a worker and completes the handshake.
pub(crate) fn start(
    launch: Launch,
    entry: Option<u64>,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Arc<Link>, Arc<WorkerProcess>)> {
    sys::ensure_start_hook_linked();
    let program = match &launch {
        Launch::Fork => "<this executable>".to_owned(),
        Launch::Command(cmd) => cmd.get_program().to_string_lossy().into_owned(),
    };
    let spawn_error = |source: io::Error| Error::Spawn {
        program: program.clone(),
        source,
    };
    let fds = sys::link_fds().map_err(spawn_error)?;
    let marker = {
        use std::os::fd::AsRawFd;
        let mode = if matches!(launch, Launch::Fork) {
            Mode::Fork
        } else {
            Mode::Spawn
        };
        let (read, write) = (fds.child_read.as_raw_fd(), fds.child_write.as_raw_fd());
        format!("{mode}:{read}:{write}:{}", std::process::id())
    };
    let pid = match launch {
        Launch::Fork => sys::spawn_self((MARKER, &marker), &fds),
        Launch::Command(mut cmd) => {
            cmd.env(MARKER, &marker);
            sys::spawn_command(cmd, &fds)
        }
    }
    .map_err(spawn_error)?;
    let sys::LinkFds {
        parent_read,
        parent_write,
        child_read,
        child_write,
    } = fds;
    drop((child_read, child_write));

    let process = Arc::new(WorkerProcess::new(pid));
    let on_eof: EofHook = {
        let process = Arc::clone(&process);
        Box::new(move || process.wait_timeout(EXIT_STATUS_WAIT))
    };
    let connected = Link::connect(
        Box::new(parent_read),
        Box::new(parent_write),
        options.link,
        entry,
        handlers,
        Some(on_eof),
        options.startup_timeout,
    );
    match connected {
        Ok((link, _hello)) => Ok((link, process)),
        Err(e) => {
            // Whatever the worker is doing, it is not a working worker: stop it.
            let status = process.try_status().or_else(|| process.kill());
            let status = status.map_or_else(String::new, |s| format!(" (worker {s})"));
            Err(match e {
                Error::Protocol(reason) if !reason.contains("closed the link") => {
                    Error::Protocol(reason)
                }
                e => spawn_error(io::Error::other(format!(
                    "the worker failed before the handshake: {e}{status}"
                ))),
            })
        }
    }
}

/// Worker side: adopts the link descriptors and completes the handshake.
fn connect_to_parent(
    read: i32,
    write: i32,
    mode: Mode,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Coprocess, Option<u64>)> {
    sys::ignore_sigpipe();
    let (input, output) = sys::take_link_fds(read, write).map_err(|e| {
        Error::Protocol(format!("the link descriptors {read} and {write} are not usable ({e}); not started by a coproq parent?"))
    })?;
    let (link, hello) = Link::connect(
        Box::new(input),
        Box::new(output),
        options.link,
        None,
        handlers,
        None,
        options.startup_timeout,
    )?;
    let entry = if mode == Mode::Fork {
        hello.entry
    } else {
        None
    };
    Ok((Coprocess::from_parent_link(link), entry))
}
