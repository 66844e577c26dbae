//! A pool's life in the log: with the `tracing` feature, coproq reports worker starts and
//! deaths, restarts and their backoff, slow calls and every call (at `trace`) as `tracing`
//! events with the target `coproq`, to whatever subscriber the program installed.
//!
//! Run with `cargo run -p coproq-examples --features tracing --example tracing`
//! (`RUST_LOG=coproq=trace` shows every call).

use std::time::Duration;

fn main() -> coproq::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("coproq=debug"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let pool = coproq::Pool::builder().size(2).retries(1).fork(|parent| {
        parent.handle("square", |n: u64| n * n);
        parent.handle("slow", |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
        });
        parent.handle("crash", |()| -> () { std::process::abort() });
    })?;
    let squares: Vec<u64> = pool
        .map("square", 1..=4u64)
        .collect::<coproq::Result<_>>()?;
    println!("squares: {squares:?}");
    pool.call::<()>("slow", 150u64)?; // logged as a slow call
    // Its worker dies twice (the second time alone): a poison call, in the log with both
    // restarts.
    let crashed = pool.call::<()>("crash", ());
    println!(
        "crash: {}",
        crashed.map_or_else(|e| e.to_string(), |()| "ok?".into())
    );
    println!("{:?}", pool.stats());
    pool.close();
    Ok(())
}
