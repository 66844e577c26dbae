//! The pool's crash-isolation story: real compression jobs with a few poison ones mixed
//! in (each kills its worker its own way), one that panics and one that hangs. The test
//! `pool_story.rs` and the example `pool` run it.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// One job for the pool's `compress` handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Job {
    /// Compress `len` bytes of text made from `seed`: a good job.
    Compress { seed: u64, len: usize },
    /// `abort()`: SIGABRT.
    Abort,
    /// A write through a null pointer: SIGSEGV.
    NullWrite,
    /// A 64 GiB allocation: out of memory.
    HugeAllocation,
    /// Unbounded recursion: a stack overflow.
    StackOverflow,
    /// `exit(3)`.
    Exit3,
    /// A panic, which the worker survives.
    Panic,
    /// An endless loop.
    Hang,
}

/// The size of the allocation of [`Job::HugeAllocation`].
pub const HUGE: usize = 64 << 30;

impl Job {
    /// Whether the job kills its worker.
    #[must_use]
    pub fn is_poison(self) -> bool {
        !matches!(self, Self::Compress { .. } | Self::Panic | Self::Hang)
    }
}

/// `count` good jobs of `len` bytes each, with the five poison jobs, the panic and the
/// hang spread among them.
#[must_use]
pub fn jobs(count: usize, len: usize) -> Vec<Job> {
    let bad = [
        Job::Abort,
        Job::NullWrite,
        Job::HugeAllocation,
        Job::StackOverflow,
        Job::Exit3,
        Job::Panic,
        Job::Hang,
    ];
    let mut jobs: Vec<Job> = (0..count as u64)
        .map(|seed| Job::Compress { seed, len })
        .collect();
    let step = count / bad.len();
    for (k, job) in bad.into_iter().enumerate() {
        jobs.insert(k * (step + 1) + step / 2, job);
    }
    jobs
}

/// Text-like bytes from `seed`: words from a small vocabulary, so that they compress.
#[must_use]
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "pool", "worker", "crash", "blame", "job", "pipe", "frame", "call",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % 8) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

/// What the worker does with `job`: the compressed text, or its way of dying.
///
/// # Panics
///
/// For [`Job::Panic`], on purpose.
#[must_use]
pub fn run(job: Job) -> serde_bytes::ByteBuf {
    match job {
        Job::Compress { seed, len } => {
            let mut encoder =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(&text(seed, len))
                .expect("writes to memory");
            serde_bytes::ByteBuf::from(encoder.finish().expect("writes to memory"))
        }
        Job::Abort => std::process::abort(),
        Job::NullWrite => {
            // SAFETY: none; this crashes the worker on purpose (SIGSEGV).
            unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
            unreachable!("the write crashed the worker")
        }
        Job::HugeAllocation => {
            let huge = vec![1u8; HUGE];
            serde_bytes::ByteBuf::from(vec![huge[HUGE - 1]])
        }
        Job::StackOverflow => {
            fn deeper(n: u64) -> u64 {
                if std::hint::black_box(n) == u64::MAX {
                    return 0;
                }
                let frame = [n; 64];
                std::hint::black_box(&frame);
                deeper(n + 1) + std::hint::black_box(frame[3])
            }
            serde_bytes::ByteBuf::from(deeper(0).to_le_bytes().to_vec())
        }
        Job::Exit3 => std::process::exit(3),
        Job::Panic => panic!("job refused"),
        Job::Hang => loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
        },
    }
}

/// Whether `compressed` is the job's text, compressed.
#[must_use]
pub fn is_right(seed: u64, len: usize, compressed: &[u8]) -> bool {
    let mut decoded = Vec::new();
    flate2::read::DeflateDecoder::new(compressed)
        .read_to_end(&mut decoded)
        .is_ok()
        && decoded == text(seed, len)
}
