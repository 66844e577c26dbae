//! The futures of async handlers in flight on one link.
//!
//! An async handler's future is spawned when its call or event is dispatched, so the
//! serving thread goes on at once: calls are launched in arrival order and complete in
//! any order, as many at once as the peer's window lets it send. Each future is polled
//! inside [`Served`], which makes `cancelled()` and `deadline()` answer for its call,
//! turns a panic into that call's remote error, and drops the future at its next wake-up
//! once the peer cancels the call (a cancel wakes it) or vanishes.
//!
//! Every future is first polled on the thread that dispatched it, so a future that is
//! ready at once answers with no hand-over. One that is not then runs on a tokio runtime
//! where the handler table has one (the `tokio` feature), otherwise on the link's own
//! executor: one thread, started by the first future, that polls whichever was woken. It drives futures that need no runtime (channels,
//! `Pending` calls to the peer, timers of their own); a future that blocks its thread
//! holds up the link's other async handlers, as a blocking `handle` holds up the link.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::context::{self, Current};
use super::{Link, Responder};
use crate::wire::OutcomeKind;

/// What an async call handler's future comes to: how to answer with its value.
/// (Made where it is used, so it need not be `Send`.)
pub(crate) type Answer = Box<dyn FnOnce(Responder)>;

/// An async call handler's future, its value made into an [`Answer`].
pub(crate) type CallFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// An async event listener's future.
pub(crate) type EventFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The futures in flight on one link.
#[derive(Default)]
pub(crate) struct Tasks {
    /// Running async calls by id, with the wakers that a cancel wakes (several where the
    /// items of one run of calls share its id: see `link::map_run`).
    calls: Mutex<HashMap<u64, Vec<Waker>>>,
    /// How many futures (calls and events) are in flight.
    live: AtomicUsize,
    /// Taken to wait for `live` to fall to zero, and to say that it has.
    idle_lock: Mutex<()>,
    /// Woken when `live` falls to zero.
    idle: Condvar,
    /// The runtime-free executor's queue of woken futures, once the first was spawned
    /// (`None`: its thread could not start).
    executor: OnceLock<Option<Sender<Arc<Task>>>>,
}

impl Tasks {
    /// The peer cancelled call `id`: if it is an async call, its future is woken, to be
    /// dropped.
    pub(crate) fn cancelled(&self, id: u64) {
        let wakers = self.lock_calls().get(&id).cloned();
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// The link ended: every call's future is woken, to see whether it can still answer.
    pub(crate) fn ended(&self) {
        let wakers: Vec<Waker> = self.lock_calls().values().flatten().cloned().collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Waits until no future is in flight, or `until`; whether none is.
    pub(crate) fn wait_idle(&self, until: Instant) -> bool {
        let mut guard = self
            .idle_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while self.live.load(Ordering::Acquire) > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self
                .idle
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Waker>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn started(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// A future finished: `watched`, the call it answered and the waker it was last
    /// polled with, if it was watched for cancels.
    fn finished(&self, watched: Option<(u64, &Waker)>) {
        if let Some((id, waker)) = watched {
            let mut calls = self.lock_calls();
            if let Some(wakers) = calls.get_mut(&id) {
                wakers.retain(|known| !known.will_wake(waker));
                if wakers.is_empty() {
                    calls.remove(&id);
                }
            }
        }
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Under the lock, so that a waiter between its look and its wait is not missed.
            let _guard = self
                .idle_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.idle.notify_all();
        }
    }

    /// Remembers `waker` as one to wake when call `id` is cancelled; `before`, the waker
    /// this future was watched with until now (if another), is forgotten.
    fn watch(&self, id: u64, waker: &Waker, before: Option<&Waker>) {
        let mut calls = self.lock_calls();
        let wakers = calls.entry(id).or_default();
        if let Some(before) = before.filter(|before| !before.will_wake(waker)) {
            wakers.retain(|known| !known.will_wake(before));
        }
        if !wakers.iter().any(|known| known.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

/// Runs the future of an async call handler, which answers through `responder`.
pub(crate) fn spawn_call(responder: Responder, future: CallFuture) {
    let link = Arc::clone(responder.link());
    let current = context::current().unwrap_or(Current {
        id: responder.id(),
        deadline: None,
    });
    spawn(
        &link,
        Box::pin(Served {
            link: Arc::clone(&link),
            counted: false,
            work: Work::Call {
                current,
                responder: Some(responder),
                future,
                later: false,
                watched: None,
            },
        }),
    );
}

/// Runs the future of an async event listener of the link this thread serves.
pub(crate) fn spawn_event(future: EventFuture) {
    let Some(link) = context::serving_link() else {
        // Listeners run only where a link is served; nothing else can reach here.
        return;
    };
    spawn(
        &link,
        Box::pin(Served {
            link: Arc::clone(&link),
            counted: false,
            work: Work::Event(Some(future)),
        }),
    );
}

/// Polls `served` once here, on the thread that dispatched it: a future that is ready at
/// once needs no task and no hand-over. One that is not goes to its runtime, which polls
/// it again at once with the waker of its task: the waker given here wakes nothing.
fn spawn(link: &Arc<Link>, mut served: Pin<Box<Served>>) {
    #[cfg(feature = "tokio")]
    if let Some(runtime) = link.handlers.tokio() {
        // In the runtime's context, so that the future may make timers and sockets.
        let first = {
            let _context = runtime.enter();
            poll_here(&mut served)
        };
        if first.is_pending() {
            served.as_mut().count();
            drop(runtime.spawn(served));
        }
        return;
    }
    if poll_here(&mut served).is_ready() {
        return;
    }
    served.as_mut().count();
    let Some(queue) = link.tasks.executor.get_or_init(start_executor) else {
        // Dropped unrun: a call is answered with the failure (see `Served`'s drop).
        return;
    };
    let task = Arc::new(Task {
        future: Mutex::new(Some(served)),
        scheduled: AtomicBool::new(true),
        queue: queue.clone(),
    });
    // The executor holds its own receiver, so the queue is open while we hold a sender.
    let _ = queue.send(task);
}

fn poll_here(served: &mut Pin<Box<Served>>) -> Poll<()> {
    served
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// An async handler's future and what it answers, polled as the handler of its call.
struct Served {
    link: Arc<Link>,
    /// Counted among the futures in flight: it did not finish in its first poll.
    counted: bool,
    work: Work,
}

impl Served {
    /// It did not finish in its first poll: counted in flight until it does.
    fn count(mut self: Pin<&mut Self>) {
        self.counted = true;
        self.link.tasks.started();
    }
}

enum Work {
    Call {
        current: Current,
        /// `None` once answered.
        responder: Option<Responder>,
        future: CallFuture,
        /// Past its first poll: an answer now comes on its own, and is written at once
        /// (one in the first poll shares a write with the dispatcher's other replies).
        later: bool,
        /// The waker a cancel of its call wakes, once it is watched.
        watched: Option<Waker>,
    },
    /// `None` once done.
    Event(Option<EventFuture>),
}

impl Future for Served {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let link = &this.link;
        let counted = this.counted;
        let finished = |watched: Option<(u64, &Waker)>| {
            if counted {
                link.tasks.finished(watched);
            }
        };
        match &mut this.work {
            Work::Call {
                current,
                responder,
                future,
                later,
                watched,
            } => {
                if responder.is_none() {
                    return Poll::Ready(());
                }
                let first = !std::mem::replace(later, true);
                if link.cancels.contains(current.id) || link.abandoned() {
                    // Dropped at this wake-up, as the docs promise; whoever counts the
                    // call (a pool) learns that it ended.
                    let message = "cancelled while it ran: its future was dropped".to_owned();
                    if let Some(responder) = responder.take() {
                        responder.flush_now().fail(OutcomeKind::Cancelled, message);
                    }
                    finished(watched.as_ref().map(|w| (current.id, w)));
                    return Poll::Ready(());
                }
                let polled = context::polling(link, Some(*current), || {
                    catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)))
                });
                let outcome = match polled {
                    Ok(Poll::Pending) => {
                        // Not in the first poll, whose waker wakes nothing (the next poll
                        // follows at once).
                        if !first && !watched.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            link.tasks.watch(current.id, cx.waker(), watched.as_ref());
                            *watched = Some(cx.waker().clone());
                            // A cancel that came before the watch did not wake it.
                            if link.cancels.contains(current.id) {
                                cx.waker().wake_by_ref();
                            }
                        }
                        return Poll::Pending;
                    }
                    Ok(Poll::Ready(answer)) => Ok(answer),
                    Err(panic) => Err(crate::error::panicked(&*panic)),
                };
                let responder = responder
                    .take()
                    .map(|r| if first { r } else { r.flush_now() });
                if let Some(responder) = responder {
                    match outcome {
                        Ok(answer) => answer(responder),
                        Err(message) => responder.fail(OutcomeKind::Panicked, message),
                    }
                }
                finished(watched.as_ref().map(|w| (current.id, w)));
                Poll::Ready(())
            }
            Work::Event(slot) => {
                let Some(future) = slot.as_mut() else {
                    return Poll::Ready(());
                };
                if link.abandoned() {
                    *slot = None;
                    finished(None);
                    return Poll::Ready(());
                }
                let polled = context::polling(link, None, || {
                    catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)))
                });
                // A panicking listener is reported by the panic hook; the link goes on.
                if let Ok(Poll::Pending) = polled {
                    return Poll::Pending;
                }
                *slot = None;
                finished(None);
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Served {
    /// A future dropped before it finished (its runtime shut down) still answers, and is
    /// counted out.
    fn drop(&mut self) {
        match &mut self.work {
            Work::Call {
                current,
                responder,
                watched,
                ..
            } => {
                if let Some(responder) = responder.take() {
                    let message = "its future was dropped before it finished (the runtime \
                                   to run it shut down or could not start)"
                        .to_owned();
                    responder.flush_now().fail(OutcomeKind::Panicked, message);
                    if self.counted {
                        self.link
                            .tasks
                            .finished(watched.as_ref().map(|w| (current.id, w)));
                    }
                }
            }
            Work::Event(slot) => {
                if slot.take().is_some() && self.counted {
                    self.link.tasks.finished(None);
                }
            }
        }
    }
}

/// A future on the runtime-free executor.
struct Task {
    /// `None` once it finished.
    future: Mutex<Option<Pin<Box<Served>>>>,
    /// It is in the executor's queue (a wake-up then adds nothing).
    scheduled: AtomicBool,
    queue: Sender<Arc<Task>>,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let _ = self.queue.send(Arc::clone(self));
        }
    }
}

impl Task {
    fn poll_once(self: Arc<Self>) {
        self.scheduled.store(false, Ordering::Release);
        let waker = Waker::from(Arc::clone(&self));
        let mut slot = self.future.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(future) = slot.as_mut()
            && future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
        {
            *slot = None;
        }
    }
}

/// Starts the runtime-free executor: a thread that polls woken futures until no future
/// and no link can wake one any more.
fn start_executor() -> Option<Sender<Arc<Task>>> {
    let (queue, woken): (Sender<Arc<Task>>, Receiver<Arc<Task>>) = crossbeam_channel::unbounded();
    let spawned = std::thread::Builder::new()
        .name("coproq-async".into())
        .spawn(move || {
            for task in woken {
                task.poll_once();
            }
        });
    match spawned {
        Ok(_) => Some(queue),
        Err(e) => {
            crate::error::say(format_args!(
                "coproq: cannot start the thread that runs async handlers: {e}"
            ));
            None
        }
    }
}
