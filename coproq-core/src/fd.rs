//! [`Fd`]: a file descriptor as a value of arguments, replies and events.

use std::fmt;
use std::fs::File;
use std::io::{PipeReader, PipeWriter};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};

use crate::wire::descriptors::{self, FD_NAME};

/// A file descriptor that travels as a value: an open file, a socket, a pipe, anything
/// the process holds open, handed to the process at the other end of the link.
///
/// Put one in the arguments of a call, a reply or an event (at any depth, up to 253 in
/// one message) and the receiver gets a descriptor of its own for the same open file
/// description: the same file and offset, the same connection. It is how a parent that
/// may open files and sockets hands them to a worker that may not (privilege
/// separation), or hands over a connection it accepted.
///
/// ```no_run
/// use std::io::Read;
///
/// let worker = coproq::fork(|parent| {
///     parent.handle("read_all", |file: coproq::Fd| -> Result<String, String> {
///         let mut text = String::new();
///         std::fs::File::from(file).read_to_string(&mut text).map_err(|e| e.to_string())?;
///         Ok(text)
///     });
/// })?;
/// let file = std::fs::File::open("/etc/hostname").expect("readable");
/// let text: String = worker.call("read_all", coproq::Fd::from(file))?;
/// # Ok::<(), coproq::Error>(())
/// ```
///
/// - Sending an `Fd` sends a duplicate: the sender's own stays open until it drops it
///   (drop it if the worker should be the only holder, for example of a pipe's write end
///   whose end of stream the worker waits for).
/// - Every descriptor received is close-on-exec, and closed with its message if the
///   message is refused (an unknown method, arguments that do not decode, a call
///   cancelled before it ran).
/// - Descriptors travel only through links to local workers (fork workers and worker
///   binaries), over a Unix socket beside the link's pipes (`SCM_RIGHTS`). Through a
///   worker over ssh (`via`) or `spawn_stdio`, in the arguments of a
///   [`Pool`](crate::Pool)'s call (which may run again on another worker; its replies
///   carry descriptors), or through any serializer other than a link's, an `Fd` fails to serialize with an error that says so: the call fails, the
///   link goes on.
pub struct Fd(OwnedFd);

impl Fd {
    /// Wraps an open descriptor.
    pub fn new(fd: impl Into<OwnedFd>) -> Self {
        Self(fd.into())
    }

    /// The descriptor, owned.
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }

    /// Another `Fd` for the same open file description (`dup`).
    pub fn try_clone(&self) -> std::io::Result<Self> {
        self.0.try_clone().map(Self)
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd").field(&self.0.as_raw_fd()).finish()
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl IntoRawFd for Fd {
    fn into_raw_fd(self) -> RawFd {
        self.0.into_raw_fd()
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Self {
        Self(fd)
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> Self {
        fd.0
    }
}

/// `From` both ways between `Fd` and the standard types that own a descriptor.
macro_rules! conversions {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Fd {
            fn from(owner: $ty) -> Self {
                Self(OwnedFd::from(owner))
            }
        }

        impl From<Fd> for $ty {
            fn from(fd: Fd) -> Self {
                <$ty>::from(fd.0)
            }
        }
    )*};
}

conversions!(
    File,
    TcpStream,
    TcpListener,
    UdpSocket,
    UnixStream,
    UnixListener,
    UnixDatagram,
    PipeReader,
    PipeWriter,
);

/// The one field of an `Fd` on the wire: its index among its message's descriptors.
const FIELDS: &[&str] = &["descriptor"];

// On the wire an `Fd` is a struct of its own name with its index as its one field (not a
// bare number): a receiver that asks for a number where a descriptor was sent is told
// so, instead of reading the index.
impl Serialize for Fd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Lent(self.0.as_fd()).serialize(serializer)
    }
}

/// A descriptor serialized as an [`Fd`] is, without being owned (a duplicate joins the
/// frame's group, as for an `Fd`).
pub(crate) struct Lent<'fd>(pub(crate) BorrowedFd<'fd>);

impl Serialize for Lent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use ser::SerializeStruct;
        let index = descriptors::put(self.0).map_err(ser::Error::custom)?;
        let mut fd = serializer.serialize_struct(FD_NAME, 1)?;
        fd.serialize_field(FIELDS[0], &index)?;
        fd.end()
    }
}

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(FD_NAME, FIELDS, FdVisitor)
    }
}

/// Reads an `Fd`'s index and takes the descriptor it names.
struct FdVisitor;

impl FdVisitor {
    fn take<E: de::Error>(index: u32) -> Result<Fd, E> {
        descriptors::take(index).map(Fd).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for FdVisitor {
    type Value = Fd;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a descriptor (coproq::Fd)")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Fd, A::Error> {
        let index: u32 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        Self::take(index)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Fd, A::Error> {
        let mut index = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == FIELDS[0] && index.is_none() {
                index = Some(map.next_value::<u32>()?);
            } else {
                return Err(de::Error::unknown_field(&key, FIELDS));
            }
        }
        Self::take(index.ok_or_else(|| de::Error::missing_field(FIELDS[0]))?)
    }
}
