#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub use coproq_core::{
    Builder, Coprocess, Error, Pending, Registry, RemoteError, RemoteErrorKind, Reply, Result,
    Service, WeakCoprocess, fork,
};

/// Generates a typed client and a worker-side dispatcher for a trait.
/// See the crate docs for a full example.
pub use coproq_macros::service;

/// Used by generated code and doc tests. Not public API: no semver promise.
#[doc(hidden)]
pub mod __private {
    pub use coproq_core::__private::*;
    pub use serde;
}
