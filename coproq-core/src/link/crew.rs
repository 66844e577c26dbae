//! Concurrent serving (`concurrency(n)`): up to `n` calls of one link run at once,
//! launched in the order they arrived.
//!
//! The threads that serve a link form its crew. One of them at a time holds the serving
//! role: it reads (on a worker) or takes what readers queued (on a parent), runs events,
//! and launches calls, one frame at a time (the serving loop reads no batch ahead, so
//! nothing read waits behind a call that is running). It runs each call on its own thread
//! after letting the role go: a call that returns at once finds the role free and takes
//! it back, so a small call costs two uncontended locks and no hand-over. A call that
//! runs longer leaves the role to the crew's lookout, an idle member that looks every
//! tick while calls run: it takes the role and serves meanwhile. A member whose call
//! ends while another holds the role becomes idle; the crew grows up to `n` members
//! beside the first, as calls keep running.
//!
//! With `n - 1` calls running on their own, the holder runs the next one itself, holding
//! the role, and launches nothing more until it returns: at most `n` run at once. Its
//! waits for the peer serve the peer's callbacks, as the serving thread's do at
//! `concurrency(1)`; so does the wait of a running call that finds the role free, and a
//! role given back after such a wait goes to a member at once. So callbacks run at any
//! depth, beside the `n`.
//!
//! Events run only on the holder, so they keep their order, after the calls that arrived
//! before them were launched.

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::Link;
use crate::sys;

/// How often the lookout looks while calls run, and how long a call runs before the
/// lookout takes the role from it.
const TICK: Duration = Duration::from_millis(1);

/// How long the lookout keeps looking after the last call ran (then it sleeps until the
/// next one).
const PATIENCE: Duration = Duration::from_millis(100);

/// The loop a member runs while it holds the role: the worker's serving loop or the
/// parent's dispatcher.
pub(crate) type ServeLoop = fn(&Arc<Link>);

/// A link's crew.
pub(crate) struct Crew {
    /// How many calls may run at once.
    limit: usize,
    /// What a member runs while it holds the role.
    serve: ServeLoop,
    state: Mutex<State>,
    /// Woken when the role falls free with work to do, a call ends, or the link ends.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// A member holds the serving role.
    held: bool,
    /// Calls running without the role.
    running: usize,
    /// When (by the coarse clock) the last call was let run: the lookout's clue.
    last_launch: Duration,
    /// Members other than the first.
    members: usize,
    /// Idle members, waiting for the role.
    idle: usize,
    /// An idle member is looking every tick.
    lookout: bool,
    /// Work waits behind the call just let run: an idle member takes the role at once.
    urgent: bool,
}

impl std::fmt::Debug for Crew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crew")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// This thread runs a call of a crew's link without the role.
    static RUNNING_A_CALL: Cell<bool> = const { Cell::new(false) };
    /// This thread gave the role up to run a call and found it taken when the call ended.
    static LOST: Cell<bool> = const { Cell::new(false) };
    /// This thread, running a call without the role, took it for a wait (the waits
    /// nested in that one serve too).
    static BORROWED: Cell<bool> = const { Cell::new(false) };
}

impl Crew {
    /// A crew for `limit` calls at once, whose members run `serve` while they hold the
    /// role; the thread that starts serving holds it first.
    pub(crate) fn new(limit: usize, serve: ServeLoop) -> Self {
        Self {
            limit,
            serve,
            state: Mutex::new(State {
                held: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `call` (a top-level call the holder has just taken) on this thread without
    /// the role, so that the crew can launch the next ones meanwhile; afterwards this
    /// thread holds the role again if it is free, or else [`lost_role`] says so.
    pub(crate) fn run_call(&self, link: &Arc<Link>, call: impl FnOnce()) {
        // More work has arrived already: the next member need not wait a tick.
        let urgent = link.has_work_waiting();
        let spawn = {
            let mut state = self.lock();
            if state.running + 1 >= self.limit {
                // The last place: the holder runs it, holding the role, and launches
                // nothing more meanwhile; its waits serve the peer's callbacks.
                drop(state);
                call();
                return;
            }
            state.held = false;
            state.running += 1;
            state.last_launch = sys::coarse_now();
            state.urgent = urgent;
            // A member looks out for this call running long (or takes over at once).
            let spawn = state.idle == 0 && state.members < self.limit;
            if spawn {
                state.members += 1;
                state.idle += 1;
            } else if state.idle > 0 && (urgent || !state.lookout) {
                self.changed.notify_one();
            }
            spawn
        };
        if spawn {
            self.spawn_member(link);
        }
        let outer = RUNNING_A_CALL.replace(true);
        let _done = CallDone(self, outer);
        call();
    }

    /// Whether this thread gave the role up to run a call and did not get it back; it then
    /// stops serving (the flag is cleared).
    pub(crate) fn lost_role() -> bool {
        LOST.replace(false)
    }

    /// For a call running without the role that waits for the peer: takes the role for
    /// the wait if it is free (the wait then serves); whether it did. A wait nested in
    /// one that took it serves without taking it again.
    pub(crate) fn borrow_role(&self) -> bool {
        if !RUNNING_A_CALL.get() || BORROWED.get() {
            return false;
        }
        let mut state = self.lock();
        if state.held {
            return false;
        }
        state.held = true;
        BORROWED.set(true);
        true
    }

    /// Whether this thread may serve in a wait: it holds the role, as the holder or for
    /// the wait of its call.
    pub(crate) fn serves_here() -> bool {
        !RUNNING_A_CALL.get() || BORROWED.get()
    }

    /// Gives back a role [`borrow_role`] took: a member takes it at once (calls that run
    /// may wait for the peer's callbacks, which only a holder serves).
    pub(crate) fn return_role(&self, link: &Arc<Link>) {
        BORROWED.set(false);
        let spawn = {
            let mut state = self.lock();
            state.held = false;
            state.urgent = true;
            let spawn = state.idle == 0 && state.members < self.limit;
            if spawn {
                state.members += 1;
                state.idle += 1;
            } else {
                self.changed.notify_one();
            }
            spawn
        };
        if spawn {
            self.spawn_member(link);
        }
    }

    /// The link ended: idle members leave (they look at the link under the lock, so
    /// none misses this).
    pub(crate) fn end(&self) {
        let _state = self.lock();
        self.changed.notify_all();
    }

    /// Waits until no call runs without the role, or `until`.
    pub(crate) fn wait_calls(&self, until: std::time::Instant) {
        let mut state = self.lock();
        while state.running > 0 {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            state = self.wait(state, Some(left.min(TICK * 100)));
        }
    }

    fn wait<'a>(
        &self,
        state: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            Some(timeout) => {
                self.changed
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    fn spawn_member(&self, link: &Arc<Link>) {
        let link = Arc::clone(link);
        let spawned = std::thread::Builder::new()
            .name("coproq-handler".into())
            .spawn(move || {
                if let Some(crew) = link.crew() {
                    crew.member(&link);
                }
            });
        if spawned.is_err() {
            // The crew is one member short: calls still run, the lookout is missing.
            let mut state = self.lock();
            state.members -= 1;
            state.idle -= 1;
        }
    }

    /// An idle member's life: waits for the role, serves while it holds it (until it
    /// loses it to another member), until the link ends.
    fn member(&self, link: &Arc<Link>) {
        while self.await_role(link) {
            (self.serve)(link);
            self.lock().idle += 1;
        }
    }

    /// Waits, idle, until this member should take the role (true, holding it) or the
    /// link has ended (false).
    fn await_role(&self, link: &Link) -> bool {
        let mut state = self.lock();
        loop {
            if link.is_ended() {
                state.idle -= 1;
                return false;
            }
            let free = !state.held && state.running < self.limit;
            let now = sys::coarse_now();
            // A call has run for a tick with nobody serving, or the role fell free with
            // nothing running (the last call's member went idle before the holder lost it).
            let long = state.running > 0 && now.saturating_sub(state.last_launch) >= TICK;
            if free && (long || state.urgent || state.running == 0) {
                state.held = true;
                state.urgent = false;
                state.idle -= 1;
                return true;
            }
            let look = !state.lookout && now.saturating_sub(state.last_launch) < PATIENCE;
            if look {
                state.lookout = true;
                state = self.wait(state, Some(TICK));
                state.lookout = false;
            } else {
                state = self.wait(state, None);
            }
        }
    }
}

/// A call run without the role ended (or unwound): this thread takes the role back if
/// it is free, or learns that it lost it.
struct CallDone<'a>(&'a Crew, bool);

impl Drop for CallDone<'_> {
    fn drop(&mut self) {
        RUNNING_A_CALL.set(self.1);
        let mut state = self.0.lock();
        state.running -= 1;
        if state.held {
            LOST.set(true);
        } else {
            state.held = true;
        }
    }
}

/// Joins the crew as its first member (the thread that serves or dispatches), holding
/// the role; returns when the link has ended.
pub(crate) fn serve_as_first(link: &Arc<Link>, crew: &Crew) {
    (crew.serve)(link);
    crew.lock().idle += 1;
    crew.member(link);
}
