//! `map` and `map_unordered` of a `Pool` and of a `Coprocess`: one call per item, a
//! bounded number in flight. The methods are defined here, above both types, so that
//! neither depends on this module.

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

use crate::coprocess::Coprocess;
use crate::error::Result;
use crate::pending::Pending;
use crate::pool::Pool;

/// How many calls a link's `map` keeps in flight.
const MAP_WINDOW: usize = 256;

impl Pool {
    /// Calls `method` once per item of `items`, keeping a bounded number in flight, and
    /// yields the results in input order. Memory stays bounded however many items there
    /// are.
    ///
    /// Input order has a price: the next result waits for the oldest call, so one slow or
    /// hung call holds up every result behind it until it ends (or its `call_timeout`
    /// passes), though the calls behind it keep running. Where order does not matter,
    /// [`map_unordered`](Self::map_unordered) yields each result as it comes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(pool: &coproq::Pool) {
    /// let lengths: Vec<coproq::Result<usize>> = pool.map("len", ["a", "bb", "ccc"]).collect();
    /// # }
    /// ```
    pub fn map<R, A, I>(&self, method: &str, items: I) -> Map<R, I::IntoIter>
    where
        R: DeserializeOwned,
        A: Serialize,
        I: IntoIterator<Item = A>,
    {
        Map::new(
            Target::Pool(self.clone()),
            method,
            items.into_iter(),
            self.map_window(),
        )
    }

    /// Like [`map`](Self::map), but yields each result as its call completes, with the
    /// index of its item in `items`: a slow or hung call holds up only its own result.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(pool: &coproq::Pool) {
    /// let mut lengths = vec![0; 3];
    /// for (index, length) in pool.map_unordered::<usize, _, _>("len", ["a", "bb", "ccc"]) {
    ///     lengths[index] = length.unwrap_or(0);
    /// }
    /// # }
    /// ```
    pub fn map_unordered<R, A, I>(&self, method: &str, items: I) -> MapUnordered<R, I::IntoIter>
    where
        R: DeserializeOwned,
        A: Serialize,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(
            Target::Pool(self.clone()),
            method,
            items.into_iter(),
            self.map_window(),
        )
    }
}

impl Coprocess {
    /// Calls `method` once per item of `items`, pipelined with at most 256 calls in
    /// flight, and yields the results in input order, as [`Pool::map`](crate::Pool::map)
    /// does. Memory stays bounded however many items there are; calls go out as the
    /// iterator is consumed.
    ///
    /// Input order has a price: the next result waits for the oldest call.
    /// [`map_unordered`](Self::map_unordered) yields each result as it comes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(worker: &coproq::Coprocess) -> coproq::Result<()> {
    /// let squares: Vec<u64> = worker.map("square", 1..=1000u64).collect::<coproq::Result<_>>()?;
    /// # Ok(()) }
    /// ```
    pub fn map<R, A, I>(&self, method: &str, items: I) -> Map<R, I::IntoIter>
    where
        R: DeserializeOwned,
        A: Serialize,
        I: IntoIterator<Item = A>,
    {
        Map::new(
            Target::Link(self.clone()),
            method,
            items.into_iter(),
            MAP_WINDOW,
        )
    }

    /// Like [`map`](Self::map), but yields each result as its call completes, with the
    /// index of its item in `items`.
    pub fn map_unordered<R, A, I>(&self, method: &str, items: I) -> MapUnordered<R, I::IntoIter>
    where
        R: DeserializeOwned,
        A: Serialize,
        I: IntoIterator<Item = A>,
    {
        MapUnordered::new(
            Target::Link(self.clone()),
            method,
            items.into_iter(),
            MAP_WINDOW,
        )
    }
}

/// Where `map` sends its calls.
#[derive(Clone)]
pub(crate) enum Target {
    Pool(Pool),
    Link(Coprocess),
}

impl Target {
    fn call_async<R: DeserializeOwned>(&self, method: &str, args: impl Serialize) -> Pending<R> {
        match self {
            Self::Pool(pool) => pool.call_async(method, args),
            Self::Link(link) => link.call_async(method, args),
        }
    }
}

/// The iterator of [`Pool::map`] and [`Coprocess::map`]: results in input order.
#[must_use = "iterators are lazy: the calls are made as it is consumed"]
pub struct Map<R, I> {
    target: Target,
    method: Box<str>,
    items: I,
    in_flight: VecDeque<Pending<R>>,
    window: usize,
}

impl<R, I> Map<R, I> {
    pub(crate) fn new(target: Target, method: &str, items: I, window: usize) -> Self {
        Self {
            target,
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
            let pending = self.target.call_async(&self.method, item);
            self.in_flight.push_back(pending);
        }
        self.in_flight.pop_front().map(Pending::wait)
    }
}

/// The iterator of [`Pool::map_unordered`] and [`Coprocess::map_unordered`]: each result
/// as its call completes, with the index of its item.
#[must_use = "iterators are lazy: the calls are made as it is consumed"]
pub struct MapUnordered<R, I> {
    target: Target,
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
    pub(crate) fn new(target: Target, method: &str, items: I, window: usize) -> Self {
        Self {
            target,
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
            let pending = self.target.call_async(&self.method, item);
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
