//! Message headers, encoded and decoded by hand on the hot path.
//!
//! The bytes are exactly what bincode (with the configuration of `codec`) makes of the
//! `Header` enum: variant indices as `u32`, integers fixed-width little-endian, strings
//! as a `u64` length and their bytes, `bool` as a `u8`. Going through serde costs more
//! than the rest of a small call; the tests check the two agree byte for byte. The shape
//! of the body's value (see `shape`) ends every header that has a body, so a sender can
//! record it in place, right before the value.

use serde::{Deserialize, Serialize};

use super::WireError;

/// How a call ended, as the reply's header states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The body is the returned value.
    Value,
    /// The call failed; if `typed` is set, the body is the handler's error value.
    Error {
        kind: OutcomeKind,
        message: String,
        typed: bool,
    },
}

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OutcomeKind {
    /// The handler returned `Err`.
    Failed,
    /// The handler panicked.
    Panicked,
    /// No handler has that name.
    MethodNotFound,
    /// The arguments did not decode as the handler's types.
    InvalidArguments,
    /// A deferred handler dropped its `Reply` without answering.
    Unanswered,
    /// The caller cancelled the call before it started: it never ran.
    Cancelled,
    /// The call's deadline passed before it started: it never ran.
    Expired,
}

impl Outcome {
    /// A handler's `Err(e)`: `text` is its message, and the body carries `e`.
    pub(crate) fn typed_failure(text: String) -> Self {
        Self::Error {
            kind: OutcomeKind::Failed,
            message: text,
            typed: true,
        }
    }
}

/// What precedes a message's body.
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub(crate) enum Header<'a> {
    Call {
        id: u64,
        /// The caller's deadline, in microseconds (see `link::clock`); 0: none.
        deadline: u64,
        name: &'a str,
        shape: &'a [u8],
    },
    Event {
        name: &'a str,
        shape: &'a [u8],
    },
    Reply {
        id: u64,
        outcome: Outcome,
        shape: &'a [u8],
    },
    Bye,
    /// The caller stopped waiting for call `id`.
    Cancel {
        id: u64,
    },
    /// A heartbeat: "still here".
    Ping,
    /// A run of events: an event's header, whose body is the items of one or more events
    /// of that name and shape (see `run`).
    Run {
        name: &'a str,
        shape: &'a [u8],
    },
    /// The receiver grants the sender `bytes` more of calls and events (see
    /// `link::credit`).
    Credit {
        bytes: u64,
    },
    /// Worker → parent, where the parent asked for it: call `id` starts running now.
    Started {
        id: u64,
    },
    /// The next frame (a call, an event or a reply) carries `count` descriptors, sent
    /// before this frame over the link's descriptor socket (see `wire::descriptors`).
    Descriptors {
        count: u32,
    },
}

impl<'a> Header<'a> {
    /// The shape of the body's value (empty for a `Bye`, or an error reply without one).
    pub(crate) fn shape(&self) -> &'a [u8] {
        match self {
            Self::Call { shape, .. }
            | Self::Event { shape, .. }
            | Self::Reply { shape, .. }
            | Self::Run { shape, .. } => shape,
            Self::Bye
            | Self::Cancel { .. }
            | Self::Ping
            | Self::Credit { .. }
            | Self::Started { .. }
            | Self::Descriptors { .. } => &[],
        }
    }
}

const CALL: u32 = 0;
const EVENT: u32 = 1;
const REPLY: u32 = 2;
const BYE: u32 = 3;
const CANCEL: u32 = 4;
const PING: u32 = 5;
/// A run of events: an event's header, then the bodies of one or more events that share
/// its name and shape, each a `u32` length and its bytes (see `run::EventRun`).
const EVENTS: u32 = 6;
const CREDIT: u32 = 7;
const STARTED: u32 = 8;
const DESCRIPTORS: u32 = 9;
const VALUE: u32 = 0;
const ERROR: u32 = 1;

/// Every outcome kind, in declaration order: index = wire number.
const OUTCOME_KINDS: [OutcomeKind; 7] = [
    OutcomeKind::Failed,
    OutcomeKind::Panicked,
    OutcomeKind::MethodNotFound,
    OutcomeKind::InvalidArguments,
    OutcomeKind::Unanswered,
    OutcomeKind::Cancelled,
    OutcomeKind::Expired,
];

#[inline]
fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u64(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Appends `header`'s encoding, its shape included.
pub(crate) fn encode(buf: &mut Vec<u8>, header: &Header<'_>) {
    encode_prefix(buf, header);
    if !matches!(
        header,
        Header::Bye
            | Header::Cancel { .. }
            | Header::Ping
            | Header::Credit { .. }
            | Header::Started { .. }
            | Header::Descriptors { .. }
    ) {
        put_u64(buf, header.shape().len() as u64);
        buf.extend_from_slice(header.shape());
    }
}

/// Appends `header`'s encoding up to its shape, which the caller appends next (ignoring
/// the shape in `header`).
#[inline]
pub(crate) fn encode_prefix(buf: &mut Vec<u8>, header: &Header<'_>) {
    match header {
        Header::Call {
            id, deadline, name, ..
        } => {
            put_u32(buf, CALL);
            put_u64(buf, *id);
            put_u64(buf, *deadline);
            put_str(buf, name);
        }
        Header::Event { name, .. } => {
            put_u32(buf, EVENT);
            put_str(buf, name);
        }
        Header::Reply { id, outcome, .. } => {
            put_u32(buf, REPLY);
            put_u64(buf, *id);
            match outcome {
                Outcome::Value => put_u32(buf, VALUE),
                Outcome::Error {
                    kind,
                    message,
                    typed,
                } => {
                    put_u32(buf, ERROR);
                    put_u32(buf, *kind as u32);
                    put_str(buf, message);
                    buf.push(u8::from(*typed));
                }
            }
        }
        Header::Bye => put_u32(buf, BYE),
        Header::Cancel { id } => {
            put_u32(buf, CANCEL);
            put_u64(buf, *id);
        }
        Header::Ping => put_u32(buf, PING),
        Header::Run { name, .. } => {
            put_u32(buf, EVENTS);
            put_str(buf, name);
        }
        Header::Credit { bytes } => {
            put_u32(buf, CREDIT);
            put_u64(buf, *bytes);
        }
        Header::Started { id } => {
            put_u32(buf, STARTED);
            put_u64(buf, *id);
        }
        Header::Descriptors { count } => {
            put_u32(buf, DESCRIPTORS);
            put_u32(buf, *count);
        }
    }
}

/// A cursor over a payload that fails, rather than panics, at its end.
struct PayloadReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> PayloadReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("header truncated at byte {}", self.at))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("four bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("eight bytes"),
        ))
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.u64()?).map_err(|_| "length overflows".to_owned())?;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes()?).map_err(|e| format!("name is not UTF-8: {e}"))
    }
}

/// Turns the event header that starts `header` into the header of a run of events
/// (same layout, another kind).
pub(crate) fn make_run(header: &mut [u8]) {
    debug_assert_eq!(header.get(..4), Some(&EVENT.to_le_bytes()[..]));
    if let Some(kind) = header.first_chunk_mut::<4>() {
        *kind = EVENTS.to_le_bytes();
    }
}

/// Whether `payload` is a run of events.
pub(crate) fn is_run(payload: &[u8]) -> bool {
    payload.first_chunk::<4>() == Some(&EVENTS.to_le_bytes())
}

/// Whether `payload` claims to announce descriptors (it may still be malformed).
pub(crate) fn is_descriptors(payload: &[u8]) -> bool {
    payload.first_chunk::<4>() == Some(&DESCRIPTORS.to_le_bytes())
}

/// Whether `payload` claims to be a reply (it may still be malformed).
pub(crate) fn is_reply(payload: &[u8]) -> bool {
    payload.first_chunk::<4>() == Some(&REPLY.to_le_bytes())
}

/// The header of a call or an event, as [`decode_request`] finds it.
pub(crate) struct RequestHead<'a> {
    /// A call's id and deadline (as in [`Header::Call`]); `None` for an event.
    pub(crate) call: Option<(u64, u64)>,
    /// A run of events: the body is their items.
    pub(crate) run: bool,
    /// The name's bytes, checked as UTF-8.
    pub(crate) name: &'a [u8],
    pub(crate) shape: &'a [u8],
    /// Where the body starts.
    pub(crate) body: usize,
}

/// Decodes the header at the start of `payload` if it is a call's or an event's: the
/// serving loop's path, which builds no error text. `None` for any other message, and
/// for a malformed one (which [`decode`] then explains).
pub(crate) fn decode_request(payload: &[u8]) -> Option<RequestHead<'_>> {
    fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(*bytes.get(at..)?.first_chunk::<8>()?))
    }
    // A `u64` length and that many bytes, at `at`; the part and where it ends.
    fn part_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let start = at + 8;
        let end = start.checked_add(usize::try_from(u64_at(bytes, at)?).ok()?)?;
        Some((bytes.get(start..end)?, end))
    }
    let kind = u32::from_le_bytes(*payload.first_chunk::<4>()?);
    let (call, run, at) = match kind {
        CALL => (Some((u64_at(payload, 4)?, u64_at(payload, 12)?)), false, 20),
        EVENT => (None, false, 4),
        EVENTS => (None, true, 4),
        _ => return None,
    };
    let (name, at) = part_at(payload, at)?;
    // Names are nearly always ASCII, which the inlined check settles without a call.
    if !name.is_ascii() {
        std::str::from_utf8(name).ok()?;
    }
    let (shape, body) = part_at(payload, at)?;
    Some(RequestHead {
        call,
        run,
        name,
        shape,
        body,
    })
}

/// Decodes the header at the start of `payload`; returns it and where the body starts.
pub(crate) fn decode(payload: &[u8]) -> Result<(Header<'_>, usize), WireError> {
    decode_fields(payload).map_err(WireError::Malformed)
}

/// [`decode`], with the reason of a failure as text.
fn decode_fields(payload: &[u8]) -> Result<(Header<'_>, usize), String> {
    let mut cur = PayloadReader {
        bytes: payload,
        at: 0,
    };
    let header = match cur.u32()? {
        CALL => Header::Call {
            id: cur.u64()?,
            deadline: cur.u64()?,
            name: cur.str()?,
            shape: cur.bytes()?,
        },
        EVENT => Header::Event {
            name: cur.str()?,
            shape: cur.bytes()?,
        },
        REPLY => {
            let id = cur.u64()?;
            let outcome = match cur.u32()? {
                VALUE => Outcome::Value,
                ERROR => {
                    let kind = cur.u32()?;
                    let kind = *OUTCOME_KINDS
                        .get(kind as usize)
                        .ok_or_else(|| format!("unknown outcome kind {kind}"))?;
                    let message = cur.str()?.to_owned();
                    let typed = match cur.u8()? {
                        0 => false,
                        1 => true,
                        tag => return Err(format!("bad bool {tag}")),
                    };
                    Outcome::Error {
                        kind,
                        message,
                        typed,
                    }
                }
                other => return Err(format!("unknown outcome {other}")),
            };
            Header::Reply {
                id,
                outcome,
                shape: cur.bytes()?,
            }
        }
        BYE => Header::Bye,
        CANCEL => Header::Cancel { id: cur.u64()? },
        PING => Header::Ping,
        EVENTS => Header::Run {
            name: cur.str()?,
            shape: cur.bytes()?,
        },
        CREDIT => Header::Credit { bytes: cur.u64()? },
        STARTED => Header::Started { id: cur.u64()? },
        DESCRIPTORS => Header::Descriptors { count: cur.u32()? },
        other => return Err(format!("unknown message kind {other}")),
    };
    Ok((header, cur.at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;

    fn samples() -> Vec<Header<'static>> {
        let shape: &'static [u8] = &[21, 2, 0, 0, 0, 9, 15];
        vec![
            Header::Call {
                id: 7,
                deadline: 1_500_000,
                name: "add",
                shape,
            },
            Header::Call {
                id: u64::MAX,
                deadline: 0,
                name: "",
                shape: &[],
            },
            Header::Event {
                name: "ünïcode",
                shape,
            },
            Header::Reply {
                id: 1,
                outcome: Outcome::Value,
                shape,
            },
            Header::Reply {
                id: 2,
                outcome: Outcome::Error {
                    kind: OutcomeKind::Unanswered,
                    message: "gone".into(),
                    typed: false,
                },
                shape: &[],
            },
            Header::Reply {
                id: 3,
                outcome: Outcome::Error {
                    kind: OutcomeKind::Failed,
                    message: "no".into(),
                    typed: true,
                },
                shape,
            },
            Header::Bye,
            Header::Cancel { id: 12 },
            Header::Ping,
            Header::Run {
                name: "tick",
                shape,
            },
            Header::Credit { bytes: 1 << 20 },
            Header::Descriptors { count: 3 },
            Header::Reply {
                id: 5,
                outcome: Outcome::Error {
                    kind: OutcomeKind::Expired,
                    message: "expired".into(),
                    typed: false,
                },
                shape: &[],
            },
            Header::Reply {
                id: 4,
                outcome: Outcome::Error {
                    kind: OutcomeKind::Cancelled,
                    message: "cancelled".into(),
                    typed: false,
                },
                shape: &[],
            },
        ]
    }

    #[test]
    fn hand_encoding_is_bincode_byte_for_byte() {
        for header in samples() {
            let mut ours = Vec::new();
            encode(&mut ours, &header);
            let mut theirs = Vec::new();
            codec::encode_into(&header, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{header:?}");
            let (decoded, used) = decode(&theirs).unwrap();
            assert_eq!(decoded, header);
            assert_eq!(used, theirs.len());
        }
    }

    #[test]
    fn every_prefix_of_a_header_is_an_error() {
        for header in samples() {
            let mut bytes = Vec::new();
            encode(&mut bytes, &header);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{header:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn the_request_path_agrees_with_the_general_one() {
        for header in samples() {
            let mut bytes = Vec::new();
            encode(&mut bytes, &header);
            bytes.extend_from_slice(b"body");
            let fast = decode_request(&bytes);
            let (general, body) = decode(&bytes).unwrap();
            match general {
                Header::Call {
                    id,
                    deadline,
                    name,
                    shape,
                } => {
                    let fast = fast.unwrap();
                    assert_eq!(fast.call, Some((id, deadline)));
                    assert_eq!((fast.name, fast.shape), (name.as_bytes(), shape));
                    assert_eq!(fast.body, body);
                }
                Header::Event { name, shape } | Header::Run { name, shape } => {
                    let fast = fast.unwrap();
                    assert_eq!(fast.call, None);
                    assert_eq!(fast.run, matches!(header, Header::Run { .. }));
                    assert_eq!(
                        (fast.name, fast.shape, fast.body),
                        (name.as_bytes(), shape, body)
                    );
                }
                _ => assert!(fast.is_none(), "{header:?}"),
            }
            // Truncated anywhere: refused, never a panic.
            for cut in 0..bytes.len() - 4 {
                assert!(
                    decode_request(&bytes[..cut]).is_none(),
                    "{header:?} cut at {cut}"
                );
            }
        }
        let mut bad_name = Vec::new();
        encode(
            &mut bad_name,
            &Header::Event {
                name: "ab",
                shape: &[],
            },
        );
        bad_name[12] = 0xff;
        assert!(decode_request(&bad_name).is_none());
        let mut huge = EVENT.to_le_bytes().to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_request(&huge).is_none());
    }

    #[test]
    fn hostile_lengths_and_tags_are_errors() {
        let mut bytes = CALL.to_le_bytes().to_vec();
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&bytes).is_err());
        assert!(decode(&9u32.to_le_bytes()).is_err());
    }
}
