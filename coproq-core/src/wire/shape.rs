//! Shapes: a one-word summary of how a value is laid out (its serde data model type and,
//! for tuples and structs, its arity).
//!
//! bincode is not self-describing, so a `String` decoded as a `u32` could silently yield a
//! number. Every value on the wire therefore travels with the shape the sender serialized,
//! and the receiver compares it with the shape its own type deserializes before decoding.
//! Both sides find their shape by driving serde with a probe that stops at the first call,
//! so the cost is one call, not a walk of the value. Newtype structs are transparent.

use std::fmt;

use serde::de::{self, Deserialize, Visitor};
use serde::ser::{self, Impossible, Serialize};
use serde::{Deserializer, Serializer};

/// The serde data model kind of a value's outermost layer, plus an arity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Shape {
    kind: Kind,
    arity: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
enum Kind {
    /// Unknown: a type that inspects the data (`deserialize_any`) or a custom impl.
    Any,
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    Str,
    /// A sequence or a byte buffer: bincode lays both out as length + elements.
    Seq,
    Unit,
    Option,
    Tuple,
    Struct,
    Map,
    Enum,
}

/// Every kind, in declaration order: index = wire number.
const KINDS: [Kind; 23] = [
    Kind::Any,
    Kind::Bool,
    Kind::I8,
    Kind::I16,
    Kind::I32,
    Kind::I64,
    Kind::I128,
    Kind::U8,
    Kind::U16,
    Kind::U32,
    Kind::U64,
    Kind::U128,
    Kind::F32,
    Kind::F64,
    Kind::Char,
    Kind::Str,
    Kind::Seq,
    Kind::Unit,
    Kind::Option,
    Kind::Tuple,
    Kind::Struct,
    Kind::Map,
    Kind::Enum,
];

impl Shape {
    const ANY: Self = Self::of(Kind::Any);

    /// The shape as bincode lays it out: the kind's variant index, then the arity.
    pub(crate) fn to_wire(self) -> (u32, u32) {
        (self.kind as u32, self.arity)
    }

    /// The inverse of [`Shape::to_wire`]; `None` for an unknown kind.
    pub(crate) fn from_wire(kind: u32, arity: u32) -> Option<Self> {
        let kind = *KINDS.get(kind as usize)?;
        Some(Self { kind, arity })
    }

    const fn of(kind: Kind) -> Self {
        Self { kind, arity: 0 }
    }

    const fn with_arity(kind: Kind, arity: usize) -> Self {
        Self {
            kind,
            arity: arity as u32,
        }
    }

    /// The shape that serializing `value` produces.
    pub(crate) fn of_value<T: Serialize + ?Sized>(value: &T) -> Self {
        match value.serialize(ShapeSerializer) {
            Err(Found::Shape(shape)) => shape,
            Ok(()) | Err(Found::Other) => Self::ANY,
        }
    }

    /// The shape that deserializing a `T` expects.
    pub(crate) fn of_type<'de, T: Deserialize<'de>>() -> Self {
        match T::deserialize(ShapeDeserializer) {
            Err(Found::Shape(shape)) => shape,
            Ok(_) | Err(Found::Other) => Self::ANY,
        }
    }

    /// Whether a receiver expecting `self` can decode a value of shape `sent`.
    pub(crate) fn accepts(self, sent: Self) -> bool {
        self.kind == Kind::Any || sent.kind == Kind::Any || self == sent
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            Kind::Any => "a self-describing value",
            Kind::Bool => "bool",
            Kind::I8 => "i8",
            Kind::I16 => "i16",
            Kind::I32 => "i32",
            Kind::I64 => "i64",
            Kind::I128 => "i128",
            Kind::U8 => "u8",
            Kind::U16 => "u16",
            Kind::U32 => "u32",
            Kind::U64 => "u64",
            Kind::U128 => "u128",
            Kind::F32 => "f32",
            Kind::F64 => "f64",
            Kind::Char => "char",
            Kind::Str => "string",
            Kind::Seq => "sequence",
            Kind::Unit => "unit",
            Kind::Option => "option",
            Kind::Tuple => return write!(f, "tuple of {}", self.arity),
            Kind::Struct => return write!(f, "struct of {} fields", self.arity),
            Kind::Map => "map",
            Kind::Enum => "enum",
        };
        f.write_str(name)
    }
}

/// How a probe stops: with the shape it found, or with something it cannot classify.
#[derive(Debug)]
enum Found {
    Shape(Shape),
    Other,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shape probe")
    }
}

impl std::error::Error for Found {}

impl ser::Error for Found {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self::Other
    }
}

impl de::Error for Found {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self::Other
    }
}

fn found<T>(kind: Kind) -> Result<T, Found> {
    Err(Found::Shape(Shape::of(kind)))
}

fn found_n<T>(kind: Kind, arity: usize) -> Result<T, Found> {
    Err(Found::Shape(Shape::with_arity(kind, arity)))
}

struct ShapeSerializer;

macro_rules! probe_ser {
    ($($method:ident($ty:ty) => $kind:ident;)*) => {$(
        fn $method(self, _: $ty) -> Result<(), Found> { found(Kind::$kind) }
    )*};
}

impl Serializer for ShapeSerializer {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Impossible<(), Found>;
    type SerializeTuple = Impossible<(), Found>;
    type SerializeTupleStruct = Impossible<(), Found>;
    type SerializeTupleVariant = Impossible<(), Found>;
    type SerializeMap = Impossible<(), Found>;
    type SerializeStruct = Impossible<(), Found>;
    type SerializeStructVariant = Impossible<(), Found>;

    probe_ser! {
        serialize_bool(bool) => Bool;
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
        serialize_char(char) => Char;
        serialize_str(&str) => Str;
        serialize_bytes(&[u8]) => Seq;
        serialize_unit_struct(&'static str) => Unit;
    }

    fn serialize_none(self) -> Result<(), Found> {
        found(Kind::Option)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Found> {
        found(Kind::Option)
    }
    fn serialize_unit(self) -> Result<(), Found> {
        found(Kind::Unit)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Found> {
        found(Kind::Enum)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Found> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        found(Kind::Enum)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
        found(Kind::Seq)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Found> {
        found_n(Kind::Tuple, len)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, Found> {
        found_n(Kind::Tuple, len)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Found> {
        found(Kind::Enum)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
        found(Kind::Map)
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Self::SerializeStruct, Found> {
        found_n(Kind::Struct, len)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Found> {
        found(Kind::Enum)
    }
}

struct ShapeDeserializer;

macro_rules! probe_de {
    ($($method:ident => $kind:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> { found(Kind::$kind) }
    )*};
}

impl<'de> Deserializer<'de> for ShapeDeserializer {
    type Error = Found;

    probe_de! {
        deserialize_any => Any;
        deserialize_bool => Bool;
        deserialize_i8 => I8;
        deserialize_i16 => I16;
        deserialize_i32 => I32;
        deserialize_i64 => I64;
        deserialize_i128 => I128;
        deserialize_u8 => U8;
        deserialize_u16 => U16;
        deserialize_u32 => U32;
        deserialize_u64 => U64;
        deserialize_u128 => U128;
        deserialize_f32 => F32;
        deserialize_f64 => F64;
        deserialize_char => Char;
        deserialize_str => Str;
        deserialize_string => Str;
        deserialize_bytes => Seq;
        deserialize_byte_buf => Seq;
        deserialize_option => Option;
        deserialize_unit => Unit;
        deserialize_seq => Seq;
        deserialize_map => Map;
        deserialize_identifier => Any;
        deserialize_ignored_any => Any;
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Found> {
        found(Kind::Unit)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, _: V) -> Result<V::Value, Found> {
        found_n(Kind::Tuple, len)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        _: V,
    ) -> Result<V::Value, Found> {
        found_n(Kind::Tuple, len)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Found> {
        found_n(Kind::Struct, fields.len())
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Found> {
        found(Kind::Enum)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_are_declaration_order() {
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(*kind as usize, i);
            assert_eq!(
                Shape::from_wire(i as u32, 7).map(Shape::to_wire),
                Some((i as u32, 7))
            );
        }
        assert!(Shape::from_wire(KINDS.len() as u32, 0).is_none());
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Meters(f64);

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn sender_and_receiver_agree_on_common_types() {
        assert!(Shape::of_type::<String>().accepts(Shape::of_value("borrowed")));
        assert!(Shape::of_type::<(i32, i32)>().accepts(Shape::of_value(&(1, 2))));
        assert!(Shape::of_type::<u32>().accepts(Shape::of_value(&1234u32)));
        assert!(Shape::of_type::<Vec<u8>>().accepts(Shape::of_value(&[1u8, 2][..])));
        assert!(Shape::of_type::<Point>().accepts(Shape::of_value(&Point { x: 1, y: 2 })));
        assert!(Shape::of_type::<()>().accepts(Shape::of_value(&())));
        assert!(Shape::of_type::<Option<u8>>().accepts(Shape::of_value(&None::<u8>)));
    }

    #[test]
    fn newtypes_are_transparent() {
        assert!(Shape::of_type::<Meters>().accepts(Shape::of_value(&1.5f64)));
        assert!(Shape::of_type::<f64>().accepts(Shape::of_value(&Meters(1.5))));
    }

    #[test]
    fn mismatches_are_seen() {
        assert!(!Shape::of_type::<u32>().accepts(Shape::of_value("1234")));
        assert!(!Shape::of_type::<u32>().accepts(Shape::of_value(&1234i32)));
        assert!(!Shape::of_type::<(i32, i32)>().accepts(Shape::of_value(&(1, 2, 3))));
        assert!(!Shape::of_type::<String>().accepts(Shape::of_value(&())));
    }

    #[test]
    fn display_names_the_kind() {
        assert_eq!(Shape::of_value("x").to_string(), "string");
        assert_eq!(Shape::of_type::<(u8, u8)>().to_string(), "tuple of 2");
    }
}
