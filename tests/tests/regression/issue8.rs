//! Issue 8: contract gaps found by using coproq as a new user would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coproq::{Coprocess, Error, Pending};
use coproq_tests::{CALL_LIMIT, call};

fn recording_worker() -> Coprocess {
    coproq::fork(|parent| {
        let seen = Arc::new(AtomicU64::new(0));
        parent.handle("record", move |x: u64| {
            seen.fetch_add(1, Ordering::Relaxed);
            x * 2
        });
    })
    .unwrap()
}

/// Defect 1: every reply the worker sends before it exits reaches its caller.
#[test]
fn close_after_call_async_loses_no_reply() {
    for round in 0..20 {
        let worker = recording_worker();
        let pending: Vec<Pending<u64>> = (0..1000u64)
            .map(|i| worker.call_async("record", i))
            .collect();
        let status = worker.close().expect("the worker was reaped");
        assert!(status.success(), "round {round}: {status}");
        for (i, p) in pending.into_iter().enumerate() {
            let reply = p.wait_timeout(CALL_LIMIT);
            assert_eq!(reply.unwrap(), i as u64 * 2, "round {round}, call {i}");
        }
    }
}

/// Defect 1, the same with the last handle dropped instead of `close()`.
#[test]
fn dropping_the_last_handle_after_call_async_loses_no_reply() {
    for round in 0..20 {
        let worker = recording_worker();
        let pending: Vec<Pending<u64>> = (0..1000u64)
            .map(|i| worker.call_async("record", i))
            .collect();
        drop(worker);
        for (i, p) in pending.into_iter().enumerate() {
            let reply = p.wait_timeout(CALL_LIMIT);
            assert_eq!(reply.unwrap(), i as u64 * 2, "round {round}, call {i}");
        }
    }
}

/// Defect 1, the original one-call repro.
#[test]
fn one_call_async_then_close() {
    for _ in 0..50 {
        let worker = recording_worker();
        let p = worker.call_async::<u64>("record", 1u64);
        worker.close();
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), 2);
    }
}
