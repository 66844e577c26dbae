//! Vectors of one number type among generic values.
//!
//! serde walks a `Vec<u64>` element by element, the sender's shape recorder compares
//! each element's shape with the first, and the receiver's checking deserializer walks
//! the shape again for each element: about a hundred nanoseconds per number in all,
//! where the numbers themselves are a few bytes to copy. Their layout is simple: bincode
//! writes a `u64` count and each number's fixed-width little-endian bytes, and the shape
//! is a sequence whose elements all have that number's tag. So a vector or slice of one
//! number type is recognised by its type (see `typed_vec`, as in `byte_vec`) and its
//! shape and bytes written in one pass; on the receiving side a `Vec` of one number type
//! whose shape names exactly that type is read in one pass.
//!
//! The results are byte for byte and value for value what the general paths give (the
//! tests compare them). Anything else (an integer of another width, which the checked
//! path accepts when it fits; a shape of another kind; bytes of the wrong length) is
//! left to the checked path, which decodes it or says what is wrong, so both paths accept
//! and refuse alike. A claimed count must match the bytes present exactly, so nothing is
//! allocated beyond what arrived.

use super::shape::{mode, tag};
use super::typed_vec::{into_vec_of, is_vec_of, slice_of};

/// A number type with a fixed-width little-endian encoding and a shape tag of its own.
trait Number: Copy + 'static {
    const TAG: u8;
    const SIZE: usize;
    /// Writes the number into exactly `SIZE` bytes.
    fn write(self, out: &mut [u8]);
    /// Reads one number from exactly `SIZE` bytes.
    fn read(bytes: &[u8]) -> Self;
}

macro_rules! numbers {
    ($($ty:ty => $tag:ident),* $(,)?) => {$(
        impl Number for $ty {
            const TAG: u8 = tag::$tag;
            const SIZE: usize = std::mem::size_of::<$ty>();
            #[inline]
            fn write(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn read(bytes: &[u8]) -> Self {
                let mut le = [0; std::mem::size_of::<$ty>()];
                le.copy_from_slice(bytes);
                <$ty>::from_le_bytes(le)
            }
        }
    )*};
}

// `u8` is not here: a vector of bytes travels as a byte string (`byte_vec`).
numbers! {
    u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128,
    f32 => F32, f64 => F64,
}

/// Expands `$body!(N)` for each [`Number`] type `N` (the callers return from inside).
macro_rules! for_each_number {
    ($body:ident) => {
        $body!(u16);
        $body!(u32);
        $body!(u64);
        $body!(u128);
        $body!(i8);
        $body!(i16);
        $body!(i32);
        $body!(i64);
        $body!(i128);
        $body!(f32);
        $body!(f64);
    };
}

/// The shape the recorder gives a sequence of `len` numbers of type `N`.
#[inline]
fn put_shape<N: Number>(len: usize, out: &mut Vec<u8>) {
    if len == 0 {
        out.extend_from_slice(&[tag::SEQ, mode::EMPTY]);
    } else {
        out.extend_from_slice(&[tag::SEQ, mode::SAME, N::TAG]);
    }
}

/// Appends the shape of `value` and returns true, if it is a vector or slice of one
/// number type; otherwise appends nothing and returns false.
#[inline]
pub(crate) fn record_shape<T: ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    macro_rules! try_type {
        ($ty:ty) => {
            if let Some(numbers) = slice_of::<T, $ty>(value) {
                put_shape::<$ty>(numbers.len(), out);
                return true;
            }
        };
    }
    for_each_number!(try_type);
    false
}

/// Appends the bincode encoding of `value` and returns true, if it is a vector or slice
/// of one number type; otherwise appends nothing and returns false.
#[inline]
pub(crate) fn encode_value<T: ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    macro_rules! try_type {
        ($ty:ty) => {
            if let Some(numbers) = slice_of::<T, $ty>(value) {
                put_numbers(numbers, out);
                return true;
            }
        };
    }
    for_each_number!(try_type);
    false
}

#[inline]
fn put_numbers<N: Number>(numbers: &[N], out: &mut Vec<u8>) {
    out.extend_from_slice(&(numbers.len() as u64).to_le_bytes());
    let start = out.len();
    // Sized first, then filled in place: a loop the compiler turns into plain copies.
    out.resize(start + numbers.len() * N::SIZE, 0);
    for (slot, &number) in out[start..].chunks_exact_mut(N::SIZE).zip(numbers) {
        number.write(slot);
    }
}

/// `bytes` as a `T`, if `T` is a `Vec` of one number type, `shape` is a sequence of
/// exactly that type (or an empty one) and `bytes` holds exactly its count and numbers;
/// `None` for the checked path to decode.
#[inline]
pub(crate) fn decode<T>(shape: &[u8], bytes: &[u8]) -> Option<T> {
    macro_rules! try_type {
        ($ty:ty) => {
            if is_vec_of::<T, $ty>() {
                return read_numbers::<$ty>(shape, bytes).and_then(into_vec_of::<T, $ty>);
            }
        };
    }
    for_each_number!(try_type);
    None
}

/// The numbers `shape` and `bytes` describe, if they are a sequence of `N` exactly.
fn read_numbers<N: Number>(shape: &[u8], bytes: &[u8]) -> Option<Vec<N>> {
    let (count, rest) = bytes.split_first_chunk::<8>()?;
    let count = usize::try_from(u64::from_le_bytes(*count)).ok()?;
    let described = match *shape {
        [tag::SEQ, mode::EMPTY] => count == 0,
        // The checked path reads no elements against a shape that has one, too.
        [tag::SEQ, mode::SAME, element] => element == N::TAG,
        _ => false,
    };
    // The count is checked against the bytes present before anything is allocated.
    if !described || count.checked_mul(N::SIZE) != Some(rest.len()) {
        return None;
    }
    Some(rest.chunks_exact(N::SIZE).map(N::read).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{codec, shape};

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// The shape and bytes of `value` as the general path writes them.
    fn general<T: Serialize + ?Sized>(value: &T) -> (Vec<u8>, Vec<u8>) {
        let mut shape = Vec::new();
        shape::record(value, &mut shape).unwrap();
        let mut bytes = Vec::new();
        codec::encode_into(value, &mut bytes).unwrap();
        (shape, bytes)
    }

    /// The shape and bytes of `value` as the short way writes them.
    fn short<T: ?Sized>(value: &T) -> (Vec<u8>, Vec<u8>) {
        let (mut shape, mut bytes) = (Vec::new(), Vec::new());
        assert!(record_shape(value, &mut shape));
        assert!(encode_value(value, &mut bytes));
        (shape, bytes)
    }

    /// Checks that `value` is written as the general path writes it, in each of the
    /// forms a sender may hold it in, and read back as the checked path reads it.
    fn round_trip<N: Number + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
        value: &[N],
    ) {
        let value = value.to_vec();
        let expected = general(&value);
        assert_eq!(short(&value), expected);
        assert_eq!(short(&value.as_slice()), expected);
        assert_eq!(short(&&value), expected);
        assert_eq!(short(&value.clone().into_boxed_slice()), expected);
        let (shape, bytes) = expected;
        let fast: Vec<N> = decode(&shape, &bytes).expect("the short way reads it");
        let checked: Vec<N> = codec::decode_checked(&shape, &bytes).unwrap();
        assert_eq!(fast, value);
        assert_eq!(checked, value);
    }

    #[test]
    fn every_number_type_matches_the_general_path_both_ways() {
        round_trip(&[1u16, u16::MAX]);
        round_trip(&[1u32, u32::MAX]);
        let spread: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        round_trip(&spread);
        round_trip(&[u128::MAX, 1]);
        round_trip(&[i8::MIN, -1, i8::MAX]);
        round_trip(&[i16::MIN, -1]);
        round_trip(&[i32::MIN, -1]);
        round_trip(&[i64::MIN, -1, i64::MAX]);
        round_trip(&[i128::MIN, -1]);
        round_trip(&[1.5f32, -0.0, f32::INFINITY]);
        round_trip(&[-2.25f64, f64::MAX, f64::MIN_POSITIVE]);
        round_trip::<u64>(&[]);
        round_trip::<f32>(&[]);
    }

    #[test]
    fn other_types_are_left_to_the_general_path() {
        let mut out = Vec::new();
        assert!(!record_shape(&vec![1u8], &mut out));
        assert!(!encode_value(&vec![true], &mut out));
        assert!(!record_shape(&vec![(1u64, 2u64)], &mut out));
        assert!(!encode_value(&vec![vec![1u64]], &mut out));
        assert!(!record_shape(&[1u64, 2], &mut out));
        assert!(!encode_value(&1u64, &mut out));
        assert!(out.is_empty());
        let (shape, bytes) = general(&vec![1u64, 2]);
        assert!(decode::<Vec<(u64,)>>(&shape, &bytes).is_none());
        assert!(decode::<std::collections::VecDeque<u64>>(&shape, &bytes).is_none());
        assert!(decode::<Box<[u64]>>(&shape, &bytes).is_none());
    }

    #[test]
    fn anything_but_an_exact_match_is_left_to_the_checked_path() {
        let (shape, bytes) = general(&vec![7u32, 8]);
        // Another width: the checked path accepts integers that fit.
        assert!(decode::<Vec<u64>>(&shape, &bytes).is_none());
        assert_eq!(
            codec::decode_checked::<Vec<u64>>(&shape, &bytes).unwrap(),
            [7, 8]
        );
        assert!(decode::<Vec<i32>>(&shape, &bytes).is_none());
        // An `f32` read as an `f64`, likewise.
        let (shape, bytes) = general(&vec![1.5f32]);
        assert!(decode::<Vec<f64>>(&shape, &bytes).is_none());
        assert_eq!(
            codec::decode_checked::<Vec<f64>>(&shape, &bytes).unwrap(),
            [1.5]
        );
        // Bytes too few, too many, or a count that claims more than arrived.
        let (shape, bytes) = general(&vec![1u64, 2]);
        let refused = |shape: &[u8], bytes: &[u8]| {
            decode::<Vec<u64>>(shape, bytes).is_none()
                && codec::decode_checked::<Vec<u64>>(shape, bytes).is_err()
        };
        assert!(refused(&shape, &bytes[..bytes.len() - 1]));
        assert!(refused(&shape, &[bytes.as_slice(), &[0]].concat()));
        let mut hostile = bytes.clone();
        hostile[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(refused(&shape, &hostile));
        hostile[..8].copy_from_slice(&(u64::MAX / 8 + 1).to_le_bytes());
        assert!(refused(&shape, &hostile));
        // An empty shape with elements, and shapes of other kinds.
        assert!(refused(&[tag::SEQ, mode::EMPTY], &bytes));
        let (strings, string_bytes) = general(&vec!["a".to_owned()]);
        assert!(refused(&strings, &string_bytes));
        assert!(refused(&[], &bytes));
        // No elements against a shape that has one: both paths read an empty vector.
        let none = 0u64.to_le_bytes();
        assert_eq!(decode::<Vec<u64>>(&shape, &none), Some(vec![]));
        assert_eq!(
            codec::decode_checked::<Vec<u64>>(&shape, &none).unwrap(),
            Vec::<u64>::new()
        );
    }
}
