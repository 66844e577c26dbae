//! The short way for a value whose type asks for exactly what the sender wrote: one
//! deserializer that reads the bytes and walks the shape in the same step, with no
//! wrappers between them, no path kept and no leniency. It is what a batch of records
//! (`Vec<(u64, u64)>`, `Vec<Point>`) costs per element: a tag compared and a number
//! loaded for each field.
//!
//! Exactly means: each scalar has the tag of the type asked for, a tuple its arity, a
//! struct the receiver's field names in the receiver's order, an enum's variant the
//! receiver's name at the index sent, an option or a sequence the mode its bytes say.
//! Anything else (an integer of another width, fields by name, a self-describing
//! receiver, a visitor's own error, bytes that do not match) stops the walk, and the
//! checked path decodes the value from the start, or says what is wrong with its path, so
//! both paths accept and refuse alike. A value the short way takes is value for value
//! what the checked path gives (the tests compare them).
//!
//! Bad input costs no more here than there: every read is bounds-checked, a count claims
//! nothing that is not present (each element must use bytes, or the walk stops: elements
//! of no size are the checked path's, which caps them), and nesting deeper than the
//! checked path allows stops the walk.

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::cursor::Cursor;
use super::scalar::Elsewhere;
use super::{mode, name_bytes, tag, variant};
use crate::wire::read::Reader;

/// How deeply the short way follows nested values (the checked path allows 128).
const MAX_DEPTH: usize = 128;

/// `bytes` as a `T`, if `T` asks for exactly what `shape` says and the two use each
/// other up; `None` for the checked path to decode. Out of line, so that the short way
/// for one scalar (`scalar`), which runs first, stays small where it is inlined.
#[inline(never)]
pub(crate) fn decode<'de, T: Deserialize<'de>>(shape: &[u8], bytes: &'de [u8]) -> Option<T> {
    let mut walk = Walk {
        shape,
        at: 0,
        bytes: Reader::new(bytes),
        depth: 0,
        matched: [(usize::MAX, 0); MATCHED],
    };
    let value = T::deserialize(&mut walk).ok()?;
    (walk.at == shape.len() && walk.bytes.remaining() == 0).then_some(value)
}

type Result<T> = std::result::Result<T, Elsewhere>;

/// The shape and the bytes, each read from its position.
struct Walk<'s, 'de> {
    shape: &'s [u8],
    at: usize,
    /// The bytes, read as the checked path reads them.
    bytes: Reader<'de>,
    depth: usize,
    /// Struct layouts whose field names were found to be a receiver's: (where the
    /// members start in the shape, the receiver's field list), by start. A sequence of
    /// structs describes its element once, so its names are compared once.
    matched: [(usize, usize); MATCHED],
}

/// How many struct layouts a walk remembers (nesting alternates a few).
const MATCHED: usize = 8;

impl<'de> Walk<'_, 'de> {
    /// Takes the next shape byte, which must be `expected`.
    #[inline]
    fn expect(&mut self, expected: u8) -> Result<()> {
        match self.shape.get(self.at) {
            Some(&got) if got == expected => {
                self.at += 1;
                Ok(())
            }
            _ => Err(Elsewhere),
        }
    }

    #[inline]
    fn shape_byte(&mut self) -> Result<u8> {
        let byte = *self.shape.get(self.at).ok_or(Elsewhere)?;
        self.at += 1;
        Ok(byte)
    }

    #[inline]
    fn shape_u32(&mut self) -> Result<usize> {
        let bytes = self.shape.get(self.at..self.at + 4).ok_or(Elsewhere)?;
        self.at += 4;
        Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| Elsewhere)?) as usize)
    }

    /// Checks that the struct whose members start here (their count read, and equal to
    /// `fields.len()`) has exactly the receiver's `fields`, by name and in order.
    #[inline]
    fn expect_fields(&mut self, fields: &'static [&'static str]) -> Result<()> {
        let key = (self.at, fields.as_ptr() as usize);
        let slot = self.at % MATCHED;
        if self.matched[slot] == key {
            return Ok(());
        }
        self.compare_fields(fields, key, slot)
    }

    /// The first look at a struct layout: its names compared, and remembered if they
    /// match (out of line, which keeps the per-element path small enough to inline).
    #[inline(never)]
    fn compare_fields(
        &mut self,
        fields: &'static [&'static str],
        key: (usize, usize),
        slot: usize,
    ) -> Result<()> {
        let cursor = Cursor::new(self.shape);
        cursor.at.set(self.at);
        if !cursor.fields_match::<Elsewhere>(fields.len(), fields)? {
            return Err(Elsewhere);
        }
        self.matched[slot] = key;
        Ok(())
    }

    /// Moves past the next name in the shape, found to be the receiver's.
    #[inline]
    fn skip_name(&mut self) -> Result<()> {
        let len = usize::from(self.shape_byte()?);
        self.at += len;
        Ok(())
    }

    /// Takes the next name in the shape, which must be `expected` (a variant's).
    #[inline(never)]
    fn expect_name(&mut self, expected: &str) -> Result<()> {
        let expected = name_bytes(expected);
        let len = usize::from(self.shape_byte()?);
        let sent = self.shape.get(self.at..self.at + len).ok_or(Elsewhere)?;
        if sent != expected {
            return Err(Elsewhere);
        }
        self.at += len;
        Ok(())
    }

    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.bytes.next().ok_or(Elsewhere)
    }

    /// A `u64` length or count.
    #[inline]
    fn len(&mut self) -> Result<usize> {
        usize::try_from(u64::from_le_bytes(self.take()?)).map_err(|_| Elsewhere)
    }

    /// A length-prefixed run of bytes, borrowed.
    #[inline]
    fn run(&mut self) -> Result<&'de [u8]> {
        self.bytes.next_run().ok_or(Elsewhere)
    }

    /// Goes one level deeper (a walk that stops is dropped, so only the way back up
    /// after a success, `up`, undoes it).
    #[inline]
    fn down(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(Elsewhere);
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn up<T>(&mut self, value: T) -> T {
        self.depth -= 1;
        value
    }

    /// The elements of the sequence or map whose tag was just taken: how the shape
    /// describes them, checked against the count in the bytes.
    #[inline]
    fn elements(&mut self) -> Result<Elements> {
        let count = self.len()?;
        let same = match self.shape_byte()? {
            mode::EMPTY if count == 0 => None,
            mode::SAME if count > 0 => Some(self.at),
            mode::EACH if self.shape_u32()? == count => None,
            _ => return Err(Elsewhere),
        };
        Ok(Elements { same, left: count })
    }
}

/// The elements of a sequence (or entries of a map) still to read.
struct Elements {
    /// Where each element's shape starts, when one shape stands for all.
    same: Option<usize>,
    left: usize,
}

macro_rules! numbers {
    ($($method:ident => $visit:ident($ty:ty, $tag:ident);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.expect(tag::$tag)?;
            visitor.$visit(<$ty>::from_le_bytes(self.take()?))
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut Walk<'_, 'de> {
    type Error = Elsewhere;

    numbers! {
        deserialize_i8 => visit_i8(i8, I8);
        deserialize_i16 => visit_i16(i16, I16);
        deserialize_i32 => visit_i32(i32, I32);
        deserialize_i64 => visit_i64(i64, I64);
        deserialize_i128 => visit_i128(i128, I128);
        deserialize_u8 => visit_u8(u8, U8);
        deserialize_u16 => visit_u16(u16, U16);
        deserialize_u32 => visit_u32(u32, U32);
        deserialize_u64 => visit_u64(u64, U64);
        deserialize_u128 => visit_u128(u128, U128);
        deserialize_f32 => visit_f32(f32, F32);
        deserialize_f64 => visit_f64(f64, F64);
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Elsewhere)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Elsewhere)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Elsewhere)
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(tag::BOOL)?;
        match self.take::<1>()? {
            [0] => visitor.visit_bool(false),
            [1] => visitor.visit_bool(true),
            _ => Err(Elsewhere),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        // Rare, and its UTF-8 width is the checked path's to read.
        Err(Elsewhere)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(tag::STR)?;
        let text = std::str::from_utf8(self.run()?).map_err(|_| Elsewhere)?;
        visitor.visit_borrowed_str(text)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(tag::BYTES)?;
        visitor.visit_borrowed_bytes(self.run()?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match (self.shape_byte()?, self.take::<1>()?) {
            (tag::NONE, [0]) => visitor.visit_none(),
            (tag::SOME, [1]) => {
                self.down()?;
                let value = visitor.visit_some(&mut *self)?;
                Ok(self.up(value))
            }
            _ => Err(Elsewhere),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(tag::UNIT)?;
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        // Transparent, in the shape as in the bytes.
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(tag::SEQ)?;
        let elements = self.elements()?;
        self.down()?;
        let mut seq = Sequence {
            walk: self,
            elements,
            first: true,
        };
        let value = visitor.visit_seq(&mut seq)?;
        seq.finished()?;
        Ok(self.up(value))
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.expect(tag::TUPLE)?;
        if self.shape_u32()? != len {
            return Err(Elsewhere);
        }
        self.members(len, false, visitor)
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.expect(tag::MAP)?;
        let elements = self.elements()?;
        self.down()?;
        let mut map = Sequence {
            walk: self,
            elements,
            first: true,
        };
        let value = visitor.visit_map(&mut map)?;
        map.finished()?;
        Ok(self.up(value))
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.expect(tag::STRUCT)?;
        if self.shape_u32()? != fields.len() {
            return Err(Elsewhere);
        }
        self.expect_fields(fields)?;
        self.members(fields.len(), true, visitor)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.expect(tag::ENUM)?;
        let index = self.shape_u32()?;
        let ours = variants.get(index).ok_or(Elsewhere)?;
        self.expect_name(ours)?;
        let kind = self.shape_byte()?;
        if u32::from_le_bytes(self.take()?) as usize != index {
            return Err(Elsewhere);
        }
        self.down()?;
        let value = visitor.visit_enum(Enum {
            walk: &mut *self,
            index,
            kind,
        })?;
        Ok(self.up(value))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<'de> Walk<'_, 'de> {
    /// The `len` members of a tuple or struct (`named`: a struct's, their names found to
    /// be the receiver's), their count just read.
    #[inline]
    fn members<V: Visitor<'de>>(
        &mut self,
        len: usize,
        named: bool,
        visitor: V,
    ) -> Result<V::Value> {
        self.down()?;
        let mut members = Members {
            walk: &mut *self,
            named,
            next: 0,
            len,
        };
        let value = visitor.visit_seq(&mut members)?;
        if members.next != len {
            return Err(Elsewhere);
        }
        Ok(self.up(value))
    }
}

/// The members of a tuple or struct.
struct Members<'w, 's, 'de> {
    walk: &'w mut Walk<'s, 'de>,
    /// Whether each member has a name in the shape (checked already).
    named: bool,
    next: usize,
    len: usize,
}

impl<'de> SeqAccess<'de> for &mut Members<'_, '_, 'de> {
    type Error = Elsewhere;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.next == self.len {
            return Ok(None);
        }
        if self.named {
            self.walk.skip_name()?;
        }
        self.next += 1;
        seed.deserialize(&mut *self.walk).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len - self.next)
    }
}

/// The elements of a sequence, or the entries of a map.
struct Sequence<'w, 's, 'de> {
    walk: &'w mut Walk<'s, 'de>,
    elements: Elements,
    /// Whether the next element is the first.
    first: bool,
}

impl<'de> Sequence<'_, '_, 'de> {
    /// Reads the next element, or an entry's key, with `read`; `None` after the last.
    #[inline]
    fn next<T>(&mut self, read: impl FnOnce(&mut Walk<'_, 'de>) -> Result<T>) -> Result<Option<T>> {
        if self.elements.left == 0 {
            return Ok(None);
        }
        self.elements.left -= 1;
        if let Some(start) = self.elements.same {
            self.walk.at = start;
        }
        let before = self.walk.bytes.remaining();
        let value = read(self.walk)?;
        if self.first && self.elements.same.is_some() {
            // Elements of one shape all have a size, or none has: elements of no size
            // have nothing to bound their count but the count itself. (Elements of their
            // own shapes are bounded by the shape.)
            self.first = false;
            if self.walk.bytes.remaining() == before && self.elements.left > 0 {
                return Err(Elsewhere);
            }
        }
        Ok(Some(value))
    }

    /// Whether the receiver took every element (one that stopped early leaves the shape
    /// and the bytes out of step).
    #[inline]
    fn finished(&self) -> Result<()> {
        if self.elements.left == 0 {
            Ok(())
        } else {
            Err(Elsewhere)
        }
    }
}

impl<'de> SeqAccess<'de> for &mut Sequence<'_, '_, 'de> {
    type Error = Elsewhere;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        self.next(|walk| seed.deserialize(walk))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.elements.left)
    }
}

impl<'de> MapAccess<'de> for &mut Sequence<'_, '_, 'de> {
    type Error = Elsewhere;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        self.next(|walk| seed.deserialize(walk))
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.walk)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.elements.left)
    }
}

/// An enum's variant, its index and name found to be the receiver's.
struct Enum<'w, 's, 'de> {
    walk: &'w mut Walk<'s, 'de>,
    index: usize,
    kind: u8,
}

impl<'de> EnumAccess<'de> for Enum<'_, '_, 'de> {
    type Error = Elsewhere;
    type Variant = Self;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self)> {
        let index = u32::try_from(self.index).map_err(|_| Elsewhere)?;
        let value = seed.deserialize(IntoDeserializer::<Elsewhere>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> VariantAccess<'de> for Enum<'_, '_, 'de> {
    type Error = Elsewhere;

    #[inline]
    fn unit_variant(self) -> Result<()> {
        if self.kind == variant::UNIT {
            Ok(())
        } else {
            Err(Elsewhere)
        }
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        if self.kind != variant::NEWTYPE {
            return Err(Elsewhere);
        }
        seed.deserialize(self.walk)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        if self.kind != variant::TUPLE || self.walk.shape_u32()? != len {
            return Err(Elsewhere);
        }
        self.walk.members(len, false, visitor)
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if self.kind != variant::STRUCT || self.walk.shape_u32()? != fields.len() {
            return Err(Elsewhere);
        }
        self.walk.expect_fields(fields)?;
        self.walk.members(fields.len(), true, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::num::NonZeroU32;

    use serde::{Deserialize, Serialize};

    use super::decode;
    use crate::bytes::{ByteBuf, Bytes};
    use crate::wire::codec;
    use crate::wire::shape::record;

    /// The shape and bytes of `value`, as a frame carries them.
    fn shaped<T: Serialize + ?Sized>(value: &T) -> (Vec<u8>, Vec<u8>) {
        let mut shape = Vec::new();
        record(value, &mut shape).unwrap();
        let mut bytes = Vec::new();
        codec::encode_into(value, &mut bytes).unwrap();
        (shape, bytes)
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: u64,
        y: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Swapped {
        y: u64,
        x: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Wide {
        x: u64,
        y: u64,
        #[serde(default)]
        z: Option<u64>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Rect(u32, u32),
        Named { name: String, at: Point },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Reordered {
        Circle(f64),
        Dot,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Nested {
        name: String,
        tags: Vec<String>,
        points: Vec<Point>,
        shapes: Vec<Shape>,
        by_name: BTreeMap<String, Option<i16>>,
        bytes: ByteBuf,
        unit: (),
        newtype: Meters,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Meters(f32);

    /// Asserts that the short way takes `value` as `T` and gives what the checked path
    /// gives.
    fn same<S: Serialize, T: for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        value: &S,
    ) -> T {
        let (shape, bytes) = shaped(value);
        let short: T = decode(&shape, &bytes)
            .unwrap_or_else(|| panic!("the short way took no {}", std::any::type_name::<T>()));
        let checked: T = codec::decode_checked(&shape, &bytes).unwrap();
        assert_eq!(short, checked);
        short
    }

    /// Asserts that the short way leaves `value` as `T` to the checked path.
    fn elsewhere<S: Serialize, T: for<'de> Deserialize<'de>>(value: &S) {
        let (shape, bytes) = shaped(value);
        assert!(
            decode::<T>(&shape, &bytes).is_none(),
            "the short way took a {} as a {}",
            std::any::type_name::<S>(),
            std::any::type_name::<T>()
        );
    }

    fn nested() -> Nested {
        Nested {
            name: "héllo".into(),
            tags: vec!["a".into(), String::new(), "ccc".into()],
            points: (0..50).map(|i| Point { x: i, y: !i }).collect(),
            shapes: vec![
                Shape::Dot,
                Shape::Circle(1.5),
                Shape::Rect(2, 3),
                Shape::Named {
                    name: "n".into(),
                    at: Point { x: 1, y: 2 },
                },
            ],
            by_name: [("a".to_owned(), Some(-1)), ("b".to_owned(), None)].into(),
            bytes: ByteBuf(vec![1, 2, 3]),
            unit: (),
            newtype: Meters(2.5),
        }
    }

    #[test]
    fn what_the_sender_wrote_is_read_as_the_checked_path_reads_it() {
        let points: Vec<Point> = (0..1000).map(|i| Point { x: i, y: !i }).collect();
        assert_eq!(same::<_, Vec<Point>>(&points), points);
        let pairs: Vec<(u64, u64)> = (0..1000).map(|i| (i, !i)).collect();
        assert_eq!(same::<_, Vec<(u64, u64)>>(&pairs), pairs);
        assert_eq!(same::<_, Nested>(&nested()), nested());
        assert_eq!(same::<_, Vec<Nested>>(&vec![nested(); 3]).len(), 3);
        let options: Vec<Option<u8>> = (0..20).map(|i| (i % 3 == 0).then_some(i)).collect();
        assert_eq!(same::<_, Vec<Option<u8>>>(&options), options);
        same::<_, (bool, i8, i16, i32, i64, i128)>(&(true, -1i8, -2i16, -3i32, -4i64, -5i128));
        same::<_, (u8, u16, u32, u64, u128, f32, f64)>(&(1u8, 2u16, 3u32, 4u64, 5u128, 6f32, 7f64));
        same::<_, Vec<Vec<u32>>>(&vec![vec![], vec![1u32, 2], vec![3]]);
        same::<_, [u16; 3]>(&[1u16, 2, 3]);
        same::<_, Vec<String>>(&Vec::<String>::new());
        // Borrowed from the bytes.
        let (shape, bytes) = shaped(&("text", Bytes(b"raw")));
        let (text, raw): (&str, &[u8]) = decode(&shape, &bytes).unwrap();
        assert_eq!((text, raw), ("text", &b"raw"[..]));
    }

    #[test]
    fn anything_lenient_or_by_name_is_left_to_the_checked_path() {
        // Another integer width, an integer for a float, f32 for f64.
        elsewhere::<_, u32>(&(7u64,));
        elsewhere::<_, (u32,)>(&(7u64,));
        elsewhere::<_, (f64,)>(&(7u64,));
        elsewhere::<_, (f64,)>(&(1.5f32,));
        // Fields in another order, one more or one fewer, a map for a struct.
        elsewhere::<_, Swapped>(&Point { x: 1, y: 2 });
        elsewhere::<_, Wide>(&Point { x: 1, y: 2 });
        elsewhere::<_, Point>(&Wide {
            x: 1,
            y: 2,
            z: None,
        });
        elsewhere::<_, Point>(&BTreeMap::from([("x", 1u64), ("y", 2u64)]));
        // A variant numbered otherwise, a sequence for a tuple, a bare value for an option.
        elsewhere::<_, Reordered>(&Shape::Circle(1.0));
        elsewhere::<_, (u8, u8)>(&vec![1u8, 2]);
        elsewhere::<_, Option<u8>>(&5u8);
        // A sequence of bytes for a byte string, a char, a self-describing receiver.
        elsewhere::<_, ByteBuf>(&vec![1u8, 2]);
        elsewhere::<_, char>(&'x');
        elsewhere::<_, serde_json::Value>(&Point { x: 1, y: 2 });
        // A visitor's own error: the checked path says it, with its path.
        let (shape, bytes) = shaped(&vec![1u32, 0]);
        assert!(decode::<Vec<NonZeroU32>>(&shape, &bytes).is_none());
        let err = codec::decode_checked::<Vec<NonZeroU32>>(&shape, &bytes).unwrap_err();
        assert!(err.to_string().contains("element 1"), "{err}");
        // Each of these decodes through the checked path, as before.
        assert_eq!(
            codec::decode_checked::<Swapped>(
                &shaped(&Point { x: 1, y: 2 }).0,
                &shaped(&Point { x: 1, y: 2 }).1
            )
            .unwrap(),
            Swapped { y: 2, x: 1 }
        );
    }

    #[test]
    fn bytes_that_do_not_match_their_shape_are_left_to_the_checked_path() {
        let (shape, bytes) = shaped(&vec![Point { x: 1, y: 2 }; 4]);
        // Too few, too many, a count that claims more or fewer.
        assert!(decode::<Vec<Point>>(&shape, &bytes[..bytes.len() - 1]).is_none());
        assert!(decode::<Vec<Point>>(&shape, &[bytes.as_slice(), &[0]].concat()).is_none());
        for count in [0u64, 3, 5, 1 << 60, u64::MAX] {
            let mut hostile = bytes.clone();
            hostile[..8].copy_from_slice(&count.to_le_bytes());
            assert!(decode::<Vec<Point>>(&shape, &hostile).is_none(), "{count}");
            assert!(codec::decode_checked::<Vec<Point>>(&shape, &hostile).is_err());
        }
        // Option and bool bytes that are neither 0 nor 1.
        let (shape, mut bytes) = shaped(&Some(1u8));
        bytes[0] = 2;
        assert!(decode::<Option<u8>>(&shape, &bytes).is_none());
        let (shape, mut bytes) = shaped(&(true,));
        bytes[0] = 2;
        assert!(decode::<(bool,)>(&shape, &bytes).is_none());
        // A shape cut short, or with a byte too many.
        let (shape, bytes) = shaped(&Point { x: 1, y: 2 });
        for end in 0..shape.len() {
            assert!(decode::<Point>(&shape[..end], &bytes).is_none(), "{end}");
        }
        assert!(decode::<Point>(&[shape.as_slice(), &[0]].concat(), &bytes).is_none());
    }

    #[test]
    #[allow(
        clippy::zero_sized_map_values,
        reason = "the hostile case is such a map"
    )]
    fn elements_of_no_size_are_the_checked_paths_which_caps_them() {
        // Eight bytes that claim 2^40 elements of no size: not looped over here (a loop
        // would take many minutes; the deadline fails it instead).
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bytes = (1u64 << 40).to_le_bytes();
            let (shape, _) = shaped(&vec![(); 2]);
            let seq = decode::<Vec<()>>(&shape, &bytes).is_none();
            let (shape, _) = shaped(&BTreeMap::from([((), ())]));
            let map = decode::<std::collections::HashMap<(), ()>>(&shape, &bytes).is_none();
            let _ = done.send((seq, map));
        });
        let refused = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a claimed count of elements of no size was looped over");
        assert_eq!(refused, (true, true));
        // One element of no size is a value like any other.
        let (shape, bytes) = shaped(&vec![()]);
        assert_eq!(decode::<Vec<()>>(&shape, &bytes), Some(vec![()]));
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_left_to_the_checked_path() {
        /// Nested options, as deep as asked.
        fn deep(depth: usize) -> (Vec<u8>, Vec<u8>) {
            let shape = [
                vec![crate::wire::shape::tag::SOME; depth],
                vec![crate::wire::shape::tag::UNIT],
            ]
            .concat();
            (shape, vec![1; depth])
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code, reason = "only decoded")]
        struct Deep(Option<Box<Deep>>);
        let (shape, bytes) = deep(100);
        assert!(decode::<serde_json::Value>(&shape, &bytes).is_none());
        let (shape, bytes) = deep(100_000);
        assert!(decode::<Deep>(&shape, &bytes).is_none());
    }
}
