//! Pools against real worker processes: dispatch, supervision, deadlines, cancellation,
//! retries, recycling, and clean shutdown.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use coproq::{Coprocess, Error, Pool};
use coproq_tests::{CALL_LIMIT, ScratchFile, open_fds, process_gone, wait_until};

/// A file path for one test, removed with its directory when dropped.
fn scratch(name: &str) -> ScratchFile {
    ScratchFile::new("pool", name)
}

/// Handlers every test worker has.
fn serve(parent: &Coprocess) {
    parent.handle("pid", |()| std::process::id());
    parent.handle("double", |n: u64| n * 2);
    parent.handle("sleep_pid", |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    });
    parent.handle("hang", |()| -> () {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    parent.handle("abort", |()| -> () { std::process::abort() });
    parent.handle("touch", |path: String| std::fs::write(path, b"ran").is_ok());
    // Dies the first time (the marker file does not exist yet), answers after.
    parent.handle("die_once", |marker: String| {
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
            .is_ok()
        {
            std::process::abort();
        }
        std::process::id()
    });
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&counter);
    parent.on("reload", move |()| {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    parent.handle("reloads", move |()| {
        counter.load(std::sync::atomic::Ordering::Relaxed)
    });
}

fn pool(size: usize) -> coproq::PoolBuilder {
    Pool::builder().size(size).startup_timeout(CALL_LIMIT)
}

fn wait<R>(p: coproq::Pending<R>) -> coproq::Result<R> {
    p.wait_timeout(CALL_LIMIT)
}

#[test]
fn least_loaded_dispatch_uses_every_worker() {
    let pool = pool(3).fork(serve).unwrap();
    let workers: HashSet<u32> = pool.workers().iter().filter_map(Coprocess::pid).collect();
    assert_eq!(workers.len(), 3);
    let pending: Vec<_> = (0..30)
        .map(|_| pool.call_async::<u32>("sleep_pid", 20u64))
        .collect();
    let used: HashSet<u32> = pending.into_iter().map(|p| wait(p).unwrap()).collect();
    assert_eq!(used, workers);
    let stats = pool.stats();
    assert_eq!((stats.size, stats.live, stats.calls), (3, 3, 30));
    assert_eq!((stats.queued, stats.in_flight, stats.failures), (0, 0, 0));
    pool.close();
}

#[test]
fn a_killed_workers_calls_fail_the_others_succeed_and_it_is_replaced() {
    let pool = pool(2).max_in_flight(8).fork(serve).unwrap();
    let victim = pool.workers()[0].pid().unwrap();
    let pending: Vec<_> = (0..16)
        .map(|_| pool.call_async::<u32>("sleep_pid", 300u64))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    coproq_tests::signal(victim, libc::SIGKILL);
    let (mut ok, mut disconnected) = (0, 0);
    for p in pending {
        match wait(p) {
            Ok(pid) => {
                assert_ne!(pid, victim);
                ok += 1;
            }
            Err(Error::Disconnected { status, .. }) => {
                assert!(status.is_none_or(|s| !s.success()), "{status:?}");
                disconnected += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, disconnected), (8, 8));
    assert!(wait_until(CALL_LIMIT, || pool.stats().restarts == 1
        && pool.stats().live == 2));
    let pids: HashSet<u32> = pool.workers().iter().filter_map(Coprocess::pid).collect();
    assert!(!pids.contains(&victim) && pids.len() == 2, "{pids:?}");
    assert_eq!(pool.stats().failures, 8);
    for _ in 0..10 {
        assert!(pool.call::<u32>("pid", ()).is_ok());
    }
}

#[test]
fn retries_send_a_call_whose_worker_died_to_another() {
    let marker = scratch("die-once");
    let pool = pool(2).retries(1).fork(serve).unwrap();
    let pid: u32 = pool.call("die_once", marker.as_str()).unwrap();
    assert!(pool.workers().iter().any(|w| w.pid() == Some(pid)));
    // At most once by default.
    let marker = scratch("die-once-no-retry");
    let pool = self::pool(2).fork(serve).unwrap();
    let err = pool.call::<u32>("die_once", marker.as_str()).unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err}");
}

#[test]
fn retries_keep_a_killed_workers_calls_alive() {
    let pool = pool(2).max_in_flight(8).retries(1).fork(serve).unwrap();
    let victim = pool.workers()[0].pid().unwrap();
    let pending: Vec<_> = (0..16)
        .map(|_| pool.call_async::<u32>("sleep_pid", 200u64))
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    coproq_tests::signal(victim, libc::SIGKILL);
    for p in pending {
        assert_ne!(wait(p).unwrap(), victim);
    }
}

#[test]
fn a_hung_handler_times_out_and_its_worker_is_replaced() {
    let timeout = Duration::from_millis(300);
    let pool = pool(2)
        .call_timeout(timeout)
        .kill_on_timeout(true)
        .fork(serve)
        .unwrap();
    let started = Instant::now();
    let err = pool.call::<()>("hang", ()).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "{took:?}"
    );
    // The pool keeps answering, and the hung worker is replaced.
    for _ in 0..10 {
        assert!(pool.call::<u32>("pid", ()).is_ok());
    }
    assert!(wait_until(CALL_LIMIT, || pool.stats().restarts == 1
        && pool.stats().live == 2));
    // A future past its deadline is ended by the supervisor.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let err = runtime
        .block_on(pool.call_async::<()>("hang", ()))
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[test]
fn a_worker_that_cannot_start_fails_the_pool_at_once() {
    let err = pool(2).fork(|_| panic!("no start for you")).unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("no start for you"), "{err}");
}

#[test]
fn a_crash_loop_breaks_the_pool_and_burns_no_cpu() {
    let pool = pool(1)
        .restart_limit(3, Duration::from_mins(1))
        .fork(serve)
        .unwrap();
    let started = Instant::now();
    let mut disconnected = 0;
    let reason = loop {
        match pool.call::<()>("abort", ()) {
            Err(Error::Disconnected { .. }) => disconnected += 1,
            Err(Error::PoolBroken { reason }) => break reason,
            other => panic!("unexpected {other:?}"),
        }
        assert!(started.elapsed() < CALL_LIMIT, "never broke");
    };
    assert_eq!(disconnected, 4, "{reason}");
    assert!(reason.contains("over the limit of 3"), "{reason}");
    assert!(reason.contains("signal: 6"), "{reason}");
    // From now on, at once.
    let started = Instant::now();
    for _ in 0..100 {
        let err = pool.call::<u32>("pid", ()).unwrap_err();
        assert!(matches!(err, Error::PoolBroken { .. }), "{err}");
    }
    assert!(pool.emit("reload", ()).is_err());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // And nothing restarts in the background.
    let before = pool.stats();
    let cpu = cpu_time();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pool.stats().restarts, before.restarts);
    assert_eq!(pool.stats().live, 0);
    let burnt = cpu_time().saturating_sub(cpu);
    assert!(
        burnt < Duration::from_millis(200),
        "{burnt:?} of CPU while idle"
    );
}

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn max_calls_per_worker_recycles_without_failing_a_call() {
    let pool = pool(2).max_calls_per_worker(5).fork(serve).unwrap();
    let mut pids = HashSet::new();
    for _ in 0..40 {
        pids.insert(pool.call::<u32>("pid", ()).unwrap());
    }
    let pending: Vec<_> = (0..40).map(|_| pool.call_async::<u32>("pid", ())).collect();
    for p in pending {
        pids.insert(wait(p).unwrap());
    }
    assert!(
        pids.len() >= 16,
        "only {} workers served 80 calls",
        pids.len()
    );
    let stats = pool.stats();
    assert_eq!((stats.failures, stats.restarts), (0, 0));
    pool.close();
    for pid in pids {
        assert!(
            wait_until(CALL_LIMIT, || process_gone(pid)),
            "{pid} lives on"
        );
    }
}

#[test]
fn map_keeps_input_order_with_bounded_memory() {
    let pool = pool(2).fork(serve).unwrap();
    let before = coproq_tests::peak_rss_kib();
    let mut count = 0u64;
    for (i, result) in pool.map::<u64, _, _>("double", 0..100_000u64).enumerate() {
        assert_eq!(result.unwrap(), 2 * i as u64);
        count += 1;
    }
    assert_eq!(count, 100_000);
    let grew = coproq_tests::peak_rss_kib().saturating_sub(before);
    assert!(grew < 64 * 1024, "peak memory grew by {grew} KiB");
}

#[test]
fn broadcast_reaches_every_live_worker() {
    let pool = pool(3).fork(serve).unwrap();
    assert_eq!(pool.broadcast("reload", ()).unwrap(), 3);
    for worker in pool.workers() {
        // A call after an event on the same link confirms the event arrived.
        assert_eq!(
            coproq_tests::call::<u64>(&worker, "reloads", ()).unwrap(),
            1
        );
    }
    pool.emit("reload", ()).unwrap();
    let total: u64 = pool
        .workers()
        .iter()
        .map(|w| coproq_tests::call::<u64>(w, "reloads", ()).unwrap())
        .sum();
    assert_eq!(total, 4);
}

#[test]
fn a_cancelled_queued_call_never_runs() {
    let pool = pool(1).max_in_flight(1).fork(serve).unwrap();
    let path = scratch("queued");
    let busy = pool.call_async::<u32>("sleep_pid", 300u64);
    let mut queued = pool.call_async::<bool>("touch", path.as_str());
    assert_eq!(pool.stats().queued, 1);
    queued.cancel();
    assert!(matches!(queued.wait(), Err(Error::Cancelled { .. })));
    assert_eq!(pool.stats().queued, 0);
    wait(busy).unwrap();
    // A dropped queued call is cancelled too.
    let dropped_path = scratch("dropped");
    let busy = pool.call_async::<u32>("sleep_pid", 100u64);
    drop(pool.call_async::<bool>("touch", dropped_path.as_str()));
    wait(busy).unwrap();
    assert!(
        pool.call::<bool>("touch", scratch("after").as_str())
            .unwrap()
    );
    assert!(
        !path.exists() && !dropped_path.exists(),
        "a cancelled call ran"
    );
}

#[test]
fn a_full_queue_blocks_callers_until_their_deadline() {
    let pool = pool(1)
        .max_in_flight(1)
        .queue_capacity(1)
        .call_timeout(Duration::from_millis(300))
        .fork(serve)
        .unwrap();
    let _busy = pool.call_async::<u32>("sleep_pid", 2_000u64);
    let _queued = pool.call_async::<u32>("pid", ());
    let started = Instant::now();
    let err = pool.call_async::<u32>("pid", ()).wait().unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn workers_call_the_pools_parent_handlers() {
    let pool = pool(2)
        .handle("progress", |n: u32| n + 1)
        .fork(|parent| {
            let p = parent.clone();
            parent.handle("work", move |n: u32| {
                p.call::<u32>("progress", n).unwrap() * 10
            });
        })
        .unwrap();
    let results: Vec<u32> = pool.map("work", 0..20u32).map(Result::unwrap).collect();
    assert_eq!(results, (0..20).map(|n| (n + 1) * 10).collect::<Vec<_>>());
}

#[coproq::service]
trait Calc {
    fn add(&self, a: i64, b: i64) -> i64;
    fn div(&self, a: i64, b: i64) -> Result<i64, String>;
}

struct Calculator;

impl Calc for Calculator {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    fn div(&self, a: i64, b: i64) -> Result<i64, String> {
        a.checked_div(b).ok_or_else(|| "division by zero".into())
    }
}

#[test]
fn typed_clients_work_over_a_pool() {
    let pool = pool(2)
        .fork(|parent| {
            parent.listen(CalcServer::new(Calculator));
        })
        .unwrap();
    let calc = CalcClient::new(&pool);
    assert_eq!(calc.add(2, 3).unwrap(), 5);
    assert_eq!(calc.div(1, 0).unwrap(), Err("division by zero".to_owned()));
    let pending: Vec<_> = (0..100).map(|i| calc.add_async(i, i)).collect();
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(wait(p).unwrap(), 2 * i as i64);
    }
}

#[test]
fn close_with_calls_in_flight_reaps_every_worker() {
    let pool = pool(3).fork(serve).unwrap();
    let pids: Vec<u32> = pool.workers().iter().filter_map(Coprocess::pid).collect();
    let pending: Vec<_> = (0..12)
        .map(|_| pool.call_async::<u32>("sleep_pid", 100u64))
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    pool.close();
    pool.close();
    for pid in &pids {
        assert!(process_gone(*pid), "{pid} was not reaped");
    }
    // Each call was answered (in flight, within the grace) or failed, none hangs.
    for p in pending {
        match wait(p) {
            Ok(_) | Err(Error::NotConnected | Error::Disconnected { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(matches!(
        pool.call::<u32>("pid", ()),
        Err(Error::NotConnected)
    ));
}

#[test]
fn a_thousand_pools_leak_no_descriptor_and_no_process() {
    let fds = open_fds();
    let mut pids = Vec::new();
    for _ in 0..1000 {
        let pool = pool(1).fork(serve).unwrap();
        pids.extend(pool.workers().iter().filter_map(Coprocess::pid));
        assert_eq!(pool.call::<u64>("double", 2u64).unwrap(), 4);
        drop(pool);
    }
    assert_eq!(pids.len(), 1000);
    assert!(pids.iter().all(|&pid| process_gone(pid)));
    assert!(
        wait_until(CALL_LIMIT, || open_fds() <= fds),
        "{} > {fds}",
        open_fds()
    );
}

#[test]
fn a_pool_of_spawned_worker_binaries() {
    let indices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&indices);
    let pool = pool(2)
        .handle("double", |x: i64| x * 2)
        .spawn(move |index| {
            seen.lock().unwrap().push(index);
            std::process::Command::new(env!("CARGO_BIN_EXE_echo_worker"))
        })
        .unwrap();
    // The seats start side by side, so their commands are made in no set order.
    let mut started = indices.lock().unwrap().clone();
    started.sort_unstable();
    assert_eq!(started, [0, 1]);
    assert_eq!(pool.call::<String>("upper", "abc").unwrap(), "ABC");
    // The worker calls the pool's parent handler back.
    assert_eq!(pool.call::<i64>("ask_parent", 21i64).unwrap(), 42);
    // A killed one is replaced from its seat's command.
    let victim = pool.workers()[0].pid().unwrap();
    coproq_tests::signal(victim, libc::SIGKILL);
    assert!(wait_until(CALL_LIMIT, || pool.stats().restarts == 1
        && pool.stats().live == 2));
    assert_eq!(indices.lock().unwrap().len(), 3);
    assert!(pool.call::<u32>("pid", ()).is_ok());
}

#[test]
fn a_pool_of_fork_workers_with_data() {
    let pool = pool(2)
        .fork_with(String::from("hello"), |parent, greeting| {
            parent.handle("greet", move |name: String| format!("{greeting}, {name}"));
        })
        .unwrap();
    let greetings: Vec<String> = pool
        .map("greet", ["a", "b", "c"])
        .map(Result::unwrap)
        .collect();
    assert_eq!(greetings, ["hello, a", "hello, b", "hello, c"]);
}

#[test]
fn async_callers_await_room_in_a_full_queue() {
    let pool = pool(1)
        .max_in_flight(1)
        .queue_capacity(1)
        .fork(serve)
        .unwrap();
    let busy = pool.call_async::<u32>("sleep_pid", 300u64);
    let queued = pool.call_async::<u32>("pid", ());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let started = Instant::now();
    let waited = runtime.block_on(async {
        // Full now: `ready` suspends the task until the queue moves.
        tokio::time::timeout(CALL_LIMIT, pool.ready()).await
    });
    assert!(waited.is_ok(), "ready never resolved");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let third = pool.call_async::<u32>("pid", ());
    for p in [busy, queued, third] {
        wait(p).unwrap();
    }
}

#[test]
fn a_timed_out_call_frees_its_workers_place_when_the_worker_answers() {
    let pool = pool(1)
        .max_in_flight(1)
        .call_timeout(Duration::from_millis(200))
        .fork(serve)
        .unwrap();
    for _ in 0..3 {
        let err = pool.call::<u32>("sleep_pid", 400u64).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        // Not killed: the worker finishes the call late, and its place comes back.
        assert!(
            wait_until(CALL_LIMIT, || pool.stats().in_flight == 0),
            "{:?}",
            pool.stats()
        );
        assert!(pool.call::<u32>("pid", ()).is_ok());
    }
    assert_eq!(pool.stats().restarts, 0);
}

#[test]
fn map_unordered_yields_results_as_they_complete_with_their_index() {
    // One call per worker at a time: the slow call holds up no call queued behind it.
    let pool = coproq::Pool::builder()
        .size(2)
        .max_in_flight(1)
        .fork(|parent| {
            parent.handle("nap", |ms: u64| {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                ms
            });
        })
        .unwrap();
    // The first item takes 2 s; the other 20 are quick.
    let items: Vec<u64> = std::iter::once(2000)
        .chain(std::iter::repeat_n(1, 20))
        .collect();
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    for (index, result) in pool.map_unordered::<u64, _, _>("nap", items.clone()) {
        assert_eq!(result.unwrap(), items[index]);
        seen.push((index, start.elapsed()));
    }
    let mut indices: Vec<usize> = seen.iter().map(|s| s.0).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..21).collect::<Vec<_>>());
    // The slow one comes last, and did not hold up the others.
    assert_eq!(seen.last().unwrap().0, 0, "{seen:?}");
    let quick_done = seen[seen.len() - 2].1;
    assert!(
        quick_done < std::time::Duration::from_millis(1500),
        "the quick items waited for the slow one: {seen:?}"
    );
    pool.close();
}

#[test]
fn map_unordered_kills_a_worker_whose_call_passed_its_timeout_as_a_wait_does() {
    let pool = coproq::Pool::builder()
        .size(2)
        .max_in_flight(1)
        .call_timeout(std::time::Duration::from_millis(500))
        .kill_on_timeout(true)
        .fork(|parent| {
            parent.handle("nap", |ms: u64| {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                ms
            });
        })
        .unwrap();
    let items: Vec<u64> = std::iter::once(60_000)
        .chain(std::iter::repeat_n(1, 10))
        .collect();
    let start = std::time::Instant::now();
    let mut hung = None;
    for (index, result) in pool.map_unordered::<u64, _, _>("nap", items.clone()) {
        match result {
            Ok(ms) => assert_eq!(ms, items[index]),
            Err(e) => {
                assert!(matches!(e, coproq::Error::Timeout { .. }), "{e:?}");
                hung = Some(index);
            }
        }
    }
    assert_eq!(hung, Some(0));
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    // The hung worker was killed and replaced, not left asleep in its seat.
    assert!(
        coproq_tests::wait_until(std::time::Duration::from_secs(20), || {
            pool.stats().restarts >= 1 && pool.stats().live == 2
        }),
        "{:?}",
        pool.stats()
    );
    assert_eq!(pool.call::<u64>("nap", 1u64).unwrap(), 1);
    pool.close();
}

#[test]
fn run_timeout_counts_running_time_only_and_kills_only_the_overrunning_worker() {
    let pool = coproq::Pool::builder()
        .size(2)
        .run_timeout(std::time::Duration::from_millis(800))
        .kill_on_timeout(true)
        .fork(|parent| {
            parent.handle("nap", |ms: u64| {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                ms
            });
        })
        .unwrap();
    // 200 jobs of 25 ms at once: about 2.5 s of queueing for the last, far past the
    // run_timeout, but none runs longer than it.
    let pending: Vec<_> = (0..200)
        .map(|_| pool.call_async::<u64>("nap", 25u64))
        .collect();
    for p in pending {
        assert_eq!(p.wait_timeout(coproq_tests::CALL_LIMIT).unwrap(), 25);
    }
    assert_eq!(pool.stats().restarts, 0, "{:?}", pool.stats());
    // One that runs too long fails with `Timeout` once it has run 800 ms, and only its
    // worker is killed.
    let start = std::time::Instant::now();
    let over = pool
        .call_async::<u64>("nap", 60_000u64)
        .wait_timeout(coproq_tests::CALL_LIMIT);
    assert!(
        matches!(over, Err(coproq::Error::Timeout { .. })),
        "{over:?}"
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(800));
    assert!(
        coproq_tests::wait_until(std::time::Duration::from_secs(20), || {
            let stats = pool.stats();
            stats.restarts == 1 && stats.live == 2
        }),
        "{:?}",
        pool.stats()
    );
    assert_eq!(pool.call::<u64>("nap", 1u64).unwrap(), 1);
    pool.close();
}

#[test]
fn a_call_timed_out_while_queued_in_a_worker_never_gets_the_healthy_worker_killed() {
    let pool = coproq::Pool::builder()
        .size(1)
        .max_in_flight(2)
        .kill_on_timeout(true)
        .fork(|parent| {
            parent.handle("nap", |ms: u64| {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                ms
            });
        })
        .unwrap();
    let running = pool.call_async::<u64>("nap", 600u64);
    std::thread::sleep(std::time::Duration::from_millis(50));
    // Sent to the same worker, behind the running call: it times out there unstarted.
    let queued = pool
        .call_async::<u64>("nap", 10u64)
        .wait_timeout(std::time::Duration::from_millis(200));
    assert!(
        matches!(queued, Err(coproq::Error::Timeout { .. })),
        "{queued:?}"
    );
    // The worker was not killed: the running call completes.
    assert_eq!(running.wait_timeout(coproq_tests::CALL_LIMIT).unwrap(), 600);
    assert_eq!(pool.stats().restarts, 0, "{:?}", pool.stats());
    pool.close();
}
