//! Tests for events: values, order, unlistened events, `off`, back-pressure.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coproq_tests::{CALL_LIMIT, call};

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[test]
fn zero_one_and_several_values_then_one_confirming_call() {
    let w = coproq::fork(|parent| {
        parent
            .on("zero", |(): ()| SEEN.lock().unwrap().push("zero".into()))
            .on("one", |x: u32| {
                SEEN.lock().unwrap().push(format!("one {x}"));
            })
            .on("several", |(a, b, c): (u8, String, bool)| {
                SEEN.lock().unwrap().push(format!("several {a} {b} {c}"));
            })
            .handle("seen", |(): ()| std::mem::take(&mut *SEEN.lock().unwrap()));
    })
    .unwrap();
    w.emit("zero", ()).unwrap();
    w.emit("one", 5u32).unwrap();
    w.emit("several", (1u8, "two", true)).unwrap();
    w.emit("nobody_listens", 1u8).unwrap();
    w.emit("one", 6u32).unwrap();
    // Dispatch keeps the order sent, so this call confirms every event above.
    let seen: Vec<String> = call(&w, "seen", ()).unwrap();
    assert_eq!(seen, ["zero", "one 5", "several 1 two true", "one 6"]);
}

#[test]
fn a_listener_can_be_removed() {
    let w = coproq::fork(|parent| {
        let p = parent.downgrade();
        parent
            .on("tick", |n: u32| {
                SEEN.lock().unwrap().push(format!("tick {n}"));
            })
            .handle("stop_listening", move |(): ()| {
                p.upgrade().is_some_and(|p| p.off("tick"))
            })
            .handle("seen", |(): ()| std::mem::take(&mut *SEEN.lock().unwrap()));
    })
    .unwrap();
    w.emit("tick", 1u32).unwrap();
    assert!(call::<bool>(&w, "stop_listening", ()).unwrap());
    w.emit("tick", 2u32).unwrap();
    assert_eq!(call::<Vec<String>>(&w, "seen", ()).unwrap(), ["tick 1"]);
    assert!(
        !call::<bool>(&w, "stop_listening", ()).unwrap(),
        "off of a removed listener reports none"
    );
}

#[test]
fn events_from_the_worker_reach_the_parent_in_order() {
    static GOT: AtomicU64 = AtomicU64::new(0);
    static OUT_OF_ORDER: AtomicU64 = AtomicU64::new(0);
    let w = coproq::Coprocess::builder()
        .on("count", |n: u64| {
            // Each event must be the next number: order is kept.
            if GOT.fetch_add(1, Ordering::SeqCst) != n {
                OUT_OF_ORDER.fetch_add(1, Ordering::SeqCst);
            }
        })
        .fork(|parent| {
            let p = parent.downgrade();
            parent.handle("emit_many", move |n: u64| -> coproq::Result<()> {
                let p = p.upgrade().ok_or(coproq::Error::NotConnected)?;
                (0..n).try_for_each(|i| p.emit("count", i))
            });
        })
        .unwrap();
    call::<()>(&w, "emit_many", 5000u64).unwrap();
    assert!(coproq_tests::wait_until(CALL_LIMIT, || GOT
        .load(Ordering::SeqCst)
        == 5000));
    assert_eq!(
        OUT_OF_ORDER.load(Ordering::SeqCst),
        0,
        "events arrived out of order"
    );
}

#[test]
fn a_fast_emitter_blocks_instead_of_growing_memory_and_nothing_is_dropped() {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    const EVENTS: u64 = 8000;
    const SIZE: usize = 64 * 1024;
    let w = coproq::fork(|parent| {
        parent
            .on("blob", |b: serde_bytes::ByteBuf| {
                assert_eq!(b.len(), SIZE);
                // A listener much slower than the emitter.
                std::thread::sleep(Duration::from_micros(200));
                COUNT.fetch_add(1, Ordering::SeqCst);
            })
            .handle("count_and_peak_rss_kib", |(): ()| {
                (COUNT.load(Ordering::SeqCst), coproq_tests::peak_rss_kib())
            });
    })
    .unwrap();
    let (count, peak_kib): (u64, u64) = coproq_tests::within(CALL_LIMIT, move || {
        let blob = vec![7u8; SIZE];
        for _ in 0..EVENTS {
            w.emit("blob", serde_bytes::Bytes::new(&blob)).unwrap();
        }
        call(&w, "count_and_peak_rss_kib", ()).unwrap()
    });
    assert_eq!(count, EVENTS, "events were dropped");
    eprintln!("worker peak RSS while flooded: {peak_kib} KiB");
    // 8000 × 64 KiB = 500 MiB were sent; with back-pressure the worker holds at most the
    // inbox (1024 messages) and the pipe at once.
    if cfg!(target_os = "linux") {
        assert!(
            peak_kib < 150 * 1024,
            "worker peak RSS {peak_kib} KiB: memory was not bounded"
        );
    }
}
