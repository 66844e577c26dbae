//! Bulk data through sealed shared memory: a 256 MiB buffer goes to a worker and a
//! 64 MiB result comes back, each as one descriptor, never copied through the pipe.

use std::time::Instant;

use coproq::SharedBytes;

fn main() -> coproq::Result<()> {
    let worker = coproq::fork(|parent| {
        // Reads the parent's bytes in place: the mapping is read-only and sealed.
        parent.handle("sum", |data: SharedBytes| -> u64 {
            data.iter().map(|&b| u64::from(b)).sum()
        });
        // Answers with memory of its own, filled in place.
        parent.handle("pattern", |len: usize| {
            SharedBytes::filled(len, |bytes| {
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = (i % 251) as u8;
                }
            })
        });
    })?;

    let data = SharedBytes::filled(256 << 20, |bytes| bytes.fill(1));
    let start = Instant::now();
    let sum: u64 = worker.call("sum", &data)?;
    println!(
        "the worker summed 256 MiB in {:?} (shared: {})",
        start.elapsed(),
        data.is_shared()
    );
    assert_eq!(sum, 256 << 20);

    let start = Instant::now();
    let pattern: SharedBytes = worker.call("pattern", 64usize << 20)?;
    println!("a 64 MiB reply arrived in {:?}", start.elapsed());
    assert_eq!(pattern.len(), 64 << 20);
    assert!(
        pattern
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8)
    );

    worker.close();
    Ok(())
}
