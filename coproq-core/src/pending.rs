//! `Pending<R>`: a call in flight. Wait for it, wait with a deadline, or `.await` it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{Error, RemoteError, RemoteErrorKind, Result, TypedPayload};
use crate::link::Link;
use crate::link::calls::{Delivery, RawReply, Slot};
use crate::link::dispatch;
use crate::wire::{Outcome, OutcomeKind};

/// A call in flight, returned by [`Coprocess::call_async`](crate::Coprocess::call_async).
///
/// Finish it with [`wait`](Pending::wait) or [`wait_timeout`](Pending::wait_timeout),
/// or `.await` it: `Pending` is a [`Future`] that needs no particular async runtime.
/// Dropping it stops waiting; the reply is then discarded when it arrives.
#[must_use = "a call's reply (or error) is only seen by waiting for it"]
pub struct Pending<R> {
    /// The method, for error messages.
    method: Box<str>,
    state: Progress,
    /// Turns the reply into the caller's value (an `R`, or more for typed clients).
    decode: ReplyDecoder<R>,
}

/// How a delivered reply becomes the caller's result.
pub(crate) type ReplyDecoder<R> = fn(&str, Delivery) -> Result<R>;

enum Progress {
    InFlight {
        link: Arc<Link>,
        id: u64,
        slot: Arc<Slot>,
    },
    Failed(Error),
    Done,
}

impl<R> fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            Progress::InFlight { id, .. } => format!("in flight (id {id})"),
            Progress::Failed(e) => format!("failed: {e}"),
            Progress::Done => "done".into(),
        };
        f.debug_struct("Pending")
            .field("method", &self.method)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<R> Pending<R> {
    pub(crate) fn new(
        link: &Arc<Link>,
        method: &str,
        started: Result<(u64, Arc<Slot>)>,
        decode: ReplyDecoder<R>,
    ) -> Self {
        let state = match started {
            Ok((id, slot)) => Progress::InFlight {
                link: Arc::clone(link),
                id,
                slot,
            },
            Err(e) => Progress::Failed(e),
        };
        Self {
            method: method.into(),
            state,
            decode,
        }
    }

    /// A call that failed before it was sent.
    pub(crate) fn failed(method: &str, error: Error) -> Self {
        Self {
            method: method.into(),
            state: Progress::Failed(error),
            decode: |_, _| Err(Error::NotConnected),
        }
    }

    /// Blocks until the reply arrives or the link ends.
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
    pub fn wait(self) -> Result<R> {
        self.wait_until(None)
    }

    /// Blocks at most `timeout`; past it, returns [`Error::Timeout`] and drops the reply
    /// when it comes.
    pub fn wait_timeout(self, timeout: Duration) -> Result<R> {
        self.wait_until(Some((Instant::now() + timeout, timeout)))
    }

    fn wait_until(mut self, deadline: Option<(Instant, Duration)>) -> Result<R> {
        match std::mem::replace(&mut self.state, Progress::Done) {
            Progress::InFlight { link, id, slot } => {
                // A pipelined call may still sit in the write buffer.
                link.flush();
                let Ok(delivery) = dispatch::wait_reply(&link, id, &slot, deadline.map(|d| d.0))
                else {
                    link.forget_call(id);
                    let after = deadline.map_or(Duration::ZERO, |d| d.1);
                    let method = self.method.to_string();
                    return Err(Error::Timeout { method, after });
                };
                (self.decode)(&self.method, delivery)
            }
            Progress::Failed(e) => Err(e),
            Progress::Done => Err(Error::NotConnected),
        }
    }
}

/// Turns a delivered reply into the caller's value or error.
pub(crate) fn decode_reply<R: DeserializeOwned>(method: &str, delivery: Delivery) -> Result<R> {
    let RawReply { outcome, mut body } = delivery?;
    match outcome {
        Outcome::Value => body.decode().map_err(|reason| Error::Decode {
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
                OutcomeKind::Failed => RemoteErrorKind::Failed,
                OutcomeKind::Panicked => RemoteErrorKind::Panicked,
                OutcomeKind::InvalidArguments => RemoteErrorKind::InvalidArguments,
                OutcomeKind::Unanswered => RemoteErrorKind::Unanswered,
            };
            let payload = typed.then(|| TypedPayload {
                shape: body.shape().to_vec(),
                bytes: body.contiguous().to_vec(),
            });
            Err(Error::Remote(RemoteError::new(kind, message, payload)))
        }
    }
}

impl<R> Drop for Pending<R> {
    fn drop(&mut self) {
        if let Progress::InFlight { link, id, .. } = &self.state {
            link.forget_call(*id);
        }
    }
}

impl<R> Future for Pending<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let this = self.get_mut();
        let delivery = match &this.state {
            Progress::InFlight { slot, .. } => match slot.reply_or_register(cx.waker()) {
                Some(delivery) => delivery,
                None => return Poll::Pending,
            },
            Progress::Failed(_) | Progress::Done => {
                return match std::mem::replace(&mut this.state, Progress::Done) {
                    Progress::Failed(e) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Err(Error::NotConnected)),
                };
            }
        };
        this.state = Progress::Done;
        Poll::Ready((this.decode)(&this.method, delivery))
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
    fn a_failed_start_reports_its_error() {
        let pending = Pending::<u8>::failed("x", Error::NotConnected);
        assert!(matches!(pending.wait(), Err(Error::NotConnected)));
    }
}
