//! CPU-bound jobs spread over every core, with one job that crashes its worker.
//!
//! The pool fails only the crashed worker's call, replaces the worker in the background,
//! and keeps serving; `stats()` shows the restart. Run with
//! `cargo run -p coproq-examples --example pool`.

use std::time::{Duration, Instant};

/// A CPU-bound job: the number of primes below `n`.
fn count_primes(n: u64) -> u64 {
    (2..n)
        .filter(|&k| (2..=k.isqrt()).all(|d| k % d != 0))
        .count() as u64
}

fn main() -> coproq::Result<()> {
    let pool = coproq::Pool::builder()
        // Long jobs: one at a time per worker, so a crash takes only its own job along.
        .max_in_flight(1)
        .call_timeout(Duration::from_secs(30))
        .kill_on_timeout(true)
        .restart_limit(5, Duration::from_secs(60))
        .fork(|parent| {
            parent.handle("primes_below", |n: u64| {
                if n == 0 {
                    // A bug in native code: a write through a null pointer.
                    // SAFETY: none; this crashes the worker on purpose (SIGSEGV).
                    unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
                }
                count_primes(n)
            });
        })?;
    println!("{} workers, one per core", pool.stats().size);

    // Job 7 is the poisoned one.
    let jobs: Vec<u64> = (0..32)
        .map(|i| if i == 7 { 0 } else { 150_000 + i })
        .collect();
    let started = Instant::now();
    let results: Vec<coproq::Result<u64>> = pool.map("primes_below", jobs.clone()).collect();
    let took = started.elapsed();

    for (n, result) in jobs.iter().zip(&results) {
        match result {
            Ok(count) => println!("primes below {n}: {count}"),
            Err(e) => println!("primes below {n}: failed: {e}"),
        }
    }
    let ok = results.iter().filter(|r| r.is_ok()).count();
    println!("{ok} of {} jobs done in {took:.2?}", jobs.len());

    // The crashed worker has been replaced: the pool is whole again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().live < pool.stats().size && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let answer: u64 = pool.call("primes_below", 100u64)?;
    println!("after the crash: primes below 100 = {answer}");
    println!("{:?}", pool.stats());
    pool.close();
    Ok(())
}
