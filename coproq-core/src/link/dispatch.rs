//! Running handlers, and waiting for the peer.
//!
//! One thread serves a link: the fork worker's main thread, whoever calls `serve`, or the
//! parent's dispatcher thread. It runs received calls and events one at a time, in arrival
//! order. On a worker it also reads: a call is read and answered on the same thread. When
//! a handler on that thread waits for the peer (for a reply, or for room in the peer's
//! window), the wait keeps running the link's calls and events: the peer may call back
//! before it replies, to any depth, in both directions, without deadlock; and two ends
//! that flood each other keep granting each other room.
//!
//! A call cancelled before it starts, or whose deadline passed first, never runs: it is
//! answered at once with what became of it, so that whoever counts the call (a pool)
//! learns that it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Link;
use super::batch::{Batch, Batched};
use super::calls::{Delivery, Slot, Wake};
use super::clock;
use super::context::{self, as_server, current_batch, is_serving};
use super::crew::Crew;
use super::token::{Goal, Queued, Role, ServeStep, Stop};
use super::writer::Flush;
use super::{EVENTS_METHOD, LookupCache, METHODS_METHOD, Responder};
use crate::error::Error;
use crate::sys;
use crate::wire::{Args, Message, OutcomeKind, Request, map_run};

/// How long background readers leave the token to callers after they last used it.
const TICK: Duration = Duration::from_millis(1);

/// The longest a background reader sleeps between looks while it is not needed.
const MAX_TICK: Duration = Duration::from_millis(50);

impl Link {
    /// Calls or events costing `cost` started (or were skipped): the peer gets the room
    /// back when a grant is due.
    #[inline]
    fn release(&self, cost: u64) {
        if let Some(bytes) = self.inflow.release(cost) {
            self.send_credit(bytes);
        }
    }
}

/// Runs what is left of `batch`, one entry after another, the last one's reply written
/// at once and the others' sharing a write (a handler that waits for the peer runs some
/// of them meanwhile); returns whether it ran any.
fn run_batch(link: &Arc<Link>, batch: &Batch, recent: &mut LookupCache) -> bool {
    let mut ran = false;
    // The event whose listener `recent` holds, while it is one of this batch's: the
    // events of a run, which share its name, then skip comparing it.
    let mut last_event: Option<Request> = None;
    // Events give their room back together (see `context::ran_event`): before the next
    // call, at the end, and in any wait a listener makes.
    while !link.abandoned() {
        let Some((next, last)) = batch.next() else {
            break;
        };
        ran = true;
        match next {
            // The stream's common case, straight to its listener: an event has no reply
            // to flush and no cancel to look for.
            Batched::InPlace { request, cost } if request.call.is_none() => {
                context::ran_event(cost);
                let same_name = last_event.is_some_and(|last| last.name_at_same_place(request));
                run_event(link, &mut request.args(batch.bytes()), same_name, recent);
                last_event = Some(*request);
            }
            next => {
                // It may look up another event's listener through `recent`.
                last_event = None;
                link.release(context::take_ran());
                let flush = if last { Flush::Now } else { Flush::Soon };
                if let Some((work, cost)) = Work::batched(next, batch) {
                    dispatch_timed(link, work, cost, flush, recent);
                }
                if link.crew().is_some() {
                    // A crew's loop looks whether it still serves after each call.
                    break;
                }
            }
        }
    }
    link.release(context::take_ran());
    ran
}

/// Runs the listener of an event, if there is one; `same_name`: the event's name is the
/// one `recent` looked up last.
#[inline]
fn run_event(link: &Link, args: &mut Args<'_>, same_name: bool, recent: &mut LookupCache) {
    // An event nobody listens to is discarded, as in the seed.
    if let Some(listener) = link
        .handlers
        .event_via(args.name_bytes(), same_name, recent)
    {
        listener(args);
    }
}

/// Reads the next batch of calls and events into this serving thread's batch, once all
/// of it has run. The batch is taken out of the thread's context while reading, so that
/// nothing reached from the read (an end-of-link hook) can find it borrowed.
fn read_batch(link: &Arc<Link>) -> Stop {
    let mut batch = context::take_batch();
    // Nothing else holds a batch that has run; were one held, a fresh batch takes over.
    let stop = if let Some(filling) = std::rc::Rc::get_mut(&mut batch) {
        link.read_batch(filling)
    } else {
        let mut fresh = Batch::default();
        let stop = link.read_batch(&mut fresh);
        batch = std::rc::Rc::new(fresh);
        stop
    };
    context::put_batch(batch);
    stop
}

/// A handler that ran this long (by the coarse clock: at least one tick) may have let
/// calls and cancels pile up in the pipe: the serving loop reads what has arrived before
/// it runs the next call, so that a call cancelled meanwhile is skipped.
const SLOW_HANDLER: Duration = Duration::from_nanos(1);

/// Serves `link` on this thread, reading and running calls, until the peer is gone (with
/// a crew, this thread is its first member).
pub(crate) fn serve(link: &Arc<Link>) {
    match link.crew() {
        Some(crew) => super::crew::serve_as_first(link, crew),
        None => serve_loop(link),
    }
}

/// Whether this thread, a crew member, stops serving: it lost the role to another member
/// while its call ran.
#[inline]
fn stops_serving(link: &Link) -> bool {
    link.crew().is_some() && Crew::lost_role()
}

/// The serving loop: reads and runs calls and events until the peer is gone (or, in a
/// crew, until this thread no longer holds the serving role).
pub(crate) fn serve_loop(link: &Arc<Link>) {
    as_server(link, || {
        let idle = Arc::new(Slot::default());
        let mut recent = LookupCache::default();
        let mut seen = link.token.caller_activity();
        let mut tick = TICK;
        while !link.abandoned() {
            if stops_serving(link) {
                break;
            }
            if current_batch().is_some_and(|batch| run_batch(link, &batch, &mut recent)) {
                continue;
            }
            match link.token.serve_step(seen) {
                ServeStep::Run { queued, last } => {
                    let flush = if last { Flush::Now } else { Flush::Soon };
                    if let Some((work, cost)) = Work::of(queued) {
                        dispatch_timed(link, work, cost, flush, &mut recent);
                    }
                }
                ServeStep::Read => {
                    tick = TICK;
                    // Handlers are remembered for one batch only: one that holds a
                    // handle must not outlive its table's `clear` in an idle loop.
                    recent = LookupCache::default();
                    read_batch(link);
                }
                ServeStep::Wait(activity) => {
                    recent = LookupCache::default();
                    tick = if activity == seen {
                        (tick * 2).min(MAX_TICK)
                    } else {
                        TICK
                    };
                    seen = activity;
                    if !link.token.set_dispatcher(Some(Arc::clone(&idle))) {
                        idle.wait(Some(Instant::now() + tick));
                    }
                    link.token.set_dispatcher(None);
                }
                ServeStep::Ended => break,
            }
        }
    });
}

/// The parent's dispatcher thread: runs what readers queue, reads only when nested
/// (with a crew, this thread is its first member).
pub(crate) fn dispatch_queued(link: &Arc<Link>) {
    match link.crew() {
        Some(crew) => super::crew::serve_as_first(link, crew),
        None => run_queued(link),
    }
}

/// The dispatcher's loop (or, in a crew, a member's while it holds the serving role).
pub(crate) fn run_queued(link: &Arc<Link>) {
    as_server(link, || {
        let idle = Arc::new(Slot::default());
        let mut recent = LookupCache::default();
        loop {
            if stops_serving(link) {
                break;
            }
            if let Some(queued) = link.token.next_queued() {
                if let Some((work, cost)) = Work::of(queued) {
                    dispatch(link, work, cost, Flush::Now, &mut recent);
                }
                continue;
            }
            if link.is_ended() {
                break;
            }
            recent = LookupCache::default();
            if !link.token.set_dispatcher(Some(Arc::clone(&idle))) {
                idle.wait(None);
            }
            link.token.set_dispatcher(None);
        }
    });
}

/// The parent's reader thread: reads whenever callers leave the pipe alone for a tick,
/// so replies to futures and pipelined calls, the worker's calls and events, grants and
/// the end of the stream are always noticed.
pub(crate) fn read_in_background(link: &Arc<Link>) {
    let mut seen = link.token.caller_activity();
    let mut tick = TICK;
    loop {
        if link.is_ended() {
            break;
        }
        let (took, activity) = link.token.try_take_quiet(seen);
        if took {
            tick = TICK;
            if let Stop::Ended = link.read_as(Role::Background, Goal::None, None) {
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
        /// When its caller stops waiting.
        deadline: Option<Instant>,
        args: Args<'a>,
    },
    Event(Args<'a>),
    /// The events of a run, kept whole in their frame, run one after another.
    Run(crate::wire::Body),
}

impl<'a> Work<'a> {
    /// The work of a call or event decoded on its own, and its cost (`None` for anything
    /// else).
    #[inline]
    fn of(queued: Queued) -> Option<(Self, u64)> {
        let Queued {
            message,
            cost,
            deadline,
        } = queued;
        let work = match message {
            Message::Call { id, body, .. } => Work::Call {
                id,
                deadline,
                args: Args::Body(body),
            },
            Message::Event { body } => Work::Event(Args::Body(body)),
            Message::Run { body, .. } => Work::Run(body),
            Message::Reply { .. }
            | Message::Bye
            | Message::Cancel { .. }
            | Message::Ping
            | Message::Credit { .. }
            | Message::Started { .. } => return None,
        };
        Some((work, cost))
    }

    /// The work of a call or event in `batch`, and its cost.
    #[inline]
    fn batched(next: Batched<'_>, batch: &'a Batch) -> Option<(Self, u64)> {
        match next {
            Batched::Queued(queued) => Self::of(*queued),
            Batched::InPlace { request, cost } => {
                let args = request.args(batch.bytes());
                let work = match request.call {
                    Some((id, deadline)) => Work::Call {
                        id,
                        deadline: clock::from_wire(deadline, || batch.arrived()),
                        args,
                    },
                    None => Work::Event(args),
                };
                Some((work, cost))
            }
        }
    }
}

/// [`dispatch`], then, after a slow handler, reads what arrived meanwhile. The clock is
/// the coarse one (a few nanoseconds to read, where `Instant` costs tens on every call):
/// a handler is slow when a tick passed while it ran.
#[inline]
fn dispatch_timed(
    link: &Arc<Link>,
    work: Work<'_>,
    cost: u64,
    flush: Flush,
    recent: &mut LookupCache,
) {
    if matches!(work, Work::Event(_) | Work::Run(_)) {
        // Events cannot be cancelled; the next call's own check is enough.
        return dispatch(link, work, cost, flush, recent);
    }
    let started = sys::coarse_now();
    dispatch(link, work, cost, flush, recent);
    if sys::coarse_now().saturating_sub(started) >= SLOW_HANDLER {
        link.read_ahead();
    }
}

/// Runs the handler of one received call or event (giving its room back first); a call
/// cancelled or past its deadline is answered so instead.
#[inline]
fn dispatch(link: &Arc<Link>, work: Work<'_>, cost: u64, flush: Flush, recent: &mut LookupCache) {
    dispatch_at(link, work, cost, flush, recent, true);
}

/// Whether this serving thread holds nothing it read and has yet to run (a crew's call
/// may then run while another member reads on).
fn nothing_read_behind() -> bool {
    current_batch().is_none_or(|batch| batch.is_empty()) && context::current_run().is_none()
}

/// [`dispatch`]; `top`: from a serving loop, not from inside a handler's wait (where a
/// crew runs calls on the waiting thread, as without one).
#[inline]
fn dispatch_at(
    link: &Arc<Link>,
    work: Work<'_>,
    cost: u64,
    flush: Flush,
    recent: &mut LookupCache,
    top: bool,
) {
    link.release(cost);
    match work {
        Work::Call {
            id,
            deadline,
            mut args,
        } => {
            let responder = Responder::new(Arc::clone(link), id, flush);
            if link.cancels.contains(id) {
                // Nobody waits for it; whoever counts it learns that it ended.
                responder.fail(OutcomeKind::Cancelled, "cancelled before it started".into());
                return;
            }
            if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                let message = format!("{}: its deadline passed before it started", args.name());
                responder.fail(OutcomeKind::Expired, message);
                return;
            }
            if let Some(handler) = link.handlers.call_via(args.name_bytes(), recent) {
                link.starting(id);
                let current = context::Current { id, deadline };
                let run = || context::handling(current, || handler(&mut args, responder));
                match link.crew() {
                    // Its own thread now: the crew launches the next calls meanwhile.
                    Some(crew) if top && nothing_read_behind() => crew.run_call(link, run),
                    _ => run(),
                }
            } else if args.name() == map_run::MAP_METHOD {
                // Built-in names (reserved: no handler can take them) come after the
                // table, off the path of every other call.
                link.starting(id);
                let current = context::Current { id, deadline };
                context::handling(current, || {
                    super::map_run::serve(link, id, deadline, &mut args, responder, recent);
                });
            } else if args.name() == METHODS_METHOD {
                responder.send(&link.handlers.call_names());
            } else if args.name() == EVENTS_METHOD {
                responder.send(&link.handlers.event_names());
            } else {
                let message = format!("{}: method not found", args.name());
                responder.fail(OutcomeKind::MethodNotFound, message);
            }
        }
        Work::Event(mut args) => run_event(link, &mut args, false, recent),
        Work::Run(body) => {
            // Shared with the waits inside its listeners, which run its next events.
            let run = std::rc::Rc::new(context::Run::new(body));
            context::running(&run, || {
                // Every event of a run has the run's name: looked up once.
                let mut same_name = false;
                while let Some(mut args) = run.take_next() {
                    run_event(link, &mut args, same_name, recent);
                    same_name = true;
                }
            });
        }
    }
}

/// Below this much stack left, a handler run from inside another handler's wait runs on a
/// new stack segment instead.
const NESTED_RED_ZONE: usize = 256 * 1024;

/// The size of each such segment.
const NESTED_SEGMENT: usize = 4 * 1024 * 1024;

/// Runs a call or event from inside a handler's wait. Waits nest as deep as the work
/// queued behind them (each waiting handler runs the next one, which may wait in turn: a
/// burst of events whose listeners call the peer back nests once per event), so where
/// the thread's stack runs short the rest runs on segments allocated for it, freed as the
/// waits return, instead of overflowing.
fn dispatch_nested(link: &Arc<Link>, work: Work<'_>, cost: u64) {
    stacker::maybe_grow(NESTED_RED_ZONE, NESTED_SEGMENT, || {
        dispatch_at(
            link,
            work,
            cost,
            Flush::Now,
            &mut LookupCache::default(),
            false,
        );
    });
}

/// The caller stopped waiting at its deadline.
pub(crate) struct TimedOut;

/// What a thread waits for.
#[derive(Clone, Copy)]
enum Awaited<'a> {
    /// The reply to call `id`, in `slot`.
    Reply { id: u64, slot: &'a Arc<Slot> },
    /// Room in the peer's window; `slot` is woken by grants.
    Room { slot: &'a Arc<Slot> },
}

impl<'a> Awaited<'a> {
    fn slot(self) -> &'a Arc<Slot> {
        match self {
            Self::Reply { slot, .. } | Self::Room { slot, .. } => slot,
        }
    }

    fn goal(self) -> Goal<'a> {
        match self {
            Self::Reply { id, slot } => Goal::Reply { id, slot },
            Self::Room { .. } => Goal::Room,
        }
    }
}

/// What a wait came to.
enum Waited {
    Reply(Delivery),
    Room,
}

/// Waits for the reply to call `id` in `slot`: reads it (and whatever else arrives) if
/// nobody else is reading, otherwise sleeps until it lands or the token is handed over.
/// On the serving thread, keeps running the link's calls and events meanwhile.
pub(crate) fn wait_reply(
    link: &Arc<Link>,
    id: u64,
    slot: &Arc<Slot>,
    deadline: Option<Instant>,
) -> Result<Delivery, TimedOut> {
    match wait(link, Awaited::Reply { id, slot }, deadline)? {
        Waited::Reply(delivery) => Ok(delivery),
        Waited::Room => Err(TimedOut),
    }
}

/// Waits until the peer's window has room (or the link ends), in the same way: reading
/// the grant itself if nobody else reads.
pub(crate) fn wait_for_room(link: &Arc<Link>, deadline: Option<Instant>) -> Result<(), TimedOut> {
    let slot = Arc::new(Slot::default());
    let waited = wait(link, Awaited::Room { slot: &slot }, deadline);
    link.unregister_room_waiter(&slot);
    waited.map(drop)
}

/// The wait behind [`wait_reply`] and [`wait_for_room`].
fn wait(
    link: &Arc<Link>,
    awaited: Awaited<'_>,
    deadline: Option<Instant>,
) -> Result<Waited, TimedOut> {
    // A crew's call waits as a server only with the serving role, taken for the wait if
    // it is free (a call of this link's: one waiting on another link leaves this one's
    // role alone).
    let serves_link = is_serving(link);
    let _borrowed = link
        .crew()
        .filter(|crew| serves_link && crew.borrow_role())
        .map(|crew| ReturnRole(crew, link));
    let serving = serves_link && Crew::serves_here();
    let role = if serving {
        Role::NestedServer
    } else {
        Role::Caller
    };
    let slot = awaited.slot();
    if serving {
        // The events this thread ran before it waits give their room back.
        link.release(context::take_ran());
    }
    loop {
        // 1. Done already, or (on the serving thread) work to run first.
        if let Some(done) = arrived(link, awaited) {
            return Ok(done);
        }
        if serving && run_one_queued(link) {
            continue;
        }
        if link.is_ended() {
            return Ok(match awaited {
                Awaited::Reply { slot, .. } => {
                    Waited::Reply(slot.take_reply().unwrap_or(Err(Error::stream_ended())))
                }
                Awaited::Room { .. } => Waited::Room,
            });
        }
        // 2. The token is free: read for ourselves.
        if link.token.try_take(role) {
            match read_for(link, role, awaited, deadline) {
                ReadOutcome::Done(done) => return Ok(done),
                ReadOutcome::TimedOut => return Err(TimedOut),
                ReadOutcome::Again => continue,
            }
        }
        // 3. Someone else reads: queue for the token and sleep until what we wait for
        //    comes, the token is handed to us, or (serving) work arrives.
        if !link.token.queue(slot) {
            continue; // the token came free meanwhile
        }
        let has_work = serving && link.token.set_dispatcher(Some(Arc::clone(slot)));
        let wake = if has_work {
            Wake::Recheck
        } else {
            link.spin_for_handoff(slot);
            slot.wait(deadline)
        };
        if serving {
            link.token.set_dispatcher(None);
        }
        // 4. Handed the token: read.
        let promoted = wake == Wake::Promoted || link.token.leave_queue(slot);
        if promoted {
            slot.take_promotion();
            match read_for(link, role, awaited, deadline) {
                ReadOutcome::Done(done) => return Ok(done),
                ReadOutcome::TimedOut => return Err(TimedOut),
                ReadOutcome::Again => continue,
            }
        }
        if wake == Wake::TimedOut {
            return arrived(link, awaited).ok_or(TimedOut);
        }
    }
}

/// Gives a role borrowed for a wait back when the wait ends.
struct ReturnRole<'a>(&'a Crew, &'a Arc<Link>);

impl Drop for ReturnRole<'_> {
    fn drop(&mut self) {
        self.0.return_role(self.1);
    }
}

/// Whether what `awaited` waits for is there (registering a room waiter for grants if
/// not).
fn arrived(link: &Link, awaited: Awaited<'_>) -> Option<Waited> {
    match awaited {
        Awaited::Reply { slot, .. } => slot.take_reply().map(Waited::Reply),
        Awaited::Room { slot } => link.room_or_register(slot).then_some(Waited::Room),
    }
}

/// On the serving thread inside a wait: runs the next call or event read before (what
/// the serving loop read before the handler ran comes first); whether there was one.
fn run_one_queued(link: &Arc<Link>) -> bool {
    if let Some(run) = context::current_run() {
        if let Some(mut args) = run.take_next() {
            stacker::maybe_grow(NESTED_RED_ZONE, NESTED_SEGMENT, || {
                run_event(link, &mut args, false, &mut LookupCache::default());
            });
        }
        return true;
    }
    if let Some(batch) = current_batch()
        && let Some((next, _)) = batch.next()
    {
        if let Some((work, cost)) = Work::batched(next, &batch) {
            dispatch_nested(link, work, cost);
        }
        return true;
    }
    if let Some(queued) = link.token.next_queued() {
        if let Some((work, cost)) = Work::of(queued) {
            dispatch_nested(link, work, cost);
        }
        return true;
    }
    false
}

/// What reading for a waiting thread came to.
enum ReadOutcome {
    Done(Waited),
    TimedOut,
    Again,
}

/// Reads while holding the token; runs what a nested server is handed.
fn read_for(
    link: &Arc<Link>,
    role: Role,
    awaited: Awaited<'_>,
    deadline: Option<Instant>,
) -> ReadOutcome {
    match link.read_as(role, awaited.goal(), deadline) {
        Stop::ReplyRead(delivery) => return ReadOutcome::Done(Waited::Reply(delivery)),
        Stop::Run(queued) => {
            if let Some((work, cost)) = Work::of(queued) {
                dispatch_nested(link, work, cost);
            }
        }
        Stop::TimedOut => {
            return match arrived(link, awaited) {
                Some(done) => ReadOutcome::Done(done),
                None => ReadOutcome::TimedOut,
            };
        }
        Stop::Reached | Stop::Batch | Stop::HandOver | Stop::Ended => {}
    }
    ReadOutcome::Again
}

impl Link {
    /// Before a caller sleeps in `slot` until another thread hands it its reply or the
    /// token: spins briefly, so that a quick hand-over does not need a wake-up.
    fn spin_for_handoff(&self, slot: &Slot) {
        if !slot.rearm() {
            self.spin
                .until(&self.spin_sites.handoffs, || slot.signalled());
        }
    }

    /// After the worker is gone: reads what it still sent, up to the end of its stream,
    /// for at most `timeout`; then ends the link if nobody saw the end.
    pub(crate) fn drain_to_end(
        self: &Arc<Self>,
        timeout: Duration,
        status: Option<std::process::ExitStatus>,
    ) {
        let deadline = Instant::now() + timeout;
        while !self.is_ended() && Instant::now() < deadline {
            if self.token.try_take(Role::Background) {
                self.read_as(Role::Background, Goal::None, Some(deadline));
            } else {
                self.wait_ended(Duration::from_millis(5));
            }
        }
        if !self.is_ended() {
            let gone = self.peer_gone_after_close(status);
            self.end(|| gone.error());
        }
    }
}
