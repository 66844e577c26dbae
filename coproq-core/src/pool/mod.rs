//! Pools of workers: calls spread over several workers, which are supervised.
//!
//! - [`builder`]: `PoolBuilder`, the pool's settings and handlers, and the first start.
//! - [`shared`]: the state every part shares, and the decisions made under its lock.
//! - [`job`]: one call through the pool, the caller's `Ticket`, and what happens when its
//!   worker answers or dies.
//! - [`events`]: what the pool tells the program about its workers.
//! - [`supervisor`]: the thread that restarts workers, sends queued calls, and enforces
//!   deadlines.
//!
//! A pool stands on [`Coprocess`]: each worker is an ordinary link whose calls the pool
//! watches to count them.

mod builder;
mod events;
mod job;
mod shared;
mod supervisor;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::builder::{PoolBuilder, SeatPrefix};
pub use self::events::{PoolEvent, Retirement};
use self::job::Job;
pub(crate) use self::job::Ticket;
use self::shared::{Seat, Shared, broken};
use crate::coprocess::Coprocess;
use crate::error::{Error, Result};
use crate::launch::Launch;
use crate::link::Flush;
use crate::pending::{self, Deadline, Pending};
use crate::ready::{Ready, Room};
use crate::wire::message;

/// What each worker is started as (by its seat's index).
pub(crate) type Launcher = Box<dyn Fn(usize) -> Launch + Send + Sync>;

/// A pool's settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) size: usize,
    /// Calls in flight per worker.
    pub(crate) in_flight: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) call_timeout: Option<Duration>,
    /// The longest a call may run in a worker, from when the worker starts it.
    pub(crate) run_timeout: Option<Duration>,
    pub(crate) kill_on_timeout: bool,
    /// More restarts than this within the window break the pool.
    pub(crate) restart_limit: (u32, Duration),
    pub(crate) max_calls_per_worker: Option<u64>,
    /// Retire a worker whose resident size passes this, between calls.
    pub(crate) max_rss: Option<u64>,
    pub(crate) retries: u32,
}

/// A pool of workers that share calls: each call goes to the least-loaded live worker,
/// crashed and hung workers are replaced, and calls wait in the parent until a worker
/// takes them.
///
/// Start one with [`Pool::builder`]. `Pool` is a cheap `Clone` handle, `Send + Sync`;
/// the pool closes when [`close`](Pool::close) is called or its last handle is dropped.
///
/// - **Dispatch.** A call goes to the live worker with the fewest calls in flight, up to
///   [`max_in_flight`](PoolBuilder::max_in_flight) each; beyond that it waits in the
///   parent's queue, which is bounded: a full queue blocks the caller (back-pressure), at
///   most until the call's deadline. A queued call can always be cancelled exactly: it
///   is in no worker yet.
/// - **Failure.** A worker that crashes, is killed, or breaks the protocol is replaced in
///   the background, at once the first time and with growing pauses while replacements
///   keep dying before answering anything. The calls it held fail with
///   [`Error::Disconnected`], or are sent to another worker up to
///   [`retries`](PoolBuilder::retries) times where asked (a call may have side effects:
///   the default is at most once). Past the [`restart_limit`](PoolBuilder::restart_limit),
///   the pool is broken: queued and new calls fail at once with [`Error::PoolBroken`].
/// - **Deadlines.** [`call_timeout`](PoolBuilder::call_timeout) bounds every call, queue
///   and run; with [`kill_on_timeout`](PoolBuilder::kill_on_timeout), the worker that
///   holds an expired call is killed and replaced.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// let pool = coproq::Pool::builder()
///     .size(4)
///     .call_timeout(Duration::from_secs(10))
///     .kill_on_timeout(true)
///     .fork(|parent| {
///         parent.handle("count", |text: String| text.split_whitespace().count() as u64);
///     })?;
/// let n: u64 = pool.call("count", "some words")?;
/// let all: Vec<coproq::Result<u64>> = pool.map("count", ["a b", "c d e"]).collect();
/// assert_eq!(n, 2);
/// assert_eq!(all.into_iter().map(Result::unwrap).collect::<Vec<_>>(), [2, 3]);
/// pool.close();
/// # Ok::<(), coproq::Error>(())
/// ```
#[derive(Clone)]
pub struct Pool {
    handle: Arc<Handle>,
}

/// The last `Pool` handle closes the pool.
struct Handle {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A snapshot of a pool's workers and calls, from [`Pool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Workers the pool keeps.
    pub size: usize,
    /// Workers running and taking calls now.
    pub live: usize,
    /// Calls waiting in the parent for a worker.
    pub queued: usize,
    /// Calls sent to workers and not yet answered.
    pub in_flight: usize,
    /// Calls that ended at a worker (answered, or failed there) so far.
    pub calls: u64,
    /// Of those, calls that failed because their worker died or broke.
    pub failures: u64,
    /// Workers replaced after a crash, a kill or a failed start (recycling by
    /// `max_calls_per_worker` or `max_rss` is not counted).
    pub restarts: u64,
    /// Poison calls: calls whose worker died while running them, twice, the second time
    /// alone (see [`Blame::Poison`](crate::Blame::Poison)).
    pub poison: u64,
}

impl Pool {
    /// A builder: set the pool's size, deadlines, restart policy and parent handlers,
    /// then start it with [`fork`](PoolBuilder::fork), [`fork_with`](PoolBuilder::fork_with)
    /// or [`spawn`](PoolBuilder::spawn).
    #[must_use]
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    fn start(shared: Arc<Shared>) -> Result<Self> {
        if let Err(e) = start_all(&shared) {
            close_all(&shared);
            return Err(e);
        }
        let runner = Arc::clone(&shared);
        let supervisor = std::thread::Builder::new()
            .name("coproq-pool".into())
            .spawn(move || supervisor::run(&runner))
            .map_err(|source| {
                close_all(&shared);
                Error::Thread {
                    name: "pool supervisor".into(),
                    source,
                }
            })?;
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                supervisor: Mutex::new(Some(supervisor)),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Calls `method` on one worker and waits for its reply, as
    /// [`Coprocess::call`](crate::Coprocess::call) does.
    ///
    /// # Errors
    ///
    /// As `Coprocess::call`, and [`Error::PoolBroken`] past the restart limit,
    /// [`Error::Timeout`] past the call's deadline (waiting in the queue counts).
    pub fn call<R: DeserializeOwned>(&self, method: &str, args: impl Serialize) -> Result<R> {
        self.send_call(method, &args, Flush::Now, pending::decode_reply::<R>)
            .wait()
    }

    /// Starts a call and returns at once with it in flight (or queued); see
    /// [`Coprocess::call_async`](crate::Coprocess::call_async). Blocks only while the
    /// pool's queue is full: async code awaits [`ready`](Pool::ready) first.
    pub fn call_async<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
    ) -> Pending<R> {
        self.send_call(method, &args, Flush::Soon, pending::decode_reply::<R>)
    }

    /// Starts a call whose reply `decode` reads.
    pub(crate) fn send_call<R, A: Serialize + ?Sized>(
        &self,
        method: &str,
        args: &A,
        flush: Flush,
        decode: pending::ReplyDecoder<R>,
    ) -> Pending<R> {
        let args = match message::encode_args(args) {
            Ok(args) => args,
            Err(e) => return Pending::failed(method, crate::link::encode_error(method, e)),
        };
        let shared = self.shared();
        let config = &shared.config;
        let deadline = Deadline::for_new_call(config.call_timeout);
        let job = Job::new(shared, method, args, deadline, config.retries);
        if let Err(e) = shared.submit(Arc::clone(&job), flush) {
            return Pending::failed(method, e);
        }
        let ticket = Ticket {
            job,
            kill_on_timeout: config.kill_on_timeout,
        };
        Pending::pooled(method, Box::new(ticket), deadline, decode)
    }

    /// Resolves when the pool's queue has room, so that the next
    /// [`call_async`](Pool::call_async) does not block the thread: the pool's
    /// counterpart of [`Coprocess::ready`](crate::Coprocess::ready), for async code.
    pub fn ready(&self) -> Ready {
        Ready::new(Arc::clone(self.shared()) as Arc<dyn Room>)
    }

    /// How many calls `map` keeps in flight: enough for every worker's share, twice.
    pub(crate) fn map_window(&self) -> usize {
        let config = &self.shared().config;
        (config.size * config.in_flight * 2).max(2)
    }

    /// Sends a one-way event to one worker (the least loaded).
    ///
    /// # Errors
    ///
    /// [`Error::PoolBroken`], [`Error::NotConnected`] when no worker is live, or an
    /// encoding error.
    pub fn emit(&self, name: &str, args: impl Serialize) -> Result<()> {
        let worker = {
            let state = self.shared().lock();
            if let Some(reason) = &state.broken {
                return Err(broken(reason));
            }
            state
                .live()
                .min_by_key(|w| w.jobs.len())
                .map(|w| w.coproc.clone())
        };
        worker.ok_or(Error::NotConnected)?.emit(name, args)
    }

    /// Sends a one-way event to every live worker; how many it reached.
    ///
    /// # Errors
    ///
    /// [`Error::PoolBroken`], or an encoding error. A worker that dies meanwhile is
    /// skipped.
    pub fn broadcast(&self, name: &str, args: impl Serialize) -> Result<usize> {
        if let Some(reason) = &self.shared().lock().broken {
            return Err(broken(reason));
        }
        let mut reached = 0;
        for worker in self.workers() {
            match worker.emit(name, &args) {
                Ok(()) => reached += 1,
                Err(Error::NotConnected) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reached)
    }

    /// A snapshot of the pool's workers and calls.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        let state = self.shared().lock();
        let in_flight = state
            .seats
            .iter()
            .map(|seat| match seat {
                Seat::Live(w) | Seat::Ended(w) => w.jobs.len(),
                Seat::Starting | Seat::Empty { .. } => 0,
            })
            .sum();
        PoolStats {
            size: state.seats.len(),
            live: state.live().count(),
            queued: state.queue.len(),
            in_flight,
            calls: state.counters.calls,
            failures: state.counters.failures,
            restarts: state.counters.restarts,
            poison: state.counters.poison,
        }
    }

    /// The live workers now, to call one directly (its pid, its own handlers).
    #[must_use]
    pub fn workers(&self) -> Vec<Coprocess> {
        self.shared()
            .lock()
            .live()
            .map(|w| w.coproc.clone())
            .collect()
    }

    /// Closes the pool: queued calls fail with [`Error::NotConnected`], calls in flight
    /// are answered within the close grace, and every worker is closed and reaped.
    /// Idempotent; also done when the last handle is dropped.
    pub fn close(&self) {
        self.handle.close();
    }
}

impl Handle {
    fn close(&self) {
        let queued = {
            let mut state = self.shared.lock();
            if state.closed {
                return;
            }
            state.closed = true;
            self.shared.take_queue(&mut state)
        };
        for job in queued {
            job.finish(Err(Error::NotConnected));
        }
        self.shared.work.notify_all();
        let supervisor = self
            .supervisor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(supervisor) = supervisor {
            let _ = supervisor.join();
        }
        close_all(&self.shared);
    }
}

/// Starts every seat's worker, side by side (a worker over ssh spends most of its start
/// waiting on the network); the first error, if any failed.
fn start_all(shared: &Arc<Shared>) -> Result<()> {
    let size = shared.config.size;
    if size == 1 {
        return supervisor::start_worker(shared, 0);
    }
    std::thread::scope(|scope| {
        let starts: Vec<_> = (0..size)
            .map(|index| {
                std::thread::Builder::new()
                    .name("coproq-pool-start".into())
                    .spawn_scoped(scope, move || supervisor::start_worker(shared, index))
            })
            .collect();
        let mut first = Ok(());
        for start in starts {
            let result = match start {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    Err(Error::Spawn {
                        program: "pool worker".into(),
                        source: std::io::Error::other("its start panicked"),
                    })
                }),
                Err(source) => Err(Error::Thread {
                    name: "pool start".into(),
                    source,
                }),
            };
            if first.is_ok() {
                first = result;
            }
        }
        first
    })
}

/// Closes every worker of the pool at once (each waits for its own exit).
fn close_all(shared: &Shared) {
    let workers: Vec<Coprocess> = {
        let mut state = shared.lock();
        state
            .seats
            .iter_mut()
            .filter_map(|seat| match std::mem::replace(seat, Seat::Starting) {
                Seat::Live(w) | Seat::Ended(w) => Some(w.coproc),
                Seat::Starting | Seat::Empty { .. } => None,
            })
            .collect()
    };
    // All say goodbye first, so that their grace periods run side by side.
    for worker in &workers {
        worker.link().shutdown();
    }
    std::thread::scope(|scope| {
        for worker in &workers {
            scope.spawn(|| worker.close());
        }
    });
}
