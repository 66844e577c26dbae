//! [`SharedBytes`]: immutable bytes in sealed shared memory, passed between processes as
//! a descriptor instead of copied through the pipe.

use std::fmt;
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::Fd;
use crate::fd::Lent;
use crate::sys;
use crate::wire::descriptors;

/// The name `SharedBytes` serialize under where they travel as a memory object.
const NAME: &str = "coproq::SharedBytes";
const FIELDS: &[&str] = &["memory", "len"];

/// Immutable bytes in shared memory: sent to a local worker (or back), they travel as a
/// descriptor of the memory that holds them, not as bytes, so a call that hands over a
/// gigabyte costs what one that hands over a kilobyte does.
///
/// The bytes live in an anonymous memory object that is sealed once filled: nobody, its
/// maker included, can change, shrink or grow it afterwards, so the receiver maps it and
/// reads it as `&[u8]` (through `Deref`) with no copy and no possible data race. Cloning
/// is cheap (the memory is shared, not copied), and the memory is freed once the last
/// handle in either process is gone.
///
/// ```no_run
/// use coproq::SharedBytes;
///
/// let worker = coproq::fork(|parent| {
///     parent.handle("sum", |data: SharedBytes| -> u64 {
///         data.iter().map(|&b| u64::from(b)).sum()
///     });
/// })?;
/// // Filled in place: 256 MiB, never copied after this.
/// let data = SharedBytes::filled(256 << 20, |bytes| bytes.fill(1));
/// let sum: u64 = worker.call("sum", &data)?;
/// assert_eq!(sum, 256 << 20);
/// # Ok::<(), coproq::Error>(())
/// ```
///
/// - A receiver checks what it is handed: a descriptor that is not a memory object, an
///   object not sealed against every change, or one whose size is not the one declared is
///   refused as the value's decoding error (the message is refused, its descriptors
///   closed).
/// - Where descriptors cannot travel (a worker over ssh or `spawn_stdio`, any serializer
///   other than a link's, such as `serde_json`), `SharedBytes` travel as the plain bytes
///   they hold, and a receiver accepts either form: the same code works everywhere, and
///   is fast where the worker is local.
/// - On Linux the memory is a sealed `memfd`. macOS has no sealable memory object:
///   there `SharedBytes` hold their bytes on the heap and travel as bytes, so they are
///   correct everywhere but not faster there. [`SharedBytes::is_shared`] says which.
/// - In the arguments of a [`Pool`](crate::Pool)'s call, which may run again on another
///   worker, they travel as bytes; a pool worker's reply carries them as memory.
#[derive(Clone)]
pub struct SharedBytes {
    inner: Arc<Inner>,
}

enum Inner {
    /// A sealed memory object and its read-only mapping.
    Sealed { memory: OwnedFd, map: sys::Mapping },
    /// Bytes on the heap: where no memory object can be made (or was received as bytes).
    Heap(Box<[u8]>),
}

impl SharedBytes {
    /// `len` bytes, filled in place by `fill` (which gets them zeroed), then sealed.
    pub fn filled(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let mut fill = Some(fill);
        let made = sys::create_sealed(len, |bytes| {
            if let Some(fill) = fill.take() {
                fill(bytes);
            }
        });
        let inner = if let Ok((memory, map)) = made {
            Inner::Sealed { memory, map }
        } else {
            // No memory object (macOS, or out of descriptors): the heap, filled alike.
            let mut bytes = vec![0; len].into_boxed_slice();
            if let Some(fill) = fill.take() {
                fill(&mut bytes);
            }
            Inner::Heap(bytes)
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A copy of `bytes`, sealed.
    pub fn copy_from(bytes: &[u8]) -> Self {
        Self::filled(bytes.len(), |into| into.copy_from_slice(bytes))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &*self.inner {
            Inner::Sealed { map, .. } => map.bytes(),
            Inner::Heap(bytes) => bytes,
        }
    }

    /// Whether the bytes are in a sealed memory object (and so travel as a descriptor to
    /// local workers), rather than on the heap.
    pub fn is_shared(&self) -> bool {
        matches!(&*self.inner, Inner::Sealed { .. })
    }

    /// The bytes, copied into a `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        self.as_slice().to_vec()
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<&[u8]> for SharedBytes {
    fn from(bytes: &[u8]) -> Self {
        Self::copy_from(bytes)
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::copy_from(&bytes)
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SharedBytes {}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes")
            .field("len", &self.len())
            .field("shared", &self.is_shared())
            .finish()
    }
}

impl Serialize for SharedBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &*self.inner {
            Inner::Sealed { memory, map } if descriptors::passing() => {
                let mut shared = serializer.serialize_struct(NAME, 2)?;
                shared.serialize_field(FIELDS[0], &Lent(memory.as_fd()))?;
                shared.serialize_field(FIELDS[1], &(map.bytes().len() as u64))?;
                shared.end()
            }
            _ => serializer.serialize_bytes(self.as_slice()),
        }
    }
}

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Either form: a memory object, or the bytes themselves.
        deserializer.deserialize_any(SharedBytesVisitor)
    }
}

struct SharedBytesVisitor;

impl SharedBytesVisitor {
    fn heap(bytes: Vec<u8>) -> SharedBytes {
        SharedBytes {
            inner: Arc::new(Inner::Heap(bytes.into_boxed_slice())),
        }
    }
}

impl<'de> Visitor<'de> for SharedBytesVisitor {
    type Value = SharedBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes, or a sealed memory object (coproq::SharedBytes)")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<SharedBytes, E> {
        Ok(Self::heap(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<SharedBytes, E> {
        Ok(Self::heap(bytes))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<SharedBytes, A::Error> {
        // Bytes as a sequence of numbers (`serde_json`'s way).
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Self::heap(bytes))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SharedBytes, A::Error> {
        let (mut memory, mut len) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "memory" if memory.is_none() => memory = Some(map.next_value::<Fd>()?),
                "len" if len.is_none() => len = Some(map.next_value::<u64>()?),
                _ => return Err(de::Error::unknown_field(&key, FIELDS)),
            }
        }
        let memory = memory.ok_or_else(|| de::Error::missing_field(FIELDS[0]))?;
        let len = len.ok_or_else(|| de::Error::missing_field(FIELDS[1]))?;
        let memory = memory.into_owned();
        let map = sys::open_sealed(memory.as_fd(), len)
            .map_err(|why| de::Error::custom(format!("SharedBytes refused: {why}")))?;
        Ok(SharedBytes {
            inner: Arc::new(Inner::Sealed { memory, map }),
        })
    }
}
