//! Both ends of the flood tests: one side floods its peer with 4 KiB events or pipelined
//! calls as fast as it can; the other takes them slowly, counts them, and reports how far
//! its memory grew meanwhile. [`serve`] gives a link both roles, so that either end of
//! a fork or spawned worker can play either.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coproq::Coprocess;
use serde_bytes::{ByteBuf, Bytes};

use crate::CALL_LIMIT;

/// The size of each flooding event's or call's argument.
pub const BLOB: usize = 4096;

/// How long the slow listener takes per event.
pub const EVENT_TIME: Duration = Duration::from_micros(100);

/// How long the slow handler takes per call.
pub const CALL_TIME: Duration = Duration::from_millis(1);

static EVENTS: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
static RSS_AT_RESET_KIB: AtomicU64 = AtomicU64::new(0);

/// What floods: one-way events, or calls whose replies are awaited at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Flood {
    /// `emit("sink", blob)` in a loop.
    Events,
    /// `call_async("slow", blob)` in a loop, every reply checked at the end.
    Calls,
}

/// Registers on `peer` the slow side (`sink`, `slow`, `counts`) and the flooding side
/// (`flood`), and the memory probes (`reset_peak`, `peak_growth_kib`).
///
/// # Panics
///
/// The `sink` listener panics on an event that is not `BLOB` bytes long (the link then
/// says so on stderr, and `counts` does not count it).
pub fn serve(peer: &Coprocess) {
    let back = peer.downgrade();
    peer.on("sink", |blob: ByteBuf| {
        assert_eq!(blob.len(), BLOB);
        std::thread::sleep(EVENT_TIME);
        EVENTS.fetch_add(1, Ordering::Relaxed);
    })
    .handle("slow", |blob: ByteBuf| {
        std::thread::sleep(CALL_TIME);
        CALLS.fetch_add(1, Ordering::Relaxed);
        blob.len()
    })
    .handle("counts", |(): ()| counts())
    .handle("reset_peak", |(): ()| reset_peak())
    .handle("peak_growth_kib", |(): ()| peak_growth_kib())
    .handle("flood", move |(what, for_ms): (Flood, u64)| {
        let peer = back.upgrade().ok_or(coproq::Error::NotConnected)?;
        flood(&peer, what, Duration::from_millis(for_ms))
    });
}

/// The events this process's listener took and the calls its handler answered so far.
pub fn counts() -> (u64, u64) {
    (
        EVENTS.load(Ordering::Relaxed),
        CALLS.load(Ordering::Relaxed),
    )
}

/// Floods `peer` for `time`; how many events or calls were sent (every call answered).
///
/// # Panics
///
/// If a reply is not the size sent.
pub fn flood(peer: &Coprocess, what: Flood, time: Duration) -> coproq::Result<u64> {
    let blob = vec![7u8; BLOB];
    let deadline = Instant::now() + time;
    let mut sent = 0;
    let mut pending = Vec::new();
    while Instant::now() < deadline {
        match what {
            Flood::Events => peer.emit("sink", Bytes::new(&blob))?,
            Flood::Calls => pending.push(peer.call_async::<usize>("slow", Bytes::new(&blob))),
        }
        sent += 1;
    }
    for reply in pending {
        assert_eq!(reply.wait_timeout(CALL_LIMIT)?, BLOB);
    }
    Ok(sent)
}

/// Waits until the slow side behind `counts` has taken `sent` of `what`; whether it did
/// within `limit`.
pub fn all_taken(what: Flood, sent: u64, limit: Duration, counts: impl Fn() -> (u64, u64)) -> bool {
    crate::wait_until(limit, || {
        let (events, calls) = counts();
        match what {
            Flood::Events => events == sent,
            Flood::Calls => calls == sent,
        }
    })
}

/// Resets this process's peak resident set to what it holds now (Linux: `clear_refs`),
/// and remembers that; returns it in KiB.
pub fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let now = status_kib("VmRSS:");
    RSS_AT_RESET_KIB.store(now, Ordering::Relaxed);
    now
}

/// How far this process's peak resident set rose above what it held at the last
/// [`reset_peak`], in KiB.
pub fn peak_growth_kib() -> u64 {
    status_kib("VmHWM:").saturating_sub(RSS_AT_RESET_KIB.load(Ordering::Relaxed))
}

/// A `/proc/self/status` field in KiB.
#[must_use]
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
