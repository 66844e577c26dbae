//! `Ready`: the future async senders await until a link or a pool can take their next
//! call without blocking the thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Something with room for calls: a link's write buffer, a pool's queue.
pub(crate) trait Room: Send + Sync {
    /// Whether a call would be taken now without blocking; if not, `waker` is woken when
    /// that may have changed.
    fn poll_room(&self, waker: &Waker) -> bool;
}

/// A future that resolves when the next call or event can be sent without blocking the
/// thread: see [`Coprocess::ready`](crate::Coprocess::ready) and
/// [`Pool::ready`](crate::Pool::ready).
#[must_use = "futures do nothing unless awaited"]
pub struct Ready {
    room: Arc<dyn Room>,
}

impl Ready {
    pub(crate) fn new(room: Arc<dyn Room>) -> Self {
        Self { room }
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready").finish_non_exhaustive()
    }
}

impl Future for Ready {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.room.poll_room(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
