//! What a pool says when a worker dies: which calls are to blame (poison calls found by
//! running suspects alone), what killed the worker (its signal, coproq's kill, an
//! allocation past its memory limit, its last words on stderr), and its events; and
//! recycling by resident size.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coproq::{Blame, Coprocess, DeathReason, Error, Pool, PoolEvent, Retirement};
use coproq_tests::{CALL_LIMIT, wait_until};

const MIB: u64 = 1 << 20;

/// Handlers of the workers here.
fn serve(parent: &Coprocess) {
    parent.handle("sleep", |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    });
    parent.handle("abort_after", |ms: u64| -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        eprintln!("giving up after {ms} ms");
        std::process::abort()
    });
    parent.handle("hang", |()| -> () {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    // Allocates `mib` MiB and touches every page.
    parent.handle("allocate", |mib: u64| {
        let block = vec![1u8; (mib * MIB) as usize];
        block
            .iter()
            .step_by(4096)
            .map(|&b| u64::from(b))
            .sum::<u64>()
    });
    // Leaks `mib` MiB, touched, on every call.
    parent.handle("leak", |mib: u64| {
        let block = vec![1u8; (mib * MIB) as usize];
        std::mem::forget(block);
        std::process::id()
    });
    parent.handle("pid", |()| std::process::id());
}

fn pool() -> coproq::PoolBuilder {
    Pool::builder()
        .startup_timeout(CALL_LIMIT)
        .call_timeout(CALL_LIMIT)
}

/// The `Disconnected` parts of `result`'s error.
fn disconnected<T: std::fmt::Debug>(
    result: coproq::Result<T>,
) -> (Option<Blame>, Option<Arc<coproq::Postmortem>>, String) {
    match result {
        Err(e @ Error::Disconnected { .. }) => {
            let text = e.to_string();
            let Error::Disconnected {
                blame, postmortem, ..
            } = e
            else {
                unreachable!("matched as Disconnected")
            };
            (blame, postmortem, text)
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[test]
fn without_retries_each_call_of_a_dead_worker_says_how_many_others_it_ran() {
    let pool = pool().size(1).max_in_flight(4).fork(serve).unwrap();
    let crash = pool.call_async::<u64>("abort_after", 100u64);
    let others: Vec<_> = (0..3)
        .map(|_| pool.call_async::<u64>("sleep", 10u64))
        .collect();
    let (blame, postmortem, text) = disconnected(crash.wait());
    assert_eq!(blame, Some(Blame::Shared { others: 3 }), "{text}");
    assert!(
        text.contains("3 other calls too, so this one may be innocent"),
        "{text}"
    );
    let postmortem = postmortem.expect("a postmortem");
    assert_eq!(postmortem.signal, Some("SIGABRT"));
    // A pool follows its workers' stderr: the last words are quoted.
    assert!(
        postmortem
            .stderr_tail
            .iter()
            .any(|l| l == "giving up after 100 ms"),
        "{postmortem:?}"
    );
    for other in others {
        let (blame, _, text) = disconnected(other.wait());
        assert_eq!(blame, Some(Blame::Shared { others: 3 }), "{text}");
    }
    pool.close();
}

#[test]
fn with_retries_the_culprit_is_found_alone_and_the_innocent_complete() {
    let pool = pool()
        .size(2)
        .max_in_flight(4)
        .retries(1)
        .fork(serve)
        .unwrap();
    let innocent: Vec<_> = (0..7)
        .map(|_| pool.call_async::<u64>("sleep", 30u64))
        .collect();
    let culprit = pool.call_async::<u64>("abort_after", 50u64);
    let more: Vec<_> = (0..7)
        .map(|_| pool.call_async::<u64>("sleep", 30u64))
        .collect();
    let (blame, _, text) = disconnected(culprit.wait());
    assert_eq!(blame, Some(Blame::Poison), "{text}");
    assert!(text.contains("a poison call"), "{text}");
    for call in innocent.into_iter().chain(more) {
        assert_eq!(call.wait().unwrap(), 30);
    }
    // Two restarts: the first worker, and the one that ran the culprit alone.
    let restarted = wait_until(CALL_LIMIT, || {
        let stats = pool.stats();
        stats.restarts == 2 && stats.live == 2
    });
    assert!(restarted, "{:?}", pool.stats());
    assert_eq!(pool.stats().poison, 1);
    pool.close();
}

#[test]
fn confirming_a_poison_call_does_not_count_against_the_restart_limit() {
    // One restart is allowed: the first death takes it, the confirming one must not.
    let pool = pool()
        .size(1)
        .max_in_flight(4)
        .retries(1)
        .restart_limit(1, Duration::from_mins(1))
        .fork(serve)
        .unwrap();
    let culprit = pool.call_async::<u64>("abort_after", 20u64);
    let innocent: Vec<_> = (0..3)
        .map(|_| pool.call_async::<u64>("sleep", 10u64))
        .collect();
    assert_eq!(disconnected(culprit.wait()).0, Some(Blame::Poison));
    for call in innocent {
        assert_eq!(call.wait().unwrap(), 10);
    }
    assert!(wait_until(CALL_LIMIT, || pool.stats().restarts == 2));
    assert_eq!(
        pool.call::<u64>("sleep", 1u64).unwrap(),
        1,
        "the pool broke"
    );
    pool.close();
}

#[test]
#[cfg_attr(
    target_vendor = "apple",
    ignore = "macOS accepts RLIMIT_DATA but does not enforce it for mmap"
)]
fn a_job_past_the_memory_limit_fails_saying_so_and_the_pool_goes_on() {
    let limit = 256 * MIB;
    let pool = pool().size(1).memory_limit(limit).fork(serve).unwrap();
    assert_eq!(pool.call::<u64>("allocate", 64u64).unwrap(), 64 * 256);
    let (_, postmortem, text) = disconnected(pool.call::<u64>("allocate", 512u64));
    let reason = postmortem.and_then(|p| p.reason);
    assert_eq!(
        reason,
        Some(DeathReason::OutOfMemory {
            bytes: Some(512 * MIB),
            limit: Some(limit),
        }),
        "{text}"
    );
    assert!(
        text.contains("under its memory_limit of 268435456 bytes"),
        "{text}"
    );
    assert_eq!(pool.call::<u64>("allocate", 64u64).unwrap(), 64 * 256);
    pool.close();
}

#[test]
fn max_rss_recycles_a_leaking_worker_without_failing_a_call() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let pool = pool()
        .size(1)
        .max_rss(100 * MIB)
        .on_event(move |event| seen.lock().unwrap().push(event.clone()))
        .fork(serve)
        .unwrap();
    let mut pids = std::collections::HashSet::new();
    for _ in 0..12 {
        pids.insert(pool.call::<u32>("leak", 20u64).unwrap());
    }
    assert!(pids.len() >= 2, "never recycled: {pids:?}");
    let stats = pool.stats();
    assert_eq!((stats.restarts, stats.failures), (0, 0), "{stats:?}");
    let events = events.lock().unwrap();
    let retired = events.iter().find_map(|event| match event {
        PoolEvent::Retired {
            reason: Retirement::Rss { bytes },
            ..
        } => Some(*bytes),
        _ => None,
    });
    assert!(retired.is_some_and(|bytes| bytes > 100 * MIB), "{events:?}");
    drop(events);
    pool.close();
}

#[test]
fn a_worker_killed_by_coproq_or_by_someone_else_says_which() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let pool = pool()
        .size(1)
        .max_in_flight(2)
        .run_timeout(Duration::from_millis(300))
        .kill_on_timeout(true)
        .on_event(move |event| seen.lock().unwrap().push(event.clone()))
        .fork(serve)
        .unwrap();
    // coproq kills the worker that runs past its run_timeout; the call behind the hung
    // one learns why its worker died.
    let hung = pool.call_async::<()>("hang", ());
    let behind = pool.call_async::<u64>("sleep", 1u64);
    assert!(matches!(hung.wait(), Err(Error::Timeout { .. })));
    let (blame, postmortem, text) = disconnected(behind.wait());
    assert_eq!(blame, Some(Blame::Shared { others: 1 }), "{text}");
    let postmortem = postmortem.expect("a postmortem");
    assert_eq!(
        postmortem.reason,
        Some(DeathReason::KilledByCoproq),
        "{text}"
    );
    assert_eq!(postmortem.signal, Some("SIGKILL"));
    // A SIGKILL from someone else may be the kernel's out-of-memory killer.
    assert!(wait_until(CALL_LIMIT, || pool.stats().live == 1));
    let running = pool.call_async::<u64>("sleep", 5_000u64);
    std::thread::sleep(Duration::from_millis(100));
    let pid = pool.workers()[0].pid().unwrap();
    coproq_tests::signal(pid, libc::SIGKILL);
    let (_, postmortem, text) = disconnected(running.wait());
    let reason = postmortem.and_then(|p| p.reason);
    assert!(
        matches!(
            reason,
            Some(DeathReason::PossiblyOutOfMemory | DeathReason::OutOfMemoryKiller)
        ),
        "{text}"
    );
    assert!(
        text.contains("out-of-memory") || text.contains("out of memory"),
        "{text}"
    );
    // Both deaths reached the program's callback, after the starts.
    assert!(wait_until(CALL_LIMIT, || pool.stats().live == 1));
    let events = events.lock().unwrap();
    let started = events
        .iter()
        .filter(|e| matches!(e, PoolEvent::Started { seat: 0, .. }))
        .count();
    let died: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            PoolEvent::Died { postmortem, .. } => postmortem.as_ref().and_then(|p| p.reason),
            _ => None,
        })
        .collect();
    assert_eq!(started, 3, "{events:?}");
    assert_eq!(died.len(), 2, "{events:?}");
    assert_eq!(died[0], DeathReason::KilledByCoproq);
    drop(events);
    pool.close();
}

#[test]
fn a_single_link_quotes_the_stderr_tail_it_was_asked_for() {
    let worker = coproq::Builder::new()
        .stderr_tail(2)
        .startup_timeout(CALL_LIMIT)
        .fork(serve)
        .unwrap();
    let (blame, postmortem, text) =
        disconnected(coproq_tests::call::<u64>(&worker, "abort_after", 1u64));
    assert_eq!(blame, None);
    let postmortem = postmortem.expect("a postmortem");
    assert_eq!(postmortem.stderr_tail, ["giving up after 1 ms"], "{text}");
    assert!(
        text.contains("its stderr ended with:\n  | giving up after 1 ms"),
        "{text}"
    );
    // Without the option, the worker's stderr is its own: only the signal is known.
    let worker = coproq::Builder::new()
        .startup_timeout(CALL_LIMIT)
        .fork(serve)
        .unwrap();
    let (_, postmortem, _) = disconnected(coproq_tests::call::<u64>(&worker, "abort_after", 1u64));
    let postmortem = postmortem.expect("a postmortem");
    assert_eq!(postmortem.signal, Some("SIGABRT"));
    assert!(postmortem.stderr_tail.is_empty());
}

#[test]
fn a_worker_binary_whose_stack_overflows_says_so() {
    let worker = coproq::Builder::new()
        .stderr_tail(4)
        .startup_timeout(CALL_LIMIT)
        .spawn(std::process::Command::new(env!(
            "CARGO_BIN_EXE_echo_worker"
        )))
        .unwrap();
    let (_, postmortem, text) = disconnected(coproq_tests::call::<u64>(&worker, "overflow", 0u64));
    let reason = postmortem.and_then(|p| p.reason);
    assert_eq!(reason, Some(DeathReason::StackOverflow), "{text}");
    assert!(text.contains("its stack overflowed"), "{text}");
}
