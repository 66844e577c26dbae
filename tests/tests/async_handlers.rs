//! Async handlers (`handle_async`, `on_async`) against real workers: launched in order,
//! completing in any order, calling the peer back, cancelled by dropping their future,
//! panicking without harm, finishing before a graceful close; on coproq's own executor
//! and on a tokio runtime.

use std::time::{Duration, Instant};

use coproq::{Coprocess, Error};
use coproq_tests::{CALL_LIMIT, call, nap};

/// A worker whose async handlers need no runtime: they nap on `coproq_tests::nap`.
fn runtime_free_worker() -> Coprocess {
    coproq::fork(|parent| {
        let weak = parent.downgrade();
        parent
            .handle_async("nap", |ms: u64| async move {
                nap(Duration::from_millis(ms)).await;
                ms
            })
            .handle_async("ask_parent", move |n: u32| {
                let parent = weak.upgrade();
                async move {
                    let parent = parent.ok_or(Error::NotConnected)?;
                    // Awaited on the worker's executor; the serving thread reads the reply.
                    let doubled = parent.call_async::<u32>("double", n).await?;
                    Ok::<u32, Error>(doubled + 1)
                }
            })
            .handle_async("deadline_left", |(): ()| async move {
                coproq::deadline().map(|d| d.saturating_duration_since(Instant::now()))
            })
            .handle_async("panics_later", |(): ()| async move {
                nap(Duration::from_millis(1)).await;
                let fail = true;
                assert!(!fail, "async boom");
                0u32
            })
            .handle_async("panics_first", |(): ()| -> std::future::Ready<u32> {
                panic!("boom before the future")
            })
            .handle("sync_echo", |n: u32| n);
    })
    .expect("fork")
}

#[test]
fn async_calls_are_launched_in_order_and_complete_in_any_order() {
    let w = runtime_free_worker();
    let start = Instant::now();
    let slow = w.call_async::<u64>("nap", 2000u64);
    let fast = w.call_async::<u64>("nap", 1u64);
    // The slow one was launched first and does not hold up the fast one.
    assert_eq!(fast.wait_timeout(CALL_LIMIT).unwrap(), 1);
    let fast_took = start.elapsed();
    assert!(
        fast_took < Duration::from_millis(1500),
        "the 1 ms nap waited for the 2 s one: {fast_took:?}"
    );
    assert_eq!(slow.wait_timeout(CALL_LIMIT).unwrap(), 2000);
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[test]
fn many_async_calls_run_at_once_on_one_link() {
    let w = runtime_free_worker();
    let start = Instant::now();
    let pending: Vec<_> = (0..200)
        .map(|_| w.call_async::<u64>("nap", 50u64))
        .collect();
    for p in pending {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), 50);
    }
    // One after another they would take 10 s.
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "200 × 50 ms naps took {took:?}"
    );
}

#[test]
fn an_async_handler_calls_the_peer_back_while_the_link_serves_others() {
    let w = runtime_free_worker();
    w.handle("double", |n: u32| n * 2);
    let pending: Vec<_> = (0..100u32)
        .map(|n| w.call_async::<u32>("ask_parent", n))
        .collect();
    // A sync call goes by while async handlers wait for the parent.
    assert_eq!(call::<u32>(&w, "sync_echo", 7u32).unwrap(), 7);
    for (n, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), n as u32 * 2 + 1);
    }
}

#[test]
fn deadline_answers_for_the_async_call_being_polled() {
    let w = runtime_free_worker();
    let timed = coproq::Builder::new()
        .call_timeout(Duration::from_secs(20))
        .fork(|parent| {
            parent.handle_async("deadline_left", |(): ()| async move {
                coproq::deadline().map(|d| d.saturating_duration_since(Instant::now()))
            });
        })
        .expect("fork");
    let left: Option<Duration> = call(&timed, "deadline_left", ()).unwrap();
    let left = left.expect("the call has a deadline");
    assert!(
        left > Duration::from_secs(10) && left <= Duration::from_secs(20),
        "{left:?}"
    );
    let none: Option<Duration> = w.call_async("deadline_left", ()).wait().unwrap();
    drop(timed);
    assert_eq!(none, None);
}

#[test]
fn a_panic_in_an_async_handler_fails_only_its_call() {
    let w = runtime_free_worker();
    for method in ["panics_later", "panics_first"] {
        match call::<u32>(&w, method, ()) {
            Err(Error::Remote(e)) => assert!(e.message().contains("boom"), "{method}: {e}"),
            other => panic!("{method}: {other:?}"),
        }
    }
    assert_eq!(call::<u64>(&w, "nap", 1u64).unwrap(), 1);
    assert_eq!(call::<u32>(&w, "sync_echo", 3u32).unwrap(), 3);
}

/// A worker whose `hang` future never finishes on its own: it tells the parent when it
/// starts (event `started`) and when it is dropped (event `dropped`).
fn hanging_worker() -> Coprocess {
    coproq::fork(|parent| {
        let weak = parent.downgrade();
        parent.handle_async("hang", move |tag: u32| {
            let parent = weak.upgrade();
            async move {
                struct Tell(Option<Coprocess>, u32);
                impl Drop for Tell {
                    fn drop(&mut self) {
                        if let Some(parent) = self.0.take() {
                            let _ = parent.emit("dropped", self.1);
                        }
                    }
                }
                if let Some(parent) = &parent {
                    let _ = parent.emit("started", tag);
                }
                let _tell = Tell(parent, tag);
                std::future::pending::<u32>().await
            }
        });
    })
    .expect("fork")
}

/// The tags of event `name` from `w`, each received with a deadline.
struct Tags(std::sync::mpsc::Receiver<u32>);

impl Tags {
    fn of(w: &Coprocess, name: &str) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        w.on(name, move |tag: u32| {
            let _ = tx.lock().unwrap().send(tag);
        });
        Self(rx)
    }

    fn next(&self) -> u32 {
        self.0
            .recv_timeout(CALL_LIMIT)
            .expect("the event came in time")
    }
}

#[test]
fn cancelling_an_async_call_drops_its_future() {
    let w = hanging_worker();
    let (started, dropped) = (Tags::of(&w, "started"), Tags::of(&w, "dropped"));
    let mut pending = w.call_async::<u32>("hang", 1u32);
    assert_eq!(started.next(), 1);
    pending.cancel();
    assert_eq!(dropped.next(), 1);
    // Dropping the `Pending` cancels too; so does a deadline that passes.
    let pending = w.call_async::<u32>("hang", 2u32);
    assert_eq!(started.next(), 2);
    drop(pending);
    assert_eq!(dropped.next(), 2);
    let timed = w
        .call_async::<u32>("hang", 3u32)
        .wait_timeout(Duration::from_millis(300));
    assert!(matches!(timed, Err(Error::Timeout { .. })), "{timed:?}");
    assert_eq!(started.next(), 3);
    assert_eq!(dropped.next(), 3);
}

#[test]
fn close_lets_async_calls_in_flight_finish_and_answer() {
    let w = runtime_free_worker();
    let pending: Vec<_> = (0..20u64)
        .map(|i| w.call_async::<u64>("nap", 100 + i * 10))
        .collect();
    // Launched before the goodbye (a sync call after them confirms it).
    assert_eq!(call::<u32>(&w, "sync_echo", 0u32).unwrap(), 0);
    let status = w.close().expect("the worker exited");
    assert!(status.success(), "{status}");
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), 100 + i as u64 * 10);
    }
}

#[test]
fn async_listeners_start_in_order_and_may_finish_in_any_order() {
    let w = coproq::fork(|parent| {
        let weak = parent.downgrade();
        parent.on_async("greet", move |(n, ms): (u32, u64)| {
            let parent = weak.upgrade();
            async move {
                if let Some(parent) = &parent {
                    let _ = parent.emit("started", n);
                }
                nap(Duration::from_millis(ms)).await;
                if let Some(parent) = parent {
                    let _ = parent.emit("finished", n);
                }
            }
        });
    })
    .expect("fork");
    let (tx, rx) = std::sync::mpsc::channel::<(bool, u32)>();
    let started = std::sync::Mutex::new(tx.clone());
    let finished = std::sync::Mutex::new(tx);
    w.on("started", move |n: u32| {
        let _ = started.lock().unwrap().send((true, n));
    });
    w.on("finished", move |n: u32| {
        let _ = finished.lock().unwrap().send((false, n));
    });
    w.emit("greet", (0u32, 300u64)).unwrap();
    w.emit("greet", (1u32, 1u64)).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(rx.recv_timeout(CALL_LIMIT).expect("an event in time"));
    }
    let begun: Vec<u32> = seen.iter().filter(|e| e.0).map(|e| e.1).collect();
    let ended: Vec<u32> = seen.iter().filter(|e| !e.0).map(|e| e.1).collect();
    assert_eq!(begun, [0, 1], "{seen:?}");
    assert_eq!(ended, [1, 0], "{seen:?}");
}

#[test]
fn async_handlers_run_on_a_tokio_runtime_handed_over() {
    let w = coproq::fork(|parent| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("a tokio runtime");
        parent.tokio_runtime(runtime);
        parent.handle_async("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ms
        });
    })
    .expect("fork");
    let start = Instant::now();
    let pending: Vec<_> = (0..500)
        .map(|_| w.call_async::<u64>("sleep", 50u64))
        .collect();
    for p in pending {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), 50);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "500 × 50 ms sleeps took {took:?}"
    );
}

#[test]
fn a_future_that_needs_tokio_without_a_runtime_fails_its_call_only() {
    let w = coproq::fork(|parent| {
        parent.handle_async("sleep", |ms: u64| async move {
            // No runtime was handed over: tokio's timer panics when polled.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ms
        });
        parent.handle("echo", |n: u32| n);
    })
    .expect("fork");
    match call::<u64>(&w, "sleep", 1u64) {
        Err(Error::Remote(e)) => assert!(e.message().contains("panicked"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(call::<u32>(&w, "echo", 5u32).unwrap(), 5);
}

#[test]
fn a_typed_service_mixing_sync_and_async_methods_is_called_alike() {
    use coproq_tests::services::{CalcError, MixedClient, MixedServer, MixedWorker};
    let w = coproq::fork(|parent| {
        parent.listen(MixedServer::new(MixedWorker {
            parent: parent.downgrade(),
        }));
    })
    .expect("fork");
    w.handle("double", |n: u64| n * 2);
    let noted = Tags::of(&w, "noted");
    let client = MixedClient::new(&w);
    // From blocking code.
    assert_eq!(client.add(2, 3).unwrap(), 5);
    assert_eq!(client.nap(5).unwrap(), 5);
    assert_eq!(client.parse("42").unwrap(), Ok(42));
    assert_eq!(client.parse("x").unwrap(), Err(CalcError::DivisionByZero));
    assert_eq!(client.ask(21).unwrap(), 42);
    client.note(7).unwrap();
    assert_eq!(noted.next(), 7);
    // From async code, many at once: the naps overlap.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let start = Instant::now();
    let sums = runtime.block_on(async {
        let naps: Vec<_> = (0..50).map(|_| client.nap_async(100)).collect();
        let added = client.add_async(1, 1).await.unwrap();
        let mut total = added;
        for nap in naps {
            total += tokio::time::timeout(CALL_LIMIT, nap)
                .await
                .unwrap()
                .unwrap();
        }
        total
    });
    assert_eq!(sums, 2 + 50 * 100);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "50 × 100 ms naps took {took:?}"
    );
}

/// Whether the worker's gate is open, and the futures waiting for it.
static GATE: std::sync::Mutex<(bool, Vec<std::task::Waker>)> =
    std::sync::Mutex::new((false, Vec::new()));

/// A future ready once the gate opens.
struct Gate;

impl std::future::Future for Gate {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let mut gate = GATE.lock().unwrap();
        if gate.0 {
            std::task::Poll::Ready(())
        } else {
            gate.1.push(cx.waker().clone());
            std::task::Poll::Pending
        }
    }
}

#[test]
fn a_hundred_thousand_async_calls_in_flight_hold_memory_bounded() {
    const CALLS: u64 = 100_000;
    let w = coproq::fork(|parent| {
        parent
            .handle("peak_rss_kib", |(): ()| coproq_tests::peak_rss_kib())
            .handle_async("park", |n: u64| async move {
                Gate.await;
                n
            })
            .on("open", |(): ()| {
                let wakers = {
                    let mut gate = GATE.lock().unwrap();
                    gate.0 = true;
                    std::mem::take(&mut gate.1)
                };
                for waker in wakers {
                    waker.wake();
                }
            });
    })
    .expect("fork");
    let before: u64 = call(&w, "peak_rss_kib", ()).unwrap();
    let pending: Vec<_> = (0..CALLS).map(|n| w.call_async::<u64>("park", n)).collect();
    // A blocking call behind them: every one of them has started and waits.
    let during: u64 = call(&w, "peak_rss_kib", ()).unwrap();
    w.emit("open", ()).unwrap();
    for (n, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), n as u64);
    }
    let grown = during.saturating_sub(before);
    eprintln!("{CALLS} async calls in flight: the worker grew {grown} KiB");
    // Under a kilobyte a call (about 340 bytes measured): each future, its task, its
    // waker and its arguments; nothing else grows with the calls in flight.
    assert!(grown < 100 * 1024, "the worker grew {grown} KiB");
}
