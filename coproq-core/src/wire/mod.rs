//! The wire: the only module that knows bincode and the frame layout.
//!
//! - [`frame`]: `u32` little-endian length prefix, bounded reads, pooled buffers.
//! - [`header`]: message headers, encoded by hand byte for byte as bincode would.
//! - [`message`]: `Hello`, `Call`, `Reply`, `Event`, `Bye`, and how a frame is built.
//! - [`codec`]: the one bincode configuration; encode and decode helpers.
//! - [`encode`]: values written in that configuration's layout by a serializer of ours,
//!   byte for byte as bincode writes them, and also of unknown length (`flatten`).
//! - [`read`]: the same layout read, by a deserializer of ours that the shape check
//!   drives (its reads are also those of the one-pass decode, `shape::exact`).
//! - [`shape`]: the shape of every value, recorded by the sender and checked by the
//!   receiver at every depth, so that a `String` sent to a `u32` handler is an error
//!   instead of a number.
//! - [`returned`]: what a handler's return value means (a `Result` is the error channel).
//! - [`run`]: runs of events, consecutive events of one name and shape in one frame.
//! - [`map_run`]: runs of calls, the items of one `map` sent as one call and answered
//!   as one reply.
//! - [`error`]: `WireError`, how the wire fails.
//! - [`descriptors`]: descriptors inside values, put in a frame's group when it is
//!   encoded and taken from a message's group when it is decoded.
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
pub(crate) mod descriptors;
pub(crate) mod direct;
mod encode;
mod error;
pub(crate) mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
mod header;
pub(crate) mod map_run;
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
pub(crate) use returned::{asks_for_result, decode_variant};

pub(crate) use header::{Outcome, OutcomeKind, is_reply};
pub use message::PROTOCOL_VERSION;
pub(crate) use message::{Args, Body, ForkEntry, Hello, Message, Request};

/// Whether two short byte strings (names, shapes) are the same: compared inline with at
/// most four loads, where a call to `memcmp` (or a loop) would cost more than the
/// comparison; long ones by `==`.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Two loads from each end, overlapping when the length is not a power of two.
    macro_rules! ends {
        ($ty:ty, $n:literal) => {{
            let head = |s: &[u8]| <$ty>::from_ne_bytes(s[..$n].try_into().expect("long enough"));
            let tail =
                |s: &[u8]| <$ty>::from_ne_bytes(s[s.len() - $n..].try_into().expect("long enough"));
            head(a) == head(b) && tail(a) == tail(b)
        }};
    }
    match a.len() {
        0 => true,
        1 => a[0] == b[0],
        2..4 => ends!(u16, 2),
        4..8 => ends!(u32, 4),
        8..=16 => ends!(u64, 8),
        _ => a == b,
    }
}
