//! Probes: serializers that look at the outermost call of a value's serialization and
//! stop there (is it a `Result`? one byte string? a plain text?).
//!
//! [`Probe`] is the one `Serializer` they share: it refuses everything, except the few
//! calls that a [`Visit`] implementation overrides. [`ProbeError`] is their error, and that
//! of the one deserializer probe (`direct::Owned`).

use std::fmt::{self, Display};

use serde::Serialize;
use serde::ser::{self, Impossible, Serializer};

/// Why a probe stopped.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// The value is not what the probe looks for.
    NotMatched,
    /// What the probe did with the value failed (its inner serialization).
    Failed(String),
}

impl Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMatched => f.write_str("not the kind of value looked for"),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for ProbeError {}

impl ser::Error for ProbeError {
    fn custom<T: Display>(msg: T) -> Self {
        Self::Failed(msg.to_string())
    }
}

impl serde::de::Error for ProbeError {
    fn custom<T: Display>(msg: T) -> Self {
        Self::Failed(msg.to_string())
    }
}

/// What a probe does with the outermost call; every call not overridden stops it.
pub(crate) trait Visit: Sized {
    /// What the probe finds.
    type Ok;

    /// A number, `bool`, `char` or string.
    fn scalar(self, _value: &dyn Display) -> Result<Self::Ok, ProbeError> {
        Err(ProbeError::NotMatched)
    }

    /// A byte string.
    fn bytes(self, _bytes: &[u8]) -> Result<Self::Ok, ProbeError> {
        Err(ProbeError::NotMatched)
    }

    /// A unit variant of an enum.
    fn unit_variant(self, _variant: &'static str) -> Result<Self::Ok, ProbeError> {
        Err(ProbeError::NotMatched)
    }

    /// A newtype struct around `value`.
    fn newtype_struct<T: Serialize + ?Sized>(self, _value: &T) -> Result<Self::Ok, ProbeError> {
        Err(ProbeError::NotMatched)
    }

    /// A newtype variant `variant` of enum `name` around `value`.
    fn newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Self::Ok, ProbeError> {
        Err(ProbeError::NotMatched)
    }
}

/// The serializer of a [`Visit`].
pub(crate) struct Probe<V>(pub(crate) V);

macro_rules! scalars {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method(self, value: $ty) -> Result<V::Ok, ProbeError> {
            self.0.scalar(&value)
        }
    )*};
}

macro_rules! refused {
    ($($method:ident($($ty:ty),*) -> $out:ty;)*) => {$(
        fn $method(self, $(_: $ty),*) -> Result<$out, ProbeError> {
            Err(ProbeError::NotMatched)
        }
    )*};
}

impl<V: Visit> Serializer for Probe<V> {
    type Ok = V::Ok;
    type Error = ProbeError;
    type SerializeSeq = Impossible<V::Ok, ProbeError>;
    type SerializeTuple = Impossible<V::Ok, ProbeError>;
    type SerializeTupleStruct = Impossible<V::Ok, ProbeError>;
    type SerializeTupleVariant = Impossible<V::Ok, ProbeError>;
    type SerializeMap = Impossible<V::Ok, ProbeError>;
    type SerializeStruct = Impossible<V::Ok, ProbeError>;
    type SerializeStructVariant = Impossible<V::Ok, ProbeError>;

    scalars! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_i128(i128); serialize_u8(u8); serialize_u16(u16);
        serialize_u32(u32); serialize_u64(u64); serialize_u128(u128); serialize_f32(f32);
        serialize_f64(f64); serialize_char(char); serialize_str(&str);
    }

    refused! {
        serialize_none() -> V::Ok;
        serialize_unit() -> V::Ok;
        serialize_unit_struct(&'static str) -> V::Ok;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    fn serialize_bytes(self, bytes: &[u8]) -> Result<V::Ok, ProbeError> {
        self.0.bytes(bytes)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<V::Ok, ProbeError> {
        Err(ProbeError::NotMatched)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<V::Ok, ProbeError> {
        self.0.unit_variant(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<V::Ok, ProbeError> {
        self.0.newtype_struct(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<V::Ok, ProbeError> {
        self.0.newtype_variant(name, variant, value)
    }
}
