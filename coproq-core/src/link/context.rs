//! What a handler knows about the call it is running: its deadline, and whether the
//! caller cancelled it. Calls a handler makes while running inherit what remains of its
//! deadline.

use std::cell::Cell;
use std::time::Instant;

use super::dispatch;

/// The call being handled on this thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current {
    /// The call's id on the serving link.
    pub(crate) id: u64,
    /// When the caller stops waiting.
    pub(crate) deadline: Option<Instant>,
}

thread_local! {
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
}

/// Runs `body` as the handling of `current` (nested handlings restore the outer one).
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

/// The deadline of the call this thread is handling: when its caller stops waiting (its
/// `wait_timeout`, or the `call_timeout` of its link or pool, or one it inherited).
///
/// `None` outside a handler, or when the caller waits without a deadline. Calls the
/// handler makes to the peer on this thread inherit what remains of it, so a nested call
/// never outlives the call it serves.
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
/// answer is discarded anyway.
///
/// `false` outside a handler. A deferred handler's [`Reply::is_cancelled`](crate::Reply::is_cancelled)
/// answers the same from any thread.
#[must_use]
pub fn cancelled() -> bool {
    CURRENT
        .get()
        .is_some_and(|current| dispatch::serving_link_cancelled(current.id))
}
