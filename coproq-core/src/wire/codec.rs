//! The one bincode configuration and the encode/decode helpers built on it.
//!
//! Fixed-width integers: they encode and decode faster than varints, and they make a
//! value read as the wrong type far more likely to fail (a `u64` read as a `u32` leaves
//! trailing bytes) instead of producing a plausible number.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::Serialize;
use serde::de::Deserialize;

/// The most bytes that one decode may claim for strings and byte buffers. A frame can
/// never carry more than `u32::MAX` bytes, so legitimate data never reaches it; it stops
/// a hostile length inside a frame from asking bincode for an unbounded allocation.
const CLAIM_LIMIT: usize = u32::MAX as usize;

type Config = Configuration<LittleEndian, Fixint, Limit<CLAIM_LIMIT>>;

const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<CLAIM_LIMIT>();

/// Appends the encoding of `value` to `buf`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, buf, CONFIG)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Decodes a `T` from the start of `bytes`, returning it and the bytes it used.
pub(crate) fn decode_prefix<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
) -> Result<(T, usize), String> {
    bincode::serde::borrow_decode_from_slice(bytes, CONFIG).map_err(|e| e.to_string())
}

/// Decodes a `T` that must use all of `bytes`: trailing bytes mean the sender's type was
/// not `T`.
pub(crate) fn decode_exact<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, String> {
    let (value, used) = decode_prefix(bytes)?;
    if used == bytes.len() {
        Ok(value)
    } else {
        Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        ))
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
        assert!(err.contains("trailing"), "{err}");
    }

    #[test]
    fn short_input_is_an_error() {
        let bytes = encode(&7u16);
        assert!(decode_exact::<u32>(&bytes).is_err());
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
