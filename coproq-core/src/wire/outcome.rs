//! What a handler's return value means on the wire.
//!
//! A handler may return any `T: Serialize`; a top-level `Result` is the seed's
//! `(err, result)` pair. Rust has no specialization, so the `Result` is recognised the way
//! serde presents it: a newtype variant of the enum named `Result`. Only the outermost
//! call of serialization is inspected, so this costs one call for non-`Result` values.

use std::fmt::{self, Display};

use serde::Serialize;
use serde::ser::{self, Impossible, Serializer};

use super::codec;

/// What a returned value is.
pub(crate) enum Class {
    /// Not a `Result`: the value itself is the reply.
    Plain,
    /// `Ok(v)`: `v` is the reply.
    Ok,
    /// `Err(e)`: `e` travels on the error channel, with its text.
    Err { text: String },
}

/// Classifies a returned value.
pub(crate) fn classify<T: Serialize + ?Sized>(value: &T) -> Class {
    value.serialize(Classifier).unwrap_or(Class::Plain)
}

/// Encodes the inside of a `Result` that [`classify`] recognised, with its shape.
pub(crate) fn encode_inner<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    match value.serialize(InnerEncoder { buf }) {
        Ok(()) => Ok(()),
        Err(EncodeFailed(e)) => Err(e),
    }
}

/// The readable text of an error value: its string if it serializes as one (a `String`,
/// a `coproq::Error`), a unit variant's name, a number; otherwise its type.
fn error_text<T: Serialize + ?Sized>(value: &T) -> String {
    match value.serialize(TextProbe) {
        Ok(text) => text,
        Err(Stop) => format!(
            "handler failed with a `{}` error",
            std::any::type_name::<T>()
        ),
    }
}

/// Stops a probe that met something it does not look into.
#[derive(Debug)]
struct Stop;

impl Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not inspected")
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: Display>(_: T) -> Self {
        Stop
    }
}

/// The `Serializer` methods that no probe here looks into: each fails with `$err`.
macro_rules! refuse_compound {
    ($err:expr) => {
        fn serialize_none(self) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_unit(self) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, Self::Error> {
            Err($err)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
            Err($err)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
            Err($err)
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Self::Error> {
            Err($err)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Self::Error> {
            Err($err)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
            Err($err)
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Self::Error> {
            Err($err)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Self::Error> {
            Err($err)
        }
    };
}

/// Scalar `Serializer` methods, each answering `$body` with the value bound to `$v`.
macro_rules! scalars {
    ($v:ident => $body:expr) => {
        scalars!(@ $v => $body; serialize_bool(bool), serialize_i8(i8), serialize_i16(i16),
            serialize_i32(i32), serialize_i64(i64), serialize_i128(i128), serialize_u8(u8),
            serialize_u16(u16), serialize_u32(u32), serialize_u64(u64), serialize_u128(u128),
            serialize_f32(f32), serialize_f64(f64), serialize_char(char), serialize_str(&str));
        fn serialize_bytes(self, _: &[u8]) -> Result<Self::Ok, Self::Error> { Err(Stop.into()) }
    };
    (@ $v:ident => $body:expr; $($method:ident($ty:ty)),*) => {$(
        #[allow(unused_variables)]
        fn $method(self, $v: $ty) -> Result<Self::Ok, Self::Error> { $body }
    )*};
}

macro_rules! compound_types {
    ($err:ty) => {
        type SerializeSeq = Impossible<Self::Ok, $err>;
        type SerializeTuple = Impossible<Self::Ok, $err>;
        type SerializeTupleStruct = Impossible<Self::Ok, $err>;
        type SerializeTupleVariant = Impossible<Self::Ok, $err>;
        type SerializeMap = Impossible<Self::Ok, $err>;
        type SerializeStruct = Impossible<Self::Ok, $err>;
        type SerializeStructVariant = Impossible<Self::Ok, $err>;
    };
}

/// Recognises `Ok(v)` / `Err(e)` at the top level.
struct Classifier;

impl Serializer for Classifier {
    type Ok = Class;
    type Error = Stop;
    compound_types!(Stop);
    refuse_compound!(Stop);
    scalars!(v => Err(Stop));

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Class, Stop> {
        Err(Stop)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Class, Stop> {
        Err(Stop)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Class, Stop> {
        match (name, variant) {
            ("Result", "Ok") => Ok(Class::Ok),
            ("Result", "Err") => Ok(Class::Err {
                text: error_text(value),
            }),
            _ => Err(Stop),
        }
    }
}

/// Encodes the value inside a top-level `Ok`/`Err`.
struct InnerEncoder<'a> {
    buf: &'a mut Vec<u8>,
}

#[derive(Debug)]
struct EncodeFailed(String);

impl Display for EncodeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeFailed {}

impl ser::Error for EncodeFailed {
    fn custom<T: Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl From<Stop> for EncodeFailed {
    fn from(_: Stop) -> Self {
        Self("not a `Result`".into())
    }
}

impl Serializer for InnerEncoder<'_> {
    type Ok = ();
    type Error = EncodeFailed;
    compound_types!(EncodeFailed);
    refuse_compound!(Stop.into());
    scalars!(v => Err(Stop.into()));

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), EncodeFailed> {
        Err(Stop.into())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), EncodeFailed> {
        Err(Stop.into())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), EncodeFailed> {
        codec::encode_shaped(value, self.buf).map_err(EncodeFailed)
    }
}

/// Finds the text of a simple error value.
struct TextProbe;

impl Serializer for TextProbe {
    type Ok = String;
    type Error = Stop;
    compound_types!(Stop);
    refuse_compound!(Stop);
    scalars!(v => Ok(v.to_string()));

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Stop> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Stop> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<String, Stop> {
        Ok(match value.serialize(TextProbe) {
            Ok(text) => format!("{variant}: {text}"),
            Err(Stop) => variant.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    enum AppError {
        NotFound,
        Io(String),
    }

    #[derive(serde::Serialize)]
    struct Opaque {
        code: u32,
    }

    fn err_text<E: Serialize>(e: E) -> String {
        match classify(&Err::<(), E>(e)) {
            Class::Err { text, .. } => text,
            _ => panic!("not classified as Err"),
        }
    }

    #[test]
    fn plain_values_are_plain() {
        assert!(matches!(classify(&5u32), Class::Plain));
        assert!(matches!(classify(&Some(5u32)), Class::Plain));
        assert!(matches!(classify(&Ok::<u8, String>(1)), Class::Ok));
    }

    #[test]
    fn error_texts() {
        assert_eq!(err_text(String::from("boom")), "boom");
        assert_eq!(err_text(AppError::NotFound), "NotFound");
        assert_eq!(err_text(AppError::Io("disk".into())), "Io: disk");
        assert_eq!(err_text(42u8), "42");
        assert!(err_text(Opaque { code: 1 }).contains("Opaque"));
    }

    #[test]
    fn inner_is_encoded_bare() {
        let mut buf = Vec::new();
        encode_inner(&Err::<u8, u32>(7), &mut buf).unwrap();
        assert_eq!(codec::decode_shaped::<u32>(&buf).unwrap(), 7);
    }
}
