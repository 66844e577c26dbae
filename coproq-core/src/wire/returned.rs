//! What a handler's return value means on the wire.
//!
//! A handler may return any `T: Serialize`; a top-level `Result` is the seed's
//! `(err, result)` pair. Rust has no specialization, so the `Result` is recognised the way
//! serde presents it: a newtype variant of the enum named `Result`. Only the outermost
//! call of serialization is inspected (see `probe`), so this costs one call for
//! non-`Result` values.

use std::fmt::Display;

use serde::Serialize;

use super::probe::{Probe, ProbeError, Visit};
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
}
