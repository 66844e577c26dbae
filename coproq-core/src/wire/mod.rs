//! The wire: the only module that knows bincode and the frame layout.
//!
//! - [`frame`]: `u32` little-endian length prefix, bounded reads, pooled buffers.
//! - [`header`]: message headers, encoded by hand byte for byte as bincode would.
//! - [`message`]: `Hello`, `Call`, `Reply`, `Event`, `Bye`, and how a frame is built.
//! - [`codec`]: the one bincode configuration; encode and decode helpers.
//! - [`encode`]: values written in that configuration's layout by a serializer of ours,
//!   byte for byte as bincode writes them, and also of unknown length (`flatten`).
//! - [`read`]: the same layout read, by a deserializer of ours that the shape check
//!   drives.
//! - [`shape`]: the shape of every value, recorded by the sender and checked by the
//!   receiver at every depth, so that a `String` sent to a `u32` handler is an error
//!   instead of a number.
//! - [`returned`]: what a handler's return value means (a `Result` is the error channel).
//! - [`run`]: runs of events, consecutive events of one name and shape in one frame.
//! - [`error`]: `WireError`, how the wire fails.
//! - [`direct`]: large byte strings written from the sender's memory and received in
//!   place.
//! - [`byte_vec`]: `Vec<u8>` and `&[u8]` recognised among generic values, to travel as
//!   byte strings.
//! - [`number_vec`]: vectors of one number type (`Vec<u64>`, `&[f32]`, ...) written and
//!   read in one pass instead of element by element.
//! - [`typed_vec`]: vectors and slices recognised by their element type, which the two
//!   above build on.
//! - [`probe`]: the serializer that refuses everything, which the one-call probes build on.
//! - `fuzz`: the decoder's stable fuzz test and the `cargo fuzz` entry point.

pub(crate) mod byte_vec;
pub(crate) mod codec;
pub(crate) mod direct;
mod encode;
mod error;
pub(crate) mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod header;
pub(crate) mod message;
mod number_vec;
mod probe;
mod read;
mod returned;
pub(crate) mod run;
pub(crate) mod shape;
mod typed_vec;

pub(crate) use codec::decode_checked;
pub(crate) use error::WireError;

pub(crate) use header::{Outcome, OutcomeKind, is_reply};
pub(crate) use message::{Args, Body, Entry, Hello, Message, Request};

/// Whether two short byte strings (names, shapes) are the same: compared inline, where a
/// call to `memcmp` would cost more than the comparison; long ones by `==`.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    const SHORT: usize = 16;
    if a.len() != b.len() {
        return false;
    }
    if a.len() > SHORT {
        return a == b;
    }
    a.iter().zip(b).fold(0, |differ, (x, y)| differ | (x ^ y)) == 0
}
