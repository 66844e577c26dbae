//! Descriptors inside values.
//!
//! While a frame's value is encoded, each [`Fd`](crate::Fd) in it puts a duplicate of its
//! descriptor into the frame's group and is written as its index in that group; the
//! writer sends the group over the link's descriptor socket before the frame's bytes,
//! announced by a `Descriptors` frame right before it. While a received message's value
//! is decoded, each index is turned back into a descriptor of the group that came with
//! the message (as a duplicate too, so that a value decoded twice, or a pass that gives
//! up and leaves the value to another, finds them all; the group itself is closed with
//! its message, which also closes every descriptor of a message that was refused).
//!
//! Only a link to a local worker has a descriptor socket: anywhere else (a worker over
//! ssh or `spawn_stdio`, or a value serialized by anything but a link) an `Fd` fails to
//! serialize, saying so.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// The name an `Fd` serializes under (a newtype struct around its index), which the
/// receiver's shape check compares like any struct name.
pub(crate) const FD_NAME: &str = "coproq::Fd";

/// The most descriptors one message carries.
pub(crate) const MAX_PER_MESSAGE: usize = sys::MAX_DESCRIPTORS;

/// What becomes of an `Fd` serialized on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    /// No frame is being encoded: something other than a link serializes it.
    Outside,
    /// A frame of a link without a descriptor socket is being encoded.
    Closed,
    /// A frame of a link with one is being encoded: its descriptors join the group.
    Open,
}

// Every frame sent reads and writes the first three (plain cells, with no destructor to
// register: a few loads and stores); the groups are touched only where a descriptor is.
thread_local! {
    static OUTGOING: Cell<Outgoing> = const { Cell::new(Outgoing::Outside) };
    /// How many descriptors the frame being encoded holds (the last ones of `GROUPS`).
    static HELD: Cell<usize> = const { Cell::new(0) };
    /// Whether this thread is writing a value's bytes now (and not recording its shape,
    /// or probing what it is): only then does an `Fd` join the group.
    static WRITING_VALUE: Cell<bool> = const { Cell::new(false) };
    /// The descriptors of the frames being encoded on this thread, the innermost last.
    static GROUPS: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
    /// The group of the message whose value is being decoded on this thread.
    static INCOMING: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
}

/// A frame being encoded: what to restore when it is done (see [`begin`]).
#[derive(Debug, Clone, Copy)]
#[must_use = "finish the frame, and take its descriptors"]
pub(crate) struct Collecting {
    outgoing: Outgoing,
    held: usize,
}

/// Starts encoding a frame, its descriptors joining a group if `open` (the link has a
/// descriptor socket): call [`finish`] when the frame is built, then [`take_group`] the
/// descriptors it holds, if any.
#[inline]
pub(crate) fn begin(open: bool) -> Collecting {
    let state = if open {
        Outgoing::Open
    } else {
        Outgoing::Closed
    };
    Collecting {
        outgoing: OUTGOING.replace(state),
        held: HELD.replace(0),
    }
}

/// Ends the frame that [`begin`] started: how many descriptors it holds.
#[inline]
pub(crate) fn finish(frame: Collecting) -> usize {
    let held = HELD.replace(frame.held);
    OUTGOING.set(frame.outgoing);
    held
}

/// The `held` descriptors of the frame just finished (dropping them closes them).
#[cold]
pub(crate) fn take_group(held: usize) -> Vec<OwnedFd> {
    GROUPS.with_borrow_mut(|groups| groups.split_off(groups.len().saturating_sub(held)))
}

/// Runs `build` (which encodes one frame) with a group open for its descriptors if
/// `open`, and returns what it returned with the descriptors it put in.
#[inline]
pub(crate) fn collect<R>(open: bool, build: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let frame = begin(open);
    let outcome = build();
    match finish(frame) {
        0 => (outcome, Vec::new()),
        held => (outcome, take_group(held)),
    }
}

/// Runs `probe` (which looks at a value without encoding it) as the encoding of a frame
/// of a link that passes descriptors (`open`) or not would see the value.
#[inline]
pub(crate) fn probing<R>(open: bool, probe: impl FnOnce() -> R) -> R {
    collect(open, probe).0
}

/// Whether descriptors serialized now travel as descriptors: a frame of a link with a
/// descriptor socket is being encoded (a value that could also travel as bytes, such as
/// `SharedBytes`, asks, and takes the same form in every pass over it).
pub(crate) fn passing() -> bool {
    OUTGOING.get() == Outgoing::Open
}

/// The number of descriptors the frame being encoded holds so far (a run of events
/// takes no event that brings descriptors).
#[inline]
pub(crate) fn collected() -> usize {
    HELD.get()
}

/// Forgets the descriptors put in after the first `len` (their frame was taken back).
pub(crate) fn forget_after(len: usize) {
    let held = HELD.get();
    if held > len {
        GROUPS.with_borrow_mut(|groups| groups.truncate(groups.len() - (held - len)));
        HELD.set(len);
    }
}

/// Runs `write` (which writes a value's bytes) with `Fd`s joining the open group.
#[inline]
pub(crate) fn writing_value<R>(write: impl FnOnce() -> R) -> R {
    let before = WRITING_VALUE.replace(true);
    let written = write();
    WRITING_VALUE.set(before);
    written
}

/// What an `Fd` serializes as: its index in the frame's group, which a duplicate of `fd`
/// joins. Outside a value's bytes (a shape being recorded, a probe) nothing joins, and
/// the index does not matter.
pub(crate) fn put(fd: BorrowedFd<'_>) -> Result<u32, String> {
    match OUTGOING.get() {
        Outgoing::Open | Outgoing::Closed if !WRITING_VALUE.get() => return Ok(0),
        Outgoing::Open => {}
        Outgoing::Closed | Outgoing::Outside => {
            return Err(
                "a coproq::Fd travels only in the arguments, replies and events of a link to \
                 a local worker (not over ssh or spawn_stdio, not through a Pool, nor in \
                 anything else serde writes)"
                    .to_owned(),
            );
        }
    }
    let held = HELD.get();
    if held >= MAX_PER_MESSAGE {
        return Err(format!(
            "more than {MAX_PER_MESSAGE} descriptors in one message"
        ));
    }
    let copy = fd
        .try_clone_to_owned()
        .map_err(|e| format!("the descriptor could not be duplicated: {e}"))?;
    GROUPS.with_borrow_mut(|groups| groups.push(copy));
    HELD.set(held + 1);
    Ok(u32::try_from(held).unwrap_or(u32::MAX))
}

/// Runs `decode` with `group` (the descriptors that came with a message) as the place its
/// `Fd`s come from.
pub(crate) fn decoding<R>(group: &mut Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let before = INCOMING.replace(std::mem::take(group));
    let decoded = decode();
    *group = INCOMING.replace(before);
    decoded
}

/// The descriptor at `index` in the group of the message being decoded, as a descriptor
/// of its own.
pub(crate) fn take(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with_borrow(|group| {
        let fd = group.get(index as usize).ok_or_else(|| {
            format!(
                "descriptor {index} did not come with this message ({} did)",
                group.len()
            )
        })?;
        fd.as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("a received descriptor could not be duplicated: {e}"))
    })
}
