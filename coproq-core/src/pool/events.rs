//! What a pool tells a program about its workers as it happens: starts, deaths with their
//! cause, recycling, and the pool breaking (see [`PoolBuilder::on_event`]).
//!
//! [`PoolBuilder::on_event`]: super::PoolBuilder::on_event

use std::process::ExitStatus;
use std::sync::Arc;

use crate::error::Postmortem;

/// Something that happened to a pool's workers, given to the
/// [`on_event`](super::PoolBuilder::on_event) callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A worker started in seat `seat` (at the pool's start, or as a replacement).
    Started {
        /// The seat's index, `0..size`.
        seat: usize,
        /// The worker's process id (for a worker over a command, the command's).
        pid: Option<u32>,
    },
    /// The worker of seat `seat` died, crashed, was killed or broke the protocol; the pool
    /// replaces it (after a backoff, if workers keep dying before answering anything).
    Died {
        /// The seat's index.
        seat: usize,
        /// Its process id.
        pid: Option<u32>,
        /// Its exit status, where it could be reaped.
        status: Option<ExitStatus>,
        /// What else is known of its death, as its calls' `Disconnected` errors carry it.
        postmortem: Option<Arc<Postmortem>>,
    },
    /// The worker of seat `seat` was retired gracefully, its calls done, and is replaced.
    Retired {
        /// The seat's index.
        seat: usize,
        /// Its process id.
        pid: Option<u32>,
        /// Why.
        reason: Retirement,
    },
    /// The pool broke: it restarted workers more often than its restart limit allows.
    Broken {
        /// As [`Error::PoolBroken`](crate::Error::PoolBroken) says it.
        reason: String,
    },
}

/// Why a worker was retired (see [`PoolEvent::Retired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retirement {
    /// It took its [`max_calls_per_worker`](super::PoolBuilder::max_calls_per_worker).
    Calls,
    /// Its resident size passed [`max_rss`](super::PoolBuilder::max_rss).
    Rss {
        /// Its resident size when it was measured, in bytes.
        bytes: u64,
    },
}

/// The program's callback.
pub(crate) type OnEvent = Arc<dyn Fn(&PoolEvent) + Send + Sync>;
