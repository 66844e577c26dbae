//! `Coprocess::map` over 10 000 000 items holds memory bounded: it sends calls as its
//! results are consumed, never more than its window ahead. Alone in its binary: the
//! peak resident size it checks counts the whole process.

use coproq::Coprocess;
use coproq_tests::{CALL_LIMIT, peak_rss_kib};

const ITEMS: u64 = 10_000_000;

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the peak resident size is read from /proc (Linux)"
)]
fn ten_million_items_through_map_hold_memory_bounded() {
    let worker = coproq::Builder::new()
        .call_timeout(CALL_LIMIT)
        .startup_timeout(CALL_LIMIT)
        .fork(|parent| {
            parent.handle("next", |n: u64| n + 1);
            parent.handle("peak_kib", |()| peak_rss_kib());
        })
        .unwrap();
    // Warm: the buffers and tables a long stream uses are all there after this.
    let warm: u64 = worker
        .map::<u64, _, _>("next", 0..100_000u64)
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(warm, (1..=100_000u64).sum());
    let (ours, theirs) = (peak_rss_kib(), call_peak(&worker));
    let mut expected = 1u64;
    for result in worker.map::<u64, _, _>("next", 0..ITEMS) {
        assert_eq!(result.unwrap(), expected, "results in input order");
        expected += 1;
    }
    assert_eq!(expected, ITEMS + 1, "every item answered");
    // 10 000 000 calls of 8-byte values are 80 MB of arguments and as much of results:
    // a map that ran ahead of its consumer, or kept what it yielded, would show here.
    let grown = |before: u64, after: u64| after.saturating_sub(before);
    let (ours_grown, theirs_grown) = (
        grown(ours, peak_rss_kib()),
        grown(theirs, call_peak(&worker)),
    );
    assert!(
        ours_grown < 16 << 10 && theirs_grown < 16 << 10,
        "peak resident size grew by {ours_grown} KiB here and {theirs_grown} KiB in the worker"
    );
    worker.close();
}

fn call_peak(worker: &Coprocess) -> u64 {
    coproq_tests::call(worker, "peak_kib", ()).unwrap()
}
