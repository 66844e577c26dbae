//! Running handlers and waiting for replies.
//!
//! One thread serves a link: the fork worker's main thread, whoever calls `serve`, or the
//! parent's dispatcher thread. It runs received calls and events one at a time, in arrival
//! order. On a worker it also reads: a call is read and answered on the same thread. When
//! a handler on that thread calls the peer and waits, the wait keeps running the link's
//! calls and events: the peer may call back before it replies, to any depth, in both
//! directions, without deadlock.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Link;
use super::batch::{Batch, Batched};
use super::calls::{Delivery, Slot, Wake};
use super::context;
use super::reader::{Role, ServeStep, Stop};
use super::writer::Flush;
use super::{METHODS_METHOD, Recent, Responder};
use crate::error::Error;
use crate::sys;
use crate::wire::{Args, Message, OutcomeKind, Request};

/// What a serving thread holds: its link, and the calls and events it read in one batch
/// and has yet to run (older than anything in the link's inbox). The batch is shared with
/// whoever runs its entries: the serving loop, and a handler's wait for a reply.
struct Serving {
    link: Arc<Link>,
    batch: Rc<Batch>,
}

thread_local! {
    /// The link whose calls this thread runs, if any.
    static SERVING: RefCell<Option<Serving>> = const { RefCell::new(None) };
}

/// How long background readers leave the token to callers after they last used it.
const TICK: Duration = Duration::from_millis(1);

/// The longest a background reader sleeps between looks while it is not needed.
const MAX_TICK: Duration = Duration::from_millis(50);

/// Runs `body` as the thread serving `link`.
fn as_server<T>(link: &Arc<Link>, body: impl FnOnce() -> T) -> T {
    let serving = Serving {
        link: Arc::clone(link),
        batch: Rc::default(),
    };
    let previous = SERVING.replace(Some(serving));
    let result = body();
    SERVING.set(previous);
    result
}

/// This serving thread's batch.
fn current_batch() -> Option<Rc<Batch>> {
    SERVING.with_borrow(|serving| serving.as_ref().map(|s| Rc::clone(&s.batch)))
}

/// Runs what is left of `batch`, one entry after another, the last one's reply written
/// at once and the others' sharing a write (a handler that waits for a reply runs some
/// of them meanwhile); returns whether it ran any.
fn run_batch(link: &Arc<Link>, batch: &Batch, recent: &mut Recent) -> bool {
    let mut ran = false;
    // The event whose listener `recent` holds, while it is one of this batch's: the
    // events of a run, which share its name, then skip comparing it.
    let mut last_event: Option<Request> = None;
    while !link.abandoned() {
        let Some((next, last)) = batch.next() else {
            break;
        };
        ran = true;
        match next {
            // The stream's common case, straight to its listener: an event has no reply
            // to flush and no cancel to look for.
            Batched::InPlace(request) if request.call.is_none() => {
                let same_name = last_event.is_some_and(|last| last.name_at_same_place(request));
                run_event(link, &mut request.args(batch.bytes()), same_name, recent);
                last_event = Some(*request);
            }
            next => {
                // It may look up another event's listener through `recent`.
                last_event = None;
                let flush = if last { Flush::Now } else { Flush::Soon };
                if let Some(mut work) = Work::batched(next, batch.bytes()) {
                    dispatch_timed(link, &mut work, flush, recent);
                }
            }
        }
    }
    ran
}

/// Runs the listener of an event, if there is one; `same_name`: the event's name is the
/// one `recent` looked up last.
#[inline]
fn run_event(link: &Link, args: &mut Args<'_>, same_name: bool, recent: &mut Recent) {
    // An event nobody listens to is discarded, as in the seed.
    if let Some(listener) = link
        .handlers
        .event_via(args.name_bytes(), same_name, recent)
    {
        listener(args);
    }
}

/// Reads the next batch of calls and events into this serving thread's batch, once all
/// of it has run. The batch is taken out of the thread-local while reading, so that
/// nothing reached from the read (an end-of-link hook) can find it borrowed.
fn read_batch(link: &Arc<Link>) -> Stop {
    let mut batch = SERVING
        .with_borrow_mut(|serving| serving.as_mut().map(|s| std::mem::take(&mut s.batch)))
        .unwrap_or_default();
    // Nothing else holds a batch that has run; were one held, a fresh batch takes over.
    let stop = if let Some(filling) = Rc::get_mut(&mut batch) {
        link.read_batch(filling)
    } else {
        let mut fresh = Batch::default();
        let stop = link.read_batch(&mut fresh);
        batch = Rc::new(fresh);
        stop
    };
    SERVING.with_borrow_mut(|serving| {
        if let Some(serving) = serving.as_mut() {
            serving.batch = batch;
        }
    });
    stop
}

/// Whether the peer cancelled call `id` of the link this thread serves (reading what
/// has arrived first, so that a cancel waiting in the pipe is seen).
pub(crate) fn serving_link_cancelled(id: u64) -> bool {
    let link = SERVING.with_borrow(|serving| serving.as_ref().map(|s| Arc::clone(&s.link)));
    link.is_some_and(|link| {
        link.read_ahead();
        link.cancels.contains(id)
    })
}

/// A handler that ran this long (by the coarse clock: at least one tick) may have let
/// calls and cancels pile up in the pipe: the serving loop reads what has arrived before
/// it runs the next call, so that a call cancelled meanwhile is skipped.
const SLOW_HANDLER: Duration = Duration::from_nanos(1);

/// Whether this thread serves `link`.
#[inline]
pub(crate) fn is_serving(link: &Arc<Link>) -> bool {
    SERVING.with_borrow(|serving| serving.as_ref().is_some_and(|s| Arc::ptr_eq(&s.link, link)))
}

/// Serves `link` on this thread, reading and running calls, until the peer is gone.
pub(crate) fn serve(link: &Arc<Link>) {
    as_server(link, || {
        let idle = Arc::new(Slot::default());
        let mut recent = Recent::default();
        let mut seen = link.caller_activity();
        let mut tick = TICK;
        while !link.abandoned() {
            if current_batch().is_some_and(|batch| run_batch(link, &batch, &mut recent)) {
                continue;
            }
            match link.serve_step(seen) {
                ServeStep::Run(message, flush) => {
                    if let Some(mut work) = Work::of(message) {
                        dispatch_timed(link, &mut work, flush, &mut recent);
                    }
                }
                ServeStep::Read => {
                    tick = TICK;
                    // Handlers are remembered for one batch only: one that holds a
                    // handle must not outlive its table's `clear` in an idle loop.
                    recent = Recent::default();
                    read_batch(link);
                }
                ServeStep::Wait(activity) => {
                    recent = Recent::default();
                    tick = if activity == seen {
                        (tick * 2).min(MAX_TICK)
                    } else {
                        TICK
                    };
                    seen = activity;
                    if !link.set_dispatcher(Some(Arc::clone(&idle))) {
                        idle.wait(Some(Instant::now() + tick));
                    }
                    link.set_dispatcher(None);
                }
                ServeStep::Ended => break,
            }
        }
    });
}

/// The parent's dispatcher thread: runs what readers queue, reads only when nested.
pub(crate) fn run_queued(link: &Arc<Link>) {
    as_server(link, || {
        let idle = Arc::new(Slot::default());
        let mut recent = Recent::default();
        loop {
            if let Some(message) = link.next_queued() {
                if let Some(mut work) = Work::of(message) {
                    dispatch(link, &mut work, Flush::Now, &mut recent);
                }
                continue;
            }
            if link.is_ended() {
                break;
            }
            recent = Recent::default();
            if !link.set_dispatcher(Some(Arc::clone(&idle))) {
                idle.wait(None);
            }
            link.set_dispatcher(None);
        }
    });
}

/// The parent's reader thread: reads whenever callers leave the pipe alone for a tick,
/// so replies to futures and pipelined calls, the worker's calls and events, and the
/// end of the stream are always noticed.
pub(crate) fn read_in_background(link: &Arc<Link>) {
    let mut seen = link.caller_activity();
    let mut tick = TICK;
    loop {
        if link.is_ended() {
            break;
        }
        let (took, activity) = link.try_take_token_quiet(seen);
        if took {
            tick = TICK;
            if let Stop::Ended = link.read_as(Role::Background, None, None) {
                break;
            }
            continue;
        }
        tick = if activity == seen {
            (tick * 2).min(MAX_TICK)
        } else {
            TICK
        };
        seen = activity;
        link.wait_ended(tick);
    }
}

/// A received call or event to run, with its arguments wherever they lie.
enum Work<'a> {
    Call {
        id: u64,
        /// What remained of the caller's deadline when it sent the call.
        deadline: Option<Duration>,
        args: Args<'a>,
    },
    Event(Args<'a>),
}

impl<'a> Work<'a> {
    /// The work of a message decoded on its own (`None` for anything but a call or
    /// an event).
    fn of(message: Message) -> Option<Self> {
        match message {
            Message::Call { id, deadline, body } => Some(Work::Call {
                id,
                deadline,
                args: Args::Body(body),
            }),
            Message::Event { body } => Some(Work::Event(Args::Body(body))),
            Message::Reply { .. } | Message::Bye | Message::Cancel { .. } | Message::Ping => None,
        }
    }

    /// The work of a call or event in a batch whose bytes are `bytes`.
    #[inline]
    fn batched(next: Batched<'_>, bytes: &'a [u8]) -> Option<Self> {
        match next {
            Batched::Message(message) => Self::of(*message),
            Batched::InPlace(request) => Some(Self::in_place(*request, bytes)),
        }
    }

    #[inline]
    fn in_place(request: Request, bytes: &'a [u8]) -> Self {
        let args = request.args(bytes);
        match request.call {
            Some((id, deadline)) => Work::Call { id, deadline, args },
            None => Work::Event(args),
        }
    }
}

/// [`dispatch`], then, after a slow handler, reads what arrived meanwhile. The clock is
/// the coarse one (a few nanoseconds to read, where `Instant` costs tens on every call):
/// a handler is slow when a tick passed while it ran.
#[inline]
fn dispatch_timed(link: &Arc<Link>, work: &mut Work<'_>, flush: Flush, recent: &mut Recent) {
    if matches!(work, Work::Event(_)) {
        // Events cannot be cancelled; the next call's own check is enough.
        return dispatch(link, work, flush, recent);
    }
    let started = sys::coarse_now();
    dispatch(link, work, flush, recent);
    if sys::coarse_now().saturating_sub(started) >= SLOW_HANDLER {
        link.read_ahead();
    }
}

/// Runs the handler of one received call or event.
fn dispatch(link: &Arc<Link>, work: &mut Work<'_>, flush: Flush, recent: &mut Recent) {
    match work {
        Work::Call { id, deadline, args } => {
            let (id, deadline) = (*id, *deadline);
            if link.cancels.contains(id) {
                // Cancelled before it started: it never runs, and nobody waits for it.
                link.cancels.settle(id);
                return;
            }
            let responder = Responder::new(Arc::clone(link), id, flush);
            if let Some(handler) = link.handlers.call_via(args.name_bytes(), recent) {
                let current = context::Current {
                    id,
                    deadline: deadline.and_then(|left| Instant::now().checked_add(left)),
                };
                context::handling(current, || handler(args, responder));
            } else if args.name() == METHODS_METHOD {
                responder.send(&link.handlers.names());
            } else {
                let message = format!("{}: method not found", args.name());
                responder.fail(OutcomeKind::MethodNotFound, message);
            }
        }
        Work::Event(args) => run_event(link, args, false, recent),
    }
}

/// Below this much stack left, a handler run from inside another handler's wait runs on a
/// new stack segment instead.
const NESTED_RED_ZONE: usize = 256 * 1024;

/// The size of each such segment.
const NESTED_SEGMENT: usize = 4 * 1024 * 1024;

/// Runs a call or event from inside a handler's wait for its own reply. Waits nest as
/// deep as the work queued behind them (each waiting handler runs the next one, which may
/// wait in turn: a burst of events whose listeners call the peer back nests once per
/// event), so where the thread's stack runs short the rest runs on segments allocated
/// for it, freed as the waits return, instead of overflowing.
fn dispatch_nested(link: &Arc<Link>, work: &mut Work<'_>) {
    stacker::maybe_grow(NESTED_RED_ZONE, NESTED_SEGMENT, || {
        dispatch(link, work, Flush::Now, &mut Recent::default());
    });
}

/// The caller stopped waiting at its deadline.
pub(crate) struct TimedOut;

/// Waits for the reply to call `id` in `slot`: reads it (and whatever else arrives) if
/// nobody else is reading, otherwise sleeps until it lands or the token is handed over.
/// On the serving thread, keeps running the link's calls and events meanwhile.
pub(crate) fn wait_reply(
    link: &Arc<Link>,
    id: u64,
    slot: &Arc<Slot>,
    deadline: Option<Instant>,
) -> Result<Delivery, TimedOut> {
    let serving = is_serving(link);
    let role = if serving {
        Role::NestedServer
    } else {
        Role::Caller
    };
    loop {
        // 1. Done already, or (on the serving thread) work to run first.
        if let Some(delivery) = slot.take_reply() {
            return Ok(delivery);
        }
        if serving {
            // What the serving loop read before this handler ran comes first.
            if let Some(batch) = current_batch() {
                if let Some((next, _)) = batch.next() {
                    if let Some(mut work) = Work::batched(next, batch.bytes()) {
                        dispatch_nested(link, &mut work);
                    }
                    continue;
                }
            }
            if let Some(message) = link.next_queued() {
                if let Some(mut work) = Work::of(message) {
                    dispatch_nested(link, &mut work);
                }
                continue;
            }
        }
        if link.is_ended() {
            return Ok(slot
                .take_reply()
                .unwrap_or(Err(Error::Disconnected { status: None })));
        }
        // 2. The token is free: read for ourselves.
        if link.try_take_token(role) {
            match read_for(link, role, id, slot, deadline) {
                Read::Done(delivery) => return Ok(delivery),
                Read::TimedOut => return Err(TimedOut),
                Read::Again => continue,
            }
        }
        // 3. Someone else reads: queue for the token and sleep until the reply lands,
        //    the token is handed to us, or (serving) work arrives.
        if !link.queue_for_token(slot) {
            continue; // the token came free meanwhile
        }
        let has_work = serving && link.set_dispatcher(Some(Arc::clone(slot)));
        let wake = if has_work {
            Wake::Poked
        } else {
            link.spin_for_handoff(slot);
            slot.wait(deadline)
        };
        if serving {
            link.set_dispatcher(None);
        }
        // 4. Handed the token: read.
        let promoted = wake == Wake::Promoted || link.leave_queue(slot);
        if promoted {
            slot.take_promotion();
            match read_for(link, role, id, slot, deadline) {
                Read::Done(delivery) => return Ok(delivery),
                Read::TimedOut => return Err(TimedOut),
                Read::Again => continue,
            }
        }
        if wake == Wake::TimedOut {
            return match slot.take_reply() {
                Some(delivery) => Ok(delivery),
                None => Err(TimedOut),
            };
        }
    }
}

/// What reading for a waiting caller came to.
enum Read {
    Done(Delivery),
    TimedOut,
    Again,
}

/// Reads while holding the token; runs what a nested server is handed.
fn read_for(
    link: &Arc<Link>,
    role: Role,
    id: u64,
    slot: &Arc<Slot>,
    deadline: Option<Instant>,
) -> Read {
    match link.read_as(role, Some((id, slot)), deadline) {
        Stop::ReplyRead(delivery) => return Read::Done(delivery),
        Stop::Run(message) => {
            if let Some(mut work) = Work::of(message) {
                dispatch_nested(link, &mut work);
            }
        }
        Stop::TimedOut if !slot.has_reply() => return Read::TimedOut,
        Stop::TimedOut | Stop::ReplyInSlot | Stop::Batch | Stop::StepBack | Stop::Ended => {}
    }
    Read::Again
}

impl Link {
    /// After the worker is gone: reads what it still sent, up to the end of its stream,
    /// for at most `timeout`; then ends the link if nobody saw the end.
    pub(crate) fn drain_to_end(
        self: &Arc<Self>,
        timeout: Duration,
        status: Option<std::process::ExitStatus>,
    ) {
        let deadline = Instant::now() + timeout;
        while !self.is_ended() && Instant::now() < deadline {
            if self.try_take_token(Role::Background) {
                self.read_as(Role::Background, None, Some(deadline));
            } else {
                self.wait_ended(Duration::from_millis(5));
            }
        }
        if !self.is_ended() {
            self.end(|| Error::Disconnected { status });
        }
    }
}
