//! Frames: a `u32` little-endian payload length, then the payload.
//!
//! Reading never trusts the declared length for allocation: the buffer grows with the
//! bytes that actually arrive, so a hostile header costs nothing until data follows.

use std::io::{self, ErrorKind, Read};

/// The first step of growth of a frame buffer; later steps double what arrived.
const CHUNK: usize = 64 * 1024;

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

/// Reads one frame's payload into `buf` (replacing its contents).
///
/// Returns `Ok(false)` on a clean end of stream before any byte of a frame.
pub(crate) fn read_frame(
    reader: &mut impl Read,
    max: u32,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
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
    while buf.len() < len {
        let want = (len - buf.len()).min(buf.len().max(CHUNK));
        let start = buf.len();
        buf.resize(start + want, 0);
        let n = read_full(reader, &mut buf[start..]).map_err(FrameError::Io)?;
        buf.truncate(start + n);
        if n < want {
            return Err(FrameError::Truncated {
                expected: len as u64,
                got: buf.len() as u64,
            });
        }
    }
    Ok(true)
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

/// Starts a frame in `buf`: clears it and reserves the length prefix.
pub(crate) fn begin(buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER_LEN]);
}

/// Finishes a frame begun with [`begin`]: writes the payload length into the prefix.
/// Fails if the payload is longer than `max`.
pub(crate) fn finish(buf: &mut [u8], max: u32) -> Result<(), FrameError> {
    let len = (buf.len() - HEADER_LEN) as u64;
    if len > u64::from(max) {
        return Err(FrameError::TooLarge { len, max });
    }
    buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        begin(&mut buf);
        buf.extend_from_slice(payload);
        finish(&mut buf, u32::MAX).unwrap();
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
        let mut buf = Vec::new();
        begin(&mut buf);
        buf.extend_from_slice(&[0; 11]);
        assert!(finish(&mut buf, 10).is_err());
        assert!(finish(&mut buf, 11).is_ok());
        assert_eq!(&buf[..4], &11u32.to_le_bytes());
    }
}
