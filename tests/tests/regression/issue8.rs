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
    let err = call::<Vec<f32>>(&w, "scale", (vec!["1"], 2i32)).unwrap_err();
    assert_eq!(
        invalid_arguments(&err),
        "scale: invalid arguments: element 0, element 0: expected f32, got string"
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

/// Defect 7: every error a handler returns reaches the caller as `Remote`.
#[test]
fn a_handlers_coproq_error_is_remote_not_local() {
    let w = coproq::fork(|parent| {
        parent
            .handle("gone", |(): ()| -> coproq::Result<u32> {
                Err(Error::NotConnected)
            })
            .handle("missing", |(): ()| -> coproq::Result<u32> {
                Err(Error::MethodNotFound("inner".into()))
            });
    })
    .unwrap();
    for method in ["gone", "missing"] {
        let err = call::<u32>(&w, method, ()).unwrap_err();
        let Error::Remote(remote) = &err else {
            panic!("{method}: a local-looking error: {err:?}")
        };
        assert_eq!(remote.kind(), RemoteErrorKind::Failed, "{err}");
    }
    assert_eq!(
        call::<u32>(&w, "gone", ()).unwrap_err().to_string(),
        "not connected"
    );

    // The same through a typed service whose method returns `coproq::Result`.
    let w = coproq::fork(|parent| {
        parent.listen(flaky::FlakyServer::new(flaky::Gone));
    })
    .unwrap();
    let err = flaky::FlakyClient::new(&w).gone().unwrap_err();
    assert!(matches!(&err, Error::Remote(_)), "{err:?}");
    assert_eq!(err.to_string(), "not connected");
}

mod flaky {
    #[coproq::service]
    pub(super) trait Flaky {
        fn gone(&self) -> coproq::Result<u32>;
    }
    pub(super) struct Gone;
    impl Flaky for Gone {
        fn gone(&self) -> coproq::Result<u32> {
            Err(coproq::Error::NotConnected)
        }
    }
}

mod a {
    #[coproq::service]
    pub(super) trait Calc {
        fn ping(&self) -> String;
    }
    pub(super) struct A;
    impl Calc for A {
        fn ping(&self) -> String {
            "a".into()
        }
    }
}

mod b {
    #[coproq::service]
    pub(super) trait Calc {
        fn ping(&self) -> String;
    }
    pub(super) struct B;
    impl Calc for B {
        fn ping(&self) -> String {
            "b".into()
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Defect 3: two services registering one method name on one end is a panic naming both.
#[test]
fn two_services_with_one_method_name_panic_naming_both() {
    let panic = std::panic::catch_unwind(|| {
        Coprocess::builder()
            .listen(a::CalcServer::new(a::A))
            .listen(b::CalcServer::new(b::B))
    })
    .unwrap_err();
    let text = panic_text(&*panic);
    assert!(
        text.contains("method `ping`")
            && text.contains("a::CalcServer")
            && text.contains("b::CalcServer"),
        "{text}"
    );
    // A plain handler may not take a service's name either; plain replaces plain.
    let panic = std::panic::catch_unwind(|| {
        Coprocess::builder()
            .listen(a::CalcServer::new(a::A))
            .handle("ping", |(): ()| "plain")
    })
    .unwrap_err();
    assert!(panic_text(&*panic).contains("method `ping`"));
    let w = Coprocess::builder()
        .fork(|parent| {
            parent.handle("x", |(): ()| 1u8).handle("x", |(): ()| 2u8);
        })
        .unwrap();
    assert_eq!(call::<u8>(&w, "x", ()).unwrap(), 2);
}

/// Defect 3, in a worker: its entry panics, so `fork` fails with the message.
#[test]
fn a_worker_listening_to_two_clashing_services_fails_fork() {
    let err = coproq::fork(|parent| {
        parent.listen(a::CalcServer::new(a::A));
        parent.listen(b::CalcServer::new(b::B));
    })
    .unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("method `ping` is registered twice"),
        "{err}"
    );
}

/// Defect 4: a spawned worker's piped stdio is kept for the parent to take.
#[test]
fn piped_stdio_of_a_spawned_worker_is_kept() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo_worker"));
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let w = Coprocess::spawn(cmd).unwrap();
    assert!(w.take_stdin().is_some());
    assert!(w.take_stdin().is_none(), "taken once");
    let stdout = BufReader::new(w.take_stdout().unwrap());
    let stderr = BufReader::new(w.take_stderr().unwrap());
    assert_eq!(call::<u32>(&w, "chatty", 50u32).unwrap(), 50);
    let lines = coproq_tests::within(CALL_LIMIT, move || {
        stdout
            .lines()
            .take(50)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    assert_eq!(lines.len(), 50);
    assert!(
        lines[49].starts_with("line 49 of worker output"),
        "{lines:?}"
    );
    let first = coproq_tests::within(CALL_LIMIT, move || stderr.lines().next().unwrap().unwrap());
    assert_eq!(first, "stderr line 0");
    assert!(w.close().unwrap().success());
    // A fork worker's stdio is this process's: nothing to take.
    let f = coproq::fork(|_| {}).unwrap();
    assert!(f.take_stdout().is_none());
}

/// Defect 6: `fork` returns once the entry returned, and fails if it panicked or exited.
#[test]
fn fork_waits_for_the_entry_and_reports_its_failure() {
    let ran = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&ran);
    let w = Coprocess::builder()
        .handle("entry_ran", move |(): ()| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .fork(|parent| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let () = parent.call("entry_ran", ()).unwrap();
        })
        .unwrap();
    // The entry's last act ran before `fork` returned.
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    w.close();

    let err = coproq::fork(|_| panic!("boom in the entry")).unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    assert!(
        err.to_string().contains("panicked: boom in the entry"),
        "{err}"
    );

    let err = coproq::fork(|_| std::process::exit(3)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("exited before its entry returned") && text.contains('3'),
        "{text}"
    );
}

/// Friction: `Spawn` says why in its message.
#[test]
fn spawn_errors_say_why() {
    let err = Coprocess::spawn(std::process::Command::new("/nonexistent/worker")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("failed to start worker `/nonexistent/worker`: ")
            && text.contains("No such file"),
        "{text}"
    );
}

/// Friction: a program that is no coproq worker is named, with what was expected.
#[test]
fn a_program_that_is_not_a_worker_is_named() {
    let mut sleep = std::process::Command::new("sleep");
    sleep.arg("100");
    let started = std::time::Instant::now();
    let err = Coprocess::builder()
        .startup_timeout(std::time::Duration::from_millis(300))
        .spawn(sleep)
        .unwrap_err();
    assert!(started.elapsed() < CALL_LIMIT);
    let text = err.to_string();
    assert!(
        matches!(err, Error::Spawn { .. })
            && text.contains("`sleep` sent nothing within 300ms")
            && text.contains("Coprocess::parent()"),
        "{text}"
    );
    let err = Coprocess::spawn(std::process::Command::new("true")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`true` exited before the handshake"),
        "{text}"
    );
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Config {
    scale: u32,
    name: String,
}

/// Friction: `fork_with` hands the entry data a `fn` pointer cannot capture.
#[test]
fn fork_with_hands_the_entry_its_data() {
    let config = Config {
        scale: 3,
        name: "tripler".into(),
    };
    let w = coproq::fork_with(config, |parent, config| {
        let Config { scale, name } = config;
        parent
            .handle("scale", move |x: u32| x * scale)
            .handle("name", move |(): ()| name.clone());
    })
    .unwrap();
    assert_eq!(call::<u32>(&w, "scale", 5u32).unwrap(), 15);
    assert_eq!(call::<String>(&w, "name", ()).unwrap(), "tripler");
    // And through a builder, with other data.
    let w = Coprocess::builder()
        .fork_with(vec![1u64, 2, 3], |parent, items| {
            parent.handle("sum", move |(): ()| items.iter().sum::<u64>());
        })
        .unwrap();
    assert_eq!(call::<u64>(&w, "sum", ()).unwrap(), 6);
}

/// Friction: `max_frame_len` applies to both ends of a fork.
#[test]
fn max_frame_len_applies_to_the_fork_worker_too() {
    let w = Coprocess::builder()
        .max_frame_len(4096)
        .fork(|parent| {
            parent.handle("len", |s: String| s.len());
        })
        .unwrap();
    assert_eq!(call::<usize>(&w, "len", "x".repeat(1000)).unwrap(), 1000);
    // The worker accepts no more than the parent's builder said, so the parent refuses
    // to send more (before, the worker kept its default of 1 GiB).
    let err = call::<usize>(&w, "len", "x".repeat(10_000)).unwrap_err();
    assert!(matches!(err, Error::Encode { .. }), "{err:?}");
    assert_eq!(call::<usize>(&w, "len", "y".repeat(10)).unwrap(), 10);
}

/// Friction: `methods()` lists what the peer offers.
#[test]
fn methods_lists_the_peers_handlers() {
    let w = coproq::fork(|parent| {
        parent
            .handle("zeta", |(): ()| ())
            .on("log", |_: String| ())
            .listen(a::CalcServer::new(a::A));
    })
    .unwrap();
    assert_eq!(w.methods().unwrap(), ["ping", "zeta"]);
    assert_eq!(w.events().unwrap(), ["log"]);
    let parent_side = Coprocess::builder()
        .handle("config", |(): ()| 1u8)
        .fork(|parent| {
            let names = parent.methods().unwrap();
            parent.handle("seen", move |(): ()| names.clone());
        })
        .unwrap();
    assert_eq!(
        call::<Vec<String>>(&parent_side, "seen", ()).unwrap(),
        ["config"]
    );
}

fn process_group_of(pid: u32) -> i32 {
    // SAFETY: getpgid reads a process attribute.
    unsafe { libc::getpgid(pid as libc::pid_t) }
}

/// Friction: workers can be started in a process group of their own (Ctrl-C then reaches
/// only the parent); by default they share the parent's.
#[test]
fn workers_can_have_a_process_group_of_their_own() {
    let own = std::process::id();
    let shared = coproq::fork(|_| {}).unwrap();
    assert_eq!(
        process_group_of(shared.pid().unwrap()),
        process_group_of(own)
    );
    let apart = Coprocess::builder()
        .process_group(true)
        .fork(|_| {})
        .unwrap();
    let pid = apart.pid().unwrap();
    assert_eq!(process_group_of(pid), pid as i32);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_echo_worker"));
    cmd.stdout(std::process::Stdio::null());
    let spawned = Coprocess::builder().process_group(true).spawn(cmd).unwrap();
    let pid = spawned.pid().unwrap();
    assert_eq!(process_group_of(pid), pid as i32);
    assert_eq!(call::<u32>(&spawned, "echo", 9u32).unwrap(), 9);
}

mod people {
    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    pub(super) struct Person {
        pub(super) name: String,
    }

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    pub(super) enum DbError {
        NotFound { id: u64 },
    }

    impl std::fmt::Display for DbError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Self::NotFound { id } => write!(f, "no person with id {id}"),
            }
        }
    }

    /// An error type without `Display`: its text stays the default.
    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    pub(super) struct Opaque {
        pub(super) code: u32,
    }

    #[coproq::service]
    pub(super) trait People {
        fn load(&self, id: u64) -> Result<Person, DbError>;
        fn opaque(&self) -> Result<(), Opaque>;
    }

    pub(super) struct Db;

    impl People for Db {
        fn load(&self, id: u64) -> Result<Person, DbError> {
            match id {
                1 => Ok(Person { name: "Ada".into() }),
                id => Err(DbError::NotFound { id }),
            }
        }
        fn opaque(&self) -> Result<(), Opaque> {
            Err(Opaque { code: 7 })
        }
    }
}

/// Defect 5: a typed error's `Display` is its text for dynamic callers.
#[test]
fn a_typed_errors_display_is_its_text_for_dynamic_callers() {
    use people::{DbError, Person};
    let w = coproq::fork(|parent| {
        parent.listen(people::PeopleServer::new(people::Db));
    })
    .unwrap();
    let err = call::<Person>(&w, "load", 42u64).unwrap_err();
    assert!(matches!(&err, Error::Remote(_)), "{err:?}");
    assert_eq!(err.to_string(), "no person with id 42");
    // Typed clients still get the value.
    let client = people::PeopleClient::new(&w);
    assert_eq!(client.load(42).unwrap(), Err(DbError::NotFound { id: 42 }));
    assert_eq!(client.load(1).unwrap().unwrap().name, "Ada");
    assert_eq!(client.opaque().unwrap(), Err(people::Opaque { code: 7 }));
    let err = call::<()>(&w, "opaque", ()).unwrap_err();
    assert!(err.to_string().contains("Opaque"), "{err}");
}

mod blobs {
    #[coproq::service]
    pub(super) trait Blobs {
        fn fetch(&self, len: usize) -> Result<Vec<u8>, String>;
    }
    pub(super) struct Store;
    impl Blobs for Store {
        fn fetch(&self, len: usize) -> Result<Vec<u8>, String> {
            if len == 0 {
                return Err("empty".into());
            }
            Ok((0..len).map(|i| i as u8).collect())
        }
    }
}

/// Friction: byte vectors take the byte-string path wherever they travel, and every form
/// of bytes interoperates, small and large (the large ones without copies).
#[test]
fn byte_vectors_travel_as_bytes_in_every_form() {
    let w = coproq::fork(|parent| {
        parent
            .handle("vec", |b: Vec<u8>| b)
            .handle("buf", |b: serde_bytes::ByteBuf| b)
            .handle("sum", |b: Vec<u8>| {
                b.iter().map(|&x| u64::from(x)).sum::<u64>()
            })
            .listen(blobs::BlobsServer::new(blobs::Store));
    })
    .unwrap();
    for len in [0, 1, 1000, 300_000, 3 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        assert_eq!(call::<Vec<u8>>(&w, "vec", data.clone()).unwrap(), data);
        assert_eq!(call::<Vec<u8>>(&w, "vec", &data[..]).unwrap(), data);
        assert_eq!(call::<Vec<u8>>(&w, "buf", &data).unwrap(), data);
        let back: serde_bytes::ByteBuf = call(&w, "vec", data.clone()).unwrap();
        assert_eq!(back.into_vec(), data);
        let sum: u64 = data.iter().map(|&x| u64::from(x)).sum();
        assert_eq!(call::<u64>(&w, "sum", data.clone()).unwrap(), sum);
        let client = blobs::BlobsClient::new(&w);
        match client.fetch(len).unwrap() {
            Ok(bytes) => assert_eq!(bytes, (0..len).map(|i| i as u8).collect::<Vec<_>>()),
            Err(e) => assert!(len == 0 && e == "empty", "{e}"),
        }
    }
    // A sequence of other integers is still checked as such.
    let err = call::<Vec<u8>>(&w, "vec", vec![1u16, 300]).unwrap_err();
    assert!(err.to_string().contains("300"), "{err}");
}

/// `fork`'s docs: the entry runs before `main`, so `std::env::args()` holds only the
/// program name there (data goes through `fork_with`).
#[test]
fn a_fork_workers_arguments_are_only_the_program_name() {
    let w = coproq::fork(|parent| {
        let args: Vec<String> = std::env::args().collect();
        parent.handle("args", move |(): ()| args.clone());
    })
    .unwrap();
    let args = call::<Vec<String>>(&w, "args", ()).unwrap();
    assert_eq!(args.len(), 1, "{args:?}");
}
