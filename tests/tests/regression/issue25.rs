//! Issue 25: promises that hold when a peer misbehaves: it floods, stalls, dies in the
//! middle of a frame, lets calls pile up, or plants files in the `via` cache. Each test
//! names the item of the issue it covers.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coproq::{Coprocess, DisconnectCause, Error};
use coproq_tests::flood::{self, Flood};
use coproq_tests::{CALL_LIMIT, ScratchFile, call, signal, wait_until, within};

/// The most a flooded process may grow by: the 4 MiB window of what its peer may send
/// unanswered, the pipe, buffers and the threads that serve it, with room to spare. An
/// unbounded reader grew by gigabytes within the flood's time.
const FLOOD_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// How long each flood lasts.
const FLOOD_MS: u64 = 1500;

/// How long the flooded side may take to work through what arrived once the flood ends.
const DRAIN_LIMIT: Duration = Duration::from_mins(1);

fn flood_worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flood_worker"))
}

/// A worker that floods or is flooded, forked or spawned.
fn flood_peer(spawned: bool) -> Coprocess {
    if spawned {
        Coprocess::spawn(flood_worker()).unwrap()
    } else {
        coproq::fork(flood::serve).unwrap()
    }
}

// Item 1: back-pressure in both directions, on every reader.

/// The parent floods its worker; the worker's memory stays bounded and it takes all.
fn parent_floods_worker(what: Flood, spawned: bool) {
    let w = flood_peer(spawned);
    call::<u64>(&w, "reset_peak", ()).unwrap();
    let w2 = w.clone();
    let sent = within(CALL_LIMIT * 2, move || {
        flood::flood(&w2, what, Duration::from_millis(FLOOD_MS)).unwrap()
    });
    assert!(
        flood::all_taken(what, sent, DRAIN_LIMIT, || call(&w, "counts", ()).unwrap()),
        "{what:?}: the worker did not take all {sent}: {:?}",
        call::<(u64, u64)>(&w, "counts", ())
    );
    let growth: u64 = call(&w, "peak_growth_kib", ()).unwrap();
    eprintln!(
        "parent -> worker ({what:?}, spawned {spawned}): {sent} sent, worker grew {growth} KiB"
    );
    assert!(
        growth < FLOOD_GROWTH_LIMIT_KIB,
        "{what:?}: the flooded worker grew by {growth} KiB"
    );
    assert!(w.close().is_some_and(|s| s.success()));
}

/// A worker floods its parent. The flooded parent is a process of its own (a forked
/// host), so that its memory is not the test runner's, shared with other tests.
fn worker_floods_parent(what: Flood, spawned: bool) {
    let host = coproq::fork(|parent| {
        parent.handle(
            "flooded_by",
            |(what, spawn): (Flood, Option<String>)| -> coproq::Result<(u64, bool, u64)> {
                let w = match spawn {
                    Some(exe) => Coprocess::spawn(Command::new(exe))?,
                    None => coproq::fork(flood::serve)?,
                };
                flood::serve(&w);
                flood::reset_peak();
                let sent: u64 = w
                    .call_async("flood", (what, FLOOD_MS))
                    .wait_timeout(CALL_LIMIT * 2)?;
                let all = flood::all_taken(what, sent, DRAIN_LIMIT, flood::counts);
                let growth = flood::peak_growth_kib();
                w.close();
                Ok((sent, all, growth))
            },
        );
    })
    .unwrap();
    let spawn = spawned.then(|| env!("CARGO_BIN_EXE_flood_worker").to_owned());
    let (sent, all, growth): (u64, bool, u64) = host
        .call_async("flooded_by", (what, spawn))
        .wait_timeout(CALL_LIMIT * 4)
        .unwrap();
    eprintln!(
        "worker -> parent ({what:?}, spawned {spawned}): {sent} sent, parent grew {growth} KiB"
    );
    assert!(all, "{what:?}: the parent did not take all {sent}");
    assert!(
        growth < FLOOD_GROWTH_LIMIT_KIB,
        "{what:?}: the flooded parent grew by {growth} KiB"
    );
    assert!(host.close().is_some_and(|s| s.success()));
}

#[test]
fn item1_parent_floods_a_fork_worker_with_events() {
    parent_floods_worker(Flood::Events, false);
}

#[test]
fn item1_parent_floods_a_spawned_worker_with_calls() {
    parent_floods_worker(Flood::Calls, true);
}

#[test]
fn item1_parent_floods_a_fork_worker_with_calls() {
    parent_floods_worker(Flood::Calls, false);
}

#[test]
fn item1_parent_floods_a_spawned_worker_with_events() {
    parent_floods_worker(Flood::Events, true);
}

#[test]
fn item1_a_fork_worker_floods_its_parent_with_events() {
    worker_floods_parent(Flood::Events, false);
}

#[test]
fn item1_a_fork_worker_floods_its_parent_with_calls() {
    worker_floods_parent(Flood::Calls, false);
}

#[test]
fn item1_a_spawned_worker_floods_its_parent_with_events() {
    worker_floods_parent(Flood::Events, true);
}

#[test]
fn item1_a_spawned_worker_floods_its_parent_with_calls() {
    worker_floods_parent(Flood::Calls, true);
}

// Item 2: a link's writes never wait on another link's pipe.

/// A healthy worker with heartbeats: echoes, and counts the events it takes.
fn healthy() -> Coprocess {
    Coprocess::builder()
        .heartbeat(Duration::from_millis(200))
        .fork(|parent| {
            static TICKS: AtomicU64 = AtomicU64::new(0);
            parent
                .handle("echo", |x: u64| x)
                .on("tick", |_: u64| {
                    TICKS.fetch_add(1, Ordering::Relaxed);
                })
                .handle("ticks", |(): ()| TICKS.load(Ordering::Relaxed));
        })
        .unwrap()
}

/// A worker that takes 4 KiB events and echoes, stopped with `SIGSTOP`, and a thread
/// that emits to it until its pipe, its window and its writer's buffer are full (the
/// thread then waits, as back-pressure says, until the worker dies).
struct StoppedAndFull {
    worker: Coprocess,
    filler: std::thread::JoinHandle<u64>,
}

impl StoppedAndFull {
    fn new(builder: coproq::Builder) -> Self {
        let worker = builder
            .close_grace(Duration::from_millis(100))
            .fork(|parent| {
                parent
                    .handle("echo", |x: u64| x)
                    .handle("len", |b: serde_bytes::ByteBuf| b.len())
                    .on("sink", |_: serde_bytes::ByteBuf| {});
            })
            .unwrap();
        assert_eq!(call::<u64>(&worker, "echo", 1u64).unwrap(), 1);
        signal(worker.pid().unwrap(), libc::SIGSTOP);
        let offered = Arc::new(AtomicU64::new(0));
        let filler = {
            let (worker, offered) = (worker.clone(), Arc::clone(&offered));
            std::thread::spawn(move || {
                let blob = vec![0u8; 4096];
                while worker.emit("sink", serde_bytes::Bytes::new(&blob)).is_ok() {
                    offered.fetch_add(1, Ordering::Relaxed);
                }
                offered.load(Ordering::Relaxed)
            })
        };
        // Full: the filler stopped moving, with far more than a pipe's 64 KiB offered.
        let mut last = 0;
        let full = wait_until(CALL_LIMIT, || {
            std::thread::sleep(Duration::from_millis(300));
            let now = offered.load(Ordering::Relaxed);
            let still = now == last && now > 64;
            last = now;
            still
        });
        assert!(full, "the stopped worker's pipe never filled");
        Self { worker, filler }
    }

    /// Kills the worker: the filler's emit fails, and it ends.
    fn kill(self) {
        signal(self.worker.pid().unwrap(), libc::SIGKILL);
        let filler = self.filler;
        let offered = within(CALL_LIMIT, move || filler.join().unwrap());
        eprintln!("{offered} events of 4 KiB offered to the stopped worker");
        self.worker.close();
    }
}

#[test]
fn item2_a_stopped_worker_with_its_pipe_full_stalls_no_other_link() {
    let stopped = StoppedAndFull::new(Coprocess::builder().call_timeout(Duration::from_secs(1)));
    let links: Vec<Coprocess> = (0..3).map(|_| healthy()).collect();
    let stuck = stopped.worker.clone();
    let (rounds, stuck_call) = within(Duration::from_secs(90), move || {
        // The stopped worker's own callers get their timeouts, meanwhile.
        let stuck_caller = std::thread::spawn(move || {
            let started = Instant::now();
            let err = stuck.call::<u64>("echo", 2u64).unwrap_err();
            (err, started.elapsed())
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let step = Duration::from_secs(5);
        let until = Instant::now() + Duration::from_secs(10);
        let mut rounds = 0u64;
        while Instant::now() < until {
            for link in &links {
                let reply = link.call_async::<u64>("echo", rounds).wait_timeout(step);
                assert_eq!(reply.unwrap(), rounds, "a blocking call stalled");
                link.emit("tick", rounds).unwrap();
                let future = link.call_async::<u64>("echo", rounds + 1);
                let awaited = runtime.block_on(async { tokio::time::timeout(step, future).await });
                assert_eq!(
                    awaited.expect("an awaited call stalled").unwrap(),
                    rounds + 1
                );
            }
            rounds += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        for link in &links {
            let delivered = wait_until(step, || call::<u64>(link, "ticks", ()).unwrap() == rounds);
            assert!(delivered, "events to a healthy worker were not delivered");
            assert!(link.is_alive(), "a healthy link ended");
        }
        (rounds, stuck_caller.join().unwrap())
    });
    eprintln!("{rounds} rounds on each of 3 healthy links beside a stopped one");
    let (err, took) = stuck_call;
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        took < Duration::from_secs(6),
        "the stuck call took {took:?}"
    );
    stopped.kill();
}

// Item 3: a call returns `Timeout` at its deadline whatever state its frame is in; the
// frame is finished in the background, and the link lives on.

/// A worker that counts its `len` calls: a call skipped for its deadline never counts.
fn counting_worker(builder: coproq::Builder) -> Coprocess {
    builder
        .close_grace(Duration::from_millis(100))
        .fork(|parent| {
            static LENS: AtomicU64 = AtomicU64::new(0);
            parent
                .handle("len", |b: serde_bytes::ByteBuf| {
                    LENS.fetch_add(1, Ordering::Relaxed);
                    b.len()
                })
                .handle("lens", |(): ()| LENS.load(Ordering::Relaxed))
                .handle("sleep", |ms: u64| {
                    std::thread::sleep(Duration::from_millis(ms));
                    ms
                });
        })
        .unwrap()
}

#[test]
fn item3_a_large_call_to_a_stopped_worker_times_out_at_its_deadline() {
    let w = counting_worker(Coprocess::builder().call_timeout(Duration::from_secs(2)));
    let pid = w.pid().unwrap();
    signal(pid, libc::SIGSTOP);
    let w2 = w.clone();
    let (err, took) = within(CALL_LIMIT, move || {
        let big = vec![1u8; 4 << 20];
        let started = Instant::now();
        let err = w2
            .call::<usize>("len", serde_bytes::Bytes::new(&big))
            .unwrap_err();
        (err, started.elapsed())
    });
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "timed out after {took:?}"
    );
    // The frame finishes once the worker runs again; its call, past its deadline, is
    // skipped, and the link carries on.
    signal(pid, libc::SIGCONT);
    assert_eq!(
        call::<usize>(&w, "len", serde_bytes::Bytes::new(&[0; 10])).unwrap(),
        10
    );
    assert_eq!(
        call::<u64>(&w, "lens", ()).unwrap(),
        1,
        "an expired call ran"
    );
    assert!(w.close().is_some_and(|s| s.success()));
}

#[test]
fn item3_a_large_call_async_behind_a_busy_handler_returns_by_its_deadline() {
    let w = counting_worker(Coprocess::builder().call_timeout(Duration::from_secs(1)));
    let busy = w.call_async::<u64>("sleep", 6000u64);
    std::thread::sleep(Duration::from_millis(100));
    let w2 = w.clone();
    let (issued, err, took) = within(CALL_LIMIT, move || {
        let big = vec![1u8; 4 << 20];
        let started = Instant::now();
        let pending = w2.call_async::<usize>("len", serde_bytes::Bytes::new(&big));
        let issued = started.elapsed();
        let err = pending.wait().unwrap_err();
        (issued, err, started.elapsed())
    });
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        issued < Duration::from_secs(3),
        "call_async blocked {issued:?}"
    );
    assert!(took < Duration::from_secs(4), "timed out after {took:?}");
    drop(busy);
    w.close();
}

#[test]
fn item3_a_pool_call_with_a_large_argument_never_blocks_past_its_deadline() {
    let pool = coproq::Pool::builder()
        .size(1)
        .call_timeout(Duration::from_secs(1))
        .kill_on_timeout(false)
        .close_grace(Duration::from_millis(100))
        .fork(|parent| {
            parent.handle("len", |b: serde_bytes::ByteBuf| b.len());
        })
        .unwrap();
    assert_eq!(
        pool.call::<usize>("len", serde_bytes::Bytes::new(&[0; 3]))
            .unwrap(),
        3
    );
    let pid = pool.workers()[0].pid().unwrap();
    signal(pid, libc::SIGSTOP);
    let pool2 = pool.clone();
    let (issued, err, took) = within(CALL_LIMIT, move || {
        let big = vec![1u8; 2 << 20];
        let started = Instant::now();
        let pending = pool2.call_async::<usize>("len", serde_bytes::Bytes::new(&big));
        let issued = started.elapsed();
        let err = pending.wait().unwrap_err();
        (issued, err, started.elapsed())
    });
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    // Writing may take until the deadline, never longer.
    assert!(
        issued < Duration::from_secs(3),
        "call_async blocked {issued:?}"
    );
    assert!(took < Duration::from_secs(4), "timed out after {took:?}");
    signal(pid, libc::SIGCONT);
    assert_eq!(
        pool.call::<usize>("len", serde_bytes::Bytes::new(&[0; 5]))
            .unwrap(),
        5
    );
    pool.close();
}

#[test]
fn item3_a_via_start_whose_far_side_never_reads_ends_at_startup_timeout() {
    // The far side asks for the executable, then never reads it.
    let mut prefix = Command::new("sh");
    prefix.args(["-c", "printf S; exec sleep 60", "coproq-far-side"]);
    let started = Instant::now();
    let result = within(CALL_LIMIT, move || {
        Coprocess::builder()
            .startup_timeout(Duration::from_secs(2))
            .via(prefix)
            .fork(|_| {})
            .map(|_| ())
    });
    let took = started.elapsed();
    let err = result.unwrap_err();
    assert!(
        took < Duration::from_secs(6),
        "the start took {took:?}: {err}"
    );
    assert!(err.to_string().contains("2s"), "{err}");
}

// Item 4: a frame in progress must keep arriving; what it pinned is let go.

/// Starts the hostile worker that sends 1000 MiB of a 1 GiB frame and goes quiet, from a
/// process of its own (so that its memory is not the test runner's); the call's error,
/// the peak memory, and the memory held once the call failed, in KiB.
fn half_sent_frame(heartbeat: Option<Duration>) -> (String, u64, u64) {
    let host = coproq::fork(|parent| {
        parent.handle(
            "half_sent",
            |(exe, heartbeat_ms): (String, u64)| -> coproq::Result<(String, u64, u64)> {
                let mut builder = Coprocess::builder()
                    .max_frame_len(1 << 30)
                    .close_grace(Duration::from_millis(100));
                if heartbeat_ms > 0 {
                    builder = builder.heartbeat(Duration::from_millis(heartbeat_ms));
                }
                let mut cmd = Command::new(exe);
                cmd.arg("half-gib")
                    .arg(coproq::PROTOCOL_VERSION.to_string());
                let w = builder.spawn(cmd)?;
                let err = w
                    .call_async::<u32>("echo", 1u32)
                    .wait_timeout(CALL_LIMIT)
                    .unwrap_err();
                let after = flood::status_kib("VmRSS:");
                w.close();
                Ok((format!("{err:?}"), flood::status_kib("VmHWM:"), after))
            },
        );
    })
    .unwrap();
    let heartbeat_ms = heartbeat.map_or(0, |h| h.as_millis() as u64);
    let exe = env!("CARGO_BIN_EXE_hostile_worker").to_owned();
    let out = host
        .call_async("half_sent", (exe, heartbeat_ms))
        .wait_timeout(CALL_LIMIT * 2)
        .unwrap();
    host.close();
    out
}

#[test]
fn item4_a_half_sent_frame_ends_the_link_by_the_heartbeat_and_frees_its_memory() {
    let (err, peak, after) = half_sent_frame(Some(Duration::from_millis(300)));
    eprintln!("{err}: peak {peak} KiB, then {after} KiB");
    assert!(
        err.contains("Protocol") && err.contains("stopped sending in the middle of a frame"),
        "{err}"
    );
    assert!(peak > 900 << 10, "the frame never arrived: peak {peak} KiB");
    assert!(after < 256 << 10, "{after} KiB still held");
}

#[test]
fn item4_a_half_sent_frame_ends_the_link_without_heartbeats_too() {
    let started = Instant::now();
    let (err, peak, after) = half_sent_frame(None);
    eprintln!(
        "{err} after {:?}: peak {peak} KiB, then {after} KiB",
        started.elapsed()
    );
    assert!(
        err.contains("stopped sending in the middle of a frame"),
        "{err}"
    );
    assert!(peak > 900 << 10, "the frame never arrived: peak {peak} KiB");
    assert!(after < 256 << 10, "{after} KiB still held");
}

// Item 5: cancels reach the worker however many calls are queued before them.

/// The machine's monotonic clock in microseconds, which a worker on it shares.
fn monotonic_us() -> u64 {
    // SAFETY: clock_gettime writes into the zeroed struct it is given.
    let now = unsafe {
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now);
        now
    };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}

/// When a call started, and whether its handler saw it cancelled at its first look
/// (its cancel was on its way when it started).
type Start = (u64, u64, bool);

/// A worker whose `slow` handler runs for a while, polling `cancelled()` every
/// millisecond, and records when each call started and when a cancel was seen.
fn cancel_recording_worker() -> Coprocess {
    coproq::fork(|parent| {
        static STARTS: std::sync::Mutex<Vec<Start>> = std::sync::Mutex::new(Vec::new());
        static SEEN: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
        parent
            .handle("slow", |(id, ms): (u64, u64)| {
                let at = monotonic_us();
                // Reads what has arrived: a cancel sent before `at` is in by now.
                let at_once = coproq::cancelled();
                STARTS.lock().unwrap().push((id, at, at_once));
                let end = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < end {
                    if coproq::cancelled() {
                        SEEN.lock().unwrap().push((id, monotonic_us()));
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                true
            })
            .handle("echo", |x: u64| x)
            .handle("starts", |(): ()| STARTS.lock().unwrap().clone())
            .handle("seen", |(): ()| SEEN.lock().unwrap().clone());
    })
    .unwrap()
}

/// Every call that started did so before its cancel was sent, or while its cancel was
/// on its way (one moment on a loaded machine: a worker that had just looked for cancels
/// may start the next call before the next look). Such a call sees its cancel at its
/// first look; one that did not had its cancel held up, and runs in full.
fn assert_none_started_after_its_cancel(w: &Coprocess, cancelled_at: &[u64]) {
    let starts: Vec<Start> = call(w, "starts", ()).unwrap();
    for (id, at, at_once) in &starts {
        assert!(
            *at < cancelled_at[*id as usize] || *at_once,
            "call {id} started {} µs after it was cancelled, and did not see its cancel",
            at - cancelled_at[*id as usize]
        );
    }
}

#[test]
fn item5_five_thousand_queued_calls_cancelled_in_reverse_never_run() {
    let mut seen_after = Vec::new();
    for round in 0..5 {
        let w = cancel_recording_worker();
        let w2 = w.clone();
        let (cancelled_at, next_took) = within(CALL_LIMIT * 2, move || {
            let mut pending: Vec<_> = (0..5000u64)
                .map(|id| w2.call_async::<bool>("slow", (id, 300u64)))
                .collect();
            std::thread::sleep(Duration::from_millis(30));
            let mut cancelled_at = vec![0; pending.len()];
            for (id, p) in pending.iter_mut().enumerate().rev() {
                cancelled_at[id] = monotonic_us();
                p.cancel();
            }
            let started = Instant::now();
            assert_eq!(call::<u64>(&w2, "echo", 7u64).unwrap(), 7);
            let next_took = started.elapsed();
            for p in pending {
                assert!(matches!(p.wait(), Err(Error::Cancelled { .. })));
            }
            (cancelled_at, next_took)
        });
        assert!(
            next_took < Duration::from_secs(1),
            "round {round}: the call after the cancels took {next_took:?}"
        );
        assert_none_started_after_its_cancel(&w, &cancelled_at);
        // The call that was running saw its cancel, sent last, behind 4 999 others.
        let seen: Vec<(u64, u64)> = call(&w, "seen", ()).unwrap();
        let starts: Vec<Start> = call(&w, "starts", ()).unwrap();
        assert_eq!(
            seen.len(),
            starts.len(),
            "round {round}: a running call missed its cancel"
        );
        for (id, at) in seen {
            seen_after.push(at.saturating_sub(cancelled_at[id as usize]));
        }
        w.close();
    }
    seen_after.sort_unstable();
    let median = seen_after[seen_after.len() / 2];
    eprintln!("running handlers saw their cancels after {seen_after:?} µs");
    assert!(
        median <= 50_000,
        "median {median} µs from cancel to handler"
    );
}

#[test]
fn item5_calls_whose_tokio_timeout_fired_never_run() {
    let w = cancel_recording_worker();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let w2 = w.clone();
    let timed_out_at = within(CALL_LIMIT, move || {
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            let tasks: Vec<_> = (0..200u64)
                .map(|id| {
                    let call = w2.call_async::<bool>("slow", (id, 50u64));
                    tokio::task::spawn_local(async move {
                        let out = tokio::time::timeout(Duration::from_millis(30), call).await;
                        assert!(out.is_err(), "call {id} beat its timeout");
                        // The future is dropped here: its call is cancelled.
                        monotonic_us()
                    })
                })
                .collect();
            let mut at = Vec::new();
            for task in tasks {
                at.push(task.await.unwrap());
            }
            at
        })
    });
    assert_eq!(call::<u64>(&w, "echo", 1u64).unwrap(), 1);
    assert_none_started_after_its_cancel(&w, &timed_out_at);
    w.close();
}

// Item 6: a handler sees the deadline its caller has, queue time counted; a call whose
// deadline passed before it started is skipped.

#[test]
fn item6_deadline_counts_the_time_a_call_spent_queued() {
    let w = Coprocess::builder()
        .call_timeout(Duration::from_secs(1))
        .fork(|parent| {
            static STARTED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
            parent
                .handle("nap", |(id, ms): (u64, u64)| {
                    STARTED.lock().unwrap().push(id);
                    let left = coproq::deadline()
                        .map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64);
                    std::thread::sleep(Duration::from_millis(ms));
                    left
                })
                .handle("started", |(): ()| STARTED.lock().unwrap().clone());
        })
        .unwrap();
    let pending: Vec<_> = (0..5u64)
        .map(|id| w.call_async::<Option<u64>>("nap", (id, 400u64)))
        .collect();
    let replies: Vec<_> = pending.into_iter().map(coproq::Pending::wait).collect();
    let left = |i: usize| match &replies[i] {
        Ok(left) => left.expect("a deadline"),
        Err(e) => panic!("call {i}: {e:?}"),
    };
    // The first starts with (almost) all its second; the second waited 400 ms for it.
    assert!(
        left(0) <= 1000 && left(0) > 300,
        "first: {} ms left",
        left(0)
    );
    assert!(left(1) <= 600 + 50, "second: {} ms left", left(1));
    for (i, reply) in replies.iter().enumerate().skip(3) {
        assert!(
            matches!(reply, Err(Error::Timeout { .. })),
            "call {i}: {reply:?}"
        );
    }
    // Calls 3 and 4 could start only after 1.2 s, past their deadline: skipped.
    let started: Vec<u64> = (0..)
        .find_map(|_| call::<Vec<u64>>(&w, "started", ()).ok())
        .unwrap();
    assert!(
        !started.contains(&3) && !started.contains(&4),
        "{started:?}"
    );
    w.close();
}

// Item 7: link descriptors are close-on-exec from the start; a worker's death is seen
// at once whatever its children hold.

fn early_child_worker() -> Coprocess {
    Coprocess::builder()
        .close_grace(Duration::from_millis(100))
        .spawn(Command::new(env!("CARGO_BIN_EXE_early_child_worker")))
        .unwrap()
}

/// What the descriptors of process `pid` refer to (`pipe:[inode]` for a pipe).
fn descriptor_targets(pid: u32) -> Vec<PathBuf> {
    descriptors_of(pid)
        .into_iter()
        .filter_map(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
        .collect()
}

/// What the descriptors this process passes to every child refer to: those not marked
/// close-on-exec (the test runner's own, such as its stdio).
fn inherited_targets() -> Vec<PathBuf> {
    descriptors_of(std::process::id())
        .into_iter()
        .filter(|fd| {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
            flags.is_some_and(|f| f & libc::O_CLOEXEC as u32 == 0)
        })
        .filter_map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .collect()
}

/// The descriptors process `pid` has open.
fn descriptors_of(pid: u32) -> Vec<u32> {
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

/// Kills `w` while a call hangs in it; how long the call took to fail, and its error.
fn kill_during_a_hanging_call(w: &Coprocess) -> (Error, Duration) {
    let hanging = w.call_async::<()>("hang", ());
    std::thread::sleep(Duration::from_millis(100));
    signal(w.pid().unwrap(), libc::SIGKILL);
    let started = Instant::now();
    let err = hanging.wait_timeout(CALL_LIMIT).unwrap_err();
    (err, started.elapsed())
}

#[test]
fn item7_a_child_started_before_parent_inherits_no_link_descriptor() {
    let w = early_child_worker();
    let child: u32 = call(&w, "early_child", ()).unwrap();
    // The worker's link: what it holds beyond what every child of this test inherits.
    let inherited = inherited_targets();
    let link: Vec<PathBuf> = descriptor_targets(w.pid().unwrap())
        .into_iter()
        .filter(|target| !inherited.contains(target))
        .collect();
    assert!(!link.is_empty(), "the worker's link was not found");
    let leaked: Vec<_> = descriptor_targets(child)
        .into_iter()
        .filter(|target| link.contains(target))
        .collect();
    assert!(
        leaked.is_empty(),
        "the early child holds the link: {leaked:?}"
    );
    let (err, took) = kill_during_a_hanging_call(&w);
    signal(child, libc::SIGKILL);
    assert!(
        matches!(
            err,
            Error::Disconnected {
                status: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the death was seen after {took:?}"
    );
    w.close();
}

#[test]
fn item7_a_workers_death_is_seen_though_a_child_holds_its_pipes() {
    let w = early_child_worker();
    let child: u32 = call(&w, "child_holding_every_descriptor", ()).unwrap();
    assert!(descriptors_of(child).len() > 3, "the child holds nothing");
    let (err, took) = kill_during_a_hanging_call(&w);
    signal(child, libc::SIGKILL);
    assert!(
        matches!(
            err,
            Error::Disconnected {
                status: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the death was seen after {took:?}"
    );
    w.close();
}

// Item 8: a peer killed in the middle of a frame is `Disconnected`, with its status.

#[test]
fn item8_sigkill_during_large_replies_is_disconnected_with_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    let mut disconnected = 0;
    for round in 0..30u64 {
        let w = coproq::fork(|parent| {
            parent.handle("echo", |b: serde_bytes::ByteBuf| b);
        })
        .unwrap();
        let pid = w.pid().unwrap();
        let delay = Duration::from_millis(round * 137 % 400);
        let w2 = w.clone();
        let errors = within(CALL_LIMIT * 2, move || {
            let big = serde_bytes::ByteBuf::from(vec![5u8; 64 << 20]);
            // The clock starts once the worker answers (a loaded machine may take long
            // to start it): the kill lands while echoes are under way.
            let first = w2.call_async::<serde_bytes::ByteBuf>("echo", &big);
            assert!(first.wait_timeout(CALL_LIMIT).unwrap() == big);
            let killer = std::thread::spawn(move || {
                std::thread::sleep(delay);
                signal(pid, libc::SIGKILL);
            });
            let mut errors = Vec::new();
            for _ in 0..50 {
                match w2
                    .call_async::<serde_bytes::ByteBuf>("echo", &big)
                    .wait_timeout(CALL_LIMIT)
                {
                    Ok(back) => assert!(back == big, "a reply came back changed"),
                    Err(e) => {
                        errors.push(e);
                        break;
                    }
                }
            }
            killer.join().unwrap();
            errors
        });
        // A call made once the death was seen is not connected; every other call sees
        // the death, with its signal.
        for err in errors {
            assert!(
                matches!(&err, Error::Disconnected { status: Some(s), .. } if s.signal() == Some(libc::SIGKILL))
                    || matches!(err, Error::NotConnected),
                "round {round}, killed after {delay:?}: {err:?}"
            );
            disconnected += u32::from(matches!(err, Error::Disconnected { .. }));
        }
        w.close();
    }
    // Kills land while an echo is under way nearly always: at least half must be seen.
    assert!(
        disconnected >= 15,
        "only {disconnected} of 30 kills were seen as the death of a call"
    );
}

// Item 10: error texts that say what happened.

#[test]
fn item10_a_silent_peer_is_said_to_have_fallen_silent() {
    let w = Coprocess::builder()
        .heartbeat(Duration::from_millis(100))
        .close_grace(Duration::from_millis(100))
        .fork(|parent| {
            parent.handle("echo", |x: u64| x);
        })
        .unwrap();
    signal(w.pid().unwrap(), libc::SIGSTOP);
    let err = w
        .call_async::<u64>("echo", 1u64)
        .wait_timeout(CALL_LIMIT)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Disconnected { cause: DisconnectCause::Silent { after }, .. } if *after >= Duration::from_millis(300)),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("nothing came from the peer for"), "{text}");
    signal(w.pid().unwrap(), libc::SIGKILL);
    w.close();
}

#[test]
fn item10_a_command_that_prints_text_is_said_to_print_text() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo 'Hello from a shell script'; sleep 10"]);
    let err = Coprocess::builder()
        .startup_timeout(CALL_LIMIT)
        .spawn_stdio(cmd)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert!(
        text.contains("printed text") && text.contains("Hello from a shell"),
        "{text}"
    );
    assert!(!text.contains("claims"), "{text}");
}

#[test]
fn item10_a_via_start_error_asks_about_the_prefix_not_about_stdio() {
    let mut prefix = Command::new("sh");
    prefix.args(["-c", "echo 'no such host' >&2; exit 3", "coproq-far-side"]);
    let err = Coprocess::builder()
        .startup_timeout(CALL_LIMIT)
        .via(prefix)
        .fork(|_| {})
        .map(|_| ())
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no such host"), "{text}");
    assert!(
        text.contains("does the prefix run its last argument"),
        "{text}"
    );
    assert!(!text.contains("Coprocess::stdio"), "{text}");
}

// Item 11: nothing another user planted in the `via` cache runs, nothing is written
// through a planted link, temporary files never outlive a failure, and the worker gets
// the user's own umask.

/// A fresh home for one test's far-side cache (its `coproq` directory inside), removed
/// when dropped.
struct CacheHome(PathBuf);

impl CacheHome {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("coproq-i25-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    fn cache(&self) -> PathBuf {
        self.0.join("coproq")
    }

    /// The files in the cache directory.
    fn cached(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache()) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// `sh -c`, with the far side's cache here and `env` set.
    fn prefix(&self, env: &[(&str, &Path)]) -> Command {
        let mut sh = Command::new("sh");
        sh.env("XDG_CACHE_HOME", &self.0).arg("-c");
        for (key, value) in env {
            sh.env(key, value);
        }
        sh
    }

    /// Starts a fork worker through the prefix; it reports the file it runs from and its
    /// umask.
    fn start(&self, env: &[(&str, &Path)]) -> coproq::Result<Coprocess> {
        Coprocess::builder()
            .startup_timeout(Duration::from_mins(1))
            .via(self.prefix(env))
            .fork(|parent| {
                parent
                    .handle("exe", |(): ()| {
                        std::env::current_exe()
                            .map_or_else(|_| String::new(), |p| p.display().to_string())
                    })
                    .handle("umask", |(): ()| {
                        // SAFETY: umask cannot fail; the old mask is put back at once.
                        unsafe {
                            let mask = libc::umask(0o022);
                            libc::umask(mask);
                            mask as u32
                        }
                    });
            })
    }

    /// Starts a worker and returns the file it ran from.
    fn run_from(&self) -> PathBuf {
        let w = self.start(&[]).unwrap();
        let exe: String = call(&w, "exe", ()).unwrap();
        assert!(w.close().is_some_and(|s| s.success()));
        PathBuf::from(exe)
    }
}

impl Drop for CacheHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shell script of exactly `len` bytes that, if ever run, creates `proof`.
fn planted_script(proof: &Path, len: usize) -> Vec<u8> {
    let mut script = format!("#!/bin/sh\ntouch '{}'\nexit 0\n#", proof.display()).into_bytes();
    script.resize(len, b'#');
    script
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// `nobody`, the other user these tests plant files as.
const OTHER_USER: u32 = 65534;

/// Makes a populated cache untrustworthy (as `untrust` does), then checks that the next
/// starts run neither the genuine copy left there nor a script planted in its place.
fn untrusted_cache_is_bypassed(name: &str, untrust: impl Fn(&CacheHome)) {
    let home = CacheHome::new(name);
    let first = home.run_from();
    assert!(
        first.starts_with(home.cache()),
        "not cached: {}",
        first.display()
    );
    untrust(&home);
    let second = home.run_from();
    assert!(
        !second.starts_with(home.cache()),
        "ran from the untrusted cache: {}",
        second.display()
    );
    let proof = home.0.join("planted-code-ran");
    let size = std::fs::metadata(&first).unwrap().len() as usize;
    std::fs::write(&first, planted_script(&proof, size)).unwrap();
    untrust(&home);
    home.run_from();
    assert!(!proof.exists(), "the planted file ran");
}

#[test]
#[cfg_attr(
    not(coproq_root),
    ignore = "needs root, to plant files as another user"
)]
fn item11_a_cache_directory_of_another_user_is_bypassed() {
    untrusted_cache_is_bypassed("other-owner", |home| {
        chown(&home.cache(), OTHER_USER);
        for file in home.cached() {
            chown(&file, OTHER_USER);
        }
    });
}

#[test]
fn item11_a_cache_directory_others_may_write_is_bypassed() {
    untrusted_cache_is_bypassed("writable-dir", |home| {
        std::fs::set_permissions(home.cache(), std::fs::Permissions::from_mode(0o777)).unwrap();
    });
}

#[test]
fn item11_a_cache_below_a_directory_others_may_write_is_bypassed() {
    untrusted_cache_is_bypassed("writable-parent", |home| {
        std::fs::set_permissions(&home.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    });
}

#[test]
#[cfg_attr(
    not(coproq_root),
    ignore = "needs root, to plant files as another user"
)]
fn item11_a_cached_file_of_another_user_is_replaced_never_run() {
    let home = CacheHome::new("other-file");
    let cached = home.run_from();
    // The genuine bytes, but another user's file: shipped anew, and replaced.
    chown(&cached, OTHER_USER);
    let planted = std::fs::metadata(&cached).unwrap();
    assert_eq!(home.run_from(), cached);
    let now = std::fs::metadata(&cached).unwrap();
    assert_eq!(now.uid(), 0, "another user's file was kept");
    assert_ne!(now.ino(), planted.ino(), "another user's file was kept");
    // A script of another user's: never run.
    let proof = home.0.join("planted-code-ran");
    std::fs::write(&cached, planted_script(&proof, now.len() as usize)).unwrap();
    chown(&cached, OTHER_USER);
    home.run_from();
    assert!(!proof.exists(), "the planted file ran");
}

/// The CRC register of POSIX `cksum` (CRC-32, MSB first, polynomial 0x04C11DB7) after
/// `data`, starting from `crc`.
fn cksum_crc(mut crc: u32, data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut c = (i as u32) << 24;
            for _ in 0..8 {
                c = if c & 0x8000_0000 != 0 {
                    c << 1 ^ 0x04C1_1DB7
                } else {
                    c << 1
                };
            }
            *entry = c;
        }
        table
    });
    for &byte in data {
        crc = crc << 8 ^ table[((crc >> 24) as u8 ^ byte) as usize];
    }
    crc
}

/// The four bytes that, appended after a register of `state`, bring it to `target`: the
/// map from those bytes to the register is linear over GF(2), so the 32 unit vectors'
/// images give a system that Gaussian elimination solves.
fn crc_forcing_bytes(state: u32, target: u32) -> [u8; 4] {
    let image = |x: u32| cksum_crc(state, &x.to_be_bytes());
    let base = image(0);
    // Rows: (column image, the input bit it came from), reduced as we go.
    let mut rows: Vec<(u32, u32)> = (0..32).map(|j| (image(1 << j) ^ base, 1u32 << j)).collect();
    let mut want = (target ^ base, 0u32);
    for bit in (0..32).rev() {
        let Some(pivot) = rows.iter().position(|(img, _)| img >> bit & 1 == 1) else {
            panic!("the CRC map is not invertible");
        };
        let (img, input) = rows.swap_remove(pivot);
        for row in &mut rows {
            if row.0 >> bit & 1 == 1 {
                row.0 ^= img;
                row.1 ^= input;
            }
        }
        if want.0 >> bit & 1 == 1 {
            want.0 ^= img;
            want.1 ^= input;
        }
    }
    want.1.to_be_bytes()
}

fn cksum_of(path: &Path) -> String {
    let out = Command::new("cksum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn item11_a_forged_copy_with_the_same_size_and_crc_is_never_run() {
    let home = CacheHome::new("forged");
    let cached = home.run_from();
    assert!(
        cached.starts_with(home.cache()),
        "not cached: {}",
        cached.display()
    );
    let genuine = std::fs::read(&cached).unwrap();
    let proof = home.0.join("forged-code-ran");
    let mut forged = planted_script(&proof, genuine.len() - 4);
    let force = crc_forcing_bytes(cksum_crc(0, &forged), cksum_crc(0, &genuine));
    forged.extend_from_slice(&force);
    std::fs::write(&cached, &forged).unwrap();
    // What `cksum` checked (size and CRC) cannot tell the forgery from the genuine file.
    let genuine_copy = home.0.join("genuine");
    std::fs::write(&genuine_copy, &genuine).unwrap();
    assert_eq!(
        cksum_of(&cached),
        cksum_of(&genuine_copy),
        "the forgery is not one"
    );
    let again = home.run_from();
    assert!(!proof.exists(), "the forged file ran");
    assert_eq!(again, cached);
    assert!(
        std::fs::read(&cached).unwrap() == genuine,
        "the forgery was kept"
    );
}

#[test]
fn item11_planted_links_at_old_temporary_names_are_never_written_through() {
    let home = CacheHome::new("links");
    let victim = home.0.join("victim");
    std::fs::write(&victim, b"a file of root's").unwrap();
    // Where the old script wrote: `<name>.<pid>.tmp`, for the next 2 000 pids.
    let name = {
        let probe = CacheHome::new("links-probe");
        let cached = probe.run_from();
        cached.file_name().unwrap().to_owned()
    };
    std::fs::create_dir_all(home.cache()).unwrap();
    std::fs::set_permissions(home.cache(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let last_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .map_or(1000, |s| s.trim().parse().unwrap_or(1000));
    let mut links = Vec::new();
    for pid in last_pid..last_pid + 2000 {
        let link = home
            .cache()
            .join(format!("{}.{pid}.tmp", name.to_string_lossy()));
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        links.push(link);
    }
    let ran = home.run_from();
    assert!(
        ran.starts_with(home.cache()),
        "not cached: {}",
        ran.display()
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"a file of root's");
    for link in &links {
        assert_eq!(std::fs::read_link(link).unwrap(), victim);
    }
}

#[test]
fn item11_the_worker_gets_the_users_umask_not_the_scripts() {
    // SAFETY: umask cannot fail; the old mask is put back at once.
    let ours = unsafe {
        let mask = libc::umask(0o022);
        libc::umask(mask);
        mask as u32
    };
    let home = CacheHome::new("umask");
    for round in ["shipped", "cached"] {
        let w = home.start(&[]).unwrap();
        assert_eq!(call::<u32>(&w, "umask", ()).unwrap(), ours, "{round}");
        w.close();
    }
}

#[test]
fn item11_a_failed_transfer_leaves_no_temporary_file() {
    // A far side whose `head` fails half-way, as on a full disk.
    let home = CacheHome::new("full-disk");
    let bin = home.0.join("bin");
    let tmp = home.0.join("tmp");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let head = bin.join("head");
    std::fs::write(
        &head,
        "#!/bin/sh\ndd bs=4096 count=16 2>/dev/null\necho 'head: write error: No space left on device' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&head, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let err = home
        .start(&[("PATH", Path::new(&path)), ("TMPDIR", &tmp)])
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    let left: Vec<_> = home
        .cached()
        .into_iter()
        .chain(std::fs::read_dir(&tmp).unwrap().flatten().map(|e| e.path()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// Item 12: a program in secure-execution mode ignores the worker marker.

#[test]
#[cfg_attr(
    not(coproq_setuid),
    ignore = "needs root and a temporary directory where set-user-ID bits count"
)]
fn item12_a_setuid_program_ignores_the_worker_marker_and_runs_main() {
    let copy = ScratchFile::new("i25", "secure_main");
    std::fs::copy(env!("CARGO_BIN_EXE_secure_main"), &*copy).unwrap();
    let dir = copy.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |marker: &str| {
        Command::new(&*copy)
            .uid(OTHER_USER)
            .gid(OTHER_USER)
            .env("COPROQ_WORKER", marker)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let markers = [
        "remote:0:1:1:1024:-1",
        "fork:0:1:1:1024:-1",
        "spawn:0:1:1:1024:-1",
    ];
    // Not set-user-ID: the marker is honoured (and, naming another parent, refused).
    std::fs::set_permissions(&*copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plain = run(markers[1]);
    assert_eq!(plain.status.code(), Some(2), "{plain:?}");
    // Set-user-ID root, run by another user: the marker is ignored, `main` runs.
    std::fs::set_permissions(&*copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(std::fs::metadata(&*copy).unwrap().uid(), 0);
    for marker in markers {
        let out = run(marker);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{marker}: {out:?}");
        assert!(
            stdout.contains(&format!("main ran: uid {OTHER_USER} euid 0")),
            "{marker}: {stdout}"
        );
        assert!(
            stdout.contains("marker seen by main: false"),
            "{marker}: {stdout}"
        );
    }
}
