//! The async figures: async handlers against blocking ones on one link, and many async
//! calls at once from tokio tasks to a worker whose handlers await tokio timers.

use std::time::{Duration, Instant};

use coproq::Coprocess;

use crate::sys;

/// A worker whose `echo` is blocking, `echo_async` an async handler ready at once, and
/// `sleep_async` an async handler that sleeps on the worker's tokio runtime.
fn worker() -> coproq::Result<Coprocess> {
    coproq::fork(|parent| {
        sys::pin_worker();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("a tokio runtime");
        parent
            .tokio_runtime(runtime)
            .handle("cpu", |(): ()| sys::cpu_micros())
            .handle("echo", |x: u64| x)
            .handle_async("echo_async", |x: u64| async move { x })
            .handle_async("sleep_async", |ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ms
            });
    })
}

/// Mean round trip (µs) of `n` sequential calls of `method`, after a warm-up.
pub(crate) fn latency(method: &str, n: u32) -> coproq::Result<f64> {
    let w = worker()?;
    for i in 0..u64::from(n.min(1000)) {
        w.call::<u64>(method, i)?;
    }
    let start = Instant::now();
    for i in 0..u64::from(n) {
        let back: u64 = w.call(method, i)?;
        debug_assert_eq!(back, i);
    }
    let elapsed = start.elapsed();
    w.close();
    Ok(elapsed.as_secs_f64() * 1e6 / f64::from(n))
}

/// Calls of `method` per second, `n` pipelined from one thread with `call_async`.
pub(crate) fn pipelined(method: &str, n: u32) -> coproq::Result<f64> {
    let w = worker()?;
    let mut rate = 0.0;
    // The first burst warms memory up; the second is measured.
    for _ in 0..2 {
        let start = Instant::now();
        let pending: Vec<_> = (0..u64::from(n))
            .map(|i| w.call_async::<u64>(method, i))
            .collect();
        for p in pending {
            p.wait()?;
        }
        rate = f64::from(n) / start.elapsed().as_secs_f64();
    }
    w.close();
    Ok(rate)
}

/// `tasks` tokio tasks of a current-thread runtime each call `sleep_async(50)` once, all
/// at once: how long (µs) until every call answered, and the longest the runtime's thread
/// went without running a ticker that wakes every millisecond (µs).
pub(crate) fn fanout(tasks: u32) -> Result<(f64, f64), String> {
    let w = worker().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let round = |w: &Coprocess| {
        runtime.block_on(async {
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let ticker = {
                let done = std::sync::Arc::clone(&done);
                tokio::spawn(async move {
                    let mut worst = Duration::ZERO;
                    let mut last = Instant::now();
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let now = Instant::now();
                        worst = worst.max(now - last);
                        last = now;
                    }
                    worst
                })
            };
            let start = Instant::now();
            let calls: Vec<_> = (0..tasks)
                .map(|_| {
                    let w = w.clone();
                    tokio::spawn(async move {
                        w.ready().await;
                        w.call_async::<u64>("sleep_async", 50).await
                    })
                })
                .collect();
            for call in calls {
                match call.await {
                    Ok(Ok(50)) => {}
                    Ok(Ok(other)) => panic!("slept {other} ms, not 50"),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(e) => panic!("a calling task failed: {e}"),
                }
            }
            let took = start.elapsed();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let worst = ticker.await.unwrap_or(Duration::MAX);
            Ok((took, worst))
        })
    };
    // The first round warms up both runtimes and the link; the second is measured.
    round(&w)?;
    let (took, worst) = round(&w)?;
    w.close();
    Ok((took.as_secs_f64() * 1e6, worst.as_secs_f64() * 1e6))
}
