//! Workers on "other machines": over a real OpenSSH server that each test starts on
//! 127.0.0.1 (built ignored, saying why, where sshd is not installed, unless
//! `COPROQ_REQUIRE_SSHD=1`; `.ci/run` installs it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use coproq::{Coprocess, DisconnectCause, Error};
use coproq_tests::sshd::Sshd;
use coproq_tests::{CALL_LIMIT, call, process_gone, wait_until};

fn worker_path() -> &'static str {
    env!("CARGO_BIN_EXE_stdio_worker")
}

fn over_ssh(sshd: &Sshd, tag: &str) -> Coprocess {
    let mut ssh = sshd.ssh();
    ssh.arg(worker_path()).arg(tag);
    Coprocess::builder()
        .handle("double", |x: i64| x * 2)
        .startup_timeout(CALL_LIMIT)
        .spawn_stdio(ssh)
        .unwrap()
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn a_worker_binary_over_ssh() {
    let sshd = Sshd::start("binary");
    let w = over_ssh(&sshd, "coproq-test-binary");
    assert_eq!(call::<u64>(&w, "echo", 5u64).unwrap(), 5);
    assert_eq!(call::<u32>(&w, "chatty", 500u32).unwrap(), 500);
    assert_eq!(call::<i64>(&w, "ask_parent", 21i64).unwrap(), 42);
    let big: Vec<u8> = (0..64 << 20).map(|i| (i % 253) as u8).collect();
    assert_eq!(call::<Vec<u8>>(&w, "bytes", &big).unwrap(), big);
    w.close();
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn start_errors_over_ssh_quote_ssh() {
    let sshd = Sshd::start("errors");
    let start = |mut ssh: std::process::Command, command: &str| {
        ssh.arg(command);
        Coprocess::builder()
            .startup_timeout(CALL_LIMIT)
            .spawn_stdio(ssh)
            .unwrap_err()
            .to_string()
    };
    let err = start(sshd.ssh_to_nowhere(), worker_path());
    assert!(err.contains("exit status 255"), "{err}");
    assert!(err.contains("Could not resolve hostname"), "{err}");
    let err = start(sshd.ssh_as_stranger(), worker_path());
    assert!(err.contains("exit status 255"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    let err = start(sshd.ssh(), "/no/such/coproq-worker");
    assert!(
        err.contains("not found on the far side (exit status 127)"),
        "{err}"
    );
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn killing_the_ssh_client_fails_calls_and_ends_the_remote_worker() {
    let sshd = Sshd::start("killed");
    let tag = "coproq-test-killed-client";
    let w = over_ssh(&sshd, tag);
    let stuck = w.call_async::<()>("hang", ());
    std::thread::sleep(Duration::from_millis(100));
    let before = tagged(tag);
    assert_eq!(
        before.len(),
        1,
        "the remote worker is not found: {before:?}"
    );
    let client = w.pid().unwrap();
    coproq_tests::signal(client, libc::SIGKILL);
    let started = Instant::now();
    let err = stuck.wait_timeout(CALL_LIMIT).unwrap_err();
    // The transport died, not the worker: the error says so (issue 25, item 10).
    assert!(
        matches!(&err, Error::Disconnected { cause: DisconnectCause::TransportEnded { program }, .. } if program == "ssh"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("the transport `ssh` ended") && text.contains("may still be running"),
        "{text}"
    );
    // The remote worker (a stdio_worker under sshd) sees its input hang up and exits
    // within a second (plus what sshd takes to notice), though its handler is stuck.
    assert!(
        wait_until(Duration::from_secs(5), || tagged(tag).is_empty()),
        "remote workers left: {:?}",
        tagged(tag)
    );
    eprintln!(
        "remote worker gone {:?} after its ssh client was killed",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    w.close();
}

/// The processes whose command line holds `tag` (a remote worker started with it as an
/// argument, which the worker ignores).
fn tagged(tag: &str) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            // Not the ssh client, whose command line names the remote command too.
            !cmd.starts_with("ssh\0")
                && cmd.contains("stdio_worker")
                && cmd.contains(tag)
                && !process_gone(pid)
        })
        .collect()
}

fn cache(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coproq-ssh-cache-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn cached(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("coproq"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn a_fork_worker_via_ssh_is_shipped_once() {
    use std::os::unix::fs::MetadataExt;
    let sshd = Sshd::start("via");
    let home = cache("via");
    let start = || {
        Coprocess::builder()
            .startup_timeout(CALL_LIMIT)
            .handle("double", |x: u64| x * 2)
            .via(sshd.ssh_with_cache(&home))
            .fork(|parent| {
                let p = parent.clone();
                parent.handle("pid", |()| std::process::id());
                parent.handle("ask_parent", move |x: u64| {
                    p.call::<u64>("double", x).unwrap()
                });
            })
            .unwrap()
    };
    let w = start();
    assert_eq!(call::<u64>(&w, "ask_parent", 4u64).unwrap(), 8);
    w.close();
    let files = cached(&home);
    assert_eq!(files.len(), 1, "{files:?}");
    let first = std::fs::metadata(&files[0]).unwrap();
    let w = start();
    assert_eq!(call::<u64>(&w, "ask_parent", 5u64).unwrap(), 10);
    w.close();
    let second = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(
        (first.ino(), first.mtime_nsec()),
        (second.ino(), second.mtime_nsec()),
        "shipped again"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn a_pool_over_ssh_replaces_a_worker_whose_connection_died() {
    let sshd = Sshd::start("pool");
    let ssh = std::sync::Arc::new(sshd);
    let for_pool = std::sync::Arc::clone(&ssh);
    let pool = coproq::Pool::builder()
        .size(2)
        .handle("double", |x: i64| x * 2)
        .startup_timeout(CALL_LIMIT)
        .spawn_stdio(move |_| {
            let mut cmd = for_pool.ssh();
            cmd.arg(worker_path());
            cmd
        })
        .unwrap();
    let results: Vec<u64> = pool.map("echo", 0..50u64).map(Result::unwrap).collect();
    assert_eq!(results, (0..50).collect::<Vec<_>>());
    let client = pool.workers()[0].pid().unwrap();
    coproq_tests::signal(client, libc::SIGKILL);
    assert!(wait_until(CALL_LIMIT, || {
        let stats = pool.stats();
        stats.restarts == 1 && stats.live == 2
    }));
    assert_eq!(pool.call::<i64>("ask_parent", 3i64).unwrap(), 6);
    pool.close();
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn one_pool_of_fork_workers_spans_two_hosts_with_a_prefix_per_seat() {
    // Two servers stand for two hosts: each seat's worker must run under its own.
    let hosts = std::sync::Arc::new([Sshd::start("seat-a"), Sshd::start("seat-b")]);
    let ports: Vec<u16> = hosts.iter().map(Sshd::port).collect();
    let caches = [cache("seat-a"), cache("seat-b")];
    let (for_pool, dirs) = (std::sync::Arc::clone(&hosts), caches.clone());
    let pool = coproq::Pool::builder()
        .size(2)
        .startup_timeout(CALL_LIMIT)
        .via(move |seat: usize| for_pool[seat].ssh_with_cache(&dirs[seat]))
        .fork(|parent| {
            // sshd says which server the session came through.
            parent.handle("server_port", |()| {
                let connection = std::env::var("SSH_CONNECTION").unwrap_or_default();
                connection
                    .split(' ')
                    .nth(3)
                    .and_then(|p| p.parse::<u16>().ok())
            });
        })
        .unwrap();
    let seen = |pool: &coproq::Pool| {
        let mut seen: Vec<u16> = pool
            .workers()
            .iter()
            .map(|w| call::<Option<u16>>(w, "server_port", ()).unwrap().unwrap())
            .collect();
        seen.sort_unstable();
        seen
    };
    let mut expected = ports.clone();
    expected.sort_unstable();
    assert_eq!(seen(&pool), expected);
    // Each host got its own shipped copy.
    for dir in &caches {
        assert_eq!(cached(dir).len(), 1, "{dir:?}");
    }
    // A replacement runs where its seat's prefix says.
    let client = pool.workers()[0].pid().unwrap();
    coproq_tests::signal(client, libc::SIGKILL);
    assert!(wait_until(CALL_LIMIT, || {
        let stats = pool.stats();
        stats.restarts == 1 && stats.live == 2
    }));
    assert_eq!(seen(&pool), expected);
    pool.close();
    for dir in &caches {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn typed_calls_over_ssh() {
    use coproq_tests::services::{CalcClient, CalcError};
    let sshd = Sshd::start("typed");
    let w = over_ssh(&sshd, "coproq-test-typed");
    let calc = CalcClient::new(&w);
    assert_eq!(calc.add(2, 3).unwrap(), 5);
    assert_eq!(calc.div(1, 0).unwrap(), Err(CalcError::DivisionByZero));
    assert_eq!(calc.greet("ssh").unwrap(), "hello, ssh");
    w.close();
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn a_stopped_ssh_client_ends_the_link_by_heartbeat() {
    let sshd = Sshd::start("stopped");
    let tag = "coproq-test-stopped-client";
    let mut ssh = sshd.ssh();
    ssh.arg(worker_path()).arg(tag);
    let w = Coprocess::builder()
        .heartbeat(Duration::from_millis(100))
        .close_grace(Duration::from_millis(200))
        .startup_timeout(CALL_LIMIT)
        .spawn_stdio(ssh)
        .unwrap();
    assert_eq!(call::<u64>(&w, "echo", 1u64).unwrap(), 1);
    assert_eq!(tagged(tag).len(), 1);
    let client = w.pid().unwrap();
    coproq_tests::signal(client, libc::SIGSTOP);
    let started = Instant::now();
    let err = w
        .call_async::<u64>("echo", 2u64)
        .wait_timeout(CALL_LIMIT)
        .unwrap_err();
    // Silence, not an exit: the error says how long nothing came (issue 25, item 10).
    assert!(
        matches!(&err, Error::Disconnected { cause: DisconnectCause::Silent { after }, .. } if *after >= Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("nothing came from the peer for"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The remote worker hears no pings either, and exits.
    assert!(
        wait_until(Duration::from_secs(5), || tagged(tag).is_empty()),
        "remote workers left: {:?}",
        tagged(tag)
    );
    coproq_tests::signal(client, libc::SIGKILL);
    w.close();
}

#[test]
#[cfg_attr(
    coproq_no_sshd,
    ignore = "needs /usr/sbin/sshd (apt-get install openssh-server)"
)]
fn two_parents_ship_over_ssh_at_once() {
    let sshd = Sshd::start("race");
    let sshd = std::sync::Arc::new(sshd);
    let home = cache("race");
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let (sshd, home) = (std::sync::Arc::clone(&sshd), home.clone());
            std::thread::spawn(move || {
                let w = Coprocess::builder()
                    .startup_timeout(CALL_LIMIT)
                    .via(sshd.ssh_with_cache(&home))
                    .fork(|parent| {
                        parent.handle("pid", |()| std::process::id());
                    })
                    .unwrap();
                let pid = call::<u32>(&w, "pid", ()).unwrap();
                w.close();
                pid
            })
        })
        .collect();
    for s in starts {
        assert_ne!(s.join().unwrap(), std::process::id());
    }
    assert_eq!(cached(&home).len(), 1, "{:?}", cached(&home));
    let _ = std::fs::remove_dir_all(&home);
}
