//! Issue 8: contract gaps found by using coproq as a new user would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coproq::{Coprocess, Error, Pending, RemoteErrorKind};
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

fn typed_worker() -> Coprocess {
    coproq::fork(|parent| {
        parent
            .handle("add", |(a, b): (i64, i64)| a + b)
            .handle("scale", |(v, k): (Vec<f32>, f32)| {
                v.into_iter().map(|x| x * k).collect::<Vec<f32>>()
            })
            .handle("echo", |x: u32| x)
            .handle("pairs", |(): ()| vec![(1u32, "one".to_owned())]);
    })
    .unwrap()
}

fn invalid_arguments(err: &Error) -> String {
    let Error::Remote(remote) = err else {
        panic!("not a remote error: {err:?}")
    };
    assert_eq!(remote.kind(), RemoteErrorKind::InvalidArguments, "{err}");
    err.to_string()
}

/// Defect 2: a wrong type at any depth is an error naming its path, never a number.
#[test]
fn wrong_types_inside_tuples_and_sequences_are_errors() {
    let w = typed_worker();
    let err = call::<i64>(&w, "add", ("", "")).unwrap_err();
    assert_eq!(
        invalid_arguments(&err),
        "add: invalid arguments: element 0: expected i64, got string"
    );
    let err = call::<i64>(&w, "add", (1.5f64, 2.5f64)).unwrap_err();
    assert_eq!(
        invalid_arguments(&err),
        "add: invalid arguments: element 0: expected i64, got f64"
    );
    let err = call::<i64>(&w, "add", (u64::MAX, 0u64)).unwrap_err();
    let text = invalid_arguments(&err);
    assert!(
        text.contains("element 0") && text.contains("18446744073709551615") && text.contains("i64"),
        "{text}"
    );
    let err = call::<Vec<f32>>(&w, "scale", (vec![1i32, 2], 2i32)).unwrap_err();
    assert_eq!(
        invalid_arguments(&err),
        "scale: invalid arguments: element 0, element 0: expected f32, got i32"
    );
    // The link stays up, and the right types work.
    assert_eq!(call::<i64>(&w, "add", (1i64, 2i64)).unwrap(), 3);
    assert_eq!(
        call::<Vec<f32>>(&w, "scale", (vec![1f32, 2.0], 2f32)).unwrap(),
        [2.0, 4.0]
    );
}

/// Defect 2, the scripting exception: integers cross integer types that hold them.
#[test]
fn integers_are_accepted_by_any_integer_type_that_holds_them() {
    let w = typed_worker();
    assert_eq!(call::<u32>(&w, "echo", 1234).unwrap(), 1234);
    assert_eq!(call::<i64>(&w, "add", (1, 2)).unwrap(), 3);
    assert_eq!(call::<u64>(&w, "echo", 7u32).unwrap(), 7);
    let err = call::<u32>(&w, "echo", -1).unwrap_err();
    let text = invalid_arguments(&err);
    assert!(text.contains("-1") && text.contains("u32"), "{text}");
    // In replies too, at depth.
    assert_eq!(
        call::<Vec<(i64, String)>>(&w, "pairs", ()).unwrap(),
        [(1, "one".to_owned())]
    );
    let err = call::<Vec<(u32, u32)>>(&w, "pairs", ()).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { .. })
            && err
                .to_string()
                .contains("element 0, element 1: expected u32, got string"),
        "{err}"
    );
    let err = call::<u8>(&w, "echo", 300u32).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { .. }) && err.to_string().contains("300"),
        "{err}"
    );
}
