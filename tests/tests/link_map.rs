//! `Coprocess::map` and `map_unordered` against a real worker: results in input order (or
//! as they come), a bounded number in flight; `map`'s runs of calls keep every item's
//! own result, however its handler answers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use coproq::{Coprocess, Error};
use coproq_tests::CALL_LIMIT;

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Async items whose future was dropped before it finished.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Counts itself into `DROPPED` when dropped.
struct CountDrop;

impl Drop for CountDrop {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

fn serve(parent: &Coprocess) {
    parent.handle("flaky", |n: u64| {
        assert!(n % 100 != 7, "{n} is unlucky");
        n
    });
    parent.handle_deferred("later", |n: u64, reply: coproq::Reply<u64>| {
        // Answered from another thread, in reverse order within each pair.
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_micros(50 * (n % 2)));
            reply.send(n + 1);
        });
    });
    parent.handle_async("double_async", |n: u64| async move { n * 2 });
    parent.handle_async("nap_long", |n: u64| async move {
        let guard = CountDrop;
        coproq_tests::nap(std::time::Duration::from_mins(1)).await;
        std::mem::forget(guard);
        n
    });
    parent.handle("dropped", |()| DROPPED.load(Ordering::Relaxed));
    let weak = parent.downgrade();
    parent.handle("ask_parent", move |n: u64| -> Result<u64, String> {
        let parent = weak.upgrade().ok_or("no parent")?;
        parent.call::<u64>("triple", n).map_err(|e| e.to_string())
    });
    parent.handle("slow", |n: u64| {
        CALLS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(2));
        n
    });
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
    // those of the first run and of the runs in flight behind it (four, of at most
    // 1 024 items each), not the million.
    let calls: u64 = worker.call("calls", ()).unwrap();
    assert!((5..=5 * 1024).contains(&calls), "{calls} calls made");
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

#[test]
fn each_item_of_a_run_fails_alone_and_the_worker_keeps_serving() {
    let worker = worker();
    let results: Vec<coproq::Result<u64>> = worker.map("flaky", 0..3_000u64).collect();
    assert_eq!(results.len(), 3_000);
    for (n, result) in (0u64..).zip(&results) {
        match result {
            Ok(value) => assert_eq!(*value, n),
            Err(Error::Remote(e)) => {
                assert_eq!(n % 100, 7, "{n}: {e}");
                assert!(
                    e.kind() == coproq::RemoteErrorKind::Panicked
                        && e.message().contains("is unlucky"),
                    "{e}"
                );
            }
            Err(e) => panic!("{n}: {e}"),
        }
    }
    // Arguments that do not decode fail their own item, naming the method.
    let items = [
        serde_json::json!(2),
        serde_json::json!("two"),
        serde_json::json!(3),
    ];
    let results: Vec<coproq::Result<u64>> = worker.map("square", items).collect();
    assert_eq!(results[0].as_ref().unwrap(), &4);
    assert!(
        matches!(&results[1], Err(Error::Remote(e)) if e.message().contains("square") && e.message().contains("invalid arguments")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().unwrap(), &9);
    // A method the worker lacks: each item says so.
    let missing: Vec<coproq::Result<u64>> = worker.map("nope", 0..3u64).collect();
    assert_eq!(missing.len(), 3);
    for result in missing {
        assert!(
            matches!(&result, Err(Error::MethodNotFound(m)) if m == "nope"),
            "{result:?}"
        );
    }
    assert_eq!(
        coproq_tests::call::<u64>(&worker, "square", 5u64).unwrap(),
        25
    );
    worker.close();
}

#[test]
fn deferred_async_and_nested_items_answer_in_input_order() {
    let worker = worker();
    worker.handle("triple", |n: u64| n * 3);
    let later: Vec<u64> = worker
        .map("later", 0..2_500u64)
        .collect::<coproq::Result<_>>()
        .unwrap();
    assert_eq!(later, (1..=2_500u64).collect::<Vec<_>>());
    let doubled: Vec<u64> = worker
        .map("double_async", 0..2_500u64)
        .collect::<coproq::Result<_>>()
        .unwrap();
    assert_eq!(doubled, (0..2_500u64).map(|n| n * 2).collect::<Vec<_>>());
    // Each item calls back into the parent, which serves it while it waits for the run.
    let tripled: Vec<u64> = worker
        .map("ask_parent", 0..1_500u64)
        .collect::<coproq::Result<_>>()
        .unwrap();
    assert_eq!(tripled, (0..1_500u64).map(|n| n * 3).collect::<Vec<_>>());
    worker.close();
}

#[test]
fn dropping_a_map_stops_the_items_not_yet_started() {
    let worker = worker();
    let before: u64 = worker.call("calls", ()).unwrap();
    let mut map = worker.map::<u64, _, _>("slow", 0..100_000u64);
    assert_eq!(map.next().unwrap().unwrap(), 0);
    drop(map);
    // The runs in flight were cancelled: the worker stops at its next look (every 64
    // items), far short of the 4 096 items sent.
    let settled = coproq_tests::wait_until(CALL_LIMIT, || {
        let a: u64 = worker.call("calls", ()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b: u64 = worker.call("calls", ()).unwrap();
        a == b
    });
    assert!(settled, "the worker kept running items");
    let ran = worker.call::<u64>("calls", ()).unwrap() - before;
    assert!(
        ran < 1_024 + 128,
        "{ran} items ran after the map was dropped"
    );
    worker.close();
}

#[test]
fn a_cancelled_run_drops_the_future_of_every_async_item() {
    // The run's call times out, which cancels it: each of its eight async items, all
    // waiting on their naps, has its future dropped, not only the last one watched.
    let worker = coproq::Builder::new()
        .call_timeout(std::time::Duration::from_millis(300))
        .startup_timeout(CALL_LIMIT)
        .fork(serve)
        .unwrap();
    let results: Vec<coproq::Result<u64>> = worker.map("nap_long", 0..8u64).collect();
    assert_eq!(results.len(), 8);
    for result in &results {
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    }
    let all_dropped = coproq_tests::wait_until(CALL_LIMIT, || {
        worker
            .call_async::<u64>("dropped", ())
            .wait_timeout(CALL_LIMIT)
            .unwrap()
            == 8
    });
    assert!(
        all_dropped,
        "some async items of the cancelled run kept running"
    );
    worker.close();
}

#[test]
fn a_malformed_run_of_calls_is_refused_by_the_worker_which_goes_on() {
    // What a hostile or broken parent might send as a run: the worker answers each with
    // an error, never runs a handler on garbage, and keeps serving.
    let worker = worker();
    let before: u64 = worker.call("calls", ()).unwrap();
    for run in [
        &b""[..],
        b"\x06\x00\x00\x00square",
        b"\xff\xff\xff\xffsquare",
        b"\x04\x00\x00\x00slow\xff\xff\xff\x7f\x00",
    ] {
        let err = worker
            .call::<serde_bytes::ByteBuf>("coproq:map", serde_bytes::Bytes::new(run))
            .unwrap_err();
        assert!(
            matches!(&err, Error::Remote(e) if e.message().contains("malformed run of calls")),
            "{run:?}: {err:?}"
        );
    }
    let not_bytes = worker
        .call::<serde_bytes::ByteBuf>("coproq:map", 5u64)
        .unwrap_err();
    assert!(matches!(&not_bytes, Error::Remote(_)), "{not_bytes:?}");
    assert_eq!(
        worker.call::<u64>("calls", ()).unwrap(),
        before,
        "no handler ran"
    );
    assert_eq!(
        coproq_tests::call::<u64>(&worker, "square", 4u64).unwrap(),
        16
    );
    worker.close();
}
