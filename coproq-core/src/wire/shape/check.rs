//! The receiver's side: a `Deserializer` wrapper that walks the sender's shape in step
//! with the bytes and checks each node against what the receiving type asks for.
//!
//! Policy: every method either consumes exactly one shape node (with its children) and
//! the value it describes, or fails. The first failure starts a path, and each element,
//! field and variant that the error passes on its way out adds its step in front, so the
//! error can name where it happened at no cost to a decode that succeeds; the wrapped
//! deserializer's own errors (a value out of range, a short buffer) get the same path.
//! Integers are read as the type the sender wrote and handed to the receiver's visitor,
//! whose own range check (serde's) accepts or refuses the value.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::{mode, name_bytes, tag, tag_name, variant};

/// How deeply nested a shape may be; deeper ones are refused rather than risk the stack.
const MAX_DEPTH: usize = 128;

/// One step of the path to a node.
#[derive(Debug, Clone, Copy)]
enum Step {
    Element(usize),
    Field(&'static str),
    Key(usize),
    Value(usize),
    Variant(&'static str),
}

/// A position in a shape, shared by all the wrappers of one decode.
#[derive(Debug)]
pub(crate) struct Cursor<'s> {
    shape: &'s [u8],
    at: Cell<usize>,
    /// The path of the first failure, once there is one, outermost step first.
    failed_at: RefCell<Option<Vec<Step>>>,
}

impl<'s> Cursor<'s> {
    pub(crate) fn new(shape: &'s [u8]) -> Self {
        Self {
            shape,
            at: Cell::new(0),
            failed_at: RefCell::new(None),
        }
    }

    /// Where the first failure happened, as "element 0, field `x`"; `None` at the top.
    pub(crate) fn failure_path(&self) -> Option<String> {
        let failed = self.failed_at.borrow();
        let path = failed.as_ref().filter(|p| !p.is_empty())?;
        let mut text = String::new();
        for (i, step) in path.iter().rev().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let _ = match step {
                Step::Element(n) => write!(text, "element {n}"),
                Step::Field(name) => write!(text, "field `{name}`"),
                Step::Key(n) => write!(text, "key {n}"),
                Step::Value(n) => write!(text, "value {n}"),
                Step::Variant(name) => write!(text, "variant `{name}`"),
            };
        }
        Some(text)
    }

    /// Whether the whole shape was used (a decode that left some is a mismatch).
    pub(crate) fn finished(&self) -> bool {
        self.at.get() == self.shape.len()
    }

    fn note_failure(&self) {
        self.failed_at.borrow_mut().get_or_insert_with(Vec::new);
    }

    fn fail<E: de::Error>(&self, message: impl fmt::Display) -> E {
        self.note_failure();
        E::custom(message)
    }

    #[inline]
    fn noted<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.note_failure();
        }
        result
    }

    /// Runs `body` for the member at `step`; a failure inside gets the step on its path
    /// (pushed innermost first, read back reversed).
    #[inline]
    fn within<T, E>(&self, step: Step, body: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let result = body();
        if result.is_err() {
            self.failed_at
                .borrow_mut()
                .get_or_insert_with(Vec::new)
                .push(step);
        }
        result
    }

    #[inline]
    fn byte<E: de::Error>(&self) -> Result<u8, E> {
        let at = self.at.get();
        let byte = *self
            .shape
            .get(at)
            .ok_or_else(|| self.fail::<E>("the value's shape ended early"))?;
        self.at.set(at + 1);
        Ok(byte)
    }

    fn u32<E: de::Error>(&self) -> Result<u32, E> {
        let at = self.at.get();
        let bytes = self
            .shape
            .get(at..at + 4)
            .ok_or_else(|| self.fail::<E>("the value's shape ended early"))?;
        self.at.set(at + 4);
        Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
    }

    fn name<E: de::Error>(&self) -> Result<&'s [u8], E> {
        let len = usize::from(self.byte::<E>()?);
        let at = self.at.get();
        let name = self
            .shape
            .get(at..at + len)
            .ok_or_else(|| self.fail::<E>("the value's shape ended early"))?;
        self.at.set(at + len);
        Ok(name)
    }

    /// Moves past one node and its children.
    fn skip<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > MAX_DEPTH {
            return Err(self.fail("the value's shape is nested too deeply"));
        }
        match self.byte::<E>()? {
            tag::BOOL..=tag::UNIT | tag::NONE => Ok(()),
            tag::SOME => self.skip(depth + 1),
            tag::SEQ => self.skip_elements(depth, 1),
            tag::MAP => self.skip_elements(depth, 2),
            tag::TUPLE => self.skip_members(depth, false),
            tag::STRUCT => self.skip_members(depth, true),
            tag::ENUM => {
                self.u32::<E>()?;
                self.name::<E>()?;
                match self.byte::<E>()? {
                    variant::UNIT => Ok(()),
                    variant::NEWTYPE => self.skip(depth + 1),
                    variant::TUPLE => self.skip_members(depth, false),
                    variant::STRUCT => self.skip_members(depth, true),
                    other => Err(self.fail(format_args!("unknown variant kind {other} in shape"))),
                }
            }
            other => Err(self.fail(format_args!("unknown shape tag {other}"))),
        }
    }

    fn skip_elements<E: de::Error>(&self, depth: usize, per_element: usize) -> Result<(), E> {
        let count = match self.byte::<E>()? {
            mode::EMPTY => 0,
            mode::SAME => 1,
            mode::EACH => self.u32::<E>()? as usize,
            other => return Err(self.fail(format_args!("unknown sequence mode {other}"))),
        };
        for _ in 0..count * per_element {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    fn skip_members<E: de::Error>(&self, depth: usize, named: bool) -> Result<(), E> {
        for _ in 0..self.u32::<E>()? {
            if named {
                self.name::<E>()?;
            }
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    /// The end of the node at the cursor, which stays where it is.
    fn end_of_node<E: de::Error>(&self) -> Result<usize, E> {
        let start = self.at.get();
        self.skip::<E>(0)?;
        let end = self.at.get();
        self.at.set(start);
        Ok(end)
    }
}

/// `inner`, checked against the shape at `cursor`. `fixed` stands in for the shape of
/// each element of a byte string read as a sequence of `u8`.
pub(crate) struct Checked<'c, 's, D> {
    pub(crate) inner: D,
    pub(crate) cursor: &'c Cursor<'s>,
    pub(crate) fixed: Option<u8>,
}

impl<D> Checked<'_, '_, D> {
    #[inline]
    fn tag<E: de::Error>(&self) -> Result<u8, E> {
        match self.fixed {
            Some(tag) => Ok(tag),
            None => self.cursor.byte(),
        }
    }

    fn mismatch<E: de::Error>(&self, expected: impl fmt::Display, got: u8) -> E {
        self.cursor.fail(format_args!(
            "expected {expected}, got {}",
            self.describe(got)
        ))
    }

    /// A tag as an error message shows it (with the arity of a tuple or struct).
    fn describe(&self, got: u8) -> String {
        let at = self.cursor.at.get();
        let count = self
            .cursor
            .shape
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")));
        match (got, count) {
            (tag::TUPLE, Some(n)) => format!("tuple of {n}"),
            (tag::STRUCT, Some(n)) => format!("struct of {n} fields"),
            (tag::ENUM, _) => {
                let name = at
                    .checked_add(5)
                    .and_then(|start| {
                        let len = usize::from(*self.cursor.shape.get(start - 1)?);
                        self.cursor.shape.get(start..start + len)
                    })
                    .map(String::from_utf8_lossy);
                match name {
                    Some(name) => format!("enum variant `{name}`"),
                    None => "enum".into(),
                }
            }
            _ => tag_name(got).into(),
        }
    }
}

#[inline]
fn is_integer(tag: u8) -> bool {
    matches!(tag, tag::I8..=tag::I128 | tag::U8..=tag::U128)
}

/// Reads a scalar the way the sender wrote it.
#[inline]
fn read_scalar<'de, D: Deserializer<'de>, V: Visitor<'de>>(
    inner: D,
    tag: u8,
    visitor: V,
) -> Result<V::Value, D::Error> {
    match tag {
        tag::BOOL => inner.deserialize_bool(visitor),
        tag::I8 => inner.deserialize_i8(visitor),
        tag::I16 => inner.deserialize_i16(visitor),
        tag::I32 => inner.deserialize_i32(visitor),
        tag::I64 => inner.deserialize_i64(visitor),
        tag::I128 => inner.deserialize_i128(visitor),
        tag::U8 => inner.deserialize_u8(visitor),
        tag::U16 => inner.deserialize_u16(visitor),
        tag::U32 => inner.deserialize_u32(visitor),
        tag::U64 => inner.deserialize_u64(visitor),
        tag::U128 => inner.deserialize_u128(visitor),
        tag::F32 => inner.deserialize_f32(visitor),
        tag::F64 => inner.deserialize_f64(visitor),
        tag::CHAR => inner.deserialize_char(visitor),
        tag::STR => inner.deserialize_str(visitor),
        tag::BYTES => inner.deserialize_bytes(visitor),
        _ => inner.deserialize_unit(visitor),
    }
}

macro_rules! integers {
    ($($method:ident => $name:literal;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let tag = self.tag()?;
            if !is_integer(tag) {
                return Err(self.mismatch($name, tag));
            }
            self.cursor.noted(read_scalar(self.inner, tag, visitor))
        }
    )*};
}

macro_rules! exactly {
    ($($method:ident($($accepted:ident)|+) => $name:literal;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let tag = self.tag()?;
            if !matches!(tag, $(tag::$accepted)|+) {
                return Err(self.mismatch($name, tag));
            }
            self.cursor.noted(read_scalar(self.inner, tag, visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Checked<'_, '_, D> {
    type Error = D::Error;

    integers! {
        deserialize_i8 => "i8";
        deserialize_i16 => "i16";
        deserialize_i32 => "i32";
        deserialize_i64 => "i64";
        deserialize_i128 => "i128";
        deserialize_u8 => "u8";
        deserialize_u16 => "u16";
        deserialize_u32 => "u32";
        deserialize_u64 => "u64";
        deserialize_u128 => "u128";
    }

    exactly! {
        deserialize_bool(BOOL) => "bool";
        deserialize_f32(F32) => "f32";
        deserialize_f64(F64 | F32) => "f64";
        deserialize_char(CHAR) => "char";
        // Strings are borrowed from the input and copied by the visitor: a claimed length
        // is checked against the bytes present before anything is allocated.
        deserialize_str(STR) => "string";
        deserialize_string(STR) => "string";
        deserialize_unit(UNIT) => "unit";
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let start = self.cursor.at.get();
        let tag = self.tag()?;
        // A sequence of `u8` has the layout of a byte string.
        let bytes_like = tag == tag::BYTES
            || tag == tag::SEQ && {
                self.cursor.at.set(start);
                let end = self.cursor.end_of_node::<D::Error>()?;
                self.cursor.at.set(end);
                super::is_byte_string(&self.cursor.shape[start..end])
            };
        if !bytes_like {
            return Err(self.mismatch("bytes", tag));
        }
        self.cursor.noted(self.inner.deserialize_bytes(visitor))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let tag = self.tag()?;
        if !matches!(tag, tag::NONE | tag::SOME) {
            return Err(self.mismatch("option", tag));
        }
        let cursor = self.cursor;
        let visitor = Wrap {
            visitor,
            cursor,
            state: tag == tag::SOME,
        };
        cursor.noted(self.inner.deserialize_option(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Newtype {
            visitor,
            cursor: self.cursor,
            fixed: self.fixed,
        };
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let cursor = self.cursor;
        let start = cursor.at.get();
        let tag = self.tag()?;
        let elements = match tag {
            tag::SEQ => Elements::read(cursor, start)?,
            tag::BYTES => Elements::bytes(cursor),
            _ => return Err(self.mismatch("sequence", tag)),
        };
        let end = elements.end;
        let value = cursor.noted(self.inner.deserialize_seq(Wrap {
            visitor,
            cursor,
            state: elements,
        }))?;
        cursor.at.set(end);
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tag = self.tag()?;
        if tag != tag::TUPLE || self.cursor.u32::<D::Error>()? as usize != len {
            if tag == tag::TUPLE {
                self.cursor.at.set(self.cursor.at.get() - 4);
            }
            return Err(self.mismatch(format_args!("tuple of {len}"), tag));
        }
        let cursor = self.cursor;
        let members = Members::tuple(len);
        cursor.noted(self.inner.deserialize_tuple(
            len,
            Wrap {
                visitor,
                cursor,
                state: members,
            },
        ))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tag = self.tag()?;
        let count = if tag == tag::STRUCT {
            let count = self.cursor.u32::<D::Error>()?;
            self.cursor.at.set(self.cursor.at.get() - 4);
            count
        } else {
            0
        };
        if tag != tag::STRUCT || count as usize != fields.len() {
            return Err(self.mismatch(
                format_args!("struct `{name}` of {} fields", fields.len()),
                tag,
            ));
        }
        self.cursor.u32::<D::Error>()?;
        let cursor = self.cursor;
        cursor.noted(self.inner.deserialize_struct(
            name,
            fields,
            Wrap {
                visitor,
                cursor,
                state: Members::fields(fields),
            },
        ))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let cursor = self.cursor;
        let start = cursor.at.get();
        let tag = self.tag()?;
        if tag != tag::MAP {
            return Err(self.mismatch("map", tag));
        }
        let entries = Elements::read(cursor, start)?;
        let end = entries.end;
        let value = cursor.noted(self.inner.deserialize_map(Wrap {
            visitor,
            cursor,
            state: entries,
        }))?;
        cursor.at.set(end);
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tag = self.tag()?;
        if tag != tag::ENUM {
            return Err(self.mismatch(format_args!("enum `{name}`"), tag));
        }
        let cursor = self.cursor;
        let index = cursor.u32::<D::Error>()?;
        let sent = cursor.name::<D::Error>()?;
        let ours = variants.get(index as usize).copied();
        if ours.map(name_bytes) != Some(sent) {
            return Err(cursor.fail(format_args!(
                "expected a variant of enum `{name}` ({}), got variant `{}` (number {index})",
                variants.join(", "),
                String::from_utf8_lossy(sent)
            )));
        }
        let kind = cursor.byte::<D::Error>()?;
        let state = Variant {
            name: ours.unwrap_or_default(),
            kind,
        };
        cursor.noted(self.inner.deserialize_enum(
            name,
            variants,
            Wrap {
                visitor,
                cursor,
                state,
            },
        ))
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // The shape makes the value self-describing: read it as what the sender wrote.
        let start = self.cursor.at.get();
        let tag = self.tag()?;
        if self.fixed.is_none() {
            self.cursor.at.set(start);
        }
        match tag {
            tag::BOOL..=tag::STR => self.deserialize_scalar_any(tag, visitor),
            tag::BYTES => self.deserialize_bytes(visitor),
            tag::UNIT => self.deserialize_unit(visitor),
            tag::NONE | tag::SOME => self.deserialize_option(visitor),
            tag::SEQ => self.deserialize_seq(visitor),
            tag::MAP => self.deserialize_map(visitor),
            tag::TUPLE => {
                let at = self.cursor.at.get();
                self.cursor.at.set(at + 1);
                let len = self.cursor.u32::<D::Error>()? as usize;
                self.cursor.at.set(at);
                self.deserialize_tuple(len, visitor)
            }
            other => Err(self.mismatch("a self-describing value", other)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<'de, D: Deserializer<'de>> Checked<'_, '_, D> {
    fn deserialize_scalar_any<V: Visitor<'de>>(
        self,
        tag: u8,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if self.fixed.is_none() {
            self.cursor.byte::<D::Error>()?;
        }
        self.cursor.noted(read_scalar(self.inner, tag, visitor))
    }
}

/// A visitor (or access) wrapped with the cursor and what the shape said.
struct Wrap<'c, 's, V, S> {
    visitor: V,
    cursor: &'c Cursor<'s>,
    state: S,
}

/// The members of a tuple or struct, read in order.
struct Members {
    len: usize,
    fields: Option<&'static [&'static str]>,
    next: usize,
}

impl Members {
    fn tuple(len: usize) -> Self {
        Self {
            len,
            fields: None,
            next: 0,
        }
    }

    fn fields(fields: &'static [&'static str]) -> Self {
        Self {
            len: fields.len(),
            fields: Some(fields),
            next: 0,
        }
    }
}

/// The elements of a sequence or the entries of a map.
struct Elements {
    /// Where each element's shape starts, when one shape stands for all.
    same: Option<usize>,
    /// The shape of each element of a byte string.
    fixed: Option<u8>,
    /// Elements the shape still describes.
    left: usize,
    next: usize,
    /// Where the node ends.
    end: usize,
}

impl Elements {
    /// Reads the mode of the sequence or map whose tag, at `start`, was just taken.
    fn read<E: de::Error>(cursor: &Cursor<'_>, start: usize) -> Result<Self, E> {
        let after_tag = cursor.at.get();
        cursor.at.set(start);
        let end = cursor.end_of_node::<E>()?;
        cursor.at.set(after_tag);
        let (same, left) = match cursor.byte::<E>()? {
            mode::EMPTY => (None, 0),
            mode::SAME => (Some(cursor.at.get()), usize::MAX),
            _ => (None, cursor.u32::<E>()? as usize),
        };
        // Elements that are all one scalar need no cursor at all (the common long case).
        let fixed = same
            .filter(|&start| start + 1 == end)
            .and_then(|start| cursor.shape.get(start).copied())
            .filter(|&tag| matches!(tag, tag::BOOL..=tag::STR));
        Ok(Self {
            same: same.filter(|_| fixed.is_none()),
            fixed,
            left,
            next: 0,
            end,
        })
    }

    /// A byte string read as a sequence of `u8`.
    fn bytes(cursor: &Cursor<'_>) -> Self {
        Self {
            same: None,
            fixed: Some(tag::U8),
            left: usize::MAX,
            next: 0,
            end: cursor.at.get(),
        }
    }

    /// Positions the cursor for the next element; false if the shape has no more.
    #[inline]
    fn advance(&mut self, cursor: &Cursor<'_>) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        if let Some(start) = self.same {
            cursor.at.set(start);
        }
        true
    }
}

/// An enum's variant as the shape gives it.
struct Variant {
    name: &'static str,
    kind: u8,
}

/// A seed whose deserializer is checked.
struct Seed<'c, 's, T> {
    inner: T,
    cursor: &'c Cursor<'s>,
    fixed: Option<u8>,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, '_, T> {
    type Value = T::Value;
    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<T::Value, D::Error> {
        self.inner.deserialize(Checked {
            inner,
            cursor: self.cursor,
            fixed: self.fixed,
        })
    }
}

/// A seed for an element the shape does not have: the data is longer than its shape.
struct Surplus;

impl<'de> DeserializeSeed<'de> for Surplus {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(
            "the value has more elements than its shape",
        ))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, bool> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        if self.state {
            return Err(self.cursor.fail("the value is None but its shape is Some"));
        }
        self.visitor.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        if !self.state {
            return Err(self.cursor.fail("the value is Some but its shape is None"));
        }
        self.visitor.visit_some(Checked {
            inner,
            cursor: self.cursor,
            fixed: None,
        })
    }
}

/// A newtype struct: transparent, as in the shape.
struct Newtype<'c, 's, V> {
    visitor: V,
    cursor: &'c Cursor<'s>,
    fixed: Option<u8>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Newtype<'_, '_, V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Checked {
            inner,
            cursor: self.cursor,
            fixed: self.fixed,
        })
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, Elements> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Wrap {
            visitor: seq,
            cursor: self.cursor,
            state: self.state,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Wrap {
            visitor: map,
            cursor: self.cursor,
            state: self.state,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, '_, A, Elements> {
    type Error = A::Error;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let cursor = self.cursor;
        let index = self.state.next;
        if !self.state.advance(cursor) {
            return cursor
                .within(Step::Element(index), || {
                    cursor.noted(self.visitor.next_element_seed(Surplus))
                })
                .map(|_| None);
        }
        self.state.next += 1;
        let fixed = self.state.fixed;
        cursor.within(Step::Element(index), || {
            self.visitor.next_element_seed(Seed {
                inner: seed,
                cursor,
                fixed,
            })
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.visitor.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, '_, A, Elements> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let cursor = self.cursor;
        let index = self.state.next;
        if !self.state.advance(cursor) {
            return cursor
                .within(Step::Key(index), || {
                    cursor.noted(self.visitor.next_key_seed(Surplus))
                })
                .map(|_| None);
        }
        self.state.next += 1;
        cursor.within(Step::Key(index), || {
            self.visitor.next_key_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let cursor = self.cursor;
        cursor.within(Step::Value(self.state.next.saturating_sub(1)), || {
            self.visitor.next_value_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.visitor.size_hint()
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, Members> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Wrap {
            visitor: seq,
            cursor: self.cursor,
            state: self.state,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, '_, A, Members> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let cursor = self.cursor;
        let index = self.state.next;
        if index >= self.state.len {
            return cursor
                .noted(self.visitor.next_element_seed(Surplus))
                .map(|_| None);
        }
        self.state.next += 1;
        let step = match self.state.fields {
            Some(fields) => {
                let ours = fields[index];
                let sent = cursor.name::<A::Error>()?;
                if name_bytes(ours) != sent {
                    return Err(cursor.fail(format_args!(
                        "expected field `{ours}`, got field `{}`",
                        String::from_utf8_lossy(sent)
                    )));
                }
                Step::Field(ours)
            }
            None => Step::Element(index),
        };
        cursor.within(step, || {
            self.visitor.next_element_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.state.len - self.state.next)
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, Variant> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(Wrap {
            visitor: data,
            cursor: self.cursor,
            state: self.state,
        })
    }
}

impl<'de, 'c, 's, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'c, 's, A, Variant> {
    type Error = A::Error;
    type Variant = Wrap<'c, 's, A::Variant, Variant>;
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, access) = self.visitor.variant_seed(seed)?;
        Ok((
            value,
            Wrap {
                visitor: access,
                cursor: self.cursor,
                state: self.state,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, '_, A, Variant> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.expect_kind(variant::UNIT, "a unit variant")?;
        self.visitor.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.expect_kind(variant::NEWTYPE, "a newtype variant")?;
        let cursor = self.cursor;
        cursor.within(Step::Variant(self.state.name), || {
            self.visitor.newtype_variant_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.expect_kind(variant::TUPLE, "a tuple variant")?;
        let cursor = self.cursor;
        let sent = cursor.u32::<A::Error>()? as usize;
        if sent != len {
            return Err(cursor.fail(format_args!(
                "variant `{}`: expected {len} fields, got {sent}",
                self.state.name
            )));
        }
        cursor.within(Step::Variant(self.state.name), || {
            cursor.noted(self.visitor.tuple_variant(
                len,
                Wrap {
                    visitor,
                    cursor,
                    state: Members::tuple(len),
                },
            ))
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.expect_kind(variant::STRUCT, "a struct variant")?;
        let cursor = self.cursor;
        let sent = cursor.u32::<A::Error>()? as usize;
        if sent != fields.len() {
            return Err(cursor.fail(format_args!(
                "variant `{}`: expected {} fields, got {sent}",
                self.state.name,
                fields.len()
            )));
        }
        cursor.within(Step::Variant(self.state.name), || {
            cursor.noted(self.visitor.struct_variant(
                fields,
                Wrap {
                    visitor,
                    cursor,
                    state: Members::fields(fields),
                },
            ))
        })
    }
}

impl<A> Wrap<'_, '_, A, Variant> {
    fn expect_kind<E: de::Error>(&self, kind: u8, expected: &str) -> Result<(), E> {
        if self.state.kind == kind {
            return Ok(());
        }
        let got = match self.state.kind {
            variant::UNIT => "a unit variant",
            variant::NEWTYPE => "a newtype variant",
            variant::TUPLE => "a tuple variant",
            variant::STRUCT => "a struct variant",
            _ => "an unknown kind of variant",
        };
        Err(self.cursor.fail(format_args!(
            "variant `{}`: expected {expected}, got {got}",
            self.state.name
        )))
    }
}
