//! The error type of every coproq operation, and the error that crosses the pipe.

use std::fmt;
use std::process::ExitStatus;
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
    #[error("{}", disconnected_text(*.status, cause))]
    #[non_exhaustive]
    Disconnected {
        /// The exit status of the process that ended (the worker's, or for a worker over
        /// a command such as `ssh`, that command's), where the parent could reap it in
        /// time.
        status: Option<ExitStatus>,
        /// How the link ended, as far as this end can tell.
        cause: DisconnectCause,
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

impl Error {
    /// `Disconnected` with an exit status and a cause.
    pub(crate) fn disconnected(status: Option<ExitStatus>, cause: DisconnectCause) -> Self {
        Self::Disconnected { status, cause }
    }

    /// `Disconnected`: the peer's stream ended, its exit status unknown.
    pub(crate) fn stream_ended() -> Self {
        Self::Disconnected {
            status: None,
            cause: DisconnectCause::Ended,
        }
    }
}

fn disconnected_text(status: Option<ExitStatus>, cause: &DisconnectCause) -> String {
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
