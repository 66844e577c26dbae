//! The pending-call table: call id → the caller waiting for its reply.
//!
//! Pure bookkeeping, no I/O. Whoever reads replies completes entries; whoever sees the
//! link end fails them all and closes the table, so that no caller can wait forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::Waker;

use crossbeam_channel::Sender;

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

/// Where an async caller's waker waits.
pub(crate) type WakerSlot = Arc<Mutex<Option<Waker>>>;

/// One waiting caller.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) tx: Sender<Delivery>,
    pub(crate) waker: WakerSlot,
}

impl Waiter {
    fn deliver(self, delivery: Delivery) {
        // The receiver may be gone (a timed-out or dropped `Pending`): nothing to do then.
        let _ = self.tx.send(delivery);
        if let Some(waker) = self
            .waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            waker.wake();
        }
    }
}

/// The table. `closed` is set once the link has ended; inserts fail from then on.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    map: HashMap<u64, Waiter>,
    closed: bool,
}

impl Calls {
    /// Registers a caller; fails (handing the waiter back) if the link has ended.
    pub(crate) fn insert(&mut self, id: u64, waiter: Waiter) -> Result<(), Waiter> {
        if self.closed {
            return Err(waiter);
        }
        self.map.insert(id, waiter);
        Ok(())
    }

    /// Delivers a reply; returns false if no caller waits for `id` (timed out, or a
    /// peer's stray reply), in which case the reply is dropped.
    pub(crate) fn complete(&mut self, id: u64, delivery: Delivery) -> bool {
        match self.map.remove(&id) {
            Some(waiter) => {
                waiter.deliver(delivery);
                true
            }
            None => false,
        }
    }

    /// Forgets a caller that stopped waiting.
    pub(crate) fn remove(&mut self, id: u64) {
        self.map.remove(&id);
    }

    /// Fails every waiting caller and closes the table.
    pub(crate) fn fail_all(&mut self, error: &Error) {
        self.closed = true;
        for (_, waiter) in self.map.drain() {
            waiter.deliver(Err(error.duplicate()));
        }
    }

    /// How many callers wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    fn waiter() -> (Waiter, crossbeam_channel::Receiver<Delivery>) {
        let (tx, rx) = bounded(1);
        (
            Waiter {
                tx,
                waker: WakerSlot::default(),
            },
            rx,
        )
    }

    #[test]
    fn fail_all_reaches_every_waiter_and_closes() {
        let mut calls = Calls::default();
        let (a, ra) = waiter();
        let (b, rb) = waiter();
        calls.insert(1, a).unwrap();
        calls.insert(2, b).unwrap();
        calls.fail_all(&Error::Disconnected { status: None });
        assert!(matches!(
            ra.recv().unwrap(),
            Err(Error::Disconnected { .. })
        ));
        assert!(matches!(
            rb.recv().unwrap(),
            Err(Error::Disconnected { .. })
        ));
        assert!(calls.insert(3, waiter().0).is_err());
        assert_eq!(calls.len(), 0);
    }

    #[test]
    fn unknown_and_removed_ids_are_ignored() {
        let mut calls = Calls::default();
        let (a, _ra) = waiter();
        calls.insert(1, a).unwrap();
        calls.remove(1);
        assert!(!calls.complete(1, Err(Error::NotConnected)));
        assert!(!calls.complete(99, Err(Error::NotConnected)));
    }
}
