//! Flow control: how many bytes of calls and events a side may have sent that the other
//! has not yet started.
//!
//! Each side grants its peer a window (its `Hello` says how large). A sender may queue a
//! call or event frame while what it has in flight is below the window, and charges the
//! frame to it once built (so that it never builds what it would have to take back); it
//! waits while the window is full. The receiver grants the bytes back (`Credit`) in
//! quarters of its window, as the calls and events start running. So a receiver never
//! holds more than its window of work that has not run, plus one frame, and it can
//! always read everything that arrives: nothing it needs to see (a reply, a cancel, a
//! ping, a grant) ever waits behind work it has no room for, and memory stays bounded
//! however fast the peer sends. Replies and control frames are not charged: a reply
//! answers a call of ours, and the rest are small. A request-and-reply link sends no
//! grants at all.
//!
//! A sender that waits always gets a grant: it waits with the window full, so what it
//! has in flight (at least the window) is either still on its way, held by the receiver
//! to run, or run and not yet granted, the last always less than a quarter. Everything
//! held runs in the end (a serving thread that waits inside a handler releases what it
//! ran before, see `context`), and running more than a quarter's worth grants it. A peer
//! that sends more than it was granted breaks the protocol.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::frame::HEADER_LEN;

/// What a frame of a call or an event costs beside its bytes: the message a receiver
/// keeps for it until it runs.
pub(crate) const PER_MESSAGE: u64 = 128;

/// What each event of a run after the first costs beside its item: a run stays one
/// message until it runs, and its events are items of its frame.
pub(crate) const PER_RUN_ITEM: u64 = 16;

/// The window each side grants its peer: bytes of calls and events received and not yet
/// started.
pub(crate) const RECEIVE_WINDOW: u32 = 4 << 20;

/// The smallest window a peer may grant (a smaller one in a `Hello` is refused).
pub(crate) const MIN_WINDOW: u32 = 64 << 10;

/// The cost of a frame of `len` payload bytes that carries `events` calls or events (a
/// run carries more than one).
#[inline]
pub(crate) fn cost(len: usize, events: usize) -> u64 {
    (HEADER_LEN + len) as u64 + PER_MESSAGE + PER_RUN_ITEM * events.saturating_sub(1) as u64
}

/// The sending side: the peer's window, and what is in flight in it.
#[derive(Debug)]
pub(crate) struct Window {
    limit: u64,
    in_flight: u64,
}

impl Window {
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            limit: u64::from(limit),
            in_flight: 0,
        }
    }

    /// Whether another frame may go now: what is in flight is below the window.
    #[inline]
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight < self.limit
    }

    /// Charges a frame that went.
    #[inline]
    pub(crate) fn charge(&mut self, cost: u64) {
        self.in_flight += cost;
    }

    /// The peer granted `bytes` back.
    pub(crate) fn grant(&mut self, bytes: u64) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
    }

    /// What is in flight now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight
    }
}

/// The peer sent more calls and events than the window it was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow {
    pub(crate) held: u64,
    pub(crate) cost: u64,
    pub(crate) window: u64,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the peer sent {} bytes of calls and events while {} were waiting to run, \
             beyond the window of {} it was granted",
            self.cost, self.held, self.window
        )
    }
}

/// The receiving side: bytes received, released (their calls and events started) and
/// granted back. The reader receives; whoever runs a call or event releases it.
#[derive(Debug)]
pub(crate) struct Inflow {
    window: u64,
    received: AtomicU64,
    released: AtomicU64,
    granted: AtomicU64,
}

impl Inflow {
    pub(crate) fn new(window: u32) -> Self {
        Self {
            window: u64::from(window),
            received: AtomicU64::new(0),
            released: AtomicU64::new(0),
            granted: AtomicU64::new(0),
        }
    }

    /// The reader took frames of calls or events costing `cost` in all, the last of them
    /// `last`. Fails if the peer overran its window: each frame must have started while
    /// what was held before it was below the window.
    #[inline]
    pub(crate) fn receive(&self, cost: u64, last: u64) -> Result<(), Overflow> {
        let received = self.received.load(Ordering::Relaxed);
        let held = received.saturating_sub(self.released.load(Ordering::Acquire));
        if held + cost.saturating_sub(last) >= self.window {
            return Err(Overflow {
                held,
                cost,
                window: self.window,
            });
        }
        self.received.store(received + cost, Ordering::Release);
        Ok(())
    }

    /// Calls or events costing `cost` started (or were skipped); the bytes to grant the
    /// peer now, once a quarter of the window is due.
    #[inline]
    pub(crate) fn release(&self, cost: u64) -> Option<u64> {
        if cost == 0 {
            return None;
        }
        let released = self.released.fetch_add(cost, Ordering::AcqRel) + cost;
        let mut granted = self.granted.load(Ordering::Acquire);
        loop {
            let due = released
                .checked_sub(granted)
                .filter(|&due| due >= self.window / 4)?;
            match self.granted.compare_exchange(
                granted,
                released,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(due),
                Err(now) => granted = now,
            }
        }
    }

    /// What has been released and not granted (for tests).
    #[cfg(test)]
    fn ungranted(&self) -> u64 {
        self.released.load(Ordering::Acquire) - self.granted.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_waits_when_the_window_is_full() {
        let mut window = Window::new(1000);
        assert!(window.has_room());
        window.charge(999);
        assert!(window.has_room(), "below the window: one more may go");
        window.charge(5000);
        assert!(!window.has_room());
        window.grant(5000);
        assert_eq!(window.in_flight(), 999);
        assert!(window.has_room());
    }

    #[test]
    fn a_receiver_refuses_what_overruns_its_window() {
        let inflow = Inflow::new(1000);
        inflow.receive(600, 600).unwrap();
        // Started below the window: taken, however large.
        inflow.receive(5000, 5000).unwrap();
        let err = inflow.receive(1, 1).unwrap_err();
        assert_eq!((err.held, err.cost, err.window), (5600, 1, 1000));
        assert!(err.to_string().contains("beyond the window"), "{err}");
        // Frames read together: every one but the last must start below the window.
        let inflow = Inflow::new(1000);
        inflow.receive(999 + 500, 500).unwrap();
        let inflow = Inflow::new(1000);
        assert!(inflow.receive(1000 + 500, 500).is_err());
    }

    #[test]
    fn grants_come_a_quarter_window_at_a_time() {
        let inflow = Inflow::new(1000);
        inflow.receive(900, 900).unwrap();
        // Request and reply: small releases grant nothing.
        assert_eq!(inflow.release(100), None);
        assert_eq!(inflow.release(100), None);
        // A quarter of the window released: granted, all of it.
        assert_eq!(inflow.release(50), Some(250));
        assert_eq!(inflow.release(10), None);
        assert_eq!(inflow.ungranted(), 10);
        assert_eq!(inflow.release(240), Some(250));
    }

    #[test]
    fn a_sender_stuck_at_a_full_window_always_gets_a_grant() {
        // The worst case: the sender has the window in flight and nothing on its way,
        // so the receiver holds all of it, less what it ran and did not grant yet.
        for ran_before in [0, 100, 249] {
            let inflow = Inflow::new(1000);
            inflow.receive(1000, 10).unwrap();
            assert_eq!(inflow.release(ran_before), None);
            let mut granted = 0;
            for _ in ran_before..1000 {
                granted += inflow.release(1).unwrap_or(0);
            }
            assert!(granted >= 750, "{ran_before}: {granted}");
        }
    }

    #[test]
    fn concurrent_releases_grant_every_byte_once() {
        let inflow = std::sync::Arc::new(Inflow::new(1 << 20));
        let per_thread = 100_000u64;
        // One reader receives; several threads run what it received.
        inflow.receive(4 * per_thread, 1).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let inflow = std::sync::Arc::clone(&inflow);
                std::thread::spawn(move || {
                    (0..per_thread)
                        .map(|_| inflow.release(1).unwrap_or(0))
                        .sum::<u64>()
                })
            })
            .collect();
        let granted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted + inflow.ungranted(), 4 * per_thread);
    }
}
