//! The figures of concurrent serving: blocking handlers of one link running at once.

use std::time::{Duration, Instant};

use coproq::Coprocess;

use crate::sys;

/// A worker serving `n` calls at once, with a handler that sleeps and one that echoes.
fn worker(n: u32) -> coproq::Result<Coprocess> {
    coproq::Builder::new().concurrency(n).fork(|parent| {
        sys::pin_worker();
        parent
            .handle("echo", |x: u64| x)
            .handle("sleep_ms", |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
                ms
            });
    })
}

/// How long (µs) `threads` threads take when each calls `sleep_ms(50)` once, all at
/// once, through one link that serves `threads` calls at once (median of 5 rounds after
/// a warm-up).
pub(crate) fn sleepers(threads: u32) -> coproq::Result<f64> {
    let w = worker(threads)?;
    let round = || -> coproq::Result<Duration> {
        let start = Instant::now();
        std::thread::scope(|scope| {
            let calls: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| w.call::<u64>("sleep_ms", 50)))
                .collect();
            for call in calls {
                call.join().expect("a calling thread panicked")?;
            }
            Ok::<(), coproq::Error>(())
        })?;
        Ok(start.elapsed())
    };
    round()?;
    let mut rounds = (0..5)
        .map(|_| round())
        .collect::<coproq::Result<Vec<_>>>()?;
    rounds.sort();
    w.close();
    Ok(rounds[2].as_secs_f64() * 1e6)
}

/// Mean round trip (µs) of `calls` sequential small calls to a worker serving `n` at once.
pub(crate) fn latency(n: u32, calls: u32) -> coproq::Result<f64> {
    let w = worker(n)?;
    for i in 0..u64::from(calls.min(1000)) {
        w.call::<u64>("echo", i)?;
    }
    let start = Instant::now();
    for i in 0..u64::from(calls) {
        let back: u64 = w.call("echo", i)?;
        debug_assert_eq!(back, i);
    }
    let elapsed = start.elapsed();
    w.close();
    Ok(elapsed.as_secs_f64() * 1e6 / f64::from(calls))
}
