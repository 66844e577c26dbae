//! Deadlines, cancellation, liveness and async back-pressure on single links.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use coproq::{Coprocess, Error, Pending};
use coproq_tests::{CALL_LIMIT, ScratchFile, call, wait_until};

/// A file path for one test, removed with its directory when dropped.
fn scratch(name: &str) -> ScratchFile {
    ScratchFile::new("deadlines", name)
}

/// A worker with: `sleep(ms)`, `touch(path)` (creates a file: a visible side effect),
/// `remaining()` (its call's deadline, in ms), `ask_parent()` (its deadline and the one
/// the parent's handler sees in a nested call), and `until_cancelled(ms)` (polls
/// `coproq::cancelled()`; whether it saw the cancel).
fn worker(builder: coproq::Builder) -> Coprocess {
    builder
        .handle("remaining_ms", |()| remaining_ms())
        .fork(|parent| {
            parent.handle("sleep", |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
            });
            parent.handle("touch", |path: String| std::fs::write(path, b"ran").is_ok());
            parent.handle("remaining", |()| remaining_ms());
            let p = parent.clone();
            parent.handle("ask_parent", move |()| {
                let own = remaining_ms();
                let nested: coproq::Result<Option<u64>> = p.call("remaining_ms", ());
                (own, nested.map_err(|e| e.to_string()))
            });
            parent.handle("until_cancelled", |ms: u64| {
                let end = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < end {
                    if coproq::cancelled() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                false
            });
            parent.handle_deferred("deferred_until_cancelled", |ms: u64, reply| {
                std::thread::spawn(move || {
                    let end = Instant::now() + Duration::from_millis(ms);
                    let seen = loop {
                        if reply.is_cancelled() {
                            break true;
                        }
                        if Instant::now() >= end {
                            break false;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    };
                    // The caller is gone: this answer is discarded; the side effect is not.
                    let _ = std::fs::write(
                        std::env::temp_dir().join(format!(
                            "coproq-deferred-{}",
                            std::os::unix::process::parent_id()
                        )),
                        if seen { "seen" } else { "missed" },
                    );
                    reply.send(seen);
                });
            });
        })
        .unwrap()
}

fn remaining_ms() -> Option<u64> {
    coproq::deadline().map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64)
}

#[test]
fn call_timeout_is_the_default_deadline_of_every_call() {
    let w = worker(Coprocess::builder().call_timeout(Duration::from_millis(300)));
    // The handler sees the deadline.
    let left: Option<u64> = w.call("remaining", ()).unwrap();
    assert!(left.is_some_and(|ms| ms > 0 && ms <= 300), "{left:?}");
    let started = Instant::now();
    let err = w.call::<()>("sleep", 5_000u64).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        err.to_string().contains("sleep: no reply within 300ms"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // wait_timeout can only shorten it.
    let err = w
        .call_async::<()>("sleep", 5_000u64)
        .wait_timeout(Duration::from_mins(1))
        .unwrap_err();
    assert!(err.to_string().contains("within 300ms"), "{err}");
}

#[test]
fn without_a_timeout_handlers_see_no_deadline() {
    let w = worker(Coprocess::builder());
    assert_eq!(call::<Option<u64>>(&w, "remaining", ()).unwrap(), None);
    let p = w.call_async::<Option<u64>>("remaining", ());
    assert_eq!(p.wait().unwrap(), None);
}

#[test]
fn nested_calls_inherit_what_remains_of_the_deadline() {
    let w = worker(Coprocess::builder().call_timeout(Duration::from_secs(20)));
    let (own, nested): (Option<u64>, Result<Option<u64>, String>) =
        w.call("ask_parent", ()).unwrap();
    let own = own.expect("the worker's handler has a deadline");
    let nested = nested.unwrap().expect("the parent's handler inherits it");
    assert!(own <= 20_000 && own > 10_000, "{own}");
    assert!(nested <= own, "nested {nested} > outer {own}");
}

#[test]
fn a_cancelled_call_that_has_not_started_never_runs() {
    let w = worker(Coprocess::builder());
    for round in 0..3 {
        let path = scratch(&format!("never-{round}"));
        // The worker is busy for 300 ms; the next call waits in the pipe behind it.
        let busy = w.call_async::<()>("sleep", 300u64);
        let mut touch = w.call_async::<bool>("touch", path.as_str());
        std::thread::sleep(Duration::from_millis(50));
        touch.cancel();
        assert!(matches!(touch.wait(), Err(Error::Cancelled { .. })));
        busy.wait_timeout(CALL_LIMIT).unwrap();
        // Whatever comes after runs, and the cancelled call did not.
        assert!(call::<bool>(&w, "touch", scratch("after").as_str()).unwrap());
        assert!(!path.exists(), "round {round}: the cancelled call ran");
    }
}

#[test]
fn dropping_a_pending_cancels_it() {
    let w = worker(Coprocess::builder());
    let path = scratch("dropped");
    let busy = w.call_async::<()>("sleep", 300u64);
    drop(w.call_async::<bool>("touch", path.as_str()));
    busy.wait_timeout(CALL_LIMIT).unwrap();
    assert!(call::<bool>(&w, "touch", scratch("after-drop").as_str()).unwrap());
    assert!(!path.exists(), "the dropped call ran");
}

#[test]
fn a_running_handler_sees_its_cancel() {
    let w = worker(Coprocess::builder());
    let mut p = w.call_async::<bool>("until_cancelled", 10_000u64);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    p.cancel();
    assert!(matches!(p.wait(), Err(Error::Cancelled { .. })));
    // The handler noticed and returned early: the worker answers the next call at once.
    assert_eq!(call::<Option<u64>>(&w, "remaining", ()).unwrap(), None);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A timeout cancels too.
    let err = w
        .call_async::<bool>("until_cancelled", 10_000u64)
        .wait_timeout(Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }));
    assert_eq!(call::<Option<u64>>(&w, "remaining", ()).unwrap(), None);
}

#[test]
fn a_deferred_reply_sees_its_cancel() {
    let w = worker(Coprocess::builder());
    let marker = std::env::temp_dir().join(format!("coproq-deferred-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut p = w.call_async::<bool>("deferred_until_cancelled", 10_000u64);
    std::thread::sleep(Duration::from_millis(100));
    p.cancel();
    assert!(wait_until(Duration::from_secs(5), || marker.exists()));
    assert!(wait_until(Duration::from_secs(1), || {
        std::fs::read_to_string(&marker).is_ok_and(|s| s == "seen")
    }));
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn cancel_wins_over_a_reply_not_yet_waited_for() {
    let w = worker(Coprocess::builder());
    let mut p: Pending<Option<u64>> = w.call_async("remaining", ());
    std::thread::sleep(Duration::from_millis(50));
    // Not finished from the caller's view until waited: cancel wins.
    p.cancel();
    assert!(matches!(p.wait(), Err(Error::Cancelled { .. })));
}

#[test]
fn liveness_exit_status_and_on_exit() {
    let (tx, rx) = mpsc::channel();
    let w = Coprocess::builder()
        .on_exit(move |status| tx.send(status).unwrap())
        .fork(|parent| {
            parent.handle("exit", |code: i32| -> () { std::process::exit(code) });
        })
        .unwrap();
    assert!(w.is_alive());
    assert_eq!(w.exit_status(), None);
    let _ = w.call_async::<()>("exit", 7).wait_timeout(CALL_LIMIT);
    assert!(wait_until(CALL_LIMIT, || !w.is_alive()));
    let status = rx.recv_timeout(CALL_LIMIT).unwrap().expect("a status");
    assert_eq!(status.code(), Some(7));
    assert_eq!(w.exit_status().and_then(|s| s.code()), Some(7));
    assert!(rx.try_recv().is_err(), "on_exit runs once");
    w.close();
    assert!(rx.try_recv().is_err(), "on_exit runs once");

    // After close, too.
    let (tx, rx) = mpsc::channel();
    let w = Coprocess::builder()
        .on_exit(move |status| tx.send(status).unwrap())
        .fork(|_| {})
        .unwrap();
    w.close();
    assert!(!w.is_alive());
    assert!(rx.recv_timeout(CALL_LIMIT).unwrap().unwrap().success());
}

#[test]
fn the_longest_durations_are_accepted_everywhere() {
    // `Duration::MAX` means "no limit", never an overflow panic.
    let w = Coprocess::builder()
        .startup_timeout(Duration::MAX)
        .close_grace(Duration::MAX)
        .call_timeout(Duration::MAX)
        .fork(|parent| {
            parent.handle("remaining", |()| remaining_ms());
        })
        .unwrap();
    assert_eq!(w.call::<Option<u64>>("remaining", ()).unwrap(), None);
    let p = w.call_async::<Option<u64>>("remaining", ());
    assert_eq!(p.wait_timeout(Duration::MAX).unwrap(), None);
    assert!(w.close().unwrap().success());
}
