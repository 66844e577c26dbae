//! Flow control: how many bytes of calls and events a side may have sent that the other
//! has not yet started.
//!
//! Each side grants its peer a window (its `Hello` says how large). A sender charges
//! every call and event frame to the window as it queues it, and waits when the window
//! is full; the receiver grants the bytes back (`Credit`) as the calls and events start
//! running. So a receiver never holds more than its window of work that has not run, and
//! it can always read everything that arrives: nothing it needs to see (a reply, a
//! cancel, a ping, a grant) ever waits behind work it has no room for, and memory stays
//! bounded however fast the peer sends. Replies, cancels and the other control frames
//! are not charged: a reply answers a call of ours, and the rest are small.
//!
//! A frame larger than the whole window goes when nothing else is in flight. A receiver
//! grants back once a quarter of its window has started, and, once a sender says it is
//! waiting (`CreditWanted`), also as soon as everything it received has started; so a
//! request-and-reply link sends no grants at all, and a waiting sender always gets one.
//! A peer that sends more than it was granted breaks the protocol.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::wire::frame::HEADER_LEN;

/// What a call or event costs beside its frame: the message a receiver keeps for it
/// until it runs.
pub(crate) const PER_MESSAGE: u64 = 128;

/// The window each side grants its peer: bytes of calls and events received and not yet
/// started.
pub(crate) const RECEIVE_WINDOW: u32 = 4 << 20;

/// The smallest window a peer may grant (a smaller one in a `Hello` is refused).
pub(crate) const MIN_WINDOW: u32 = 64 << 10;

/// The cost of a frame of `len` payload bytes that carries `messages` calls or events.
#[inline]
pub(crate) fn cost(len: usize, messages: usize) -> u64 {
    (HEADER_LEN + len) as u64 + PER_MESSAGE * messages as u64
}

/// The sending side: the peer's window, and what is in flight in it.
#[derive(Debug)]
pub(crate) struct Window {
    limit: u64,
    in_flight: u64,
    /// The peer was told that we wait for a grant, and has not granted since.
    wanted: bool,
}

impl Window {
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            limit: u64::from(limit),
            in_flight: 0,
            wanted: false,
        }
    }

    /// Whether a frame of `cost` may go now: it fits, or nothing is in flight (a frame
    /// larger than the whole window goes alone).
    #[inline]
    pub(crate) fn fits(&self, cost: u64) -> bool {
        self.in_flight == 0 || self.in_flight + cost <= self.limit
    }

    /// Charges a frame that went.
    #[inline]
    pub(crate) fn charge(&mut self, cost: u64) {
        self.in_flight += cost;
    }

    /// The peer granted `bytes` back.
    pub(crate) fn grant(&mut self, bytes: u64) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
        self.wanted = false;
    }

    /// Whether the peer must be told that we wait (once per wait for a grant).
    pub(crate) fn want(&mut self) -> bool {
        !std::mem::replace(&mut self.wanted, true)
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
    /// The peer waits for a grant: grant as soon as everything received has started.
    peer_waits: AtomicBool,
}

impl Inflow {
    pub(crate) fn new(window: u32) -> Self {
        Self {
            window: u64::from(window),
            received: AtomicU64::new(0),
            released: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            peer_waits: AtomicBool::new(false),
        }
    }

    /// The reader took calls or events costing `cost`; `alone`: one frame, which may be
    /// larger than the window when nothing else waits. Fails if the peer overran its
    /// window.
    #[inline]
    pub(crate) fn receive(&self, cost: u64, alone: bool) -> Result<(), Overflow> {
        let received = self.received.load(Ordering::Relaxed);
        let held = received.saturating_sub(self.released.load(Ordering::Acquire));
        if held + cost > self.window && !(alone && held == 0) {
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
    /// peer now, if a grant is due.
    #[inline]
    pub(crate) fn release(&self, cost: u64) -> Option<u64> {
        if cost == 0 {
            return None;
        }
        let released = self.released.fetch_add(cost, Ordering::AcqRel) + cost;
        let granted = self.granted.load(Ordering::Acquire);
        let due = released.saturating_sub(granted) >= self.window / 4
            || self.peer_waits.load(Ordering::Relaxed)
                && released >= self.received.load(Ordering::Acquire);
        if due {
            self.grant_up_to(released)
        } else {
            None
        }
    }

    /// The peer says it waits for a grant: what can be granted now, if anything; the
    /// rest as soon as everything received has started.
    pub(crate) fn peer_waits(&self) -> Option<u64> {
        self.peer_waits.store(true, Ordering::Relaxed);
        self.grant_up_to(self.released.load(Ordering::Acquire))
    }

    /// Grants everything released up to `released` that nobody granted yet.
    fn grant_up_to(&self, released: u64) -> Option<u64> {
        let mut granted = self.granted.load(Ordering::Acquire);
        loop {
            let bytes = released.checked_sub(granted).filter(|&b| b > 0)?;
            match self.granted.compare_exchange(
                granted,
                released,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if released >= self.received.load(Ordering::Acquire) {
                        self.peer_waits.store(false, Ordering::Relaxed);
                    }
                    return Some(bytes);
                }
                Err(now) => granted = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_waits_when_the_window_is_full_and_a_large_frame_goes_alone() {
        let mut window = Window::new(1000);
        assert!(window.fits(5000), "nothing in flight: anything goes");
        window.charge(600);
        assert!(window.fits(400));
        assert!(!window.fits(401));
        assert!(window.want(), "the first wait tells the peer");
        assert!(!window.want(), "once");
        window.grant(600);
        assert_eq!(window.in_flight(), 0);
        assert!(window.want(), "a grant ends the wait");
        window.charge(5000);
        assert!(!window.fits(1));
    }

    #[test]
    fn a_receiver_refuses_what_overruns_its_window() {
        let inflow = Inflow::new(1000);
        inflow.receive(600, false).unwrap();
        inflow.receive(400, false).unwrap();
        let err = inflow.receive(1, false).unwrap_err();
        assert_eq!((err.held, err.cost, err.window), (1000, 1, 1000));
        assert!(err.to_string().contains("beyond the window"), "{err}");
        // Once all has started, one frame may be larger than the window.
        assert_eq!(inflow.release(1000), Some(1000));
        inflow.receive(5000, true).unwrap();
        assert!(
            inflow.receive(1, true).is_err(),
            "not while it waits to run"
        );
    }

    #[test]
    fn grants_come_per_quarter_window_or_when_the_waiting_peer_is_caught_up() {
        let inflow = Inflow::new(1000);
        inflow.receive(900, false).unwrap();
        // Request and reply: small releases grant nothing.
        assert_eq!(inflow.release(100), None);
        assert_eq!(inflow.release(100), None);
        // A quarter of the window released: granted, all of it.
        assert_eq!(inflow.release(50), Some(250));
        assert_eq!(inflow.release(10), None);
        // The peer waits: what is released goes now, the rest once all has started.
        assert_eq!(inflow.peer_waits(), Some(10));
        assert_eq!(inflow.peer_waits(), None);
        assert_eq!(inflow.release(100), None);
        assert_eq!(inflow.release(540), Some(640));
        // Caught up: small releases grant nothing again.
        inflow.receive(100, false).unwrap();
        assert_eq!(inflow.release(100), None);
    }

    #[test]
    fn concurrent_releases_grant_every_byte_once() {
        let inflow = std::sync::Arc::new(Inflow::new(1 << 20));
        let per_thread = 10_000u64;
        // One reader receives; several threads run what it received.
        inflow.receive(4 * per_thread, false).unwrap();
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
        let rest = inflow.peer_waits().unwrap_or(0);
        assert_eq!(granted + rest, 4 * per_thread);
    }
}
