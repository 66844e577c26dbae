//! Tests for faults the worker or the parent can suffer: a stopped worker, a parent that
//! writes garbage into the worker's pipe.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coproq::{Coprocess, Error};
use coproq_tests::{call, process_exists, signal, wait_until};

/// `close()` of a stopped worker kills and reaps it (within its grace, and well under
/// 10 s whatever the state of its pipe).
fn close_reaps_within_its_grace(w: &Coprocess, pid: u32) {
    let started = Instant::now();
    let status = w.close();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "close took {:?}",
        started.elapsed()
    );
    assert!(status.is_some(), "the stopped worker was not reaped");
    assert!(!process_exists(pid));
}

#[test]
fn a_stopped_worker_times_out_calls_and_close_still_reaps_it() {
    let w = Coprocess::builder()
        .close_grace(Duration::from_millis(300))
        .fork(|parent| {
            parent.handle("echo", |x: u32| x);
        })
        .unwrap();
    let pid = w.pid().unwrap();
    assert_eq!(call::<u32>(&w, "echo", 1u32).unwrap(), 1);
    signal(pid, libc::SIGSTOP);
    let started = Instant::now();
    let err = w
        .call_async::<u32>("echo", 2u32)
        .wait_timeout(Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    close_reaps_within_its_grace(&w, pid);
}

/// The same with the worker's pipe full: a thread emitting to it blocks (back-pressure),
/// calls still time out at their deadline (which a full pipe makes the call's own: the
/// call waits to be sent), and close reaps it without waiting for the pipe.
#[test]
fn a_stopped_worker_with_its_pipe_full_times_out_calls_and_close_still_reaps_it() {
    let w = Coprocess::builder()
        .close_grace(Duration::from_millis(300))
        .call_timeout(Duration::from_millis(500))
        .fork(|parent| {
            parent
                .handle("echo", |x: u32| x)
                .on("sink", |_: serde_bytes::ByteBuf| {});
        })
        .unwrap();
    let pid = w.pid().unwrap();
    assert_eq!(call::<u32>(&w, "echo", 1u32).unwrap(), 1);
    signal(pid, libc::SIGSTOP);
    let offered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let filler = {
        let (w, offered) = (w.clone(), Arc::clone(&offered));
        std::thread::spawn(move || {
            let blob = vec![0u8; 4096];
            while w.emit("sink", serde_bytes::Bytes::new(&blob)).is_ok() {
                offered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // Full: the emitter stopped moving, with far more than a pipe's 64 KiB offered.
    let mut last = 0;
    assert!(wait_until(coproq_tests::CALL_LIMIT, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = offered.load(std::sync::atomic::Ordering::Relaxed);
        let full = now == last && now > 64;
        last = now;
        full
    }));
    let started = Instant::now();
    let err = w.call::<u32>("echo", 2u32).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    close_reaps_within_its_grace(&w, pid);
    coproq_tests::within(coproq_tests::CALL_LIMIT, move || filler.join().unwrap());
}

/// A hello as a coproq parent sends it (magic, protocol 1, max frame, no entry).
fn hello() -> Vec<u8> {
    coproq_tests::raw_hello(coproq_tests::PROTOCOL_VERSION)
}

/// Starts `echo_worker` as a coproq parent would, but with this test holding the pipes.
fn hand_started_worker() -> (std::process::Child, std::fs::File, std::fs::File) {
    let (from_worker, worker_out) = std::io::pipe().unwrap();
    let (worker_in, to_worker) = std::io::pipe().unwrap();
    let (worker_in, worker_out) = (OwnedFd::from(worker_in), OwnedFd::from(worker_out));
    let fds = [worker_in.as_raw_fd(), worker_out.as_raw_fd()];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo_worker"));
    cmd.env(
        "COPROQ_WORKER",
        format!(
            // No descriptor socket (-1).
            "spawn:{}:{}:{}:{}:-1",
            fds[0],
            fds[1],
            std::process::id(),
            1u32 << 30
        ),
    )
    .stderr(Stdio::piped());
    // SAFETY: only fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop((worker_in, worker_out));
    (
        child,
        std::fs::File::from(OwnedFd::from(to_worker)),
        std::fs::File::from(OwnedFd::from(from_worker)),
    )
}

fn wait_exit(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status, stderr);
        }
        assert!(Instant::now() < deadline, "the worker did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_parent_that_sends_garbage_instead_of_a_hello_makes_the_worker_exit_with_a_message() {
    let (mut child, mut to_worker, _from_worker) = hand_started_worker();
    to_worker
        .write_all(b"\xde\xad\xbe\xef definitely not a coproq hello")
        .unwrap();
    let (status, stderr) = wait_exit(&mut child);
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("not a coproq endpoint") || stderr.contains("handshake"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_parent_that_sends_garbage_after_the_handshake_makes_the_worker_stop_with_a_message() {
    let (mut child, mut to_worker, mut from_worker) = hand_started_worker();
    to_worker.write_all(&hello()).unwrap();
    // The worker's hello comes back.
    let mut len = [0u8; 4];
    from_worker.read_exact(&mut len).unwrap();
    let mut payload = vec![0; u32::from_le_bytes(len) as usize];
    from_worker.read_exact(&mut payload).unwrap();
    assert!(payload.starts_with(b"\0coproq\0"));
    // Then a frame that is no message, and a length far over any limit.
    to_worker.write_all(&8u32.to_le_bytes()).unwrap();
    to_worker.write_all(b"\xff\xff\xff\xffjunk").unwrap();
    to_worker.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let (status, stderr) = wait_exit(&mut child);
    assert!(stderr.contains("protocol error"), "stderr: {stderr}");
    assert!(status.code().is_some(), "ended by a signal: {status}");
    // Not a hang, and nothing left behind.
    assert!(wait_until(Duration::from_secs(1), || !process_exists(
        child.id()
    )));
}

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Its own value came back.
    Answered,
    /// The worker's death ended it.
    Gone,
}

/// Each call's outcome, by id: an id that ends twice, or a value that is not its call's,
/// fails the test.
#[derive(Default)]
struct Outcomes(std::sync::Mutex<std::collections::HashMap<u64, Outcome>>);

impl Outcomes {
    fn record(&self, id: u64, outcome: Outcome) {
        let before = self.0.lock().unwrap().insert(id, outcome);
        assert!(
            before.is_none(),
            "call {id} ended twice: {before:?}, then {outcome:?}"
        );
    }

    fn of<T: PartialEq + std::fmt::Debug>(&self, id: u64, result: coproq::Result<T>, want: &T) {
        match result {
            Ok(v) => {
                assert!(v == *want, "call {id} got another call's value");
                self.record(id, Outcome::Answered);
            }
            Err(Error::Disconnected { .. } | Error::NotConnected) => self.record(id, Outcome::Gone),
            Err(e) => panic!("call {id}: unexpected {e:?}"),
        }
    }

    /// (answered, gone), after checking that every id in `ids` ended exactly once.
    fn count(&self, ids: impl Iterator<Item = u64>) -> (u64, u64) {
        let outcomes = self.0.lock().unwrap();
        let mut counts = (0, 0);
        let mut seen = 0;
        for id in ids {
            match outcomes.get(&id) {
                Some(Outcome::Answered) => counts.0 += 1,
                Some(Outcome::Gone) => counts.1 += 1,
                None => panic!("call {id} never ended"),
            }
            seen += 1;
        }
        assert_eq!(outcomes.len(), seen, "outcomes for calls never made");
        counts
    }
}

/// The id of small call `k` of `chunk` on thread `t`.
fn small_id(t: u64, chunk: u64, k: u64) -> u64 {
    t << 32 | chunk << 8 | k
}

/// The id of large call `i`, apart from every small one.
fn large_id(i: u64) -> u64 {
    1 << 60 | i
}

/// Runs `per_thread` pipelined calls and events on each of 4 threads, and large echoes
/// (1 to 16 MiB) on a fifth, recording each call's outcome by id; how many large calls
/// were made.
fn pipelined_load(w: &Coprocess, per_thread: u64, outcomes: &Arc<Outcomes>) -> u64 {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (w, outcomes) = (w.clone(), Arc::clone(outcomes));
            std::thread::spawn(move || {
                for chunk in 0..per_thread / 250 {
                    let pending: Vec<_> = (0..250)
                        .map(|k| w.call_async::<u64>("echo", small_id(t, chunk, k)))
                        .collect();
                    let _ = w.emit("tick", chunk);
                    for (k, p) in (0..).zip(pending) {
                        let id = small_id(t, chunk, k);
                        outcomes.of(id, p.wait_timeout(coproq_tests::CALL_LIMIT), &id);
                    }
                }
            })
        })
        .collect();
    let large = {
        let (w, outcomes) = (w.clone(), Arc::clone(outcomes));
        std::thread::spawn(move || {
            let mut made = 0;
            // Until the worker is gone: every large call after that ends at once.
            loop {
                let bytes =
                    serde_bytes::ByteBuf::from(vec![made as u8; (1 + made as usize % 16) << 20]);
                let result = w
                    .call_async::<serde_bytes::ByteBuf>("bytes", &bytes)
                    .wait_timeout(coproq_tests::CALL_LIMIT);
                let gone = result.is_err();
                outcomes.of(large_id(made), result, &bytes);
                made += 1;
                if gone {
                    return made;
                }
            }
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    large.join().unwrap()
}

#[test]
fn sigkill_at_random_moments_under_pipelined_load_ends_every_call_exactly_once() {
    // A few kill times, from almost at once to late in the run.
    for (round, delay_ms) in [1u64, 7, 23, 60, 150].into_iter().enumerate() {
        let w = coproq::fork(|parent| {
            parent
                .handle("echo", |x: u64| x)
                .handle("bytes", |b: serde_bytes::ByteBuf| b)
                .on("tick", |_: u64| {});
        })
        .unwrap();
        let pid = w.pid().unwrap();
        let w2 = w.clone();
        let outcomes = Arc::new(Outcomes::default());
        let recorded = Arc::clone(&outcomes);
        let per_thread = 25_000;
        let large = coproq_tests::within(Duration::from_mins(2), move || {
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay_ms));
                signal(pid, libc::SIGKILL);
            });
            let large = pipelined_load(&w2, per_thread, &recorded);
            killer.join().unwrap();
            large
        });
        let small = (0..4u64).flat_map(|t| {
            (0..per_thread / 250).flat_map(move |c| (0..250).map(move |k| small_id(t, c, k)))
        });
        let (ok, gone) = outcomes.count(small.chain((0..large).map(large_id)));
        assert!(gone > 0, "round {round}: the kill landed after every call");
        eprintln!(
            "killed after {delay_ms} ms: {ok} calls answered, {gone} failed cleanly ({large} large)"
        );
        assert!(w.close().is_some());
    }
}

#[test]
fn a_worker_stuck_in_a_handler_does_not_affect_other_workers() {
    let stuck = coproq::fork(|parent| {
        parent.handle("spin", |(): ()| -> () {
            loop {
                std::hint::spin_loop();
            }
        });
    })
    .unwrap();
    let hog = coproq::fork(|parent| {
        parent.handle("grow", |mb: usize| {
            // Leaks on purpose.
            std::mem::forget(vec![1u8; mb << 20]);
            mb
        });
    })
    .unwrap();
    let healthy = coproq::fork(|parent| {
        parent.handle("echo", |x: u32| x);
    })
    .unwrap();
    let spinning = stuck.call_async::<()>("spin", ());
    for i in 0..20 {
        assert_eq!(call::<usize>(&hog, "grow", 8usize).unwrap(), 8);
        assert_eq!(call::<u32>(&healthy, "echo", i).unwrap(), i);
    }
    drop(spinning);
    let started = Instant::now();
    assert!(
        Coprocess::close(&stuck).is_some(),
        "the stuck worker was not reaped"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(call::<u32>(&healthy, "echo", 99u32).unwrap(), 99);
}
