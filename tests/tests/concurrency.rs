//! `concurrency(n)`: blocking handlers of one link running at once, against real workers:
//! launched in arrival order, events in order after them, nested callbacks at any depth
//! with concurrency on both ends, cancels and deadlines reaching running calls, a
//! graceful close, and a worker binary choosing for itself.

use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coproq::{Coprocess, Error};
use coproq_tests::{CALL_LIMIT, call};

/// What the worker's handlers saw, in the order they started: calls as `(true, n)`,
/// events as `(false, n)`.
static STARTED: Mutex<Vec<(bool, u64)>> = Mutex::new(Vec::new());
/// How many `nap` calls ran.
static RAN: AtomicU64 = AtomicU64::new(0);

fn worker(n: u32) -> Coprocess {
    coproq::Builder::new()
        .concurrency(n)
        .fork(|parent| {
            let weak = parent.downgrade();
            parent
                .handle("nap", |(tag, ms): (u64, u64)| {
                    STARTED.lock().unwrap().push((true, tag));
                    RAN.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(ms));
                    tag
                })
                .on("mark", |tag: u64| {
                    STARTED.lock().unwrap().push((false, tag));
                })
                .handle("started", |(): ()| {
                    std::mem::take(&mut *STARTED.lock().unwrap())
                })
                .handle("ran", |(): ()| RAN.load(Ordering::SeqCst))
                .handle("wait_for_cancel", move |tag: u64| {
                    let end = Instant::now() + Duration::from_secs(20);
                    while !coproq::cancelled() && Instant::now() < end {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if let Some(parent) = weak.upgrade() {
                        let _ = parent.emit("saw_cancel", (tag, coproq::cancelled()));
                    }
                })
                .handle("deadline_left", |(): ()| {
                    std::thread::sleep(Duration::from_millis(20));
                    coproq::deadline().map(|d| d.saturating_duration_since(Instant::now()))
                });
        })
        .expect("fork")
}

#[test]
fn sixteen_blocking_calls_run_at_once_with_concurrency_16() {
    let w = worker(16);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for tag in 0..16u64 {
            let w = &w;
            scope.spawn(move || assert_eq!(call::<u64>(w, "nap", (tag, 200u64)).unwrap(), tag));
        }
    });
    let took = start.elapsed();
    // One after another they take 3.2 s.
    assert!(
        took < Duration::from_millis(1600),
        "16 × 200 ms took {took:?}"
    );
}

#[test]
fn calls_launch_in_arrival_order_and_events_after_the_calls_before_them() {
    let w = worker(8);
    let mut pending = Vec::new();
    let mut sent = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for tag in 0..200u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        pending.push(w.call_async::<u64>("nap", (tag, seed % 4)));
        sent.push((true, tag));
        if tag % 10 == 9 {
            w.emit("mark", tag).unwrap();
            sent.push((false, tag));
        }
    }
    for (tag, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), tag as u64);
    }
    let started: Vec<(bool, u64)> = call(&w, "started", ()).unwrap();
    let mut all = started.clone();
    all.sort_unstable();
    let mut expected = sent.clone();
    expected.sort_unstable();
    assert_eq!(all, expected, "every call and event ran once");
    // Events run one at a time, in order.
    let events: Vec<u64> = started.iter().filter(|e| !e.0).map(|e| e.1).collect();
    assert!(events.is_sorted(), "{events:?}");
    // Calls are launched in order; their handlers then run side by side, so a handler's
    // first line may come a little after the next call's. Nowhere far: neither a call
    // nor an event starts before one that arrived 20 or more places earlier.
    let place = |item: &(bool, u64)| sent.iter().position(|s| s == item).unwrap();
    for (at, item) in started.iter().enumerate() {
        for earlier in &started[at + 1..] {
            assert!(
                place(earlier) + 20 > place(item),
                "{item:?} started before {earlier:?}: {started:?}"
            );
        }
    }
}

#[test]
fn nested_callbacks_run_100_deep_with_concurrency_on_both_ends() {
    fn down(peer: &Coprocess, n: u64) -> coproq::Result<u64> {
        if n == 0 {
            Ok(0)
        } else {
            Ok(peer.call::<u64>("down", n - 1)? + 1)
        }
    }
    let w = coproq::Builder::new()
        .concurrency(4)
        .fork(|parent| {
            let weak = parent.downgrade();
            parent.handle("down", move |n: u64| {
                let parent = weak.upgrade().ok_or(Error::NotConnected)?;
                down(&parent, n)
            });
        })
        .expect("fork");
    let weak = w.downgrade();
    w.handle("down", move |n: u64| {
        let worker = weak.upgrade().ok_or(Error::NotConnected)?;
        down(&worker, n)
    });
    // Four chains at once, each 100 calls deep across both ends.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let w = &w;
            scope.spawn(move || {
                let depth: u64 = w
                    .call_async("down", 100u64)
                    .wait_timeout(CALL_LIMIT)
                    .unwrap();
                assert_eq!(depth, 100);
            });
        }
    });
}

#[test]
fn a_queued_call_cancelled_never_runs_and_a_running_one_sees_its_cancel() {
    let w = worker(2);
    let (tx, rx) = std::sync::mpsc::channel::<(u64, bool)>();
    let tx = Mutex::new(tx);
    w.on("saw_cancel", move |seen: (u64, bool)| {
        let _ = tx.lock().unwrap().send(seen);
    });
    let before: u64 = call(&w, "ran", ()).unwrap();
    // Both places taken by calls that wait for their cancel.
    let mut first = w.call_async::<()>("wait_for_cancel", 1u64);
    let mut second = w.call_async::<()>("wait_for_cancel", 2u64);
    std::thread::sleep(Duration::from_millis(100));
    // This one waits for a place; cancelled first, it never runs.
    let mut queued = w.call_async::<u64>("nap", (99u64, 0u64));
    std::thread::sleep(Duration::from_millis(50));
    queued.cancel();
    first.cancel();
    second.cancel();
    let mut seen = [
        rx.recv_timeout(CALL_LIMIT).unwrap(),
        rx.recv_timeout(CALL_LIMIT).unwrap(),
    ];
    seen.sort_unstable();
    assert_eq!(seen, [(1, true), (2, true)]);
    assert!(matches!(queued.wait(), Err(Error::Cancelled { .. })));
    // Nothing else ran `nap`: the cancelled call was skipped.
    let after: u64 = call(&w, "ran", ()).unwrap();
    assert_eq!(after, before);
}

#[test]
fn deadlines_reach_calls_that_run_at_once() {
    let w = coproq::Builder::new()
        .concurrency(4)
        .call_timeout(Duration::from_secs(20))
        .fork(|parent| {
            parent.handle("deadline_left", |(): ()| {
                std::thread::sleep(Duration::from_millis(20));
                coproq::deadline().map(|d| d.saturating_duration_since(Instant::now()))
            });
        })
        .expect("fork");
    let pending: Vec<_> = (0..4)
        .map(|_| w.call_async::<Option<Duration>>("deadline_left", ()))
        .collect();
    for p in pending {
        let left = p.wait_timeout(CALL_LIMIT).unwrap().expect("a deadline");
        assert!(left > Duration::from_secs(10), "{left:?}");
    }
}

#[test]
fn close_lets_running_calls_answer() {
    let w = worker(8);
    // Seven run on threads of their own, long; the eighth runs on the serving thread
    // (the last place), short: the goodbye comes while the seven still run.
    let pending: Vec<_> = (0..8u64)
        .map(|tag| w.call_async::<u64>("nap", (tag, if tag < 7 { 500 } else { 20 })))
        .collect();
    // All eight launched (a call behind them answers once they started).
    assert!(call::<u64>(&w, "ran", ()).unwrap() >= 8);
    let status = w.close().expect("the worker exited");
    assert!(status.success(), "{status}");
    for (tag, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), tag as u64);
    }
}

#[test]
fn a_worker_binary_chooses_its_own_concurrency() {
    let w = Coprocess::spawn(Command::new(env!("CARGO_BIN_EXE_concurrent_worker"))).unwrap();
    let start = Instant::now();
    let pending: Vec<_> = (0..8)
        .map(|_| w.call_async::<u64>("sleep_ms", 300u64))
        .collect();
    for p in pending {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), 300);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "8 × 300 ms took {took:?}"
    );
}

#[test]
fn a_pool_runs_several_calls_at_once_in_each_worker() {
    let pool = coproq::Pool::builder()
        .size(1)
        .concurrency(4)
        .max_in_flight(4)
        .fork(|parent| {
            parent.handle("sleep_ms", |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            });
        })
        .expect("pool");
    let start = Instant::now();
    let pending: Vec<_> = (0..4)
        .map(|_| pool.call_async::<u64>("sleep_ms", 300u64))
        .collect();
    for p in pending {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), 300);
    }
    let took = start.elapsed();
    // One worker, one call at a time: 1.2 s.
    assert!(
        took < Duration::from_millis(900),
        "4 × 300 ms took {took:?}"
    );
    pool.close();
}
