//! `Pool::map` and `Pool::map_unordered`: one call per item, a bounded number in flight.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use crate::error::Result;
use crate::pending::Pending;

/// The iterator of [`Pool::map`]: results in input order.
#[must_use = "iterators are lazy: the calls are made as it is consumed"]
pub struct Map<R, I> {
    pool: Pool,
    method: Box<str>,
    items: I,
    in_flight: VecDeque<Pending<R>>,
    window: usize,
}

impl<R, I> Map<R, I> {
    pub(super) fn new(pool: Pool, method: &str, items: I, window: usize) -> Self {
        Self {
            pool,
            method: method.into(),
            items,
            in_flight: VecDeque::new(),
            window,
        }
    }
}

impl<R, I> fmt::Debug for Map<R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("method", &self.method)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<R, A, I> Iterator for Map<R, I>
where
    R: DeserializeOwned,
    A: Serialize,
    I: Iterator<Item = A>,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        while self.in_flight.len() < self.window {
            let Some(item) = self.items.next() else {
                break;
            };
            let pending = self.pool.call_async(&self.method, item);
            self.in_flight.push_back(pending);
        }
        self.in_flight.pop_front().map(Pending::wait)
    }
}

/// The iterator of [`Pool::map_unordered`]: each result as its call completes, with the
/// index of its item.
#[must_use = "iterators are lazy: the calls are made as it is consumed"]
pub struct MapUnordered<R, I> {
    pool: Pool,
    method: Box<str>,
    items: std::iter::Enumerate<I>,
    in_flight: Vec<(usize, Pending<R>)>,
    window: usize,
    /// Wakes the thread that consumes the iterator (`thread`) when a call in flight may
    /// have completed.
    waker: Waker,
    thread: std::thread::ThreadId,
}

impl<R, I: Iterator> MapUnordered<R, I> {
    pub(super) fn new(pool: Pool, method: &str, items: I, window: usize) -> Self {
        Self {
            pool,
            method: method.into(),
            items: items.enumerate(),
            in_flight: Vec::new(),
            window,
            waker: current_waker(),
            thread: std::thread::current().id(),
        }
    }
}

impl<R, I> fmt::Debug for MapUnordered<R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapUnordered")
            .field("method", &self.method)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// Unparks the thread that waits for any of the calls in flight.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl<R, A, I> Iterator for MapUnordered<R, I>
where
    R: DeserializeOwned,
    A: Serialize,
    I: Iterator<Item = A>,
{
    type Item = (usize, Result<R>);

    fn next(&mut self) -> Option<(usize, Result<R>)> {
        while self.in_flight.len() < self.window {
            let Some((index, item)) = self.items.next() else {
                break;
            };
            let pending = self.pool.call_async(&self.method, item);
            self.in_flight.push((index, pending));
        }
        if self.in_flight.is_empty() {
            return None;
        }
        // The thread that consumes the iterator waits (it may have moved to another).
        if self.thread != std::thread::current().id() {
            self.waker = current_waker();
            self.thread = std::thread::current().id();
        }
        loop {
            let mut cx = Context::from_waker(&self.waker);
            for at in 0..self.in_flight.len() {
                if let Poll::Ready(result) = Pin::new(&mut self.in_flight[at].1).poll(&mut cx) {
                    let (index, _) = self.in_flight.swap_remove(at);
                    return Some((index, result));
                }
            }
            // A deadline passes without a wake-up: look again at the earliest one.
            match self
                .in_flight
                .iter()
                .filter_map(|(_, p)| p.deadline_at())
                .min()
            {
                Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
        }
    }
}

/// A waker that unparks this thread.
fn current_waker() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}
