//! Crash isolation on real work: 193 compression jobs through a pool of 4, with 5 poison
//! jobs mixed in (abort, a null write, a 64 GiB allocation, a stack overflow, `exit(3)`),
//! one that panics and one that hangs.
//!
//! The settings are the pool's crash-isolation recipe: `retries(1)` (a dead worker's
//! calls run again, each alone, until the culprit is found), `run_timeout` with
//! `kill_on_timeout` (a hung job costs its worker, never a queued one) and a
//! `memory_limit` (an allocation past it fails). Every good job succeeds, each bad one
//! fails with its own cause, and the pool stays whole. Run with
//! `cargo run -p coproq-examples --example pool`.

use std::time::{Duration, Instant};

use coproq_tests::story::{self, Job};

fn main() -> coproq::Result<()> {
    let pool = coproq::Pool::builder()
        .size(4)
        .retries(1)
        .run_timeout(Duration::from_secs(2))
        .kill_on_timeout(true)
        .memory_limit(2 << 30)
        .on_event(|event| {
            if let coproq::PoolEvent::Died { seat, status, .. } = event {
                let status = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                println!("  [pool] worker {seat} died ({status}); replacing it");
            }
        })
        .fork(|parent| {
            parent.handle("compress", story::run);
        })?;

    let jobs = story::jobs(193, 64 << 10);
    let started = Instant::now();
    let mut good = 0;
    for (index, result) in
        pool.map_unordered::<serde_bytes::ByteBuf, _, _>("compress", jobs.clone())
    {
        match (jobs[index], result) {
            (Job::Compress { seed, len }, Ok(bytes)) => {
                assert!(story::is_right(seed, len, &bytes), "job {seed} is wrong");
                good += 1;
            }
            (job, Ok(_)) => println!("{job:?}: succeeded?"),
            (job, Err(e)) => println!("{job:?}: {e}"),
        }
    }
    let took = started.elapsed();
    println!("{good} of 193 good jobs done in {took:.2?}");
    println!("{:?}", pool.stats());
    pool.close();
    Ok(())
}
