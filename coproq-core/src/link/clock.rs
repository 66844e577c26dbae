//! Deadlines on the wire.
//!
//! A call carries its caller's deadline, so that the handler sees the deadline its caller
//! has. Where both ends share the machine's monotonic clock (each `Hello` offers its
//! clock's reading, and a reading a few moments behind one's own shows it is the same
//! clock), the deadline travels as that clock's time: exact, however long the call
//! queued on either side. Otherwise (a worker over ssh) it travels as what remained of
//! it when it was sent, and the receiver counts that from when the call arrived.

use std::time::{Duration, Instant};

use crate::sys;

/// Marks a deadline sent as the shared clock's time.
const ON_SHARED_CLOCK: u64 = 1 << 63;

/// How far behind ours a peer's reading may be and still come from our clock: the time
/// a `Hello` may take to arrive, with room (a start may take as long as its timeout).
const SAME_CLOCK_WITHIN: Duration = Duration::from_mins(5);

/// This side's offer of its clock, for its `Hello`: the clock now (never 0, which means
/// "not offered").
pub(crate) fn offer() -> u64 {
    sys::monotonic_micros().max(1)
}

/// Whether `peer_offer`, the reading in the peer's `Hello`, comes from our own clock.
pub(crate) fn is_shared(peer_offer: u64) -> bool {
    let behind = sys::monotonic_micros().checked_sub(peer_offer);
    peer_offer != 0
        && behind.is_some_and(|behind| Duration::from_micros(behind) < SAME_CLOCK_WITHIN)
}

/// A deadline in the wire's form (0: none): the shared clock's time where `shared`,
/// otherwise what remains of it.
#[inline]
pub(crate) fn to_wire(deadline: Option<Instant>, shared: bool) -> u64 {
    let Some(deadline) = deadline else {
        return 0;
    };
    let left = deadline.saturating_duration_since(Instant::now());
    // Rounded up, so that a deadline about to pass is not sent as none.
    let left_us = u64::try_from(left.as_micros()).unwrap_or(u64::MAX).max(1);
    if shared {
        ON_SHARED_CLOCK | (sys::monotonic_micros().saturating_add(left_us) & !ON_SHARED_CLOCK)
    } else {
        left_us.min(!ON_SHARED_CLOCK)
    }
}

/// The deadline a call's wire form gives (0: none); `arrived` tells when the call
/// arrived, for a deadline sent as what remained of it.
#[inline]
pub(crate) fn from_wire(raw: u64, arrived: impl FnOnce() -> Instant) -> Option<Instant> {
    if raw == 0 {
        return None;
    }
    if raw & ON_SHARED_CLOCK != 0 {
        let at = raw & !ON_SHARED_CLOCK;
        let now = sys::monotonic_micros();
        let instant = Instant::now();
        return Some(match at.checked_sub(now) {
            Some(ahead) => instant
                .checked_add(Duration::from_micros(ahead))
                .unwrap_or(instant + Duration::from_hours(8760)),
            None => instant
                .checked_sub(Duration::from_micros(now - at))
                .unwrap_or(instant),
        });
    }
    let arrived = arrived();
    Some(
        arrived
            .checked_add(Duration::from_micros(raw))
            .unwrap_or(arrived + Duration::from_hours(8760)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_on_the_shared_clock_comes_back_exact() {
        let deadline = Instant::now() + Duration::from_millis(700);
        let raw = to_wire(Some(deadline), true);
        // However long it travels, it means the same instant.
        std::thread::sleep(Duration::from_millis(20));
        let back = from_wire(raw, || panic!("not needed")).unwrap();
        let apart = if back > deadline {
            back - deadline
        } else {
            deadline - back
        };
        assert!(apart < Duration::from_millis(5), "{apart:?}");
        // One that has passed comes back passed.
        let past = to_wire(Some(Instant::now()), true);
        std::thread::sleep(Duration::from_millis(5));
        assert!(from_wire(past, || panic!("not needed")).unwrap() <= Instant::now());
    }

    #[test]
    fn a_relative_deadline_counts_from_arrival() {
        let raw = to_wire(Some(Instant::now() + Duration::from_secs(2)), false);
        let arrived = Instant::now() + Duration::from_secs(10);
        let back = from_wire(raw, || arrived).unwrap();
        assert!(
            back > arrived + Duration::from_millis(1900)
                && back <= arrived + Duration::from_secs(2)
        );
        assert_eq!(to_wire(None, true), 0);
        assert_eq!(from_wire(0, || panic!("none")), None);
    }

    #[test]
    fn our_own_clock_is_recognised_and_others_are_not() {
        assert!(is_shared(offer()));
        assert!(!is_shared(0));
        assert!(!is_shared(offer() + 10_000_000), "ahead of ours");
        assert!(
            !is_shared(offer().saturating_sub(3_600_000_000)),
            "an hour behind"
        );
    }
}
