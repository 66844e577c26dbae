//! Frames: a `u32` little-endian payload length, then the payload.
//!
//! Reading never trusts the declared length for allocation: the buffer grows with the
//! bytes that actually arrive, so a hostile header costs nothing until data follows.

use std::io::{self, BufRead, ErrorKind, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// The first step of growth of a frame buffer; later steps double what arrived.
const CHUNK: usize = 64 * 1024;

/// Large frame buffers kept for the next large frame: a bulk transfer then reads into
/// warm memory instead of faulting in fresh pages for every message. At most two are
/// kept, and only while they are used: a small frame never keeps a large buffer.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    /// Buffers of at least `LARGE` bytes, at most `KEEP_LARGE` of them.
    large: Mutex<Vec<Vec<u8>>>,
    /// Smaller buffers, at most `KEEP_SMALL` of them.
    small: Mutex<Vec<Vec<u8>>>,
    /// How many buffers are held: a reader finds an empty pool without a lock.
    held: AtomicUsize,
}

/// Buffers at least this large serve large frames.
const LARGE: usize = 1 << 20;
const KEEP_LARGE: usize = 2;
const KEEP_SMALL: usize = 32;

impl BufferPool {
    fn list(&self, large: bool) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        let list = if large { &self.large } else { &self.small };
        list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A buffer to read a frame of about `len` bytes into (0 when unknown).
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let buf = self.list(len >= LARGE).pop();
        if buf.is_some() {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
        buf.unwrap_or_default()
    }

    /// Takes back a frame's buffer once the frame is done with.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        let large = buf.capacity() >= LARGE;
        let mut list = self.list(large);
        if list.len() < if large { KEEP_LARGE } else { KEEP_SMALL } {
            buf.clear();
            list.push(buf);
            self.held.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `frame` as it should be kept: a small frame read into a large pooled buffer is
    /// copied out, and the buffer goes back to the pool.
    pub(crate) fn fit(&self, frame: Vec<u8>) -> Vec<u8> {
        if frame.capacity() >= LARGE && frame.len() * 4 < frame.capacity() {
            let small = frame.clone();
            self.give(frame);
            small
        } else {
            frame
        }
    }
}

/// Size of the length prefix.
pub(crate) const HEADER_LEN: usize = 4;

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The stream failed.
    Io(io::Error),
    /// The header announced more than the configured maximum.
    TooLarge { len: u64, max: u32 },
    /// The stream ended inside a frame.
    Truncated { expected: u64, got: u64 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "read failed: {e}"),
            Self::TooLarge { len, max } => write!(f, "frame of {len} bytes exceeds limit of {max}"),
            Self::Truncated { expected, got } => {
                write!(f, "stream ended inside a frame ({got} of {expected} bytes)")
            }
        }
    }
}

/// Frames up to this size are kept inline: small calls and replies need no allocation.
pub(crate) const INLINE: usize = 48;

/// A frame's payload: inline when small, on the heap otherwise.
#[derive(Debug)]
pub(crate) enum FrameBuf {
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Vec<u8>),
    /// A large payload that ends in one byte string: everything before the string's
    /// bytes, and the bytes in a buffer of their own (handed over without a copy).
    Split {
        head: Vec<u8>,
        tail: Vec<u8>,
    },
}

impl FrameBuf {
    /// The payload; for a split one, only its head (see `contiguous`).
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(buf) | Self::Split { head: buf, .. } => buf,
        }
    }

    /// The payload's whole length, a split one's tail included.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Split { head, tail } => head.len() + tail.len(),
            other => other.as_slice().len(),
        }
    }

    /// Joins a split payload into one buffer (a copy: only for the rare reader that
    /// wants the bytes as something other than a byte buffer).
    pub(crate) fn contiguous(&mut self) -> &[u8] {
        if let Self::Split { head, tail } = self {
            let mut whole = std::mem::take(head);
            whole.extend_from_slice(tail);
            *self = Self::Heap(whole);
        }
        self.as_slice()
    }
}

impl From<Vec<u8>> for FrameBuf {
    fn from(buf: Vec<u8>) -> Self {
        Self::Heap(buf)
    }
}

/// Whether `buffered` starts with a whole frame.
pub(crate) fn whole_frame_buffered(buffered: &[u8]) -> bool {
    buffered
        .split_first_chunk::<HEADER_LEN>()
        .is_some_and(|(len, rest)| rest.len() >= u32::from_le_bytes(*len) as usize)
}

/// The whole length (prefix included) of the frame that `buffered` starts with, if its
/// prefix is there but not all of it, and it is at most `max`.
pub(crate) fn cut_frame_len(buffered: &[u8], max: u32) -> Option<usize> {
    let (len, rest) = buffered.split_first_chunk::<HEADER_LEN>()?;
    let len = u32::from_le_bytes(*len);
    (len <= max && rest.len() < len as usize).then_some(HEADER_LEN + len as usize)
}

/// Takes the next frame out of the read buffer if it is whole and small; consumes
/// nothing otherwise.
#[inline]
pub(crate) fn take_small_frame(reader: &mut impl BufRead, max: u32) -> Option<FrameBuf> {
    // `fill_buf` reads only when the buffer is empty, and then a reader wants to block.
    let buffered = reader.fill_buf().ok().filter(|b| !b.is_empty())?;
    let (frame, used) = small_frame(buffered, max)?;
    reader.consume(used);
    Some(frame)
}

/// A copy of the small frame that `buffered` starts with, if it is whole there and at
/// most `max`, and how many bytes it takes (prefix included).
pub(crate) fn small_frame(buffered: &[u8], max: u32) -> Option<(FrameBuf, usize)> {
    let (header, rest) = buffered.split_first_chunk::<HEADER_LEN>()?;
    let len = u32::from_le_bytes(*header);
    if len > max || len as usize > INLINE {
        return None;
    }
    let payload = rest.get(..len as usize)?;
    let mut bytes = [0; INLINE];
    bytes[..payload.len()].copy_from_slice(payload);
    let frame = FrameBuf::Inline {
        len: len as u8,
        bytes,
    };
    Some((frame, HEADER_LEN + payload.len()))
}

/// Reads one frame's payload into `buf` (replacing its contents).
///
/// Returns `Ok(false)` on a clean end of stream before any byte of a frame.
pub(crate) fn read_frame(
    reader: &mut impl BufRead,
    max: u32,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    Ok(!matches!(
        read_frame_split(reader, max, buf, |_, _| None)?,
        Frame::End
    ))
}

/// What [`read_frame_split`] read.
#[derive(Debug)]
pub(crate) enum Frame {
    /// The stream ended cleanly between frames.
    End,
    /// The whole payload is in the buffer.
    Whole,
    /// The head is in the buffer; this is the byte string that ends the payload.
    Split(Vec<u8>),
}

/// Reads one frame: into `buf`, or for a large frame that `tail_at` says ends in one
/// byte string, the head into `buf` and the bytes into the returned buffer (see
/// [`read_payload_split`]).
pub(crate) fn read_frame_split(
    reader: &mut impl BufRead,
    max: u32,
    buf: &mut Vec<u8>,
    tail_at: impl Fn(&[u8], usize) -> Option<usize>,
) -> Result<Frame, FrameError> {
    // The common case: the whole frame is already buffered; copy it out in one go.
    let copied = {
        let buffered = reader.fill_buf().map_err(FrameError::Io)?;
        if buffered.is_empty() {
            return Ok(Frame::End);
        }
        let whole = buffered
            .split_first_chunk::<HEADER_LEN>()
            .and_then(|(header, rest)| {
                let len = u32::from_le_bytes(*header);
                if len > max {
                    None
                } else {
                    rest.get(..len as usize)
                }
            });
        whole.map(|payload| {
            buf.clear();
            buf.extend_from_slice(payload);
            HEADER_LEN + payload.len()
        })
    };
    if let Some(consumed) = copied {
        reader.consume(consumed);
        return Ok(Frame::Whole);
    }
    let Some(len) = read_len(reader, max)? else {
        return Ok(Frame::End);
    };
    if len >= super::direct::DIRECT_MIN {
        return read_payload_split(reader, len, buf, tail_at)
            .map(|tail| tail.map_or(Frame::Whole, Frame::Split));
    }
    buf.clear();
    read_rest(reader, len, buf)?;
    Ok(Frame::Whole)
}

/// Reads the next frame however it comes: a small one whole from the read buffer
/// (inline, no allocation), a larger one into a buffer from `pool` sized by its length
/// prefix, and a large one that `tail_at` says ends in one byte string split, the bytes
/// landing in a buffer of their own. `None` at a clean end of stream between frames.
#[inline]
pub(crate) fn next_frame(
    reader: &mut impl BufRead,
    max: u32,
    pool: Option<&BufferPool>,
    tail_at: impl Fn(&[u8], usize) -> Option<usize>,
) -> Result<Option<FrameBuf>, FrameError> {
    if let Some(small) = take_small_frame(reader, max) {
        return Ok(Some(small));
    }
    // The length prefix is usually buffered already: a large frame gets a large pooled
    // buffer, a small one a small buffer.
    let hint = reader
        .fill_buf()
        .ok()
        .and_then(|b| b.first_chunk::<HEADER_LEN>())
        .map_or(0, |len| u32::from_le_bytes(*len) as usize);
    let mut head = pool.map_or_else(Vec::new, |pool| pool.take(hint));
    Ok(match read_frame_split(reader, max, &mut head, tail_at)? {
        Frame::End => None,
        Frame::Whole => Some(match pool {
            Some(pool) => pool.fit(head).into(),
            None => head.into(),
        }),
        Frame::Split(tail) => Some(FrameBuf::Split { head, tail }),
    })
}

/// How many leading bytes of a large payload are read before deciding whether it ends
/// in one byte string (enough for any header with a reasonable method name).
const PEEK: usize = 256;

/// Reads the payload of a frame whose length prefix (`len`) was just read. A large one
/// that `tail_at` (given its first bytes and its length) says ends in one byte string
/// starting at some offset is split there: `buf` gets the head, the result the bytes.
pub(crate) fn read_payload_split(
    reader: &mut impl Read,
    len: usize,
    buf: &mut Vec<u8>,
    tail_at: impl Fn(&[u8], usize) -> Option<usize>,
) -> Result<Option<Vec<u8>>, FrameError> {
    buf.clear();
    let truncated = |got: usize| FrameError::Truncated {
        expected: len as u64,
        got: got as u64,
    };
    let peek = len.min(PEEK);
    buf.reserve_exact(peek);
    if read_up_to(reader, peek, buf).map_err(FrameError::Io)? < peek {
        return Err(truncated(buf.len()));
    }
    let split =
        tail_at(buf, len).filter(|&at| at <= buf.len() && len - at >= super::direct::DIRECT_MIN);
    let Some(at) = split else {
        read_rest(reader, len, buf)?;
        return Ok(None);
    };
    // The buffer (maybe a warm one from the pool) carries on as the tail; the few head
    // bytes move to a buffer of their own.
    let mut tail = std::mem::take(buf);
    buf.extend_from_slice(&tail[..at]);
    tail.drain(..at);
    read_rest(reader, len - at, &mut tail).map_err(|e| match e {
        FrameError::Truncated { got, .. } => truncated(at + got as usize),
        e => e,
    })?;
    Ok(Some(tail))
}

/// Reads into `buf` until it holds `len` bytes, growing it with the data: never more
/// than what has arrived plus one chunk is reserved. (`read_to_end` on a `Take` fills
/// spare capacity without zeroing it first.)
fn read_rest(reader: &mut impl Read, len: usize, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    while buf.len() < len {
        let want = (len - buf.len()).min(buf.len().max(CHUNK));
        buf.reserve_exact(want);
        let n = read_up_to(reader, want, buf).map_err(FrameError::Io)?;
        if n < want {
            return Err(FrameError::Truncated {
                expected: len as u64,
                got: buf.len() as u64,
            });
        }
    }
    Ok(())
}

/// Reads a frame's length prefix; `None` at a clean end of stream.
pub(crate) fn read_len(reader: &mut impl Read, max: u32) -> Result<Option<usize>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).map_err(FrameError::Io)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated {
            expected: HEADER_LEN as u64,
            got: got as u64,
        });
    }
    let len = u32::from_le_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    Ok(Some(len as usize))
}

/// Appends up to `n` bytes to `buf`, stopping early only at the end of the stream.
fn read_up_to(reader: &mut impl Read, n: usize, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut got = 0;
    while got < n {
        match reader.take((n - got) as u64).read_to_end(buf) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Starts a frame at the end of `buf` (which may hold earlier frames): reserves the
/// length prefix and returns where the frame starts.
#[inline]
pub(crate) fn begin(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    start
}

/// Finishes the frame begun at `start`: writes the payload length into its prefix.
/// Fails if the payload is longer than `max`.
#[inline]
pub(crate) fn end(buf: &mut [u8], start: usize, max: u32) -> Result<(), FrameError> {
    let len = (buf.len() - start - HEADER_LEN) as u64;
    if len > u64::from(max) {
        return Err(FrameError::TooLarge { len, max });
    }
    buf[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let start = begin(&mut buf);
        buf.extend_from_slice(payload);
        end(&mut buf, start, u32::MAX).unwrap();
        buf
    }

    #[test]
    fn round_trip_several_frames() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b""));
        stream.extend(frame(&vec![7; 200_000]));
        let mut reader = &stream[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut reader, 1 << 20, &mut buf).unwrap());
        assert_eq!(buf, b"hello");
        assert!(read_frame(&mut reader, 1 << 20, &mut buf).unwrap());
        assert!(buf.is_empty());
        assert!(read_frame(&mut reader, 1 << 20, &mut buf).unwrap());
        assert_eq!(buf, vec![7; 200_000]);
        assert!(!read_frame(&mut reader, 1 << 20, &mut buf).unwrap());
    }

    #[test]
    fn a_large_frame_ending_in_a_byte_string_is_read_split() {
        let big = super::super::direct::DIRECT_MIN + 1000;
        let mut payload = b"HEAD".to_vec();
        payload.extend((0..big).map(|i| (i % 251) as u8));
        let stream = frame(&payload);
        // Through a small buffer, as from a pipe, so the fast path does not apply.
        let mut reader = std::io::BufReader::with_capacity(4096, &stream[..]);
        let mut head = Vec::new();
        let read = read_frame_split(&mut reader, u32::MAX, &mut head, |prefix, len| {
            assert!(prefix.starts_with(b"HEAD"));
            assert_eq!(len, payload.len());
            Some(4)
        })
        .unwrap();
        let Frame::Split(tail) = read else {
            panic!("not split: {read:?}")
        };
        assert_eq!(head, b"HEAD");
        assert!(tail == payload[4..], "tail bytes differ");
        // Declined: read whole.
        let mut reader = std::io::BufReader::with_capacity(4096, &stream[..]);
        let read = read_frame_split(&mut reader, u32::MAX, &mut head, |_, _| None).unwrap();
        assert!(matches!(read, Frame::Whole));
        assert!(head == payload, "whole payload differs");
        // Cut short: an error, not a split.
        let mut reader = std::io::BufReader::with_capacity(4096, &stream[..stream.len() - 10]);
        let err = read_frame_split(&mut reader, u32::MAX, &mut head, |_, _| Some(4)).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
    }

    #[test]
    fn the_pool_keeps_a_few_buffers_of_each_size() {
        let pool = BufferPool::default();
        assert_eq!(
            pool.take(10).capacity(),
            0,
            "an empty pool allocates nothing"
        );
        for _ in 0..40 {
            pool.give(Vec::with_capacity(100));
        }
        pool.give(Vec::with_capacity(LARGE));
        assert!(pool.take(LARGE).capacity() >= LARGE);
        assert!(
            pool.take(LARGE).capacity() == 0,
            "only one large buffer was given"
        );
        let mut kept = 0;
        while pool.take(10).capacity() > 0 {
            kept += 1;
        }
        assert_eq!(kept, KEEP_SMALL);
    }

    #[test]
    fn oversize_is_refused_before_reading() {
        let stream = frame(&[1; 100]);
        let err = read_frame(&mut &stream[..], 99, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len: 100, max: 99 }),
            "{err}"
        );
    }

    #[test]
    fn hostile_length_allocates_only_what_arrived() {
        let mut stream = u32::MAX.to_le_bytes().to_vec();
        stream.extend_from_slice(&[0; 10]);
        let mut buf = Vec::new();
        let err = read_frame(&mut &stream[..], u32::MAX, &mut buf).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { got: 10, .. }),
            "{err}"
        );
        assert!(buf.capacity() <= 128 * 1024, "capacity {}", buf.capacity());
    }

    #[test]
    fn truncated_header_and_body() {
        let err = read_frame(&mut &[1u8, 0][..], 10, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, FrameError::Truncated { got: 2, .. }));
        let stream = frame(b"abcdef");
        let err = read_frame(&mut &stream[..7], 10, &mut Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            FrameError::Truncated {
                expected: 6,
                got: 3
            }
        ));
    }

    #[test]
    fn finish_checks_the_limit() {
        let mut buf = b"earlier".to_vec();
        let start = begin(&mut buf);
        buf.extend_from_slice(&[0; 11]);
        assert!(end(&mut buf, start, 10).is_err());
        assert!(end(&mut buf, start, 11).is_ok());
        assert_eq!(&buf[start..start + 4], &11u32.to_le_bytes());
        assert_eq!(&buf[..7], b"earlier");
    }
}
