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

use super::access::{Elements, Members, Newtype, Variant, Wrap};
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
