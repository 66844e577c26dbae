//! Spinning before blocking.
//!
//! A blocking round trip between processes on different CPUs pays two sleeps and two
//! cross-CPU wake-ups, tens of microseconds, where the data itself moves in one. So a
//! thread about to sleep until the peer answers first polls for a short, bounded budget:
//! an answer that comes quickly is taken without ever sleeping. After the first fifth of
//! the budget it yields the CPU between polls: where another thread is ready to run on it
//! (the peer itself, on a crowded machine), that thread runs at once instead of after our
//! budget.
//!
//! Spinning backs off where it does not pay:
//! - **One CPU.** A process that may run on one CPU only (its affinity or its quota, as
//!   read when it first would spin) spins only for a local peer that may run on a CPU
//!   this process may not (its affinity, re-read every [`PEER_RECHECK`]): otherwise the
//!   peer could not run meanwhile. Two processes pinned to two CPUs spin; two sharing
//!   one do not. It never spins for a hand-over between its own threads.
//! - **Slow answers.** Each place that waits (a [`Site`]) counts its misses. After a spin
//!   that ran out for the second time in a row, that site skips spinning for its next
//!   wait, then 3, 7, ... up to 1 023 waits, before it tries again; each answer that
//!   arrives in time takes one miss back. Whatever
//!   makes answers late is a miss: a handler that takes a millisecond, a peer that waits
//!   for a CPU on a machine with more runnable threads than CPUs. Once learnt, each costs
//!   one spin in about a thousand waits.
//! - **Busy processes.** At most one thread fewer than this process's CPUs spins at a
//!   time, so spinners never hold every CPU it may use.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// The default budget: about what a blocking round trip between two CPUs costs (two
/// sleeps and wake-ups), so that an answer that would have taken that long anyway is
/// still caught by polling.
pub(crate) const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// After `MAX_BACKOFF + 1` misses in a row, a site skips `2^MAX_BACKOFF - 1` waits between
/// tries.
const MAX_BACKOFF: u32 = 10;

/// One place that waits for the peer, with its own record of whether spinning pays.
#[derive(Debug, Default)]
pub(crate) struct Site {
    /// Waits left to skip before the next try.
    skip: AtomicU32,
    /// Misses in a row (capped at `MAX_BACKOFF`).
    misses: AtomicU32,
}

impl Site {
    /// Whether this wait should spin (counts a skipped one down).
    fn should_try(&self) -> bool {
        let skip = self.skip.load(Ordering::Relaxed);
        if skip == 0 {
            return true;
        }
        self.skip.store(skip - 1, Ordering::Relaxed);
        false
    }

    fn hit(&self) {
        // A hit takes back one miss, not all: where answers come in time only now and
        // then (a busy machine), spinning stays rare.
        let misses = self.misses.load(Ordering::Relaxed);
        if misses != 0 {
            self.misses.store(misses - 1, Ordering::Relaxed);
        }
    }

    fn miss(&self) {
        // One miss alone may be noise (an interrupt, a busy moment): only the second in a
        // row starts skipping.
        let misses = (self.misses.load(Ordering::Relaxed) + 1).min(MAX_BACKOFF + 1);
        self.misses.store(misses, Ordering::Relaxed);
        self.skip.store((1 << (misses - 1)) - 1, Ordering::Relaxed);
    }
}

/// How often a process on one CPU reads again where its peer may run: a worker pinned
/// after its start is seen within this.
pub(crate) const PEER_RECHECK: Duration = Duration::from_millis(10);

/// Where a local peer may run, as last read: whether it may run on a CPU this process
/// may not.
#[derive(Debug)]
struct PeerCpus {
    pid: u32,
    /// When it was last read ([`sys::coarse_now`] in ms, plus one; 0: never).
    read_at: AtomicU64,
    elsewhere: AtomicBool,
}

impl PeerCpus {
    /// Whether the peer may run on a CPU this process may not (read at most every
    /// [`PEER_RECHECK`]: a system call where waits cost a few microseconds).
    fn elsewhere(&self) -> bool {
        let now = u64::try_from(sys::coarse_now().as_millis()).unwrap_or(u64::MAX) + 1;
        let read_at = self.read_at.load(Ordering::Relaxed);
        if read_at == 0 || now.saturating_sub(read_at) >= PEER_RECHECK.as_millis() as u64 {
            self.read_at.store(now, Ordering::Relaxed);
            let elsewhere = sys::may_run_elsewhere(self.pid);
            self.elsewhere.store(elsewhere, Ordering::Relaxed);
            return elsewhere;
        }
        self.elsewhere.load(Ordering::Relaxed)
    }
}

/// A link's spinning budget (zero: never spin), and its peer's process where the peer
/// is on this machine.
#[derive(Debug)]
pub(crate) struct Spin {
    budget: Duration,
    peer: Option<PeerCpus>,
}

impl Spin {
    /// `peer`: the peer's process id, where it runs on this machine.
    pub(crate) fn new(budget: Duration, peer: Option<u32>) -> Self {
        Self {
            budget,
            peer: peer.map(|pid| PeerCpus {
                pid,
                read_at: AtomicU64::new(0),
                elsewhere: AtomicBool::new(false),
            }),
        }
    }

    /// Polls `ready` until it says yes or the budget runs out (or spinning does not pay
    /// at `site` now); whether it said yes. `ready` should be cheap: a flag, or a
    /// non-blocking look at a descriptor. For a wait on another thread of this process.
    pub(crate) fn until(&self, site: &Site, ready: impl FnMut() -> bool) -> bool {
        self.spin(site, false, ready)
    }

    /// [`Spin::until`], for a wait on the peer: on one CPU too, where the peer may run
    /// on another.
    pub(crate) fn until_peer(&self, site: &Site, ready: impl FnMut() -> bool) -> bool {
        self.spin(site, true, ready)
    }

    fn spin(&self, site: &Site, for_peer: bool, mut ready: impl FnMut() -> bool) -> bool {
        if self.budget.is_zero() || !site.should_try() {
            return false;
        }
        let beside_peer = || for_peer && self.peer.as_ref().is_some_and(PeerCpus::elsewhere);
        let Some(_seat) = SpinPermit::take(beside_peer) else {
            return false;
        };
        let start = Instant::now();
        loop {
            if ready() {
                site.hit();
                return true;
            }
            let spent = start.elapsed();
            if spent >= self.budget {
                site.miss();
                return false;
            }
            // Polls alone at first (a quick answer is taken at once); past a fifth of the
            // budget, the CPU is offered to whoever else is ready between polls.
            if spent >= self.budget / 5 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// How many threads of this process may spin at once: one fewer than the CPUs it may run
/// on (read once, when a thread first would spin), so none on one CPU.
fn max_spinners() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::thread::available_parallelism().map_or(0, |cpus| cpus.get().saturating_sub(1))
    })
}

/// Threads of this process spinning now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// The right to spin, held while spinning.
struct SpinPermit;

impl SpinPermit {
    /// A seat, if fewer threads than [`max_spinners`] spin; where that is none (one CPU),
    /// one seat if `beside_peer` says the peer may run on another CPU.
    fn take(beside_peer: impl FnOnce() -> bool) -> Option<Self> {
        let max = match max_spinners() {
            0 => usize::from(beside_peer()),
            max => max,
        };
        SPINNING
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for SpinPermit {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_back_off_exponentially_and_a_hit_resets() {
        let site = Site::default();
        let skipped = |site: &Site| {
            std::iter::repeat_with(|| site.should_try())
                .take_while(|tried| !tried)
                .count()
        };
        site.miss();
        assert_eq!(skipped(&site), 0, "one miss alone skips nothing");
        site.miss();
        assert_eq!(skipped(&site), 1);
        site.miss();
        site.miss();
        assert_eq!(skipped(&site), 7);
        for _ in 0..20 {
            site.miss();
        }
        assert_eq!(skipped(&site), (1 << MAX_BACKOFF) - 1);
        // Each hit takes back one miss.
        for _ in 0..MAX_BACKOFF {
            site.hit();
        }
        site.miss();
        assert_eq!(skipped(&site), 1);
        site.hit();
        site.hit();
        site.miss();
        assert_eq!(skipped(&site), 0);
    }

    #[test]
    fn a_zero_budget_never_polls() {
        let spin = Spin::new(Duration::ZERO, None);
        assert!(!spin.until(&Site::default(), || panic!("polled")));
    }

    #[test]
    fn spinning_stops_at_the_answer_or_the_budget() {
        if max_spinners() == 0 {
            // One CPU: nothing spins (`a_zero_budget_never_polls` covers not polling).
            assert!(!Spin::new(Duration::from_millis(5), None).until(&Site::default(), || true));
            return;
        }
        let spin = Spin::new(Duration::from_millis(5), None);
        let site = Site::default();
        let mut polls = 0;
        assert!(spin.until(&site, || {
            polls += 1;
            polls == 3
        }));
        let start = Instant::now();
        assert!(!spin.until(&site, || false));
        assert!(start.elapsed() >= Duration::from_millis(5));
        assert!(!spin.until(&site, || false));
        // Two misses in a row make the next wait skip spinning.
        assert!(!spin.until(&site, || panic!("polled while backing off")));
    }
}
