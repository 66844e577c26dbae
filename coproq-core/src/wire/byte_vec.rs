//! Byte vectors among generic values.
//!
//! serde sends a `Vec<u8>` or `&[u8]` element by element; as one byte string it is a
//! single copy (and, when large, no copy: see `direct`). Both have the same bincode
//! layout, so a byte vector is recognised by its type, without specialization, through
//! `typeid` (a `TypeId` for non-`'static` types, lifetimes read as `'static`), and
//! travels as a byte string wherever it appears at the top of a value.

use std::mem::ManuallyDrop;
use std::ptr;

/// The bytes of `value` if it is a `Vec<u8>`, `&Vec<u8>`, `&[u8]` or `Box<[u8]>`.
pub(crate) fn as_bytes<T: ?Sized>(value: &T) -> Option<&[u8]> {
    let id = typeid::of::<T>();
    let at = ptr::from_ref(value);
    // SAFETY: in each branch the type ids are equal, so `T` is that very type (up to
    // lifetimes, which `typeid` reads as `'static`; the slice returned borrows `value`,
    // no longer).
    unsafe {
        if id == typeid::of::<Vec<u8>>() {
            return Some(&*at.cast::<Vec<u8>>());
        }
        if id == typeid::of::<&[u8]>() {
            return Some(*at.cast::<&[u8]>());
        }
        if id == typeid::of::<&Vec<u8>>() {
            return Some(*at.cast::<&Vec<u8>>());
        }
        if id == typeid::of::<Box<[u8]>>() {
            return Some(&*at.cast::<Box<[u8]>>());
        }
    }
    None
}

/// Whether `T` is `Vec<u8>`.
pub(crate) fn is_byte_vec<T>() -> bool {
    typeid::of::<T>() == typeid::of::<Vec<u8>>()
}

/// `bytes` as a `T` that [`is_byte_vec`]; `None` (dropping nothing) for any other `T`.
pub(crate) fn into_byte_vec<T>(bytes: Vec<u8>) -> Option<T> {
    if !is_byte_vec::<T>() {
        return None;
    }
    let bytes = ManuallyDrop::new(bytes);
    // SAFETY: `T` is `Vec<u8>` (checked above); the value is moved, not duplicated: the
    // original is never dropped.
    Some(unsafe { ptr::read(ptr::from_ref(&*bytes).cast::<T>()) })
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
