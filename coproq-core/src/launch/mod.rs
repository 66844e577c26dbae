//! Starting workers: the only module that knows processes, file descriptors and the
//! operating system.
//!
//! - [`fork`]: re-exec of the current executable running a function.
//! - [`spawn`]: separate worker binaries and their `Coprocess::parent()`.
//! - [`stdio`]: workers whose link runs over their stdin and stdout, and `Coprocess::stdio()`.
//! - [`stderr`]: a worker's stderr, forwarded and its last lines kept.
//! - [`postmortem`]: why a worker died, as its parent can tell.
//! - [`ship`]: fork workers through a command prefix (`ssh host`), sending this
//!   executable to the far side's cache first.
//!
//! The parent marks a worker with one environment variable, `COPROQ_WORKER`, holding the
//! mode, the two descriptor numbers, the parent's pid and the frame limit. A start-up hook that runs before `main` in every
//! program linking coproq removes the marker (so the worker's own children are not
//! mistaken for workers) and, for a fork worker, runs the worker there and then exits.

pub(crate) mod fork;
mod postmortem;
pub(crate) mod ship;
pub(crate) mod spawn;
mod stderr;
pub(crate) mod stdio;

use std::fmt;
use std::io;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::coprocess::Coprocess;
use crate::error::DisconnectCause;
use crate::error::{Error, Result};
use crate::link::Handlers;
use crate::link::{
    Connect, EofHook, HandshakeError, Input, Link, LinkOptions, Output, PeerGone, PipeInput,
    PipeOutput, WORKER_HELLO_MAX,
};
use crate::options::Options;
use crate::process::WorkerProcess;
use crate::sys;
use crate::wire::{ForkEntry, Hello};
use postmortem::Witness;
use stderr::StderrTail;

/// The environment variable that marks a worker.
const MARKER: &str = "COPROQ_WORKER";

/// How long the reader waits for a worker that closed its pipe to exit, to report its
/// exit status with `Disconnected`.
pub(crate) const EXIT_STATUS_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Fork,
    Spawn,
    /// A fork worker started through a command prefix: its link is its stdio, and its
    /// parent is not the process that started it.
    Remote,
}

/// What the parent tells a worker in the environment:
/// `mode:read_fd:write_fd:parent_pid:max_frame:descriptors_fd` (-1: no descriptor
/// socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    mode: Mode,
    read: i32,
    write: i32,
    parent: u32,
    /// The largest frame the parent's builder accepts, which a fork worker accepts too.
    max_frame: u32,
    /// The worker's end of the socket that passes descriptors.
    descriptors: i32,
}

/// A worker's descriptors of its link, as its marker names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ParentFds {
    read: i32,
    write: i32,
    /// The descriptor socket, if any (negative: none).
    descriptors: i32,
}

impl Marker {
    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(':');
        let mode = match parts.next()? {
            "fork" => Mode::Fork,
            "spawn" => Mode::Spawn,
            "remote" => Mode::Remote,
            _ => return None,
        };
        let marker = Self {
            mode,
            read: parts.next()?.parse().ok()?,
            write: parts.next()?.parse().ok()?,
            parent: parts.next()?.parse().ok()?,
            max_frame: parts.next()?.parse().ok()?,
            descriptors: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(marker)
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Fork => "fork",
            Mode::Spawn => "spawn",
            Mode::Remote => "remote",
        };
        let Self {
            read,
            write,
            parent,
            max_frame,
            descriptors,
            ..
        } = self;
        write!(
            f,
            "{mode}:{read}:{write}:{parent}:{max_frame}:{descriptors}"
        )
    }
}

sys::before_main!(on_start);

/// Runs before `main` in every program that links coproq.
fn on_start() {
    let Some(value) = std::env::var_os(MARKER) else {
        return;
    };
    // SAFETY: the start-up hook runs before `main`, while the process has one thread.
    unsafe { std::env::remove_var(MARKER) };
    if sys::secure_execution() {
        // Started setuid, setgid or with file capabilities: the environment is whoever
        // ran us, not a coproq parent of the same user. The marker is ignored (and gone,
        // so that it reaches no child either), and `main` runs as usual.
        return;
    }
    match value.to_str().and_then(Marker::parse) {
        Some(marker) => {
            if marker.mode == Mode::Spawn {
                // Until `main` adopts them, the link's descriptors must not leak into
                // processes the worker starts (whose holding them would hide the
                // worker's death from the parent).
                for fd in [marker.read, marker.write, marker.descriptors] {
                    if fd >= 0 {
                        let _ = sys::close_on_exec(fd);
                    }
                }
            }
            if marker.mode != Mode::Remote {
                let parent = sys::parent_pid();
                if parent != marker.parent {
                    worker_exit_with(&format!(
                        "its marker names parent {}, and its parent is {parent} (the parent \
                         is gone, or the marker was not set by coproq)",
                        marker.parent
                    ));
                }
                sys::die_with_parent(marker.parent);
            }
            let fds = ParentFds {
                read: marker.read,
                write: marker.write,
                descriptors: marker.descriptors,
            };
            match marker.mode {
                Mode::Fork => fork::run_worker(fds, marker.max_frame),
                Mode::Remote => fork::run_remote_worker(marker.max_frame),
                Mode::Spawn => spawn::stash(fds),
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
    crate::error::say(format_args!(
        "coproq: this process was started as a coproq worker, but {message}; \
         a worker must be started by coproq::fork or Coprocess::spawn"
    ));
    std::process::exit(2)
}

/// How a parent starts its worker.
#[derive(Debug)]
pub(crate) enum Launch {
    /// This executable again, running an entry function.
    Fork(ForkEntry),
    /// A user's command.
    Command(Command),
    /// A command whose stdin and stdout carry the link.
    Stdio(Command),
    /// This executable on the far side of a command prefix, running an entry function.
    Remote(ship::Prefix, ForkEntry),
}

impl Launch {
    /// The program, as errors name it.
    pub(crate) fn program(&self) -> String {
        match self {
            Self::Fork(_) => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "this executable".into()),
            Self::Command(cmd) | Self::Stdio(cmd) => {
                cmd.get_program().to_string_lossy().into_owned()
            }
            Self::Remote(..) => "fork worker via a command prefix".into(),
        }
    }
}

/// Parent side: starts a worker and completes the handshake.
pub(crate) fn spawn_worker(
    launch: Launch,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Arc<Link>, Arc<WorkerProcess>)> {
    ensure_start_hook_linked();
    // Through a command (ssh, a container's exec) every message is relayed by other
    // processes, and a round trip takes far longer than a spin budget: spinning would
    // only take CPU from the relays. Unless asked for, neither end spins.
    let relayed = Options {
        link: LinkOptions {
            spin: options.link.spin.or(Some(Duration::ZERO)),
            ..options.link
        },
        ..*options
    };
    let launch = match launch {
        Launch::Stdio(cmd) => return stdio::spawn_worker(cmd, &relayed, handlers),
        Launch::Remote(prefix, entry) => {
            return ship::spawn_worker(&prefix, entry, &relayed, handlers);
        }
        other => other,
    };
    let program = launch.program();
    let spawn_error = |source: io::Error| Error::Spawn {
        program: program.clone(),
        source,
    };
    let fds = sys::link_fds().map_err(spawn_error)?;
    let (pid, stdio, entry, tail) = start_process(launch, &fds, options).map_err(spawn_error)?;
    let sys::LinkFds {
        parent_read,
        parent_write,
        parent_descriptors,
        child_read,
        child_write,
        child_descriptors,
    } = fds;
    // The child holds its ends now: ours must go, or we would never see its end of
    // stream; a copy of its write end stays, through which its exit wakes our reads.
    let wake = child_write.try_clone().ok().map(std::fs::File::from);
    drop((child_read, child_write, child_descriptors));

    let process = Arc::new(WorkerProcess::new(pid, stdio));
    let witness = Witness::new(pid, tail, options, true);
    let on_eof = exit_report(&process, DisconnectCause::Ended, witness);
    let connect = Connect {
        options: options.link,
        entry,
        parent: true,
        heartbeat: options.heartbeat,
        offer_clock: true,
        peer_hello_max: WORKER_HELLO_MAX,
        timeout: options.startup_timeout,
        descriptors: Some(parent_descriptors),
    };
    let (input, output) = parent_streams(parent_read, parent_write, wake, pid, options);
    match Link::connect(input, output, connect, handlers, Some(on_eof)) {
        Ok((link, _hello)) => Ok((link, process)),
        Err(e) => {
            // Whatever the worker is doing, it is not a working worker: stop it.
            let status = process.try_status().or_else(|| process.kill());
            Err(handshake_failed(e, status, spawn_error, &program))
        }
    }
}

/// The parent's ends of a link to process `pid`, both made here (no other process shares
/// them): reads bounded inside frames, and both ends watching the process's exit, so
/// that its death is seen whatever its own children hold open. `wake`, a copy of the
/// pipe's write end, lets the exit end a read blocked between frames (otherwise reads
/// poll beside the watch).
pub(super) fn parent_streams(
    read: std::fs::File,
    write: std::fs::File,
    wake: Option<std::fs::File>,
    pid: u32,
    options: &Options,
) -> (Input, Output) {
    let stall = LinkOptions::frame_stall(options.heartbeat);
    let Ok(exit) = sys::watch_exit(pid).map(Arc::new) else {
        // Without a watch, the end of the pipe still tells (the copy must go for that).
        drop(wake);
        return (PipeInput::boxed(read), PipeOutput::boxed(write, None));
    };
    let input = match wake {
        Some(wake) => PipeInput::woken_on_exit(read, Arc::clone(&exit), wake, stall),
        None => PipeInput::watched(read, Arc::clone(&exit), stall),
    };
    (input, PipeOutput::boxed(write, Some(exit)))
}

/// What the reader of a worker's end of stream learns: its exit status (waiting briefly
/// for it), `cause`, and what `witness` can tell of its death.
pub(super) fn exit_report(
    process: &Arc<WorkerProcess>,
    cause: DisconnectCause,
    witness: Witness,
) -> EofHook {
    let process = Arc::clone(process);
    Box::new(move || {
        let status = process.wait_timeout(EXIT_STATUS_WAIT);
        let postmortem = witness.examine(status, process.killed_by_coproq());
        #[cfg(feature = "tracing")]
        if status.is_some_and(|s| s.success()) {
            crate::trace::event!(
                INFO,
                pid = process.pid(),
                status = %crate::trace::status_text(status),
                "worker exited"
            );
        } else {
            crate::trace::event!(
                WARN,
                pid = process.pid(),
                status = %crate::trace::status_text(status),
                ?cause,
                reason = ?postmortem.as_ref().and_then(|p| p.reason),
                "worker died"
            );
        }
        PeerGone {
            status,
            cause,
            postmortem,
        }
    })
}

/// A started worker: its pid, its piped stdio, (for a fork) the entry that the parent's
/// `Hello` carries, and its stderr, followed where the options ask.
type Started = (
    u32,
    sys::ChildStdio,
    Option<ForkEntry>,
    Option<Arc<StderrTail>>,
);

/// Starts the worker's process with the marker that tells it its link.
fn start_process(launch: Launch, fds: &sys::LinkFds, options: &Options) -> io::Result<Started> {
    let marker = {
        use std::os::fd::AsRawFd;
        Marker {
            mode: match launch {
                Launch::Fork(_) => Mode::Fork,
                Launch::Command(_) | Launch::Stdio(_) | Launch::Remote(..) => Mode::Spawn,
            },
            read: fds.child_read.as_raw_fd(),
            write: fds.child_write.as_raw_fd(),
            parent: std::process::id(),
            max_frame: options.link.max_frame,
            descriptors: fds.child_descriptors.as_raw_fd(),
        }
        .to_string()
    };
    let group = options.process_group;
    // With a tail asked for, the worker's stderr comes through us (forwarded live).
    let follow = options.stderr_tail > 0;
    let keep = options.stderr_tail.max(stderr::START_LINES);
    match launch {
        Launch::Fork(entry) => {
            use std::os::fd::AsFd;
            let pipe = if follow { Some(io::pipe()?) } else { None };
            let stderr = pipe.as_ref().map(|(_, write)| write.as_fd());
            let pid = sys::spawn_self((MARKER, &marker), fds, stderr, group)?;
            let tail = pipe.map(|(read, _)| StderrTail::follow(read, keep));
            Ok((pid, sys::ChildStdio::default(), Some(entry), tail))
        }
        Launch::Stdio(_) | Launch::Remote(..) => {
            unreachable!("stdio and remote workers start in their own modules")
        }
        Launch::Command(mut cmd) => {
            cmd.env(MARKER, &marker);
            if follow {
                cmd.stderr(std::process::Stdio::piped());
            }
            let (pid, mut stdio) = sys::spawn_command(cmd, fds, group)?;
            let tail = if follow {
                stdio.stderr.take().map(|e| StderrTail::follow(e, keep))
            } else {
                None
            };
            Ok((pid, stdio, None, tail))
        }
    }
}

/// The error of a worker whose handshake failed, saying what it is likely to be.
fn handshake_failed(
    e: HandshakeError,
    status: Option<std::process::ExitStatus>,
    spawn_error: impl Fn(io::Error) -> Error,
    program: &str,
) -> Error {
    let status = status.map_or_else(String::new, |s| format!(" ({s})"));
    let hint = "is it a coproq worker whose `main` calls `Coprocess::parent()`?";
    match e {
        HandshakeError::Refused(reason) => Error::Protocol(reason),
        HandshakeError::Silent(timeout) => spawn_error(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("`{program}` sent nothing within {timeout:?}: {hint}"),
        )),
        HandshakeError::Closed => spawn_error(io::Error::other(format!(
            "`{program}` exited before the handshake{status}: {hint}"
        ))),
    }
}

/// Worker side: adopts the link descriptors and completes the handshake.
fn connect_to_parent(
    fds: ParentFds,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Coprocess, Hello)> {
    sys::ignore_sigpipe();
    let ParentFds {
        read,
        write,
        descriptors,
    } = fds;
    let (input, output) = sys::take_link_fds(read, write).map_err(|e| {
        Error::Protocol(format!("the link descriptors {read} and {write} are not usable ({e}); not started by a coproq parent?"))
    })?;
    let descriptors = (descriptors >= 0)
        .then(|| sys::take_descriptor_socket(descriptors, [read, write]))
        .transpose()
        .map_err(|e| {
            Error::Protocol(format!(
                "the descriptor socket {descriptors} is not usable ({e}); not started by a \
                 coproq parent?"
            ))
        })?;
    // The parent made these pipes for this worker alone.
    let (input, output) = (PipeInput::boxed(input), PipeOutput::boxed(output, None));
    connect_streams(input, output, descriptors, options, handlers)
}

/// Worker side: completes the handshake with the parent over two streams (and the
/// socket that passes descriptors, for a local worker).
fn connect_streams(
    input: Input,
    output: Output,
    descriptors: Option<std::os::fd::OwnedFd>,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Coprocess, Hello)> {
    sys::ignore_sigpipe();
    let connect = Connect {
        options: LinkOptions {
            report_protocol_errors: true,
            ..options.link
        },
        entry: None,
        parent: false,
        heartbeat: None,
        offer_clock: true,
        // The parent's hello carries a fork entry's data, bounded by the frame limit.
        peer_hello_max: options.link.max_frame,
        timeout: options.startup_timeout,
        descriptors,
    };
    let (link, hello) = Link::connect(input, output, connect, handlers, None)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    if hello.memory_limit > 0 {
        // Before any of the parent's calls runs: an allocation past it fails, and the
        // parent reads the allocator's message as the cause of death.
        if let Err(e) = sys::limit_memory(hello.memory_limit) {
            crate::error::say(format_args!(
                "coproq worker: cannot set the memory limit of {} bytes: {e}",
                hello.memory_limit
            ));
        }
    }
    // The parent says how often both ends ping; a silent parent ends this worker.
    let interval = options.heartbeat.or_else(|| {
        (hello.heartbeat_ms > 0).then(|| Duration::from_millis(u64::from(hello.heartbeat_ms)))
    });
    if let Some(interval) = interval {
        link.start_heartbeat(interval, || {
            std::thread::sleep(Duration::from_secs(1));
            crate::error::say(format_args!(
                "coproq worker: the parent fell silent; exiting"
            ));
            std::process::exit(1);
        });
    }
    Ok((Coprocess::from_parent_link(link, *options), hello))
}
