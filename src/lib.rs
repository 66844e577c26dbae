#![doc = include_str!("../docs/guide.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use coproq_core::{
    Blame, Builder, Coprocess, DeathReason, DisconnectCause, Error, Fd, Map, MapUnordered,
    PROTOCOL_VERSION, Peer, Pending, Pool, PoolBuilder, PoolEvent, PoolStats, Postmortem, Ready,
    Registry, RemoteError, RemoteErrorKind, Reply, Result, Retirement, SeatPrefix, Service,
    SharedBytes, WeakCoprocess, cancelled, deadline, fork, fork_with,
};

/// Generates a typed client and server for a trait.
///
/// For `trait Calc`, generates:
///
/// - `CalcClient`: `CalcClient::new(&coproc)` over a [`Coprocess`], or
///   `CalcClient::new(&pool)` over a [`Pool`] (see [`Peer`]), `Clone + Send + Sync`. One method per
///   trait method with the same arguments, returning `coproq::Result<T>` (or
///   `coproq::Result<Result<T, E>>` for a method declared `-> Result<T, E>`, with `E`
///   decoded typed), and an `<name>_async` twin returning [`Pending`]. `#[event]` methods
///   send one-way events and return `coproq::Result<()>`.
/// - `CalcServer<T: Calc + Send + Sync + 'static>`: `CalcServer::new(imp)` or
///   `CalcServer::from_arc(arc)`, a [`Service`] for [`Coprocess::listen`] and
///   [`Builder::listen`].
///
/// The wire name of a method is its Rust name (without `r#`), and arguments travel as
/// dynamic calls send them (none as `()`, one bare, several as a tuple), so typed and
/// dynamic callers and handlers mix freely. A client checks the peer's fingerprint of the
/// service on its first call and fails with [`Error::ServiceMismatch`] if the trait
/// definitions differ.
///
/// Methods take `&self`; they may not be generic, `async`, `unsafe` or take argument
/// patterns, and events return nothing. Such misuse is a compile error at the offending
/// tokens. The attribute takes no arguments.
///
/// # Examples
///
/// ```no_run
/// #[coproq::service]
/// pub trait Greeter {
///     fn greet(&self, name: &str) -> String;
///     #[event]
///     fn wave(&self);
/// }
///
/// struct English;
///
/// impl Greeter for English {
///     fn greet(&self, name: &str) -> String {
///         format!("hello, {name}")
///     }
///     fn wave(&self) {}
/// }
///
/// let worker = coproq::fork(|parent| {
///     parent.listen(GreeterServer::new(English));
/// })?;
/// let greeter = GreeterClient::new(&worker);
/// assert_eq!(greeter.greet("world")?, "hello, world");
/// greeter.wave()?;
/// # Ok::<(), coproq::Error>(())
/// ```
pub use coproq_macros::service;

/// Used by generated code and doc tests. Not public API: no semver promise.
#[doc(hidden)]
pub mod __private {
    pub use coproq_core::__private::*;
    pub use serde;
}

/// The README's examples, compiled and run as doctests so that they cannot rot (the guide
/// above is the crate's documentation).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
