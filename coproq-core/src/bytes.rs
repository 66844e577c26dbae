//! Byte buffers that serialize as bytes: one copy, instead of serde's element-by-element
//! sequence for `[u8]` and `Vec<u8>`. Generated typed services use them for `&[u8]` and
//! `Vec<u8>`; bincode lays both forms out alike, so dynamic peers interoperate.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::{Serialize, Serializer};

/// Borrowed bytes, serialized as bytes.
#[derive(Debug, Clone, Copy)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Owned bytes, serialized and deserialized as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByteBuf(pub Vec<u8>);

impl ByteBuf {
    /// The bytes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    #[must_use]
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = ByteBuf;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
        Ok(ByteBuf(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
        Ok(ByteBuf(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteBuf, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element()? {
            bytes.push(b);
        }
        Ok(ByteBuf(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;

    #[test]
    fn bytes_and_sequences_share_a_layout() {
        let data = vec![1u8, 2, 3, 255];
        let mut as_bytes = Vec::new();
        codec::encode_into(&Bytes(&data), &mut as_bytes).unwrap();
        let mut as_seq = Vec::new();
        codec::encode_into(&data, &mut as_seq).unwrap();
        assert_eq!(as_bytes, as_seq);
        assert_eq!(
            codec::decode_exact::<ByteBuf>(&as_seq).unwrap().into_vec(),
            data
        );
        assert_eq!(codec::decode_exact::<Vec<u8>>(&as_bytes).unwrap(), data);
    }
}
