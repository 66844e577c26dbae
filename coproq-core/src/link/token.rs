//! The read token: who reads the link now, who waits to, and the calls and events read
//! and not yet run.
//!
//! Exactly one thread reads at a time, the token's holder. A thread that needs input and
//! finds the token taken queues for it (first come, first served) and sleeps in its slot;
//! releasing the token promotes the first in the queue, or frees it. Background readers
//! (the serving loop, the parent's reader thread) take a free token only while callers
//! have left it alone for a while (`caller_activity` unchanged), so that a busy caller
//! keeps reading its own replies. The end of the link wakes everyone. No I/O here: the
//! hand-offs are plain bookkeeping under one lock, tested in process.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::calls::{Delivery, Slot};
use crate::wire::Message;

/// Who is reading, which decides when to stop and what to do with calls and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A thread waiting for its own reply (or for room to send); reads for everyone
    /// meanwhile, queueing calls and events.
    Caller,
    /// The serving thread waiting inside a handler: like a caller, but it runs the calls
    /// and events it reads.
    NestedServer,
    /// The serving loop: reads calls and events to run them.
    Server,
    /// The parent's reader thread: reads when nobody else does.
    Background,
    /// Reads what has arrived, without waiting, to queue it and see cancels while the
    /// serving thread is busy.
    ReadAhead,
}

/// What a reader waits for, besides what its role reads for: it stops reading once that
/// is there.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal<'a> {
    /// Nothing: the serving loop, a background reader, a read-ahead.
    None,
    /// The reply to call `id`, which lands in `slot`.
    Reply { id: u64, slot: &'a Slot },
    /// Room in the peer's window.
    Room,
}

impl Goal<'_> {
    /// The call whose reply the reader waits for, if any.
    pub(crate) fn reply_id(self) -> Option<u64> {
        match self {
            Self::Reply { id, .. } => Some(id),
            Self::None | Self::Room => None,
        }
    }
}

/// A call or event read and not yet run: the message, what it costs the peer's window
/// until it starts, and when its call's deadline passes.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) message: Message,
    pub(crate) cost: u64,
    pub(crate) deadline: Option<Instant>,
}

/// What the serving loop does next.
#[derive(Debug)]
pub(crate) enum ServeStep {
    /// Run this queued call or event; `last`: nothing else is queued behind it.
    Run { queued: Queued, last: bool },
    /// Read: the token was taken.
    Read,
    /// Wait; callers' activity count is this.
    Wait(u64),
    /// The link has ended.
    Ended,
}

/// Why a reader stopped (having released the token).
#[derive(Debug)]
pub(crate) enum Stop {
    /// What the reader waited for is there: its reply is in its slot (someone else read
    /// it), or there is room to send.
    Reached,
    /// The reader's own reply, read just now by the reader itself.
    ReplyRead(Delivery),
    /// A call or event for a nested server to run now.
    Run(Queued),
    /// The serving loop read a batch of calls and events into the batch it passed.
    Batch,
    /// Someone else should read now (queued callers, queued work).
    HandOver,
    /// The reader's deadline passed.
    TimedOut,
    /// The stream has ended.
    Ended,
}

#[derive(Debug, Default)]
struct State {
    /// The token is taken.
    reading: bool,
    /// Threads waiting for the token, first come first served.
    queue: VecDeque<Arc<Slot>>,
    /// Received calls and events not yet run, in arrival order.
    inbox: VecDeque<Queued>,
    /// The serving thread's slot while it waits: woken when work arrives.
    dispatcher: Option<Arc<Slot>>,
    /// The stream has ended.
    ended: bool,
    /// Bumped whenever a caller reads or is handed its reply: background readers stay
    /// away while it moves.
    caller_activity: u64,
}

/// Lock-free copies of the counts that readers check before every frame, written
/// whenever the lock is released.
#[derive(Debug, Default)]
struct Counts {
    queued: AtomicUsize,
    inboxed: AtomicUsize,
    ended: AtomicBool,
}

/// The lock; updates the counts when released.
struct Guard<'a> {
    state: MutexGuard<'a, State>,
    counts: &'a Counts,
}

impl std::ops::Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let counts = self.counts;
        counts
            .queued
            .store(self.state.queue.len(), Ordering::Relaxed);
        counts
            .inboxed
            .store(self.state.inbox.len(), Ordering::Relaxed);
        counts.ended.store(self.state.ended, Ordering::Release);
    }
}

/// The read token and the work read under it.
#[derive(Debug, Default)]
pub(crate) struct Token {
    state: Mutex<State>,
    counts: Counts,
    /// Signalled (with `state`) when the stream ends.
    ended: Condvar,
}

impl Token {
    fn lock(&self) -> Guard<'_> {
        Guard {
            state: self.state.lock().unwrap_or_else(PoisonError::into_inner),
            counts: &self.counts,
        }
    }

    /// Takes the token if it is free. Callers and nested servers count as caller
    /// activity, which keeps background readers away.
    pub(crate) fn try_take(&self, role: Role) -> bool {
        let mut state = self.lock();
        if state.reading || state.ended {
            return false;
        }
        state.reading = true;
        if matches!(role, Role::Caller | Role::NestedServer) {
            state.caller_activity += 1;
        }
        true
    }

    /// Takes the token for a background reader if it is free, nobody queues for it, and
    /// callers have not touched it since `seen`; returns the current activity count
    /// either way.
    pub(crate) fn try_take_quiet(&self, seen: u64) -> (bool, u64) {
        let mut state = self.lock();
        let activity = state.caller_activity;
        if state.reading || state.ended || activity != seen || !state.queue.is_empty() {
            return (false, activity);
        }
        state.reading = true;
        (true, activity)
    }

    /// Releases the token: to the first queued waiter, or free.
    pub(crate) fn release(&self) {
        let mut state = self.lock();
        match state.queue.pop_front() {
            Some(next) => next.promote(),
            None => state.reading = false,
        }
    }

    /// Queues `slot` for the token; false if the token is free (take it instead) or the
    /// link has ended.
    pub(crate) fn queue(&self, slot: &Arc<Slot>) -> bool {
        let mut state = self.lock();
        if !state.reading || state.ended {
            return false;
        }
        if !state.queue.iter().any(|s| Arc::ptr_eq(s, slot)) {
            state.queue.push_back(Arc::clone(slot));
        }
        true
    }

    /// Leaves the queue; true if the token was handed over meanwhile (the caller then
    /// holds it and must release it).
    pub(crate) fn leave_queue(&self, slot: &Arc<Slot>) -> bool {
        let mut state = self.lock();
        state.queue.retain(|s| !Arc::ptr_eq(s, slot));
        drop(state);
        slot.take_promotion()
    }

    /// Whether a reader in `role` should hand over before reading more (lock-free: it
    /// runs before every frame).
    #[inline]
    pub(crate) fn should_stop(&self, role: Role) -> Option<Stop> {
        let counts = &self.counts;
        if counts.ended.load(Ordering::Acquire) {
            return Some(Stop::Ended);
        }
        let (queued, inboxed) = (
            counts.queued.load(Ordering::Relaxed),
            counts.inboxed.load(Ordering::Relaxed),
        );
        let stop = match role {
            // Everything a peer may send fits the window: nobody stops for room.
            Role::Caller | Role::ReadAhead => false,
            // The serving thread runs what is queued before reading anything newer.
            Role::NestedServer => inboxed > 0,
            // Callers waiting for the token come before background reading.
            Role::Server => queued > 0 || inboxed > 0,
            Role::Background => queued > 0,
        };
        stop.then_some(Stop::HandOver)
    }

    /// One step of the serving loop, under one lock: run the next queued call or event,
    /// read (the token is then taken), wait, or stop.
    pub(crate) fn serve_step(&self, seen: u64) -> ServeStep {
        let mut state = self.lock();
        if let Some(queued) = state.inbox.pop_front() {
            let last = state.inbox.is_empty();
            return ServeStep::Run { queued, last };
        }
        if state.ended {
            return ServeStep::Ended;
        }
        if !state.reading && state.caller_activity == seen && state.queue.is_empty() {
            state.reading = true;
            return ServeStep::Read;
        }
        ServeStep::Wait(state.caller_activity)
    }

    /// Queues a received call or event for the serving thread.
    pub(crate) fn enqueue(&self, queued: Queued) {
        let mut state = self.lock();
        state.inbox.push_back(queued);
        if let Some(dispatcher) = &state.dispatcher {
            dispatcher.recheck();
        }
    }

    /// Whether a call or event is queued (lock-free).
    pub(crate) fn has_queued(&self) -> bool {
        self.counts.inboxed.load(Ordering::Relaxed) > 0
    }

    /// Takes the next queued call or event.
    pub(crate) fn next_queued(&self) -> Option<Queued> {
        self.lock().inbox.pop_front()
    }

    /// Registers (or clears) the serving thread's slot to wake when work arrives; whether
    /// work (or the end) is there already.
    pub(crate) fn set_dispatcher(&self, slot: Option<Arc<Slot>>) -> bool {
        let mut state = self.lock();
        let has_work = !state.inbox.is_empty() || state.ended;
        state.dispatcher = slot;
        has_work
    }

    /// Counts a caller's use of the link (a reader handed a sleeping caller its reply):
    /// background readers stay away for a while.
    pub(crate) fn note_caller_activity(&self) {
        self.lock().caller_activity += 1;
    }

    /// How often callers have used the token (for background readers' patience).
    pub(crate) fn caller_activity(&self) -> u64 {
        self.lock().caller_activity
    }

    /// Whether the stream has ended.
    #[inline]
    pub(crate) fn is_ended(&self) -> bool {
        self.counts.ended.load(Ordering::Acquire)
    }

    /// Marks the stream ended, frees the token, and wakes everyone who waits for it or
    /// for work. What was queued still runs (a peer that said goodbye gets its answers).
    pub(crate) fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        state.reading = false;
        for slot in state.queue.drain(..) {
            slot.recheck();
        }
        if let Some(dispatcher) = &state.dispatcher {
            dispatcher.recheck();
        }
        drop(state);
        self.ended.notify_all();
    }

    /// Waits until the stream has ended, at most `timeout`; whether it has.
    pub(crate) fn wait_ended(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.ended {
            state = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.ended
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .ended
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::calls::Wake;

    fn event() -> Queued {
        Queued {
            message: Message::Ping,
            cost: 1,
            deadline: None,
        }
    }

    const LIMIT: Duration = Duration::from_secs(20);

    #[test]
    fn one_reader_at_a_time_and_release_hands_the_token_to_the_first_in_line() {
        let token = Token::default();
        assert!(token.try_take(Role::Caller));
        assert!(!token.try_take(Role::Caller), "taken");
        let (first, second) = (Arc::new(Slot::default()), Arc::new(Slot::default()));
        assert!(token.queue(&first));
        assert!(token.queue(&second));
        assert!(token.queue(&first), "queued once");
        assert!(token.should_stop(Role::Background).is_some());
        token.release();
        // The first in line holds it now, without taking it.
        assert_eq!(first.wait(Some(Instant::now() + LIMIT)), Wake::Promoted);
        assert!(token.leave_queue(&first), "it was handed over");
        assert!(!token.try_take(Role::Caller), "still held, by `first`");
        token.release();
        assert_eq!(second.wait(Some(Instant::now() + LIMIT)), Wake::Promoted);
        assert!(second.take_promotion());
        token.release();
        assert!(token.try_take(Role::Caller), "free again");
        token.release();
        assert!(!token.queue(&first), "free: take it instead");
    }

    #[test]
    fn a_waiter_that_leaves_the_queue_is_not_handed_the_token() {
        let token = Token::default();
        assert!(token.try_take(Role::Caller));
        let slot = Arc::new(Slot::default());
        assert!(token.queue(&slot));
        assert!(!token.leave_queue(&slot));
        token.release();
        assert!(token.try_take(Role::Caller));
    }

    #[test]
    fn background_readers_wait_for_callers_to_be_quiet() {
        let token = Token::default();
        let seen = token.caller_activity();
        assert!(token.try_take(Role::Caller));
        token.release();
        let (took, activity) = token.try_take_quiet(seen);
        assert!(!took, "a caller read since");
        let (took, _) = token.try_take_quiet(activity);
        assert!(took, "quiet since the last look");
        token.release();
        token.note_caller_activity();
        assert!(!token.try_take_quiet(activity).0);
    }

    #[test]
    fn the_serving_loop_runs_queued_work_before_it_reads() {
        let token = Token::default();
        token.enqueue(event());
        token.enqueue(event());
        let seen = token.caller_activity();
        assert!(token.should_stop(Role::Server).is_some());
        assert!(token.should_stop(Role::NestedServer).is_some());
        assert!(token.should_stop(Role::Caller).is_none());
        assert!(matches!(
            token.serve_step(seen),
            ServeStep::Run { last: false, .. }
        ));
        assert!(matches!(
            token.serve_step(seen),
            ServeStep::Run { last: true, .. }
        ));
        assert!(matches!(token.serve_step(seen), ServeStep::Read));
        // Taken by the loop itself now: it waits until it is free again.
        assert!(matches!(token.serve_step(seen), ServeStep::Wait(_)));
        token.release();
        assert!(matches!(token.serve_step(seen + 1), ServeStep::Wait(_)));
    }

    #[test]
    fn work_wakes_the_waiting_dispatcher() {
        let token = Arc::new(Token::default());
        let idle = Arc::new(Slot::default());
        assert!(!token.set_dispatcher(Some(Arc::clone(&idle))));
        let other = Arc::clone(&token);
        let t = std::thread::spawn(move || other.enqueue(event()));
        assert_eq!(idle.wait(Some(Instant::now() + LIMIT)), Wake::Recheck);
        t.join().unwrap();
        assert!(token.set_dispatcher(None), "work is there");
        assert!(token.next_queued().is_some());
    }

    #[test]
    fn the_end_wakes_every_waiter_and_refuses_the_token() {
        let token = Arc::new(Token::default());
        assert!(token.try_take(Role::Caller));
        let waiters: Vec<_> = (0..3).map(|_| Arc::new(Slot::default())).collect();
        for slot in &waiters {
            assert!(token.queue(slot));
        }
        let dispatcher = Arc::new(Slot::default());
        token.set_dispatcher(Some(Arc::clone(&dispatcher)));
        token.enqueue(event());
        let ender = Arc::clone(&token);
        let t = std::thread::spawn(move || ender.end());
        assert!(token.wait_ended(LIMIT));
        t.join().unwrap();
        for slot in &waiters {
            assert_eq!(slot.wait(Some(Instant::now() + LIMIT)), Wake::Recheck);
        }
        assert_eq!(dispatcher.wait(Some(Instant::now() + LIMIT)), Wake::Recheck);
        assert!(token.is_ended());
        assert!(!token.try_take(Role::Caller));
        assert!(!token.queue(&waiters[0]));
        // What was queued still runs; then the loop ends.
        assert!(matches!(token.serve_step(0), ServeStep::Run { .. }));
        assert!(matches!(token.serve_step(0), ServeStep::Ended));
        assert!(matches!(token.should_stop(Role::Caller), Some(Stop::Ended)));
    }

    #[test]
    fn many_threads_take_turns_and_none_is_left_waiting() {
        // Each thread reads (holds the token) 200 times, queueing when it is taken.
        let token = Arc::new(Token::default());
        let holders = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (token, holders) = (Arc::clone(&token), Arc::clone(&holders));
                std::thread::spawn(move || {
                    let slot = Arc::new(Slot::default());
                    for _ in 0..200 {
                        loop {
                            if token.try_take(Role::Caller) {
                                break;
                            }
                            if !token.queue(&slot) {
                                continue;
                            }
                            let woke = slot.wait(Some(Instant::now() + LIMIT));
                            assert_ne!(woke, Wake::TimedOut, "never handed the token");
                            if token.leave_queue(&slot) {
                                break;
                            }
                        }
                        assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        holders.fetch_sub(1, Ordering::SeqCst);
                        token.release();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(token.try_take(Role::Caller), "free at the end");
    }
}
