//! Tests for faults the worker or the parent can suffer: a stopped worker, a parent that
//! writes garbage into the worker's pipe.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coproq::{Coprocess, Error};
use coproq_tests::{call, process_exists, signal, wait_until};

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
    let err = w
        .call_async::<u32>("echo", 2u32)
        .wait_timeout(Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
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
            "spawn:{}:{}:{}:{}",
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

/// Runs `per_thread` pipelined calls and events on each of 4 threads; counts each call's
/// one result: (values, disconnects).
fn pipelined_load(w: &Coprocess, per_thread: u64) -> (u64, u64) {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                let (mut ok, mut gone) = (0, 0);
                for chunk in 0..per_thread / 250 {
                    let pending: Vec<_> = (0..250)
                        .map(|k| w.call_async::<u64>("echo", t << 32 | chunk << 8 | k))
                        .collect();
                    let _ = w.emit("tick", chunk);
                    for (k, p) in (0..).zip(pending) {
                        match p.wait_timeout(coproq_tests::CALL_LIMIT) {
                            Ok(v) => {
                                assert_eq!(v, t << 32 | chunk << 8 | k);
                                ok += 1;
                            }
                            Err(Error::Disconnected { .. } | Error::NotConnected) => gone += 1,
                            Err(e) => panic!("unexpected: {e:?}"),
                        }
                    }
                }
                (ok, gone)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

#[test]
fn sigkill_at_random_moments_under_pipelined_load_ends_every_call_exactly_once() {
    // A few kill times, from almost at once to late in the run.
    for (round, delay_ms) in [1u64, 7, 23, 60].into_iter().enumerate() {
        let w = coproq::fork(|parent| {
            parent.handle("echo", |x: u64| x).on("tick", |_: u64| {});
        })
        .unwrap();
        let pid = w.pid().unwrap();
        let w2 = w.clone();
        let (ok, gone) = coproq_tests::within(Duration::from_secs(120), move || {
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay_ms));
                signal(pid, libc::SIGKILL);
            });
            let counts = pipelined_load(&w2, 25_000);
            killer.join().unwrap();
            counts
        });
        assert_eq!(
            ok + gone,
            100_000,
            "round {round}: every call ends exactly once"
        );
        eprintln!("killed after {delay_ms} ms: {ok} calls answered, {gone} failed cleanly");
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
