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

/// Who registered a handler: a plain `handle`/`on` may be replaced by another, but a
/// name that a service registered may not be taken by anyone else (a typed client would
/// silently reach the wrong code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Plain,
    Service(&'static str),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain => f.write_str("a plain `handle`/`on`"),
            Self::Service(name) => write!(f, "service `{name}`"),
        }
    }
}

struct Entry<T: ?Sized> {
    handler: Arc<T>,
    owner: Owner,
}

type ByName<T> = HashMap<String, Entry<T>, BuildHasherDefault<NameHasher>>;

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
        let calls = self.calls.read().unwrap_or_else(PoisonError::into_inner);
        calls.get(name).map(|entry| Arc::clone(&entry.handler))
    }

    pub(crate) fn event(&self, name: &str) -> Option<Arc<EventHandler>> {
        let events = self.events.read().unwrap_or_else(PoisonError::into_inner);
        events.get(name).map(|entry| Arc::clone(&entry.handler))
    }

    /// The names of every call handler and event listener, sorted, without coproq's own.
    pub(crate) fn names(&self) -> Vec<String> {
        let calls = self.calls.read().unwrap_or_else(PoisonError::into_inner);
        let events = self.events.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = (calls.keys().chain(events.keys()))
            .filter(|name| !name.starts_with(RESERVED_PREFIX))
            .cloned()
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn set_call(&self, name: String, owner: Owner, handler: Arc<CallHandler>) {
        let mut calls = self.calls.write().unwrap_or_else(PoisonError::into_inner);
        insert_checked(&mut calls, name, Entry { handler, owner }, "method");
    }

    fn set_event(&self, name: String, owner: Owner, handler: Arc<EventHandler>) {
        let mut events = self.events.write().unwrap_or_else(PoisonError::into_inner);
        insert_checked(&mut events, name, Entry { handler, owner }, "event");
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

/// Names under this prefix are coproq's own (fingerprints, discovery, start-up).
pub(crate) const RESERVED_PREFIX: &str = "coproq:";

/// The built-in method that lists an end's handlers (`Coprocess::methods`).
pub(crate) const METHODS_METHOD: &str = "coproq:methods";

/// Inserts a handler; a name that a service holds, or that a service asks for while
/// another holds it, is a programming error that would misroute calls: panic, naming both.
fn insert_checked<T: ?Sized>(map: &mut ByName<T>, name: String, entry: Entry<T>, kind: &str) {
    if let Some(old) = map.get(&name) {
        if old.owner != Owner::Plain || entry.owner != Owner::Plain {
            let (first, second) = (old.owner, entry.owner);
            let what = match name.strip_prefix("coproq:fingerprint:") {
                Some(service) => format!("the fingerprint of a service named `{service}`"),
                None => format!("{kind} `{name}`"),
            };
            panic!(
                "coproq: {what} is registered twice on one end, first by {first} and then by \
                 {second}; a method's wire name is its Rust name, so rename one of them"
            );
        }
    }
    map.insert(name, entry);
}

/// Registers handlers: what [`Service::register`] receives, and what `handle`, `on` and
/// `handle_deferred` of [`Coprocess`](crate::Coprocess) and [`Builder`](crate::Builder)
/// use.
pub struct Registry<'a> {
    handlers: &'a Handlers,
    owner: Owner,
}

impl fmt::Debug for Registry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl<'a> Registry<'a> {
    pub(crate) fn new(handlers: &'a Handlers) -> Self {
        Self {
            handlers,
            owner: Owner::Plain,
        }
    }

    /// Registers `service`'s handlers, which no other registration may then replace.
    ///
    /// # Panics
    ///
    /// If a name it registers is taken already (by a service, or a plain handler).
    pub(crate) fn listen(handlers: &'a Handlers, service: impl Service) {
        let mut registry = Self {
            handlers,
            owner: Owner::Service(service.name()),
        };
        service.register(&mut registry);
    }

    /// Answers calls of `name` with what `f` returns. See
    /// [`Coprocess::handle`](crate::Coprocess::handle).
    pub fn handle<A, R, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.handle_then(name, f, |responder, value| responder.send(&value))
    }

    /// Used by generated servers, not public API: [`handle`](Self::handle) for a method
    /// declared `-> Result<T, E>`, whose `Err(e)` travels with `text(&e)` as its message
    /// where that is `Some` (the generated code passes `E`'s `Display`, where it has one).
    #[doc(hidden)]
    pub fn __handle_result<A, T, E, F>(
        &mut self,
        name: impl Into<String>,
        f: F,
        text: fn(&E) -> Option<String>,
    ) -> &mut Self
    where
        A: DeserializeOwned,
        T: Serialize,
        E: Serialize + 'static,
        F: Fn(A) -> Result<T, E> + Send + Sync + 'static,
    {
        self.handle_then(name, f, move |responder, result| match &result {
            Err(e) => match text(e) {
                Some(text) => responder.send_error(e, text),
                None => responder.send(&result),
            },
            Ok(_) => responder.send(&result),
        })
    }

    /// Registers `f`, whose value `reply` sends.
    fn handle_then<A, R, F>(
        &mut self,
        name: impl Into<String>,
        f: F,
        reply: impl Fn(Responder, R) + Send + Sync + 'static,
    ) -> &mut Self
    where
        A: DeserializeOwned,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.handlers.set_call(
            name.into(),
            self.owner,
            Arc::new(move |mut body: Body, responder: Responder| {
                let args = match decode_args::<A>(&mut body) {
                    Ok(args) => args,
                    Err(message) => return responder.fail(OutcomeKind::InvalidArguments, message),
                };
                match catch_unwind(AssertUnwindSafe(|| f(args))) {
                    Ok(value) => reply(responder, value),
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
            self.owner,
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
            self.owner,
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
pub trait Service: Sized {
    /// Registers this service's handlers.
    fn register(self, registry: &mut Registry<'_>);

    /// The name that error messages give this service (by default its type's name).
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

fn decode_args<A: DeserializeOwned>(body: &mut Body) -> Result<A, String> {
    body.decode()
        .map_err(|e| format!("{}: invalid arguments: {e}", body.name()))
}

/// The text of a caught panic.
pub(crate) fn panicked(panic: &(dyn Any + Send)) -> String {
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
        if self.link.send_direct_reply(self.id, value) {
            return;
        }
        self.send_encoded(|buf, id, max| message::encode_reply(buf, id, value, max));
    }

    /// Replies with the handler's error value `e`, whose text is `text`.
    pub(crate) fn send_error<E: Serialize + ?Sized>(self, e: &E, text: String) {
        self.send_encoded(|buf, id, max| message::encode_error_reply(buf, id, e, text, max));
    }

    /// Sends the reply that `encode` builds, or a failure saying why it could not.
    fn send_encoded(
        self,
        encode: impl FnOnce(&mut Vec<u8>, u64, u32) -> Result<(), message::EncodeError>,
    ) {
        let id = self.id;
        self.link.send_with(self.flush, |buf, max| {
            let start = buf.len();
            if let Err(e) = encode(buf, id, max) {
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

/// Used by generated servers, not public API: the text of a typed error, by autoref
/// specialization (`(&ErrorText(&e)).__coproq_text()`): its `Display` where `E` has one
/// ([`DisplayText`]), otherwise `None` ([`NoText`]), leaving the default text.
#[doc(hidden)]
#[derive(Debug)]
pub struct ErrorText<'a, E>(pub &'a E);

/// See [`ErrorText`].
#[doc(hidden)]
pub trait DisplayText {
    /// The error's `Display`.
    fn __coproq_text(&self) -> Option<String>;
}

impl<E: fmt::Display> DisplayText for ErrorText<'_, E> {
    fn __coproq_text(&self) -> Option<String> {
        Some(self.0.to_string())
    }
}

/// See [`ErrorText`].
#[doc(hidden)]
pub trait NoText {
    /// No text: the default applies.
    fn __coproq_text(&self) -> Option<String> {
        None
    }
}

impl<E> NoText for &ErrorText<'_, E> {}

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
