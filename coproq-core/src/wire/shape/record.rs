//! The sender's side: a `Serializer` that writes a value's shape instead of the value.
//!
//! Layout, in preorder: a tag per node; a tuple's arity and a struct's field count as
//! `u32` LE; names as a length byte and the bytes; a sequence or map as a mode byte
//! (`EMPTY`, `SAME` with one element shape, or `EACH` with a `u32` count and a shape per
//! element). Each element after the first is checked against the first one's shape
//! (`verify`, which writes nothing) and recorded only if it differs, so a uniform sequence
//! collapses to one element shape without a second pass.

use serde::Serialize;
use serde::ser::{self, Serializer};

use super::{mode, name_bytes, tag, variant, verify};
use crate::wire::WireError;
use crate::wire::error::Message;

/// Appends the shape of `value` to `out`.
pub(crate) fn record<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> std::result::Result<(), WireError> {
    value
        .serialize(Recorder { out })
        .map_err(|e| WireError::Unserializable(e.0))
}

type Result<T = ()> = std::result::Result<T, Message>;

struct Recorder<'a> {
    out: &'a mut Vec<u8>,
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let bytes = name_bytes(name);
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_variant(out: &mut Vec<u8>, index: u32, name: &str, kind: u8) {
    out.push(tag::ENUM);
    out.extend_from_slice(&index.to_le_bytes());
    put_name(out, name);
    out.push(kind);
}

macro_rules! scalars {
    ($($method:ident($ty:ty) => $tag:ident;)*) => {$(
        #[inline]
        fn $method(self, _: $ty) -> Result {
            self.out.push(tag::$tag);
            Ok(())
        }
    )*};
}

impl<'a> Serializer for Recorder<'a> {
    type Ok = ();
    type Error = Message;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Fixed<'a>;
    type SerializeTupleStruct = Fixed<'a>;
    type SerializeTupleVariant = Fixed<'a>;
    type SerializeMap = Elements<'a>;
    type SerializeStruct = Fixed<'a>;
    type SerializeStructVariant = Fixed<'a>;

    scalars! {
        serialize_bool(bool) => BOOL;
        serialize_i8(i8) => I8;
        serialize_i16(i16) => I16;
        serialize_i32(i32) => I32;
        serialize_i64(i64) => I64;
        serialize_i128(i128) => I128;
        serialize_u8(u8) => U8;
        serialize_u16(u16) => U16;
        serialize_u32(u32) => U32;
        serialize_u64(u64) => U64;
        serialize_u128(u128) => U128;
        serialize_f32(f32) => F32;
        serialize_f64(f64) => F64;
        serialize_char(char) => CHAR;
        serialize_str(&str) => STR;
        serialize_bytes(&[u8]) => BYTES;
        serialize_unit_struct(&'static str) => UNIT;
    }

    fn serialize_unit(self) -> Result {
        self.out.push(tag::UNIT);
        Ok(())
    }
    fn serialize_none(self) -> Result {
        self.out.push(tag::NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.out.push(tag::SOME);
        value.serialize(self)
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, name: &'static str) -> Result {
        put_variant(self.out, index, name, variant::UNIT);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        // Transparent, as bincode lays it out.
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        value: &T,
    ) -> Result {
        put_variant(self.out, index, name, variant::NEWTYPE);
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'a>> {
        Ok(Elements::open(self.out, tag::SEQ))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Elements<'a>> {
        Ok(Elements::open(self.out, tag::MAP))
    }
    fn serialize_tuple(self, _: usize) -> Result<Fixed<'a>> {
        self.out.push(tag::TUPLE);
        Ok(Fixed::open(self.out))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Fixed<'a>> {
        self.out.push(tag::TUPLE);
        Ok(Fixed::open(self.out))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        _: usize,
    ) -> Result<Fixed<'a>> {
        put_variant(self.out, index, name, variant::TUPLE);
        Ok(Fixed::open(self.out))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fixed<'a>> {
        self.out.push(tag::STRUCT);
        Ok(Fixed::open(self.out))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        _: usize,
    ) -> Result<Fixed<'a>> {
        put_variant(self.out, index, name, variant::STRUCT);
        Ok(Fixed::open(self.out))
    }
}

/// A tuple's or struct's members: a count patched in at the end (a struct may skip
/// fields), then each member's shape (and name, for struct fields).
pub(crate) struct Fixed<'a> {
    out: &'a mut Vec<u8>,
    count_at: usize,
    count: usize,
}

impl<'a> Fixed<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        let count_at = out.len();
        put_u32(out, 0);
        Self {
            out,
            count_at,
            count: 0,
        }
    }

    fn member<T: Serialize + ?Sized>(&mut self, name: Option<&str>, value: &T) -> Result {
        if let Some(name) = name {
            put_name(self.out, name);
        }
        self.count += 1;
        value.serialize(Recorder { out: self.out })
    }

    fn close(self) -> Result {
        let count = u32::try_from(self.count).map_err(|_| ser::Error::custom("too many fields"))?;
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&count.to_le_bytes());
        Ok(())
    }
}

/// The serde traits of tuples and structs, all recording members through [`Fixed`].
macro_rules! members {
    ($($trait:ident :: $method:ident($($key:ident)?);)*) => {$(
        impl ser::$trait for Fixed<'_> {
            type Ok = ();
            type Error = Message;
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result {
                self.member(None $(.or(Some($key)))?, value)
            }
            fn end(self) -> Result {
                self.close()
            }
        }
    )*};
}

members! {
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(key);
    SerializeStructVariant::serialize_field(key);
}

/// A sequence's elements (or a map's entries), collapsed to one shape while they agree.
pub(crate) struct Elements<'a> {
    out: &'a mut Vec<u8>,
    mode_at: usize,
    /// Where the first element's shape ends.
    first_end: usize,
    /// Where the element being recorded starts.
    mark: usize,
    count: usize,
    /// Every element so far had the first one's shape (only the first is kept).
    same: bool,
}

impl<'a> Elements<'a> {
    fn open(out: &'a mut Vec<u8>, tag: u8) -> Self {
        out.push(tag);
        let mode_at = out.len();
        out.push(mode::EMPTY);
        let at = out.len();
        Self {
            out,
            mode_at,
            first_end: at,
            mark: at,
            count: 0,
            same: true,
        }
    }

    fn record<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(Recorder { out: self.out })
    }

    /// Whether the next element (or entry) is like the first, so that its shape need not
    /// be recorded: `matches` is asked, given the first one's shape, while every element
    /// so far was alike; it is then counted.
    #[inline]
    fn like_the_first(&mut self, matches: impl FnOnce(&[u8]) -> bool) -> bool {
        let alike =
            self.same && self.count > 0 && matches(&self.out[self.mode_at + 1..self.first_end]);
        if alike {
            self.count += 1;
        }
        alike
    }

    /// Starts an element (or an entry's key).
    fn begin(&mut self) {
        self.mark = self.out.len();
    }

    /// Ends an element (or an entry, after its value): keeps its shape only if it
    /// differs from the first.
    #[inline]
    fn end_element(&mut self) {
        let first = self.mode_at + 1;
        if self.count == 0 {
            self.first_end = self.out.len();
        } else if self.same {
            let same_len = self.first_end - first == self.out.len() - self.mark;
            if same_len && self.out[first..self.first_end] == self.out[self.mark..] {
                self.out.truncate(self.mark);
            } else {
                // From here on every element is kept: write out the ones collapsed so far.
                self.same = false;
                let head = self.out[first..self.first_end].to_vec();
                let new = self.out.split_off(self.mark);
                for _ in 1..self.count {
                    self.out.extend_from_slice(&head);
                }
                self.out.extend_from_slice(&new);
            }
        }
        self.count += 1;
    }

    fn close(self) -> Result {
        self.out[self.mode_at] = match (self.count, self.same) {
            (0, _) => mode::EMPTY,
            (_, true) => mode::SAME,
            (count, false) => {
                let count =
                    u32::try_from(count).map_err(|_| ser::Error::custom("too many elements"))?;
                let at = self.mode_at + 1;
                self.out.splice(at..at, count.to_le_bytes());
                mode::EACH
            }
        };
        Ok(())
    }
}

impl ser::SerializeSeq for Elements<'_> {
    type Ok = ();
    type Error = Message;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        if self.like_the_first(|first| verify::has_shape(value, first)) {
            return Ok(());
        }
        self.begin();
        self.record(value)?;
        self.end_element();
        Ok(())
    }
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeMap for Elements<'_> {
    type Ok = ();
    type Error = Message;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.begin();
        self.record(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.record(value)?;
        self.end_element();
        Ok(())
    }
    #[inline]
    fn serialize_entry<K, V>(&mut self, key: &K, value: &V) -> Result
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        if self.like_the_first(|first| verify::entry_has_shape(key, value, first)) {
            return Ok(());
        }
        self.begin();
        self.record(key)?;
        self.record(value)?;
        self.end_element();
        Ok(())
    }
    fn end(self) -> Result {
        self.close()
    }
}
