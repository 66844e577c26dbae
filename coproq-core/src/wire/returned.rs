//! What a handler's return value means on the wire.
//!
//! A handler may return any `T: Serialize`; a top-level `Result` is the seed's
//! `(err, result)` pair. Rust has no specialization, so the `Result` is recognised the way
//! serde presents it: a newtype variant of the enum named `Result`. Only the outermost
//! call of serialization is inspected (see `probe`), so this costs one call for
//! non-`Result` values.

use std::fmt::{self, Display};

use serde::Serialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::probe::{Probe, ProbeError, Visit};
use super::shape::{tag, variant};
use super::{WireError, codec};

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
    value.serialize(Probe(Classifier)).unwrap_or(Class::Plain)
}

/// Encodes the inside of a `Result` that [`classify`] recognised, with its shape.
pub(crate) fn encode_inner<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), WireError> {
    value
        .serialize(Probe(InnerEncoder { buf }))
        .map_err(|e| match e {
            ProbeError::NotMatched => WireError::Unserializable("not a `Result`".into()),
            e @ ProbeError::Failed(_) => WireError::Unserializable(e.to_string()),
        })
}

/// Whether `R` asks for a `Result`: serde's enum `Result` of `Ok` and `Err`, at the top.
pub(crate) fn asks_for_result<R: DeserializeOwned>() -> bool {
    matches!(R::deserialize(FirstAsk), Err(Asked { result: true }))
}

/// Decodes a reply as the `Ok` (`ok`) or `Err` variant of the `Result` that `R` is,
/// around the value sent with `shape` and `bytes`.
pub(crate) fn decode_variant<R: DeserializeOwned>(
    ok: bool,
    shape: &[u8],
    bytes: &[u8],
) -> Result<R, WireError> {
    let (index, name) = if ok { (0u32, "Ok") } else { (1u32, "Err") };
    let mut around = Vec::with_capacity(8 + name.len() + shape.len());
    around.push(tag::ENUM);
    around.extend_from_slice(&index.to_le_bytes());
    around.push(name.len() as u8);
    around.extend_from_slice(name.as_bytes());
    around.push(variant::NEWTYPE);
    around.extend_from_slice(shape);
    let mut value = Vec::with_capacity(4 + bytes.len());
    value.extend_from_slice(&index.to_le_bytes());
    value.extend_from_slice(bytes);
    codec::decode_checked(&around, &value)
}

/// A deserializer that records what the type asks for first, and gives it nothing.
struct FirstAsk;

/// What [`FirstAsk`] saw: whether it was asked for serde's `Result`.
#[derive(Debug)]
struct Asked {
    result: bool,
}

impl fmt::Display for Asked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("only the first request is looked at")
    }
}

impl std::error::Error for Asked {}

impl de::Error for Asked {
    fn custom<M: Display>(_: M) -> Self {
        Self { result: false }
    }
}

impl<'de> Deserializer<'de> for FirstAsk {
    type Error = Asked;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Asked> {
        Err(Asked { result: false })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Asked> {
        Err(Asked {
            result: name == "Result" && variants == ["Ok", "Err"],
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

/// The readable text of an error value: its string if it serializes as one (a `String`,
/// a `coproq::Error`), a unit variant's name, a number; otherwise its type.
fn error_text<T: Serialize + ?Sized>(value: &T) -> String {
    value.serialize(Probe(TextProbe)).unwrap_or_else(|_| {
        format!(
            "handler failed with a `{}` error",
            std::any::type_name::<T>()
        )
    })
}

/// Recognises `Ok(v)` / `Err(e)` at the top level.
struct Classifier;

impl Visit for Classifier {
    type Ok = Class;

    fn newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        variant: &'static str,
        value: &T,
    ) -> Result<Class, ProbeError> {
        match (name, variant) {
            ("Result", "Ok") => Ok(Class::Ok),
            ("Result", "Err") => Ok(Class::Err {
                text: error_text(value),
            }),
            _ => Err(ProbeError::NotMatched),
        }
    }
}

/// Encodes the value inside a top-level `Ok`/`Err`.
struct InnerEncoder<'a> {
    buf: &'a mut Vec<u8>,
}

impl Visit for InnerEncoder<'_> {
    type Ok = ();

    fn newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &'static str,
        value: &T,
    ) -> Result<(), ProbeError> {
        codec::encode_shaped(value, self.buf).map_err(|e| ProbeError::Failed(e.to_string()))
    }
}

/// Finds the text of a simple error value.
struct TextProbe;

impl Visit for TextProbe {
    type Ok = String;

    fn scalar(self, value: &dyn Display) -> Result<String, ProbeError> {
        Ok(value.to_string())
    }
    fn unit_variant(self, variant: &'static str) -> Result<String, ProbeError> {
        Ok(variant.to_owned())
    }
    fn newtype_struct<T: Serialize + ?Sized>(self, value: &T) -> Result<String, ProbeError> {
        value.serialize(Probe(self))
    }
    fn newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        variant: &'static str,
        value: &T,
    ) -> Result<String, ProbeError> {
        Ok(match value.serialize(Probe(TextProbe)) {
            Ok(text) => format!("{variant}: {text}"),
            Err(_) => variant.to_owned(),
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

    #[test]
    fn only_serdes_result_asks_for_a_result() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code, reason = "only asked about")]
        enum Result2 {
            Ok(u8),
            Err(u8),
        }
        assert!(asks_for_result::<Result<u8, String>>());
        assert!(asks_for_result::<Result<(), ()>>());
        assert!(!asks_for_result::<Option<Result<u8, String>>>());
        assert!(!asks_for_result::<Result2>());
        assert!(!asks_for_result::<u8>());
        assert!(!asks_for_result::<(Result<u8, u8>, u8)>());
    }

    #[test]
    fn a_value_is_read_as_either_variant_of_the_result_asked_for() {
        let mut shape = Vec::new();
        crate::wire::shape::record(&7u32, &mut shape).unwrap();
        let bytes = 7u32.to_le_bytes();
        assert_eq!(
            decode_variant::<Result<u32, String>>(true, &shape, &bytes).unwrap(),
            Ok(7)
        );
        assert_eq!(
            decode_variant::<Result<String, u64>>(false, &shape, &bytes).unwrap(),
            Err(7)
        );
        let err = decode_variant::<Result<String, u8>>(true, &shape, &bytes).unwrap_err();
        assert!(err.to_string().contains("`Ok`"), "{err}");
    }
}
