//! Workers whose link runs over their stdin and stdout: `Builder::spawn_stdio(cmd)` on the
//! parent (any command that ends in a coproq worker: the worker binary itself, or
//! `ssh host worker`, `docker exec -i ...`), and `Coprocess::stdio()` on the worker.
//!
//! No parent-death signal crosses a machine, so a stdio worker watches its input itself:
//! once the parent's end hangs up, the worker has a second to finish, then exits.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::postmortem::Witness;
use super::stderr::StderrTail;
use super::{EXIT_STATUS_WAIT, connect_streams, exit_report, parent_streams};
use crate::coprocess::Coprocess;
use crate::error::DisconnectCause;
use crate::error::{Error, Result};
use crate::link::{Connect, Handlers, HandshakeError, Link, PipeOutput, WORKER_HELLO_MAX};
use crate::options::Options;
use crate::process::WorkerProcess;
use crate::sys;

/// How long a stdio worker lives on after its parent hung up (to finish a graceful close;
/// within a second of the link's end, it is gone).
const ORPHAN_GRACE: Duration = Duration::from_millis(500);

/// Parent side: starts `cmd` with the link on its stdin and stdout.
pub(crate) fn spawn_worker(
    cmd: Command,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Arc<Link>, Arc<WorkerProcess>)> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_error = |source: io::Error| Error::Spawn {
        program: program.clone(),
        source,
    };
    let (input, output, process, tail) = start_piped(cmd, options, &spawn_error)?;
    let handshake = Handshake {
        entry: None,
        timeout: options.startup_timeout,
    };
    let started = Started {
        process: &process,
        tail: &tail,
        spawn_error: &spawn_error,
        program: &program,
        hint: STDIO_HINT,
    };
    connect_piped(input, output, &started, handshake, options, handlers)
}

/// Starts `cmd` with piped stdio: the stream from it, the stream to it, the process, and
/// its stderr, followed.
pub(super) fn start_piped(
    cmd: Command,
    options: &Options,
    spawn_error: &dyn Fn(io::Error) -> Error,
) -> Result<(File, File, Arc<WorkerProcess>, Arc<StderrTail>)> {
    let (pid, mut pipes) = sys::spawn_piped(cmd, options.process_group).map_err(spawn_error)?;
    let (Some(to_worker), Some(from_worker), Some(stderr)) =
        (pipes.stdin.take(), pipes.stdout.take(), pipes.stderr.take())
    else {
        return Err(spawn_error(io::Error::other(
            "the command's stdio was not piped",
        )));
    };
    let tail = StderrTail::follow(stderr, options.stderr_tail.max(super::stderr::START_LINES));
    let process = Arc::new(WorkerProcess::new(pid, pipes));
    let input = File::from(std::os::fd::OwnedFd::from(from_worker));
    let output = File::from(std::os::fd::OwnedFd::from(to_worker));
    Ok((input, output, process, tail))
}

/// What the parent's side of a piped handshake sends and how long it waits.
pub(super) struct Handshake {
    pub(super) entry: Option<crate::wire::ForkEntry>,
    pub(super) timeout: Duration,
}

/// A command started with piped stdio: what a failed handshake reports.
pub(super) struct Started<'a> {
    pub(super) process: &'a Arc<WorkerProcess>,
    pub(super) tail: &'a Arc<StderrTail>,
    pub(super) spawn_error: &'a dyn Fn(io::Error) -> Error,
    /// The command, as errors name it.
    pub(super) program: &'a str,
    /// What a command that does not answer is asked.
    pub(super) hint: &'static str,
}

/// What a `spawn_stdio` command that does not answer is asked.
pub(super) const STDIO_HINT: &str =
    "does the command end in a coproq worker whose `main` calls `Coprocess::stdio()`?";

/// Parent side: the handshake over a command's piped stdio.
pub(super) fn connect_piped(
    input: File,
    output: File,
    started: &Started<'_>,
    handshake: Handshake,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Arc<Link>, Arc<WorkerProcess>)> {
    let Started {
        process,
        tail,
        spawn_error,
        program,
        hint,
    } = started;
    // The process is the command that carries the link, not the worker itself.
    let witness = Witness::new(process.pid(), Some(Arc::clone(tail)), options, false);
    let on_eof = exit_report(
        process,
        DisconnectCause::TransportEnded {
            program: (*program).to_owned(),
        },
        witness,
    );
    let connect = Connect {
        options: options.link,
        entry: handshake.entry,
        parent: true,
        heartbeat: options.heartbeat,
        // The worker may run on another machine, whose clock is not ours.
        offer_clock: false,
        peer_hello_max: WORKER_HELLO_MAX,
        timeout: handshake.timeout,
        // Relayed by other processes: no descriptor crosses.
        descriptors: None,
    };
    // Our ends of the command's stdin and stdout pipes, which nothing else holds.
    let (input, output) = parent_streams(input, output, None, process.pid(), options);
    match Link::connect(input, output, connect, handlers, Some(on_eof)) {
        Ok((link, _hello)) => Ok((link, Arc::clone(process))),
        Err(e) => {
            let status = process
                .wait_timeout(EXIT_STATUS_WAIT)
                .or_else(|| process.kill());
            Err(start_failed(&e, status, &tail.quote(), spawn_error, hint))
        }
    }
}

/// The error of a stdio worker that did not start, saying which side failed.
pub(super) fn start_failed(
    e: &HandshakeError,
    status: Option<ExitStatus>,
    stderr: &str,
    spawn_error: &dyn Fn(io::Error) -> Error,
    hint: &str,
) -> Error {
    if let HandshakeError::Refused(reason) = e {
        return Error::Protocol(format!("{reason}{stderr}"));
    }
    let what = match status.and_then(|s| s.code()) {
        Some(255) => {
            "the connection failed (exit status 255, which ssh gives when it cannot connect \
             or log in)"
                .to_owned()
        }
        Some(127) => "the command was not found on the far side (exit status 127)".to_owned(),
        Some(126) => "the command could not be run on the far side (exit status 126)".to_owned(),
        _ => match (e, status) {
            (HandshakeError::Silent(timeout), _) => {
                format!("it sent nothing within {timeout:?}: {hint}")
            }
            (_, Some(status)) => format!("it exited before the handshake ({status}): {hint}"),
            (_, None) => "it closed its stdout before the handshake".to_owned(),
        },
    };
    spawn_error(io::Error::other(format!("{what}{stderr}")))
}

/// Whether this process's stdio was taken as a link already.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Worker side: the link to the parent over stdin and stdout.
pub(crate) fn connect(options: &Options, handlers: Arc<Handlers>) -> Result<Coprocess> {
    connect_with_hello(options, handlers).map(|(coproc, _)| coproc)
}

/// Worker side: the link over stdin and stdout, and the parent's `Hello`.
pub(crate) fn connect_with_hello(
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Coprocess, crate::wire::Hello)> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err(Error::Protocol(
            "this process's stdin and stdout are a link already".into(),
        ));
    }
    let (input, output) = sys::take_stdio()
        .map_err(|e| Error::Protocol(format!("cannot take stdin and stdout as a link: {e}")))?;
    watch_for_hangup(&input);
    // Stdin and stdout may be shared with whoever started us (a shell): they stay
    // blocking.
    connect_streams(
        Box::new(input),
        PipeOutput::boxed_blocking(output),
        None,
        options,
        handlers,
    )
}

/// Exits the process `ORPHAN_GRACE` after the parent's end of the input hangs up, even
/// while a handler is stuck (no parent-death signal crosses machines).
fn watch_for_hangup(input: &File) {
    let Ok(watched) = input.as_fd().try_clone_to_owned() else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("coproq-hangup".into())
        .spawn(move || {
            sys::wait_hangup(watched.as_fd());
            std::thread::sleep(ORPHAN_GRACE);
            crate::error::say(format_args!(
                "coproq worker: the link to the parent ended {ORPHAN_GRACE:?} ago; exiting"
            ));
            std::process::exit(1);
        });
}
