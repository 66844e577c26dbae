//! Tests for the worker's lifecycle: its stdio stays the user's, it may start workers
//! of its own, and its parent's death ends it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coproq_tests::{call, process_gone, wait_until};

#[test]
fn a_worker_that_prints_thousands_of_lines_does_not_disturb_the_link() {
    // The worker's stdout is the user's: here a pipe that this test reads.
    let (stdout, stdout_writer) = std::io::pipe().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo_worker"));
    cmd.stdout(stdout_writer).stderr(Stdio::null());
    let w = coproq::Coprocess::spawn(cmd).unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lines = BufReader::new(stdout).lines().map_while(Result::ok).count();
        let _ = lines_tx.send(lines);
    });
    for _ in 0..3 {
        assert_eq!(call::<u32>(&w, "chatty", 3000u32).unwrap(), 3000);
    }
    w.close();
    let lines = lines_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the worker's stdout ended");
    assert_eq!(lines, 9000, "the worker's stdout lost lines");
}

#[test]
fn a_fork_worker_keeps_the_parents_stdio() {
    let w = coproq::fork(|parent| {
        parent.handle("say", |line: String| {
            println!("{line}");
            eprintln!("{line}");
            line.len()
        });
    })
    .unwrap();
    assert_eq!(
        call::<usize>(&w, "say", "printed by a fork worker").unwrap(),
        24
    );
}

#[test]
fn a_worker_forks_a_worker_of_its_own() {
    let w = coproq::fork(|parent| {
        parent.handle("grandchild_echo", |x: u32| -> coproq::Result<(u32, u32)> {
            let grandchild = coproq::fork(|p| {
                p.handle("echo", |x: u32| x + 1);
            })?;
            let pid = grandchild.pid().unwrap_or(0);
            let y = grandchild
                .call_async::<u32>("echo", x)
                .wait_timeout(Duration::from_secs(30))?;
            grandchild.close();
            Ok((y, pid))
        });
    })
    .unwrap();
    let (y, grandchild): (u32, u32) = call(&w, "grandchild_echo", 41u32).unwrap();
    assert_eq!(y, 42);
    assert_ne!(grandchild, w.pid().unwrap());
    assert!(wait_until(Duration::from_secs(5), || process_gone(
        grandchild
    )));
}

#[test]
fn the_worker_marker_does_not_leak_to_the_workers_children() {
    let w = coproq::fork(|parent| {
        parent.handle("child_env", |(): ()| {
            let out = Command::new("env").output().map_err(|e| e.to_string())?;
            Ok::<_, String>(String::from_utf8_lossy(&out.stdout).contains("COPROQ_WORKER="))
        });
    })
    .unwrap();
    assert!(!call::<bool>(&w, "child_env", ()).unwrap());
}

/// Starts `orphaning_parent` in `mode` and returns it with its worker's pid.
fn orphaning_parent(mode: &str) -> (std::process::Child, u32) {
    let mut parent = Command::new(env!("CARGO_BIN_EXE_orphaning_parent"))
        .arg(mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let worker = line.trim().parse().expect("the worker's pid");
    (parent, worker)
}

fn assert_worker_gone_within_1s(worker: u32, what: &str) {
    let start = Instant::now();
    assert!(
        wait_until(Duration::from_secs(1), || process_gone(worker)),
        "worker {worker} alive 1 s after {what}"
    );
    eprintln!("worker gone {:?} after {what}", start.elapsed());
}

#[test]
fn worker_exits_when_its_parent_is_killed() {
    let (mut parent, worker) = orphaning_parent("idle");
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert_worker_gone_within_1s(worker, "SIGKILL of its idle parent");
}

#[test]
fn worker_stuck_in_a_handler_exits_when_its_parent_is_killed() {
    let (mut parent, worker) = orphaning_parent("busy");
    parent.kill().unwrap();
    parent.wait().unwrap();
    assert_worker_gone_within_1s(worker, "SIGKILL of its parent while stuck in a handler");
}

#[test]
fn worker_exits_when_its_parent_exits_without_closing() {
    let (mut parent, worker) = orphaning_parent("exit");
    parent.wait().unwrap();
    assert_worker_gone_within_1s(worker, "its parent exited without closing");
}

#[test]
fn a_process_started_by_hand_with_the_marker_refuses_to_run() {
    // Malformed markers, and well-formed ones that name another parent (issue 25, item
    // 9: these exited 0 without a word).
    let markers = [
        "fork:40:41",
        "fork:0:1",
        "spawn:x",
        "nonsense",
        "fork:40:41:1:1024:-1",
        "spawn:40:41:1:1024:42",
        "fork:0:1:1:1024:-1",
    ];
    for marker in markers {
        let out = Command::new(env!("CARGO_BIN_EXE_orphaning_parent"))
            .arg("idle")
            .env("COPROQ_WORKER", marker)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{marker}: {stderr}");
        assert!(
            stderr.contains("started as a coproq worker"),
            "{marker}: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{marker}: the program's own main ran"
        );
    }
}
