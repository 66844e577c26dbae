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
    let mut payload = b"\0coproq\0".to_vec();
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(&(1u32 << 30).to_le_bytes());
    payload.push(0);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend(payload);
    frame
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
        format!("spawn:{}:{}:{}", fds[0], fds[1], std::process::id()),
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
