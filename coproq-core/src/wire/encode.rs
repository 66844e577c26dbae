//! The value's bytes: a `Serializer` that writes bincode's layout (the configuration in
//! `codec`: fixed-width little-endian integers, `u64` lengths, `u32` variant indexes),
//! byte for byte as bincode's own encoder would, which the tests check against it.
//!
//! It is ours rather than bincode's for what bincode refuses: sequences and maps of
//! unknown length (what `#[serde(flatten)]` and many `Serialize` impls write). Their
//! length is written as a placeholder and filled in at the end, which a fixed-width
//! length makes a write in place.

use serde::Serialize;
use serde::ser::{self, Serializer};

use super::error::Message;

/// Appends the bincode encoding of `value` to `out`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let start = out.len();
    // Descriptors in the value join its frame's group only here, where its bytes are
    // written (see `descriptors`).
    super::descriptors::writing_value(|| value.serialize(Encoder { out })).map_err(|e| {
        out.truncate(start);
        e.0
    })
}

type Result<T = ()> = std::result::Result<T, Message>;

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

#[inline]
fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&(len as u64).to_le_bytes());
}

macro_rules! numbers {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result {
            self.out.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl<'a> Serializer for Encoder<'a> {
    type Ok = ();
    type Error = Message;
    type SerializeSeq = Counted<'a>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Counted<'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    numbers! {
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result {
        // bincode writes a char as its UTF-8 bytes, without a length.
        let mut utf8 = [0; 4];
        self.out
            .extend_from_slice(v.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result {
        self.serialize_bytes(v.as_bytes())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result {
        put_len(self.out, v.len());
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result {
        self.serialize_u32(index)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result {
        self.out.extend_from_slice(&index.to_le_bytes());
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Counted<'a>> {
        Ok(Counted::open(self.out, len))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        self.out.extend_from_slice(&index.to_le_bytes());
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Counted<'a>> {
        Ok(Counted::open(self.out, len))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        self.out.extend_from_slice(&index.to_le_bytes());
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Members of a tuple, struct or variant: one after another, nothing around them.
macro_rules! members {
    ($($trait:ident::$method:ident($($name:ident)?);)*) => {$(
        impl ser::$trait for Encoder<'_> {
            type Ok = ();
            type Error = Message;
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($name: &'static str,)?
                value: &T,
            ) -> Result {
                $(let _ = $name;)?
                value.serialize(Encoder { out: self.out })
            }
            fn end(self) -> Result {
                Ok(())
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

/// The elements of a sequence or the entries of a map, after their `u64` count: the
/// count given, or, when none was, a placeholder filled in at the end.
pub(crate) struct Counted<'a> {
    out: &'a mut Vec<u8>,
    /// Where the count lies, when it is filled in at the end.
    count_at: Option<usize>,
    count: usize,
}

impl<'a> Counted<'a> {
    fn open(out: &'a mut Vec<u8>, len: Option<usize>) -> Self {
        // Unknown: a placeholder, filled in by `close`.
        put_len(out, len.unwrap_or(0));
        let count_at = len.is_none().then(|| out.len() - 8);
        Self {
            out,
            count_at,
            count: 0,
        }
    }

    fn close(self) {
        if let Some(at) = self.count_at {
            self.out[at..at + 8].copy_from_slice(&(self.count as u64).to_le_bytes());
        }
    }
}

impl ser::SerializeSeq for Counted<'_> {
    type Ok = ();
    type Error = Message;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.count += 1;
        value.serialize(Encoder { out: self.out })
    }
    fn end(self) -> Result {
        self.close();
        Ok(())
    }
}

impl ser::SerializeMap for Counted<'_> {
    type Ok = ();
    type Error = Message;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.count += 1;
        key.serialize(Encoder { out: self.out })
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(Encoder { out: self.out })
    }
    fn end(self) -> Result {
        self.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::encode;
    use crate::wire::codec;

    /// Ours and bincode's bytes for `value`, which must be the same.
    fn same_as_bincode<T: Serialize + ?Sized>(value: &T) {
        let mut ours = Vec::new();
        encode(value, &mut ours).unwrap();
        assert_eq!(
            ours,
            codec::bincode_bytes(value),
            "{}",
            std::any::type_name::<T>()
        );
    }

    #[derive(Serialize)]
    struct Point {
        x: i32,
        y: f64,
    }

    #[derive(Serialize)]
    enum Shape {
        Dot,
        Circle(f32),
        Rect(u16, u16),
        Named { name: String, sides: Option<u8> },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Wrapper(Vec<Point>);

    #[derive(Serialize)]
    struct Pair(u8, i128);

    #[test]
    fn every_kind_of_value_is_laid_out_as_bincode_lays_it_out() {
        same_as_bincode(&true);
        same_as_bincode(&false);
        same_as_bincode(&(-1i8, -2i16, -3i32, -4i64, i128::MIN));
        same_as_bincode(&(1u8, 2u16, 3u32, u64::MAX, u128::MAX));
        same_as_bincode(&(1.5f32, -0.25f64, f64::NAN, f32::INFINITY));
        for c in ['a', 'ß', '€', '🦀', '\0'] {
            same_as_bincode(&c);
        }
        same_as_bincode("héllo");
        same_as_bincode("");
        same_as_bincode(&crate::bytes::Bytes(&[0, 1, 255]));
        same_as_bincode(&(None::<u8>, Some(7u8), Some(Some(())), Some(None::<u8>)));
        same_as_bincode(&());
        same_as_bincode(&Unit);
        same_as_bincode(&Wrapper(vec![
            Point { x: 1, y: 2.0 },
            Point { x: -3, y: 0.5 },
        ]));
        same_as_bincode(&Pair(9, -9));
        same_as_bincode(&vec![
            Shape::Dot,
            Shape::Circle(1.0),
            Shape::Rect(2, 3),
            Shape::Named {
                name: "tri".into(),
                sides: Some(3),
            },
        ]);
        same_as_bincode(&vec![vec![1u64, 2], vec![], vec![3]]);
        same_as_bincode(&[1u32, 2, 3]);
        same_as_bincode(&BTreeMap::from([("a", 1u8), ("b", 2)]));
        same_as_bincode(&HashMap::from([(1u64, vec!["x"])]));
        same_as_bincode(&(String::from("s"), vec![(1u8, 'c')], [Some(1i16), None]));
        same_as_bincode(&std::time::Duration::from_millis(1500));
        same_as_bincode(&std::net::Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn sequences_and_maps_of_unknown_length_get_their_count() {
        /// A sequence that does not say its length up front.
        struct Unsized(Vec<u16>);
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().filter(|_| true))
            }
        }
        #[derive(Serialize)]
        struct Inner {
            b: u8,
        }
        #[derive(Serialize)]
        struct Flat {
            a: u8,
            #[serde(flatten)]
            inner: Inner,
        }
        let mut ours = Vec::new();
        encode(&Unsized(vec![7, 8, 9]), &mut ours).unwrap();
        assert_eq!(ours, codec::bincode_bytes(&vec![7u16, 8, 9]));
        let mut ours = Vec::new();
        encode(
            &Flat {
                a: 1,
                inner: Inner { b: 2 },
            },
            &mut ours,
        )
        .unwrap();
        assert_eq!(
            ours,
            codec::bincode_bytes(&BTreeMap::from([("a", 1u8), ("b", 2)]))
        );
    }
}
