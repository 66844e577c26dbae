//! The one bincode configuration and the encode/decode helpers built on it.
//!
//! Fixed-width integers: they encode and decode faster than varints, and they make a
//! value read as the wrong type far more likely to fail (a `u64` read as a `u32` leaves
//! trailing bytes) instead of producing a plausible number.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::error::DecodeError;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeSeed};

use super::WireError;
use super::read::Reader;
use super::shape::{Checked, Cursor};

/// The most bytes one decode may claim for the owned strings and byte buffers inside a
/// value (bincode allocates a claimed length before reading it). Legitimate claims never
/// exceed the input, so the limit is picked from the input's size: the smallest of
/// these tiers at least as large. A hostile length inside a small frame then allocates
/// at most 64 KiB, inside any frame at most 256 times what arrived.
const SMALL: usize = 64 << 10;
const MEDIUM: usize = 16 << 20;
const LARGE: usize = u32::MAX as usize;

type Config<const LIMIT: usize> = Configuration<LittleEndian, Fixint, Limit<LIMIT>>;

const fn config<const LIMIT: usize>() -> Config<LIMIT> {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<LIMIT>()
}

/// The configuration for encoding (limits play no part in it), which `encode` follows;
/// bincode's own encoder is kept for the tests that compare the two.
#[cfg(test)]
const CONFIG: Config<LARGE> = config::<LARGE>();

/// Appends the shape of `value` (see `shape`) and then its encoding: a `u64` length and
/// the shape's bytes, as bincode lays out a byte slice, then the value.
#[inline]
pub(crate) fn encode_shaped<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), WireError> {
    put_shape(buf, |buf| record_shape(value, buf))?;
    encode_value(value, buf)
}

/// Appends the shape of `value` alone (no length), as [`encode_shaped`] records it.
#[inline]
pub(crate) fn record_shape<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), WireError> {
    if super::number_vec::record_shape(value, buf) {
        return Ok(());
    }
    match super::byte_vec::as_bytes(value) {
        Some(bytes) => super::shape::record(&crate::bytes::Bytes(bytes), buf),
        None => super::shape::record(value, buf),
    }
}

/// Appends the encoding of `value`, as [`encode_shaped`] does after its shape.
#[inline]
pub(crate) fn encode_value<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), WireError> {
    if super::number_vec::encode_value(value, buf) {
        return Ok(());
    }
    match super::byte_vec::as_bytes(value) {
        // One copy as a byte string instead of a walk of its elements (same layout).
        Some(bytes) => encode_into(&crate::bytes::Bytes(bytes), buf),
        None => encode_into(value, buf),
    }
}

/// Decodes what [`encode_shaped`] wrote.
pub(crate) fn decode_shaped<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (len, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| WireError::Malformed("the value's shape is missing".into()))?;
    let len = usize::try_from(u64::from_le_bytes(*len)).unwrap_or(usize::MAX);
    if len > rest.len() {
        return Err(WireError::Malformed(
            "the value's shape is cut short".into(),
        ));
    }
    let (shape, value) = rest.split_at(len);
    decode_checked(shape, value)
}

/// Appends a shape written by `record`, preceded by its `u64` length.
pub(crate) fn put_shape(
    buf: &mut Vec<u8>,
    record: impl FnOnce(&mut Vec<u8>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let len_at = buf.len();
    buf.extend_from_slice(&[0; 8]);
    record(buf)?;
    let len = (buf.len() - len_at - 8) as u64;
    buf[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Appends the encoding of `value` to `buf`, in this configuration's layout (written by
/// `encode`, which also takes sequences and maps of unknown length).
#[inline]
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), WireError> {
    super::encode::encode(value, buf).map_err(WireError::Unserializable)
}

/// bincode's own encoding of `value` in this configuration, for the tests that hold
/// `encode` to it byte for byte.
#[cfg(test)]
pub(crate) fn bincode_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, CONFIG).expect("bincode encodes it")
}

/// Decodes a `T` from the start of `bytes`, returning it and the bytes it used.
pub(crate) fn decode_prefix<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<(T, usize), WireError> {
    decode_with(bytes, PhantomData).map_err(|e| WireError::Malformed(readable(&e)))
}

/// Decodes a `T` that must use all of `bytes`, checking it against the sender's `shape`
/// at every depth (see `shape`). Errors name the path to the first difference.
#[inline]
pub(crate) fn decode_checked<'de, T: Deserialize<'de>>(
    shape: &[u8],
    bytes: &'de [u8],
) -> Result<T, WireError> {
    if let Some(value) = super::shape::scalar::decode(shape, bytes) {
        return Ok(value);
    }
    if let Some(value) = super::number_vec::decode(shape, bytes) {
        return Ok(value);
    }
    if let Some(value) = super::shape::exact::decode(shape, bytes) {
        return Ok(value);
    }
    let cursor = Cursor::new(shape);
    let mut reader = Reader::new(bytes);
    let decoded = T::deserialize(Checked {
        inner: &mut reader,
        cursor: &cursor,
        fixed: None,
    });
    let failure = |message: String| {
        WireError::Mismatch(match cursor.failure_path() {
            Some(path) => format!("{path}: {message}"),
            None => message,
        })
    };
    let value = decoded.map_err(|e| failure(e.0))?;
    let used = bytes.len() - reader.remaining();
    if !cursor.finished() {
        return Err(failure("the value is shorter than its shape".into()));
    }
    if used != bytes.len() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Runs `seed` over `bytes` with the claim limit that fits their size.
fn decode_with<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
) -> Result<(S::Value, usize), DecodeError> {
    if bytes.len() <= SMALL {
        bincode::serde::seed_decode_from_slice(seed, bytes, config::<SMALL>())
    } else if bytes.len() <= MEDIUM {
        bincode::serde::seed_decode_from_slice(seed, bytes, config::<MEDIUM>())
    } else {
        bincode::serde::seed_decode_from_slice(seed, bytes, config::<LARGE>())
    }
}

/// bincode's error as a sentence (its `Display` is its `Debug`).
fn readable(e: &DecodeError) -> String {
    match e {
        DecodeError::OtherString(message) => message.clone(),
        DecodeError::UnexpectedEnd { additional } => {
            format!("the value ended {additional} bytes early")
        }
        DecodeError::LimitExceeded => "a length inside the value exceeds the bytes sent".into(),
        DecodeError::Utf8 { .. } => "a string is not valid UTF-8".into(),
        DecodeError::InvalidCharEncoding(_) => "a char is not valid UTF-8".into(),
        other => format!("{other:?}"),
    }
}

/// Decodes a `T` that must use all of `bytes`: trailing bytes mean the sender's type was
/// not `T`.
pub(crate) fn decode_exact<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, WireError> {
    let (value, used) = decode_prefix(bytes)?;
    if used == bytes.len() {
        Ok(value)
    } else {
        Err(WireError::Malformed(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(value, &mut buf).unwrap();
        buf
    }

    #[test]
    fn round_trip() {
        let value = (1u32, String::from("two"), vec![3u64, 4]);
        let bytes = encode(&value);
        assert_eq!(
            decode_exact::<(u32, String, Vec<u64>)>(&bytes).unwrap(),
            value
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let bytes = encode(&7u64);
        let err = decode_exact::<u32>(&bytes).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn short_input_is_an_error() {
        let bytes = encode(&7u16);
        assert!(decode_exact::<u32>(&bytes).is_err());
    }

    #[test]
    fn strings_and_bytes_round_trip() {
        let text = String::from("héllo");
        assert_eq!(decode_exact::<String>(&encode(&text)).unwrap(), text);
        let bytes = vec![0u8, 1, 2, 255];
        let decoded: crate::bytes::ByteBuf = decode_exact(&encode(&bytes)).unwrap();
        assert_eq!(decoded.into_vec(), bytes);
        assert_eq!(
            decode_exact::<Option<String>>(&encode(&Some(text.clone()))).unwrap(),
            Some(text)
        );
    }

    #[test]
    fn a_hostile_nested_length_is_refused_before_allocating() {
        // Found by cargo fuzz: a nested string claiming 1 GiB in a frame of a few bytes.
        let mut bytes = 1u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(1u64 << 30).to_le_bytes());
        bytes.extend_from_slice(b"abc");
        let err = decode_exact::<(u32, String)>(&bytes).unwrap_err();
        assert!(err.to_string().contains("exceeds the bytes sent"), "{err}");
        let err = decode_exact::<(u32, crate::bytes::ByteBuf)>(&bytes).unwrap_err();
        assert!(err.to_string().contains("exceeds the bytes sent"), "{err}");
    }

    #[test]
    fn hostile_length_does_not_allocate_it() {
        // A `String` that claims u32::MAX bytes but carries four.
        let mut bytes = (u64::from(u32::MAX) + 10).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abcd");
        assert!(decode_exact::<String>(&bytes).is_err());
        let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abcd");
        assert!(decode_exact::<Vec<u32>>(&bytes).is_err());
    }
}
