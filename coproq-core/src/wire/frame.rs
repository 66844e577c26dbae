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
pub(crate) struct Pool {
    spare: Mutex<Vec<Vec<u8>>>,
    /// How many buffers `spare` holds: small frames check this and take no lock.
    held: AtomicUsize,
}

/// Buffers at least this large are worth keeping.
const POOLED: usize = 1 << 20;

impl Pool {
    /// A buffer to read the next frame into.
    pub(crate) fn take(&self) -> Vec<u8> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        let buf = spare.pop().unwrap_or_default();
        self.held.store(spare.len(), Ordering::Relaxed);
        buf
    }

    /// Whether a buffer of `capacity` is worth bringing back here.
    pub(crate) fn wants(capacity: usize) -> bool {
        capacity >= POOLED
    }

    /// Takes back a frame's buffer once the frame is done with.
    pub(crate) fn give(&self, mut buf: Vec<u8>) {
        if Self::wants(buf.capacity()) {
            buf.clear();
            let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
            if spare.len() < 2 {
                spare.push(buf);
            }
            self.held.store(spare.len(), Ordering::Relaxed);
        }
    }

    /// `frame` as it should be kept: a small frame read into a large pooled buffer is
    /// copied out, and the buffer goes back to the pool.
    pub(crate) fn fit(&self, frame: Vec<u8>) -> Vec<u8> {
        if frame.capacity() >= POOLED && frame.len() * 4 < frame.capacity() {
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
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl FrameBuf {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(buf) => buf,
        }
    }
}

impl From<Vec<u8>> for FrameBuf {
    fn from(buf: Vec<u8>) -> Self {
        Self::Heap(buf)
    }
}

/// Takes the next frame out of the read buffer if it is whole and small; consumes
/// nothing otherwise.
pub(crate) fn take_small_frame(reader: &mut impl BufRead, max: u32) -> Option<FrameBuf> {
    // `fill_buf` reads only when the buffer is empty, and then a reader wants to block.
    let buffered = reader.fill_buf().ok().filter(|b| !b.is_empty())?;
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
    reader.consume(HEADER_LEN + len as usize);
    Some(frame)
}

/// Reads one frame's payload into `buf` (replacing its contents).
///
/// Returns `Ok(false)` on a clean end of stream before any byte of a frame.
pub(crate) fn read_frame(
    reader: &mut impl BufRead,
    max: u32,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    // The common case: the whole frame is already buffered; copy it out in one go.
    let copied = {
        let buffered = reader.fill_buf().map_err(FrameError::Io)?;
        if buffered.is_empty() {
            return Ok(false);
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
        return Ok(true);
    }
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).map_err(FrameError::Io)?;
    if got == 0 {
        return Ok(false);
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
    buf.clear();
    let len = len as usize;
    // Grow with the data: never reserve more than what has arrived plus one chunk.
    // `read_to_end` on a `Take` fills spare capacity without zeroing it first.
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
    Ok(true)
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
pub(crate) fn begin(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    start
}

/// Finishes the frame begun at `start`: writes the payload length into its prefix.
/// Fails if the payload is longer than `max`.
pub(crate) fn finish(buf: &mut [u8], start: usize, max: u32) -> Result<(), FrameError> {
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
        finish(&mut buf, start, u32::MAX).unwrap();
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
        assert!(finish(&mut buf, start, 10).is_err());
        assert!(finish(&mut buf, start, 11).is_ok());
        assert_eq!(&buf[start..start + 4], &11u32.to_le_bytes());
        assert_eq!(&buf[..7], b"earlier");
    }
}
