//! The wire: the only module that knows bincode and the frame layout.
//!
//! - [`byte_vec`]: `Vec<u8>` and `&[u8]` recognised among generic values, to travel as
//!   byte strings.
//! - [`frame`]: `u32` little-endian length prefix, bounded reads.
//! - [`codec`]: the one bincode configuration; encode and decode helpers.
//! - [`shape`]: the shape of every value, recorded by the sender and checked by the
//!   receiver at every depth, so that a `String` sent to a `u32` handler is an error
//!   instead of a number.
//! - [`message`]: `Hello`, `Call`, `Reply`, `Event`, `Bye` and how a frame is built.

pub(crate) mod byte_vec;
pub(crate) mod codec;
pub(crate) mod direct;
pub(crate) mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod header;
pub(crate) mod message;
mod outcome;
pub(crate) mod shape;

pub(crate) use codec::decode_checked;

pub(crate) use header::{Outcome, OutcomeKind};
pub(crate) use message::{Body, Entry, Hello, Message};
