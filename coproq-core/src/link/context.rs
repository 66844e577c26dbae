//! What a thread does on a link: the link it serves (and the batch it read), and the
//! call it is handling (its deadline, whether its caller cancelled it). Calls a handler
//! makes while running inherit what remains of its deadline.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Link;
use super::batch::Batch;
use crate::wire::{Args, Body, run};

/// What a serving thread holds: its link, the calls and events it read in one batch and
/// has yet to run (older than anything in the link's inbox), and the runs of events it is
/// running. Both are shared with whoever runs their entries: the serving loop, and a
/// handler's wait.
struct Serving {
    link: Arc<Link>,
    batch: Rc<Batch>,
    /// The runs being run, innermost last. A run starts inside another's listener only
    /// once that one has no events left, so only the innermost can have any.
    runs: Vec<Rc<Run>>,
}

/// A run of events that a serving thread is running, kept whole in its frame. Each next
/// event is taken by whoever runs next, the loop that started the run or a wait inside
/// one of its listeners: a listener that waits for the peer does not hold up the events
/// behind it, and none runs twice.
pub(crate) struct Run {
    body: Body,
    /// Where the next event starts in the body.
    next: Cell<usize>,
}

impl Run {
    pub(crate) fn new(body: Body) -> Self {
        let next = Cell::new(body.first_run_event());
        Self { body, next }
    }

    /// The next event, taken.
    #[inline]
    pub(crate) fn take_next(&self) -> Option<Args<'_>> {
        let (args, next) = run::event_at(&self.body, self.next.get())?;
        self.next.set(next);
        Some(args)
    }

    fn has_next(&self) -> bool {
        run::event_at(&self.body, self.next.get()).is_some()
    }
}

/// The call being handled on this thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    /// The call's id on the serving link.
    pub(crate) id: u64,
    /// When the caller stops waiting.
    pub(crate) deadline: Option<Instant>,
}

thread_local! {
    /// The link whose calls this thread runs, if any.
    static SERVING: RefCell<Option<Serving>> = const { RefCell::new(None) };
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
    /// The link whose async handler's future this thread is polling, if any.
    static POLLED: RefCell<Option<Arc<Link>>> = const { RefCell::new(None) };
    /// What the events this serving thread ran cost the peer's window, not yet given
    /// back (events give their room back together, not one by one).
    static RAN: Cell<u64> = const { Cell::new(0) };
}

/// An event that costs `cost` ran on this serving thread.
#[inline]
pub(crate) fn ran_event(cost: u64) {
    RAN.set(RAN.get() + cost);
}

/// What the events that ran on this thread cost, to give back now.
#[inline]
pub(crate) fn take_ran() -> u64 {
    RAN.replace(0)
}

/// Runs `body` as the thread serving `link`.
pub(crate) fn as_server<T>(link: &Arc<Link>, body: impl FnOnce() -> T) -> T {
    let serving = Serving {
        link: Arc::clone(link),
        batch: Rc::default(),
        runs: Vec::new(),
    };
    let previous = SERVING.replace(Some(serving));
    let result = body();
    SERVING.set(previous);
    result
}

/// This serving thread's batch.
#[inline]
pub(crate) fn current_batch() -> Option<Rc<Batch>> {
    SERVING.with_borrow(|serving| serving.as_ref().map(|s| Rc::clone(&s.batch)))
}

/// Takes this serving thread's batch out (to fill it: nothing reached meanwhile may find
/// it borrowed); an empty one if this thread serves nothing.
pub(crate) fn take_batch() -> Rc<Batch> {
    SERVING
        .with_borrow_mut(|serving| serving.as_mut().map(|s| std::mem::take(&mut s.batch)))
        .unwrap_or_default()
}

/// Puts this serving thread's batch back.
pub(crate) fn put_batch(batch: Rc<Batch>) {
    SERVING.with_borrow_mut(|serving| {
        if let Some(serving) = serving.as_mut() {
            serving.batch = batch;
        }
    });
}

/// Runs `body` while this serving thread runs `run` (waits inside its listeners take its
/// next events: see [`current_run`]).
pub(crate) fn running<T>(run: &Rc<Run>, body: impl FnOnce() -> T) -> T {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SERVING.with_borrow_mut(|serving| {
                if let Some(serving) = serving.as_mut() {
                    serving.runs.pop();
                }
            });
        }
    }
    let pushed = SERVING.with_borrow_mut(|serving| {
        serving
            .as_mut()
            .map(|serving| serving.runs.push(Rc::clone(run)))
    });
    let _pop = pushed.map(|()| Pop);
    body()
}

/// The run this serving thread is running, if it has events left: the oldest work a wait
/// on this thread has to run.
pub(crate) fn current_run() -> Option<Rc<Run>> {
    SERVING.with_borrow(|serving| {
        serving
            .as_ref()?
            .runs
            .last()
            .filter(|run| run.has_next())
            .map(Rc::clone)
    })
}

/// Whether this thread serves `link`.
#[inline]
pub(crate) fn is_serving(link: &Arc<Link>) -> bool {
    SERVING.with_borrow(|serving| serving.as_ref().is_some_and(|s| Arc::ptr_eq(&s.link, link)))
}

/// The link this thread serves, if any.
pub(crate) fn serving_link() -> Option<Arc<Link>> {
    SERVING.with_borrow(|serving| serving.as_ref().map(|s| Arc::clone(&s.link)))
}

/// The call being handled on this thread, if any.
pub(crate) fn current() -> Option<Current> {
    CURRENT.get()
}

/// Runs `poll` as a poll of an async handler's future on `link`, handling `current`
/// (`None` for a listener): `cancelled()` and `deadline()` answer for it.
pub(crate) fn polling<T>(
    link: &Arc<Link>,
    current: Option<Current>,
    poll: impl FnOnce() -> T,
) -> T {
    struct Restore(Option<Current>, Option<Arc<Link>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
            POLLED.set(self.1.take());
        }
    }
    let _restore = Restore(
        CURRENT.replace(current),
        POLLED.replace(Some(Arc::clone(link))),
    );
    poll()
}

/// Runs `body` as the handling of `current` (nested handlings restore the outer one).
#[inline]
pub(crate) fn handling<T>(current: Current, body: impl FnOnce() -> T) -> T {
    struct Restore(Option<Current>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.set(self.0);
        }
    }
    let _restore = Restore(CURRENT.replace(Some(current)));
    body()
}

/// The deadline a call started on this thread inherits, if it runs inside a handler.
pub(crate) fn inherited_deadline() -> Option<Instant> {
    CURRENT.get().and_then(|current| current.deadline)
}

/// When a call's caller stops waiting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    /// The time from the call's start to `at`, for [`Error::Timeout`](crate::Error::Timeout).
    pub(crate) after: Duration,
}

impl Deadline {
    /// The earlier of a default timeout from now and a deadline inherited from the call
    /// being handled on this thread.
    #[inline]
    pub(crate) fn for_new_call(timeout: Option<Duration>) -> Option<Self> {
        let inherited = inherited_deadline();
        if timeout.is_none() && inherited.is_none() {
            // The common case reads no clock.
            return None;
        }
        let now = Instant::now();
        let own = timeout.and_then(|t| now.checked_add(t));
        let at = match (own, inherited) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(Self {
            at,
            after: at.saturating_duration_since(now),
        })
    }

    /// The earlier of two deadlines.
    pub(crate) fn min(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if a.at <= b.at { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

/// The deadline of the call this thread is handling: when its caller stops waiting (its
/// `wait_timeout`, or the `call_timeout` of its link or pool, or one it inherited),
/// however long the call waited before it started.
///
/// `None` outside a handler, or when the caller waits without a deadline. For a worker on
/// this machine it is exactly the caller's deadline; for one on another machine (over
/// ssh) it is counted from when the call arrived. Calls the handler makes to the peer on
/// this thread inherit what remains of it, so a nested call never outlives the call it
/// serves. A call whose deadline passed before it could start never runs. Inside an
/// async handler it is its call's deadline whenever its future is polled.
///
/// # Examples
///
/// ```no_run
/// # fn demo(worker: &coproq::Coprocess) {
/// worker.handle("crunch", |n: u64| {
///     let budget = coproq::deadline().map(|d| d.saturating_duration_since(std::time::Instant::now()));
///     format!("{n} with {budget:?} to go")
/// });
/// # }
/// ```
#[must_use]
pub fn deadline() -> Option<Instant> {
    inherited_deadline()
}

/// Whether the caller of the call this thread is handling has cancelled it (by
/// [`Pending::cancel`](crate::Pending::cancel), by dropping its `Pending`, or because its
/// deadline passed). A long handler may check this now and then and give up early: its
/// answer is discarded anyway. The check reads what has arrived first, so a cancel is
/// seen however many calls wait behind the running one.
///
/// `false` outside a handler. A deferred handler's [`Reply::is_cancelled`](crate::Reply::is_cancelled)
/// answers the same from any thread. Inside an async handler (`handle_async`, an
/// `async fn` of a service) it answers for its call whenever its future is polled; a
/// cancelled async call's future is dropped at its next wake-up anyway.
#[must_use]
pub fn cancelled() -> bool {
    let Some(current) = CURRENT.get() else {
        return false;
    };
    let link = POLLED.with_borrow(Option::clone).or_else(serving_link);
    link.is_some_and(|link| {
        link.read_ahead();
        link.cancels.contains(current.id)
    })
}
