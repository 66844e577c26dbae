//! Byte vectors among generic values.
//!
//! serde sends a `Vec<u8>` or `&[u8]` element by element; as one byte string it is a
//! single copy (and, when large, no copy: see `direct`). Both have the same bincode
//! layout, so a byte vector is recognised by its type (see `typed_vec`), and
//! travels as a byte string wherever it appears at the top of a value.

use super::typed_vec;

/// The bytes of `value` if it is a `Vec<u8>`, `&Vec<u8>`, `&[u8]` or `Box<[u8]>`.
#[inline]
pub(crate) fn as_bytes<T: ?Sized>(value: &T) -> Option<&[u8]> {
    typed_vec::slice_of::<T, u8>(value)
}

/// Whether `T` is `Vec<u8>`.
#[inline]
pub(crate) fn is_byte_vec<T>() -> bool {
    typed_vec::is_vec_of::<T, u8>()
}

/// `bytes` as a `T` that [`is_byte_vec`]; `None` (dropping nothing) for any other `T`.
pub(crate) fn into_byte_vec<T>(bytes: Vec<u8>) -> Option<T> {
    typed_vec::into_vec_of(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_vectors_are_recognised_and_nothing_else() {
        let v = vec![1u8, 2, 3];
        assert_eq!(as_bytes(&v), Some(&[1, 2, 3][..]));
        assert_eq!(as_bytes(&&v), Some(&[1, 2, 3][..]));
        assert_eq!(as_bytes(&&v[1..]), Some(&[2, 3][..]));
        assert_eq!(
            as_bytes(&v.clone().into_boxed_slice()),
            Some(&[1, 2, 3][..])
        );
        assert_eq!(as_bytes(&vec![1u16]), None);
        assert_eq!(as_bytes(&vec![1i8]), None);
        assert_eq!(as_bytes("abc"), None);
        assert_eq!(as_bytes(&(1u8, 2u8)), None);
        assert!(is_byte_vec::<Vec<u8>>() && !is_byte_vec::<Vec<i8>>());
        assert_eq!(into_byte_vec::<Vec<u8>>(v.clone()), Some(v.clone()));
        assert_eq!(into_byte_vec::<String>(v), None);
    }
}
