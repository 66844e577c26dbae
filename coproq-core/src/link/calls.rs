//! Calls in flight: id → the slot its reply lands in, and the slots themselves.
//!
//! A slot is where one waiting thread sleeps: it wakes when its reply lands, when it is
//! handed the read token (promoted), or when asked to look at new work again. The table is plain
//! bookkeeping without I/O: whoever reads a reply completes its slot, and whoever sees the
//! link end fails every slot and closes the table, so no caller can wait forever.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Instant;

use crate::error::Error;
use crate::wire::{Body, Outcome};

/// A reply as it arrived, before the caller decodes it.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub(crate) outcome: Outcome,
    pub(crate) body: Body,
}

/// What a waiting caller receives.
pub(crate) type Delivery = Result<RawReply, Error>;

/// Why a slot's waiter woke.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The reply is in.
    Reply,
    /// The waiter now holds the read token.
    Promoted,
    /// Something changed (new inbox work, the link ended): look again.
    Recheck,
    /// The deadline passed.
    TimedOut,
}

#[derive(Debug, Default)]
struct SlotState {
    reply: Option<Delivery>,
    promoted: bool,
    recheck: bool,
    /// A thread sleeps in `wait`.
    waiting: bool,
    waker: Option<Waker>,
}

/// How a call left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Its reply arrived.
    Replied,
    /// The link ended first.
    LinkEnded,
    /// Its caller stopped waiting.
    Forgotten,
}

/// Told when a call leaves the table, before anything is delivered to its slot: a pool
/// counts its workers' calls in flight this way, and re-sends calls whose worker died.
pub(crate) trait Watch: Send + Sync {
    /// The call left the table; returns whether its slot should get the delivery (false:
    /// the call was taken elsewhere, such as re-sent to another worker).
    fn settled(&self, how: Settled) -> bool;
    /// The peer says the call started running.
    fn started(&self) {}
    /// How far the call is to blame for the peer's death, once `settled` said
    /// `LinkEnded` and agreed to the delivery (a pool's suspects).
    fn blame(&self) -> Option<crate::error::Blame> {
        None
    }
}

/// Where one thread (or one future) waits.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
    watch: Option<Arc<dyn Watch>>,
    /// Set after the state changes, for a waiter spinning before it sleeps.
    signal: AtomicBool,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("state", &self.state)
            .field("cv", &self.cv)
            .field("watched", &self.watch.is_some())
            .field("signal", &self.signal)
            .finish()
    }
}

impl Slot {
    /// A slot whose call is watched by `watch`.
    pub(crate) fn watched(watch: Arc<dyn Watch>) -> Self {
        Self {
            watch: Some(watch),
            ..Self::default()
        }
    }

    /// Tells the watch, if any, that the peer started running the call.
    pub(crate) fn started(&self) {
        if let Some(watch) = &self.watch {
            watch.started();
        }
    }

    /// Tells the watch, if any, how the call left the table; whether to deliver.
    pub(crate) fn settle(&self, how: Settled) -> bool {
        self.watch.as_ref().is_none_or(|watch| watch.settled(how))
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the reply in and wakes the waiter; returns whether a thread was blocked
    /// waiting (rather than a future, or nobody yet).
    #[inline]
    pub(crate) fn deliver(&self, delivery: Delivery) -> bool {
        let (waiting, waker) = {
            let mut state = self.lock();
            state.reply = Some(delivery);
            (state.waiting, state.waker.take())
        };
        self.signal.store(true, Ordering::Release);
        if waiting {
            self.cv.notify_one();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        waiting
    }

    /// Hands the read token to this slot's waiter.
    pub(crate) fn promote(&self) {
        self.lock().promoted = true;
        self.signal.store(true, Ordering::Release);
        self.cv.notify_one();
    }

    /// Asks the waiter to look again.
    pub(crate) fn recheck(&self) {
        self.lock().recheck = true;
        self.signal.store(true, Ordering::Release);
        self.cv.notify_one();
    }

    /// Forgets earlier signals; returns whether something is already there to wake for.
    /// A spinning waiter calls this first, then watches [`Slot::signalled`].
    pub(crate) fn rearm(&self) -> bool {
        self.signal.store(false, Ordering::Relaxed);
        let state = self.lock();
        state.promoted || state.reply.is_some() || state.recheck
    }

    /// Whether something happened since [`Slot::rearm`] (lock-free, for spinning).
    pub(crate) fn signalled(&self) -> bool {
        self.signal.load(Ordering::Acquire)
    }

    /// Takes the reply, if it is in.
    #[inline]
    pub(crate) fn take_reply(&self) -> Option<Delivery> {
        self.lock().reply.take()
    }

    /// Whether the reply is in.
    pub(crate) fn has_reply(&self) -> bool {
        self.lock().reply.is_some()
    }

    /// Clears and returns the promoted flag.
    pub(crate) fn take_promotion(&self) -> bool {
        std::mem::take(&mut self.lock().promoted)
    }

    /// Registers a future's waker; returns the reply instead if it is already in.
    pub(crate) fn reply_or_register(&self, waker: &Waker) -> Option<Delivery> {
        let mut state = self.lock();
        if let Some(reply) = state.reply.take() {
            return Some(reply);
        }
        state.waker = Some(waker.clone());
        None
    }

    /// Sleeps until something happens or `deadline` passes.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Wake {
        let mut state = self.lock();
        let wake = loop {
            if state.promoted {
                break Wake::Promoted;
            }
            if state.reply.is_some() {
                break Wake::Reply;
            }
            if std::mem::take(&mut state.recheck) {
                break Wake::Recheck;
            }
            state.waiting = true;
            state = match deadline {
                None => self.cv.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Wake::TimedOut;
                    }
                    self.cv
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        };
        state.waiting = false;
        wake
    }
}

/// Fails each slot with the error `error` makes for it (where its watch agrees).
pub(crate) fn fail_slots(slots: Vec<Arc<Slot>>, error: impl Fn() -> Error) {
    for slot in slots {
        if slot.settle(Settled::LinkEnded) {
            let error = error();
            let blame = slot.watch.as_ref().and_then(|watch| watch.blame());
            slot.deliver(Err(match blame {
                Some(blame) => error.blamed(blame),
                None => error,
            }));
        }
    }
}

/// How many ids the ring spans before its oldest waiting call moves to `old`.
const RING: usize = 1 << 16;

/// The table: a ring indexed by `id - base` for the calls of the last `RING` ids (ids
/// are handed out in order, so recent calls are found by subtraction, not hashing), and
/// a map for the few that wait longer. `closed` is set once the link has ended; inserts
/// fail from then on.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    base: u64,
    ring: VecDeque<Option<Arc<Slot>>>,
    old: HashMap<u64, Arc<Slot>>,
    closed: bool,
}

impl Calls {
    /// Registers a caller's slot; fails if the link has ended.
    #[inline]
    pub(crate) fn insert(&mut self, id: u64, slot: Arc<Slot>) -> Result<(), Arc<Slot>> {
        if self.closed {
            return Err(slot);
        }
        if self.ring.is_empty() {
            self.base = id;
        }
        match id
            .checked_sub(self.base)
            .and_then(|at| usize::try_from(at).ok())
        {
            Some(at) => {
                if at >= self.ring.len() {
                    self.ring.resize(at + 1, None);
                }
                self.ring[at] = Some(slot);
                self.trim();
            }
            // An id older than the ring (its thread was slow to insert): keep it aside.
            None => {
                self.old.insert(id, slot);
            }
        }
        Ok(())
    }

    /// Drops finished ids from the front; moves long waiters out of the ring.
    fn trim(&mut self) {
        while let Some(front) = self.ring.front() {
            if front.is_some() && self.ring.len() <= RING {
                break;
            }
            if let Some(Some(slot)) = self.ring.pop_front() {
                self.old.insert(self.base, slot);
            }
            self.base += 1;
        }
    }

    #[inline]
    fn take(&mut self, id: u64) -> Option<Arc<Slot>> {
        let taken = match id
            .checked_sub(self.base)
            .and_then(|at| usize::try_from(at).ok())
        {
            Some(at) => self.ring.get_mut(at).and_then(Option::take),
            None => self.old.remove(&id),
        };
        self.trim();
        taken
    }

    /// The slot of call `id`, if a caller waits for it.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Slot>> {
        let found = match id
            .checked_sub(self.base)
            .and_then(|at| usize::try_from(at).ok())
        {
            Some(at) => self.ring.get(at).and_then(Option::as_ref),
            None => self.old.get(&id),
        };
        found.map(Arc::clone)
    }

    /// Delivers a reply; returns the slot, or `None` if no caller waits for `id` (timed
    /// out, or a stray reply), in which case the reply is dropped.
    #[inline]
    pub(crate) fn complete(&mut self, id: u64) -> Option<Arc<Slot>> {
        self.take(id)
    }

    /// Forgets a caller that stopped waiting; returns its slot (to settle outside the
    /// table's lock).
    pub(crate) fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        self.take(id)
    }

    /// Closes the table and returns every waiting caller's slot, for the caller to fail
    /// outside the table's lock (see [`fail_slots`]).
    pub(crate) fn close(&mut self) -> Vec<Arc<Slot>> {
        self.closed = true;
        let ring = self.ring.drain(..).flatten();
        ring.chain(self.old.drain().map(|(_, slot)| slot)).collect()
    }

    /// How many callers wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ring.iter().flatten().count() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn close_and_fail_slots_reach_every_slot() {
        let mut calls = Calls::default();
        let (a, b) = (Arc::new(Slot::default()), Arc::new(Slot::default()));
        calls.insert(1, Arc::clone(&a)).unwrap();
        calls.insert(2, Arc::clone(&b)).unwrap();
        fail_slots(calls.close(), Error::stream_ended);
        assert!(matches!(
            a.take_reply(),
            Some(Err(Error::Disconnected { .. }))
        ));
        assert!(matches!(
            b.take_reply(),
            Some(Err(Error::Disconnected { .. }))
        ));
        assert!(calls.insert(3, Arc::default()).is_err());
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn unknown_and_removed_ids_are_ignored() {
        let mut calls = Calls::default();
        calls.insert(1, Arc::default()).unwrap();
        calls.remove(1);
        assert!(calls.complete(1).is_none());
        assert!(calls.complete(99).is_none());
    }

    #[test]
    fn ids_in_any_order_and_long_waiters_are_kept() {
        let mut calls = Calls::default();
        let first = Arc::new(Slot::default());
        calls.insert(10, Arc::clone(&first)).unwrap();
        // Many later calls come and go while the first one waits.
        for id in 11..(11 + 3 * RING as u64) {
            calls.insert(id, Arc::default()).unwrap();
            assert!(calls.complete(id).is_some());
        }
        assert!(
            calls.ring.len() <= RING + 1,
            "the ring grew to {}",
            calls.ring.len()
        );
        assert!(Arc::ptr_eq(&calls.complete(10).unwrap(), &first));
        // Out of order, and an id older than the ring.
        calls.insert(500_002, Arc::default()).unwrap();
        calls.insert(500_001, Arc::default()).unwrap();
        calls.insert(3, Arc::default()).unwrap();
        assert_eq!(calls.len(), 3);
        assert!(calls.complete(3).is_some());
        assert!(calls.complete(500_001).is_some());
        assert!(calls.complete(500_002).is_some());
        assert!(calls.complete(500_002).is_none());
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn a_slot_wakes_for_each_reason() {
        let slot = Arc::new(Slot::default());
        assert_eq!(
            slot.wait(Some(Instant::now() + Duration::from_millis(5))),
            Wake::TimedOut
        );
        slot.recheck();
        assert_eq!(slot.wait(None), Wake::Recheck);
        slot.promote();
        assert_eq!(slot.wait(None), Wake::Promoted);
        assert!(slot.take_promotion());
        let other = Arc::clone(&slot);
        let t = std::thread::spawn(move || other.deliver(Err(Error::NotConnected)));
        assert_eq!(slot.wait(None), Wake::Reply);
        t.join().unwrap();
        assert!(slot.take_reply().is_some());
    }
}
