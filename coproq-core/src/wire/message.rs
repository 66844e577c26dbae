//! Messages and how they are laid out in a frame.
//!
//! A `Hello` payload is the magic, the protocol version (`u32` LE) and a bincode body, so
//! that a future version can change everything after the version and still be told apart.
//! Every other payload is a bincode [`Header`], ending with the shape of the body's value,
//! followed directly by the body: the bincode bytes of the user's value, never decoded by
//! the link itself.

use serde::{Deserialize, Serialize};

use super::frame;
use super::header::{self, Header, Outcome, OutcomeKind};
use super::shape::{self, BYTES_SHAPE};
use super::{WireError, codec, returned};

/// Marks a coproq link; the first bytes of the first frame each side sends.
pub(crate) const MAGIC: [u8; 8] = *b"\0coproq\0";

/// The version of coproq's wire protocol that this build speaks, bumped on every
/// incompatible change of its layout. Both ends of a link must speak the same one: a peer
/// of another version is refused at the handshake, with an error naming both versions.
pub const PROTOCOL_VERSION: u32 = 10;

/// The first message each side sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The largest frame payload this side accepts.
    pub(crate) max_frame: u32,
    /// Parent → fork worker: what to run.
    pub(crate) entry: Option<ForkEntry>,
    /// This side is the parent: a link needs one parent and one worker (a command that
    /// echoes its input would otherwise pass for a worker).
    pub(crate) parent: bool,
    /// Parent → worker: how often both ends ping, in milliseconds (0: never).
    pub(crate) heartbeat_ms: u32,
    /// Parent → worker: how long a thread waiting for the peer spins before it sleeps,
    /// in microseconds (0: never), unless the worker chose for itself.
    pub(crate) spin_us: u32,
    /// How many bytes of calls and events this side holds before they run: the peer's
    /// window (see `link::credit`).
    pub(crate) window: u32,
    /// Parent → worker: how many of the parent's calls the worker runs at once (0 or 1:
    /// one at a time), unless the worker chose for itself.
    pub(crate) concurrency: u32,
    /// Parent → worker: say when each call starts (`Started`), for a pool that limits
    /// running time or kills only workers running a call past its deadline.
    pub(crate) report_starts: bool,
    /// Parent → worker: the most data (heap and private mappings) the worker may hold,
    /// in bytes, which it sets as its own limit (0: none).
    pub(crate) memory_limit: u64,
    /// This side's monotonic clock when it sent the `Hello`, in microseconds, offered for
    /// the peer to tell whether both share it (0: not offered; see `link::clock`).
    pub(crate) clock_us: u64,
    /// This side holds its end of a socket that passes descriptors (a local worker's
    /// link): descriptors travel only where both sides say so.
    pub(crate) descriptors: bool,
    /// This side's process id: where `descriptors` says the peer is on this machine, a
    /// thread waiting for it learns from the peer's CPUs whether spinning can pay.
    pub(crate) pid: u32,
}

/// A fork worker's entry: functions as offsets from an anchor function in the (shared)
/// executable, and the data for the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ForkEntry {
    /// The function that decodes `data` and calls `function` with it.
    pub(crate) run: u64,
    /// The user's entry function.
    pub(crate) function: u64,
    /// The entry's data, encoded with its shape (empty for a plain `fork`).
    pub(crate) data: crate::bytes::ByteBuf,
}

/// The user bytes of a message (and the method or event name), kept inside the frame
/// they arrived in: nothing is copied out.
#[derive(Debug)]
pub(crate) struct Body {
    frame: frame::FrameBuf,
    /// Where the frame's buffer goes back to.
    pool: Option<std::sync::Arc<frame::BufferPool>>,
    /// Where the value's bytes start in the frame.
    start: u32,
    name: Span,
    /// Where the shape of the sender's value lies in the frame.
    shape: Span,
    /// The descriptors that came with the message (see `descriptors`), closed with it
    /// (boxed: nearly every message has none, and a message is moved a few times).
    descriptors: Option<Box<[std::os::fd::OwnedFd]>>,
}

/// Where a part of a frame lies (frames are at most 4 GiB: `u32` offsets keep a message
/// small, and it is moved a few times on its way to its handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `range`; `None` past the 4 GiB that offsets reach.
    fn of(range: std::ops::Range<usize>) -> Option<Self> {
        Some(Self {
            start: u32::try_from(range.start).ok()?,
            end: u32::try_from(range.end).ok()?,
        })
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let (Some(pool), frame::FrameBuf::Heap(buf) | frame::FrameBuf::Split { tail: buf, .. }) =
            (&self.pool, &mut self.frame)
        {
            pool.give(std::mem::take(buf));
        }
    }
}

impl Body {
    /// The body of a run of events, kept whole in its frame: the events' name and shape
    /// lie at `name` and `shape`, their items from `items` on (checked by the caller).
    pub(super) fn run(
        frame: frame::FrameBuf,
        pool: Option<std::sync::Arc<frame::BufferPool>>,
        name: std::ops::Range<usize>,
        shape: std::ops::Range<usize>,
        items: usize,
    ) -> Option<Self> {
        Some(Self {
            frame,
            pool,
            start: u32::try_from(items).ok()?,
            name: Span::of(name)?,
            shape: Span::of(shape)?,
            descriptors: None,
        })
    }

    /// Gives the message the descriptors that came with it.
    pub(crate) fn set_descriptors(&mut self, descriptors: Vec<std::os::fd::OwnedFd>) {
        self.descriptors = Some(descriptors.into_boxed_slice());
    }

    /// Where the first event of a run's body starts (see `run::event_at`).
    pub(crate) fn first_run_event(&self) -> usize {
        self.start as usize
    }

    /// The frame's payload, where a run's items are found (see `run::event_at`).
    pub(crate) fn payload(&self) -> &[u8] {
        self.frame.as_slice()
    }

    /// The arguments of the run's event whose value lies at `value` in the payload: the
    /// run's name and shape, with that value.
    pub(crate) fn run_event(&self, value: std::ops::Range<usize>) -> Args<'_> {
        let payload = self.frame.as_slice();
        Args::InPlace {
            name: payload.get(self.name.range()).unwrap_or_default(),
            shape: payload.get(self.shape.range()).unwrap_or_default(),
            bytes: payload.get(value).unwrap_or_default(),
        }
    }

    /// The bincode bytes of the sender's value (of a payload that did not arrive split).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.frame.as_slice()[self.start as usize..]
    }

    /// Decodes the value, checked against its shape at every depth: a large byte string
    /// is handed over in the frame's own buffer (see `direct`), anything else is decoded
    /// from the bytes.
    #[inline]
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, WireError> {
        let Some(descriptors) = self.descriptors.take() else {
            return self.decode_value();
        };
        let mut descriptors = descriptors.into_vec();
        let decoded = super::descriptors::decoding(&mut descriptors, || self.decode_value());
        self.descriptors = Some(descriptors.into_boxed_slice());
        decoded
    }

    /// [`Body::decode`], where the descriptors (if any) are in place.
    #[inline]
    fn decode_value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, WireError> {
        if super::byte_vec::is_byte_vec::<T>() && shape::is_byte_string(self.shape()) {
            // A `Vec<u8>` asks for a sequence, element by element: take the byte string
            // whole instead (in the frame's own buffer where it is large).
            let bytes = self.decode_value::<crate::bytes::ByteBuf>()?.into_vec();
            return super::byte_vec::into_byte_vec(bytes)
                .ok_or_else(|| WireError::Mismatch("not bytes".into()));
        }
        let bytes_only = shape::is_byte_string(self.shape());
        match &mut self.frame {
            _ if !bytes_only => {}
            // The bytes arrived in a buffer of their own: hand it over as it is.
            frame::FrameBuf::Split { tail, .. } => {
                let mut bytes = Some(std::mem::take(tail));
                if let Some(value) = super::direct::decode_owned(&mut bytes, 0) {
                    return Ok(value);
                }
                *tail = bytes.unwrap_or_default();
            }
            frame::FrameBuf::Heap(buf) => {
                let start = self.start as usize;
                let whole = buf
                    .get(start..)
                    .and_then(|body| body.split_first_chunk::<8>())
                    .is_some_and(|(len, rest)| {
                        rest.len() >= super::direct::DIRECT_MIN
                            && u64::from_le_bytes(*len) == rest.len() as u64
                    });
                if whole {
                    let mut frame = Some(std::mem::take(buf));
                    if let Some(value) = super::direct::decode_owned(&mut frame, start + 8) {
                        return Ok(value);
                    }
                    *buf = frame.unwrap_or_default();
                }
            }
            frame::FrameBuf::Inline { .. } => {}
        }
        let (shape, start) = (self.shape.range(), self.start as usize);
        let frame = self.frame.contiguous();
        let shape = frame.get(shape).unwrap_or_default();
        let bytes = frame.get(start..).unwrap_or_default();
        // A `Vec<u8>` of a byte string took the branch at the top.
        codec::decode_checked(shape, bytes)
    }

    /// The shape of the sender's value (empty once the frame's buffer was handed over).
    #[inline]
    pub(crate) fn shape(&self) -> &[u8] {
        self.frame
            .as_slice()
            .get(self.shape.range())
            .unwrap_or_default()
    }

    /// The bincode bytes of the sender's value, joined into one buffer if they arrived
    /// split.
    pub(crate) fn contiguous(&mut self) -> &[u8] {
        // Empty once a byte buffer has been handed over by `decode`.
        let start = self.start as usize;
        self.frame.contiguous().get(start..).unwrap_or_default()
    }

    /// The method or event name (empty for replies).
    pub(crate) fn name(&self) -> &str {
        // Empty once the frame's buffer has been handed over by `decode`.
        let bytes = self
            .frame
            .as_slice()
            .get(self.name.range())
            .unwrap_or_default();
        // Validated as UTF-8 by `header::decode`; checking again costs a few nanoseconds.
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

/// Decodes a value from `bytes` in a batch, checked against its `shape` at every depth;
/// a `Vec<u8>` takes a byte string whole rather than element by element (as
/// [`Body::decode`] does, without its hand-over of a frame's own buffer).
fn decode_in_place<T: serde::de::DeserializeOwned>(
    shape: &[u8],
    bytes: &[u8],
) -> Result<T, WireError> {
    if super::byte_vec::is_byte_vec::<T>() && shape::is_byte_string(shape) {
        let bytes = codec::decode_checked::<crate::bytes::ByteBuf>(shape, bytes)?.into_vec();
        return super::byte_vec::into_byte_vec(bytes)
            .ok_or_else(|| WireError::Mismatch("not bytes".into()));
    }
    codec::decode_checked(shape, bytes)
}

/// A call or event that a serving thread read into its batch's bytes, where it stays
/// until it runs: where its parts lie in those bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    /// A call's id and its caller's deadline, as the wire has it (see `link::clock`);
    /// `None` for an event.
    pub(crate) call: Option<(u64, u64)>,
    name: Span,
    shape: Span,
    body: Span,
}

impl Request {
    /// Decodes the header of `payload`, which starts at `at` in the batch's bytes, if it
    /// is a call or an event; `None` for any other message, or a malformed one (the
    /// general path then reads it, and reports what is wrong).
    pub(crate) fn decode(payload: &[u8], at: usize) -> Option<Self> {
        let head = header::decode_request(payload).filter(|head| !head.run)?;
        let origin = payload.as_ptr() as usize;
        let offset = |inside: usize| u32::try_from(at + inside).ok();
        let span = |part: &[u8]| -> Option<Span> {
            let inside = (part.as_ptr() as usize).checked_sub(origin)?;
            Some(Span {
                start: offset(inside)?,
                end: offset(inside + part.len())?,
            })
        };
        Some(Self {
            call: head.call,
            name: span(head.name)?,
            shape: span(head.shape)?,
            body: Span {
                start: offset(head.body)?,
                end: offset(payload.len())?,
            },
        })
    }

    /// An event whose name, shape and value lie at these ranges of a batch's bytes;
    /// `None` past the 4 GiB that offsets reach.
    pub(super) fn event_at(
        name: std::ops::Range<usize>,
        shape: std::ops::Range<usize>,
        value: std::ops::Range<usize>,
    ) -> Option<Self> {
        Some(Self {
            call: None,
            name: Span::of(name)?,
            shape: Span::of(shape)?,
            body: Span::of(value)?,
        })
    }

    /// Whether `other`, from the same batch's bytes, has its name at the same place (the
    /// events of one run do): then the names are the same, without comparing them.
    pub(crate) fn name_at_same_place(&self, other: &Self) -> bool {
        self.name == other.name
    }

    /// The arguments, in `bytes` (the batch's bytes this request was decoded into).
    pub(crate) fn args(self, bytes: &[u8]) -> Args<'_> {
        let part = |span: Span| bytes.get(span.range()).unwrap_or_default();
        Args::InPlace {
            name: part(self.name),
            shape: part(self.shape),
            bytes: part(self.body),
        }
    }
}

/// The arguments of a call or event, as its handler receives them: a message of its own,
/// or bytes in a serving thread's batch.
#[derive(Debug)]
pub(crate) enum Args<'a> {
    /// A message read on its own (a large one keeps its byte string in its own buffer).
    Body(Body),
    /// In a batch's bytes: the name (checked as UTF-8 when read), the shape of the value,
    /// and the value's bytes.
    InPlace {
        name: &'a [u8],
        shape: &'a [u8],
        bytes: &'a [u8],
    },
}

impl Args<'_> {
    /// The method or event name, as bytes.
    pub(crate) fn name_bytes(&self) -> &[u8] {
        match self {
            Self::Body(body) => body.name().as_bytes(),
            Self::InPlace { name, .. } => name,
        }
    }

    /// The method or event name.
    pub(crate) fn name(&self) -> &str {
        std::str::from_utf8(self.name_bytes()).unwrap_or_default()
    }

    /// Decodes the value, checked against its shape (see [`Body::decode`]).
    #[inline]
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, WireError> {
        match self {
            Self::Body(body) => body.decode(),
            Self::InPlace { shape, bytes, .. } => decode_in_place(shape, bytes),
        }
    }
}

/// A decoded message (other than `Hello`).
#[derive(Debug)]
pub(crate) enum Message {
    Call {
        id: u64,
        /// The caller's deadline, as the wire has it (see `link::clock`).
        deadline: u64,
        body: Body,
    },
    Event {
        body: Body,
    },
    Reply {
        id: u64,
        outcome: Outcome,
        body: Body,
    },
    Bye,
    /// The caller of call `id` stopped waiting.
    Cancel {
        id: u64,
    },
    /// A heartbeat.
    Ping,
    /// The peer grants `bytes` more of calls and events.
    Credit {
        bytes: u64,
    },
    /// The worker started running call `id` (sent where the parent asked for it).
    Started {
        id: u64,
    },
    /// A run of `events` events of one name and shape, kept whole in its frame (see
    /// `run::events`).
    Run {
        body: Body,
        events: u32,
    },
}

/// Why a message could not be encoded.
#[derive(Debug)]
pub(crate) enum EncodeError {
    /// The user's value failed to serialize.
    Value(WireError),
    /// The frame exceeds the peer's limit.
    TooLarge(frame::FrameError),
}

/// Appends a frame's length prefix and `header` up to its shape; returns where the frame
/// starts. The caller appends the shape and the body.
#[inline]
pub(super) fn header_prefix(buf: &mut Vec<u8>, header: &Header<'_>) -> usize {
    let start = frame::begin(buf);
    header::encode_prefix(buf, header);
    start
}

/// Appends a frame's length prefix and the whole `header`; returns where the frame starts.
fn whole_header(buf: &mut Vec<u8>, header: &Header<'_>) -> usize {
    let start = frame::begin(buf);
    header::encode(buf, header);
    start
}

#[inline]
pub(super) fn seal(buf: &mut [u8], start: usize, max: u32) -> Result<(), EncodeError> {
    frame::end(buf, start, max).map_err(EncodeError::TooLarge)
}

/// Builds the frame of a `Hello`.
pub(crate) fn encode_hello(buf: &mut Vec<u8>, hello: &Hello) {
    let start = frame::begin(buf);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    codec::encode_into(hello, buf).expect("hello always encodes");
    frame::end(buf, start, u32::MAX).expect("hello is small");
}

/// Reads a `Hello` payload, with errors that say what the peer is.
pub(crate) fn decode_hello(payload: &[u8]) -> Result<Hello, WireError> {
    let Some(rest) = payload.strip_prefix(&MAGIC) else {
        return Err(WireError::Malformed(
            "the peer is not a coproq endpoint (bad magic in its first frame)".into(),
        ));
    };
    let Some((version, body)) = rest.split_first_chunk::<4>() else {
        return Err(WireError::Malformed("the peer's hello is truncated".into()));
    };
    let version = u32::from_le_bytes(*version);
    if version != PROTOCOL_VERSION {
        return Err(WireError::Malformed(format!(
            "protocol version mismatch: the peer speaks version {version}, this side speaks {PROTOCOL_VERSION}"
        )));
    }
    codec::decode_exact(body).map_err(|e| WireError::Malformed(format!("malformed hello: {e}")))
}

/// Builds the frame of a call of `name` with `args`.
#[inline]
pub(crate) fn encode_call<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    call: CallHead<'_>,
    args: &T,
    max: u32,
) -> Result<(), EncodeError> {
    encode_with_args(buf, &call.header(&[]), args, max)
}

/// Builds the frame of a call whose arguments were encoded before (by [`encode_args`]).
pub(crate) fn encode_call_encoded(
    buf: &mut Vec<u8>,
    call: CallHead<'_>,
    args: &EncodedArgs,
    max: u32,
) -> Result<(), EncodeError> {
    let start = header_prefix(buf, &call.header(&[]));
    buf.extend_from_slice(&args.0);
    seal(buf, start, max)
}

/// Arguments encoded once, with their shape, to be sent later in a call of any id (a
/// pool's queued call).
#[derive(Debug, Clone)]
pub(crate) struct EncodedArgs(Vec<u8>);

/// Encodes `args` with their shape, as a call frame carries them.
pub(crate) fn encode_args<T: Serialize + ?Sized>(args: &T) -> Result<EncodedArgs, EncodeError> {
    let mut buf = Vec::new();
    codec::encode_shaped(args, &mut buf).map_err(EncodeError::Value)?;
    Ok(EncodedArgs(buf))
}

/// What a call's header says besides its arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallHead<'a> {
    pub(crate) id: u64,
    pub(crate) name: &'a str,
    /// The caller's deadline, as the wire has it (see `link::clock`); 0: none.
    pub(crate) deadline: u64,
}

impl<'a> CallHead<'a> {
    #[inline]
    fn header(self, shape: &'a [u8]) -> Header<'a> {
        Header::Call {
            id: self.id,
            deadline: self.deadline,
            name: self.name,
            shape,
        }
    }
}
/// Builds the head of a call frame whose arguments are one byte string of `len` bytes,
/// to be written right after it from the caller's memory (see `direct`).
pub(crate) fn encode_call_head(
    buf: &mut Vec<u8>,
    call: CallHead<'_>,
    len: usize,
    max: u32,
) -> Result<(), EncodeError> {
    let start = whole_header(buf, &call.header(BYTES_SHAPE));
    direct_head(buf, start, len, max)
}

/// Builds the head of a reply frame whose value is one byte string of `len` bytes.
pub(crate) fn encode_reply_head(
    buf: &mut Vec<u8>,
    id: u64,
    len: usize,
    max: u32,
) -> Result<(), EncodeError> {
    let header = Header::Reply {
        id,
        outcome: Outcome::Value,
        shape: BYTES_SHAPE,
    };
    let start = whole_header(buf, &header);
    direct_head(buf, start, len, max)
}

/// Ends a head: the byte string's `u64` length, and the frame length as if its bytes
/// followed in `buf`.
fn direct_head(buf: &mut Vec<u8>, start: usize, len: usize, max: u32) -> Result<(), EncodeError> {
    buf.extend_from_slice(&(len as u64).to_le_bytes());
    let total = (buf.len() - start - frame::HEADER_LEN) as u64 + len as u64;
    let Ok(total32) = u32::try_from(total) else {
        return Err(EncodeError::TooLarge(frame::FrameError::TooLarge {
            len: total,
            max,
        }));
    };
    if total32 > max {
        return Err(EncodeError::TooLarge(frame::FrameError::TooLarge {
            len: total,
            max,
        }));
    }
    buf[start..start + frame::HEADER_LEN].copy_from_slice(&total32.to_le_bytes());
    Ok(())
}

/// Builds the frame of an event `name` with `args`, on its own (a link's events go
/// through `run::encode_event`).
#[cfg(test)]
pub(crate) fn encode_event<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    name: &str,
    args: &T,
    max: u32,
) -> Result<(), EncodeError> {
    encode_with_args(buf, &Header::Event { name, shape: &[] }, args, max)
}

/// Builds a frame of `header` (whose shape is ignored) and `args` with their shape.
fn encode_with_args<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    header: &Header<'_>,
    args: &T,
    max: u32,
) -> Result<(), EncodeError> {
    let start = header_prefix(buf, header);
    codec::encode_shaped(args, buf).map_err(EncodeError::Value)?;
    seal(buf, start, max)
}
/// Builds the frame of a reply carrying what a handler returned. A returned `Result`
/// is unwrapped: `Ok(v)` replies `v`, `Err(e)` replies an error with `e`'s text and value.
#[inline]
pub(crate) fn encode_reply<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    id: u64,
    value: &T,
    max: u32,
) -> Result<(), EncodeError> {
    match returned::classify(value) {
        returned::Class::Plain => reply_frame(buf, id, Outcome::Value, max, |buf| {
            codec::encode_shaped(value, buf)
        }),
        returned::Class::Ok => reply_frame(buf, id, Outcome::Value, max, |buf| {
            returned::encode_inner(value, buf)
        }),
        returned::Class::Err { text } => {
            reply_frame(buf, id, Outcome::typed_failure(text), max, |buf| {
                returned::encode_inner(value, buf)
            })
        }
    }
}

/// Builds the frame of a reply carrying a handler's error value `e` (not wrapped in a
/// `Result`), with `text` as its message.
pub(crate) fn encode_error_reply<E: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    id: u64,
    e: &E,
    text: String,
    max: u32,
) -> Result<(), EncodeError> {
    reply_frame(buf, id, Outcome::typed_failure(text), max, |buf| {
        codec::encode_shaped(e, buf)
    })
}

/// Builds a reply frame: the header with `outcome`, then the shaped value that `body`
/// appends.
fn reply_frame(
    buf: &mut Vec<u8>,
    id: u64,
    outcome: Outcome,
    max: u32,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), WireError>,
) -> Result<(), EncodeError> {
    let header = Header::Reply {
        id,
        outcome,
        shape: &[],
    };
    let start = header_prefix(buf, &header);
    body(buf).map_err(EncodeError::Value)?;
    seal(buf, start, max)
}

/// Builds the frame of a failed reply with no value.
pub(crate) fn encode_failure(buf: &mut Vec<u8>, id: u64, kind: OutcomeKind, message: String) {
    let header = Header::Reply {
        id,
        outcome: Outcome::Error {
            kind,
            message,
            typed: false,
        },
        shape: &[],
    };
    let start = whole_header(buf, &header);
    frame::end(buf, start, u32::MAX).expect("failure replies are small");
}

/// Builds the frame of a `Bye`.
pub(crate) fn encode_bye(buf: &mut Vec<u8>) {
    let start = whole_header(buf, &Header::Bye);
    frame::end(buf, start, u32::MAX).expect("bye is small");
}

/// Builds the frame of a `Ping`.
pub(crate) fn encode_ping(buf: &mut Vec<u8>) {
    let start = whole_header(buf, &Header::Ping);
    frame::end(buf, start, u32::MAX).expect("ping is small");
}

/// Whether `payload` is a `Ping`'s.
pub(crate) fn is_ping(payload: &[u8]) -> bool {
    matches!(header::decode(payload), Ok((Header::Ping, used)) if used == payload.len())
}

/// Builds the frame of a grant of `bytes` more calls and events.
pub(crate) fn encode_credit(buf: &mut Vec<u8>, bytes: u64) {
    let start = whole_header(buf, &Header::Credit { bytes });
    frame::end(buf, start, u32::MAX).expect("a grant is small");
}

/// Builds the frame of a `Started` of call `id`.
pub(crate) fn encode_started(buf: &mut Vec<u8>, id: u64) {
    let start = whole_header(buf, &Header::Started { id });
    frame::end(buf, start, u32::MAX).expect("a start is small");
}

/// Builds the frame that announces `count` descriptors for the frame after it.
pub(crate) fn encode_descriptors(buf: &mut Vec<u8>, count: u32) {
    let start = whole_header(buf, &Header::Descriptors { count });
    frame::end(buf, start, u32::MAX).expect("an announcement is small");
}

/// How many descriptors `payload` announces, if it is a `Descriptors` frame's; `Err` if
/// it is one but malformed.
pub(crate) fn announced_descriptors(payload: &[u8]) -> Option<Result<u32, WireError>> {
    if !header::is_descriptors(payload) {
        return None;
    }
    Some(match header::decode(payload) {
        Ok((Header::Descriptors { count }, used)) if used == payload.len() => Ok(count),
        _ => Err(WireError::Malformed(
            "malformed announcement of descriptors".into(),
        )),
    })
}

/// Builds the frame of a `Cancel` of call `id`.
pub(crate) fn encode_cancel(buf: &mut Vec<u8>, id: u64) {
    let start = whole_header(buf, &Header::Cancel { id });
    frame::end(buf, start, u32::MAX).expect("cancel is small");
}

/// Where the bytes of a byte string that ends a payload of `len` bytes start, judging
/// from the payload's first bytes; `None` if it does not end in one (a run of events
/// never does: it ends in items).
pub(crate) fn byte_string_at(prefix: &[u8], len: usize) -> Option<usize> {
    let (head, start) = header::decode(prefix).ok()?;
    if matches!(head, Header::Run { .. }) {
        return None;
    }
    let (count, _) = prefix.get(start..)?.split_first_chunk::<8>()?;
    let at = start + 8;
    (u64::from_le_bytes(*count) == (len - at) as u64).then_some(at)
}

/// Decodes a payload (other than the first) into a message.
#[cfg(test)]
pub(crate) fn decode(payload: Vec<u8>) -> Result<Message, WireError> {
    decode_pooled(payload.into(), None)
}

/// Decodes a payload (other than the first) into a message; the payload's buffer goes
/// back to `pool` when the message is done with.
pub(crate) fn decode_pooled(
    payload: frame::FrameBuf,
    pool: Option<&std::sync::Arc<frame::BufferPool>>,
) -> Result<Message, WireError> {
    let bytes = payload.as_slice();
    let (head, start) = header::decode(bytes)
        .map_err(|e| WireError::Malformed(format!("malformed message: {e}")))?;
    let no_body = start == bytes.len();
    // Where a borrowed name or shape lies in the payload.
    let origin = bytes.as_ptr() as usize;
    // Payloads are at most `u32::MAX` bytes (their length prefix is a `u32`).
    let offset = |at: usize| u32::try_from(at).unwrap_or(u32::MAX);
    let span = |part: &[u8]| match (part.as_ptr() as usize).checked_sub(origin) {
        Some(at) if !part.is_empty() => Span {
            start: offset(at),
            end: offset(at + part.len()),
        },
        // Empty parts (a `Bye`'s shape) need not point into the payload.
        _ => Span { start: 0, end: 0 },
    };
    let start = offset(start);
    let shape = span(head.shape());
    // Only heap buffers go back to the pool.
    let pool = pool.filter(|_| !matches!(&payload, frame::FrameBuf::Inline { .. }));
    // The payload goes last: the header borrows it until `span` has read it.
    let body = |name, shape, frame| Body {
        frame,
        pool: pool.cloned(),
        start,
        name,
        shape,
        descriptors: None,
    };
    let message = match head {
        Header::Call {
            id, deadline, name, ..
        } => Message::Call {
            id,
            deadline,
            body: body(span(name.as_bytes()), shape, payload),
        },
        Header::Event { name, .. } => Message::Event {
            body: body(span(name.as_bytes()), shape, payload),
        },
        Header::Reply { id, outcome, .. } => {
            let valued = matches!(outcome, Outcome::Value | Outcome::Error { typed: true, .. });
            if !valued && !no_body {
                return Err(WireError::Malformed(
                    "trailing bytes after an error reply".into(),
                ));
            }
            Message::Reply {
                id,
                outcome,
                body: body(Span { start: 0, end: 0 }, shape, payload),
            }
        }
        Header::Bye if no_body => Message::Bye,
        Header::Bye => return Err(WireError::Malformed("trailing bytes after bye".into())),
        Header::Cancel { id } if no_body => Message::Cancel { id },
        Header::Cancel { .. } => {
            return Err(WireError::Malformed("trailing bytes after cancel".into()));
        }
        Header::Ping if no_body => Message::Ping,
        Header::Ping => return Err(WireError::Malformed("trailing bytes after ping".into())),
        Header::Credit { bytes } if no_body => Message::Credit { bytes },
        Header::Started { id } if no_body => Message::Started { id },
        Header::Started { .. } => {
            return Err(WireError::Malformed("trailing bytes after a start".into()));
        }
        Header::Credit { .. } => {
            return Err(WireError::Malformed("trailing bytes after a grant".into()));
        }
        Header::Run { .. } => {
            return Err(WireError::Malformed(
                "malformed message: a run of events where a message was expected".into(),
            ));
        }
        Header::Descriptors { .. } => {
            return Err(WireError::Malformed(
                "descriptors announced where a message was expected".into(),
            ));
        }
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &[u8]) -> Vec<u8> {
        frame[frame::HEADER_LEN..].to_vec()
    }

    #[test]
    fn hello_round_trip_and_mismatch() {
        let mut buf = Vec::new();
        let hello = Hello {
            max_frame: 77,
            entry: Some(ForkEntry {
                run: 5,
                function: 6,
                data: crate::bytes::ByteBuf(vec![1, 2]),
            }),
            parent: true,
            heartbeat_ms: 250,
            spin_us: 20,
            window: 1 << 22,
            concurrency: 8,
            report_starts: true,
            memory_limit: 1 << 30,
            clock_us: 123_456_789,
            descriptors: true,
            pid: 4321,
        };
        encode_hello(&mut buf, &hello);
        assert_eq!(decode_hello(&payload(&buf)).unwrap(), hello);

        let mut wrong = payload(&buf);
        wrong[8..12].copy_from_slice(&99u32.to_le_bytes());
        let err = decode_hello(&wrong).unwrap_err();
        assert!(err.to_string().contains("version mismatch"), "{err}");
        assert!(
            decode_hello(b"garbage garbage")
                .unwrap_err()
                .to_string()
                .contains("not a coproq endpoint")
        );
    }

    #[test]
    fn call_round_trip() {
        let mut buf = Vec::new();
        let head = CallHead {
            id: 9,
            name: "add",
            deadline: 1_500_000,
        };
        encode_call(&mut buf, head, &(1i32, 2i32), 1024).unwrap();
        let Message::Call { id, deadline, body } = decode(payload(&buf)).unwrap() else {
            panic!()
        };
        assert_eq!((id, body.name()), (9, "add"));
        assert_eq!(deadline, 1_500_000);
        assert_eq!(
            codec::decode_checked::<(i32, i32)>(body.shape(), body.bytes()).unwrap(),
            (1, 2)
        );
    }

    #[test]
    fn reply_unwraps_results() {
        let mut buf = Vec::new();
        encode_reply(&mut buf, 1, &Ok::<u32, String>(5), 1024).unwrap();
        let Message::Reply { outcome, body, .. } = decode(payload(&buf)).unwrap() else {
            panic!()
        };
        assert_eq!(outcome, Outcome::Value);
        assert_eq!(
            codec::decode_checked::<u32>(body.shape(), body.bytes()).unwrap(),
            5
        );

        buf.clear();
        encode_reply(&mut buf, 2, &Err::<u32, String>("no".into()), 1024).unwrap();
        let Message::Reply { outcome, body, .. } = decode(payload(&buf)).unwrap() else {
            panic!()
        };
        let Outcome::Error {
            kind: OutcomeKind::Failed,
            message,
            typed: true,
        } = outcome
        else {
            panic!()
        };
        assert_eq!(message, "no");
        assert_eq!(
            codec::decode_checked::<String>(body.shape(), body.bytes()).unwrap(),
            "no"
        );
    }

    #[test]
    fn a_body_whose_buffer_was_handed_over_decodes_no_more_and_does_not_panic() {
        // Found by the fuzz test: a second decode after a byte buffer took the frame.
        let big = vec![9u8; crate::wire::direct::DIRECT_MIN];
        let mut buf = Vec::new();
        let head = CallHead {
            id: 1,
            name: "bytes",
            deadline: 0,
        };
        encode_call(&mut buf, head, &crate::bytes::Bytes(&big), u32::MAX).unwrap();
        let Message::Call { mut body, .. } = decode(payload(&buf)).unwrap() else {
            panic!()
        };
        assert_eq!(body.name(), "bytes");
        let taken: crate::bytes::ByteBuf = body.decode().unwrap();
        assert_eq!(taken.into_vec(), big);
        assert!(body.decode::<crate::bytes::ByteBuf>().is_err());
        assert_eq!(body.name(), "");
    }

    #[test]
    fn too_large_is_refused() {
        let mut buf = Vec::new();
        let err = encode_event(&mut buf, "e", &vec![0u8; 100], 50).unwrap_err();
        assert!(matches!(err, EncodeError::TooLarge(_)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x07\0\0\0",
            b"\0\0\0\0\x01\0\0\0\0\0\0\0\xff\xff\xff\xff",
            b"\x03\0\0\0x",
        ] {
            assert!(decode(bad.to_vec()).is_err(), "{bad:?}");
        }
    }
}
