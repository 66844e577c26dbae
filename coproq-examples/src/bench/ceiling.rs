//! What this machine allows at most, measured without coproq or a pipe: blocking round
//! trips from many threads to a server thread in the same process that does no work and
//! never sleeps. A caller waits either parked, woken by the server (as a blocked coproq
//! caller is woken by whoever reads its reply), or yielding its CPU in a loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Thread};
use std::time::Instant;

/// How a caller waits for its answer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Parked until the server unparks it.
    Park,
    /// Yielding its CPU until the answer is there.
    Yield,
}

/// One caller's waiting place.
struct Caller {
    answered: AtomicBool,
    thread: Thread,
}

/// Round trips per second, `n` in all, from `threads` threads.
pub(crate) fn threads(threads: u32, n: u32, wait: Wait) -> f64 {
    let asked: Mutex<Vec<Arc<Caller>>> = Mutex::new(Vec::new());
    let running = AtomicBool::new(true);
    let per_thread = n / threads;
    let start = Instant::now();
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut batch = Vec::new();
            while running.load(Ordering::Relaxed) {
                std::mem::swap(
                    &mut batch,
                    &mut *asked.lock().unwrap_or_else(PoisonError::into_inner),
                );
                for caller in batch.drain(..) {
                    caller.answered.store(true, Ordering::Release);
                    caller.thread.unpark();
                }
                std::hint::spin_loop();
            }
        });
        let callers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let me = Arc::new(Caller {
                        answered: AtomicBool::new(false),
                        thread: thread::current(),
                    });
                    for _ in 0..per_thread {
                        asked
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Arc::clone(&me));
                        while !me.answered.swap(false, Ordering::Acquire) {
                            match wait {
                                Wait::Park => thread::park(),
                                Wait::Yield => thread::yield_now(),
                            }
                        }
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().expect("caller thread");
        }
        running.store(false, Ordering::Relaxed);
    });
    f64::from(per_thread * threads) / start.elapsed().as_secs_f64()
}
