//! The sending half of a link: frames are appended to one buffer and written in batches.
//!
//! A sender that needs its frame on the wire now (a call about to be waited for, a reply)
//! writes the whole buffer itself, unless a write is already under way, which then takes
//! its frame along. A sender that does not (`call_async`, `emit`) only appends, and the
//! link's own flusher thread writes the batch moments later; past `HIGH_WATER` bytes the
//! sender writes (and waits) itself: that is the back-pressure. One write at a time,
//! outside the lock, so appending never waits for the pipe.
//!
//! Each link has its flusher, started on first need: a link's writes never wait on
//! another link's pipe, however stopped that link's peer is. A write made by a sender
//! ends at the sender's deadline; what it could not write stays at the front of the
//! buffer, and the flusher finishes it. Frames go in three lanes: calls and events are
//! charged to the peer's window (see `credit`) and refused while it is full; replies are
//! back-pressured like them but not charged; control frames (cancels, pings, grants,
//! goodbyes) are small, and are appended at once whatever the state of the pipe.
//!
//! Shutting down never waits for a write blocked on a full pipe (the peer may be stopped):
//! it marks the writer closed and leaves the rest to the write under way or the flusher,
//! which finishes what is buffered (or, when the link is abandoned, discards it) and
//! drops the stream when it is done.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::calls::Slot;
use super::credit::{PER_MESSAGE, PER_RUN_ITEM, Window};
use super::io::Output;
use crate::sys;
use crate::wire::descriptors;
use crate::wire::message;
use crate::wire::run::EventRun;

/// Above this many buffered bytes, a sender writes itself instead of leaving it to the
/// flusher.
const HIGH_WATER: usize = 256 * 1024;

/// Below this many buffered bytes, the writer has room for an async sender's next frame
/// (a quarter of `HIGH_WATER`: frames of moderate size append without blocking, and an
/// async sender yields often).
const ROOM: usize = HIGH_WATER / 4;

/// Buffers up to this size are always kept for reuse; bigger ones while they are used.
const KEEP_CAPACITY: usize = 1 << 20;

/// When a frame must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Before `send` returns (or its deadline passes), or by the write under way.
    Now,
    /// Soon, by the flusher thread (or by the next `Now`).
    Soon,
}

/// What kind of frame a sender appends, which decides what it may wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// A call or an event: charged to the peer's window, refused while it is full.
    Work,
    /// A reply: back-pressured like work, not charged (it answers the peer's own call).
    Reply,
    /// A cancel, a ping, a grant, a goodbye: appended at once, never waiting.
    Control,
}

/// Why a frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The link is closed.
    Closed,
    /// The peer's window is full; nothing was appended.
    NoRoom,
}

/// How a writer shuts down.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shutdown<'a> {
    /// Write what is buffered, then this last frame (a `Bye`), then close the stream.
    Graceful(&'a [u8]),
    /// Drop what is buffered and close the stream (the peer is gone or broke the protocol).
    Discard,
}

/// The descriptors of one frame, and where the frame that announces them starts in the
/// buffer: they are sent over the descriptor socket once every byte before it is written
/// and before any byte of it, so that the peer finds them there when it reads that frame,
/// and has read every earlier frame (taking their groups off the socket) by then.
struct Group {
    at: usize,
    fds: Vec<OwnedFd>,
}

struct Outbox {
    buf: Vec<u8>,
    spare: Vec<u8>,
    out: Option<Output>,
    writing: bool,
    scheduled: bool,
    closed: bool,
    /// Senders sleeping until a write finishes (std's condvar would make a system call
    /// per notify even with nobody to wake).
    sleepers: usize,
    /// Futures waiting for room in the buffer or the window.
    wakers: Vec<Waker>,
    /// Threads waiting for room in the window, woken by a grant.
    room_waiters: Vec<Arc<Slot>>,
    /// The run of events that ends `buf`, which the next event may join; forgotten
    /// whenever `buf` is taken or cleared.
    run: Option<EventRun>,
    /// The descriptors of the frames in `buf` that carry some, in order.
    groups: VecDeque<Group>,
    /// The socket descriptors go through (a link to a local worker only, once both
    /// sides said they have it), closed with the stream.
    socket: Option<Arc<OwnedFd>>,
    /// The peer's window for calls and events.
    window: Window,
    /// Wakes this writer's flusher thread, once it runs.
    flusher: Option<Sender<()>>,
}

impl Outbox {
    /// Takes the stream back after a write done outside the lock. A broken stream closes
    /// it here, and so does a shutdown once nothing is left to write.
    fn put_back(&mut self, out: Output, ok: bool) {
        if !ok {
            self.buf.clear();
            self.groups.clear();
            self.run = None;
            self.closed = true;
        }
        if ok && !(self.closed && self.buf.is_empty()) {
            self.out = Some(out);
        } else {
            // The stream closes here, and the descriptor socket with it.
            self.socket = None;
        }
    }

    /// The descriptor socket, for a write of frames that carry descriptors.
    fn socket_for(&self, groups: &VecDeque<Group>) -> Option<Arc<OwnedFd>> {
        if groups.is_empty() {
            None
        } else {
            self.socket.clone()
        }
    }

    /// Puts the groups of descriptors of a batch that were not sent back at the front of
    /// the queue, the batch's first `written` bytes being gone (call after
    /// [`Outbox::put_front`] has put its other bytes back).
    fn put_groups_back(&mut self, mut unsent: VecDeque<Group>, written: usize) {
        for group in &mut unsent {
            group.at -= written;
        }
        unsent.append(&mut self.groups);
        self.groups = unsent;
    }

    /// Puts bytes a write could not finish back at the front of the buffer.
    fn put_front(&mut self, mut unwritten: Vec<u8>) {
        for group in &mut self.groups {
            group.at += unwritten.len();
        }
        if !self.buf.is_empty() {
            unwritten.extend_from_slice(&self.buf);
        }
        self.buf = unwritten;
        // The run's place in the buffer moved.
        self.run = None;
    }
}

/// The sending half of one link.
pub(crate) struct Writer {
    state: Mutex<Outbox>,
    written: Condvar,
    /// Some bytes wait in the buffer (a cheap check for readers about to block).
    pending: AtomicBool,
    peer_max: AtomicU32,
    /// Descriptors in values travel through this writer (its socket is in the outbox).
    passes_descriptors: AtomicBool,
    this: Weak<Writer>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer over `out`; the peer's window is not known yet (see
    /// [`Writer::set_peer`]), and everything goes until it is.
    pub(crate) fn new(out: Output) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            state: Mutex::new(Outbox {
                buf: Vec::new(),
                spare: Vec::new(),
                out: Some(out),
                writing: false,
                scheduled: false,
                closed: false,
                sleepers: 0,
                wakers: Vec::new(),
                room_waiters: Vec::new(),
                run: None,
                groups: VecDeque::new(),
                socket: None,
                window: Window::new(u32::MAX),
                flusher: None,
            }),
            written: Condvar::new(),
            pending: AtomicBool::new(false),
            peer_max: AtomicU32::new(0),
            passes_descriptors: AtomicBool::new(false),
            this: this.clone(),
        })
    }

    #[inline]
    fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The largest payload the peer accepts (known after the handshake).
    #[inline]
    pub(crate) fn peer_max(&self) -> u32 {
        self.peer_max.load(Ordering::Relaxed)
    }

    /// Sends the descriptors in values through `socket` from now on, if there is one;
    /// gives it back, shared, for the reader.
    pub(crate) fn use_descriptors(&self, socket: Option<OwnedFd>) -> Option<Arc<OwnedFd>> {
        let socket = Arc::new(socket?);
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.socket = Some(Arc::clone(&socket));
        self.passes_descriptors.store(true, Ordering::Release);
        Some(socket)
    }

    /// Whether descriptors in values travel through this writer.
    #[inline]
    pub(crate) fn passes_descriptors(&self) -> bool {
        self.passes_descriptors.load(Ordering::Relaxed)
    }

    /// What the peer's `Hello` said: its largest frame and its window.
    pub(crate) fn set_peer(&self, max_frame: u32, window: u32) {
        self.peer_max.store(max_frame, Ordering::Relaxed);
        self.lock().window = Window::new(window);
    }

    /// Appends a frame built by `build` (which gets the buffer, the run of events that
    /// ends it, and the peer's limit, and may fail, leaving nothing behind), then writes
    /// as `flush` says, waiting at most until `deadline` (the rest is written later).
    /// Work is refused while the peer's window is full, and charged once built.
    #[inline]
    pub(crate) fn send<E>(
        &self,
        lane: Lane,
        flush: Flush,
        deadline: Option<Instant>,
        build: impl FnOnce(&mut Vec<u8>, &mut Option<EventRun>, u32) -> Result<(), E>,
    ) -> Result<Result<(), E>, Refused> {
        self.send_or_return(lane, flush, deadline, build)
            .map_err(|(why, _)| why)
    }

    /// [`Writer::send`], handing `build` back, unused, when the frame is refused (so that
    /// a sender can try again after waiting for room).
    #[inline]
    pub(crate) fn send_or_return<E, F>(
        &self,
        lane: Lane,
        flush: Flush,
        deadline: Option<Instant>,
        build: F,
    ) -> Result<Result<(), E>, (Refused, F)>
    where
        F: FnOnce(&mut Vec<u8>, &mut Option<EventRun>, u32) -> Result<(), E>,
    {
        let mut state = self.lock();
        if state.closed || state.out.is_none() && !state.writing {
            return Err((Refused::Closed, build));
        }
        if lane == Lane::Work && !state.window.has_room() {
            return Err((Refused::NoRoom, build));
        }
        let outbox = &mut *state;
        let start = outbox.buf.len();
        let run_before = EventRun::stamp(outbox.run.as_ref());
        let frame = descriptors::begin(self.passes_descriptors());
        let outcome = build(&mut outbox.buf, &mut outbox.run, self.peer_max());
        let held = descriptors::finish(frame);
        if let Err(e) = outcome {
            outbox.buf.truncate(start);
            // Its descriptors close.
            if held > 0 {
                drop(descriptors::take_group(held));
            }
            return Ok(Err(e));
        }
        if lane == Lane::Work {
            // An event that joined the run before it is an item of that frame.
            let joined = run_before.is_some_and(|(at, events)| {
                EventRun::stamp(outbox.run.as_ref()) == Some((at, events + 1))
            });
            let share = if joined { PER_RUN_ITEM } else { PER_MESSAGE };
            outbox
                .window
                .charge((outbox.buf.len() - start) as u64 + share);
        }
        if held > 0 {
            // Announced right before the frame (after charging it: the peer counts the
            // frame alone); the frame then never joins or starts a run of events.
            let group = descriptors::take_group(held);
            let mut announcement = Vec::new();
            message::encode_descriptors(&mut announcement, group.len() as u32);
            outbox.buf.splice(start..start, announcement);
            outbox.run = None;
            outbox.groups.push_back(Group {
                at: start,
                fds: group,
            });
        }
        self.pending.store(true, Ordering::Release);
        match (lane, flush) {
            (_, Flush::Now) => {
                if !state.writing {
                    self.write_out(state, deadline);
                }
            }
            (Lane::Work | Lane::Reply, Flush::Soon) if state.buf.len() >= HIGH_WATER => {
                // Back-pressure: wait for the write under way, then write ourselves.
                let (state, _) =
                    self.sleep_while(state, deadline, |s| s.writing && s.buf.len() >= HIGH_WATER);
                if !state.writing {
                    self.write_out(state, deadline);
                }
            }
            (_, Flush::Soon) => self.schedule(state),
        }
        Ok(Ok(()))
    }

    /// Writes a frame whose head is `head` and whose last bytes are `bytes`, the latter
    /// straight from the sender's memory, after the frames already buffered: for a large
    /// byte string, which is not copied. Waits for a write under way, and writes at most
    /// until `deadline`; what is left then is copied into the buffer for the flusher.
    pub(crate) fn send_direct(
        &self,
        lane: Lane,
        head: &[u8],
        bytes: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), Refused> {
        let (mut state, timed_out) = self.sleep_while(self.lock(), deadline, |s| s.writing);
        if state.closed {
            return Err(Refused::Closed);
        }
        if lane == Lane::Work {
            if !state.window.has_room() {
                return Err(Refused::NoRoom);
            }
            let cost = (head.len() + bytes.len()) as u64 + PER_MESSAGE;
            state.window.charge(cost);
        }
        let out = match state.out.take() {
            Some(out) if !timed_out => out,
            out => {
                // Still writing at the deadline: queued behind the write under way.
                state.out = out;
                state.buf.extend_from_slice(head);
                state.buf.extend_from_slice(bytes);
                state.run = None;
                self.pending.store(true, Ordering::Release);
                self.schedule(state);
                return Ok(());
            }
        };
        let mut out = out;
        state.writing = true;
        state.scheduled = false;
        let mut queued = std::mem::take(&mut state.buf);
        let mut groups = std::mem::take(&mut state.groups);
        let socket = state.socket_for(&groups);
        state.run = None;
        self.pending.store(false, Ordering::Release);
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
        // The three parts in turn, each from where the last left off (the queued frames
        // with their descriptors).
        let parts = [queued.as_slice(), head, bytes];
        let mut unwritten: Option<Vec<u8>> = None;
        let mut ok = true;
        let mut queued_written = 0;
        match Self::write_batch(&mut out, socket.as_deref(), &queued, &mut groups, deadline) {
            Ok(n) if n < queued.len() => {
                queued_written = n;
                unwritten = Some(parts.concat().split_off(n));
            }
            Ok(n) => queued_written = n,
            Err(_) => ok = false,
        }
        for (i, part) in parts.iter().enumerate().skip(1) {
            if unwritten.is_some() || !ok {
                break;
            }
            match out.write_until(part, deadline) {
                Ok(n) if n == part.len() => {}
                Ok(n) => {
                    let mut rest = part[n..].to_vec();
                    for later in &parts[i + 1..] {
                        rest.extend_from_slice(later);
                    }
                    unwritten = Some(rest);
                    break;
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        queued.clear();
        let mut state = self.lock();
        if state.spare.capacity() < queued.capacity() {
            state.spare = queued;
        }
        state.put_back(out, ok);
        let closed = !ok;
        if let Some(rest) = unwritten.filter(|_| ok) {
            state.put_front(rest);
            state.put_groups_back(groups, queued_written);
            self.pending.store(true, Ordering::Release);
            state.writing = false;
            self.notify_sleepers(&state);
            self.schedule(state);
        } else if !state.buf.is_empty() && state.out.is_some() {
            // Frames appended meanwhile: write them before letting go.
            self.write_out(state, deadline);
        } else {
            state.writing = false;
            self.notify_sleepers(&state);
        }
        if closed { Err(Refused::Closed) } else { Ok(()) }
    }

    /// Whether a frame of moderate size would be taken now without blocking the sender
    /// (the buffer is well below `HIGH_WATER` and the peer's window has room, or the
    /// writer is closed, so that sending fails at once); if not, `waker` is woken when
    /// that may have changed.
    pub(crate) fn poll_writable(&self, waker: &Waker) -> bool {
        let mut state = self.lock();
        if state.closed || state.buf.len() < ROOM && state.window.has_room() {
            return true;
        }
        if !state.wakers.iter().any(|w| w.will_wake(waker)) {
            state.wakers.push(waker.clone());
        }
        false
    }

    /// Whether the peer's window has room (or the writer is closed); if not, `slot` is
    /// woken when a grant comes.
    pub(crate) fn room_or_register(&self, slot: &Arc<Slot>) -> bool {
        let mut state = self.lock();
        if state.closed || state.window.has_room() {
            return true;
        }
        if !state.room_waiters.iter().any(|s| Arc::ptr_eq(s, slot)) {
            state.room_waiters.push(Arc::clone(slot));
        }
        false
    }

    /// Forgets a thread that stopped waiting for room.
    pub(crate) fn unregister(&self, slot: &Arc<Slot>) {
        self.lock().room_waiters.retain(|s| !Arc::ptr_eq(s, slot));
    }

    /// Whether the peer's window has room now.
    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        state.closed || state.window.has_room()
    }

    /// The peer granted `bytes` back: waiting senders go ahead.
    pub(crate) fn grant(&self, bytes: u64) {
        let mut state = self.lock();
        state.window.grant(bytes);
        let waiters = std::mem::take(&mut state.room_waiters);
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        for slot in &waiters {
            slot.recheck();
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Wakes the threads waiting for room: the link ended, and they give up.
    pub(crate) fn wake_room_waiters(&self) {
        let waiters = std::mem::take(&mut self.lock().room_waiters);
        for slot in &waiters {
            slot.recheck();
        }
    }

    /// Sleeps until a write ends and `cond` no longer holds, or `deadline` passes;
    /// whether it passed with `cond` still holding.
    fn sleep_while<'a>(
        &'a self,
        mut state: MutexGuard<'a, Outbox>,
        deadline: Option<Instant>,
        cond: impl Fn(&Outbox) -> bool,
    ) -> (MutexGuard<'a, Outbox>, bool) {
        while cond(&state) {
            state.sleepers += 1;
            state = match deadline {
                None => self
                    .written
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.sleepers -= 1;
                        return (state, true);
                    }
                    self.written
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            state.sleepers -= 1;
        }
        (state, false)
    }

    fn notify_sleepers(&self, state: &Outbox) {
        if state.sleepers > 0 {
            self.written.notify_all();
        }
    }

    /// Writes whatever is buffered, unless a write is already under way, at most until
    /// `deadline` (the flusher writes the rest).
    pub(crate) fn flush(&self, deadline: Option<Instant>) {
        if !self.has_pending() {
            return;
        }
        let state = self.lock();
        if !state.writing && !state.buf.is_empty() {
            self.write_out(state, deadline);
        }
    }

    /// Has the flusher write what is buffered (for a thread that must never block on a
    /// write itself: a reader about to block, whose peer may wait for it to read).
    pub(crate) fn flush_later(&self) {
        let state = self.lock();
        if !state.buf.is_empty() {
            self.schedule(state);
        }
    }

    /// Hands the buffer to the flusher, unless a write is under way or one is scheduled
    /// already. Without a flusher thread (none could be started), writes now instead.
    #[inline]
    fn schedule(&self, mut state: MutexGuard<'_, Outbox>) {
        if state.writing || state.scheduled {
            return;
        }
        if state.flusher.is_none() {
            state.flusher = start_flusher(self.this.clone());
        }
        match state.flusher.clone() {
            Some(flusher) => {
                state.scheduled = true;
                drop(state);
                // At most one wake-up is pending at a time (`scheduled`).
                let _ = flusher.send(());
            }
            None => self.write_out(state, None),
        }
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Writes batches until the buffer is empty, or `deadline` passes (then the flusher
    /// writes the rest); the caller saw `writing == false`.
    fn write_out<'a>(&'a self, mut state: MutexGuard<'a, Outbox>, deadline: Option<Instant>) {
        state.writing = true;
        state.scheduled = false;
        while !state.buf.is_empty() {
            let Some(mut out) = state.out.take() else {
                break;
            };
            let mut batch = std::mem::take(&mut state.spare);
            std::mem::swap(&mut batch, &mut state.buf);
            let mut groups = std::mem::take(&mut state.groups);
            let socket = state.socket_for(&groups);
            state.run = None;
            self.pending.store(false, Ordering::Release);
            let wakers = std::mem::take(&mut state.wakers);
            drop(state);
            // The buffer is empty now: futures waiting for room go ahead.
            wakers.into_iter().for_each(Waker::wake);
            let written =
                Self::write_batch(&mut out, socket.as_deref(), &batch, &mut groups, deadline);
            state = self.lock();
            match written {
                Ok(n) if n < batch.len() => {
                    // The deadline passed: the rest goes first, by the flusher.
                    batch.drain(..n);
                    state.put_front(batch);
                    state.put_groups_back(groups, n);
                    state.put_back(out, true);
                    self.pending.store(true, Ordering::Release);
                    state.writing = false;
                    self.notify_sleepers(&state);
                    self.schedule(state);
                    return;
                }
                written => {
                    // Keep a big buffer while big batches keep coming (bulk transfers then
                    // write from warm memory); give it back once batches shrink.
                    if batch.len() * 4 < batch.capacity() && batch.capacity() > KEEP_CAPACITY {
                        batch = Vec::new();
                    }
                    batch.clear();
                    state.spare = batch;
                    state.put_back(out, written.is_ok());
                }
            }
            self.notify_sleepers(&state);
        }
        self.pending.store(!state.buf.is_empty(), Ordering::Release);
        state.writing = false;
        self.notify_sleepers(&state);
        if state.closed && state.buf.is_empty() {
            // Nothing more will come: the flusher may go.
            state.flusher = None;
        }
    }

    /// Closes the writer: new frames are refused from now on. Never blocks on the pipe:
    /// what is left to write goes to the write under way or the flusher, which closes the
    /// stream when it is done.
    pub(crate) fn shutdown(&self, how: Shutdown<'_>) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        std::mem::take(&mut state.wakers)
            .into_iter()
            .for_each(Waker::wake);
        let waiters = std::mem::take(&mut state.room_waiters);
        state.run = None;
        match how {
            Shutdown::Graceful(last) => state.buf.extend_from_slice(last),
            Shutdown::Discard => {
                state.buf.clear();
                state.groups.clear();
            }
        }
        if state.buf.is_empty() {
            // Nothing to finish: close the stream now, unless a write is under way
            // (which drops it when it returns).
            state.out = None;
            state.socket = None;
            state.flusher = None;
            self.pending.store(false, Ordering::Release);
        } else {
            self.pending.store(true, Ordering::Release);
            self.schedule(state);
        }
        for slot in &waiters {
            slot.recheck();
        }
    }

    /// Waits until everything buffered so far is written (or the stream broke): for an end
    /// about to exit, whose last replies must not die in the buffer.
    pub(crate) fn drain(&self) {
        let mut state = self.lock();
        loop {
            state = self.sleep_while(state, None, |s| s.writing).0;
            if state.buf.is_empty() || state.out.is_none() {
                return;
            }
            self.write_out(state, None);
            state = self.lock();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Writes `batch` to `out`, sending each of `groups` (its frames' descriptors, in
    /// order) over the descriptor socket right before the frame that announces it; at
    /// most until `deadline`. How many bytes were written (the groups sent are taken off).
    fn write_batch(
        out: &mut Output,
        socket: Option<&OwnedFd>,
        batch: &[u8],
        groups: &mut VecDeque<Group>,
        deadline: Option<Instant>,
    ) -> std::io::Result<usize> {
        let mut written = 0;
        while let Some(group) = groups.front() {
            let at = group.at.min(batch.len());
            if written < at {
                written += out.write_until(&batch[written..at], deadline)?;
                if written < at {
                    // The deadline passed.
                    return Ok(written);
                }
            }
            let Some(socket) = socket else {
                // Nothing is collected without a socket.
                groups.clear();
                break;
            };
            match sys::send_group(socket.as_fd(), &group.fds, deadline) {
                // Sent: the kernel holds them now, and our duplicates close.
                Ok(()) => drop(groups.pop_front()),
                Err(sys::DescriptorSendError::TimedOut) => return Ok(written),
                Err(sys::DescriptorSendError::Failed(e)) => return Err(e),
            }
        }
        if written < batch.len() {
            written += out.write_until(&batch[written..], deadline)?;
        }
        Ok(written)
    }
}

/// Starts the thread that writes `Flush::Soon` batches of one writer; its wake-up, or
/// `None` if no thread could be started. The thread ends with its writer.
fn start_flusher(writer: Weak<Writer>) -> Option<Sender<()>> {
    let (tx, rx) = crossbeam_channel::unbounded::<()>();
    let spawned = std::thread::Builder::new()
        .name("coproq-flusher".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                let Some(writer) = writer.upgrade() else {
                    return;
                };
                let state = writer.lock();
                if !state.writing && !state.buf.is_empty() {
                    writer.write_out(state, None);
                } else {
                    drop(state);
                }
            }
        });
    if spawned.is_err() {
        crate::error::say(format_args!(
            "coproq: cannot start a flusher thread; batched frames are written at once"
        ));
        return None;
    }
    Some(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::io::OutputStream;
    use std::time::Duration;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl OutputStream for Sink {
        fn write_until(&mut self, buf: &[u8], _: Option<Instant>) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
    }

    fn append(
        bytes: &'static [u8],
    ) -> impl FnOnce(&mut Vec<u8>, &mut Option<EventRun>, u32) -> Result<(), ()> {
        move |buf, _, _| {
            buf.extend_from_slice(bytes);
            Ok(())
        }
    }

    fn wait_for(sink: &Sink, bytes: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().concat() != bytes {
            assert!(Instant::now() < deadline, "the flusher never wrote");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn now_writes_everything_buffered_in_one_batch() {
        let sink = Sink::default();
        let writer = Writer::new(Box::new(sink.clone()));
        {
            // Keep the flusher from racing: mark a write as scheduled.
            writer.lock().scheduled = true;
        }
        let send = |flush, bytes| writer.send(Lane::Reply, flush, None, append(bytes));
        send(Flush::Soon, b"a").unwrap().unwrap();
        send(Flush::Soon, b"b").unwrap().unwrap();
        send(Flush::Now, b"c").unwrap().unwrap();
        assert_eq!(*sink.0.lock().unwrap(), vec![b"abc".to_vec()]);
        assert!(!writer.has_pending());
    }

    #[test]
    fn soon_is_written_by_the_flusher() {
        let sink = Sink::default();
        let writer = Writer::new(Box::new(sink.clone()));
        writer
            .send(Lane::Control, Flush::Soon, None, append(b"x"))
            .unwrap()
            .unwrap();
        wait_for(&sink, b"x");
    }

    #[test]
    fn a_failed_build_leaves_nothing_and_shutdown_closes() {
        let sink = Sink::default();
        let writer = Writer::new(Box::new(sink.clone()));
        let failed = writer.send(Lane::Reply, Flush::Now, None, |buf, _, _| {
            buf.extend_from_slice(b"partial");
            Err("no")
        });
        assert!(matches!(failed, Ok(Err("no"))));
        writer.shutdown(Shutdown::Graceful(b"bye"));
        wait_for(&sink, b"bye");
        assert_eq!(
            writer.send(Lane::Reply, Flush::Now, None, append(b"late")),
            Err(Refused::Closed)
        );
    }

    #[test]
    fn work_waits_for_the_window_and_control_does_not() {
        let sink = Sink::default();
        let writer = Writer::new(Box::new(sink.clone()));
        writer.set_peer(u32::MAX, 1000);
        let work = |bytes| writer.send(Lane::Work, Flush::Now, None, append(bytes));
        work(&[1; 500]).unwrap().unwrap();
        work(&[2; 500]).unwrap().unwrap();
        // 2 * (500 + 128) in flight: the window is full, and nothing is appended.
        assert!(matches!(work(&[3; 500]), Err(Refused::NoRoom)));
        let slot = Arc::new(Slot::default());
        assert!(!writer.room_or_register(&slot));
        writer
            .send(Lane::Control, Flush::Now, None, append(b"c"))
            .unwrap()
            .unwrap();
        writer.grant(628);
        assert!(slot.rearm(), "the grant wakes the waiter");
        work(&[3; 500]).unwrap().unwrap();
        let written = sink.0.lock().unwrap().concat();
        assert_eq!(written.len(), 1501);
        assert_eq!(written[1000], b'c');
    }

    /// An output that takes `room` bytes and then blocks until the deadline, like a pipe
    /// whose reader stopped.
    struct Stopped {
        room: usize,
        took: Arc<Mutex<Vec<u8>>>,
    }

    impl OutputStream for Stopped {
        fn write_until(&mut self, buf: &[u8], deadline: Option<Instant>) -> std::io::Result<usize> {
            let n = buf.len().min(self.room);
            self.room -= n;
            self.took.lock().unwrap().extend_from_slice(&buf[..n]);
            if n < buf.len() {
                let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_hours(1));
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            }
            Ok(n)
        }
    }

    #[test]
    fn a_write_to_a_stopped_peer_returns_at_the_deadline_and_keeps_the_rest() {
        let took = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer::new(Box::new(Stopped {
            room: 10,
            took: Arc::clone(&took),
        }));
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        writer
            .send(
                Lane::Reply,
                Flush::Now,
                Some(deadline),
                append(b"0123456789abcdef"),
            )
            .unwrap()
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(*took.lock().unwrap(), b"0123456789");
        // The rest waits, in front of anything sent later.
        assert!(writer.has_pending());
        let direct = writer.send_direct(Lane::Reply, b"HEAD", b"bytes", Some(Instant::now()));
        assert_eq!(direct, Ok(()));
        let state = writer.lock();
        assert!(state.buf.starts_with(b"abcdef") || state.writing);
    }
}
