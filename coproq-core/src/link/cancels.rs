//! Calls the peer has cancelled: consulted before a received call runs (a cancelled call
//! never starts) and by a running handler that asks whether it should stop.
//!
//! The peer cancels rarely, so the check on the hot path is one atomic load. The set is
//! bounded: it keeps the most recent cancels, enough for every call that can be queued or
//! running at once (the receive window bounds the queued ones), so a peer that cancels
//! without end cannot grow it, and a cancel is never forgotten while its call waits.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::credit::{PER_MESSAGE, RECEIVE_WINDOW};

/// How many cancelled ids are remembered: twice as many calls as can be queued here at
/// once (each is charged at least `PER_MESSAGE` to the window), for those and as many
/// running. At most about 2 MiB, and only while the peer cancels that much.
const REMEMBERED: usize = 2 * (RECEIVE_WINDOW as usize / PER_MESSAGE as usize);

#[derive(Debug, Default)]
pub(crate) struct Cancels {
    /// Some id was ever cancelled on this link.
    any: AtomicBool,
    recent: Mutex<CancelHistory>,
}

#[derive(Debug, Default)]
struct CancelHistory {
    ids: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Cancels {
    /// The peer cancelled call `id`.
    pub(crate) fn record(&self, id: u64) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.ids.insert(id) {
            recent.order.push_back(id);
            if recent.order.len() > REMEMBERED
                && let Some(oldest) = recent.order.pop_front()
            {
                recent.ids.remove(&oldest);
            }
        }
        self.any.store(true, Ordering::Release);
    }

    /// Whether the peer cancelled call `id`.
    #[inline]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.any.load(Ordering::Acquire)
            && self
                .recent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .ids
                .contains(&id)
    }

    /// Forgets `id` once its call is answered or skipped (ids are never reused).
    #[inline]
    pub(crate) fn settle(&self, id: u64) {
        if self.any.load(Ordering::Acquire) {
            // Its place in `order` goes when it is evicted.
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            recent.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_cancels_and_stays_bounded() {
        let cancels = Cancels::default();
        assert!(!cancels.contains(1));
        cancels.record(1);
        assert!(cancels.contains(1));
        cancels.settle(1);
        assert!(!cancels.contains(1));
        for id in 0..(3 * REMEMBERED as u64) {
            cancels.record(id);
        }
        let recent = cancels.recent.lock().unwrap();
        assert_eq!(recent.ids.len(), REMEMBERED);
        assert_eq!(recent.order.len(), REMEMBERED);
        drop(recent);
        assert!(cancels.contains(3 * REMEMBERED as u64 - 1));
        assert!(!cancels.contains(0));
    }
}
