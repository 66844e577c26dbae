//! Large byte payloads without copies: sent straight from the caller's memory, and
//! received into the very buffer they were read into.
//!
//! A value that serializes as one byte string of at least [`DIRECT_MIN`] bytes (a
//! `serde_bytes` buffer, the byte arguments of typed services) is written as the frame's
//! head followed by the caller's own bytes, lent from inside `serialize_bytes` while the
//! slice is borrowed. On the way in, a body that is exactly one such byte string is handed to
//! a `visit_byte_buf` visitor as the frame's buffer, shifted in place, instead of copied
//! into a new allocation.

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, Visitor};

use super::probe::{Probe, ProbeError, Visit};

/// Payloads smaller than this are copied: a copy is cheaper than a second write.
pub(crate) const DIRECT_MIN: usize = 256 * 1024;

/// The length of `value` if it serializes as one byte string of at least `DIRECT_MIN`.
///
/// `descriptors` says whether the link passes descriptors: a value that travels as a
/// descriptor there (`SharedBytes`) is not bytes then.
pub(crate) fn large_bytes<T: Serialize + ?Sized>(value: &T, descriptors: bool) -> Option<usize> {
    let len = match super::byte_vec::as_bytes(value) {
        Some(bytes) => Some(bytes.len()),
        None => super::descriptors::probing(descriptors, || value.serialize(Probe(Length)).ok()),
    };
    len.filter(|&len| len >= DIRECT_MIN)
}

/// Runs `f` with `value`'s bytes while they are borrowed, if `value` serializes as one
/// byte string; `None` (without calling `f`) if it did not this time.
pub(crate) fn with_bytes<T: Serialize + ?Sized, R>(
    value: &T,
    descriptors: bool,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    let lend = Lend(f);
    match super::byte_vec::as_bytes(value) {
        Some(bytes) => lend.bytes(bytes).ok(),
        None => super::descriptors::probing(descriptors, || value.serialize(Probe(lend)).ok()),
    }
}

/// Finds the length of a top-level byte string.
struct Length;

impl Visit for Length {
    type Ok = usize;

    fn bytes(self, bytes: &[u8]) -> Result<usize, ProbeError> {
        Ok(bytes.len())
    }
    fn newtype_struct<T: Serialize + ?Sized>(self, value: &T) -> Result<usize, ProbeError> {
        value.serialize(Probe(self))
    }
}

/// Lends a top-level byte string to a function, while it is borrowed.
struct Lend<F>(F);

impl<R, F: FnOnce(&[u8]) -> R> Visit for Lend<F> {
    type Ok = R;

    fn bytes(self, bytes: &[u8]) -> Result<R, ProbeError> {
        Ok((self.0)(bytes))
    }
    fn newtype_struct<T: Serialize + ?Sized>(self, value: &T) -> Result<R, ProbeError> {
        value.serialize(Probe(self))
    }
}

/// Decodes a `T` from `frame[at..]`, which holds one byte string (its `u64` length, then
/// its bytes), by handing `T` the frame itself if `T` takes an owned byte buffer. `None`
/// if `T` wants something else: then `frame` is untouched.
pub(crate) fn decode_owned<'de, T: Deserialize<'de>>(
    frame: &mut Option<Vec<u8>>,
    at: usize,
) -> Option<T> {
    T::deserialize(Owned { frame, at }).ok()
}

struct Owned<'a> {
    frame: &'a mut Option<Vec<u8>>,
    at: usize,
}

macro_rules! not_owned {
    ($($method:ident($($arg:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $(_: $arg,)* _: V) -> Result<V::Value, ProbeError> { Err(ProbeError::NotMatched) }
    )*};
}

impl<'de> Deserializer<'de> for Owned<'_> {
    type Error = ProbeError;

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        let mut buf = self.frame.take().ok_or(ProbeError::NotMatched)?;
        // The bytes move to the front of their own buffer: no allocation, no page faults.
        buf.drain(..self.at);
        visitor.visit_byte_buf(buf)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    not_owned! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32();
        deserialize_i64(); deserialize_u8(); deserialize_u16(); deserialize_u32(); deserialize_u64();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str(); deserialize_string();
        deserialize_option(); deserialize_unit(); deserialize_unit_struct(&'static str); deserialize_seq();
        deserialize_tuple(usize); deserialize_tuple_struct(&'static str, usize); deserialize_map();
        deserialize_struct(&'static str, &'static [&'static str]);
        deserialize_enum(&'static str, &'static [&'static str]); deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{ByteBuf, Bytes};

    #[test]
    fn only_large_byte_strings_go_direct() {
        let big = vec![1u8; DIRECT_MIN];
        assert_eq!(large_bytes(&Bytes(&big), false), Some(DIRECT_MIN));
        assert_eq!(large_bytes(&Bytes(&big[1..]), false), None);
        assert_eq!(
            large_bytes(&big, false),
            Some(DIRECT_MIN),
            "a Vec<u8> is recognised by its type"
        );
        assert_eq!(large_bytes(&vec![1u16; DIRECT_MIN], false), None);
        assert_eq!(large_bytes(&(1u32, 2u32), false), None);
    }

    #[test]
    fn byte_strings_are_lent_and_other_values_are_not() {
        assert_eq!(
            with_bytes(&Bytes(b"tail"), false, <[u8]>::to_vec),
            Some(b"tail".to_vec())
        );
        assert_eq!(with_bytes(&b"vec".to_vec(), false, <[u8]>::len), Some(3));
        assert_eq!(
            with_bytes(&5u32, false, |_| panic!("not bytes")),
            None::<()>
        );
    }

    #[test]
    fn owned_decoding_takes_the_buffer_or_leaves_it() {
        let mut frame = Some(b"xxxxpayload".to_vec());
        let buf: ByteBuf = decode_owned(&mut frame, 4).unwrap();
        assert_eq!(buf.into_vec(), b"payload");
        assert!(frame.is_none());
        let mut frame = Some(b"xxxxpayload".to_vec());
        assert!(
            decode_owned::<Vec<u8>>(&mut frame, 4).is_none(),
            "Vec<u8> asks for a sequence"
        );
        assert!(frame.is_some());
    }
}
