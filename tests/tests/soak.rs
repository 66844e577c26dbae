//! Tests for the link under sustained load: memory and descriptors stay flat, workers
//! come and go without leftovers, a flooded listener loses nothing. Reduced sizes run in
//! CI; `COPROQ_SOAK=full cargo test --release -p coproq-tests --test soak -- --nocapture`
//! runs the full ones (1 000 000 calls and events, 1 000 cycles, a 10 s flood).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coproq::Coprocess;
use coproq_tests::{CALL_LIMIT, call, open_fds, process_exists, within};

/// These tests count the whole process's descriptors and memory: they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn full() -> bool {
    std::env::var_os("COPROQ_SOAK").is_some_and(|v| v == "full")
}

/// This process's resident set in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

static EVENTS: AtomicU64 = AtomicU64::new(0);

fn worker() -> Coprocess {
    coproq::fork(|parent| {
        parent
            .handle("echo", |x: u64| x)
            .on("tick", |_: u64| {
                EVENTS.fetch_add(1, Ordering::Relaxed);
            })
            .handle("ticks", |(): ()| EVENTS.load(Ordering::Relaxed));
    })
    .unwrap()
}

/// Runs `per_thread` calls and as many events on each of 8 threads.
fn load(w: &Coprocess, per_thread: u64) {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while i < per_thread {
                    let batch = (per_thread - i).min(500);
                    let pending: Vec<_> = (i..i + batch)
                        .map(|k| w.call_async::<u64>("echo", t << 40 | k))
                        .collect();
                    for (k, p) in (i..).zip(pending) {
                        assert_eq!(p.wait_timeout(CALL_LIMIT).unwrap(), t << 40 | k);
                        w.emit("tick", k).unwrap();
                    }
                    i += batch;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn calls_and_events_over_eight_threads_keep_memory_and_descriptors_flat() {
    let _serial = one_at_a_time();
    let total: u64 = if full() { 1_000_000 } else { 80_000 };
    let w = worker();
    let w2 = w.clone();
    let (growth_kib, fds_before, fds_after, seen) = within(Duration::from_mins(10), move || {
        load(&w2, total / 8); // warm-up: buffers, tables and allocator arenas reach their working size
        let (rss_before, fds_before) = (rss_kib(), open_fds());
        let started = Instant::now();
        load(&w2, total / 8);
        let elapsed = started.elapsed();
        let (rss_after, fds_after) = (rss_kib(), open_fds());
        let seen: u64 = call(&w2, "ticks", ()).unwrap();
        eprintln!(
            "{total} calls and {total} events over 8 threads in {elapsed:?}; parent RSS {rss_before} -> {rss_after} KiB"
        );
        (
            rss_after.saturating_sub(rss_before),
            fds_before,
            fds_after,
            seen,
        )
    });
    assert_eq!(seen, 2 * total, "events were lost");
    assert!(
        growth_kib < 10 * 1024,
        "parent RSS grew by {growth_kib} KiB"
    );
    assert_eq!(fds_before, fds_after, "descriptors leaked");
    w.close();
}

#[test]
fn fork_and_close_cycles_leave_nothing_behind() {
    let _serial = one_at_a_time();
    let cycles: u32 = if full() { 1000 } else { 100 };
    coproq::fork(|_| {}).unwrap().close(); // process-wide helpers start once
    let fds_before = open_fds();
    let started = Instant::now();
    let mut pids = Vec::new();
    for _ in 0..cycles {
        let w = coproq::fork(|parent| {
            parent.handle("echo", |x: u64| x);
        })
        .unwrap();
        assert_eq!(call::<u64>(&w, "echo", 7u64).unwrap(), 7);
        pids.push(w.pid().unwrap());
        assert!(w.close().is_some_and(|s| s.success()));
    }
    let rate = f64::from(cycles) / started.elapsed().as_secs_f64();
    eprintln!("{cycles} fork/call/close cycles at {rate:.0} per second");
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
    assert!(
        pids.iter().all(|&pid| !process_exists(pid)),
        "a worker was not reaped"
    );
}

#[test]
fn an_emitter_ten_times_faster_than_its_listener_loses_nothing_and_stays_bounded() {
    static GOT: AtomicU64 = AtomicU64::new(0);
    let _serial = one_at_a_time();
    let seconds = if full() { 10 } else { 1 };
    let w = coproq::fork(|parent| {
        parent
            .on("work", |_: serde_bytes::ByteBuf| {
                // 100 µs per event: the emitter below offers ten per 100 µs.
                std::thread::sleep(Duration::from_micros(100));
                GOT.fetch_add(1, Ordering::Relaxed);
            })
            .handle("got_and_peak_kib", |(): ()| {
                (GOT.load(Ordering::Relaxed), coproq_tests::peak_rss_kib())
            });
    })
    .unwrap();
    let w2 = w.clone();
    let (sent, got, worker_peak) = within(Duration::from_secs(60 + 3 * seconds), move || {
        let blob = vec![1u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut sent = 0u64;
        while Instant::now() < deadline {
            w2.emit("work", serde_bytes::Bytes::new(&blob)).unwrap();
            sent += 1;
        }
        let (got, peak): (u64, u64) = call(&w2, "got_and_peak_kib", ()).unwrap();
        (sent, got, peak)
    });
    let parent_peak = coproq_tests::peak_rss_kib();
    eprintln!(
        "{sent} events offered in {seconds} s, all delivered; peak RSS worker {worker_peak} KiB, parent {parent_peak} KiB"
    );
    assert_eq!(got, sent, "events were lost");
    // With back-pressure the worker holds at most its 4 MiB receive window and the pipe,
    // far below what an unbounded queue would reach.
    assert!(
        worker_peak < 100 * 1024,
        "worker peak RSS {worker_peak} KiB"
    );
    w.close();
}

/// The other direction: a worker emits to its parent ten times faster than the parent's
/// listener takes events; nothing is lost, and the parent's memory stays bounded.
#[test]
fn a_worker_emitting_ten_times_faster_than_its_parents_listener_loses_nothing() {
    let _serial = one_at_a_time();
    let seconds = if full() { 10 } else { 1 };
    let w = Coprocess::builder()
        .on("work", |_: serde_bytes::ByteBuf| {
            std::thread::sleep(Duration::from_micros(100));
            GOT_BY_PARENT.fetch_add(1, Ordering::Relaxed);
        })
        .fork(|parent| {
            let p = parent.downgrade();
            parent.handle("emit_for", move |seconds: u64| -> coproq::Result<u64> {
                let p = p.upgrade().ok_or(coproq::Error::NotConnected)?;
                let blob = vec![1u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let mut sent = 0u64;
                while Instant::now() < deadline {
                    p.emit("work", serde_bytes::Bytes::new(&blob))?;
                    sent += 1;
                }
                Ok(sent)
            });
        })
        .unwrap();
    coproq_tests::flood::reset_peak();
    let sent: u64 = w
        .call_async("emit_for", seconds)
        .wait_timeout(CALL_LIMIT + Duration::from_secs(seconds))
        .unwrap();
    let all = coproq_tests::wait_until(Duration::from_mins(1), || {
        GOT_BY_PARENT.load(Ordering::Relaxed) == sent
    });
    let growth = coproq_tests::flood::peak_growth_kib();
    eprintln!("{sent} events offered by the worker in {seconds} s; parent grew {growth} KiB");
    assert!(
        all,
        "events were lost: {} of {sent}",
        GOT_BY_PARENT.load(Ordering::Relaxed)
    );
    assert!(growth < 32 * 1024, "the parent grew by {growth} KiB");
    w.close();
}

static GOT_BY_PARENT: AtomicU64 = AtomicU64::new(0);
