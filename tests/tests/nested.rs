//! Tests for symmetric, re-entrant calls: the worker calls the parent back, nested
//! calls alternate direction to depth 16 and 5 000, and handlers hold weak handles.

use std::process::Command;

use coproq::Coprocess;
use coproq_tests::{call, process_exists};

#[test]
fn the_worker_calls_the_parent_back_during_a_call() {
    let w = Coprocess::builder()
        .handle("double", |x: i64| x * 2)
        .fork(|parent| {
            let p = parent.downgrade();
            parent.handle("quadruple", move |x: i64| -> coproq::Result<i64> {
                let p = p.upgrade().ok_or(coproq::Error::NotConnected)?;
                let twice: i64 = p.call("double", x)?;
                p.call("double", twice)
            });
        })
        .unwrap();
    assert_eq!(call::<i64>(&w, "quadruple", 5i64).unwrap(), 20);
}

#[test]
fn a_spawned_worker_calls_the_parent_back() {
    let w = Coprocess::builder()
        .handle("double", |x: i64| x * 2)
        .spawn(Command::new(env!("CARGO_BIN_EXE_echo_worker")))
        .unwrap();
    assert_eq!(call::<i64>(&w, "ask_parent", 21i64).unwrap(), 42);
}

/// Both sides register `down(n)`: it calls the other side's `down(n - 1)` and adds one,
/// so a call of depth 16 crosses the link 16 times, alternating direction.
#[test]
fn nested_calls_alternate_to_depth_16_without_deadlock() {
    let w = coproq::fork(|parent| {
        let p = parent.downgrade();
        parent.handle("down", move |n: u32| -> coproq::Result<u32> {
            if n == 0 {
                return Ok(0);
            }
            let p = p.upgrade().ok_or(coproq::Error::NotConnected)?;
            Ok(p.call::<u32>("down", n - 1)? + 1)
        });
    })
    .unwrap();
    let weak = w.downgrade();
    w.handle("down", move |n: u32| -> coproq::Result<u32> {
        if n == 0 {
            return Ok(0);
        }
        let w = weak.upgrade().ok_or(coproq::Error::NotConnected)?;
        Ok(w.call::<u32>("down", n - 1)? + 1)
    });
    assert_eq!(call::<u32>(&w, "down", 16u32).unwrap(), 16);
    // Far deeper than a thread's stack holds on either side: the nested waits run on
    // stack segments of their own.
    assert_eq!(call::<u32>(&w, "down", 5_000u32).unwrap(), 5_000);
    // And from several threads at once.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || call::<u32>(&w, "down", 16u32).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 16);
    }
}

#[test]
fn a_handler_with_a_weak_handle_does_not_keep_the_worker_alive() {
    let w = coproq::fork(|parent| {
        parent.handle("ping", |n: u32| n + 1);
    })
    .unwrap();
    let pid = w.pid().unwrap();
    let weak = w.downgrade();
    w.handle("relay", move |n: u32| match weak.upgrade() {
        Some(w) => w.call::<u32>("ping", n),
        None => Err(coproq::Error::NotConnected),
    });
    drop(w);
    assert!(
        !process_exists(pid),
        "the worker outlived the last strong handle"
    );
}

#[test]
fn close_breaks_a_cycle_through_a_strong_handle() {
    let w = coproq::fork(|_| {}).unwrap();
    let pid = w.pid().unwrap();
    let strong = w.clone();
    w.handle("hold", move |(): ()| strong.pid());
    w.close();
    drop(w);
    assert!(!process_exists(pid));
}

/// Calls and events sent back to back reach the worker together and run as one batch;
/// each call's handler calls the parent back, so later calls and events of the batch run
/// while an earlier one waits, nesting as deep as the burst is long (far deeper than a
/// thread's stack holds). Every reply is right, and the worker ran everything in the
/// order it was sent.
#[test]
fn a_batch_of_calls_that_call_back_runs_in_order() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const N: u64 = 20_000;
    let w = Coprocess::builder()
        .handle("double", |x: u64| x * 2)
        .fork(|parent| {
            let log = Arc::new(Mutex::new(Vec::<u64>::new()));
            let p = parent.downgrade();
            let calls = Arc::clone(&log);
            parent.handle("via_parent", move |x: u64| -> coproq::Result<u64> {
                calls.lock().unwrap().push(x);
                let p = p.upgrade().ok_or(coproq::Error::NotConnected)?;
                p.call::<u64>("double", x)
            });
            let events = Arc::clone(&log);
            parent.on("note", move |x: u64| events.lock().unwrap().push(x));
            parent.handle("log", move |(): ()| {
                std::mem::take(&mut *log.lock().unwrap())
            });
        })
        .unwrap();
    let mut sent = Vec::new();
    let mut pending = Vec::new();
    for i in 0..N {
        if i % 3 == 0 {
            w.emit("note", i).unwrap();
        } else {
            pending.push((i, w.call_async::<u64>("via_parent", i)));
        }
        sent.push(i);
    }
    for (i, reply) in pending {
        assert_eq!(reply.wait_timeout(Duration::from_secs(30)).unwrap(), 2 * i);
    }
    let log: Vec<u64> = call(&w, "log", ()).unwrap();
    assert_eq!(log, sent, "the worker ran calls and events out of order");
}
