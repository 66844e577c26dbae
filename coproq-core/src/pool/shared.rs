//! The pool's state, shared by its handles, its callers, its supervisor and the watches
//! of its calls: the workers' seats, the queue, the counters, and the decisions made
//! under its one lock (which worker takes a call, what waits).
//!
//! Nothing here calls a link or starts a process while holding the lock.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use super::PoolEvent;
use super::events::{OnEvent, Retirement};
use super::job::Job;
use super::{Config, Launcher};
use crate::coprocess::Coprocess;
use crate::error::Error;
use crate::link::{Flush, Handlers, Link};
use crate::options::Options;

/// Everything a pool's parts share.
pub(crate) struct Shared {
    pub(super) config: Config,
    pub(super) launcher: Launcher,
    pub(super) handlers: Arc<Handlers>,
    pub(super) options: Options,
    pub(super) on_event: Option<OnEvent>,
    state: Mutex<State>,
    /// Callers waiting for room in the queue sleep here.
    room: Condvar,
    /// The supervisor sleeps here.
    pub(super) work: Condvar,
}

/// What the lock guards.
pub(super) struct State {
    pub(super) seats: Vec<Seat>,
    pub(super) queue: VecDeque<Arc<Job>>,
    /// Why the pool is broken, once it is.
    pub(super) broken: Option<String>,
    pub(super) closed: bool,
    next_generation: u64,
    /// Where the search for the least-loaded worker starts, so that ties rotate.
    rotate: usize,
    pub(super) counters: Counters,
    /// When recent restarts happened (within the restart window).
    pub(super) restarts: VecDeque<Instant>,
    /// Workers in a row that died before answering anything.
    pub(super) crash_streak: u32,
    pub(super) last_status: Option<ExitStatus>,
    /// Futures waiting for room in the queue.
    room_wakers: Vec<Waker>,
    /// When the supervisor will look again without being woken.
    pub(super) supervisor_wakes_at: Option<Instant>,
    /// The supervisor sleeps (a notification with nobody to wake still costs a system
    /// call, on every call's completion).
    pub(super) supervisor_sleeping: bool,
    /// Callers sleeping until the queue has room.
    room_sleepers: usize,
}

/// The pool's counters, for [`PoolStats`](super::PoolStats).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counters {
    pub(super) calls: u64,
    pub(super) failures: u64,
    pub(super) restarts: u64,
    pub(super) poison: u64,
}

/// One place for a worker.
pub(super) enum Seat {
    Live(Worker),
    /// Its link ended (it crashed, was killed, or broke the protocol): the supervisor
    /// closes it and starts another.
    Ended(Worker),
    /// The supervisor is starting a worker here.
    Starting,
    /// Empty until `restart_at` (backoff after crashes).
    Empty {
        restart_at: Instant,
    },
}

/// A running worker and its calls.
pub(super) struct Worker {
    pub(super) coproc: Coprocess,
    pub(super) link: Arc<Link>,
    pub(super) generation: u64,
    /// Calls sent and not yet settled.
    pub(super) jobs: Vec<Arc<Job>>,
    /// Its pid, where the parent can measure its resident size (a worker on this
    /// machine).
    pub(super) measured: Option<u32>,
    /// Why it takes no more calls and is replaced once idle, if it does not.
    pub(super) retired_for: Option<Retirement>,
    /// Calls sent to it in all.
    pub(super) started_calls: u64,
    /// Calls it answered.
    pub(super) answered: u64,
    /// It has had its `max_calls_per_worker`: it takes no more and is replaced once idle.
    pub(super) retiring: bool,
    /// Its window has no room for the last call sent to it: it takes no more until it
    /// grants room.
    pub(super) full: bool,
    /// Whether it runs a suspect alone.
    pub(super) isolation: Isolation,
    /// How many calls it held when its link ended, counted when the first of them
    /// settled (the rest leave one by one).
    pub(super) held_at_death: Option<usize>,
}

/// Whether a worker runs a suspect (a call whose last worker died holding it) alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isolation {
    /// It runs any calls.
    None,
    /// It runs a suspect, and takes no other call meanwhile.
    Running,
    /// It died running a suspect alone, which confirmed a poison call: its restart was
    /// counted against the restart limit already, with the first death.
    ConfirmedPoison,
}

/// Where a call went.
pub(super) struct Assigned {
    pub(super) generation: u64,
    pub(super) link: Arc<Link>,
}

impl Shared {
    pub(super) fn new(
        config: Config,
        launcher: Launcher,
        handlers: Arc<Handlers>,
        options: Options,
        on_event: Option<OnEvent>,
    ) -> Self {
        let size = config.size;
        Self {
            config,
            launcher,
            handlers,
            options,
            on_event,
            state: Mutex::new(State {
                seats: (0..size).map(|_| Seat::Starting).collect(),
                queue: VecDeque::new(),
                broken: None,
                closed: false,
                next_generation: 1,
                rotate: 0,
                counters: Counters::default(),
                restarts: VecDeque::new(),
                crash_streak: 0,
                last_status: None,
                room_wakers: Vec::new(),
                supervisor_wakes_at: None,
                supervisor_sleeping: false,
                room_sleepers: 0,
            }),
            room: Condvar::new(),
            work: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the pool still takes calls.
    pub(super) fn accepts(&self) -> bool {
        let state = self.lock();
        state.broken.is_none() && !state.closed
    }

    /// Tells the program's callback, if any, what happened (and `tracing`, with the
    /// feature).
    pub(super) fn tell(&self, event: &PoolEvent) {
        trace_pool_event(event);
        if let Some(callback) = &self.on_event {
            callback(event);
        }
    }

    /// Seats worker `coproc` at `index` (`local`: its pid is the worker's own, on this
    /// machine); its generation.
    pub(super) fn seat(&self, index: usize, coproc: Coprocess, local: bool) -> u64 {
        let mut state = self.lock();
        let generation = state.next_generation;
        state.next_generation += 1;
        let link = Arc::clone(coproc.link());
        let measured = if local { coproc.pid() } else { None };
        state.seats[index] = Seat::Live(Worker {
            measured,
            coproc,
            link,
            generation,
            jobs: Vec::new(),
            started_calls: 0,
            answered: 0,
            retiring: false,
            retired_for: None,
            full: false,
            isolation: Isolation::None,
            held_at_death: None,
        });
        drop(state);
        // The queue may have waited for this worker.
        self.work.notify_all();
        generation
    }

    /// Sends `job` now if a worker has room and nothing queued comes first, or queues
    /// it; waits for room in a full queue until the job's deadline.
    pub(super) fn submit(self: &Arc<Self>, job: Arc<Job>, flush: Flush) -> Result<(), Error> {
        let mut state = self.lock();
        loop {
            if let Some(reason) = &state.broken {
                return Err(broken(reason));
            }
            if state.closed {
                return Err(Error::NotConnected);
            }
            // The supervisor enforces deadlines (for futures, and to kill hung workers):
            // it must look before this one passes.
            let wake_supervisor = job
                .deadline
                .is_some_and(|d| state.supervisor_wakes_at.is_none_or(|at| d.at < at));
            if wake_supervisor {
                state.supervisor_wakes_at = job.deadline.map(|d| d.at);
            }
            if state.queue.is_empty()
                && let Some(assigned) = state.assign(&job, &self.config)
            {
                drop(state);
                if wake_supervisor {
                    self.work.notify_all();
                }
                // On the caller's thread: writing may wait, until the call's deadline.
                self.send(&job, assigned, (flush, job.deadline.map(|d| d.at)));
                return Ok(());
            }
            if state.queue.len() < self.config.queue_capacity {
                state.queue.push_back(job);
                drop(state);
                if wake_supervisor {
                    self.work.notify_all();
                }
                return Ok(());
            }
            // Back-pressure: the queue is full.
            let now = Instant::now();
            state.room_sleepers += 1;
            state = match job.deadline {
                Some(deadline) if now >= deadline.at => {
                    return Err(job.timeout_error().expect("a deadline"));
                }
                Some(deadline) => {
                    self.room
                        .wait_timeout(state, deadline.at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .room
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Writes `job` to the worker it was assigned to, waiting for the pipe at most until
    /// `write_until` and never for room in the worker's window. A worker that went away
    /// first, or has no room, gets it back into the queue (it was never written); an
    /// unsendable call fails.
    pub(super) fn send(
        self: &Arc<Self>,
        job: &Arc<Job>,
        assigned: Assigned,
        write: (Flush, Option<Instant>),
    ) {
        let Assigned { generation, link } = assigned;
        if !job.mark_sent(generation, &link) {
            // Cancelled while it waited to be sent.
            self.forget(generation, job);
            return;
        }
        let deadline = job.deadline.map(|d| d.at);
        match link.try_start_encoded_call(&job.method, &job.args, deadline, &job.slot, write) {
            Ok(Some(id)) => {
                job.mark_written(id);
                // A caller sleeping on the queued job now reads the reply itself.
                job.slot.recheck();
            }
            Ok(None) => {
                // The worker's window is full: it takes no more until it grants room.
                self.forget(generation, job);
                if let Some(worker) = self.lock().worker_mut(generation) {
                    worker.full = true;
                }
                if job.unsend() {
                    self.requeue(Arc::clone(job));
                }
            }
            Err(Error::NotConnected) => {
                self.forget(generation, job);
                if job.unsend() {
                    self.requeue(Arc::clone(job));
                }
            }
            Err(e) => {
                self.forget(generation, job);
                job.finish(Err(e));
            }
        }
    }

    /// Takes `job` off worker `generation`'s count without it having been answered.
    fn forget(&self, generation: u64, job: &Job) {
        let mut state = self.lock();
        if let Some(worker) = state.worker_mut(generation) {
            worker.jobs.retain(|j| !std::ptr::eq(Arc::as_ptr(j), job));
        }
        drop(state);
        self.work.notify_all();
    }

    /// How many calls worker `generation` held when its link ended (asked as each of
    /// them settles: the count is taken at the first).
    pub(super) fn held_at_death(&self, generation: u64) -> usize {
        let mut state = self.lock();
        state.worker_mut(generation).map_or(1, |worker| {
            *worker.held_at_death.get_or_insert(worker.jobs.len())
        })
    }

    /// A call of worker `generation` left its link's table; `poison` if its worker died
    /// running it alone, after an earlier one died holding it.
    pub(super) fn call_done(&self, generation: u64, job: &Job, failed: bool, poison: bool) {
        let mut state = self.lock();
        state.counters.calls += 1;
        if failed {
            state.counters.failures += 1;
        }
        if poison {
            state.counters.poison += 1;
        }
        let mut wake = !state.queue.is_empty();
        let mut measure = None;
        if let Some(worker) = state.worker_mut(generation) {
            worker.jobs.retain(|j| !std::ptr::eq(Arc::as_ptr(j), job));
            if !failed {
                worker.answered += 1;
            }
            worker.isolation = if poison {
                Isolation::ConfirmedPoison
            } else {
                Isolation::None
            };
            wake |= worker.retiring && worker.jobs.is_empty();
            measure = worker.measured.filter(|_| !failed && !worker.retiring);
        }
        // Awake, the supervisor looks at everything again before it sleeps.
        wake &= state.supervisor_sleeping;
        drop(state);
        if wake {
            self.work.notify_all();
        }
        if let (Some(limit), Some(pid)) = (self.config.max_rss, measure) {
            self.check_rss(generation, pid, limit);
        }
    }

    /// Retires worker `generation` (process `pid`) if its resident size passed `limit`.
    fn check_rss(&self, generation: u64, pid: u32, limit: u64) {
        // Read without the lock: it is a file read.
        let Some(bytes) = crate::sys::resident_bytes(pid).filter(|&b| b > limit) else {
            return;
        };
        let mut state = self.lock();
        let Some(worker) = state.worker_mut(generation) else {
            return;
        };
        if worker.retiring {
            return;
        }
        worker.retiring = true;
        worker.retired_for = Some(Retirement::Rss { bytes });
        let idle = worker.jobs.is_empty();
        drop(state);
        if idle {
            self.work.notify_all();
        }
    }

    /// Puts a job whose worker died back at the head of the queue (or fails it, if the
    /// pool no longer takes calls).
    pub(super) fn requeue(&self, job: Arc<Job>) {
        let mut state = self.lock();
        if let Some(reason) = &state.broken {
            let error = broken(reason);
            drop(state);
            job.finish(Err(error));
            return;
        }
        if state.closed {
            drop(state);
            job.finish(Err(Error::NotConnected));
            return;
        }
        state.queue.push_front(job);
        drop(state);
        self.work.notify_all();
    }

    /// Takes a cancelled or expired job out of the queue.
    pub(super) fn dequeue(&self, job: &Arc<Job>) {
        let mut state = self.lock();
        state.queue.retain(|j| !Arc::ptr_eq(j, job));
        self.wake_room(&mut state);
    }

    /// Worker `generation` granted room in its window: it takes calls again.
    pub(super) fn room_granted(&self, generation: u64) {
        let mut state = self.lock();
        let was_full = state
            .worker_mut(generation)
            .is_some_and(|worker| std::mem::take(&mut worker.full));
        drop(state);
        if was_full {
            self.work.notify_all();
        }
    }

    /// Kills worker `generation` (it holds a call past its deadline).
    pub(super) fn kill_worker(&self, generation: u64) {
        #[cfg(feature = "tracing")]
        {
            let seat = self.lock().seats.iter().position(
                |seat| matches!(seat, Seat::Live(w) | Seat::Ended(w) if w.generation == generation),
            );
            crate::trace::event!(
                WARN,
                ?seat,
                "pool kills a worker running a call past its deadline"
            );
        }
        let coproc = self.lock().worker_mut(generation).map(|w| w.coproc.clone());
        if let Some(coproc) = coproc {
            coproc.kill();
        }
    }

    /// Worker `generation`'s link ended.
    pub(super) fn worker_ended(&self, generation: u64) {
        let mut state = self.lock();
        let seat = state
            .seats
            .iter_mut()
            .find(|seat| matches!(seat, Seat::Live(w) if w.generation == generation));
        if let Some(seat) = seat {
            let Seat::Live(worker) = std::mem::replace(seat, Seat::Starting) else {
                unreachable!("matched as live");
            };
            *seat = Seat::Ended(worker);
        }
        drop(state);
        self.work.notify_all();
    }

    /// Wakes callers waiting for room in the queue.
    pub(super) fn wake_room(&self, state: &mut State) {
        if state.room_sleepers > 0 {
            self.room.notify_all();
        }
        std::mem::take(&mut state.room_wakers)
            .into_iter()
            .for_each(Waker::wake);
    }

    /// Empties the queue (to fail its jobs once the lock is released) and wakes callers
    /// waiting for room.
    pub(super) fn take_queue(&self, state: &mut State) -> Vec<Arc<Job>> {
        let queued = state.queue.drain(..).collect();
        self.wake_room(state);
        queued
    }
}

impl crate::ready::Room for Shared {
    /// Whether the queue has room now; if not, `waker` is woken when it may.
    fn poll_room(&self, waker: &Waker) -> bool {
        let mut state = self.lock();
        if state.closed || state.broken.is_some() || state.queue.len() < self.config.queue_capacity
        {
            return true;
        }
        state.room_wakers.push(waker.clone());
        false
    }
}

impl State {
    pub(super) fn worker_mut(&mut self, generation: u64) -> Option<&mut Worker> {
        self.seats.iter_mut().find_map(|seat| match seat {
            Seat::Live(w) | Seat::Ended(w) if w.generation == generation => Some(w),
            _ => None,
        })
    }

    /// Picks the least-loaded live worker with room for one more call and counts `job`
    /// on it. A suspect goes only to an idle worker, which then runs it alone.
    pub(super) fn assign(&mut self, job: &Arc<Job>, config: &Config) -> Option<Assigned> {
        let n = self.seats.len();
        let alone = job.is_suspect();
        let mut best: Option<(usize, usize)> = None;
        for k in 0..n {
            let i = (self.rotate + k) % n;
            if let Seat::Live(w) = &self.seats[i] {
                let load = w.jobs.len();
                let open = !w.retiring
                    && !w.full
                    && w.isolation == Isolation::None
                    && load < config.in_flight
                    && (!alone || load == 0);
                if open && best.is_none_or(|(_, b)| load < b) {
                    best = Some((i, load));
                }
            }
        }
        let (i, _) = best?;
        self.rotate = (i + 1) % n;
        let Seat::Live(worker) = &mut self.seats[i] else {
            unreachable!("picked a live seat");
        };
        worker.jobs.push(Arc::clone(job));
        worker.started_calls += 1;
        if alone {
            worker.isolation = Isolation::Running;
        }
        if config
            .max_calls_per_worker
            .is_some_and(|max| worker.started_calls >= max)
        {
            worker.retiring = true;
            worker.retired_for = Some(Retirement::Calls);
        }
        Some(Assigned {
            generation: worker.generation,
            link: Arc::clone(&worker.link),
        })
    }

    /// Live workers that take calls.
    pub(super) fn live(&self) -> impl Iterator<Item = &Worker> {
        self.seats.iter().filter_map(|seat| match seat {
            Seat::Live(w) if !w.retiring => Some(w),
            _ => None,
        })
    }
}

/// The error of every call to a broken pool.
pub(super) fn broken(reason: &str) -> Error {
    Error::PoolBroken {
        reason: reason.to_owned(),
    }
}

/// How long after a worker's start its death counts as a crash at start-up, for backoff.
pub(super) const BACKOFF_START: Duration = Duration::from_millis(10);

/// The longest pause between restarts.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A pool event as a `tracing` event.
#[cfg(feature = "tracing")]
fn trace_pool_event(event: &PoolEvent) {
    match event {
        PoolEvent::Started { seat, pid } => {
            crate::trace::event!(INFO, seat, ?pid, "pool worker started");
        }
        PoolEvent::Died {
            seat,
            pid,
            status,
            postmortem,
        } => {
            let reason = postmortem.as_ref().and_then(|p| p.reason);
            let status = crate::trace::status_text(*status);
            crate::trace::event!(
                WARN,
                seat,
                ?pid,
                %status,
                ?reason,
                "pool worker died; restarting it"
            );
        }
        PoolEvent::Retired { seat, pid, reason } => {
            crate::trace::event!(INFO, seat, ?pid, ?reason, "pool worker retired");
        }
        PoolEvent::Broken { reason } => {
            crate::trace::event!(ERROR, %reason, "pool broken");
        }
    }
}

/// Without the `tracing` feature: nothing.
#[cfg(not(feature = "tracing"))]
fn trace_pool_event(_: &PoolEvent) {}
