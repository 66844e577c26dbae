//! `fork` from a bench target (`harness = false`): start a worker, time a few thousand
//! sequential calls, close it. `cargo bench -p coproq-examples --bench fork_round_trip`.

use std::time::{Duration, Instant};

const CALLS: u64 = 5000;

fn main() -> coproq::Result<()> {
    let started = Instant::now();
    let worker = coproq::fork(|parent| {
        parent.handle("echo", |x: u64| x);
    })?;
    let first: u64 = worker
        .call_async("echo", 0u64)
        .wait_timeout(Duration::from_secs(30))?;
    let startup = started.elapsed();
    assert_eq!(first, 0);

    let started = Instant::now();
    for i in 0..CALLS {
        let back: u64 = worker.call("echo", i)?;
        assert_eq!(back, i);
    }
    let per_call = started.elapsed() / CALLS as u32;
    worker.close();
    println!("fork -> first reply: {startup:?}; sequential call: {per_call:?} per round trip");
    Ok(())
}
