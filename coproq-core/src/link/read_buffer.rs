//! The read buffer of a link: small while frames come a few at a time, larger while the
//! peer streams faster than this end reads.
//!
//! Every read of a full pipe wakes the peer's blocked writer, on another CPU; reading in
//! larger pieces while a stream lasts makes fewer of those wake-ups per frame. An idle or
//! request-reply link never fills its buffer, so it stays at the small size and costs
//! each link only that much memory.

use std::io::{BufRead, Read};

/// The size a buffer starts at, and goes back to.
const SMALL: usize = 16 * 1024;

/// The largest a buffer grows to.
const LARGE: usize = 256 * 1024;

/// After this many reads in a row that would each have fit the small size, a grown
/// buffer shrinks back (a few, so that a stream with short pauses keeps it).
const SHRINK_AFTER: u32 = 32;

/// A buffered reader over `R` whose buffer grows (up to [`LARGE`]) when reads fill it
/// and shrinks back when they stop doing so.
pub(crate) struct ReadBuffer<R> {
    inner: R,
    /// Initialised bytes; `buf[pos..filled]` are buffered.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    /// The last read filled the whole buffer: the next refill takes a larger one.
    grow: bool,
    /// Reads in a row that each would have fit in [`SMALL`].
    small_reads: u32,
}

impl<R: Read> ReadBuffer<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            grow: false,
            small_reads: 0,
        }
    }

    /// What is buffered.
    pub(crate) fn buffer(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Reads until at least `need` bytes are buffered, moving what is buffered to the
    /// front first, so that a frame cut off at the end of the buffer comes whole into
    /// it; false if `need` is larger than the buffer, or the stream ended or failed first
    /// (what was read stays buffered).
    pub(crate) fn fill_to(&mut self, need: usize) -> bool {
        if self.filled - self.pos >= need {
            return true;
        }
        if need > self.buf.len() {
            return false;
        }
        self.buf.copy_within(self.pos..self.filled, 0);
        self.filled -= self.pos;
        self.pos = 0;
        while self.filled < need {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.filled += n,
            }
        }
        true
    }

    /// The buffer's size now (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Picks the size for the next read into an empty buffer: larger after a read that
    /// filled it, back to small after enough that did not come close.
    fn resize_for_refill(&mut self) {
        let size = self.buf.len();
        let wanted = if size == 0 {
            SMALL
        } else if self.grow && size < LARGE {
            (size * 4).min(LARGE)
        } else if self.small_reads >= SHRINK_AFTER && size > SMALL {
            SMALL
        } else {
            return;
        };
        self.grow = false;
        self.small_reads = 0;
        // A new buffer, not a resized one: nothing in it needs keeping, and shrinking
        // must give the memory back.
        self.buf = vec![0; wanted];
    }
}

impl<R: Read> Read for ReadBuffer<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // Nothing buffered and a large destination: read straight into it.
        if self.pos == self.filled && out.len() >= self.buf.len().max(SMALL) {
            return self.inner.read(out);
        }
        let buffered = self.fill_buf()?;
        let n = buffered.len().min(out.len());
        out[..n].copy_from_slice(&buffered[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for ReadBuffer<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.filled {
            self.resize_for_refill();
            let n = self.inner.read(&mut self.buf)?;
            self.pos = 0;
            self.filled = n;
            self.grow = n == self.buf.len();
            self.small_reads = if n < SMALL { self.small_reads + 1 } else { 0 };
        }
        Ok(self.buffer())
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.filled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that returns at most `per_read` bytes per read, of `left` in all.
    struct Chunks {
        per_read: usize,
        left: usize,
        next: u8,
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.per_read).min(self.left);
            for b in &mut buf[..n] {
                *b = self.next;
                self.next = self.next.wrapping_add(1);
            }
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn grows_while_reads_fill_it_and_shrinks_after_small_reads() {
        let mut reader = ReadBuffer::new(Chunks {
            per_read: usize::MAX,
            left: usize::MAX,
            next: 0,
        });
        let mut sizes = Vec::new();
        for _ in 0..4 {
            let n = reader.fill_buf().unwrap().len();
            sizes.push(reader.capacity());
            reader.consume(n);
        }
        assert_eq!(sizes, [SMALL, 4 * SMALL, LARGE, LARGE]);

        reader.get_mut().per_read = 100;
        for _ in 0..=SHRINK_AFTER {
            let n = reader.fill_buf().unwrap().len();
            assert_eq!(n, 100);
            reader.consume(n);
        }
        assert_eq!(reader.capacity(), SMALL);
    }

    #[test]
    fn fill_to_completes_a_cut_off_frame_in_the_buffer() {
        let mut reader = ReadBuffer::new(Chunks {
            per_read: 10_000,
            left: 100_000,
            next: 0,
        });
        let n = reader.fill_buf().unwrap().len();
        assert_eq!(n, 10_000);
        reader.consume(9_000);
        // 1000 bytes buffered, 5000 wanted: moved to the front, then read up to them.
        assert!(reader.fill_to(5_000));
        let buffered = reader.buffer();
        assert!(buffered.len() >= 5_000);
        assert!(
            buffered
                .iter()
                .enumerate()
                .all(|(i, &b)| b == ((9_000 + i) % 256) as u8)
        );
        // More than the buffer holds: refused, nothing lost.
        let before = reader.buffer().len();
        assert!(!reader.fill_to(SMALL + 1));
        assert_eq!(reader.buffer().len(), before);

        // More than the stream has: refused, what came stays buffered.
        let mut short = ReadBuffer::new(Chunks {
            per_read: 100,
            left: 300,
            next: 0,
        });
        short.fill_buf().unwrap();
        assert!(!short.fill_to(1_000));
        assert_eq!(short.buffer().len(), 300);
    }

    #[test]
    fn reads_every_byte_in_order_whatever_the_mix_of_calls() {
        let total = 3 * LARGE + 17;
        let mut reader = ReadBuffer::new(Chunks {
            per_read: 70_000,
            left: total,
            next: 0,
        });
        let mut seen = Vec::with_capacity(total);
        let mut big = vec![0u8; 2 * LARGE];
        loop {
            let n = match seen.len() % 3 {
                0 => {
                    let buffered = reader.fill_buf().unwrap();
                    let n = buffered.len().min(1000);
                    seen.extend_from_slice(&buffered[..n]);
                    reader.consume(n);
                    n
                }
                1 => {
                    let n = reader.read(&mut big[..7]).unwrap();
                    seen.extend_from_slice(&big[..n]);
                    n
                }
                _ => {
                    let n = reader.read(&mut big).unwrap();
                    seen.extend_from_slice(&big[..n]);
                    n
                }
            };
            if n == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), total);
        assert!(seen.iter().enumerate().all(|(i, &b)| b == (i % 256) as u8));
    }
}
