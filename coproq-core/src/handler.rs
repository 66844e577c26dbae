//! The handler table, the typed adapters that `handle`, `handle_deferred` and `on`
//! install, and [`Reply`], a deferred handler's promise to answer.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::link::{Flush, Link};
use crate::wire::{Body, OutcomeKind, message};

/// A call handler: decodes the arguments, runs the user's function, answers through the
/// responder (now or later).
pub(crate) type CallHandler = dyn Fn(Body, Responder) + Send + Sync;
/// An event listener: decodes the arguments and runs the user's function.
pub(crate) type EventHandler = dyn Fn(Body) + Send + Sync;

/// FNV-1a: method names are short, and a lookup per message should not pay for `SipHash`.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type ByName<T> = HashMap<String, Arc<T>, BuildHasherDefault<NameHasher>>;

/// Handlers by name. Shared by the handle, the builder and the dispatcher; looked up
/// per message and cloned out, so handlers may be added or removed while others run.
#[derive(Default)]
pub(crate) struct Handlers {
    calls: RwLock<ByName<CallHandler>>,
    events: RwLock<ByName<EventHandler>>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers").finish_non_exhaustive()
    }
}

impl Handlers {
    pub(crate) fn call(&self, name: &str) -> Option<Arc<CallHandler>> {
        self.calls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub(crate) fn event(&self, name: &str) -> Option<Arc<EventHandler>> {
        self.events
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn set_call(&self, name: String, handler: Arc<CallHandler>) {
        self.calls
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, handler);
    }

    fn set_event(&self, name: String, handler: Arc<EventHandler>) {
        self.events
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, handler);
    }

    /// Removes a listener; returns whether there was one.
    pub(crate) fn remove_event(&self, name: &str) -> bool {
        self.events
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .is_some()
    }

    /// Drops every handler (breaking cycles through handles that handlers captured).
    pub(crate) fn clear(&self) {
        let calls =
            std::mem::take(&mut *self.calls.write().unwrap_or_else(PoisonError::into_inner));
        let events =
            std::mem::take(&mut *self.events.write().unwrap_or_else(PoisonError::into_inner));
        drop((calls, events));
    }
}

/// Registers handlers: what [`Service::register`] receives, and what `handle`, `on` and
/// `handle_deferred` of [`Coprocess`](crate::Coprocess) and [`Builder`](crate::Builder)
/// use.
pub struct Registry<'a> {
    handlers: &'a Handlers,
}

impl fmt::Debug for Registry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl<'a> Registry<'a> {
    pub(crate) fn new(handlers: &'a Handlers) -> Self {
        Self { handlers }
    }

    /// Answers calls of `name` with what `f` returns. See
    /// [`Coprocess::handle`](crate::Coprocess::handle).
    pub fn handle<A, R, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.handlers.set_call(
            name.into(),
            Arc::new(move |mut body: Body, responder: Responder| {
                let args = match decode_args::<A>(&mut body) {
                    Ok(args) => args,
                    Err(message) => return responder.fail(OutcomeKind::InvalidArguments, message),
                };
                match catch_unwind(AssertUnwindSafe(|| f(args))) {
                    Ok(value) => responder.send(&value),
                    Err(panic) => responder.fail(OutcomeKind::Panicked, panicked(&*panic)),
                }
            }),
        );
        self
    }

    /// Answers calls of `name` later, through the [`Reply`] that `f` receives. See
    /// [`Coprocess::handle_deferred`](crate::Coprocess::handle_deferred).
    pub fn handle_deferred<A, T, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        T: Serialize,
        F: Fn(A, Reply<T>) + Send + Sync + 'static,
    {
        self.handlers.set_call(
            name.into(),
            Arc::new(move |mut body: Body, responder: Responder| {
                let args = match decode_args::<A>(&mut body) {
                    Ok(args) => args,
                    Err(message) => return responder.fail(OutcomeKind::InvalidArguments, message),
                };
                // A deferred answer comes later, from anywhere: it is written at once.
                let responder = Responder {
                    flush: Flush::Now,
                    ..responder
                };
                let reply = Reply {
                    responder: Some(responder),
                    _value: PhantomData,
                };
                let outer = IN_DEFERRED.replace(true);
                let result = catch_unwind(AssertUnwindSafe(|| f(args, reply)));
                IN_DEFERRED.set(outer);
                if let Err(panic) = result {
                    if let Some(responder) = UNWOUND.take() {
                        responder.fail(OutcomeKind::Panicked, panicked(&*panic));
                    }
                }
            }),
        );
        self
    }

    /// Runs `f` for every event `name`. See [`Coprocess::on`](crate::Coprocess::on).
    pub fn on<A, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        F: Fn(A) + Send + Sync + 'static,
    {
        self.handlers.set_event(
            name.into(),
            Arc::new(move |mut body: Body| match decode_args::<A>(&mut body) {
                Ok(args) => {
                    // A panicking listener is reported by the panic hook; the link goes on.
                    let _ = catch_unwind(AssertUnwindSafe(|| f(args)));
                }
                Err(message) => eprintln!("coproq: event dropped: {message}"),
            }),
        );
        self
    }
}

/// A set of handlers registered together, such as a generated `<Trait>Server`; install
/// one with [`Coprocess::listen`](crate::Coprocess::listen) or
/// [`Builder::listen`](crate::Builder::listen).
pub trait Service {
    /// Registers this service's handlers.
    fn register(self, registry: &mut Registry<'_>);
}

fn decode_args<A: DeserializeOwned>(body: &mut Body) -> Result<A, String> {
    body.decode()
        .map_err(|e| format!("{}: invalid arguments: {e}", body.name()))
}

/// The text of a caught panic.
fn panicked(panic: &(dyn Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic payload");
    format!("panicked: {message}")
}

/// Sends the one reply of one call.
pub(crate) struct Responder {
    link: Arc<Link>,
    id: u64,
    /// Whether the reply may wait to share a write with the next ones.
    flush: Flush,
}

impl Responder {
    pub(crate) fn new(link: Arc<Link>, id: u64, flush: Flush) -> Self {
        Self { link, id, flush }
    }

    /// Replies with what a handler returned (a `Result` is unwrapped).
    pub(crate) fn send<T: Serialize + ?Sized>(self, value: &T) {
        let id = self.id;
        if self.link.send_direct_reply(id, value) {
            return;
        }
        self.link.send_with(self.flush, |buf, max| {
            let start = buf.len();
            if let Err(e) = message::encode_reply(buf, id, value, max) {
                buf.truncate(start);
                let reason = match e {
                    message::EncodeError::Value(reason) => reason,
                    message::EncodeError::TooLarge(e) => e.to_string(),
                };
                message::encode_failure(
                    buf,
                    id,
                    OutcomeKind::Failed,
                    format!("reply could not be sent: {reason}"),
                );
            }
        });
    }

    /// Replies with a failure.
    pub(crate) fn fail(self, kind: OutcomeKind, message: String) {
        let id = self.id;
        self.link.send_with(self.flush, |buf, _| {
            message::encode_failure(buf, id, kind, message);
        });
    }
}

thread_local! {
    /// Set while a deferred handler runs on this thread.
    static IN_DEFERRED: Cell<bool> = const { Cell::new(false) };
    /// Where a `Reply` dropped by a panicking deferred handler leaves its responder, so
    /// that the adapter can answer with the panic message.
    static UNWOUND: RefCell<Option<Responder>> = const { RefCell::new(None) };
}

/// The promise of a deferred handler to answer one call, from any thread.
///
/// Answer with [`send`](Reply::send) or [`fail`](Reply::fail). A `Reply` dropped
/// unanswered answers the caller with a remote error, so the caller never hangs.
pub struct Reply<T> {
    responder: Option<Responder>,
    _value: PhantomData<fn(T)>,
}

impl<T> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("answered", &self.responder.is_none())
            .finish()
    }
}

impl<T: Serialize> Reply<T> {
    /// Answers with `value` (a `Result` is unwrapped as for [`Coprocess::handle`](crate::Coprocess::handle)).
    pub fn send(mut self, value: T) {
        if let Some(responder) = self.responder.take() {
            responder.send(&value);
        }
    }

    /// Answers with a failure: the caller gets [`Error::Remote`](crate::Error::Remote)
    /// with this message.
    pub fn fail(mut self, message: impl fmt::Display) {
        if let Some(responder) = self.responder.take() {
            responder.fail(OutcomeKind::Failed, message.to_string());
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        let Some(responder) = self.responder.take() else {
            return;
        };
        if std::thread::panicking() {
            if IN_DEFERRED.get() {
                UNWOUND.set(Some(responder));
            } else {
                responder.fail(
                    OutcomeKind::Panicked,
                    "panicked: the thread holding the reply panicked".into(),
                );
            }
        } else {
            responder.fail(
                OutcomeKind::Unanswered,
                "the handler dropped its reply without answering".into(),
            );
        }
    }
}
