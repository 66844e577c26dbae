//! The figures of the performance targets, and how each implementation measures them.

use std::time::Duration;

use crate::ceiling::Wait;
use crate::link::Bulk;
use crate::raw::Transport;
use crate::shared::Carrier;
use crate::{async_link, ceiling, concurrent, link, pool, raw, shared, ssh};

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
    pub(crate) impls: &'static [Impl],
    /// Peer crates measured with `--peers`.
    pub(crate) peers: &'static [Impl],
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
        impls: &[
            Impl {
                name: "raw",
                run: |n| latency_cpu(raw::latency(n.latency)),
            },
            Impl {
                name: "coproq",
                run: |n| latency_cpu(link::latency_and_cpu(n.latency)),
            },
        ],
        peers: LATENCY_PEERS,
        pin: Some(0),
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "latency-unpinned",
        title: "sequential call, unpinned (caller and worker free to use different CPUs)",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "raw",
                run: |n| latency_cpu(raw::latency(n.latency)),
            },
            Impl {
                name: "coproq",
                run: |n| latency_cpu(link::latency_and_cpu(n.latency)),
            },
        ],
        peers: LATENCY_PEERS,
        pin: None,
        worker_pin: None,
        target: Target::AtMostAndRatioAtMost(5.0, 0.15),
    },
    Figure {
        key: "latency-2cpu",
        title: "sequential call, caller and worker pinned to different CPUs",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "raw",
                run: |n| latency_cpu(raw::latency(n.latency)),
            },
            Impl {
                name: "coproq",
                run: |n| latency_cpu(link::latency_and_cpu(n.latency)),
            },
        ],
        peers: LATENCY_PEERS,
        pin: Some(0),
        worker_pin: Some(1),
        target: Target::RatioAtMost(1.2),
    },
    Figure {
        key: "transport-1cpu",
        title: "the raw frames over two pipes vs one Unix socket pair: sequential round trip, \
                both processes on one CPU",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "pipe",
                run: |n| latency_cpu(raw::latency_over(n.latency, Transport::Pipe)),
            },
            Impl {
                name: "socket",
                run: |n| latency_cpu(raw::latency_over(n.latency, Transport::Socket)),
            },
        ],
        peers: &[],
        pin: Some(0),
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "transport-unpinned",
        title: "the raw frames over two pipes vs one Unix socket pair: sequential round trip, \
                unpinned",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "pipe",
                run: |n| latency_cpu(raw::latency_over(n.latency, Transport::Pipe)),
            },
            Impl {
                name: "socket",
                run: |n| latency_cpu(raw::latency_over(n.latency, Transport::Socket)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "transport-2cpu",
        title: "the raw frames over two pipes vs one Unix socket pair: sequential round trip, \
                caller and worker pinned to different CPUs",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "pipe",
                run: |n| latency_cpu(raw::latency_over(n.latency, Transport::Pipe)),
            },
            Impl {
                name: "socket",
                run: |n| latency_cpu(raw::latency_over(n.latency, Transport::Socket)),
            },
        ],
        peers: &[],
        pin: Some(0),
        worker_pin: Some(1),
        target: Target::Report,
    },
    Figure {
        key: "transport-bulk",
        title: "the raw frames over two pipes vs one Unix socket pair: 16 MiB echo",
        unit: Unit::BytesPerSec,
        impls: &[
            Impl {
                name: "pipe",
                run: |n| value(raw::bulk_over(BULK, n.bulk, Transport::Pipe)),
            },
            Impl {
                name: "socket",
                run: |n| value(raw::bulk_over(BULK, n.bulk, Transport::Socket)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "threads-16",
        title: "blocking calls from 16 threads on one link, unpinned: spin off vs on",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "spin-off",
                run: |n| value(link::threads(16, n.threads, OFF)),
            },
            Impl {
                name: "coproq",
                run: |n| value(link::threads(16, n.threads, None)),
            },
        ],
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
        impls: &[
            Impl {
                name: "park",
                run: |n| Ok((ceiling::threads(16, n.threads, Wait::Park), None)),
            },
            Impl {
                name: "yield",
                run: |n| Ok((ceiling::threads(16, n.threads, Wait::Yield), None)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "idle-cpu",
        title: "CPU time of an idle link over 10 s (both processes, less the cost of measuring)",
        unit: Unit::Micros,
        impls: &[Impl {
            name: "coproq",
            run: |n| value(link::idle_cpu(n.idle)),
        }],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(1_000.0),
    },
    Figure {
        key: "sleeping-handler-cpu",
        title: "caller CPU per call to a handler that sleeps 1 ms: spin off vs on",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "spin-off",
                run: |n| value(link::sleeping_handler_cpu(n.sleeping, OFF)),
            },
            Impl {
                name: "coproq",
                run: |n| value(link::sleeping_handler_cpu(n.sleeping, None)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.1),
    },
    Figure {
        key: "pool-spin",
        title: "CPU-bound 2 ms jobs, pool of N = cores, per worker: spin off vs on",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "spin-off",
                run: |n| value(pool::scaling(pool::cores(), n.jobs, OFF)),
            },
            Impl {
                name: "pool",
                run: |n| value(pool::scaling(pool::cores(), n.jobs, None)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.97),
    },
    Figure {
        key: "pipelined",
        title: "pipelined calls from one thread",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "raw",
                run: |n| with_cpu(raw::pipelined(n.pipelined)),
            },
            Impl {
                name: "coproq",
                run: |n| with_cpu(link::pipelined(n.pipelined)),
            },
        ],
        peers: PIPELINED_PEERS,
        pin: None,
        worker_pin: None,
        target: Target::AtLeast(8e6),
    },
    Figure {
        key: "concurrency-sleepers",
        title: "16 threads each call a handler that sleeps 50 ms, all at once, one link \
                with `concurrency(16)`: time until all answered",
        unit: Unit::Micros,
        impls: &[Impl {
            name: "coproq",
            run: |_| value(concurrent::sleepers(16)),
        }],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(60_000.0),
    },
    Figure {
        key: "concurrency-latency",
        title: "sequential small call to a worker with `concurrency(16)`, against the default",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "concurrency-1",
                run: |n| value(concurrent::latency(1, n.latency)),
            },
            Impl {
                name: "concurrency-16",
                run: |n| value(concurrent::latency(16, n.latency)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "async-latency",
        title: "sequential call to an async handler ready at once, against a blocking handler",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "sync",
                run: |n| value(async_link::latency("echo", n.latency)),
            },
            Impl {
                name: "async",
                run: |n| value(async_link::latency("echo_async", n.latency)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "async-pipelined",
        title: "pipelined calls from one thread to an async handler, against a blocking one",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "sync",
                run: |n| value(async_link::pipelined("echo", n.pipelined)),
            },
            Impl {
                name: "async",
                run: |n| value(async_link::pipelined("echo_async", n.pipelined)),
            },
        ],
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
        impls: &[Impl {
            name: "coproq",
            run: |_| value(async_link::fanout(1000).map(|(took, _)| took)),
        }],
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
        impls: &[Impl {
            name: "coproq",
            run: |_| value(async_link::fanout(1000).map(|(_, stall)| stall)),
        }],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(10_000.0),
    },
    Figure {
        key: "pipelined-issue",
        title: "the caller's share of a pipelined call: `call_async` with no reply ever coming",
        unit: Unit::PerSec,
        impls: &[Impl {
            name: "coproq",
            run: |n| value(link::pipelined_issue(n.pipelined)),
        }],
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
        impls: &[Impl {
            name: "coproq",
            run: |n| with_cpu(link::pipelined_items::<u64>(10 * n.pipelined)),
        }],
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
        impls: &[Impl {
            name: "coproq",
            run: |n| with_cpu(link::pipelined_items::<(u64, u64)>(10 * n.pipelined)),
        }],
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
        impls: &[Impl {
            name: "coproq",
            run: |n| with_cpu(link::pipelined_items::<link::Point>(10 * n.pipelined)),
        }],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "events",
        title: "events delivered, confirmed by a call",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "raw",
                run: |n| with_cpu(raw::events(n.events)),
            },
            Impl {
                name: "coproq",
                run: |n| with_cpu(link::events(n.events)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtLeast(25e6),
    },
    Figure {
        key: "map-1m",
        title: "1 000 000 small calls (`u64` to `u64`) from one thread: `call_async` each \
                vs `Coprocess::map` (runs of calls)",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "call_async",
                run: |n| with_cpu(link::pipelined(n.pipelined)),
            },
            Impl {
                name: "map",
                run: |n| with_cpu(link::map_calls(n.map)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtLeast(10e6),
    },
    Figure {
        key: "bulk-16mib",
        title: "16 MiB echo (`ByteBuf`, dynamic)",
        unit: Unit::BytesPerSec,
        impls: &[
            Impl {
                name: "raw",
                run: |n| value(raw::bulk(BULK, n.bulk)),
            },
            Impl {
                name: "coproq",
                run: |n| value(link::bulk(BULK, n.bulk, Bulk::ByteBuf)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "bulk-16mib-typed",
        title: "16 MiB echo (`Vec<u8>`, typed)",
        unit: Unit::BytesPerSec,
        impls: &[
            Impl {
                name: "raw",
                run: |n| value(raw::bulk(BULK, n.bulk)),
            },
            Impl {
                name: "typed",
                run: |n| value(link::bulk(BULK, n.bulk, Bulk::Typed)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "bulk-16mib-vec",
        title: "16 MiB echo (`Vec<u8>`, dynamic)",
        unit: Unit::BytesPerSec,
        impls: &[
            Impl {
                name: "raw",
                run: |n| value(raw::bulk(BULK, n.bulk)),
            },
            Impl {
                name: "coproq",
                run: |n| value(link::bulk(BULK, n.bulk, Bulk::Vec)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "bulk-16mib-result",
        title: "16 MiB echo (`Result<Vec<u8>, E>`, typed)",
        unit: Unit::BytesPerSec,
        impls: &[
            Impl {
                name: "raw",
                run: |n| value(raw::bulk(BULK, n.bulk)),
            },
            Impl {
                name: "typed",
                run: |n| value(link::bulk(BULK, n.bulk, Bulk::TypedResult)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.8),
    },
    Figure {
        key: "shared-64mib",
        title: "64 MiB to a worker that sums it and hands it back (both ways counted): \
                `Vec<u8>` vs `SharedBytes`",
        unit: Unit::BytesPerSec,
        impls: &[
            Impl {
                name: "vec",
                run: |n| value(shared::sum_echo(SHARED, n.shared, Carrier::Vec)),
            },
            Impl {
                name: "shared",
                run: |n| value(shared::sum_echo(SHARED, n.shared, Carrier::Shared)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(10.0),
    },
    Figure {
        key: "shared-sizes",
        title: "a call handing over `SharedBytes` of 1 MiB, 1 GiB and 64 MiB (the worker \
                reads its length): time per call",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "1mib",
                run: |n| micros_of(shared::handover(1 << 20, n.handovers)),
            },
            Impl {
                name: "1gib",
                run: |n| micros_of(shared::handover(1 << 30, n.handovers)),
            },
            Impl {
                name: "64mib",
                run: |n| micros_of(shared::handover(64 << 20, n.handovers)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.5),
    },
    Figure {
        key: "descriptors-10k",
        title: "descriptors handed to a worker and back, 10 to a call, 10 000 in all \
                (fails if either side leaked one): descriptors per second",
        unit: Unit::PerSec,
        impls: &[Impl {
            name: "coproq",
            run: |n| value(shared::descriptors(n.descriptors)),
        }],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "startup",
        title: "start a worker, first reply, close",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "raw",
                run: |n| micros_of(raw::startup(n.startup)),
            },
            Impl {
                name: "coproq",
                run: |n| micros_of(link::startup(n.startup)),
            },
        ],
        peers: STARTUP_PEERS,
        pin: None,
        worker_pin: None,
        target: Target::RatioAtMost(1.3),
    },
    Figure {
        key: "typed-vs-dynamic",
        title: "typed call vs dynamic call (one CPU)",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "coproq",
                run: |n| micros_of(link::latency(n.latency)),
            },
            Impl {
                name: "typed",
                run: |n| micros_of(link::typed_latency(n.latency)),
            },
        ],
        peers: &[],
        pin: Some(0),
        worker_pin: None,
        target: Target::RatioAtMost(1.05),
    },
    Figure {
        key: "pool-scaling",
        title: "CPU-bound 2 ms jobs per worker: pool of N = cores vs pool of one",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "one-worker",
                run: |n| value(pool::scaling(1, n.jobs, None)),
            },
            Impl {
                name: "pool",
                run: |n| value(pool::scaling(pool::cores(), n.jobs, None)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::RatioAtLeast(0.9),
    },
    Figure {
        key: "pool-overhead",
        title: "sequential call, pool of one vs single link (one CPU)",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "coproq",
                run: |n| micros_of(link::latency(n.latency)),
            },
            Impl {
                name: "pool",
                run: |n| micros_of(pool::latency(n.latency)),
            },
        ],
        peers: &[],
        pin: Some(0),
        worker_pin: None,
        target: Target::RatioAtMost(1.2),
    },
    Figure {
        key: "pool-recovery",
        title: "a worker killed (`SIGKILL`) until its replacement answers (median)",
        unit: Unit::Micros,
        impls: &[Impl {
            name: "pool",
            run: |n| micros_of(pool::recovery(n.recoveries)),
        }],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::AtMost(5000.0),
    },
    Figure {
        key: "pool-pipelined",
        title: "pipelined small calls through a pool of two",
        unit: Unit::PerSec,
        impls: &[Impl {
            name: "pool",
            run: |n| value(pool::pipelined(n.pipelined)),
        }],
        peers: POOL_PIPELINED_PEERS,
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "pool-compress",
        title: "64 KiB compression jobs (flate2) over every core: rayon threads (no isolation) vs a pool with default settings",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "rayon",
                run: |n| Ok((pool::rayon_compress(n.compress), None)),
            },
            Impl {
                name: "pool",
                run: |n| value(pool::compress(n.compress)),
            },
        ],
        peers: POOL_COMPRESS_PEERS,
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "ssh-latency",
        title: "sequential call over loopback ssh vs `ssh host cat`",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "ssh-cat",
                run: |n| micros_of(ssh::raw_latency(n.latency / 4)),
            },
            Impl {
                name: "coproq",
                run: |n| micros_of(ssh::latency(n.latency / 4)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "ssh-pipelined",
        title: "pipelined calls over loopback ssh vs 8-byte messages through `ssh host cat`",
        unit: Unit::PerSec,
        impls: &[
            Impl {
                name: "ssh-cat",
                run: |n| value(ssh::raw_pipelined(n.pipelined)),
            },
            Impl {
                name: "coproq",
                run: |n| value(ssh::pipelined(n.pipelined)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "ssh-via-startup",
        title: "`via(ssh).fork` to the first reply: executable shipped vs cached (median)",
        unit: Unit::Micros,
        impls: &[
            Impl {
                name: "shipped",
                run: |n| micros_of(ssh::via_startup(n.recoveries / 3 + 1, false)),
            },
            Impl {
                name: "cached",
                run: |n| micros_of(ssh::via_startup(n.recoveries / 3 + 1, true)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "idle-worker-rss",
        title: "RSS of an idle worker",
        unit: Unit::KiB,
        impls: &[
            Impl {
                name: "raw",
                run: |_| value(raw::idle_rss().map(|kib| kib as f64)),
            },
            Impl {
                name: "coproq",
                run: |_| value(link::idle_rss().map(|kib| kib as f64)),
            },
        ],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
    Figure {
        key: "per-link-rss",
        title: "parent RSS per open link",
        unit: Unit::KiB,
        impls: &[Impl {
            name: "coproq",
            run: |_| value(link::per_link_rss(20)),
        }],
        peers: &[],
        pin: None,
        worker_pin: None,
        target: Target::Report,
    },
];

/// Sizes: full run, or `--quick`.
#[derive(Debug)]
pub(crate) struct Sizes {
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
    /// 64 MiB handed over and back.
    shared: u32,
    /// `SharedBytes` handed over, at each size.
    handovers: u32,
    /// Descriptors handed over and back.
    descriptors: u32,
    /// Calls through `map`.
    map: u32,
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
    shared: 10,
    handovers: 200,
    descriptors: 10_000,
    map: 1_000_000,
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
    shared: 4,
    handovers: 50,
    descriptors: 10_000,
    map: 300_000,
};

const BULK: usize = 16 << 20;
const SHARED: usize = 64 << 20;

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// What one measurement found: the figure's value, and for latency, pipelined and event
/// figures the CPU time (µs, both processes) per operation.
pub(crate) type Measured = (f64, Option<f64>);

/// One implementation of a figure: its name in the table, and how it measures.
#[derive(Debug)]
pub(crate) struct Impl {
    pub(crate) name: &'static str,
    pub(crate) run: fn(&Sizes) -> Result<Measured, String>,
}

impl Figure {
    /// The implementation called `name`, its peers included.
    pub(crate) fn implementation(&self, name: &str) -> Option<&Impl> {
        self.impls
            .iter()
            .chain(self.peers)
            .find(|imp| imp.name == name)
    }
}

/// Measures `figure` with implementation `imp` in this process.
pub(crate) fn measure(figure: &Figure, imp: &str, quick: bool) -> Result<Measured, String> {
    let n = if quick { &QUICK } else { &FULL };
    let imp = figure
        .implementation(imp)
        .ok_or_else(|| format!("no implementation {imp} of {}", figure.key))?;
    (imp.run)(n)
}

/// A value.
fn value<E: std::fmt::Display>(result: Result<f64, E>) -> Result<Measured, String> {
    result.map(|v| (v, None)).map_err(|e| e.to_string())
}

/// A time, in µs.
fn micros_of<E: std::fmt::Display>(result: Result<Duration, E>) -> Result<Measured, String> {
    value(result.map(micros))
}

/// A value and its CPU time per operation.
fn with_cpu<E: std::fmt::Display>(result: Result<(f64, f64), E>) -> Result<Measured, String> {
    result
        .map(|(v, cpu)| (v, Some(cpu)))
        .map_err(|e| e.to_string())
}

/// A time (in µs) and its CPU time per operation.
fn latency_cpu<E: std::fmt::Display>(
    result: Result<(Duration, f64), E>,
) -> Result<Measured, String> {
    with_cpu(result.map(|(latency, cpu)| (micros(latency), cpu)))
}

/// The spin budget that turns spinning off.
const OFF: Option<Duration> = Some(Duration::ZERO);

#[cfg(feature = "peers")]
use crate::peers;

#[cfg(feature = "peers")]
const LATENCY_PEERS: &[Impl] = &[
    Impl {
        name: "ipc-channel",
        run: |n| micros_of(peers::ipc_latency(n.latency)),
    },
    Impl {
        name: "tarpc",
        run: |n| micros_of(peers::tarpc_latency(n.latency)),
    },
    Impl {
        name: "procspawn",
        run: |n| micros_of(peers::procspawn_latency(n.latency.min(2000))),
    },
];
#[cfg(feature = "peers")]
const PIPELINED_PEERS: &[Impl] = &[
    Impl {
        name: "ipc-channel",
        run: |n| value(peers::ipc_pipelined(n.pipelined)),
    },
    Impl {
        name: "tarpc",
        run: |n| value(peers::tarpc_pipelined(n.pipelined)),
    },
    Impl {
        name: "procspawn",
        run: |n| value(peers::procspawn_pipelined(n.pipelined.min(5000))),
    },
];
#[cfg(feature = "peers")]
const STARTUP_PEERS: &[Impl] = &[
    Impl {
        name: "ipc-channel",
        run: |n| micros_of(peers::ipc_startup(n.startup)),
    },
    Impl {
        name: "tarpc",
        run: |n| micros_of(peers::tarpc_startup(n.startup)),
    },
    Impl {
        name: "procspawn",
        run: |n| micros_of(peers::procspawn_startup(n.startup)),
    },
];
#[cfg(feature = "peers")]
const POOL_PIPELINED_PEERS: &[Impl] = &[Impl {
    name: "procspawn",
    run: |n| value(peers::procspawn_pool_pipelined(n.pipelined.min(5000))),
}];
#[cfg(feature = "peers")]
const POOL_COMPRESS_PEERS: &[Impl] = &[Impl {
    name: "procspawn",
    run: |n| value(peers::procspawn_compress(n.compress)),
}];

// Without `--features peers`, the peers are not built.
#[cfg(not(feature = "peers"))]
const LATENCY_PEERS: &[Impl] = &[];
#[cfg(not(feature = "peers"))]
const PIPELINED_PEERS: &[Impl] = &[];
#[cfg(not(feature = "peers"))]
const STARTUP_PEERS: &[Impl] = &[];
#[cfg(not(feature = "peers"))]
const POOL_PIPELINED_PEERS: &[Impl] = &[];
#[cfg(not(feature = "peers"))]
const POOL_COMPRESS_PEERS: &[Impl] = &[];
