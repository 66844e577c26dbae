//! Bulk data and descriptors: `SharedBytes` against `Vec<u8>`, per-call time across
//! sizes, and descriptors passed in a loop.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coproq::{Coprocess, Fd, SharedBytes};

use crate::sys;

/// The sum of the last buffer the worker was handed.
static SUM: AtomicU64 = AtomicU64::new(0);

fn worker() -> coproq::Result<Coprocess> {
    Coprocess::builder().fork(|parent| {
        sys::pin_worker();
        parent
            .handle("sum_echo_vec", |data: Vec<u8>| {
                SUM.store(sum(&data), Ordering::Relaxed);
                data
            })
            .handle("sum_echo_shared", |data: SharedBytes| {
                SUM.store(sum(&data), Ordering::Relaxed);
                data
            })
            .handle("sum", |(): ()| SUM.load(Ordering::Relaxed))
            .handle("len", |data: SharedBytes| data.len())
            .handle("hand_back", |fds: Vec<Fd>| fds)
            .handle("open_fds", |(): ()| open_fds());
    })
}

/// The sum of `data`'s bytes, at memory speed (each chunk's sum fits a `u32`).
fn sum(data: &[u8]) -> u64 {
    data.chunks(1 << 16)
        .map(|chunk| u64::from(chunk.iter().map(|&b| u32::from(b)).sum::<u32>()))
        .sum()
}

/// The descriptors this process holds.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// How the bulk figure carries its bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Carrier {
    /// A `Vec<u8>`, through the pipe.
    Vec,
    /// `SharedBytes`, as a descriptor.
    Shared,
}

/// Bytes per second (both ways counted) handing `size` bytes to a worker that sums them
/// and hands them back, `n` times; the sum is checked once at the end.
pub(crate) fn sum_echo(size: usize, n: u32, carrier: Carrier) -> coproq::Result<f64> {
    let w = worker()?;
    let elapsed = match carrier {
        Carrier::Vec => {
            let mut data = w.call::<Vec<u8>>("sum_echo_vec", vec![1u8; size])?;
            let start = Instant::now();
            for _ in 0..n {
                data = w.call("sum_echo_vec", data)?;
            }
            start.elapsed()
        }
        Carrier::Shared => {
            let made = SharedBytes::filled(size, |bytes| bytes.fill(1));
            let mut data: SharedBytes = w.call("sum_echo_shared", &made)?;
            let start = Instant::now();
            for _ in 0..n {
                data = w.call("sum_echo_shared", &data)?;
            }
            start.elapsed()
        }
    };
    let sum: u64 = w.call("sum", ())?;
    assert_eq!(sum, size as u64, "the worker summed what it was handed");
    w.close();
    Ok(2.0 * size as f64 * f64::from(n) / elapsed.as_secs_f64())
}

/// The time of one call that hands over `size` bytes of `SharedBytes` (the worker reads
/// only its length): the mean over `n`.
pub(crate) fn handover(size: usize, n: u32) -> coproq::Result<Duration> {
    let w = worker()?;
    let data = SharedBytes::filled(size, |bytes| bytes.fill(1));
    assert_eq!(w.call::<usize>("len", &data)?, size);
    let start = Instant::now();
    for _ in 0..n {
        w.call::<usize>("len", &data)?;
    }
    let elapsed = start.elapsed();
    w.close();
    Ok(elapsed / n)
}

/// Descriptors per second, handed to a worker 10 at a time and handed back, `n` in all;
/// an error if either side holds more descriptors afterwards than before.
pub(crate) fn descriptors(n: u32) -> Result<f64, String> {
    let w = worker().map_err(|e| e.to_string())?;
    let file = File::open("/dev/null").map_err(|e| e.to_string())?;
    let fds = || -> Result<Vec<Fd>, String> {
        (0..10)
            .map(|_| file.try_clone().map(Fd::from).map_err(|e| e.to_string()))
            .collect()
    };
    let call = |fds: Vec<Fd>| {
        w.call::<Vec<Fd>>("hand_back", fds)
            .map_err(|e| e.to_string())
    };
    drop(call(fds()?)?);
    let before = (
        open_fds(),
        w.call::<usize>("open_fds", ()).map_err(|e| e.to_string())?,
    );
    let start = Instant::now();
    for _ in 0..n / 10 {
        drop(call(fds()?)?);
    }
    let elapsed = start.elapsed();
    let after = (
        open_fds(),
        w.call::<usize>("open_fds", ()).map_err(|e| e.to_string())?,
    );
    w.close();
    if after != before {
        return Err(format!(
            "descriptors leaked: (parent, worker) held {before:?} before and {after:?} after"
        ));
    }
    Ok(f64::from(n / 10 * 10) / elapsed.as_secs_f64())
}
