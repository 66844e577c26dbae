//! The typed adapters that `handle`, `handle_async`, `handle_deferred`, `on` and
//! `on_async` install on the link's handler table, services, and [`Reply`], a deferred
//! handler's promise to answer.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::panicked;
use crate::link::tasks::{self, Answer};
use crate::link::{Handlers, Owner, Responder};
use crate::wire::{Args, OutcomeKind};

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
        self.handle_then(name, f, result_reply(text))
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
        self.on_call(name, move |args: A, responder| {
            match catch_unwind(AssertUnwindSafe(|| f(args))) {
                Ok(value) => reply(responder, value),
                Err(panic) => responder.fail(OutcomeKind::Panicked, panicked(&*panic)),
            }
        })
    }

    /// Registers a call handler that decodes its arguments as `A` (the call fails with an
    /// invalid-arguments error if they do not decode) and hands them to `run`.
    fn on_call<A: DeserializeOwned>(
        &mut self,
        name: impl Into<String>,
        run: impl Fn(A, Responder) + Send + Sync + 'static,
    ) -> &mut Self {
        self.handlers.set_call(
            name.into(),
            self.owner,
            Arc::new(move |args: &mut Args<'_>, responder: Responder| {
                match decode_args::<A>(args) {
                    Ok(args) => run(args, responder),
                    Err(message) => responder.fail(OutcomeKind::InvalidArguments, message),
                }
            }),
        );
        self
    }

    /// Answers calls of `name` with the value of the future that `f` returns. See
    /// [`Coprocess::handle_async`](crate::Coprocess::handle_async).
    pub fn handle_async<A, R, Fut, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        R: Serialize + 'static,
        Fut: Future<Output = R> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        self.handle_async_then(name, f, |responder, value| responder.send(&value))
    }

    /// Used by generated servers, not public API: [`handle_async`](Self::handle_async)
    /// for a method declared `-> Result<T, E>`, as [`__handle_result`](Self::__handle_result).
    #[doc(hidden)]
    pub fn __handle_result_async<A, T, E, Fut, F>(
        &mut self,
        name: impl Into<String>,
        f: F,
        text: fn(&E) -> Option<String>,
    ) -> &mut Self
    where
        A: DeserializeOwned,
        T: Serialize + 'static,
        E: Serialize + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        self.handle_async_then(name, f, result_reply(text))
    }

    /// Registers `f`, whose future's value `reply` sends.
    fn handle_async_then<A, R, Fut, F>(
        &mut self,
        name: impl Into<String>,
        f: F,
        reply: impl Fn(Responder, R) + Send + Sync + 'static,
    ) -> &mut Self
    where
        A: DeserializeOwned,
        R: 'static,
        Fut: Future<Output = R> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        let reply = Arc::new(reply);
        self.on_call(name, move |args: A, responder| {
            // Making the future runs the code before its first await: it may panic too.
            match catch_unwind(AssertUnwindSafe(|| f(args))) {
                Ok(future) => {
                    let reply = Arc::clone(&reply);
                    let answer = async move {
                        let value = future.await;
                        Box::new(move |responder: Responder| reply(responder, value)) as Answer
                    };
                    tasks::spawn_call(responder, Box::pin(answer));
                }
                Err(panic) => responder.fail(OutcomeKind::Panicked, panicked(&*panic)),
            }
        })
    }

    /// Runs the future that `f` returns for every event `name`. See
    /// [`Coprocess::on_async`](crate::Coprocess::on_async).
    pub fn on_async<A, Fut, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        Fut: Future<Output = ()> + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
    {
        self.on(name, move |args: A| tasks::spawn_event(Box::pin(f(args))))
    }

    /// Answers calls of `name` later, through the [`Reply`] that `f` receives. See
    /// [`Coprocess::handle_deferred`](crate::Coprocess::handle_deferred).
    pub fn handle_deferred<A, T, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        A: DeserializeOwned,
        T: Serialize,
        F: Fn(A, Reply<T>) + Send + Sync + 'static,
    {
        self.on_call(name, move |args: A, responder| {
            // A deferred answer comes later, from anywhere: it is written at once.
            let reply = Reply {
                responder: Some(responder.flush_now()),
                _value: PhantomData,
            };
            let outer = IN_DEFERRED.replace(true);
            let result = catch_unwind(AssertUnwindSafe(|| f(args, reply)));
            IN_DEFERRED.set(outer);
            if let Err(panic) = result
                && let Some(responder) = UNWOUND.take()
            {
                responder.fail(OutcomeKind::Panicked, panicked(&*panic));
            }
        })
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
            Arc::new(move |args: &mut Args<'_>| match decode_args::<A>(args) {
                Ok(args) => {
                    // A panicking listener is reported by the panic hook; the link goes on.
                    let _ = catch_unwind(AssertUnwindSafe(|| f(args)));
                }
                Err(message) => {
                    crate::error::say(format_args!("coproq: event dropped: {message}"));
                }
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

/// How a method declared `-> Result<T, E>` answers: `Err(e)` with `text(&e)` as its
/// message where that is `Some`.
fn result_reply<T: Serialize, E: Serialize + 'static>(
    text: fn(&E) -> Option<String>,
) -> impl Fn(Responder, Result<T, E>) + Send + Sync + 'static {
    move |responder, result| match &result {
        Err(e) => match text(e) {
            Some(text) => responder.send_error(e, text),
            None => responder.send(&result),
        },
        Ok(_) => responder.send(&result),
    }
}

#[inline]
fn decode_args<A: DeserializeOwned>(args: &mut Args<'_>) -> Result<A, String> {
    args.decode()
        .map_err(|e| format!("{}: invalid arguments: {e}", args.name()))
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

impl<T> Reply<T> {
    /// Whether the caller has cancelled this call (by [`Pending::cancel`](crate::Pending::cancel),
    /// by dropping its `Pending`, or at its deadline): its answer would be discarded, so
    /// work on it may stop. Callable from any thread.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.responder.as_ref().is_some_and(Responder::is_cancelled)
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
