//! Tests for the failure table of the README, one test per row, against real workers.

use std::process::Command;
use std::time::{Duration, Instant};

use coproq::{Coprocess, Error, RemoteErrorKind, Reply};
use coproq_tests::{CALL_LIMIT, call};

fn worker() -> Coprocess {
    coproq::fork(|parent| {
        parent
            .handle("echo", |x: u32| x)
            .handle("name", |(): ()| "worker".to_string())
            .handle("boom", |(): ()| -> u32 { panic!("kaboom") })
            .handle("fail", |what: String| -> Result<u32, String> {
                Err(format!("cannot {what}"))
            })
            .handle("exit", |code: i32| -> () { std::process::exit(code) })
            .handle_deferred("never", |(): (), reply: Reply<u32>| {
                // Keep the reply unanswered for good.
                std::mem::forget(reply);
            })
            .handle_deferred("drop_reply", |(): (), reply: Reply<u32>| drop(reply))
            .handle("slow", |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            });
    })
    .unwrap()
}

#[test]
fn worker_exits_with_calls_in_flight() {
    let w = worker();
    let stuck = w.call_async::<u32>("never", ());
    let exiting = w.call_async::<()>("exit", 7i32);
    for pending in [
        exiting.wait_timeout(CALL_LIMIT).map(drop),
        stuck.wait_timeout(CALL_LIMIT).map(drop),
    ] {
        match pending {
            Err(Error::Disconnected {
                status: Some(status),
                ..
            }) => {
                assert_eq!(status.code(), Some(7));
            }
            other => panic!("expected Disconnected with the exit status, got {other:?}"),
        }
    }
    let err = call::<u32>(&w, "echo", 1u32).unwrap_err();
    assert!(matches!(err, Error::NotConnected), "{err:?}");
    assert_eq!(err.to_string(), "not connected");
    assert!(w.emit("x", ()).is_err());
}

#[test]
fn handler_panics_and_the_worker_keeps_serving() {
    let w = worker();
    let err = call::<u32>(&w, "boom", ()).unwrap_err();
    let Error::Remote(remote) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(remote.kind(), RemoteErrorKind::Panicked);
    assert_eq!(err.to_string(), "panicked: kaboom");
    assert_eq!(call::<u32>(&w, "echo", 5u32).unwrap(), 5);
}

#[test]
fn handler_returns_err() {
    let w = worker();
    let err = call::<u32>(&w, "fail", "fly").unwrap_err();
    let Error::Remote(remote) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(remote.kind(), RemoteErrorKind::Failed);
    assert_eq!(remote.message(), "cannot fly");
    assert_eq!(err.to_string(), "cannot fly");
}

#[test]
fn unknown_method() {
    let w = worker();
    let err = call::<u32>(&w, "nope", ()).unwrap_err();
    assert!(
        matches!(&err, Error::MethodNotFound(name) if name == "nope"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "nope: method not found");
}

#[test]
fn arguments_of_the_wrong_type_are_an_error_not_a_value() {
    let w = worker();
    for err in [
        call::<u32>(&w, "echo", "1234").unwrap_err(),
        call::<u32>(&w, "echo", "").unwrap_err(),
        call::<u32>(&w, "echo", -1i32).unwrap_err(),
        call::<u32>(&w, "echo", 5_000_000_000u64).unwrap_err(),
        call::<u32>(&w, "echo", (1u32, 2u32)).unwrap_err(),
        call::<u32>(&w, "echo", 1.0f64).unwrap_err(),
    ] {
        let Error::Remote(remote) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(remote.kind(), RemoteErrorKind::InvalidArguments);
        assert!(
            err.to_string().starts_with("echo: invalid arguments"),
            "{err}"
        );
    }
    // The link stays up.
    assert_eq!(call::<u32>(&w, "echo", 3u32).unwrap(), 3);
}

#[test]
fn reply_of_the_wrong_type_is_a_decode_error() {
    let w = worker();
    let err = call::<u32>(&w, "name", ()).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { method, .. } if method == "name"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("name: reply does not decode"),
        "{err}"
    );
    let err = call::<i8>(&w, "echo", 300u32).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("300"), "{err}");
    // The link stays up.
    assert_eq!(call::<String>(&w, "name", ()).unwrap(), "worker");
}

#[test]
fn a_dropped_reply_is_a_remote_error_not_a_hang() {
    let w = worker();
    let err = call::<u32>(&w, "drop_reply", ()).unwrap_err();
    let Error::Remote(remote) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(remote.kind(), RemoteErrorKind::Unanswered);
}

#[test]
fn wait_timeout_expires_and_the_late_reply_is_dropped() {
    let w = worker();
    let started = Instant::now();
    let err = w
        .call_async::<u64>("slow", 300u64)
        .wait_timeout(Duration::from_millis(50))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { method, .. } if method == "slow"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(290),
        "waited past the timeout"
    );
    // The late reply (300) must not be taken for this call's reply.
    assert_eq!(call::<u64>(&w, "slow", 1u64).unwrap(), 1);
}

#[test]
fn fork_whose_entry_panics_fails_with_the_panic_message() {
    let err = coproq::fork(|_| panic!("entry failed on purpose")).unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("panicked: entry failed on purpose"),
        "{err}"
    );
}

#[test]
fn calls_after_close_are_not_connected() {
    let w = worker();
    w.close();
    let err = call::<u32>(&w, "echo", 1u32).unwrap_err();
    assert!(matches!(err, Error::NotConnected), "{err:?}");
    assert!(matches!(w.emit("x", ()), Err(Error::NotConnected)));
}

#[test]
fn close_fails_calls_in_flight_with_disconnected() {
    let w = worker();
    let pending = w.call_async::<u32>("never", ());
    let closer = {
        let w = w.clone();
        std::thread::spawn(move || w.close())
    };
    let err = pending.wait_timeout(CALL_LIMIT).unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert!(err.to_string().contains("disconnected"), "{err}");
    closer.join().unwrap();
}

#[test]
fn frames_over_the_peers_limit_fail_that_call_only() {
    // builder_worker accepts frames of at most 4 KiB; this parent at most 1 KiB.
    let cmd = Command::new(env!("CARGO_BIN_EXE_builder_worker"));
    let w = Coprocess::builder().max_frame_len(1024).spawn(cmd).unwrap();
    assert_eq!(
        call::<u64>(&w, "len", serde_bytes::Bytes::new(&[0; 100])).unwrap(),
        100
    );

    // Too large for the worker: refused before sending.
    let err = call::<u64>(&w, "len", serde_bytes::Bytes::new(&[0; 8192])).unwrap_err();
    assert!(
        matches!(&err, Error::Encode { method, reason } if method == "len" && reason.contains("exceeds limit")),
        "{err:?}"
    );

    // A reply too large for the parent: the worker reports it instead of sending it.
    let err = call::<serde_bytes::ByteBuf>(&w, "zeros", 2048usize).unwrap_err();
    assert!(
        matches!(&err, Error::Remote(r) if r.message().contains("exceeds limit")),
        "{err:?}"
    );

    // The link stays up.
    assert_eq!(
        call::<u64>(&w, "len", serde_bytes::Bytes::new(&[0; 10])).unwrap(),
        10
    );
}

mod hostile {
    //! A worker that breaks the protocol: every pending call fails with `Protocol`, the
    //! link closes, the parent neither panics nor allocates what the peer claims.

    use super::*;

    fn hostile(mode: &str) -> coproq::Result<Coprocess> {
        hostile_with(mode, Coprocess::builder())
    }

    fn hostile_with(mode: &str, builder: coproq::Builder) -> coproq::Result<Coprocess> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostile_worker"));
        cmd.arg(mode).arg(coproq::PROTOCOL_VERSION.to_string());
        builder.close_grace(Duration::from_millis(100)).spawn(cmd)
    }

    #[test]
    fn garbage_instead_of_a_hello() {
        let err = hostile("garbage").unwrap_err();
        assert!(
            matches!(&err, Error::Protocol(m) if m.contains("not a coproq endpoint")),
            "{err:?}"
        );
    }

    #[test]
    fn protocol_version_mismatch() {
        let err = hostile("version").unwrap_err();
        assert!(
            matches!(&err, Error::Protocol(m) if m.contains("version mismatch")),
            "{err:?}"
        );
        assert!(err.to_string().contains("99"), "{err}");
    }

    fn pending_call_fails_with_protocol(mode: &str, expect: &str) {
        let w = hostile(mode).unwrap();
        let err = call::<u32>(&w, "echo", 1u32).unwrap_err();
        assert!(
            matches!(&err, Error::Protocol(m) if m.contains(expect)),
            "{mode}: {err:?}"
        );
        // The link is closed for good.
        assert!(matches!(
            call::<u32>(&w, "echo", 1u32),
            Err(Error::NotConnected)
        ));
    }

    #[test]
    fn oversize_frame() {
        pending_call_fails_with_protocol("oversize", "exceeds limit");
    }

    #[test]
    fn malformed_message() {
        pending_call_fails_with_protocol("bad-message", "malformed message");
    }

    #[test]
    fn malformed_reply_behind_replies_read_together() {
        pending_call_fails_with_protocol("bad-reply", "malformed message");
    }

    #[test]
    fn a_worker_that_dies_in_the_middle_of_a_frame_is_disconnected_with_its_status() {
        let w = hostile("truncated").unwrap();
        let err = call::<u32>(&w, "echo", 1u32).unwrap_err();
        assert!(
            matches!(&err, Error::Disconnected { status: Some(s), .. } if s.code() == Some(3)),
            "{err:?}"
        );
    }

    #[test]
    fn a_worker_that_stops_in_the_middle_of_a_frame_breaks_the_protocol() {
        // Alive and silent half-way through a frame: two heartbeat intervals end it (ten
        // seconds without heartbeats), before the third would end it as silent, and what
        // it sent is let go.
        let builder = Coprocess::builder().heartbeat(Duration::from_millis(300));
        let w = hostile_with("stalled", builder).unwrap();
        let started = std::time::Instant::now();
        let err = call::<u32>(&w, "echo", 1u32).unwrap_err();
        assert!(
            matches!(&err, Error::Protocol(m) if m.contains("stopped sending in the middle of a frame")),
            "{err:?}"
        );
        assert!(started.elapsed() < CALL_LIMIT, "{:?}", started.elapsed());
    }

    #[test]
    fn other_links_keep_working() {
        let good = worker();
        let bad = hostile("bad-message").unwrap();
        assert!(call::<u32>(&bad, "echo", 1u32).is_err());
        assert_eq!(call::<u32>(&good, "echo", 2u32).unwrap(), 2);
    }
}
