//! The one bincode configuration and the encode/decode helpers built on it.
//!
//! Fixed-width integers: they encode and decode faster than varints, and they make a
//! value read as the wrong type far more likely to fail (a `u64` read as a `u32` leaves
//! trailing bytes) instead of producing a plausible number.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, Visitor};

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

/// The configuration for encoding (limits play no part in it).
const CONFIG: Config<LARGE> = config::<LARGE>();

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
    let decoded = if bytes.len() <= SMALL {
        bincode::serde::seed_decode_from_slice(TopSeed(PhantomData), bytes, config::<SMALL>())
    } else if bytes.len() <= MEDIUM {
        bincode::serde::seed_decode_from_slice(TopSeed(PhantomData), bytes, config::<MEDIUM>())
    } else {
        bincode::serde::seed_decode_from_slice(TopSeed(PhantomData), bytes, config::<LARGE>())
    };
    decoded.map_err(|e| e.to_string())
}

/// Deserializes a `T` through [`Top`].
struct TopSeed<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for TopSeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::deserialize(Top(deserializer))
    }
}

/// bincode's deserializer, except that an owned string or byte buffer at the top level is
/// read through the borrowing path: its length is checked against the bytes present
/// before anything is allocated (bincode's owned path allocates the claimed length
/// first), and nothing is zero-filled before being overwritten.
struct Top<D>(D);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Top<D> {
    type Error = D::Error;

    forward! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32();
        deserialize_i64(); deserialize_i128(); deserialize_u8(); deserialize_u16(); deserialize_u32();
        deserialize_u64(); deserialize_u128(); deserialize_f32(); deserialize_f64(); deserialize_char();
        deserialize_str(); deserialize_bytes(); deserialize_option(); deserialize_unit();
        deserialize_unit_struct(name: &'static str); deserialize_newtype_struct(name: &'static str);
        deserialize_seq(); deserialize_tuple(len: usize); deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map(); deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]); deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
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
    fn top_level_strings_and_bytes_round_trip_through_the_borrowing_path() {
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
        assert!(err.to_lowercase().contains("limit"), "{err}");
        let err = decode_exact::<(u32, crate::bytes::ByteBuf)>(&bytes).unwrap_err();
        assert!(err.to_lowercase().contains("limit"), "{err}");
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
