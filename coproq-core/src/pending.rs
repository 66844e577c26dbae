//! `Pending<R>`: a call in flight. Wait for it, wait with a deadline, or `.await` it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, RemoteError, RemoteErrorKind, Result, TypedPayload};
use crate::link::Link;
use crate::link::calls::{Delivery, RawReply, Slot};
use crate::link::dispatch::{self, TimedOut};
use crate::wire::{Message, Outcome, OutcomeKind, frame, map_run, message};

/// A call in flight, returned by [`Coprocess::call_async`](crate::Coprocess::call_async)
/// and [`Pool::call_async`](crate::Pool::call_async).
///
/// Finish it with [`wait`](Pending::wait) or [`wait_timeout`](Pending::wait_timeout),
/// or `.await` it: `Pending` is a [`Future`] that needs no particular async runtime.
/// [`cancel`](Pending::cancel) it, or drop it unfinished, and the peer is told: a call
/// it has not started never runs, and a late reply is discarded.
///
/// A call has a deadline where its link or pool has a `call_timeout`, or where it was
/// made inside a handler whose own call has one; `wait` returns [`Error::Timeout`] there.
/// A future has no timer of its own: past the deadline, its next poll gives `Timeout`
/// (a pool's supervisor wakes it then; on a single link, use your runtime's timeout).
#[must_use = "a call's reply (or error) is only seen by waiting for it"]
pub struct Pending<R> {
    /// The method, for error messages.
    method: MethodName,
    state: Progress,
    /// When the caller stops waiting, and how long that was from the start.
    deadline: Option<Deadline>,
    /// Turns the reply into the caller's value (an `R`, or more for typed clients).
    decode: ReplyDecoder<R>,
    /// When the call started, and its id on its link (a pool's call has none of its
    /// own), for its `tracing` event.
    #[cfg(feature = "tracing")]
    started: Instant,
    #[cfg(feature = "tracing")]
    id: Option<u64>,
}

/// A method's name, kept for error messages: short names (nearly all) without an
/// allocation, since a pipelining caller makes a `Pending` per call.
enum MethodName {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<str>),
}

/// The longest name kept inline: a `MethodName` is then as large as a `String`.
const INLINE_NAME: usize = 22;

impl MethodName {
    #[inline]
    fn new(name: &str) -> Self {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..name.len()].copy_from_slice(name.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(name.into()),
        }
    }

    #[inline]
    fn as_str(&self) -> &str {
        match self {
            // A copy of a `str`'s bytes: the check always passes.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Heap(name) => name,
        }
    }
}

pub(crate) use crate::link::context::Deadline;

/// A call that lives above a single link (a pool's, which may move between workers).
pub(crate) trait Ticket: Send + Sync {
    /// Waits for the reply, at most until `deadline`; past it, gives up on the call.
    fn wait(self: Box<Self>, deadline: Option<Instant>) -> Result<Delivery, TimedOut>;
    /// The reply, if it is in; otherwise `waker` is woken when it lands.
    fn poll(&self, waker: &Waker) -> Option<Delivery>;
    /// Gives up on the call: the peer is told, and it never runs if it has not started.
    fn cancel(self: Box<Self>);
    /// Gives up on the call at its deadline, as [`wait`](Self::wait) does when the
    /// deadline passes (a pool may kill the worker that holds it).
    fn expire(self: Box<Self>);
}

/// How a delivered reply becomes the caller's result.
pub(crate) type ReplyDecoder<R> = fn(&str, Delivery) -> Result<R>;

enum Progress {
    InFlight {
        link: Arc<Link>,
        id: u64,
        slot: Arc<Slot>,
    },
    /// A pool's call, queued or sent to one of its workers.
    Pooled(Box<dyn Ticket>),
    /// Boxed: failures are rare, and a `Pending` (of which a pipelining caller may hold
    /// hundreds of thousands) should stay small.
    Failed(Box<Error>),
    Cancelled,
    Done,
}

impl<R> fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            Progress::InFlight { id, .. } => format!("in flight (id {id})"),
            Progress::Pooled(_) => "in a pool".into(),
            Progress::Failed(e) => format!("failed: {e}"),
            Progress::Cancelled => "cancelled".into(),
            Progress::Done => "done".into(),
        };
        f.debug_struct("Pending")
            .field("method", &self.method.as_str())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<R> Pending<R> {
    #[inline]
    pub(crate) fn new(
        link: &Arc<Link>,
        method: &str,
        started: Result<(u64, Arc<Slot>)>,
        deadline: Option<Deadline>,
        decode: ReplyDecoder<R>,
    ) -> Self {
        #[cfg(feature = "tracing")]
        let traced_id = started.as_ref().ok().map(|(id, _)| *id);
        let state = match started {
            Ok((id, slot)) => Progress::InFlight {
                link: Arc::clone(link),
                id,
                slot,
            },
            Err(e) => Progress::Failed(Box::new(e)),
        };
        Self {
            method: MethodName::new(method),
            state,
            deadline,
            decode,
            #[cfg(feature = "tracing")]
            started: Instant::now(),
            #[cfg(feature = "tracing")]
            id: traced_id,
        }
    }

    /// A pool's call.
    pub(crate) fn pooled(
        method: &str,
        ticket: Box<dyn Ticket>,
        deadline: Option<Deadline>,
        decode: ReplyDecoder<R>,
    ) -> Self {
        Self {
            method: MethodName::new(method),
            state: Progress::Pooled(ticket),
            deadline,
            decode,
            #[cfg(feature = "tracing")]
            started: Instant::now(),
            #[cfg(feature = "tracing")]
            id: None,
        }
    }

    /// A call that failed before it was sent.
    pub(crate) fn failed(method: &str, error: Error) -> Self {
        Self {
            method: MethodName::new(method),
            state: Progress::Failed(Box::new(error)),
            deadline: None,
            decode: |_, _| Err(Error::NotConnected),
            #[cfg(feature = "tracing")]
            started: Instant::now(),
            #[cfg(feature = "tracing")]
            id: None,
        }
    }

    /// Blocks until the reply arrives, the link ends, or the call's deadline passes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(worker: &coproq::Coprocess) -> coproq::Result<()> {
    /// let a = worker.call_async::<u64>("fib", 30u32);
    /// let b = worker.call_async::<u64>("fib", 31u32);
    /// assert_eq!(a.wait()? + b.wait()?, 2_178_309);
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn wait(self) -> Result<R> {
        let deadline = self.deadline;
        self.wait_until(deadline)
    }

    /// Blocks at most `timeout` (or until the call's own deadline, if sooner); past it,
    /// returns [`Error::Timeout`], tells the peer, and drops the reply when it comes.
    pub fn wait_timeout(self, timeout: Duration) -> Result<R> {
        let mine = Instant::now()
            .checked_add(timeout)
            .map(|at| Deadline { at, after: timeout });
        let deadline = Deadline::min(self.deadline, mine);
        self.wait_until(deadline)
    }

    /// When the caller stops waiting, if ever (for waits that poll).
    pub(crate) fn deadline_at(&self) -> Option<Instant> {
        self.deadline.map(|d| d.at)
    }

    /// Cancels the call: the peer is told (a call it has not started never runs; a
    /// running handler can see it with [`coproq::cancelled`](crate::cancelled)), a late
    /// reply is discarded, and waiting now gives [`Error::Cancelled`]. A call queued in a
    /// pool leaves the queue and is never sent. Does nothing to a finished call.
    pub fn cancel(&mut self) {
        match std::mem::replace(&mut self.state, Progress::Cancelled) {
            Progress::InFlight { link, id, .. } => link.cancel_call(id),
            Progress::Pooled(ticket) => ticket.cancel(),
            finished @ (Progress::Failed(_) | Progress::Done) => self.state = finished,
            Progress::Cancelled => {}
        }
    }

    #[inline]
    fn wait_until(mut self, deadline: Option<Deadline>) -> Result<R> {
        match std::mem::replace(&mut self.state, Progress::Done) {
            Progress::InFlight { link, id, slot } => {
                let at = deadline.map(|d| d.at);
                // A pipelined call may still sit in the write buffer.
                link.flush(at);
                let Ok(delivery) = dispatch::wait_reply(&link, id, &slot, at) else {
                    link.cancel_call(id);
                    return Err(self.timed_out(deadline));
                };
                self.finish(delivery, deadline)
            }
            Progress::Pooled(ticket) => match ticket.wait(deadline.map(|d| d.at)) {
                Ok(delivery) => self.finish(delivery, deadline),
                Err(TimedOut) => Err(self.timed_out(deadline)),
            },
            Progress::Failed(e) => Err(*e),
            Progress::Cancelled => Err(self.cancelled()),
            Progress::Done => Err(Error::NotConnected),
        }
    }

    /// The caller's value from its reply; a call its peer skipped because its deadline
    /// passed is the caller's `Timeout`.
    #[inline]
    fn finish(&self, delivery: Delivery, deadline: Option<Deadline>) -> Result<R> {
        if is_expired(&delivery) {
            return Err(self.timed_out(deadline));
        }
        let result = (self.decode)(self.method.as_str(), delivery);
        #[cfg(feature = "tracing")]
        crate::trace::call_ended(self.method.as_str(), self.id, self.started, &result);
        result
    }

    /// `Timeout` at `deadline` (a call without one that the peer says expired: no time).
    fn timed_out(&self, deadline: Option<Deadline>) -> Error {
        crate::trace::event!(
            DEBUG,
            method = self.method.as_str(),
            after = ?deadline.map(|d| d.after),
            "call timed out"
        );
        Error::Timeout {
            method: self.method.as_str().to_owned(),
            after: deadline.map_or(Duration::ZERO, |d| d.after),
        }
    }

    fn cancelled(&self) -> Error {
        Error::Cancelled {
            method: self.method.as_str().to_owned(),
        }
    }
}

/// Whether the peer skipped the call because its deadline had passed.
#[inline]
fn is_expired(delivery: &Delivery) -> bool {
    matches!(
        delivery,
        Ok(RawReply {
            outcome: Outcome::Error {
                kind: OutcomeKind::Expired,
                ..
            },
            ..
        })
    )
}

/// Decodes the reply of a run of calls of `method` (see `wire::map_run`) into each
/// item's result, as [`decode_reply`] decodes the reply of that item's call alone.
pub(crate) fn decode_run<R: DeserializeOwned>(
    method: &str,
    delivery: Delivery,
) -> Result<Vec<Result<R>>> {
    let bytes: crate::bytes::ByteBuf = decode_reply(method, delivery)?;
    let malformed = || Error::Protocol(format!("{method}: a malformed reply to a run of calls"));
    let results = map_run::parse_results(&bytes.0).ok_or_else(malformed)?;
    Ok(results
        .into_iter()
        .map(|result| {
            let whole = &bytes.0[result];
            if let Some(value) = map_run::plain_value(whole) {
                return Ok(value);
            }
            // Each is a whole frame: a small one is decoded from a copy on the stack.
            let payload = frame::small_frame(whole, u32::MAX).map_or_else(
                || frame::FrameBuf::from(whole[frame::HEADER_LEN..].to_vec()),
                |(small, _)| small,
            );
            match message::decode_pooled(payload, None) {
                Ok(Message::Reply { outcome, body, .. }) => {
                    decode_reply(method, Ok(RawReply { outcome, body }))
                }
                _ => Err(malformed()),
            }
        })
        .collect())
}

/// Turns a delivered reply into the caller's value or error.
#[inline]
pub(crate) fn decode_reply<R: DeserializeOwned>(method: &str, delivery: Delivery) -> Result<R> {
    let RawReply { outcome, mut body } = delivery?;
    match outcome {
        Outcome::Value => body
            .decode()
            .or_else(|plain| {
                // A caller that asks for a `Result` gets the value as its `Ok` (a value
                // that is itself a `Result`, nested in the handler's, decodes as it is).
                if !crate::wire::asks_for_result::<R>() {
                    return Err(plain);
                }
                let shape = body.shape().to_vec();
                crate::wire::decode_variant(true, &shape, body.contiguous())
            })
            .map_err(|reason| Error::Decode {
                method: method.to_owned(),
                reason: reason.to_string(),
            }),
        Outcome::Error {
            kind,
            message,
            typed,
        } => {
            let kind = match kind {
                OutcomeKind::MethodNotFound => {
                    return Err(Error::MethodNotFound(method.to_owned()));
                }
                // Skipped by the peer: the caller gave up on it (or, expired, its deadline
                // passed, which a `Pending` reports as its `Timeout`).
                OutcomeKind::Cancelled | OutcomeKind::Expired => {
                    return Err(Error::Cancelled {
                        method: method.to_owned(),
                    });
                }
                OutcomeKind::Failed => RemoteErrorKind::Failed,
                OutcomeKind::Panicked => RemoteErrorKind::Panicked,
                OutcomeKind::InvalidArguments => RemoteErrorKind::InvalidArguments,
                OutcomeKind::Unanswered => RemoteErrorKind::Unanswered,
            };
            let payload = typed.then(|| TypedPayload {
                shape: body.shape().to_vec(),
                bytes: body.contiguous().to_vec(),
            });
            // A caller that asks for a `Result` gets the handler's `Err(e)` as its `Err`,
            // where its error type decodes `e`; otherwise the remote error, as for anyone.
            if let Some(payload) = payload
                .as_ref()
                .filter(|_| crate::wire::asks_for_result::<R>())
                && let Ok(value) =
                    crate::wire::decode_variant(false, &payload.shape, &payload.bytes)
            {
                return Ok(value);
            }
            Err(Error::Remote(RemoteError::new(kind, message, payload)))
        }
    }
}

impl<R> Drop for Pending<R> {
    fn drop(&mut self) {
        // Unfinished: nobody will see the reply, so the peer need not compute it.
        match std::mem::replace(&mut self.state, Progress::Done) {
            Progress::InFlight { link, id, .. } => link.cancel_call(id),
            Progress::Pooled(ticket) => ticket.cancel(),
            Progress::Failed(_) | Progress::Cancelled | Progress::Done => {}
        }
    }
}

impl<R> Future for Pending<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let this = self.get_mut();
        let polled = match &this.state {
            Progress::InFlight { slot, .. } => slot.reply_or_register(cx.waker()),
            Progress::Pooled(ticket) => ticket.poll(cx.waker()),
            Progress::Failed(_) | Progress::Cancelled | Progress::Done => {
                let error = match std::mem::replace(&mut this.state, Progress::Done) {
                    Progress::Failed(e) => *e,
                    Progress::Cancelled => this.cancelled(),
                    _ => Error::NotConnected,
                };
                return Poll::Ready(Err(error));
            }
        };
        if let Some(delivery) = polled {
            this.state = Progress::Done;
            return Poll::Ready(this.finish(delivery, this.deadline));
        }
        match this.deadline {
            Some(deadline) if Instant::now() >= deadline.at => {
                let error = this.timed_out(Some(deadline));
                match std::mem::replace(&mut this.state, Progress::Done) {
                    // What a wait does at the deadline, so that awaiting a pool's call
                    // and waiting for it end alike (`kill_on_timeout` included).
                    Progress::Pooled(ticket) => ticket.expire(),
                    state => {
                        this.state = state;
                        this.cancel();
                        this.state = Progress::Done;
                    }
                }
                Poll::Ready(Err(error))
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_send_sync_unpin() {
        fn check<T: Send + Sync + Unpin>() {}
        check::<Pending<String>>();
        check::<Pending<std::rc::Rc<u8>>>();
    }

    #[test]
    fn method_names_short_and_long_are_kept_whole() {
        let long = "a_method_name_longer_than_fits_inline_ünïcode";
        for name in ["", "echo", "twenty_two_bytes_name_", "ünïcode", long] {
            assert_eq!(MethodName::new(name).as_str(), name);
        }
        assert!(matches!(MethodName::new("echo"), MethodName::Inline { .. }));
        assert!(matches!(MethodName::new(long), MethodName::Heap(_)));
    }

    #[test]
    fn a_failed_start_reports_its_error() {
        let pending = Pending::<u8>::failed("x", Error::NotConnected);
        assert!(matches!(pending.wait(), Err(Error::NotConnected)));
    }
}
