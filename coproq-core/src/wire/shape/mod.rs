//! Shapes: a compact description of how a value is laid out, sent with every value.
//!
//! bincode is not self-describing: a string read as an integer, or a `u64` read as an
//! `i64`, could silently yield a number. So the sender records the *shape* of each value
//! it encodes (a preorder list of its serde data-model nodes: scalars, strings, options,
//! sequences, tuples, structs with field names, enums with variant names, maps), and the
//! receiver decodes through a deserializer that walks the shape in step with the bytes
//! and checks every node against what its own type asks for, at every depth. The first
//! difference becomes an error that names its path (`element 0: expected i64, got
//! string`); nothing is guessed.
//!
//! The shape names struct fields and enum variants, so types may evolve: a struct is
//! read by its field names (in any order; a field the receiver lacks is ignored unless it
//! denies unknown fields, one the sender lacks takes its default or is an error naming
//! it), and an enum by its variant names. Where the sender's fields are exactly the
//! receiver's, in order, they are read by position (remembered per layout, so a sequence
//! of structs compares its names once). The shape also makes every value
//! self-describing: a receiver that asks for any value (`serde_json::Value`, internally
//! tagged enums) reads a struct as a map of its field names, a tuple as a sequence, an
//! enum as its name or a map of its name to its content, as JSON would have them.
//!
//! Leniencies, for scripting, at any depth: an integer is accepted by any integer type
//! that holds its value (`-1` sent to a `u32` is an error naming both) and by a float
//! type that holds it exactly; an `f32` by an `f64`; a map of field names by a struct; a
//! sequence of the right length by a tuple; a bare value by an `Option`.
//!
//! Sequences and maps whose elements all have the same shape record it once, so a long
//! `Vec<Point>` costs a few bytes of shape, not a few per element.
//!
//! - [`record`](mod@record): the sender's side, a `Serializer` that writes the shape, with
//!   [`verify`] (whether an element is like the first, without writing it).
//! - [`check`]: the receiver's side, a `Deserializer` wrapper that checks against it,
//!   with [`access`] (the same check carried into nested values) and [`cursor`] (the
//!   position in the shape, and the path of the first failure).
//! - [`scalar`]: the short way for a value that is one scalar and a type that asks for
//!   exactly that.
//! - [`exact`]: the short way for any value whose type asks for exactly what the sender
//!   wrote: the bytes and the shape read in one step.

mod access;
mod check;
mod cursor;
pub(crate) mod exact;
mod record;
pub(crate) mod scalar;
mod verify;

pub(crate) use check::{Checked, Cursor};
pub(crate) use record::record;

/// Node tags. Each is one byte; some are followed by more (see `record`).
pub(super) mod tag {
    pub(crate) const BOOL: u8 = 1;
    pub(crate) const I8: u8 = 2;
    pub(crate) const I16: u8 = 3;
    pub(crate) const I32: u8 = 4;
    pub(crate) const I64: u8 = 5;
    pub(crate) const I128: u8 = 6;
    pub(crate) const U8: u8 = 7;
    pub(crate) const U16: u8 = 8;
    pub(crate) const U32: u8 = 9;
    pub(crate) const U64: u8 = 10;
    pub(crate) const U128: u8 = 11;
    pub(crate) const F32: u8 = 12;
    pub(crate) const F64: u8 = 13;
    pub(crate) const CHAR: u8 = 14;
    pub(crate) const STR: u8 = 15;
    /// A byte string (`serialize_bytes`): laid out as a sequence of `u8`.
    pub(crate) const BYTES: u8 = 16;
    pub(crate) const UNIT: u8 = 17;
    pub(crate) const NONE: u8 = 18;
    /// Followed by the shape of the value inside.
    pub(crate) const SOME: u8 = 19;
    /// Followed by a [`mode`](super::mode) byte, then the element shapes.
    pub(crate) const SEQ: u8 = 20;
    /// Followed by the arity (`u32`), then each element's shape.
    pub(crate) const TUPLE: u8 = 21;
    /// Followed by the number of fields (`u32`), then each field's name and shape.
    pub(crate) const STRUCT: u8 = 22;
    /// Like `SEQ`, with a key shape and a value shape per entry.
    pub(crate) const MAP: u8 = 23;
    /// Followed by the variant's index (`u32`), its name, and a [`variant`](super::variant)
    /// kind with its content.
    pub(crate) const ENUM: u8 = 24;
}

/// How the elements of a sequence or map are described.
pub(super) mod mode {
    /// No elements.
    pub(crate) const EMPTY: u8 = 0;
    /// One element shape (or key and value shape) stands for all of them.
    pub(crate) const SAME: u8 = 1;
    /// A count (`u32`), then one shape per element (or per key and value).
    pub(crate) const EACH: u8 = 2;
}

/// The content of an enum variant.
pub(super) mod variant {
    pub(crate) const UNIT: u8 = 0;
    /// Followed by the content's shape.
    pub(crate) const NEWTYPE: u8 = 1;
    /// Followed by the arity and each element's shape, as a tuple.
    pub(crate) const TUPLE: u8 = 2;
    /// Followed by the number of fields, then names and shapes, as a struct.
    pub(crate) const STRUCT: u8 = 3;
}

/// What a tag is called in error messages.
pub(super) fn tag_name(tag: u8) -> &'static str {
    match tag {
        tag::BOOL => "bool",
        tag::I8 => "i8",
        tag::I16 => "i16",
        tag::I32 => "i32",
        tag::I64 => "i64",
        tag::I128 => "i128",
        tag::U8 => "u8",
        tag::U16 => "u16",
        tag::U32 => "u32",
        tag::U64 => "u64",
        tag::U128 => "u128",
        tag::F32 => "f32",
        tag::F64 => "f64",
        tag::CHAR => "char",
        tag::STR => "string",
        tag::BYTES => "bytes",
        tag::UNIT => "unit",
        tag::NONE => "None",
        tag::SOME => "Some",
        tag::SEQ => "sequence",
        tag::TUPLE => "tuple",
        tag::STRUCT => "struct",
        tag::MAP => "map",
        tag::ENUM => "enum",
        _ => "an unknown shape",
    }
}

/// The shape of one byte string.
pub(crate) const BYTES_SHAPE: &[u8] = &[tag::BYTES];

/// Whether `shape` is that of one byte string, or of a sequence of `u8` (laid out alike).
pub(crate) fn is_byte_string(shape: &[u8]) -> bool {
    matches!(
        shape,
        [tag::BYTES] | [tag::SEQ, mode::EMPTY] | [tag::SEQ, mode::SAME, tag::U8]
    )
}

/// Names longer than this are cut in shapes (both sides cut alike).
const NAME_MAX: usize = 255;

/// The bytes of a name as a shape stores it.
#[inline]
fn name_bytes(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    &bytes[..bytes.len().min(NAME_MAX)]
}

#[cfg(test)]
mod tests;
