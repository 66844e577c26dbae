//! The same figures through coproq: a fork worker with echo, bytes and event handlers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coproq::Coprocess;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::{ByteBuf, Bytes};

use crate::sys;

/// The typed twin of the dynamic `echo` handler, for typed-vs-dynamic.
#[coproq::service]
pub(crate) trait Echo {
    /// Returns `x`.
    fn typed_echo(&self, x: u64) -> u64;
    /// Returns `data`.
    fn typed_bytes(&self, data: Vec<u8>) -> Vec<u8>;
    /// Returns `Ok(data)`.
    fn typed_result_bytes(&self, data: Vec<u8>) -> Result<Vec<u8>, String>;
}

struct Echoer;

impl Echo for Echoer {
    fn typed_echo(&self, x: u64) -> u64 {
        x
    }
    fn typed_bytes(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
    fn typed_result_bytes(&self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(data)
    }
}

static EVENTS: AtomicU64 = AtomicU64::new(0);

/// The worker's replies to `hold` calls, never sent.
static HELD: Mutex<Vec<coproq::Reply<u64>>> = Mutex::new(Vec::new());

fn worker() -> coproq::Result<Coprocess> {
    worker_spinning(None)
}

/// The worker, with the spin budget `spin` on both ends (the default if `None`).
fn worker_spinning(spin: Option<Duration>) -> coproq::Result<Coprocess> {
    let builder = Coprocess::builder();
    let builder = match spin {
        Some(budget) => builder.spin(budget),
        None => builder,
    };
    builder.fork(|parent| {
        sys::pin_worker();
        parent
            .handle("echo", |x: u64| x)
            .handle("cpu", |(): ()| sys::cpu_micros())
            .handle("sleep_ms", |ms: u64| {
                std::thread::sleep(Duration::from_millis(ms));
            })
            .handle("echo_many", |xs: Vec<u64>| xs)
            .handle("echo_pairs", |xs: Vec<(u64, u64)>| xs)
            .handle("echo_points", |xs: Vec<Point>| xs)
            .handle("bytes", |b: ByteBuf| b)
            .handle("vec_bytes", |b: Vec<u8>| b)
            .on("tick", |_: u64| {
                EVENTS.fetch_add(1, Ordering::Relaxed);
            })
            .handle("ticks", |(): ()| EVENTS.swap(0, Ordering::Relaxed))
            .handle_deferred("hold", |_: u64, reply: coproq::Reply<u64>| {
                HELD.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(reply);
            })
            .listen(EchoServer::new(Echoer));
    })
}

/// Mean round trip of `n` sequential dynamic calls.
pub(crate) fn latency(n: u32) -> coproq::Result<Duration> {
    latency_and_cpu(n).map(|(latency, _)| latency)
}

/// The CPU time (µs) this process and the worker `w` have used so far, together.
fn both_cpu(w: &Coprocess) -> coproq::Result<u64> {
    Ok(sys::cpu_micros() + w.call::<u64>("cpu", ())?)
}

/// Mean round trip of `n` sequential dynamic calls, and the CPU time (µs) both processes
/// used per call.
pub(crate) fn latency_and_cpu(n: u32) -> coproq::Result<(Duration, f64)> {
    let w = worker()?;
    for i in 0..u64::from(n.min(1000)) {
        w.call::<u64>("echo", i)?;
    }
    let cpu = both_cpu(&w)?;
    let start = Instant::now();
    for i in 0..u64::from(n) {
        let back: u64 = w.call("echo", i)?;
        debug_assert_eq!(back, i);
    }
    let elapsed = start.elapsed();
    let used = both_cpu(&w)? - cpu;
    w.close();
    Ok((elapsed / n, used as f64 / f64::from(n)))
}

/// Calls per second from `threads` threads making blocking calls through one link, `n`
/// calls in all.
pub(crate) fn threads(threads: u32, n: u32, spin: Option<Duration>) -> coproq::Result<f64> {
    let w = worker_spinning(spin)?;
    let per_thread = n / threads;
    let run = |calls: u32| {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let w = &w;
                    scope.spawn(move || -> coproq::Result<()> {
                        for i in 0..u64::from(calls) {
                            let x = u64::from(t) << 32 | i;
                            let back: u64 = w.call("echo", x)?;
                            assert_eq!(back, x, "a reply went to the wrong thread");
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|h| h.join().expect("caller thread"))
        })
    };
    run(per_thread / 10 + 1)?;
    let start = Instant::now();
    run(per_thread)?;
    let elapsed = start.elapsed();
    w.close();
    Ok(f64::from(per_thread * threads) / elapsed.as_secs_f64())
}

/// CPU time (µs) both processes use while a link sits idle for `idle`, after a burst of
/// calls (which leaves every spinning place warm). What the two calls that read the
/// worker's CPU time cost is measured with no idle time between them and taken off.
pub(crate) fn idle_cpu(idle: Duration) -> coproq::Result<f64> {
    let w = worker()?;
    let spent = |idle: Duration| -> coproq::Result<f64> {
        for i in 0..10_000u64 {
            w.call::<u64>("echo", i)?;
        }
        let cpu = both_cpu(&w)?;
        std::thread::sleep(idle);
        let used = both_cpu(&w)? - cpu;
        Ok(used as f64)
    };
    let boundaries = spent(Duration::ZERO)?;
    let idle = spent(idle)?;
    w.close();
    Ok(idle - boundaries)
}

/// The caller's CPU time (µs) per call to a handler that sleeps 1 ms.
pub(crate) fn sleeping_handler_cpu(n: u32, spin: Option<Duration>) -> coproq::Result<f64> {
    let w = worker_spinning(spin)?;
    for _ in 0..=(n / 10) {
        w.call::<()>("sleep_ms", 1u64)?;
    }
    let cpu = sys::cpu_micros();
    for _ in 0..n {
        w.call::<()>("sleep_ms", 1u64)?;
    }
    let used = sys::cpu_micros() - cpu;
    w.close();
    Ok(used as f64 / f64::from(n))
}

/// Mean round trip of `n` sequential typed calls.
pub(crate) fn typed_latency(n: u32) -> coproq::Result<Duration> {
    let w = worker()?;
    let client = EchoClient::new(&w);
    for i in 0..u64::from(n.min(1000)) {
        client.typed_echo(i)?;
    }
    let start = Instant::now();
    for i in 0..u64::from(n) {
        let back = client.typed_echo(i)?;
        debug_assert_eq!(back, i);
    }
    let elapsed = start.elapsed();
    w.close();
    Ok(elapsed / n)
}

/// Calls per second with `n` `call_async` in flight from one thread.
///
/// With `COPROQ_BENCH_SPLIT` set (Linux), also says on stderr where the measured burst's
/// CPU time went, per call: the calling thread while it issues the calls and while it
/// waits for them, the parent's other threads (its reader and flusher), and the worker.
pub(crate) fn pipelined(n: u32) -> coproq::Result<(f64, f64)> {
    let w = worker()?;
    // The first burst warms memory up; the second is measured (steady state).
    let mut elapsed = Duration::ZERO;
    let mut used = 0;
    let mut split = None;
    for _ in 0..2 {
        let (parent, worker) = (sys::cpu_micros(), w.call::<u64>("cpu", ())?);
        let caller = sys::thread_cpu_micros();
        let start = Instant::now();
        let pending: Vec<_> = (0..u64::from(n))
            .map(|i| w.call_async::<u64>("echo", i))
            .collect();
        let issued = sys::thread_cpu_micros();
        for p in pending {
            p.wait()?;
        }
        elapsed = start.elapsed();
        let waited = sys::thread_cpu_micros();
        let (parent, worker) = (
            sys::cpu_micros() - parent,
            w.call::<u64>("cpu", ())? - worker,
        );
        used = parent + worker;
        split = caller
            .zip(issued)
            .zip(waited)
            .map(|((start, issued), waited)| {
                let per_call = |micros: u64| micros as f64 * 1000.0 / f64::from(n);
                [
                    per_call(issued - start),
                    per_call(waited - issued),
                    per_call(parent.saturating_sub(waited - start)),
                    per_call(worker),
                ]
            });
    }
    if let Some([issuing, waiting, others, worker]) =
        split.filter(|_| std::env::var_os("COPROQ_BENCH_SPLIT").is_some())
    {
        eprintln!(
            "CPU per call: caller issuing {issuing:.0} ns, caller waiting {waiting:.0} ns, \
             the parent's other threads {others:.0} ns, the worker {worker:.0} ns"
        );
    }
    w.close();
    Ok((
        f64::from(n) / elapsed.as_secs_f64(),
        used as f64 / f64::from(n),
    ))
}

/// How many small items one call carries in `pipelined_items`.
pub(crate) const ITEMS_PER_CALL: usize = 1000;

/// A small item, as `pipelined_items` sends it.
pub(crate) trait Item: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug {
    /// The worker's handler that echoes a `Vec` of them.
    const ECHO: &'static str;
    /// The `i`th item.
    fn nth(i: u64) -> Self;
}

impl Item for u64 {
    const ECHO: &'static str = "echo_many";
    fn nth(i: u64) -> Self {
        i
    }
}

impl Item for (u64, u64) {
    const ECHO: &'static str = "echo_pairs";
    fn nth(i: u64) -> Self {
        (i, !i)
    }
}

/// A two-field struct, the batched item of the `pipelined-structs` figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Point {
    x: u64,
    y: u64,
}

impl Item for Point {
    const ECHO: &'static str = "echo_points";
    fn nth(i: u64) -> Self {
        Point { x: i, y: !i }
    }
}

/// Small items per second when one thread sends `n` of them [`ITEMS_PER_CALL`] to a call
/// (a handler that takes and returns a `Vec<T>`), the calls pipelined with `call_async`,
/// and the CPU time (µs) both processes used per item: what a program that has many small
/// items to process moves by batching them itself.
pub(crate) fn pipelined_items<T: Item>(n: u32) -> coproq::Result<(f64, f64)> {
    let w = worker()?;
    let items: Vec<T> = (0..u64::from(n)).map(T::nth).collect();
    let round = || -> coproq::Result<()> {
        let pending: Vec<_> = items
            .chunks(ITEMS_PER_CALL)
            .map(|chunk| w.call_async::<Vec<T>>(T::ECHO, chunk))
            .collect();
        for (p, chunk) in pending.into_iter().zip(items.chunks(ITEMS_PER_CALL)) {
            assert_eq!(p.wait()?, chunk, "items came back changed");
        }
        Ok(())
    };
    // The first round warms memory up; the second is measured.
    round()?;
    let cpu = both_cpu(&w)?;
    let start = Instant::now();
    round()?;
    let elapsed = start.elapsed();
    let used = both_cpu(&w)? - cpu;
    w.close();
    Ok((
        f64::from(n) / elapsed.as_secs_f64(),
        used as f64 / f64::from(n),
    ))
}

/// Calls per second that one thread issues with `call_async` when no reply ever comes
/// (the worker holds them back): the caller's own cost per pipelined call, with nothing
/// to read, deliver or wait for. Bursts of `n / 4` keep every call in flight within the
/// range of ids the call table indexes directly, as in `pipelined`.
pub(crate) fn pipelined_issue(n: u32) -> coproq::Result<f64> {
    let w = worker()?;
    let burst = u64::from(n / 4).max(1);
    let mut pending = Vec::with_capacity(usize::try_from(burst).unwrap_or(0));
    let mut elapsed = Duration::ZERO;
    // The first burst warms memory up; the next four are measured.
    for round in 0..5 {
        let start = Instant::now();
        pending.extend((0..burst).map(|i| w.call_async::<u64>("hold", i)));
        if round > 0 {
            elapsed += start.elapsed();
        }
        // Dropped unanswered (not timed): each tells the worker it was given up.
        pending.clear();
    }
    w.close();
    Ok((4 * burst) as f64 / elapsed.as_secs_f64())
}

/// Events per second, confirmed by a final call, and the CPU time (µs) both processes
/// used per event.
pub(crate) fn events(n: u32) -> coproq::Result<(f64, f64)> {
    let w = worker()?;
    let cpu = both_cpu(&w)?;
    let start = Instant::now();
    for i in 0..u64::from(n) {
        w.emit("tick", i)?;
    }
    let seen: u64 = w.call("ticks", ())?;
    let elapsed = start.elapsed();
    let used = both_cpu(&w)? - cpu;
    assert_eq!(seen, u64::from(n), "events were lost");
    w.close();
    Ok((
        f64::from(n) / elapsed.as_secs_f64(),
        used as f64 / f64::from(n),
    ))
}

/// How a bulk payload travels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bulk {
    /// Dynamically, as `serde_bytes`.
    ByteBuf,
    /// Dynamically, as a plain `Vec<u8>`.
    Vec,
    /// Typed, as `Vec<u8>` in and out.
    Typed,
    /// Typed, as `Vec<u8>` in and `Result<Vec<u8>, String>` out.
    TypedResult,
}

/// Calls per second through `Coprocess::map` (runs of calls) of `n` echoes, and the CPU
/// time (µs) both processes used per call; every result is checked.
pub(crate) fn map_calls(n: u32) -> coproq::Result<(f64, f64)> {
    let w = worker()?;
    let run = |w: &Coprocess| -> coproq::Result<()> {
        for (expected, result) in (0..u64::from(n)).zip(w.map::<u64, _, _>("echo", 0..u64::from(n)))
        {
            assert_eq!(result?, expected, "map results in input order");
        }
        Ok(())
    };
    // The first pass warms memory up; the second is measured.
    run(&w)?;
    let (parent, worker) = (sys::cpu_micros(), w.call::<u64>("cpu", ())?);
    let start = Instant::now();
    run(&w)?;
    let elapsed = start.elapsed();
    let used = sys::cpu_micros() - parent + w.call::<u64>("cpu", ())? - worker;
    w.close();
    Ok((
        f64::from(n) / elapsed.as_secs_f64(),
        used as f64 / f64::from(n),
    ))
}

/// Bytes per second echoing a `size`-byte payload `n` times (counted one way), each reply
/// being the next call's argument, so that neither side copies the payload itself.
pub(crate) fn bulk(size: usize, n: u32, how: Bulk) -> coproq::Result<f64> {
    let w = worker()?;
    let client = EchoClient::new(&w);
    let mut payload = vec![7u8; size];
    let once = |payload: Vec<u8>| -> coproq::Result<Vec<u8>> {
        match how {
            Bulk::ByteBuf => Ok(w.call::<ByteBuf>("bytes", Bytes::new(&payload))?.into_vec()),
            Bulk::Vec => w.call::<Vec<u8>>("vec_bytes", payload),
            Bulk::Typed => client.typed_bytes(payload),
            Bulk::TypedResult => client
                .typed_result_bytes(payload)?
                .map_err(coproq::Error::Protocol),
        }
    };
    payload = once(payload)?;
    let start = Instant::now();
    for _ in 0..n {
        payload = once(payload)?;
        assert_eq!(payload.len(), size);
    }
    let elapsed = start.elapsed();
    w.close();
    Ok(size as f64 * f64::from(n) / elapsed.as_secs_f64())
}

/// `fork` → first reply → `close`: the mean over `n`.
pub(crate) fn startup(n: u32) -> coproq::Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        let w = worker()?;
        w.call::<u64>("echo", 1u64)?;
        w.close();
    }
    Ok(start.elapsed() / n)
}

/// RSS of an idle fork worker, in KiB.
pub(crate) fn idle_rss() -> coproq::Result<u64> {
    let w = worker()?;
    w.call::<u64>("echo", 1u64)?;
    std::thread::sleep(Duration::from_millis(50));
    let rss = sys::rss_kib(w.pid().unwrap_or(0));
    w.close();
    Ok(rss)
}

/// The parent's RSS growth per open link, in KiB, over `n` links.
pub(crate) fn per_link_rss(n: u32) -> coproq::Result<f64> {
    let me = std::process::id();
    let warm = worker()?;
    warm.call::<u64>("echo", 1u64)?;
    let before = sys::rss_kib(me);
    let links: Vec<_> = (0..n).map(|_| worker()).collect::<coproq::Result<_>>()?;
    for w in &links {
        w.call::<u64>("echo", 1u64)?;
    }
    let after = sys::rss_kib(me);
    drop(links);
    Ok((after.saturating_sub(before)) as f64 / f64::from(n))
}
