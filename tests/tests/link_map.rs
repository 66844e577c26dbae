//! `Coprocess::map` and `map_unordered`: one call per item through one link, results in
//! input order (or as they come), a bounded number in flight, against a real worker.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use coproq::{Coprocess, Error};
use coproq_tests::CALL_LIMIT;

static CALLS: AtomicU64 = AtomicU64::new(0);

fn serve(parent: &Coprocess) {
    parent.handle("square", |n: u64| -> Result<u64, String> {
        CALLS.fetch_add(1, Ordering::Relaxed);
        if n % 1000 == 999 {
            return Err(format!("{n} refused"));
        }
        Ok(n * n)
    });
    parent.handle("calls", |()| CALLS.load(Ordering::Relaxed));
}

fn worker() -> Coprocess {
    coproq::Builder::new()
        .call_timeout(CALL_LIMIT)
        .startup_timeout(CALL_LIMIT)
        .fork(serve)
        .unwrap()
}

#[test]
fn map_yields_every_result_in_input_order_each_error_with_its_item() {
    let worker = worker();
    let results: Vec<coproq::Result<u64>> = worker.map("square", 0..10_000u64).collect();
    assert_eq!(results.len(), 10_000);
    for (n, result) in (0u64..).zip(&results) {
        match result {
            Ok(square) => assert_eq!(*square, n * n),
            Err(Error::Remote(e)) => {
                assert_eq!(n % 1000, 999);
                assert_eq!(e.message(), format!("{n} refused"));
            }
            Err(e) => panic!("{n}: {e}"),
        }
    }
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 10);
    worker.close();
}

#[test]
fn map_sends_calls_as_it_is_consumed_with_a_bounded_number_in_flight() {
    let worker = worker();
    let mut map = worker.map::<u64, _, _>("square", 0..1_000_000u64);
    for n in 0..5u64 {
        assert_eq!(map.next().unwrap().unwrap(), n * n);
    }
    // Nothing more is sent until the iterator is consumed further: the calls made are
    // the five results and the window behind them.
    let calls: u64 = worker.call("calls", ()).unwrap();
    assert!((5..=5 + 256).contains(&calls), "{calls} calls made");
    drop(map);
    worker.close();
}

#[test]
fn map_unordered_yields_each_item_once_with_its_index() {
    let worker = worker();
    let mut seen = HashSet::new();
    for (index, result) in worker.map_unordered::<u64, _, _>("square", (0..3_000u64).rev()) {
        let n = 2_999 - index as u64;
        match result {
            Ok(square) => assert_eq!(square, n * n),
            Err(Error::Remote(_)) => assert_eq!(n % 1000, 999),
            Err(e) => panic!("{n}: {e}"),
        }
        assert!(seen.insert(index), "index {index} twice");
    }
    assert_eq!(seen.len(), 3_000);
    worker.close();
}
