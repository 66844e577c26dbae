//! What coproq tells [`tracing`](https://docs.rs/tracing), with the `tracing` feature: a
//! worker's start and exit, a pool's restarts, kills and retirements, every call at
//! `trace` level and slow ones at `debug`, heartbeat losses and protocol errors at
//! `warn`. Every event has the target `coproq`.
//!
//! Without the feature, [`event!`] expands to nothing: no code, no cost, and its
//! arguments are not evaluated.

/// A call that took this long is logged at `debug` (every call is at `trace`).
#[cfg(feature = "tracing")]
pub(crate) const SLOW_CALL: std::time::Duration = std::time::Duration::from_millis(100);

/// `tracing::event!` with target `coproq` at `$level` (`ERROR`, `WARN`, `INFO`, `DEBUG`,
/// `TRACE`), where the `tracing` feature is on.
macro_rules! event {
    ($level:ident, $($rest:tt)+) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::event!(target: "coproq", ::tracing::Level::$level, $($rest)+);
        }
    };
}

pub(crate) use event;

/// Logs a finished call: `method`, its `id` on its link (none for a pool's call), the time
/// since `started`, and how it ended (written
/// out only where a subscriber takes the event).
#[cfg(feature = "tracing")]
pub(crate) fn call_ended<R>(
    method: &str,
    id: Option<u64>,
    started: std::time::Instant,
    result: &crate::error::Result<R>,
) {
    let took = started.elapsed();
    let outcome = Outcome(result.as_ref().err());
    if took >= SLOW_CALL {
        event!(DEBUG, method, ?id, ?took, %outcome, "slow call");
    } else {
        event!(TRACE, method, ?id, ?took, %outcome, "call");
    }
}

/// How a call ended, as its event says it: "ok", or the error's text.
#[cfg(feature = "tracing")]
struct Outcome<'a>(Option<&'a crate::error::Error>);

#[cfg(feature = "tracing")]
impl std::fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("ok"),
            Some(error) => error.fmt(f),
        }
    }
}

/// An exit status as its events show it ("signal: 6 (SIGABRT)", or "unknown").
#[cfg(feature = "tracing")]
pub(crate) fn status_text(status: Option<std::process::ExitStatus>) -> String {
    status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
}
