//! Tests for the basics: fork a function worker, call it, close it; spawn a binary.

use std::process::Command;
use std::time::Duration;

use coproq::Coprocess;
use coproq_tests::{call, process_exists};

#[test]
fn fork_call_and_close() {
    let worker = coproq::fork(|parent| {
        parent.handle("echo", |x: u32| x);
    })
    .unwrap();
    let pid = worker.pid().expect("the parent end knows the worker's pid");
    assert_ne!(pid, std::process::id());
    assert_eq!(call::<u32>(&worker, "echo", 1234u32).unwrap(), 1234);
    let status = worker.close().expect("close reaps the worker");
    assert!(status.success(), "{status}");
    assert!(
        !process_exists(pid),
        "worker {pid} still exists (not reaped) after close"
    );
}

#[test]
fn close_is_idempotent() {
    let worker = coproq::fork(|_| {}).unwrap();
    let first = worker.close();
    assert_eq!(worker.close(), first);
    assert!(first.is_some());
}

#[test]
fn spawn_a_separate_binary() {
    let worker = Coprocess::spawn(Command::new(env!("CARGO_BIN_EXE_echo_worker"))).unwrap();
    assert_eq!(call::<u32>(&worker, "echo", 7u32).unwrap(), 7);
    assert_eq!(call::<String>(&worker, "upper", "shout").unwrap(), "SHOUT");
    assert_eq!(
        call::<u32>(&worker, "pid", ()).unwrap(),
        worker.pid().unwrap()
    );
    assert!(worker.close().unwrap().success());
}

#[test]
fn spawned_worker_with_builder_handlers() {
    let worker = Coprocess::spawn(Command::new(env!("CARGO_BIN_EXE_builder_worker"))).unwrap();
    assert_eq!(
        call::<String>(&worker, "whoami", ()).unwrap(),
        "builder_worker"
    );
}

#[test]
fn parent_handlers_are_ready_before_the_worker_runs() {
    let worker = Coprocess::builder()
        .handle("config", |(): ()| 99u8)
        .fork(|parent| {
            // The very first thing the worker does is call the parent.
            let config: u8 = parent
                .call_async("config", ())
                .wait_timeout(Duration::from_secs(30))
                .unwrap();
            parent.handle("config_seen", move |(): ()| config);
        })
        .unwrap();
    assert_eq!(call::<u8>(&worker, "config_seen", ()).unwrap(), 99);
}

#[test]
fn dropping_the_last_handle_closes_and_reaps() {
    let worker = coproq::fork(|_| {}).unwrap();
    let pid = worker.pid().unwrap();
    let second = worker.clone();
    drop(worker);
    assert!(process_exists(pid), "a remaining clone keeps the worker");
    drop(second);
    assert!(
        !process_exists(pid),
        "worker {pid} not reaped after the last handle was dropped"
    );
}

#[test]
fn spawn_of_a_missing_program_fails_clearly() {
    let err = Coprocess::spawn(Command::new("/nonexistent/coproq-worker")).unwrap_err();
    assert!(matches!(err, coproq::Error::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/coproq-worker"),
        "{err}"
    );
}

#[test]
fn spawn_of_a_program_that_is_not_a_worker_fails_clearly() {
    let err = Coprocess::spawn(Command::new("true")).unwrap_err();
    assert!(matches!(err, coproq::Error::Spawn { .. }), "{err:?}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("before the handshake"), "{source}");
}

#[test]
fn the_worker_dispatches_only_after_its_entry_returns() {
    let worker = coproq::fork(|parent| {
        // A slow entry: calls sent meanwhile wait instead of finding no handler.
        std::thread::sleep(Duration::from_millis(200));
        parent.handle("late", |(): ()| "registered late".to_string());
    })
    .unwrap();
    assert_eq!(
        call::<String>(&worker, "late", ()).unwrap(),
        "registered late"
    );
}
