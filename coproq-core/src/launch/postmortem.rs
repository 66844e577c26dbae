//! Why a worker died, as far as its parent can tell: gathered while it starts (its
//! stderr, followed; the kernel's count of out-of-memory kills; its memory limit) and
//! read when its link ends, into the [`Postmortem`] that `Disconnected` carries.

use std::process::ExitStatus;
use std::sync::Arc;

use super::stderr::StderrTail;
use crate::error::{DeathReason, Postmortem};
use crate::options::Options;
use crate::sys;

/// What the parent keeps of a worker to tell why it died.
#[derive(Debug, Default)]
pub(crate) struct Witness {
    /// Its stderr, followed where the options ask for a tail.
    tail: Option<Arc<StderrTail>>,
    /// How many lines of it the postmortem quotes (0: none).
    lines: usize,
    /// The out-of-memory kills counted when it started (a local worker on Linux).
    oom: Option<sys::OomCounter>,
    memory_limit: Option<u64>,
}

impl Witness {
    /// The witness of worker `pid`: `local` when `pid` is the worker itself (not a
    /// command such as `ssh` carrying its link), whose kernel is ours.
    pub(crate) fn new(
        pid: u32,
        tail: Option<Arc<StderrTail>>,
        options: &Options,
        local: bool,
    ) -> Self {
        Self {
            tail,
            lines: options.stderr_tail,
            oom: if local { sys::oom_kills(pid) } else { None },
            memory_limit: options.link.memory_limit,
        }
    }

    /// What can be said of a worker that ended with `status`; `None` where nothing more
    /// than the status is known.
    pub(crate) fn examine(
        &self,
        status: Option<ExitStatus>,
        killed_by_coproq: bool,
    ) -> Option<Arc<Postmortem>> {
        let signal = status.and_then(sys::exit_signal);
        let (stderr_tail, last_words) = match &self.tail {
            Some(tail) if self.lines > 0 => (tail.last(self.lines), tail.last_words()),
            _ => (Vec::new(), None),
        };
        let last_words = last_words.as_deref().unwrap_or("");
        let reason = if killed_by_coproq {
            Some(DeathReason::KilledByCoproq)
        } else if let Some(reason) = out_of_memory(last_words, self.memory_limit) {
            Some(reason)
        } else if last_words.contains("has overflowed its stack") {
            Some(DeathReason::StackOverflow)
        } else if signal.is_some_and(sys::is_sigkill) {
            Some(if self.oom.as_ref().is_some_and(sys::OomCounter::grew) {
                DeathReason::OutOfMemoryKiller
            } else {
                DeathReason::PossiblyOutOfMemory
            })
        } else {
            None
        };
        let signal = signal.and_then(sys::signal_name);
        if signal.is_none() && reason.is_none() && stderr_tail.is_empty() {
            return None;
        }
        Some(Arc::new(Postmortem {
            signal,
            reason,
            stderr_tail,
        }))
    }
}

/// Rust's allocator says "memory allocation of N bytes failed" before it aborts: the
/// worker ran out of memory (under `limit`, if it had one) where `line` says so.
fn out_of_memory(line: &str, limit: Option<u64>) -> Option<DeathReason> {
    let rest = line.split("memory allocation of ").nth(1)?;
    let (bytes, tail) = rest.split_once(' ')?;
    tail.starts_with("bytes failed")
        .then(|| DeathReason::OutOfMemory {
            bytes: bytes.parse().ok(),
            limit,
        })
}

#[cfg(test)]
mod tests {
    use super::{DeathReason, out_of_memory};

    #[test]
    fn the_allocators_message_gives_the_size() {
        let line = "memory allocation of 68719476736 bytes failed";
        let reason = DeathReason::OutOfMemory {
            bytes: Some(68_719_476_736),
            limit: Some(1),
        };
        assert_eq!(out_of_memory(line, Some(1)), Some(reason));
        assert_eq!(out_of_memory("all fine", None), None);
    }
}
