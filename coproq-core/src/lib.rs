//! The runtime of [coproq](https://docs.rs/coproq): starting workers, the framed pipe
//! link, call routing, handlers and errors. Use it through the `coproq` crate, which
//! re-exports everything public here together with `#[coproq::service]`.
//!
//! Layout: `coprocess` (the public handle), `builder` (starting workers), `pending` (calls in flight),
//! `handler` (handler table, typed adapters, `Reply`), `error`; `wire` is the only module
//! that knows bincode and the frame layout, `link` runs one connection (read token,
//! writer, call table, dispatch), and `launch` is the only module that knows processes
//! and file descriptors.

#![deny(missing_docs)]

mod builder;
mod bytes;
mod coprocess;
mod error;
mod handler;
mod launch;
mod link;
mod options;
mod pending;
mod process;
mod service;
mod sys;
mod wire;

pub use crate::builder::{Builder, fork, fork_with};
pub use crate::coprocess::{Coprocess, WeakCoprocess};
pub use crate::error::{Error, RemoteError, RemoteErrorKind, Result};
pub use crate::handler::{Registry, Reply, Service};
pub use crate::pending::Pending;

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
        ServiceCheck, assert_wire_type, call, call_result, emit, fingerprint_method,
    };
    pub use crate::{Coprocess, Pending, Registry, Result, Service};
}
