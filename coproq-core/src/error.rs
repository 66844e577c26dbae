//! The error type of every coproq operation, and the error that crosses the pipe.

use std::fmt::{self, Write as _};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Says `message` on stderr, as a line. A stderr whose reader is gone (a worker whose
/// parent or ssh session died) is ignored: `eprintln!` would panic there.
pub(crate) fn say(message: impl fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// A specialized [`Result`](std::result::Result) for coproq operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors returned by [`Coprocess`](crate::Coprocess) calls and worker management.
///
/// `Error` serializes as its message, so a handler may return `coproq::Result<T>` and a
/// failed nested call reaches the original caller as a [`Error::Remote`] with that text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The worker process could not be started, failed before the handshake, or (for a
    /// fork worker) failed in its entry. The message says why.
    #[error("failed to start worker `{program}`: {source}")]
    Spawn {
        /// The program that was started.
        program: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A thread that a link needs (its dispatcher or background reader) could not be
    /// started, as when the process is out of threads or memory.
    #[error("cannot start the link's {name} thread: {source}")]
    Thread {
        /// Which thread.
        name: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// The link was already closed when the call or event was sent
    /// (by [`Coprocess::close`](crate::Coprocess::close), or because the peer went away).
    #[error("not connected")]
    NotConnected,
    /// [`Coprocess::parent`](crate::Coprocess::parent) was called in a process that no
    /// coproq parent started (or whose link was taken already).
    #[error("this process was not started as a coproq worker")]
    NotAWorker,
    /// The peer went away after the call was sent and before it replied: it exited,
    /// crashed or was killed (also in the middle of a frame), the command carrying the
    /// link ended, or it fell silent while heartbeats were on.
    #[error("{}", disconnected_text(*.status, cause, postmortem.as_deref(), *blame))]
    #[non_exhaustive]
    Disconnected {
        /// The exit status of the process that ended (the worker's, or for a worker over
        /// a command such as `ssh`, that command's), where the parent could reap it in
        /// time.
        status: Option<ExitStatus>,
        /// How the link ended, as far as this end can tell.
        cause: DisconnectCause,
        /// What else the parent learned of the worker's death: who killed it, its last
        /// words on stderr. Pools gather it by default, a single link with
        /// [`Builder::stderr_tail`](crate::Builder::stderr_tail).
        postmortem: Option<Arc<Postmortem>>,
        /// For a call through a pool, how far this call can be blamed for its worker's
        /// death.
        blame: Option<Blame>,
    },
    /// The peer has no handler of that name.
    #[error("{0}: method not found")]
    MethodNotFound(String),
    /// The call's deadline passed first: [`Pending::wait_timeout`](crate::Pending::wait_timeout)'s,
    /// the link's or pool's `call_timeout`, or one inherited from the call being handled.
    /// The peer is told (a call it has not started never runs), and a late reply is
    /// dropped.
    #[error("{method}: no reply within {after:?}")]
    Timeout {
        /// The method called.
        method: String,
        /// The time waited.
        after: Duration,
    },
    /// The call was cancelled by [`Pending::cancel`](crate::Pending::cancel) before its
    /// reply arrived.
    #[error("{method}: cancelled")]
    Cancelled {
        /// The method called.
        method: String,
    },
    /// The pool restarted its workers more often than its restart limit allows: it no
    /// longer starts workers, and every queued and new call fails with this error.
    #[error("pool broken: {reason}")]
    PoolBroken {
        /// The limit that was passed and the last worker's exit status.
        reason: String,
    },
    /// The peer's handler failed: it returned `Err`, panicked, could not decode the
    /// arguments, or dropped its [`Reply`](crate::Reply) unanswered.
    #[error("{0}")]
    Remote(RemoteError),
    /// The reply did not decode as the type the caller asked for.
    #[error("{method}: reply does not decode as the expected type: {reason}")]
    Decode {
        /// The method called.
        method: String,
        /// Why it failed.
        reason: String,
    },
    /// The arguments could not be encoded, or make a frame larger than the peer accepts.
    #[error("{method}: arguments could not be sent: {reason}")]
    Encode {
        /// The method or event.
        method: String,
        /// Why it failed.
        reason: String,
    },
    /// A typed client's service and the peer's differ (built from different trait
    /// definitions, such as a stale worker binary); nothing was sent.
    #[error("service `{service}` differs between this client and the peer: {detail}")]
    ServiceMismatch {
        /// The service (trait) name.
        service: String,
        /// The first difference found.
        detail: String,
    },
    /// The peer broke the protocol (a malformed or oversize frame, a version mismatch);
    /// the link is closed.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// How a link ended without a goodbye, as far as this end can tell: what
/// [`Error::Disconnected`] carries beside the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectCause {
    /// The peer's stream ended: the worker exited, crashed or was killed (the exit status
    /// says which, where known), or the peer closed the link.
    Ended,
    /// The command that carries the link (`ssh`, a container's `exec`) ended, with the
    /// exit status beside this; the worker on the far side may still be running, and
    /// exits once it sees the link gone.
    TransportEnded {
        /// The command.
        program: String,
    },
    /// Heartbeats were on, and nothing came from the peer for this long (three
    /// intervals): a half-open connection, a stopped relay or a stopped peer.
    Silent {
        /// How long nothing came.
        after: Duration,
    },
}

/// What the parent learned of a worker's death beyond its exit status, carried by
/// [`Error::Disconnected`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Postmortem {
    /// The signal that ended the worker, by name (`"SIGKILL"`), if one did.
    pub signal: Option<&'static str>,
    /// What killed it, where that is known or likely.
    pub reason: Option<DeathReason>,
    /// The last lines it wrote to stderr before it died, oldest first (empty where its
    /// stderr was not followed).
    pub stderr_tail: Vec<String>,
}

/// What killed a worker, as far as the parent can tell (see [`Postmortem`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeathReason {
    /// coproq killed it: a pool's `kill_on_timeout` for a call that ran past its
    /// deadline, or [`Coprocess::close`](crate::Coprocess::close) for a worker still
    /// running after the close grace.
    KilledByCoproq,
    /// The kernel's out-of-memory killer killed it (its memory cgroup, or the system,
    /// counted an OOM kill while it ran).
    OutOfMemoryKiller,
    /// It died of SIGKILL that coproq did not send, and the kernel did not say why:
    /// possibly out of memory (or someone ran `kill -9`).
    PossiblyOutOfMemory,
    /// An allocation failed and the worker aborted (its stderr said "memory allocation
    /// of N bytes failed").
    OutOfMemory {
        /// The size of the allocation that failed, if its message said.
        bytes: Option<u64>,
        /// The worker's [`memory_limit`](crate::PoolBuilder::memory_limit), if one was set.
        limit: Option<u64>,
    },
    /// Its stack overflowed (its stderr said "has overflowed its stack").
    StackOverflow,
}

/// How far one call through a pool can be blamed for its worker's death, carried by
/// [`Error::Disconnected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blame {
    /// Its worker was running this call and no other when it died.
    Alone,
    /// Its worker was running `others` other calls beside this one when it died, and
    /// the pool had no retry left to tell which: this call may be innocent.
    Shared {
        /// The other calls its worker was running.
        others: usize,
    },
    /// A poison call: its worker died while running it, and so did the worker that then
    /// ran it alone. It is not sent again.
    Poison,
}

impl Error {
    /// `Disconnected` with an exit status, a cause and what else is known of the death.
    pub(crate) fn disconnected(
        status: Option<ExitStatus>,
        cause: DisconnectCause,
        postmortem: Option<Arc<Postmortem>>,
    ) -> Self {
        Self::Disconnected {
            status,
            cause,
            postmortem,
            blame: None,
        }
    }

    /// `Disconnected`: the peer's stream ended, its exit status unknown.
    pub(crate) fn stream_ended() -> Self {
        Self::disconnected(None, DisconnectCause::Ended, None)
    }

    /// This error, with `blame` if it is `Disconnected`.
    pub(crate) fn blamed(mut self, how: Blame) -> Self {
        if let Self::Disconnected { blame, .. } = &mut self {
            *blame = Some(how);
        }
        self
    }

    /// The same error again, for another call that failed with it (the items of one run
    /// of calls); an I/O error's kind and text, which cannot be cloned, are kept.
    pub(crate) fn again(&self) -> Self {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            Self::Spawn { program, source } => Self::Spawn {
                program: program.clone(),
                source: io(source),
            },
            Self::Thread { name, source } => Self::Thread {
                name: name.clone(),
                source: io(source),
            },
            Self::NotConnected => Self::NotConnected,
            Self::NotAWorker => Self::NotAWorker,
            Self::Disconnected {
                status,
                cause,
                postmortem,
                blame,
            } => Self::Disconnected {
                status: *status,
                cause: cause.clone(),
                postmortem: postmortem.clone(),
                blame: *blame,
            },
            Self::MethodNotFound(method) => Self::MethodNotFound(method.clone()),
            Self::Timeout { method, after } => Self::Timeout {
                method: method.clone(),
                after: *after,
            },
            Self::Cancelled { method } => Self::Cancelled {
                method: method.clone(),
            },
            Self::PoolBroken { reason } => Self::PoolBroken {
                reason: reason.clone(),
            },
            Self::Remote(e) => Self::Remote(e.clone()),
            Self::Decode { method, reason } => Self::Decode {
                method: method.clone(),
                reason: reason.clone(),
            },
            Self::Encode { method, reason } => Self::Encode {
                method: method.clone(),
                reason: reason.clone(),
            },
            Self::ServiceMismatch { service, detail } => Self::ServiceMismatch {
                service: service.clone(),
                detail: detail.clone(),
            },
            Self::Protocol(reason) => Self::Protocol(reason.clone()),
        }
    }
}

fn disconnected_text(
    status: Option<ExitStatus>,
    cause: &DisconnectCause,
    postmortem: Option<&Postmortem>,
    blame: Option<Blame>,
) -> String {
    let mut text = link_end_text(status, cause);
    if let Some(reason) = postmortem.and_then(|p| p.reason) {
        text.push_str(": ");
        text.push_str(&reason.to_string());
    }
    match blame {
        Some(Blame::Poison) => text.push_str(
            "; a poison call: its worker died running it, and so did a worker that then ran \
             it alone; it is not sent again",
        ),
        Some(Blame::Shared { others }) => {
            let calls = if others == 1 { "call" } else { "calls" };
            let _ = write!(
                text,
                "; its worker was running {others} other {calls} too, so this one may be innocent"
            );
        }
        Some(Blame::Alone) | None => {}
    }
    if let Some(postmortem) = postmortem.filter(|p| !p.stderr_tail.is_empty()) {
        text.push_str("; its stderr ended with:");
        for line in &postmortem.stderr_tail {
            text.push_str("\n  | ");
            text.push_str(line);
        }
    }
    text
}

impl fmt::Display for DeathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KilledByCoproq => f.write_str("killed by coproq"),
            Self::OutOfMemoryKiller => f.write_str("killed by the kernel's out-of-memory killer"),
            Self::PossiblyOutOfMemory => {
                f.write_str("killed by SIGKILL that coproq did not send: possibly out of memory")
            }
            Self::OutOfMemory { bytes, limit } => {
                f.write_str("out of memory")?;
                if let Some(bytes) = bytes {
                    write!(f, ": an allocation of {bytes} bytes failed")?;
                }
                if let Some(limit) = limit {
                    write!(f, " under its memory_limit of {limit} bytes")?;
                }
                Ok(())
            }
            Self::StackOverflow => f.write_str("its stack overflowed"),
        }
    }
}

fn link_end_text(status: Option<ExitStatus>, cause: &DisconnectCause) -> String {
    match (cause, status) {
        (DisconnectCause::Ended, Some(status)) => format!("peer disconnected (worker {status})"),
        (DisconnectCause::Ended, None) => "peer disconnected".to_owned(),
        (DisconnectCause::TransportEnded { program }, status) => {
            let status = status.map_or_else(String::new, |s| format!(" ({s})"));
            format!(
                "peer disconnected: the transport `{program}` ended{status}; the worker on the \
                 far side may still be running, and exits once it sees the link gone"
            )
        }
        (DisconnectCause::Silent { after }, _) => format!(
            "peer disconnected: nothing came from the peer for {after:?} (three heartbeat \
             intervals)"
        ),
    }
}

impl Serialize for Error {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A failure reported by the peer's handler: its message, and whether it panicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    message: String,
    kind: RemoteErrorKind,
    /// The handler's error value (for typed clients), when it returned `Err(e)`.
    #[serde(skip)]
    payload: Option<TypedPayload>,
}

/// An encoded error value and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypedPayload {
    pub(crate) shape: Vec<u8>,
    pub(crate) bytes: Vec<u8>,
}

/// What kind of failure a [`RemoteError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The handler returned `Err(e)`; the message is `e`'s text.
    Failed,
    /// The handler panicked; the message starts with "panicked: ".
    Panicked,
    /// The arguments did not decode as the handler's parameter types.
    InvalidArguments,
    /// A deferred handler dropped its [`Reply`](crate::Reply) without answering.
    Unanswered,
}

impl RemoteError {
    pub(crate) fn new(
        kind: RemoteErrorKind,
        message: String,
        payload: Option<TypedPayload>,
    ) -> Self {
        Self {
            message,
            kind,
            payload,
        }
    }

    /// The handler's message: the text of its error, or the panic message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> RemoteErrorKind {
        self.kind
    }

    /// The handler's error value decoded as `E`, when it returned `Err(e)` of a type
    /// that decodes as `E` (used by generated typed clients).
    pub(crate) fn typed<E: serde::de::DeserializeOwned>(&self) -> Option<E> {
        let payload = self.payload.as_ref()?;
        crate::wire::decode_checked(&payload.shape, &payload.bytes).ok()
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {}

/// The text of a caught panic.
pub(crate) fn panicked(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    format!("panicked: {message}")
}
