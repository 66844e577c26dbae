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

/// Consecutive events of one name and shape travel together in one frame (a run); this
/// checks that every event still arrives once, in order, whatever breaks the runs: another
/// name, another type under the same name, a call in between, and runs that end in the
/// middle of a read.
#[test]
fn streams_of_events_arrive_whole_and_in_order_whatever_breaks_their_runs() {
    static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let w = coproq::fork(|parent| {
        parent
            .on("n", |x: u64| LOG.lock().unwrap().push(format!("n{x}")))
            .on("s", |x: String| LOG.lock().unwrap().push(format!("s{x}")))
            .handle("mark", |x: u64| LOG.lock().unwrap().push(format!("m{x}")))
            .handle("log", |(): ()| std::mem::take(&mut *LOG.lock().unwrap()));
    })
    .unwrap();
    let mut expected = Vec::new();
    for i in 0..30_000u64 {
        if i % 997 == 0 {
            w.emit("s", i.to_string()).unwrap();
            expected.push(format!("s{i}"));
        } else if i % 1499 == 0 {
            call::<()>(&w, "mark", i).unwrap();
            expected.push(format!("m{i}"));
        } else if i % 2003 == 0 {
            // The same name with another type: not joined to the run of `u64`s, and
            // refused by the listener (reported, dropped), the events around it kept.
            w.emit("n", format!("{i}")).unwrap();
        } else {
            w.emit("n", i).unwrap();
            expected.push(format!("n{i}"));
        }
    }
    let log: Vec<String> = call(&w, "log", ()).unwrap();
    assert_eq!(log.len(), expected.len(), "events were lost or duplicated");
    assert_eq!(log, expected, "events arrived out of order");
}

/// A listener that calls back in the middle of a run: the events after it in the same
/// frame are not lost or run twice while it waits.
#[test]
fn a_listener_that_calls_back_in_the_middle_of_a_run_loses_nothing() {
    const ASKED: u64 = 20_000;
    static ECHOED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let w = coproq::Coprocess::builder()
        .handle("double", |x: u64| x * 2)
        .fork(|parent| {
            let p = parent.downgrade();
            parent
                .on("ask", move |x: u64| {
                    let p = p.upgrade().expect("the link");
                    let doubled: u64 = p.call("double", x).expect("the parent answers");
                    ECHOED.lock().unwrap().push(doubled / 2);
                })
                .handle("echoed", |(): ()| {
                    std::mem::take(&mut *ECHOED.lock().unwrap())
                });
        })
        .unwrap();
    // Each waiting listener runs the next event while it waits: the waits nest as deep as
    // the burst is long, far deeper than a thread's stack holds (it overflowed at about
    // 2 000 before the nested runs moved onto stack segments of their own).
    for i in 0..ASKED {
        w.emit("ask", i).unwrap();
    }
    // A listener finishes only once its call returns, after those nested in it started:
    // collect until all have finished.
    let mut echoed: Vec<u64> = Vec::new();
    coproq_tests::wait_until(CALL_LIMIT, || {
        echoed.extend(call::<Vec<u64>>(&w, "echoed", ()).unwrap());
        echoed.len() >= ASKED as usize
    });
    assert_eq!(
        echoed.len(),
        ASKED as usize,
        "events were lost or run twice"
    );
    echoed.sort_unstable();
    assert_eq!(echoed, (0..ASKED).collect::<Vec<_>>());
}

/// A listener that replaces itself in the middle of a run: the run's later events, which
/// share its name, go to the new listener, none to the old one after the change.
#[test]
fn a_listener_replaced_in_the_middle_of_a_run_gets_the_rest_of_it() {
    const SENT: u64 = 1_000;
    const SWITCH_AT: u64 = 500;
    static LOG: Mutex<Vec<(char, u64)>> = Mutex::new(Vec::new());
    let w = coproq::fork(|parent| {
        let p = parent.downgrade();
        parent
            .on("tick", move |n: u64| {
                LOG.lock().unwrap().push(('a', n));
                if n == SWITCH_AT {
                    let p = p.upgrade().expect("the link");
                    p.on("tick", |n: u64| LOG.lock().unwrap().push(('b', n)));
                }
            })
            .handle("log", |(): ()| std::mem::take(&mut *LOG.lock().unwrap()));
    })
    .unwrap();
    for n in 0..SENT {
        w.emit("tick", n).unwrap();
    }
    let log: Vec<(char, u64)> = call(&w, "log", ()).unwrap();
    assert_eq!(log.len(), SENT as usize, "events were lost or run twice");
    for (n, &(listener, seen)) in (0..SENT).zip(&log) {
        let expected = if n <= SWITCH_AT { 'a' } else { 'b' };
        assert_eq!((listener, seen), (expected, n), "event {n}");
    }
}

/// A listener that waits for the peer does not hold up the events behind it, wherever
/// they lie (in the same run as it, kept whole in one frame, or in later frames): its wait
/// starts them. Every listener calls the parent; the first one's call is answered only
/// after every event was sent, by asking the worker which listeners have started: all.
#[test]
fn a_waiting_listener_starts_the_events_behind_it_in_its_own_run() {
    const EVENTS: u64 = 2_000;
    static STARTED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    static ALL_SENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let w = coproq::Coprocess::builder()
        .handle("echo", |x: u64| x)
        .fork(|parent| {
            let p = parent.downgrade();
            parent
                .on("step", move |(i, _pad): (u64, String)| {
                    STARTED.lock().unwrap().push(i);
                    let p = p.upgrade().expect("the link");
                    // The answers do not matter: the test asserts what started, and once
                    // it has, the parent may close before an answer arrives.
                    if i == 0 {
                        if let Ok(started) = p.call::<Vec<u64>>("probe", ()) {
                            *STARTED.lock().unwrap() = started;
                        }
                    } else {
                        let _ = p.call::<u64>("echo", i);
                    }
                })
                .handle("started", |(): ()| STARTED.lock().unwrap().clone());
        })
        .unwrap();
    let weak = w.downgrade();
    w.handle("probe", move |(): ()| {
        let started = std::time::Instant::now();
        while !ALL_SENT.load(Ordering::Acquire) && started.elapsed() < CALL_LIMIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Sent after every event, so it arrives after them all (and before the answers to
        // the echoes that arrived meanwhile: this thread answers those only once it waits).
        let worker = weak.upgrade().expect("the link");
        worker
            .call::<Vec<u64>>("started", ())
            .expect("the worker answers")
    });
    // Large enough that runs of them do not fit the worker's read buffer: they are read as
    // one frame each and kept whole.
    let pad = "x".repeat(100);
    for i in 0..EVENTS {
        w.emit("step", (i, &pad)).unwrap();
    }
    ALL_SENT.store(true, Ordering::Release);
    let mut started = Vec::new();
    coproq_tests::wait_until(CALL_LIMIT, || {
        started = call::<Vec<u64>>(&w, "started", ()).unwrap();
        started.len() == EVENTS as usize
    });
    assert_eq!(
        started,
        (0..EVENTS).collect::<Vec<_>>(),
        "the events behind a waiting listener were held up"
    );
}
