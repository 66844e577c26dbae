//! Whether a value has a given shape, found without writing one: how the recorder tells
//! that an element of a sequence is like the first, which is what collapses a uniform
//! sequence to one element shape.
//!
//! It walks the shape recorded for the first element in step with the value, as the
//! recorder would write it: a tag compared per node, a name per field, a count per tuple
//! or struct. A sequence inside an element matches when the recorder would give it the
//! same shape: none (`EMPTY`) for none, and one element shape (`SAME`) that each of its
//! elements has. Anything else (a shape that lists each element, a value's own error)
//! answers "differs", and the recorder then records the element in full, as before, so
//! what it writes never depends on this walk.

use serde::Serialize;
use serde::ser::{self, Serializer};

use super::{mode, name_bytes, tag, variant};
use crate::wire::same_bytes;

/// Whether `value` has exactly the shape `shape` (one node, or a map entry's key and
/// value), as `record` would write it.
#[inline]
pub(super) fn has_shape<T: Serialize + ?Sized>(value: &T, shape: &[u8]) -> bool {
    let mut walk = Walk { shape, at: 0 };
    value.serialize(&mut walk).is_ok() && walk.at == shape.len()
}

/// Two map entries' keys and values, in the order `SerializeMap` gives them.
#[inline]
pub(super) fn entry_has_shape<K, V>(key: &K, value: &V, shape: &[u8]) -> bool
where
    K: Serialize + ?Sized,
    V: Serialize + ?Sized,
{
    let mut walk = Walk { shape, at: 0 };
    key.serialize(&mut walk).is_ok() && value.serialize(&mut walk).is_ok() && walk.at == shape.len()
}

/// The value differs from the shape (or failed to serialize: the recorder says why).
#[derive(Debug)]
pub(super) struct Differs;

impl std::fmt::Display for Differs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the value differs from the shape")
    }
}

impl std::error::Error for Differs {}

impl ser::Error for Differs {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Self
    }
}

type Result<T = ()> = std::result::Result<T, Differs>;

/// A shape, and how far the value has matched it.
struct Walk<'s> {
    shape: &'s [u8],
    at: usize,
}

impl<'s> Walk<'s> {
    #[inline]
    fn expect(&mut self, expected: u8) -> Result {
        match self.shape.get(self.at) {
            Some(&got) if got == expected => {
                self.at += 1;
                Ok(())
            }
            _ => Err(Differs),
        }
    }

    #[inline]
    fn u32(&mut self) -> Result<u32> {
        let bytes = self.shape.get(self.at..self.at + 4).ok_or(Differs)?;
        self.at += 4;
        Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| Differs)?))
    }

    #[inline]
    fn name(&mut self, name: &str) -> Result {
        let name = name_bytes(name);
        let len = usize::from(*self.shape.get(self.at).ok_or(Differs)?);
        let recorded = self
            .shape
            .get(self.at + 1..self.at + 1 + len)
            .ok_or(Differs)?;
        if !same_bytes(recorded, name) {
            return Err(Differs);
        }
        self.at += 1 + len;
        Ok(())
    }

    #[inline]
    fn variant(&mut self, index: u32, name: &str, kind: u8) -> Result {
        self.expect(tag::ENUM)?;
        if self.u32()? != index {
            return Err(Differs);
        }
        self.name(name)?;
        self.expect(kind)
    }

    /// A tuple's or struct's members: their count, checked at the end.
    #[inline]
    fn members(&mut self) -> Result<Members<'_, 's>> {
        let count = self.u32()?;
        Ok(Members {
            walk: self,
            count,
            seen: 0,
        })
    }

    /// A sequence's elements or a map's entries, whose tag was just taken.
    #[inline]
    fn elements(&mut self) -> Result<Elements<'_, 's>> {
        let same = match self.shape.get(self.at) {
            Some(&mode::EMPTY) => None,
            Some(&mode::SAME) => Some(self.at + 1),
            _ => return Err(Differs),
        };
        self.at += 1;
        Ok(Elements {
            walk: self,
            same,
            end: None,
        })
    }
}

macro_rules! scalars {
    ($($method:ident($ty:ty) => $tag:ident;)*) => {$(
        #[inline]
        fn $method(self, _: $ty) -> Result {
            self.expect(tag::$tag)
        }
    )*};
}

impl<'a, 's> Serializer for &'a mut Walk<'s> {
    type Ok = ();
    type Error = Differs;
    type SerializeSeq = Elements<'a, 's>;
    type SerializeTuple = Members<'a, 's>;
    type SerializeTupleStruct = Members<'a, 's>;
    type SerializeTupleVariant = Members<'a, 's>;
    type SerializeMap = Elements<'a, 's>;
    type SerializeStruct = Members<'a, 's>;
    type SerializeStructVariant = Members<'a, 's>;

    scalars! {
        serialize_bool(bool) => BOOL;
        serialize_i8(i8) => I8;
        serialize_i16(i16) => I16;
        serialize_i32(i32) => I32;
        serialize_i64(i64) => I64;
        serialize_i128(i128) => I128;
        serialize_u8(u8) => U8;
        serialize_u16(u16) => U16;
        serialize_u32(u32) => U32;
        serialize_u64(u64) => U64;
        serialize_u128(u128) => U128;
        serialize_f32(f32) => F32;
        serialize_f64(f64) => F64;
        serialize_char(char) => CHAR;
        serialize_str(&str) => STR;
        serialize_bytes(&[u8]) => BYTES;
        serialize_unit_struct(&'static str) => UNIT;
    }

    #[inline]
    fn serialize_unit(self) -> Result {
        self.expect(tag::UNIT)
    }
    #[inline]
    fn serialize_none(self) -> Result {
        self.expect(tag::NONE)
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.expect(tag::SOME)?;
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit_variant(self, _: &'static str, index: u32, name: &'static str) -> Result {
        self.variant(index, name, variant::UNIT)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        value: &T,
    ) -> Result {
        self.variant(index, name, variant::NEWTYPE)?;
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, _: Option<usize>) -> Result<Elements<'a, 's>> {
        self.expect(tag::SEQ)?;
        self.elements()
    }
    #[inline]
    fn serialize_map(self, _: Option<usize>) -> Result<Elements<'a, 's>> {
        self.expect(tag::MAP)?;
        self.elements()
    }
    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<Members<'a, 's>> {
        self.expect(tag::TUPLE)?;
        self.members()
    }
    #[inline]
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Members<'a, 's>> {
        self.expect(tag::TUPLE)?;
        self.members()
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        _: usize,
    ) -> Result<Members<'a, 's>> {
        self.variant(index, name, variant::TUPLE)?;
        self.members()
    }
    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Members<'a, 's>> {
        self.expect(tag::STRUCT)?;
        self.members()
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        name: &'static str,
        _: usize,
    ) -> Result<Members<'a, 's>> {
        self.variant(index, name, variant::STRUCT)?;
        self.members()
    }
}

/// A tuple's or struct's members, counted against the recorded count.
struct Members<'a, 's> {
    walk: &'a mut Walk<'s>,
    count: u32,
    seen: u32,
}

impl Members<'_, '_> {
    #[inline]
    fn member<T: Serialize + ?Sized>(&mut self, name: Option<&str>, value: &T) -> Result {
        if self.seen == self.count {
            return Err(Differs);
        }
        self.seen += 1;
        if let Some(name) = name {
            self.walk.name(name)?;
        }
        value.serialize(&mut *self.walk)
    }

    #[inline]
    fn close(self) -> Result {
        if self.seen == self.count {
            Ok(())
        } else {
            Err(Differs)
        }
    }
}

/// The serde traits of tuples and structs, all checking members through [`Members`].
macro_rules! members {
    ($($trait:ident :: $method:ident($($key:ident)?);)*) => {$(
        impl ser::$trait for Members<'_, '_> {
            type Ok = ();
            type Error = Differs;
            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result {
                self.member(None $(.or(Some($key)))?, value)
            }
            #[inline]
            fn end(self) -> Result {
                self.close()
            }
        }
    )*};
}

members! {
    SerializeTuple::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(key);
    SerializeStructVariant::serialize_field(key);
}

/// A nested sequence's elements (or map's entries), each against the one element shape.
struct Elements<'a, 's> {
    walk: &'a mut Walk<'s>,
    /// Where the element shape starts (`None`: the shape says there are none).
    same: Option<usize>,
    /// Where it ends, once an element has matched it.
    end: Option<usize>,
}

impl Elements<'_, '_> {
    /// Positions the walk at the element shape for the next element (or entry's key).
    #[inline]
    fn begin(&mut self) -> Result {
        self.walk.at = self.same.ok_or(Differs)?;
        Ok(())
    }

    /// Checks that the element (or entry's value) ended where the others did.
    #[inline]
    fn end_element(&mut self) -> Result {
        match self.end {
            Some(end) if end != self.walk.at => Err(Differs),
            _ => {
                self.end = Some(self.walk.at);
                Ok(())
            }
        }
    }

    #[inline]
    fn close(self) -> Result {
        match (self.same, self.end) {
            // None recorded and none given, or one shape recorded and matched.
            (None, _) => Ok(()),
            (Some(_), Some(end)) => {
                self.walk.at = end;
                Ok(())
            }
            // A shape for elements, but none given.
            (Some(_), None) => Err(Differs),
        }
    }
}

impl ser::SerializeSeq for Elements<'_, '_> {
    type Ok = ();
    type Error = Differs;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.begin()?;
        value.serialize(&mut *self.walk)?;
        self.end_element()
    }
    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

impl ser::SerializeMap for Elements<'_, '_> {
    type Ok = ();
    type Error = Differs;
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.begin()?;
        key.serialize(&mut *self.walk)
    }
    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut *self.walk)?;
        self.end_element()
    }
    #[inline]
    fn end(self) -> Result {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::super::{mode, record, tag};

    fn shape_of<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut shape = Vec::new();
        record(value, &mut shape).unwrap();
        shape
    }

    /// What a sequence's shape must be, from its elements' shapes recorded one by one:
    /// one shape if all are alike, otherwise each.
    fn expected(tag: u8, elements: &[Vec<u8>]) -> Vec<u8> {
        let mut shape = vec![tag];
        match elements {
            [] => shape.push(mode::EMPTY),
            [first, rest @ ..] if rest.iter().all(|e| e == first) => {
                shape.push(mode::SAME);
                shape.extend_from_slice(first);
            }
            _ => {
                shape.push(mode::EACH);
                shape.extend_from_slice(&(elements.len() as u32).to_le_bytes());
                for element in elements {
                    shape.extend_from_slice(element);
                }
            }
        }
        shape
    }

    /// Asserts that `seq` records as its elements, recorded one by one, say it must.
    fn records_as_its_elements<T: Serialize>(seq: &[T]) {
        let elements: Vec<Vec<u8>> = seq.iter().map(|e| shape_of(e)).collect();
        assert_eq!(
            shape_of(seq),
            expected(tag::SEQ, &elements),
            "{}",
            std::any::type_name::<T>()
        );
    }

    #[derive(Serialize)]
    struct Point {
        x: u64,
        y: u64,
    }

    #[derive(Serialize)]
    struct Sparse {
        a: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<u8>,
    }

    #[derive(Serialize)]
    enum Kind {
        Unit,
        New(u8),
        Tuple(u8, u16),
        Named { a: u8 },
    }

    #[test]
    fn an_element_is_collapsed_exactly_when_its_shape_is_the_firsts() {
        records_as_its_elements(&[Point { x: 1, y: 2 }, Point { x: 3, y: 4 }]);
        records_as_its_elements(&[None, Some(1u8), None]);
        records_as_its_elements(&[Some(1u8), Some(2), None]);
        records_as_its_elements(&[Kind::Unit, Kind::Unit, Kind::New(1)]);
        records_as_its_elements(&[Kind::Tuple(1, 2), Kind::Tuple(3, 4)]);
        records_as_its_elements(&[Kind::Named { a: 1 }, Kind::Tuple(1, 2)]);
        records_as_its_elements(&[Kind::New(1), Kind::Named { a: 1 }]);
        // Fields skipped in some elements and not in others.
        records_as_its_elements(&[Sparse { a: 1, b: None }, Sparse { a: 2, b: Some(3) }]);
        records_as_its_elements(&[Sparse { a: 1, b: Some(1) }, Sparse { a: 2, b: None }]);
        // Sequences inside elements: none, some, of one shape or of several.
        records_as_its_elements(&[vec![], vec![1u32, 2], vec![3]]);
        records_as_its_elements(&[vec![1u32, 2], vec![], vec![3]]);
        records_as_its_elements(&[vec![1u32, 2], vec![3]]);
        records_as_its_elements(&[vec![Some(1u8), None], vec![Some(1), None]]);
        records_as_its_elements(&[vec![Some(1u8), None], vec![None, Some(1)]]);
        records_as_its_elements(&[vec![vec![1u8]], vec![vec![], vec![2]]]);
        records_as_its_elements(&[vec![vec![1u8]], vec![vec![2], vec![3]]]);
        // Maps inside elements, and strings, tuples and units.
        records_as_its_elements(&[
            BTreeMap::from([("a", 1u8)]),
            BTreeMap::from([("b", 2u8), ("c", 3)]),
            BTreeMap::new(),
        ]);
        records_as_its_elements(&[
            BTreeMap::from([(1u8, None)]),
            BTreeMap::from([(2u8, Some(1u8))]),
        ]);
        records_as_its_elements(&[(1u8, "a".to_owned()), (2, String::new())]);
        records_as_its_elements(&[(), ()]);
        records_as_its_elements(&[(1u8,), (2,)]);
    }

    #[test]
    fn a_maps_entries_are_collapsed_exactly_when_their_shapes_are_the_firsts() {
        fn entries_as_recorded<K: Serialize, V: Serialize>(map: &BTreeMap<K, V>) {
            let entries: Vec<Vec<u8>> = map
                .iter()
                .map(|(k, v)| [shape_of(k), shape_of(v)].concat())
                .collect();
            assert_eq!(shape_of(map), expected(tag::MAP, &entries));
        }
        entries_as_recorded(&BTreeMap::from([(1u8, Some(1u8)), (2, Some(2))]));
        entries_as_recorded(&BTreeMap::from([(1u8, Some(1u8)), (2, None)]));
        entries_as_recorded(&BTreeMap::from([(1u8, vec![1u8]), (2, vec![])]));
        entries_as_recorded(&BTreeMap::from([("a", Kind::Unit), ("b", Kind::New(2))]));
        entries_as_recorded(&BTreeMap::<u8, u8>::new());
    }
}
