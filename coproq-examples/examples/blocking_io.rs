//! A worker whose handler blocks on I/O (a sleep stands in for a slow disk or a remote
//! service): with `concurrency(16)`, 16 callers are served at once instead of in turn.

use std::time::{Duration, Instant};

fn main() -> coproq::Result<()> {
    for concurrency in [1, 16] {
        let worker = coproq::Builder::new()
            .concurrency(concurrency)
            .fork(|parent| {
                parent.handle("read_block", |block: u64| {
                    std::thread::sleep(Duration::from_millis(50)); // the slow read
                    block * 4096
                });
            })?;
        let start = Instant::now();
        std::thread::scope(|scope| {
            let readers: Vec<_> = (0..16u64)
                .map(|block| {
                    let worker = &worker;
                    scope.spawn(move || worker.call::<u64>("read_block", block))
                })
                .collect();
            for reader in readers {
                reader.join().expect("a reader panicked")?;
            }
            Ok::<(), coproq::Error>(())
        })?;
        println!(
            "concurrency({concurrency}): 16 reads of 50 ms took {:?}",
            start.elapsed()
        );
        worker.close();
    }
    Ok(())
}
