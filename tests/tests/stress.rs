//! Tests for the link under concurrency: many threads mixing blocking calls, pipelined
//! calls, deadlines that expire, futures, events and callbacks from the worker, all at
//! once on one link. Every result is checked, and the whole runs under a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use coproq::{Coprocess, Error, Reply};
use coproq_tests::{CALL_LIMIT, call, within};

static NOTES: AtomicU64 = AtomicU64::new(0);

fn worker() -> Coprocess {
    Coprocess::builder()
        .handle("double", |x: u64| x * 2)
        .on("note", |_: u64| {
            NOTES.fetch_add(1, Ordering::Relaxed);
        })
        .fork(|parent| {
            let p = parent.downgrade();
            let events = Arc::new(AtomicU64::new(0));
            let seen = Arc::clone(&events);
            parent
                .handle("echo", |x: u64| x)
                .handle("slow", |ms: u64| {
                    std::thread::sleep(Duration::from_millis(ms));
                    ms
                })
                .handle_deferred("later", |x: u64, reply: Reply<u64>| {
                    std::thread::spawn(move || reply.send(x + 1));
                })
                .handle("via_parent", move |x: u64| -> coproq::Result<u64> {
                    let p = p.upgrade().ok_or(Error::NotConnected)?;
                    p.emit("note", x)?;
                    p.call::<u64>("double", x)
                })
                .on("tick", move |_: u64| {
                    seen.fetch_add(1, Ordering::Relaxed);
                })
                .handle("ticks", move |(): ()| events.load(Ordering::Relaxed));
        })
        .unwrap()
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `futures` to completion on this thread, with a deadline.
fn block_on_all(mut futures: Vec<coproq::Pending<u64>>) -> Vec<coproq::Result<u64>> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut results: Vec<Option<coproq::Result<u64>>> = futures.iter().map(|_| None).collect();
    let deadline = std::time::Instant::now() + CALL_LIMIT;
    while results.iter().any(Option::is_none) {
        for (future, result) in futures.iter_mut().zip(&mut results) {
            if result.is_none()
                && let Poll::Ready(r) = std::pin::Pin::new(&mut *future).poll(&mut cx)
            {
                *result = Some(r);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "futures never completed"
        );
        std::thread::park_timeout(Duration::from_millis(10));
    }
    results.into_iter().map(Option::unwrap).collect()
}

#[test]
fn many_threads_mix_every_kind_of_traffic_on_one_link() {
    let w = worker();
    let w2 = w.clone();
    within(Duration::from_mins(2), move || {
        let w = w2;
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for round in 0..50u64 {
                        let base = t * 1_000_000 + round * 1000;
                        match (t + round) % 6 {
                            0 => {
                                for i in 0..20 {
                                    assert_eq!(
                                        call::<u64>(&w, "echo", base + i).unwrap(),
                                        base + i
                                    );
                                }
                            }
                            1 => {
                                let pending: Vec<_> = (0..200)
                                    .map(|i| w.call_async::<u64>("echo", base + i))
                                    .collect();
                                for (i, p) in (0..).zip(pending) {
                                    assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), base + i);
                                }
                            }
                            2 => {
                                // A deadline that expires, then the link is fine.
                                let err = w
                                    .call_async::<u64>("slow", 30u64)
                                    .wait_timeout(Duration::from_millis(1));
                                assert!(
                                    matches!(err, Err(Error::Timeout { .. }) | Ok(30)),
                                    "{err:?}"
                                );
                                assert_eq!(call::<u64>(&w, "later", base).unwrap(), base + 1);
                            }
                            3 => {
                                let futures = (0..20)
                                    .map(|i| w.call_async::<u64>("echo", base + i))
                                    .collect();
                                for (i, r) in (0..).zip(block_on_all(futures)) {
                                    assert_eq!(r.unwrap(), base + i);
                                }
                            }
                            4 => {
                                for i in 0..100u64 {
                                    w.emit("tick", i).unwrap();
                                }
                            }
                            _ => {
                                assert_eq!(call::<u64>(&w, "via_parent", base).unwrap(), base * 2);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Each thread emitted 100 ticks in the rounds where (t + round) % 6 == 4.
        let expected: u64 = (0..8u64)
            .map(|t| (0..50u64).filter(|r| (t + r) % 6 == 4).count() as u64 * 100)
            .sum();
        assert_eq!(call::<u64>(&w, "ticks", ()).unwrap(), expected);
    });
    assert!(NOTES.load(Ordering::Relaxed) > 0);
    assert!(w.close().is_some_and(|s| s.success()));
}

#[test]
fn a_worker_killed_under_load_fails_every_call_exactly_once() {
    let w = worker();
    let pid = w.pid().unwrap();
    let w2 = w.clone();
    let outcomes = within(Duration::from_mins(1), move || {
        let w = w2;
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut failed) = (0u64, 0u64);
                    for i in 0..20_000u64 {
                        match w
                            .call_async::<u64>("echo", t * 100_000 + i)
                            .wait_timeout(CALL_LIMIT)
                        {
                            Ok(v) => {
                                assert_eq!(v, t * 100_000 + i);
                                ok += 1;
                            }
                            Err(Error::Disconnected { .. } | Error::NotConnected) => failed += 1,
                            Err(e) => panic!("unexpected error: {e:?}"),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        coproq_tests::signal(pid, libc::SIGKILL);
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (ok, failed) in outcomes {
        assert_eq!(ok + failed, 20_000, "every call ends exactly once");
        assert!(
            failed > 0,
            "the kill landed after all calls: lengthen the run"
        );
    }
    assert!(w.close().is_some());
}
