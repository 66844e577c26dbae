//! One call made through a pool: where it is (queued in the parent, or sent to a worker),
//! the slot its caller waits in, and what happens when its worker answers or dies.
//!
//! Lock order: the pool's state lock may be held while a job's own lock is taken (the
//! supervisor looks at jobs' routes), never the reverse; neither is held while a link is
//! called.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::Instant;

use super::Shared;
use crate::error::{Blame, Error};
use crate::link::Link;
use crate::link::calls::{Delivery, Settled, Slot, Wake, Watch};
use crate::link::dispatch::{self, TimedOut};
use crate::pending::Deadline;
use crate::wire::message::EncodedArgs;

/// A call made through a pool.
pub(crate) struct Job {
    pub(super) method: Box<str>,
    pub(super) args: EncodedArgs,
    pub(super) deadline: Option<Deadline>,
    /// Where the reply lands, whichever worker sends it.
    pub(super) slot: Arc<Slot>,
    route: Mutex<Route>,
    pool: Weak<Shared>,
    /// When its worker said it started running it (the last worker, if re-sent).
    started: Mutex<Option<Instant>>,
    /// Its worker died while holding it, and it was sent again: it runs on a worker by
    /// itself, and if that one dies too, it is the culprit (a poison call).
    suspect: AtomicBool,
    /// How far it is to blame for its worker's death, once that is decided.
    blame: Mutex<Option<Blame>>,
}

/// Where a job is.
#[derive(Clone)]
pub(super) enum Route {
    /// In the parent's queue (or about to be).
    Queued { retries_left: u32 },
    /// Handed to worker `worker` (its generation); `id` once the call is written.
    Sent {
        worker: u64,
        link: Arc<Link>,
        id: Option<u64>,
        retries_left: u32,
    },
    /// Answered, failed, timed out or cancelled: nothing more happens to it. `holder` is
    /// the worker whose link still counts the call (timed out or cancelled there, and not
    /// answered yet), so that its late answer frees the worker's place.
    Finished { holder: Option<u64> },
}

/// Told by the worker's link when the job's call leaves its table.
struct JobWatch(Weak<Job>);

impl Watch for JobWatch {
    fn settled(&self, how: Settled) -> bool {
        self.0.upgrade().is_none_or(|job| Job::settled(&job, how))
    }

    fn started(&self) {
        if let Some(job) = self.0.upgrade() {
            job.mark_started();
        }
    }

    fn blame(&self) -> Option<Blame> {
        let job = self.0.upgrade()?;
        *job.blame.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Job {
    pub(super) fn new(
        pool: &Arc<Shared>,
        method: &str,
        args: EncodedArgs,
        deadline: Option<Deadline>,
        retries: u32,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Job>| Self {
            method: method.into(),
            args,
            deadline,
            slot: Arc::new(Slot::watched(Arc::new(JobWatch(me.clone())))),
            route: Mutex::new(Route::Queued {
                retries_left: retries,
            }),
            pool: Arc::downgrade(pool),
            started: Mutex::new(None),
            suspect: AtomicBool::new(false),
            blame: Mutex::new(None),
        })
    }

    /// When its worker started running it, if it has.
    pub(super) fn started_at(&self) -> Option<Instant> {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Its worker started running it now: the supervisor looks at its running time.
    fn mark_started(&self) {
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        if let Some(pool) = self.pool.upgrade() {
            let _state = pool.lock();
            pool.work.notify_all();
        }
    }

    fn route(&self) -> MutexGuard<'_, Route> {
        self.route.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it must run on a worker by itself: its last worker died holding it.
    pub(super) fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Acquire)
    }

    pub(super) fn is_finished(&self) -> bool {
        matches!(*self.route(), Route::Finished { .. })
    }

    /// Marks the job sent to `worker` over `link`; false if it finished meanwhile
    /// (cancelled while queued).
    pub(super) fn mark_sent(&self, worker: u64, link: &Arc<Link>) -> bool {
        let mut route = self.route();
        let Route::Queued { retries_left } = *route else {
            return false;
        };
        *route = Route::Sent {
            worker,
            link: Arc::clone(link),
            id: None,
            retries_left,
        };
        true
    }

    /// Records the id its worker's link gave the call.
    pub(super) fn mark_written(&self, call_id: u64) {
        if let Route::Sent { id, .. } = &mut *self.route() {
            *id = Some(call_id);
        }
    }

    /// The call could not be written to its worker (which is going away): back to the
    /// queue, as a call never written is always safe to send elsewhere. False if it
    /// finished meanwhile.
    pub(super) fn unsend(&self) -> bool {
        let mut route = self.route();
        let Route::Sent { retries_left, .. } = *route else {
            return false;
        };
        *route = Route::Queued { retries_left };
        true
    }

    /// Ends the job with `result` (unless it has ended already); whether it was ended now.
    pub(super) fn finish(&self, result: Delivery) -> bool {
        let mut route = self.route();
        let holder = match *route {
            Route::Finished { .. } => return false,
            Route::Sent { worker, .. } => Some(worker),
            Route::Queued { .. } => None,
        };
        *route = Route::Finished { holder };
        drop(route);
        self.slot.deliver(result);
        true
    }

    /// Its worker's link says how the call ended; whether the slot should get the
    /// delivery.
    ///
    /// Where its worker died, the job is a suspect: with a retry left, it is sent again
    /// to a worker by itself; a suspect whose lone worker dies too is the culprit, and
    /// fails as a poison call. Without a retry, it fails saying how many other calls its
    /// worker held.
    fn settled(self: &Arc<Self>, how: Settled) -> bool {
        let pool = self.pool.upgrade();
        // Asked before the job's lock is taken (the pool's lock never nests inside it).
        let accepts = pool.as_ref().is_some_and(|p| p.accepts());
        // The first call of a dead worker to settle counts what it held (a call that
        // timed out there counts too: it was running).
        let holder = match (&*self.route(), how) {
            (
                Route::Sent { worker, .. }
                | Route::Finished {
                    holder: Some(worker),
                },
                Settled::LinkEnded,
            ) => Some(*worker),
            _ => None,
        };
        let held = holder
            .zip(pool.as_ref())
            .map_or(0, |(worker, pool)| pool.held_at_death(worker));
        let mut route = self.route();
        let mut poison = false;
        let (worker, deliver, requeue, failed) = match (&*route, how) {
            // Timed out or cancelled before the worker answered: only its place is freed.
            (Route::Finished { holder }, _) => (*holder, false, false, false),
            (Route::Sent { worker, .. }, Settled::Replied) => (Some(*worker), true, false, false),
            (Route::Sent { worker, .. }, Settled::LinkEnded) if self.is_suspect() && accepts => {
                // It ran alone, and its worker died again: the culprit (unless the pool
                // is closing, whose kills prove nothing).
                poison = true;
                self.set_blame(Blame::Poison);
                (Some(*worker), true, false, true)
            }
            (
                Route::Sent {
                    worker,
                    retries_left,
                    ..
                },
                Settled::LinkEnded,
            ) if *retries_left > 0 && accepts => {
                let retries_left = retries_left - 1;
                let worker = *worker;
                *route = Route::Queued { retries_left };
                *self.started.lock().unwrap_or_else(PoisonError::into_inner) = None;
                self.suspect.store(true, Ordering::Release);
                (Some(worker), false, true, false)
            }
            (Route::Sent { worker, .. }, Settled::LinkEnded) => {
                let others = held.saturating_sub(1);
                self.set_blame(if others == 0 {
                    Blame::Alone
                } else {
                    Blame::Shared { others }
                });
                (Some(*worker), true, false, true)
            }
            (Route::Sent { worker, .. }, Settled::Forgotten) => {
                (Some(*worker), false, false, false)
            }
            (Route::Queued { .. }, _) => (None, false, false, false),
        };
        if !requeue {
            *route = Route::Finished { holder: None };
        }
        drop(route);
        if let (Some(pool), Some(worker)) = (pool, worker) {
            pool.call_done(worker, self, failed, poison);
            if requeue {
                pool.requeue(Arc::clone(self));
            }
        }
        deliver
    }

    fn set_blame(&self, blame: Blame) {
        *self.blame.lock().unwrap_or_else(PoisonError::into_inner) = Some(blame);
    }

    /// Gives up on the job: `Cancelled` or past its deadline. A queued job leaves the
    /// queue; a sent one is cancelled on its worker, or its worker is killed when
    /// `kill` is set. `result` goes to the slot (for a future that waits).
    pub(super) fn abandon(self: &Arc<Self>, kill: bool, result: Option<Error>) {
        // Only a worker running the call is killed: one holding it behind others is
        // healthy, and cancelling the call there is enough (it never runs).
        let kill = kill && self.started_at().is_some();
        let previous = {
            let mut route = self.route();
            let holder = match *route {
                Route::Sent { worker, .. } => Some(worker),
                Route::Queued { .. } | Route::Finished { .. } => None,
            };
            match std::mem::replace(&mut *route, Route::Finished { holder }) {
                // Already finished: keep what it said.
                finished @ Route::Finished { .. } => {
                    *route = finished;
                    return;
                }
                previous => previous,
            }
        };
        // Delivered before the worker is killed: a caller reading the link itself sees
        // the link end, and takes what the slot holds by then.
        if let Some(error) = result {
            self.slot.deliver(Err(error));
        }
        let pool = self.pool.upgrade();
        match previous {
            Route::Finished { .. } => {}
            Route::Queued { .. } => {
                if let Some(pool) = &pool {
                    pool.dequeue(self);
                }
            }
            Route::Sent {
                worker, link, id, ..
            } => {
                if kill {
                    if let Some(pool) = &pool {
                        pool.kill_worker(worker);
                    }
                } else if let Some(id) = id {
                    // Stays in the link's table: the pool counts it until the worker
                    // answers.
                    link.send_cancel(id);
                }
            }
        }
    }

    /// The error a job past its deadline ends with.
    pub(super) fn timeout_error(&self) -> Option<Error> {
        self.deadline.map(|deadline| Error::Timeout {
            method: self.method.to_string(),
            after: deadline.after,
        })
    }

    /// When it has run `limit` in its worker, if it has started.
    pub(super) fn run_deadline(&self, limit: Option<std::time::Duration>) -> Option<Instant> {
        self.started_at()?.checked_add(limit?)
    }

    /// The error a job that ran past `limit` ends with.
    pub(super) fn run_timeout_error(&self, limit: std::time::Duration) -> Error {
        Error::Timeout {
            method: self.method.to_string(),
            after: limit,
        }
    }
}

/// The caller's hold on a pool's call, inside its [`Pending`](crate::Pending).
pub(crate) struct Ticket {
    pub(super) job: Arc<Job>,
    pub(super) kill_on_timeout: bool,
}

impl crate::pending::Ticket for Ticket {
    /// Waits for the reply, at most until `deadline`; past it, the job is abandoned (and
    /// its worker killed, where the pool says so).
    fn wait(self: Box<Self>, deadline: Option<Instant>) -> Result<Delivery, TimedOut> {
        let job = &self.job;
        loop {
            if let Some(delivery) = job.slot.take_reply() {
                return Ok(delivery);
            }
            let route = job.route().clone();
            let waited = match route {
                Route::Sent {
                    link, id: Some(id), ..
                } => {
                    // Read the reply ourselves, as a caller of the link would.
                    match dispatch::wait_reply(&link, id, &job.slot, deadline) {
                        // The link ended and the job went back to the queue: wait on.
                        Ok(_) if !job.is_finished() => continue,
                        // A reply from a later worker beats the end of an earlier one.
                        Ok(delivery) => return Ok(job.slot.take_reply().unwrap_or(delivery)),
                        Err(TimedOut) => Wake::TimedOut,
                    }
                }
                Route::Queued { .. } | Route::Sent { id: None, .. } | Route::Finished { .. } => job
                    .slot
                    .wait(deadline.or_else(|| Some(Instant::now() + POLL))),
            };
            if waited == Wake::TimedOut && deadline.is_some_and(|d| Instant::now() >= d) {
                if let Some(delivery) = job.slot.take_reply() {
                    return Ok(delivery);
                }
                job.abandon(self.kill_on_timeout, None);
                return Err(TimedOut);
            }
        }
    }

    fn poll(&self, waker: &Waker) -> Option<Delivery> {
        self.job.slot.reply_or_register(waker)
    }

    fn cancel(self: Box<Self>) {
        self.job.abandon(false, None);
    }

    fn expire(self: Box<Self>) {
        if self.job.slot.take_reply().is_none() {
            self.job.abandon(self.kill_on_timeout, None);
        }
    }
}

/// How often a caller waiting for a queued job looks again, in case a wake-up was missed
/// (the job's route can change between a look and a sleep).
const POLL: std::time::Duration = std::time::Duration::from_millis(20);
