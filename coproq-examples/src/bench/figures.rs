//! The figures of the performance targets, and how each implementation measures them.

use std::time::Duration;

use crate::ceiling::Wait;
use crate::link::Bulk;
use crate::{async_link, ceiling, concurrent, link, pool, raw, ssh};

/// How a figure's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Microseconds per operation: lower is better.
    Micros,
    /// Operations per second: higher is better.
    PerSec,
    /// Bytes per second: higher is better.
    BytesPerSec,
    /// KiB: reported, no direction.
    KiB,
}

/// What a figure must reach.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// coproq / baseline at most this (time-like figures).
    RatioAtMost(f64),
    /// coproq / baseline at least this (throughput-like figures).
    RatioAtLeast(f64),
    /// coproq's own median at least this.
    AtLeast(f64),
    /// coproq's own median at most this.
    AtMost(f64),
    /// coproq's own median at most the first, and coproq / baseline at most the second.
    AtMostAndRatioAtMost(f64, f64),
    /// Reported only.
    Report,
}

/// One figure: which implementations measure it, on which CPU, against which target.
#[derive(Debug)]
pub(crate) struct Figure {
    pub(crate) key: &'static str,
    pub(crate) title: &'static str,
    pub(crate) unit: Unit,
    /// The first is the baseline of the ratio, the second is coproq.
    pub(crate) impls: &'static [&'static str],
    /// Peer crates measured with `--peers`.
    pub(crate) peers: &'static [&'static str],
    /// The CPU this process (the caller) is pinned to.
    pub(crate) pin: Option<usize>,
    /// The CPU the worker is pinned to, if different.
    pub(crate) worker_pin: Option<usize>,
    pub(crate) target: Target,
}

pub(crate) const FIGURES: &[Figure] = &[
    Figure {
        key: "latency-1cpu",
        title: "sequential call, both processes on one CPU",
        unit: Unit::Micros,
        impls: &["raw", "coproq"],
        peers: &["ipc-channel", "tarpc", "procspawn"],
        pin: Some(0),
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "latency-unpinned",
        title: "sequential call, unpinned (caller and worker free to use different CPUs)",
        unit: Unit::Micros,
        impls: &["raw", "coproq"],
        peers: &["ipc-channel", "tarpc", "procspawn"],
        pin: None,
        worker_pin: None,
        target: Target::AtMostAndRatioAtMost(5.0, 0.15),
    },
    Figure {
        key: "latency-2cpu",
        title: "sequential call, caller and worker pinned to different CPUs",
        unit: Unit::Micros,
        impls: &["raw", "coproq"],
        peers: &["ipc-channel", "tarpc", "procspawn"],
        pin: Some(0),
        worker_pin: Some(1),
        target: Target::RatioAtMost(1.2),
    },
    Figure {
        key: "threads-16",
        title: "blocking calls from 16 threads on one link, unpinned: spin off vs on",
        unit: Unit::PerSec,
        impls: &["spin-off", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtLeast(5e5),
    },
    Figure {
        key: "threads-16-ceiling",
        title: "the machine's ceiling for 16 blocking threads: round trips to a spinning server \
                thread in one process, no pipe, no work; callers parked vs yielding",
        unit: Unit::PerSec,
        impls: &["park", "yield"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "idle-cpu",
        title: "CPU time of an idle link over 10 s (both processes, less the cost of measuring)",
        unit: Unit::Micros,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(1_000.0),
    },
    Figure {
        key: "sleeping-handler-cpu",
        title: "caller CPU per call to a handler that sleeps 1 ms: spin off vs on",
        unit: Unit::Micros,
        impls: &["spin-off", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.1),
    },
    Figure {
        key: "pool-spin",
        title: "CPU-bound 2 ms jobs, pool of N = cores, per worker: spin off vs on",
        unit: Unit::PerSec,
        impls: &["spin-off", "pool"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.97),
    },
    Figure {
        key: "pipelined",
        title: "pipelined calls from one thread",
        unit: Unit::PerSec,
        impls: &["raw", "coproq"],
        peers: &["ipc-channel", "tarpc", "procspawn"],
        pin: None,
        worker_pin: None,
        target: Target::AtLeast(8e6),
    },
    Figure {
        key: "concurrency-sleepers",
        title: "16 threads each call a handler that sleeps 50 ms, all at once, one link \
                with `concurrency(16)`: time until all answered",
        unit: Unit::Micros,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(60_000.0),
    },
    Figure {
        key: "concurrency-latency",
        title: "sequential small call to a worker with `concurrency(16)`, against the default",
        unit: Unit::Micros,
        impls: &["concurrency-1", "concurrency-16"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "async-latency",
        title: "sequential call to an async handler ready at once, against a blocking handler",
        unit: Unit::Micros,
        impls: &["sync", "async"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "async-pipelined",
        title: "pipelined calls from one thread to an async handler, against a blocking one",
        unit: Unit::PerSec,
        impls: &["sync", "async"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.5),
    },
    Figure {
        key: "async-fanout",
        title: "1 000 tokio tasks each call an async method that awaits a 50 ms tokio sleep, \
                all at once: time until every call answered",
        unit: Unit::Micros,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(150_000.0),
    },
    Figure {
        key: "async-fanout-stall",
        title: "the same: the longest the callers' runtime thread went without running a \
                1 ms ticker",
        unit: Unit::Micros,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(10_000.0),
    },
    Figure {
        key: "pipelined-issue",
        title: "the caller's share of a pipelined call: `call_async` with no reply ever coming",
        unit: Unit::PerSec,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "pipelined-items",
        title: "small items sent 1 000 to a call (`Vec<u64>` in and out), calls pipelined from \
                one thread: items per second",
        unit: Unit::PerSec,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "pipelined-pairs",
        title: "the same with pairs (`Vec<(u64, u64)>`), which are checked element by element: \
                items per second",
        unit: Unit::PerSec,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "pipelined-structs",
        title: "the same with two-field structs (`Vec<Point>`, `Point { x: u64, y: u64 }`), \
                checked by field name: items per second",
        unit: Unit::PerSec,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "events",
        title: "events delivered, confirmed by a call",
        unit: Unit::PerSec,
        impls: &["raw", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtLeast(25e6),
    },
    Figure {
        key: "bulk-16mib",
        title: "16 MiB echo (`ByteBuf`, dynamic)",
        unit: Unit::BytesPerSec,
        impls: &["raw", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "bulk-16mib-typed",
        title: "16 MiB echo (`Vec<u8>`, typed)",
        unit: Unit::BytesPerSec,
        impls: &["raw", "typed"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "bulk-16mib-vec",
        title: "16 MiB echo (`Vec<u8>`, dynamic)",
        unit: Unit::BytesPerSec,
        impls: &["raw", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "bulk-16mib-result",
        title: "16 MiB echo (`Result<Vec<u8>, E>`, typed)",
        unit: Unit::BytesPerSec,
        impls: &["raw", "typed"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "startup",
        title: "start a worker, first reply, close",
        unit: Unit::Micros,
        impls: &["raw", "coproq"],
        peers: &["ipc-channel", "tarpc", "procspawn"],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "typed-vs-dynamic",
        title: "typed call vs dynamic call (one CPU)",
        unit: Unit::Micros,
        impls: &["coproq", "typed"],
        peers: &[],
        pin: Some(0),
        worker_pin: None,
        target: Target::RatioAtMost(1.05),
    },
    Figure {
        key: "pool-scaling",
        title: "CPU-bound 2 ms jobs per worker: pool of N = cores vs pool of one",
        unit: Unit::PerSec,
        impls: &["one-worker", "pool"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.9),
    },
    Figure {
        key: "pool-overhead",
        title: "sequential call, pool of one vs single link (one CPU)",
        unit: Unit::Micros,
        impls: &["coproq", "pool"],
        peers: &[],
        pin: Some(0),
        worker_pin: None,
        target: Target::RatioAtMost(1.2),
    },
    Figure {
        key: "pool-recovery",
        title: "a worker killed (`SIGKILL`) until its replacement answers (median)",
        unit: Unit::Micros,
        impls: &["pool"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(5000.0),
    },
    Figure {
        key: "pool-pipelined",
        title: "pipelined small calls through a pool of two",
        unit: Unit::PerSec,
        impls: &["pool"],
        peers: &["procspawn"],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "pool-compress",
        title: "64 KiB compression jobs (flate2) over every core: rayon threads (no isolation) vs a pool with default settings",
        unit: Unit::PerSec,
        impls: &["rayon", "pool"],
        peers: &["procspawn"],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "ssh-latency",
        title: "sequential call over loopback ssh vs `ssh host cat`",
        unit: Unit::Micros,
        impls: &["ssh-cat", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "ssh-pipelined",
        title: "pipelined calls over loopback ssh vs 8-byte messages through `ssh host cat`",
        unit: Unit::PerSec,
        impls: &["ssh-cat", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "ssh-via-startup",
        title: "`via(ssh).fork` to the first reply: executable shipped vs cached (median)",
        unit: Unit::Micros,
        impls: &["shipped", "cached"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "idle-worker-rss",
        title: "RSS of an idle worker",
        unit: Unit::KiB,
        impls: &["raw", "coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "per-link-rss",
        title: "parent RSS per open link",
        unit: Unit::KiB,
        impls: &["coproq"],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
];

/// Sizes: full run, or `--quick`.
struct Sizes {
    latency: u32,
    /// Calls from all threads together.
    threads: u32,
    /// Calls to a handler that sleeps 1 ms.
    sleeping: u32,
    idle: Duration,
    pipelined: u32,
    events: u32,
    bulk: u32,
    startup: u32,
    /// 2 ms jobs per worker.
    jobs: u32,
    recoveries: u32,
    /// 64 KiB compression jobs.
    compress: u32,
}

const FULL: Sizes = Sizes {
    latency: 20_000,
    threads: 400_000,
    sleeping: 1_000,
    idle: Duration::from_secs(10),
    pipelined: 200_000,
    events: 2_000_000,
    bulk: 12,
    startup: 20,
    jobs: 250,
    recoveries: 21,
    compress: 2_000,
};
const QUICK: Sizes = Sizes {
    latency: 3_000,
    threads: 100_000,
    sleeping: 300,
    idle: Duration::from_secs(2),
    pipelined: 100_000,
    events: 500_000,
    bulk: 4,
    startup: 8,
    jobs: 60,
    recoveries: 7,
    compress: 400,
};

const BULK: usize = 16 << 20;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What one measurement found: the figure's value, and for latency, pipelined and event
/// figures the CPU time (µs, both processes) per operation.
pub(crate) type Measured = (f64, Option<f64>);

/// Measures `figure` with implementation `imp` in this process.
pub(crate) fn measure(figure: &Figure, imp: &str, quick: bool) -> Result<Measured, String> {
    let n = if quick { &QUICK } else { &FULL };
    let in_micros = |(latency, cpu): (Duration, f64)| (micros(latency), cpu);
    let with_cpu: Result<(f64, f64), String> = match (figure.key, imp) {
        ("latency-1cpu" | "latency-2cpu" | "latency-unpinned", "raw") => raw::latency(n.latency)
            .map(in_micros)
            .map_err(|e| e.to_string()),
        ("latency-1cpu" | "latency-2cpu" | "latency-unpinned", "coproq") => {
            link::latency_and_cpu(n.latency)
                .map(in_micros)
                .map_err(|e| e.to_string())
        }
        ("pipelined", "raw") => raw::pipelined(n.pipelined).map_err(|e| e.to_string()),
        ("pipelined", "coproq") => link::pipelined(n.pipelined).map_err(|e| e.to_string()),
        ("pipelined-items", "coproq") => {
            link::pipelined_items::<u64>(10 * n.pipelined).map_err(|e| e.to_string())
        }
        ("pipelined-pairs", "coproq") => {
            link::pipelined_items::<(u64, u64)>(10 * n.pipelined).map_err(|e| e.to_string())
        }
        ("pipelined-structs", "coproq") => {
            link::pipelined_items::<link::Point>(10 * n.pipelined).map_err(|e| e.to_string())
        }
        ("events", "raw") => raw::events(n.events).map_err(|e| e.to_string()),
        ("events", "coproq") => link::events(n.events).map_err(|e| e.to_string()),
        _ => return measure_value(figure, imp, n).map(|value| (value, None)),
    };
    with_cpu.map(|(value, cpu)| (value, Some(cpu)))
}

/// Measures a figure that is one value.
fn measure_value(figure: &Figure, imp: &str, n: &Sizes) -> Result<f64, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let off = Some(Duration::ZERO);
    match (figure.key, imp) {
        ("typed-vs-dynamic", "coproq") => link::latency(n.latency).map(micros).map_err(|e| err(&e)),
        ("concurrency-sleepers", "coproq") => concurrent::sleepers(16).map_err(|e| err(&e)),
        ("concurrency-latency", "concurrency-1") => {
            concurrent::latency(1, n.latency).map_err(|e| err(&e))
        }
        ("concurrency-latency", "concurrency-16") => {
            concurrent::latency(16, n.latency).map_err(|e| err(&e))
        }
        ("async-latency", "sync") => async_link::latency("echo", n.latency).map_err(|e| err(&e)),
        ("async-latency", "async") => {
            async_link::latency("echo_async", n.latency).map_err(|e| err(&e))
        }
        ("async-pipelined", "sync") => {
            async_link::pipelined("echo", n.pipelined).map_err(|e| err(&e))
        }
        ("async-pipelined", "async") => {
            async_link::pipelined("echo_async", n.pipelined).map_err(|e| err(&e))
        }
        ("async-fanout", "coproq") => async_link::fanout(1000).map(|(took, _)| took),
        ("async-fanout-stall", "coproq") => async_link::fanout(1000).map(|(_, stall)| stall),
        ("threads-16", "spin-off") => link::threads(16, n.threads, off).map_err(|e| err(&e)),
        ("threads-16", "coproq") => link::threads(16, n.threads, None).map_err(|e| err(&e)),
        ("threads-16-ceiling", "park") => Ok(ceiling::threads(16, n.threads, Wait::Park)),
        ("threads-16-ceiling", "yield") => Ok(ceiling::threads(16, n.threads, Wait::Yield)),
        ("idle-cpu", "coproq") => link::idle_cpu(n.idle).map_err(|e| err(&e)),
        ("sleeping-handler-cpu", "spin-off") => {
            link::sleeping_handler_cpu(n.sleeping, off).map_err(|e| err(&e))
        }
        ("sleeping-handler-cpu", "coproq") => {
            link::sleeping_handler_cpu(n.sleeping, None).map_err(|e| err(&e))
        }
        ("pool-spin", "spin-off") => pool::scaling(pool::cores(), n.jobs, off).map_err(|e| err(&e)),
        ("pool-spin", "pool") => pool::scaling(pool::cores(), n.jobs, None).map_err(|e| err(&e)),
        ("typed-vs-dynamic", "typed") => link::typed_latency(n.latency)
            .map(micros)
            .map_err(|e| err(&e)),
        ("pipelined-issue", "coproq") => link::pipelined_issue(n.pipelined).map_err(|e| err(&e)),
        ("bulk-16mib" | "bulk-16mib-typed" | "bulk-16mib-vec" | "bulk-16mib-result", "raw") => {
            raw::bulk(BULK, n.bulk).map_err(|e| err(&e))
        }
        ("bulk-16mib", "coproq") => link::bulk(BULK, n.bulk, Bulk::ByteBuf).map_err(|e| err(&e)),
        ("bulk-16mib-vec", "coproq") => link::bulk(BULK, n.bulk, Bulk::Vec).map_err(|e| err(&e)),
        ("bulk-16mib-typed", "typed") => link::bulk(BULK, n.bulk, Bulk::Typed).map_err(|e| err(&e)),
        ("bulk-16mib-result", "typed") => {
            link::bulk(BULK, n.bulk, Bulk::TypedResult).map_err(|e| err(&e))
        }
        ("startup", "raw") => raw::startup(n.startup).map(micros).map_err(|e| err(&e)),
        ("startup", "coproq") => link::startup(n.startup).map(micros).map_err(|e| err(&e)),
        ("idle-worker-rss", "raw") => raw::idle_rss().map(|kib| kib as f64).map_err(|e| err(&e)),
        ("idle-worker-rss", "coproq") => {
            link::idle_rss().map(|kib| kib as f64).map_err(|e| err(&e))
        }
        ("per-link-rss", "coproq") => link::per_link_rss(20).map_err(|e| err(&e)),
        ("pool-scaling", "one-worker") => pool::scaling(1, n.jobs, None).map_err(|e| err(&e)),
        ("pool-scaling", "pool") => pool::scaling(pool::cores(), n.jobs, None).map_err(|e| err(&e)),
        ("pool-overhead", "coproq") => link::latency(n.latency).map(micros).map_err(|e| err(&e)),
        ("pool-overhead", "pool") => pool::latency(n.latency).map(micros).map_err(|e| err(&e)),
        ("pool-recovery", "pool") => pool::recovery(n.recoveries).map(micros),
        ("pool-pipelined", "pool") => pool::pipelined(n.pipelined).map_err(|e| err(&e)),
        ("pool-compress", "rayon") => Ok(pool::rayon_compress(n.compress)),
        ("pool-compress", "pool") => pool::compress(n.compress).map_err(|e| err(&e)),
        ("ssh-latency", "ssh-cat") => ssh::raw_latency(n.latency / 4).map(micros),
        ("ssh-latency", "coproq") => ssh::latency(n.latency / 4).map(micros),
        ("ssh-pipelined", "ssh-cat") => ssh::raw_pipelined(n.pipelined),
        ("ssh-pipelined", "coproq") => ssh::pipelined(n.pipelined),
        ("ssh-via-startup", "shipped") => ssh::via_startup(n.recoveries / 3 + 1, false).map(micros),
        ("ssh-via-startup", "cached") => ssh::via_startup(n.recoveries / 3 + 1, true).map(micros),
        #[cfg(feature = "peers")]
        (key, imp) if matches!(imp, "ipc-channel" | "tarpc" | "procspawn") => {
            let sizes = crate::peers::Sizes {
                latency: n.latency,
                pipelined: n.pipelined,
                startup: n.startup,
                compress: n.compress,
            };
            crate::peers::measure(key, imp, &sizes)
                .unwrap_or_else(|| Err(format!("no implementation {imp} of {key}")))
        }
        (key, imp) => Err(format!("no implementation {imp} of {key}")),
    }
}
