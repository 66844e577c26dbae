//! A typed service with async methods on the worker's tokio runtime, called from async
//! code: many calls in flight from one task, a timeout, and a cancel that drops the
//! worker's future.

use std::time::{Duration, Instant};

/// A service whose methods await: on tokio's timers here, on sockets in a real one.
#[coproq::service]
pub trait Fetcher {
    /// Waits `ms` milliseconds, then returns `url` with how long it took.
    async fn fetch(&self, url: String, ms: u64) -> String;
    /// Blocking methods mix freely with async ones; the client cannot tell them apart.
    fn version(&self) -> String;
}

struct Worker;

impl Fetcher for Worker {
    async fn fetch(&self, url: String, ms: u64) -> String {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        format!("{url} after {:?}", start.elapsed())
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }
}

fn main() -> coproq::Result<()> {
    let worker = coproq::fork(|parent| {
        // The worker keeps its runtime; async methods run on it.
        parent.tokio_runtime(tokio::runtime::Runtime::new().expect("a tokio runtime"));
        parent.listen(FetcherServer::new(Worker));
    })?;
    let fetcher = FetcherClient::new(&worker);
    println!("worker version {}", fetcher.version()?);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        // 100 fetches of 50 ms each, all in flight at once: about 50 ms in all.
        let start = Instant::now();
        let pending: Vec<_> = (0..100)
            .map(|i| fetcher.fetch_async(format!("https://example.org/{i}"), 50))
            .collect();
        for p in pending {
            p.await?;
        }
        println!("100 fetches of 50 ms took {:?}", start.elapsed());

        // A timeout: tokio's drops the call's `Pending`, which cancels the call; the
        // worker drops its future at the sleep it waits in.
        let slow = fetcher.fetch_async("https://example.org/slow".into(), 10_000);
        match tokio::time::timeout(Duration::from_millis(100), slow).await {
            Ok(done) => println!("finished early: {done:?}"),
            Err(_) => println!("gave up on the slow fetch after 100 ms; the worker dropped it"),
        }
        Ok::<(), coproq::Error>(())
    })?;
    worker.close();
    Ok(())
}
