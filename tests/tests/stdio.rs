//! Workers over their stdin and stdout (`Builder::spawn_stdio` / `Coprocess::stdio`),
//! started directly and through `sh -c`.

use std::process::Command;
use std::time::{Duration, Instant};

use coproq::{Coprocess, Error};
use coproq_tests::{CALL_LIMIT, call};

fn worker_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stdio_worker"))
}

fn start(cmd: Command) -> Coprocess {
    Coprocess::builder()
        .handle("double", |x: i64| x * 2)
        .startup_timeout(CALL_LIMIT)
        .spawn_stdio(cmd)
        .unwrap()
}

#[test]
fn calls_go_both_ways_and_printing_does_not_corrupt_the_link() {
    for cmd in [worker_command(), {
        // Through a shell, as `ssh host cmd` runs it.
        let mut sh = Command::new("sh");
        sh.args([
            "-c",
            &format!("exec '{}'", env!("CARGO_BIN_EXE_stdio_worker")),
        ]);
        sh
    }] {
        let w = start(cmd);
        assert_eq!(call::<u64>(&w, "echo", 7u64).unwrap(), 7);
        assert_eq!(call::<u32>(&w, "chatty", 2000u32).unwrap(), 2000);
        assert_eq!(call::<u64>(&w, "echo", 8u64).unwrap(), 8);
        assert_eq!(call::<i64>(&w, "ask_parent", 21i64).unwrap(), 42);
        // stdin is /dev/null: reading it steals nothing from the link.
        assert_eq!(call::<usize>(&w, "read_stdin", ()).unwrap(), 0);
        let big: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
        assert_eq!(call::<Vec<u8>>(&w, "bytes", &big).unwrap(), big);
        let pending: Vec<_> = (0..1000u64)
            .map(|i| w.call_async::<u64>("echo", i))
            .collect();
        for (i, p) in pending.into_iter().enumerate() {
            assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), i as u64);
        }
        let status = w.close().expect("reaped");
        assert!(status.success(), "{status}");
    }
}

fn start_error(script: &str) -> String {
    let mut sh = Command::new("sh");
    sh.args(["-c", script]);
    let err = Coprocess::builder()
        .startup_timeout(Duration::from_secs(10))
        .spawn_stdio(sh)
        .unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    err.to_string()
}

#[test]
fn start_errors_quote_stderr_and_say_which_side_failed() {
    let err = start_error("echo 'Permission denied (publickey).' >&2; exit 255");
    assert!(err.contains("exit status 255"), "{err}");
    assert!(
        err.contains("which ssh gives when it cannot connect"),
        "{err}"
    );
    assert!(err.contains("Permission denied (publickey)."), "{err}");

    let err = start_error("exec no-such-coproq-worker-command");
    assert!(
        err.contains("not found on the far side (exit status 127)"),
        "{err}"
    );
    assert!(err.contains("not found"), "{err}");

    let err = start_error("echo 'no worker here' >&2; exit 3");
    assert!(err.contains("exited before the handshake"), "{err}");
    assert!(err.contains("Coprocess::stdio()"), "{err}");
    assert!(err.contains("no worker here"), "{err}");
}

#[test]
fn the_worker_exits_within_a_second_of_the_links_end_even_while_stuck() {
    let w = Coprocess::builder()
        .close_grace(Duration::from_secs(10))
        .spawn_stdio(worker_command())
        .unwrap();
    let stuck = w.call_async::<()>("hang", ());
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    // The parent's end closes; no signal reaches the worker, which exits on its own.
    let status = w.close().expect("reaped");
    let took = started.elapsed();
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(matches!(
        stuck.wait_timeout(CALL_LIMIT),
        Err(Error::Disconnected { .. })
    ));
}

#[test]
fn a_command_that_echoes_its_input_is_not_taken_for_a_worker() {
    // `cat` echoes our hello back: a parent's hello is not a worker's.
    let err = Coprocess::builder()
        .startup_timeout(Duration::from_secs(10))
        .spawn_stdio(Command::new("cat"))
        .unwrap_err();
    assert!(err.to_string().contains("a coproq parent too"), "{err}");
}

#[test]
#[cfg(target_os = "linux")]
fn a_stopped_relay_ends_the_link_by_heartbeat() {
    // cat | worker | cat: two relays between us and the worker, as ssh would be.
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        &format!("cat | '{}' | cat", env!("CARGO_BIN_EXE_stdio_worker")),
    ]);
    let w = Coprocess::builder()
        .heartbeat(Duration::from_millis(100))
        .close_grace(Duration::from_millis(500))
        .spawn_stdio(sh)
        .unwrap();
    assert_eq!(call::<u64>(&w, "echo", 1u64).unwrap(), 1);
    // Quiet for many intervals: pings keep the link up.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(call::<u64>(&w, "echo", 2u64).unwrap(), 2);
    let shell = w.pid().unwrap();
    let kids = coproq_tests::children(shell);
    assert_eq!(kids.len(), 3, "{kids:?}");
    let worker_name =
        |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let (relays, workers): (Vec<u32>, Vec<u32>) = kids
        .iter()
        .partition(|&&pid| worker_name(pid).trim() == "cat");
    assert_eq!((relays.len(), workers.len()), (2, 1), "{kids:?}");
    for &relay in &relays {
        coproq_tests::signal(relay, libc::SIGSTOP);
    }
    let started = Instant::now();
    let err = w
        .call_async::<u64>("echo", 3u64)
        .wait_timeout(CALL_LIMIT)
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The worker, hearing nothing either, exits on its own.
    assert!(
        coproq_tests::wait_until(Duration::from_secs(5), || coproq_tests::process_gone(
            workers[0]
        )),
        "the worker lives on"
    );
    for &relay in &relays {
        coproq_tests::signal(relay, libc::SIGKILL);
    }
    w.close();
}

#[test]
fn a_pool_of_stdio_workers_replaces_a_killed_one() {
    let pool = coproq::Pool::builder()
        .size(2)
        .handle("double", |x: i64| x * 2)
        .spawn_stdio(|_| worker_command())
        .unwrap();
    let results: Vec<u64> = pool.map("echo", 0..100u64).map(Result::unwrap).collect();
    assert_eq!(results, (0..100).collect::<Vec<_>>());
    assert_eq!(pool.call::<i64>("ask_parent", 5i64).unwrap(), 10);
    let victim = pool.workers()[0].pid().unwrap();
    coproq_tests::signal(victim, libc::SIGKILL);
    assert!(coproq_tests::wait_until(CALL_LIMIT, || {
        let stats = pool.stats();
        stats.restarts == 1 && stats.live == 2
    }));
    assert!(pool.workers().iter().all(|w| w.pid() != Some(victim)));
    assert_eq!(pool.call::<u64>("echo", 9u64).unwrap(), 9);
    pool.close();
}
