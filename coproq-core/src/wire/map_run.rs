//! Runs of calls: the items of one `Coprocess::map` sent as one call, and their results
//! as one reply, so that a stream of small calls costs each one its value instead of a
//! frame, a slot and a wake-up.
//!
//! A run is a call to the built-in method [`MAP_METHOD`] whose argument is one byte
//! string: the method's name (a `u32` length, then its bytes), then each item (a `u32`
//! length, then the item encoded with its shape). The reply is one byte string of the
//! items' replies in the order they answered, each the item's index (a `u32`) and then a
//! reply frame, length prefix and all, exactly what the call of that item alone would
//! have brought back.

use std::ops::Range;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::header::{self, Header, Outcome};
use super::{WireError, codec, frame};

/// The built-in method that serves a run of calls.
pub(crate) const MAP_METHOD: &str = "coproq:map";

/// The most items one run carries (a longer one is refused as malformed).
pub(crate) const MAX_ITEMS: usize = 1024;

/// A run stops taking items at about this many bytes.
const MAX_BYTES: usize = 64 * 1024;

/// A run's argument, item by item.
#[derive(Debug)]
pub(crate) struct RunArgs {
    buf: Vec<u8>,
    items: usize,
}

impl RunArgs {
    /// An empty run of calls to `method`.
    pub(crate) fn new(method: &str) -> Self {
        let mut buf = Vec::with_capacity(1024);
        put_len(&mut buf, method.len());
        buf.extend_from_slice(method.as_bytes());
        Self { buf, items: 0 }
    }

    /// Appends one item; on an error the run is as it was.
    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<(), WireError> {
        let mark = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        if let Err(e) = codec::encode_shaped(item, &mut self.buf) {
            self.buf.truncate(mark);
            return Err(e);
        }
        let Ok(len) = u32::try_from(self.buf.len() - mark - 4) else {
            self.buf.truncate(mark);
            return Err(WireError::Malformed("an item of 4 GiB or more".into()));
        };
        self.buf[mark..mark + 4].copy_from_slice(&len.to_le_bytes());
        self.items += 1;
        Ok(())
    }

    /// How many items it holds.
    pub(crate) fn len(&self) -> usize {
        self.items
    }

    /// Whether it takes no more items.
    pub(crate) fn is_full(&self) -> bool {
        self.items >= MAX_ITEMS || self.buf.len() >= MAX_BYTES
    }

    /// The argument's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn put_len(buf: &mut Vec<u8>, len: usize) {
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// One item of a received run: where its shape and its value lie in the argument.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) shape: Range<usize>,
    pub(crate) value: Range<usize>,
}

/// The method name and the items of a run's argument `bytes`; `None` if it is not a
/// well-formed run of one to [`MAX_ITEMS`] items.
pub(crate) fn parse_args(bytes: &[u8]) -> Option<(Range<usize>, Vec<Item>)> {
    let (name, mut at) = slice_at(bytes, 0)?;
    std::str::from_utf8(bytes.get(name.clone())?).ok()?;
    let mut items = Vec::new();
    while at < bytes.len() {
        if items.len() == MAX_ITEMS {
            return None;
        }
        let (item, next) = slice_at(bytes, at)?;
        let (shape, value_at) = super::run::shaped_parts(&bytes[..item.end], item.start)?;
        items.push(Item {
            shape,
            value: value_at..item.end,
        });
        at = next;
    }
    (!items.is_empty()).then_some((name, items))
}

/// The `u32`-length-prefixed slice at `at`, and where the next one starts.
fn slice_at(bytes: &[u8], at: usize) -> Option<(Range<usize>, usize)> {
    let len = u32::from_le_bytes(*bytes.get(at..)?.first_chunk::<4>()?) as usize;
    let start = at + 4;
    let end = start.checked_add(len).filter(|&end| end <= bytes.len())?;
    Some((start..end, end))
}

/// Appends item `index`'s reply to a run's reply `buf`: the index, then the reply frame
/// that `encode` appends.
pub(crate) fn push_result(buf: &mut Vec<u8>, index: usize, encode: impl FnOnce(&mut Vec<u8>)) {
    put_len(buf, index);
    encode(buf);
}

/// Where each item's reply frame lies in a run's reply `bytes`, in item order; `None` if
/// it is malformed: a frame cut off, an index out of range or answered twice, or more
/// than [`MAX_ITEMS`].
pub(crate) fn parse_results(bytes: &[u8]) -> Option<Vec<Range<usize>>> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if entries.len() == MAX_ITEMS {
            return None;
        }
        let index = u32::from_le_bytes(*bytes.get(at..)?.first_chunk::<4>()?) as usize;
        let (frame, next) = slice_at(bytes, at + 4)?;
        entries.push((index, frame.start - 4..frame.end));
        at = next;
    }
    let mut results = vec![None; entries.len()];
    for (index, frame) in entries {
        match results.get_mut(index) {
            Some(slot @ None) => *slot = Some(frame),
            _ => return None,
        }
    }
    results.into_iter().collect()
}

/// The value of an item's reply `frame` (length prefix and all), where it is a value
/// that decodes as `T` by its shape alone: the fast path for a run's results. `None` for
/// anything else (an error, a value that needs the full decoding), which the caller
/// decodes as the reply of a call alone.
#[inline]
pub(crate) fn plain_value<T: DeserializeOwned>(frame: &[u8]) -> Option<T> {
    let payload = frame.get(frame::HEADER_LEN..)?;
    match header::decode(payload) {
        Ok((
            Header::Reply {
                outcome: Outcome::Value,
                shape,
                ..
            },
            start,
        )) => codec::decode_checked(shape, payload.get(start..)?).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_malformed_runs_are_refused() {
        let mut run = RunArgs::new("square");
        for n in 0..3u64 {
            run.push(&n).unwrap();
        }
        run.push(&"four").unwrap();
        assert_eq!(run.len(), 4);
        let bytes = run.bytes();
        let (name, items) = parse_args(bytes).unwrap();
        assert_eq!(&bytes[name], b"square");
        assert_eq!(items.len(), 4);
        for (n, item) in (0..3u64).zip(&items) {
            let value: u64 =
                codec::decode_checked(&bytes[item.shape.clone()], &bytes[item.value.clone()])
                    .unwrap();
            assert_eq!(value, n);
        }
        // Cut anywhere, it is refused.
        for cut in 0..bytes.len() {
            if let Some((_, items)) = parse_args(&bytes[..cut]) {
                assert!(items.len() < 4, "a cut run read whole at {cut}");
            }
        }
        assert!(parse_args(&RunArgs::new("none").buf).is_none(), "no items");
        // An item that claims more bytes than follow: its `u32` length sits before its
        // shape's `u64` length.
        let last = items[3].shape.start - 8 - 4;
        let mut huge = bytes.to_vec();
        huge[last..last + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_args(&huge).is_none(), "an item longer than the run");
    }

    #[test]
    fn results_are_read_in_item_order_and_malformed_replies_are_refused() {
        fn frame(text: &'static [u8]) -> impl FnOnce(&mut Vec<u8>) {
            move |buf| {
                put_len(buf, text.len());
                buf.extend_from_slice(text);
            }
        }
        let mut buf = Vec::new();
        push_result(&mut buf, 1, frame(b"one"));
        push_result(&mut buf, 0, frame(b"zero"));
        let results = parse_results(&buf).unwrap();
        assert_eq!(&buf[results[0].clone()][4..], b"zero");
        assert_eq!(&buf[results[1].clone()][4..], b"one");
        assert!(parse_results(&buf[..buf.len() - 1]).is_none(), "cut");
        let mut twice = Vec::new();
        push_result(&mut twice, 0, frame(b"a"));
        push_result(&mut twice, 0, frame(b"b"));
        assert!(parse_results(&twice).is_none(), "one index twice");
        let mut beyond = Vec::new();
        push_result(&mut beyond, 5, frame(b"a"));
        assert!(parse_results(&beyond).is_none(), "an index out of range");
    }
}
