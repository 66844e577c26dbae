//! The pool's supervisor thread: it replaces workers that died or served their quota
//! (with backoff after crashes, and a limit past which the pool is broken), sends queued
//! calls to workers with room, and gives up on calls past their deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::PoolEvent;
use super::events::Retirement;
use super::job::Job;
use super::shared::{BACKOFF_MAX, BACKOFF_START, Isolation, Seat, Shared, State, Worker, broken};
use crate::error::Result;
use crate::launch::Launch;
use crate::link::Flush;

/// What one look at the state found to do, done once the lock is released.
#[derive(Default)]
struct Decisions {
    /// Workers to close and reap, by seat: dead (`true`), or retired.
    close: Vec<(usize, Worker, bool)>,
    /// Seats to start a worker in.
    start: Vec<usize>,
    /// Queued calls to send, each to the worker it was assigned to.
    send: Vec<(Arc<Job>, super::shared::Assigned)>,
    /// Calls past their deadline.
    expired: Vec<Arc<Job>>,
    /// Calls that ran in their worker past the pool's `run_timeout`.
    overran: Vec<Arc<Job>>,
    /// Calls to fail: the pool just broke.
    fail: Vec<Arc<Job>>,
    broke: Option<String>,
}

/// Runs until the pool closes.
pub(super) fn run(shared: &Arc<Shared>) {
    loop {
        let decisions = {
            let mut state = shared.lock();
            if state.closed {
                return;
            }
            let now = Instant::now();
            let decisions = decide(shared, &mut state, now);
            if decisions.is_empty() {
                let wake_at = next_wake(&state, shared.config.run_timeout);
                state.supervisor_wakes_at = wake_at;
                state.supervisor_sleeping = true;
                // Poisoning is ignored, as everywhere: the state stays consistent.
                let mut state = match wake_at {
                    Some(at) => {
                        let left = at.saturating_duration_since(Instant::now());
                        shared
                            .work
                            .wait_timeout(state, left)
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0
                    }
                    None => shared
                        .work
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                };
                state.supervisor_sleeping = false;
                continue;
            }
            decisions
        };
        carry_out(shared, decisions);
    }
}

impl Decisions {
    fn is_empty(&self) -> bool {
        self.close.is_empty()
            && self.start.is_empty()
            && self.send.is_empty()
            && self.expired.is_empty()
            && self.overran.is_empty()
            && self.fail.is_empty()
    }
}

/// Decides what to do now, under the lock.
fn decide(shared: &Arc<Shared>, state: &mut State, now: Instant) -> Decisions {
    let config = &shared.config;
    let mut decisions = Decisions::default();
    for index in 0..state.seats.len() {
        let due = match &state.seats[index] {
            Seat::Ended(_) => true,
            Seat::Live(w) => w.retiring && w.jobs.is_empty(),
            Seat::Starting | Seat::Empty { .. } => false,
        };
        if !due {
            continue;
        }
        match std::mem::replace(&mut state.seats[index], Seat::Starting) {
            Seat::Ended(worker) => {
                // A death that confirmed a poison call is the second for that call: the
                // first counted already, and it is no crash loop.
                if worker.isolation != Isolation::ConfirmedPoison {
                    // Backoff only for workers that die before answering anything.
                    if worker.answered == 0 {
                        state.crash_streak += 1;
                    } else {
                        state.crash_streak = 0;
                    }
                    state.restarts.push_back(now);
                }
                let pause = backoff(state.crash_streak);
                crate::trace::event!(INFO, seat = index, backoff = ?pause, "pool restarts a worker");
                let restart_at = now + pause;
                state.seats[index] = Seat::Empty { restart_at };
                state.counters.restarts += 1;
                decisions.close.push((index, worker, true));
            }
            Seat::Live(worker) => {
                // Recycled, not crashed: replaced at once, not counted as a restart.
                state.seats[index] = Seat::Empty { restart_at: now };
                decisions.close.push((index, worker, false));
            }
            other => state.seats[index] = other,
        }
    }
    // Past the restart limit, the pool is broken.
    let (limit, window) = config.restart_limit;
    while state.restarts.front().is_some_and(|&t| now - t > window) {
        state.restarts.pop_front();
    }
    if state.broken.is_none() && state.restarts.len() > limit as usize {
        let last = state
            .last_status
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let reason = format!(
            "{} worker restarts within {window:?}, over the limit of {limit} (last exit status: {last})",
            state.restarts.len()
        );
        state.broken = Some(reason.clone());
        decisions.fail = shared.take_queue(state);
        decisions.broke = Some(reason);
    }
    if state.broken.is_none() {
        for (index, seat) in state.seats.iter_mut().enumerate() {
            if matches!(seat, Seat::Empty { restart_at } if *restart_at <= now) {
                *seat = Seat::Starting;
                decisions.start.push(index);
            }
        }
    }
    // Queued calls to workers with room, in order. A suspect at the head waits for an
    // idle worker, and the calls behind it wait with it (were they sent past it, a busy
    // pool might never have an idle worker).
    let mut popped = false;
    while let Some(job) = state.queue.front() {
        let job = Arc::clone(job);
        let Some(assigned) = state.assign(&job, config) else {
            break;
        };
        state.queue.pop_front();
        popped = true;
        decisions.send.push((job, assigned));
    }
    if popped {
        shared.wake_room(state);
    }
    // Deadlines.
    let queued = state.queue.iter();
    let sent = state.seats.iter().flat_map(|seat| match seat {
        Seat::Live(w) | Seat::Ended(w) => w.jobs.as_slice(),
        _ => &[],
    });
    for job in queued.chain(sent) {
        if job.deadline.is_some_and(|d| d.at <= now) && !job.is_finished() {
            decisions.expired.push(Arc::clone(job));
        } else if job
            .run_deadline(config.run_timeout)
            .is_some_and(|at| at <= now)
            && !job.is_finished()
        {
            decisions.overran.push(Arc::clone(job));
        }
    }
    decisions
}

/// When the supervisor must look again unprompted: a restart's backoff ends, or a call's
/// deadline passes.
fn next_wake(state: &State, run_timeout: Option<Duration>) -> Option<Instant> {
    let restarts = state.seats.iter().filter_map(|seat| match seat {
        Seat::Empty { restart_at } if state.broken.is_none() => Some(*restart_at),
        _ => None,
    });
    let queued = state.queue.iter();
    let sent = state.seats.iter().flat_map(|seat| match seat {
        Seat::Live(w) | Seat::Ended(w) => w.jobs.as_slice(),
        _ => &[],
    });
    let deadlines = queued.chain(sent).flat_map(|job| {
        let run = job.run_deadline(run_timeout);
        job.deadline.map(|d| d.at).into_iter().chain(run)
    });
    restarts.chain(deadlines).min()
}

/// The pause before restarting after `streak` workers in a row died unanswered: none for
/// the first, then 10 ms doubling up to 2 s, so that a crash loop costs no CPU.
fn backoff(streak: u32) -> Duration {
    match streak {
        0 | 1 => Duration::ZERO,
        n => BACKOFF_START
            .saturating_mul(1 << (n - 2).min(16))
            .min(BACKOFF_MAX),
    }
}

/// Does what `look` decided, without the lock.
fn carry_out(shared: &Arc<Shared>, decisions: Decisions) {
    let Decisions {
        close,
        start,
        send,
        expired,
        overran,
        fail,
        broke,
    } = decisions;
    for (seat, worker, died) in close {
        let pid = worker.coproc.pid();
        let status = worker.coproc.close();
        if status.is_some() {
            shared.lock().last_status = status;
        }
        let event = if died {
            PoolEvent::Died {
                seat,
                pid,
                status,
                postmortem: worker.link.postmortem(),
            }
        } else {
            PoolEvent::Retired {
                seat,
                pid,
                reason: worker.retired_for.unwrap_or(Retirement::Calls),
            }
        };
        shared.tell(&event);
    }
    if let Some(reason) = broke {
        for job in fail {
            job.finish(Err(broken(&reason)));
        }
        shared.tell(&PoolEvent::Broken { reason });
        // Workers still running serve calls already sent; they go with the pool.
    }
    // Queued calls go out in one write per worker, by each worker's own flusher: the
    // supervisor never waits on a worker's pipe (nor for room in its window).
    let mut links: Vec<Arc<crate::link::Link>> = Vec::new();
    for (job, assigned) in send {
        if !links.iter().any(|l| Arc::ptr_eq(l, &assigned.link)) {
            links.push(Arc::clone(&assigned.link));
        }
        shared.send(&job, assigned, (Flush::Soon, Some(Instant::now())));
    }
    for link in links {
        link.flush_later();
    }
    for job in expired {
        let error = job.timeout_error();
        job.abandon(shared.config.kill_on_timeout, error);
    }
    if let Some(limit) = shared.config.run_timeout {
        for job in overran {
            let error = job.run_timeout_error(limit);
            job.abandon(shared.config.kill_on_timeout, Some(error));
        }
    }
    for index in start {
        match start_worker(shared, index) {
            Ok(()) => {}
            Err(e) => {
                // A failed start counts as a crash.
                let mut state = shared.lock();
                state.crash_streak += 1;
                state.restarts.push_back(Instant::now());
                state.counters.restarts += 1;
                state.last_status = None;
                let restart_at = Instant::now() + backoff(state.crash_streak);
                state.seats[index] = Seat::Empty { restart_at };
                drop(state);
                crate::error::say(format_args!(
                    "coproq pool: cannot restart worker {index}: {e}"
                ));
            }
        }
    }
}

/// Starts the worker of seat `index` and seats it.
pub(super) fn start_worker(shared: &Arc<Shared>, index: usize) -> Result<()> {
    let launch = (shared.launcher)(index);
    let local = matches!(launch, Launch::Fork(_) | Launch::Command(_));
    let builder = crate::builder::Builder::from_parts(Arc::clone(&shared.handlers), shared.options);
    let coproc = builder.start_worker(launch)?;
    let pid = coproc.pid();
    let link = Arc::clone(coproc.link());
    let generation = shared.seat(index, coproc, local);
    shared.tell(&PoolEvent::Started { seat: index, pid });
    let weak = Arc::downgrade(shared);
    link.set_on_room(Arc::new(move || {
        if let Some(shared) = weak.upgrade() {
            shared.room_granted(generation);
        }
    }));
    let weak = Arc::downgrade(shared);
    link.set_on_end(Box::new(move || {
        if let Some(shared) = weak.upgrade() {
            shared.worker_ended(generation);
        }
    }));
    Ok(())
}
