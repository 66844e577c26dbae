//! Vectors and slices recognised by their element type among generic values, without
//! specialization: through `typeid` (a `TypeId` for non-`'static` types, lifetimes read
//! as `'static`). `byte_vec` and `number_vec` build their short ways on these.

use std::mem::ManuallyDrop;
use std::ptr;

/// The elements of `value` if it is a `Vec<E>`, `&Vec<E>`, `&[E]` or `Box<[E]>`.
#[inline]
pub(crate) fn slice_of<T: ?Sized, E: 'static>(value: &T) -> Option<&[E]> {
    let id = typeid::of::<T>();
    let at = ptr::from_ref(value);
    // SAFETY: in each branch the type ids are equal, so `T` is that very type (up to
    // lifetimes, which `typeid` reads as `'static`; the slice returned borrows `value`,
    // no longer).
    unsafe {
        if id == typeid::of::<Vec<E>>() {
            return Some(&*at.cast::<Vec<E>>());
        }
        if id == typeid::of::<&[E]>() {
            return Some(*at.cast::<&[E]>());
        }
        if id == typeid::of::<&Vec<E>>() {
            return Some(*at.cast::<&Vec<E>>());
        }
        if id == typeid::of::<Box<[E]>>() {
            return Some(&*at.cast::<Box<[E]>>());
        }
    }
    None
}

/// Whether `T` is `Vec<E>`.
#[inline]
pub(crate) fn is_vec_of<T, E: 'static>() -> bool {
    typeid::of::<T>() == typeid::of::<Vec<E>>()
}

/// `elements` as a `T` that [`is_vec_of`] `E`; `None` (dropping them) for any other `T`.
#[inline]
pub(crate) fn into_vec_of<T, E: 'static>(elements: Vec<E>) -> Option<T> {
    if !is_vec_of::<T, E>() {
        return None;
    }
    let elements = ManuallyDrop::new(elements);
    // SAFETY: `T` is `Vec<E>` (checked above); the value is moved, not duplicated: the
    // original is never dropped.
    Some(unsafe { ptr::read(ptr::from_ref(&*elements).cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_slices_are_recognised_by_element_type_and_nothing_else() {
        let v = vec![1u32, 2, 3];
        assert_eq!(slice_of::<_, u32>(&v), Some(&[1, 2, 3][..]));
        assert_eq!(slice_of::<_, u32>(&&v), Some(&[1, 2, 3][..]));
        assert_eq!(slice_of::<_, u32>(&&v[1..]), Some(&[2, 3][..]));
        let boxed = v.clone().into_boxed_slice();
        assert_eq!(slice_of::<_, u32>(&boxed), Some(&[1, 2, 3][..]));
        assert_eq!(slice_of::<_, u64>(&v), None);
        assert_eq!(slice_of::<_, u32>(&(1u32, 2u32)), None);
        assert!(is_vec_of::<Vec<u32>, u32>() && !is_vec_of::<Vec<u32>, i32>());
        assert_eq!(into_vec_of::<Vec<u32>, u32>(v.clone()), Some(v.clone()));
        assert_eq!(into_vec_of::<String, u32>(v), None);
    }
}
