//! The pool's figures: scaling of CPU-bound jobs over cores, the cost of a pool of one
//! against a single link, and the time a killed worker takes to be replaced.

use std::time::{Duration, Instant};

use coproq::{Coprocess, Pool};

use crate::sys;

/// A worker's handlers: `echo`, and `spin(µs)`, a CPU-bound job of that length.
fn serve(parent: &Coprocess) {
    sys::pin_worker();
    parent
        .handle("echo", |x: u64| x)
        .handle("spin", |micros: u64| {
            let end = Instant::now() + Duration::from_micros(micros);
            let mut n = 0u64;
            while Instant::now() < end {
                n = n.wrapping_add(1);
            }
            n
        });
}

/// How many CPUs the pool spreads over.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// 2 ms CPU-bound jobs through a pool of `size` workers, `per_worker` each: jobs per
/// second, divided by `size` (per worker, so that a pool of N compares with one).
pub(crate) fn scaling(size: usize, per_worker: u32, spin: Option<Duration>) -> coproq::Result<f64> {
    let builder = Pool::builder().size(size);
    let builder = match spin {
        Some(budget) => builder.spin(budget),
        None => builder,
    };
    let pool = builder.fork(serve)?;
    let jobs = per_worker as usize * size;
    // Warm-up: every worker runs a job.
    for r in pool.map::<u64, _, _>("spin", vec![100u64; size * 2]) {
        r?;
    }
    let start = Instant::now();
    for r in pool.map::<u64, _, _>("spin", std::iter::repeat_n(2_000u64, jobs)) {
        r?;
    }
    let elapsed = start.elapsed();
    pool.close();
    Ok(jobs as f64 / elapsed.as_secs_f64() / size as f64)
}

/// Mean round trip of `n` sequential small calls through a pool of one.
pub(crate) fn latency(n: u32) -> coproq::Result<Duration> {
    let pool = Pool::builder().size(1).fork(serve)?;
    for i in 0..u64::from(n.min(1000)) {
        pool.call::<u64>("echo", i)?;
    }
    let start = Instant::now();
    for i in 0..u64::from(n) {
        let back: u64 = pool.call("echo", i)?;
        debug_assert_eq!(back, i);
    }
    let elapsed = start.elapsed();
    pool.close();
    Ok(elapsed / n)
}

/// Pipelined small calls through a pool of two: calls per second.
pub(crate) fn pipelined(n: u32) -> coproq::Result<f64> {
    let pool = Pool::builder().size(2).max_in_flight(64).fork(serve)?;
    let mut elapsed = Duration::ZERO;
    // The first burst warms up; the second is measured, as for the single link.
    for _ in 0..2 {
        let start = Instant::now();
        let pending: Vec<_> = (0..u64::from(n))
            .map(|i| pool.call_async::<u64>("echo", i))
            .collect();
        for p in pending {
            p.wait()?;
        }
        elapsed = start.elapsed();
    }
    pool.close();
    Ok(f64::from(n) / elapsed.as_secs_f64())
}

/// Median time from a worker's SIGKILL to its replacement answering a call.
pub(crate) fn recovery(rounds: u32) -> Result<Duration, String> {
    let pool = Pool::builder()
        .size(1)
        .restart_limit(rounds * 2, Duration::from_hours(1))
        .fork(serve)
        .map_err(|e| e.to_string())?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        pool.call::<u64>("echo", 1u64).map_err(|e| e.to_string())?;
        let pid = pool.workers()[0].pid().ok_or("no pid")?;
        let start = Instant::now();
        // SAFETY: signals a worker of this pool.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        loop {
            match pool.call::<u64>("echo", 2u64) {
                Ok(_) => break,
                // The call reached the dying worker: ask again.
                Err(coproq::Error::Disconnected { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("no replacement within 10 s".into());
            }
        }
        times.push(start.elapsed());
    }
    pool.close();
    times.sort();
    Ok(times[times.len() / 2])
}

/// Real jobs: 64 KiB of text compressed with flate2 each (the crash-isolation story's
/// good jobs), `jobs` of them through a pool over every core with its defaults: jobs per
/// second.
pub(crate) fn compress(jobs: u32) -> coproq::Result<f64> {
    let pool = Pool::builder().size(cores()).fork(|parent| {
        parent.handle("compress", coproq_tests::story::run);
    })?;
    let all = compress_jobs(jobs);
    for r in pool.map::<serde_bytes::ByteBuf, _, _>("compress", all[..cores() * 2].to_vec()) {
        r?;
    }
    let start = Instant::now();
    for r in pool.map::<serde_bytes::ByteBuf, _, _>("compress", all) {
        r?;
    }
    let elapsed = start.elapsed();
    pool.close();
    Ok(f64::from(jobs) / elapsed.as_secs_f64())
}

/// The compression jobs of [`compress`], for the peers too.
pub(crate) fn compress_jobs(jobs: u32) -> Vec<coproq_tests::story::Job> {
    (0..u64::from(jobs))
        .map(|seed| coproq_tests::story::Job::Compress {
            seed,
            len: 64 << 10,
        })
        .collect()
}

/// The same jobs on rayon's threads in this process (no isolation): jobs per second.
pub(crate) fn rayon_compress(jobs: u32) -> f64 {
    use rayon::prelude::*;
    let all = compress_jobs(jobs);
    let _: Vec<_> = all[..cores() * 2]
        .par_iter()
        .map(|job| coproq_tests::story::run(*job))
        .collect();
    let start = Instant::now();
    let out: Vec<_> = all
        .par_iter()
        .map(|job| coproq_tests::story::run(*job))
        .collect();
    let elapsed = start.elapsed();
    assert_eq!(out.len(), all.len());
    f64::from(jobs) / elapsed.as_secs_f64()
}
