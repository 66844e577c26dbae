//! The short way for a value that is one scalar (a number, a bool, unit), as most small
//! calls and events carry: its shape is a single tag, and a type that asks for exactly
//! that scalar reads it straight from its bytes, without walking the shape through the
//! checking deserializer. Anything else (another type, the leniency between integer
//! types, a byte that is no bool, bytes of the wrong length) is left to the checked path,
//! which decodes it or says what is wrong, so both paths accept and refuse alike.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::tag;

/// `bytes` as a `T`, if `shape` is one scalar and `T` asks for exactly that scalar, laid
/// out in exactly `bytes`; `None` for the checked path to decode.
pub(crate) fn decode<'de, T: Deserialize<'de>>(shape: &[u8], bytes: &'de [u8]) -> Option<T> {
    let &[tag] = shape else {
        return None;
    };
    T::deserialize(Scalar { tag, bytes }).ok()
}

/// One scalar value: its tag and its bytes.
struct Scalar<'de> {
    tag: u8,
    bytes: &'de [u8],
}

/// Not a value for the short way: the checked path takes it.
#[derive(Debug)]
pub(super) struct Elsewhere;

impl fmt::Display for Elsewhere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a plain scalar")
    }
}

impl std::error::Error for Elsewhere {}

impl de::Error for Elsewhere {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Self
    }
}

impl Scalar<'_> {
    /// The value's bytes, if its tag is `tag` and they are exactly `N`.
    fn take<const N: usize>(&self, tag: u8) -> Result<[u8; N], Elsewhere> {
        if self.tag != tag {
            return Err(Elsewhere);
        }
        self.bytes.try_into().map_err(|_| Elsewhere)
    }
}

/// `deserialize_<number>` methods that read one little-endian number of their own tag.
macro_rules! numbers {
    ($($method:ident => $visit:ident($ty:ty, $tag:ident);)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Elsewhere> {
            visitor.$visit(<$ty>::from_le_bytes(self.take(tag::$tag)?))
        }
    )*};
}

impl<'de> Deserializer<'de> for Scalar<'de> {
    type Error = Elsewhere;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Elsewhere> {
        Err(Elsewhere)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Elsewhere> {
        match self.take::<1>(tag::BOOL)? {
            [0] => visitor.visit_bool(false),
            [1] => visitor.visit_bool(true),
            _ => Err(Elsewhere),
        }
    }

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

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Elsewhere> {
        let [] = self.take::<0>(tag::UNIT)?;
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf option unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;

    /// The shape and bytes of `value`, as a frame carries them.
    fn shaped<T: serde::Serialize>(value: &T) -> (Vec<u8>, Vec<u8>) {
        let mut shape = Vec::new();
        super::super::record(value, &mut shape).unwrap();
        let mut bytes = Vec::new();
        codec::encode_into(value, &mut bytes).unwrap();
        (shape, bytes)
    }

    #[test]
    // A float must come back exactly as it was sent, bit for bit.
    #[allow(clippy::float_cmp)]
    fn every_scalar_is_read_as_the_checked_path_reads_it() {
        macro_rules! same {
            ($($value:expr => $ty:ty),* $(,)?) => {$({
                let (shape, bytes) = shaped(&$value);
                let short: $ty = decode(&shape, &bytes).expect(stringify!($ty));
                let checked: $ty = codec::decode_checked(&shape, &bytes).unwrap();
                assert_eq!(short, checked);
                assert_eq!(short, $value);
            })*};
        }
        same! {
            true => bool, false => bool,
            -5i8 => i8, -500i16 => i16, -70_000i32 => i32, i64::MIN => i64,
            i128::MIN => i128, 7u8 => u8, 700u16 => u16, 70_000u32 => u32,
            u64::MAX => u64, u128::MAX => u128, 1.5f32 => f32, -2.25f64 => f64, () => (),
        }
    }

    #[test]
    fn anything_else_is_left_to_the_checked_path() {
        let (shape, bytes) = shaped(&7u64);
        // Another scalar, though the checked path accepts it (an integer that fits).
        assert!(decode::<u32>(&shape, &bytes).is_none());
        assert_eq!(codec::decode_checked::<u32>(&shape, &bytes).unwrap(), 7);
        // Another kind of value altogether, and a newtype around the right one.
        assert!(decode::<String>(&shape, &bytes).is_none());
        assert!(decode::<(u64,)>(&shape, &bytes).is_none());
        assert!(decode::<Option<u64>>(&shape, &bytes).is_none());
        // Bytes too few or too many, and a byte that is no bool.
        assert!(decode::<u64>(&shape, &bytes[..7]).is_none());
        assert!(decode::<u64>(&shape, &[bytes.as_slice(), &[0]].concat()).is_none());
        assert!(decode::<bool>(&[tag::BOOL], &[2]).is_none());
        assert!(codec::decode_checked::<bool>(&[tag::BOOL], &[2]).is_err());
        // A shape of more than one node.
        let (shape, bytes) = shaped(&(1u8, 2u8));
        assert!(decode::<(u8, u8)>(&shape, &bytes).is_none());
        assert!(decode::<u64>(&[], &[]).is_none());
    }
}
