//! `map` and `map_unordered` of a `Pool` and of a `Coprocess`: a bounded number of calls
//! in flight, one per item, except that a link's `map` sends its items in runs (many
//! calls to a frame, answered in one; see `wire::map_run`). The methods are defined here,
//! above both types, so that neither depends on this module.

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
use crate::error::{Error, Result};
use crate::pending::Pending;
use crate::pool::Pool;
use crate::wire::map_run::RunArgs;

/// How many calls a link's `map_unordered` keeps in flight.
const MAP_WINDOW: usize = 256;

/// How many runs of calls a link's `map` keeps in flight (each of up to 1 024 items or
/// about 64 KiB): enough that the worker always has the next run when it finishes one.
const RUNS_IN_FLIGHT: usize = 4;

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
    /// Calls `method` once per item of `items` and yields the results in input order,
    /// each item's result its own (an error fails that item only, and the iterator goes
    /// on to the next), as [`Pool::map`](crate::Pool::map) does.
    ///
    /// The calls travel in runs: up to 1 024 items (or about 64 KiB of them) in one
    /// frame, answered in one, with at most four runs in flight, so a stream of small
    /// calls costs each its value rather than a frame and a wake-up, many times faster
    /// than [`call_async`](Self::call_async) per item. The worker runs each item's
    /// handler as it would run the call alone (decoded against its own shape, its error
    /// or panic its own result), one after another, in order. Memory stays bounded
    /// however many items there are; runs go out as the iterator is consumed.
    ///
    /// What holds per run rather than per item: the link's `call_timeout` bounds a whole
    /// run, and dropping the iterator cancels the runs in flight (the worker runs no item
    /// of theirs past the next 64 it had started). Items and results travel as plain bytes: [`Fd`](crate::Fd)s fail to
    /// encode there, and [`SharedBytes`](crate::SharedBytes) are copied. Input order
    /// has a price: the next result waits for its run. [`map_unordered`](Self::map_unordered)
    /// sends one call per item and yields each result as it comes.
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
            RUNS_IN_FLIGHT,
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
    /// A pool's calls in flight, oldest first.
    in_flight: VecDeque<Pending<R>>,
    /// A link's runs of calls in flight, oldest first.
    runs: VecDeque<Run<R>>,
    /// The results of the oldest run, not yet yielded.
    ready: std::vec::IntoIter<Result<R>>,
    /// An item that could not be encoded, whose error follows the run before it.
    unsent: Option<Error>,
    /// Calls (a pool's) or runs (a link's) kept in flight.
    window: usize,
}

/// One of a link's runs of calls in flight.
enum Run<R> {
    Sent {
        pending: Pending<Vec<Result<R>>>,
        items: usize,
    },
    /// An item that could not be encoded.
    Unsent(Error),
}

impl<R, I> Map<R, I> {
    pub(crate) fn new(target: Target, method: &str, items: I, window: usize) -> Self {
        Self {
            target,
            method: method.into(),
            items,
            in_flight: VecDeque::new(),
            runs: VecDeque::new(),
            ready: Vec::new().into_iter(),
            unsent: None,
            window,
        }
    }
}

impl<R, I> fmt::Debug for Map<R, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("method", &self.method)
            .field("in_flight", &self.in_flight.len())
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl<R, A, I> Map<R, I>
where
    R: DeserializeOwned,
    A: Serialize,
    I: Iterator<Item = A>,
{
    /// The next run of calls from the items left, sent on `link`; `None` once they are
    /// all sent.
    fn next_run(&mut self, link: &Coprocess) -> Option<Run<R>> {
        if let Some(e) = self.unsent.take() {
            return Some(Run::Unsent(e));
        }
        let mut run = RunArgs::new(&self.method);
        while !run.is_full() {
            let Some(item) = self.items.next() else {
                break;
            };
            if let Err(e) = run.push(&item) {
                let e = Error::Encode {
                    method: self.method.to_string(),
                    reason: e.to_string(),
                };
                if run.len() == 0 {
                    return Some(Run::Unsent(e));
                }
                self.unsent = Some(e);
                break;
            }
        }
        (run.len() > 0).then(|| Run::Sent {
            pending: link.send_run(&self.method, &run),
            items: run.len(),
        })
    }

    /// The results of `run`: one per item, each its own, or the run's error for each.
    fn results_of(&self, run: Run<R>) -> Vec<Result<R>> {
        let (pending, items) = match run {
            Run::Sent { pending, items } => (pending, items),
            Run::Unsent(e) => return vec![Err(e)],
        };
        let failed = |e: Error| (0..items).map(|_| Err(e.again())).collect();
        match pending.wait() {
            Ok(results) if results.len() == items => results,
            Ok(results) => failed(Error::Protocol(format!(
                "{}: {} results came back for a run of {items} calls",
                self.method,
                results.len()
            ))),
            Err(e) => failed(e),
        }
    }

    /// A link's next result: from the oldest run, keeping `window` runs in flight.
    fn next_from_runs(&mut self, link: &Coprocess) -> Option<Result<R>> {
        loop {
            if let Some(result) = self.ready.next() {
                return Some(result);
            }
            while self.runs.len() < self.window {
                let Some(run) = self.next_run(link) else {
                    break;
                };
                self.runs.push_back(run);
            }
            let oldest = self.runs.pop_front()?;
            // The next run goes out before this one is waited for.
            if let Some(run) = self.next_run(link) {
                self.runs.push_back(run);
            }
            self.ready = self.results_of(oldest).into_iter();
        }
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
        if let Target::Link(link) = &self.target {
            if let Some(result) = self.ready.next() {
                return Some(result);
            }
            let link = link.clone();
            return self.next_from_runs(&link);
        }
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
