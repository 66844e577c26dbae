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

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

use super::access::{AnyVariant, ByName, Elements, Members, NamedEntries, Newtype, Variant, Wrap};
pub(crate) use super::cursor::Cursor;
use super::{name_bytes, tag, tag_name};

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
        deserialize_char(CHAR) => "char";
        // Strings are borrowed from the input and copied by the visitor: a claimed length
        // is checked against the bytes present before anything is allocated.
        deserialize_str(STR) => "string";
        deserialize_string(STR) => "string";
        deserialize_unit(UNIT) => "unit";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.float("f32", &[tag::F32], visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.float("f64", &[tag::F64, tag::F32], visitor)
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
        let start = self.cursor.at.get();
        let tag = self.tag()?;
        if !matches!(tag, tag::NONE | tag::SOME) {
            // Leniency: a bare value where an option is asked for is `Some` of it.
            if self.fixed.is_none() {
                self.cursor.at.set(start);
            }
            return visitor.visit_some(self);
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
        let start = self.cursor.at.get();
        let tag = self.tag()?;
        if tag == tag::SEQ && self.fixed.is_none() {
            // Leniency: a sequence of the tuple's length (a JSON array) where a tuple is
            // asked for.
            self.cursor.at.set(start);
            return self.deserialize_seq(TupleOfSeq { visitor, len });
        }
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
        let start = self.cursor.at.get();
        let tag = self.tag()?;
        if tag == tag::MAP {
            // Leniency: a map of field names (a JSON object) where a struct is asked for.
            let cursor = self.cursor;
            let entries = Elements::read(cursor, start)?;
            let end = entries.end;
            let value = cursor.noted(self.inner.deserialize_map(Wrap {
                visitor,
                cursor,
                state: NamedEntries::new(entries),
            }))?;
            cursor.at.set(end);
            return Ok(value);
        }
        if tag != tag::STRUCT {
            return Err(self.mismatch(format_args!("struct `{name}`"), tag));
        }
        let cursor = self.cursor;
        let count = cursor.u32::<D::Error>()? as usize;
        if cursor.fields_match::<D::Error>(count, fields)? {
            // The sender's fields are ours, in order: read them by position.
            return cursor.noted(self.inner.deserialize_struct(
                name,
                fields,
                Wrap {
                    visitor,
                    cursor,
                    state: Members::fields(fields),
                },
            ));
        }
        // Otherwise by name: the members bincode lays out in the sender's order are
        // handed to the receiver as a map of the sender's field names.
        self.by_name(name, count, visitor)
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
        // By name: the receiver may number its variants otherwise (one added, or moved).
        let same_index = variants
            .get(index as usize)
            .is_some_and(|ours| name_bytes(ours) == sent);
        let ours = if same_index {
            variants.get(index as usize).copied()
        } else {
            variants
                .iter()
                .copied()
                .find(|ours| name_bytes(ours) == sent)
        };
        let Some(ours) = ours else {
            return Err(cursor.fail(format_args!(
                "expected a variant of enum `{name}` ({}), got variant `{}`",
                variants.join(", "),
                String::from_utf8_lossy(sent)
            )));
        };
        let kind = cursor.byte::<D::Error>()?;
        let state = Variant {
            name: ours,
            kind,
            by_name: !same_index,
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
            tag::ENUM => self.enum_any(visitor),
            tag::STRUCT => {
                // A struct is a map of its field names.
                self.cursor.byte::<D::Error>()?;
                let count = self.cursor.u32::<D::Error>()? as usize;
                self.by_name("", count, visitor)
            }
            other => {
                if self.fixed.is_none() {
                    self.cursor.at.set(start + 1);
                }
                Err(self.mismatch("a self-describing value", other))
            }
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
    /// Reads the `count` members of a struct (the cursor at the first one's name) as a
    /// map of their names, for `visitor`.
    fn by_name<V: Visitor<'de>>(
        self,
        name: &'static str,
        count: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let cursor = self.cursor;
        cursor.noted(self.inner.deserialize_tuple(
            count,
            Wrap {
                visitor,
                cursor,
                state: ByName::new(name, count),
            },
        ))
    }

    /// Reads a float: one of `exact` as it is, or (leniency) an integer that the float
    /// type holds exactly.
    fn float<V: Visitor<'de>>(
        self,
        expected: &'static str,
        exact: &[u8],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let tag = self.tag()?;
        if exact.contains(&tag) {
            return self.cursor.noted(read_scalar(self.inner, tag, visitor));
        }
        if !is_integer(tag) {
            return Err(self.mismatch(expected, tag));
        }
        let visitor = ExactFloat {
            visitor,
            single: expected == "f32",
        };
        self.cursor.noted(read_scalar(self.inner, tag, visitor))
    }

    /// Reads an enum as a self-describing value (see `AnyVariant`).
    fn enum_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let cursor = self.cursor;
        cursor.byte::<D::Error>()?;
        cursor.u32::<D::Error>()?;
        let name = cursor.name::<D::Error>()?;
        let name = (cursor.at.get() - name.len(), name.len());
        let kind = cursor.byte::<D::Error>()?;
        cursor.noted(self.inner.deserialize_enum(
            "",
            &[],
            Wrap {
                visitor,
                cursor,
                state: AnyVariant { name, kind },
            },
        ))
    }

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

/// An integer handed to a float's visitor: exactly, or not at all.
struct ExactFloat<V> {
    visitor: V,
    /// `f32` rather than `f64`.
    single: bool,
}

impl<V> ExactFloat<V> {
    fn convert<E: de::Error>(&self, wide: i128) -> Result<f64, E> {
        // Every integer below 2^24 (f32) or 2^53 (f64) in magnitude is exact.
        let limit: i128 = if self.single { 1 << 24 } else { 1 << 53 };
        if wide.abs() > limit {
            let to = if self.single { "f32" } else { "f64" };
            return Err(E::custom(format_args!(
                "expected {to}, got the integer {wide}, which {to} does not hold exactly"
            )));
        }
        #[allow(clippy::cast_precision_loss, reason = "within 2^53: exact")]
        Ok(wide as f64)
    }
}

macro_rules! exact_floats {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            let wide = i128::try_from(v).map_err(|_| {
                E::custom(format_args!("expected a float, got the integer {v}, too large"))
            })?;
            let float = self.convert(wide)?;
            if self.single {
                self.visitor.visit_f32(float as f32)
            } else {
                self.visitor.visit_f64(float)
            }
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for ExactFloat<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    exact_floats! {
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
    }
}

/// A tuple's visitor given a sequence: exactly `len` elements, or an error.
struct TupleOfSeq<V> {
    visitor: V,
    len: usize,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for TupleOfSeq<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<V::Value, A::Error> {
        let len = self.len;
        let mut counted = Counted {
            seq: &mut seq,
            left: len,
        };
        let value = self.visitor.visit_seq(&mut counted)?;
        if counted.left > 0 || seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format_args!(
                "expected tuple of {len}, got a sequence of another length"
            )));
        }
        Ok(value)
    }
}

/// At most `left` more elements of `seq`.
struct Counted<'a, A> {
    seq: &'a mut A,
    left: usize,
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Counted<'_, A> {
    type Error = A::Error;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        if self.left == 0 {
            return Ok(None);
        }
        let element = self.seq.next_element_seed(seed)?;
        if element.is_some() {
            self.left -= 1;
        }
        Ok(element)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}
