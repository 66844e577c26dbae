//! The runtime of [coproq](https://docs.rs/coproq): starting workers, the framed pipe
//! link, call routing, handlers and errors. Use it through the `coproq` crate, which
//! re-exports everything public here together with `#[coproq::service]`.
//!
//! Layout, each layer using only those above it in this list: `wire` (frames, messages,
//! the one bincode configuration, value shapes) and `bytes`; `error`; `trace` (events for
//! `tracing`, nothing without the feature); `sys` (the
//! platform's system calls); `ready` (the `Ready` future over anything with room);
//! `link` (one connection: read token, writer, call and handler tables, cancels, a
//! handler's deadline and cancel, dispatch); `handler` (typed adapters, `Reply`),
//! `pending` (calls in flight), `process` (the parent's hold on a worker), `options`;
//! `coprocess` (the handle); `launch` (starting workers, the worker side of a fork);
//! `builder` (`Builder`, `fork`, `fork_with`); `pool` (pools of workers and their
//! supervisor, standing on `Coprocess`); `map` (`map` and `map_unordered` of both); `service` (support for generated code, over a
//! link or a pool).

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod bytes;
mod coprocess;
mod error;
mod fd;
mod handler;
mod launch;
mod link;
mod map;
mod options;
mod pending;
mod pool;
mod process;
mod ready;
mod service;
mod shared_bytes;
mod sys;
mod trace;
mod wire;

pub use crate::builder::{Builder, fork, fork_with};
pub use crate::coprocess::{Coprocess, WeakCoprocess};
pub use crate::error::{
    Blame, DeathReason, DisconnectCause, Error, Postmortem, RemoteError, RemoteErrorKind, Result,
};
pub use crate::fd::Fd;
pub use crate::handler::{Registry, Reply, Service};
pub use crate::link::context::{cancelled, deadline};
pub use crate::map::{Map, MapUnordered};
pub use crate::pending::Pending;
pub use crate::pool::{Pool, PoolBuilder, PoolEvent, PoolStats, Retirement, SeatPrefix};
pub use crate::ready::Ready;
pub use crate::service::Peer;
pub use crate::shared_bytes::SharedBytes;
pub use crate::wire::PROTOCOL_VERSION;

/// The decoder's fuzzing entry point (`fuzz/`, with the `fuzzing` feature). Not public
/// API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz {
    /// Reads `bytes` as a stream of frames and decodes everything in it; never panics.
    pub fn decode_stream(bytes: &[u8]) -> usize {
        crate::wire::fuzz::decode_stream(bytes, 1 << 20)
    }
}

/// Used by generated code. Not public API: no semver promise.
#[doc(hidden)]
pub mod __private {
    pub use crate::bytes::{ByteBuf, Bytes};
    pub use crate::handler::{DisplayText, ErrorText, NoText};
    pub use crate::service::{
        ServiceCheck, Target, assert_wire_type, call, call_result, emit, fingerprint_method,
    };
    pub use crate::{Coprocess, Peer, Pending, Registry, Result, Service};
}
