//! Spinning before blocking costs CPU only while it pays: an idle link uses none once its
//! budget is spent, and a caller of slow handlers stops spinning. CPU time comes from
//! `getrusage` on both ends (the worker reports its own), so these hold on a loaded
//! machine: load adds wall time, not CPU time of ours. One test per binary on purpose:
//! `getrusage` counts the whole process, and another test running beside it would count.

use std::time::Duration;

use coproq::Coprocess;
use coproq_tests::{call, cpu_time};

/// A worker with `echo`, `sleep(ms)` and `cpu()` (its own CPU time so far, in µs).
fn worker(spin: Option<Duration>) -> Coprocess {
    let builder = Coprocess::builder();
    let builder = match spin {
        Some(budget) => builder.spin(budget),
        None => builder,
    };
    builder
        .fork(|parent| {
            parent
                .handle("echo", |x: u64| x)
                .handle("sleep", |ms: u64| {
                    std::thread::sleep(Duration::from_millis(ms));
                })
                .handle("cpu", |()| {
                    u64::try_from(coproq_tests::cpu_time().as_micros()).unwrap_or(u64::MAX)
                });
        })
        .expect("fork")
}

/// CPU time both ends used while `body` ran.
fn cpu_of_both(w: &Coprocess, body: impl FnOnce()) -> (Duration, Duration) {
    let cpu = |w: &Coprocess| Duration::from_micros(call::<u64>(w, "cpu", ()).expect("cpu"));
    let (ours, theirs) = (cpu_time(), cpu(w));
    body();
    (
        cpu_time().saturating_sub(ours),
        cpu(w).saturating_sub(theirs),
    )
}

#[test]
fn spinning_costs_cpu_only_while_it_pays() {
    an_idle_link_uses_no_cpu_once_the_budget_is_spent();
    a_slow_handler_is_waited_for_without_spinning();
}

fn an_idle_link_uses_no_cpu_once_the_budget_is_spent() {
    // A budget of 20 ms makes a spin that never stopped plain: it would use a whole CPU
    // on each end over the idle second.
    for spin in [None, Some(Duration::from_millis(20)), Some(Duration::ZERO)] {
        let w = worker(spin);
        for i in 0..2_000u64 {
            assert_eq!(call::<u64>(&w, "echo", i).unwrap(), i);
        }
        let (ours, theirs) = cpu_of_both(&w, || std::thread::sleep(Duration::from_secs(1)));
        assert!(
            ours < Duration::from_millis(150) && theirs < Duration::from_millis(150),
            "spin {spin:?}: an idle second cost the parent {ours:?} and the worker {theirs:?} of CPU"
        );
        w.close();
    }
}

fn a_slow_handler_is_waited_for_without_spinning() {
    // 30 calls that take 20 ms, with a 5 ms budget: spinning through every one would cost
    // the caller 150 ms of CPU; backing off after two misses in a row, about 25 ms.
    let w = worker(Some(Duration::from_millis(5)));
    let (ours, _) = cpu_of_both(&w, || {
        for _ in 0..30 {
            call::<()>(&w, "sleep", 20u64).unwrap();
        }
    });
    assert!(
        ours < Duration::from_millis(90),
        "waiting for 30 slow calls cost the caller {ours:?} of CPU"
    );
    w.close();
}
