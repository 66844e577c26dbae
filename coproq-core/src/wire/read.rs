//! The value's bytes, read: a `Deserializer` over bincode's layout (the configuration in
//! `codec`, as `encode` writes it), for the checking deserializer to drive. Its reads
//! (`next`, `next_run`) are also those of the one-pass decode (`shape::exact`), which
//! has no error messages to make.
//!
//! It is ours rather than bincode's so that the checked decode is two thin layers that
//! inline into each other: each read is a bounds check and a load, with no limit
//! accounting or error conversion in between. Lengths are checked against the bytes
//! present before anything is borrowed; nothing is allocated here (the visitors copy
//! what they keep, and serde bounds what a claimed count preallocates).

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

use super::error::Message;

/// The bytes of a value, read from the front.
pub(crate) struct Reader<'de> {
    input: &'de [u8],
}

type Result<T> = std::result::Result<T, Message>;

impl<'de> Reader<'de> {
    pub(crate) fn new(input: &'de [u8]) -> Self {
        Self { input }
    }

    /// The bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.input.len()
    }

    /// The next `N` bytes, if there are as many (nothing is taken otherwise).
    #[inline]
    pub(crate) fn next<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.input.split_first_chunk::<N>()?;
        self.input = rest;
        Some(*head)
    }

    /// A run of bytes after its `u64` length, borrowed, if the length is that of bytes
    /// present (nothing is taken otherwise).
    #[inline]
    pub(crate) fn next_run(&mut self) -> Option<&'de [u8]> {
        let (len, rest) = self.input.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if len > rest.len() {
            return None;
        }
        let (run, rest) = rest.split_at(len);
        self.input = rest;
        Some(run)
    }

    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.next().ok_or_else(|| self.ended(N))
    }

    #[cold]
    fn ended(&self, wanted: usize) -> Message {
        Message(format!(
            "the value ended {} bytes early",
            wanted - self.input.len()
        ))
    }

    /// A `u64` length or count, as a `usize`.
    #[inline]
    fn len(&mut self) -> Result<usize> {
        let len = u64::from_le_bytes(self.take()?);
        usize::try_from(len).map_err(|_| exceeds())
    }

    /// A length-prefixed run of bytes, borrowed.
    #[inline]
    fn bytes(&mut self) -> Result<&'de [u8]> {
        self.next_run().ok_or_else(|| {
            if self.input.len() < 8 {
                self.ended(8)
            } else {
                exceeds()
            }
        })
    }

    #[inline]
    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?)
            .map_err(|_| Message("a string is not valid UTF-8".into()))
    }

    fn char(&mut self) -> Result<char> {
        let invalid = || Message("a char is not valid UTF-8".into());
        let first = *self.input.first().ok_or_else(|| self.ended(1))?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return Err(invalid()),
        };
        let bytes = self.input.get(..width).ok_or_else(|| self.ended(width))?;
        let c = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or_else(invalid)?;
        self.input = &self.input[width..];
        Ok(c)
    }
}

#[cold]
fn exceeds() -> Message {
    Message("a length inside the value exceeds the bytes sent".into())
}

#[cold]
fn not_self_describing() -> Message {
    Message("the bytes alone do not say what they are".into())
}

macro_rules! numbers {
    ($($method:ident => $visit:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            visitor.$visit(<$ty>::from_le_bytes(self.take()?))
        }
    )*};
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Message;

    numbers! {
        deserialize_i8 => visit_i8(i8);
        deserialize_i16 => visit_i16(i16);
        deserialize_i32 => visit_i32(i32);
        deserialize_i64 => visit_i64(i64);
        deserialize_i128 => visit_i128(i128);
        deserialize_u8 => visit_u8(u8);
        deserialize_u16 => visit_u16(u16);
        deserialize_u32 => visit_u32(u32);
        deserialize_u64 => visit_u64(u64);
        deserialize_u128 => visit_u128(u128);
        deserialize_f32 => visit_f32(f32);
        deserialize_f64 => visit_f64(f64);
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(not_self_describing())
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(not_self_describing())
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(not_self_describing())
    }
    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.take::<1>()? {
            [0] => visitor.visit_bool(false),
            [1] => visitor.visit_bool(true),
            [other] => Err(Message(format!("{other} is not a bool"))),
        }
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_char(self.char()?)
    }
    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }
    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }
    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }
    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.take::<1>()? {
            [0] => visitor.visit_none(),
            [1] => visitor.visit_some(self),
            [other] => Err(Message(format!("{other} is not an option's tag"))),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }
    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let left = self.len()?;
        visitor.visit_seq(Members { reader: self, left })
    }
    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Members {
            reader: self,
            left: len,
        })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let left = self.len()?;
        visitor.visit_map(Members { reader: self, left })
    }
    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or struct, or the entries of a map: `left` more.
struct Members<'a, 'de> {
    reader: &'a mut Reader<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Members<'_, 'de> {
    type Error = Message;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::MapAccess<'de> for Members<'_, 'de> {
    type Error = Message;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.reader)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Reader<'de> {
    type Error = Message;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = u32::from_le_bytes(self.take()?);
        let value = seed.deserialize(index.into_deserializer())?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Reader<'de> {
    type Error = Message;
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_tuple(len, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::Reader;
    use crate::wire::codec;

    fn read<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<(T, usize), String> {
        let mut reader = Reader::new(bytes);
        let value = T::deserialize(&mut reader).map_err(|e| e.0)?;
        Ok((value, reader.remaining()))
    }

    #[test]
    fn it_reads_what_bincode_writes() {
        let value = (
            true,
            -5i16,
            u128::MAX,
            2.5f64,
            '🦀',
            String::from("héllo"),
            vec![Some(1u8), None],
            std::collections::BTreeMap::from([(1u32, 'x')]),
        );
        let bytes = codec::bincode_bytes(&value);
        assert_eq!(
            read::<(
                bool,
                i16,
                u128,
                f64,
                char,
                String,
                Vec<Option<u8>>,
                std::collections::BTreeMap<u32, char>
            )>(&bytes)
            .unwrap(),
            (value, 0)
        );
    }

    #[test]
    fn hostile_bytes_are_errors() {
        assert!(read::<bool>(&[2]).unwrap_err().contains("not a bool"));
        assert!(read::<Option<u8>>(&[7, 0]).unwrap_err().contains("option"));
        assert!(read::<char>(&[0xff]).unwrap_err().contains("char"));
        assert!(read::<char>(&[0xe2, 0x82]).unwrap_err().contains("early"));
        assert!(read::<u64>(&[1, 2]).unwrap_err().contains("6 bytes early"));
        let mut claim = (1u64 << 40).to_le_bytes().to_vec();
        claim.extend_from_slice(b"abc");
        assert!(read::<&str>(&claim).unwrap_err().contains("exceeds"));
        let claim = u64::MAX.to_le_bytes();
        assert!(read::<String>(&claim).is_err());
        let mut bad = 2u64.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0xc3, 0x28]);
        assert!(read::<String>(&bad).unwrap_err().contains("UTF-8"));
        // A claimed count preallocates nothing beyond what serde allows, and fails at
        // the end of the bytes.
        let claim = (1u64 << 60).to_le_bytes();
        assert!(read::<Vec<u64>>(&claim).unwrap_err().contains("early"));
    }
}
