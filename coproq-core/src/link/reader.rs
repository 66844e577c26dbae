//! The reader thread: frames in, routed by kind.
//!
//! Policy: the reader owns the receiving stream and nothing else. Replies go straight to
//! the call table (never behind a handler); calls and events go to the inbox in arrival
//! order, blocking when it is full. When the stream ends or breaks, the reader fails every
//! waiting caller and closes the table, so no `call` can block forever: `Disconnected`
//! (with the worker's exit status, via the EOF hook) at the end of the stream, `Protocol`
//! for a malformed frame, after which it also closes our sending half.

use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Sender;

use super::calls::RawReply;
use super::{EofHook, Input, Link};
use crate::error::Error;
use crate::wire::frame::{self, FrameError};
use crate::wire::{Hello, Message, message};

/// A `Hello` is a few dozen bytes; anything much longer is not one.
const HELLO_MAX: u32 = 4096;

pub(super) struct Reader {
    pub(super) link: Arc<Link>,
    pub(super) inbox: Sender<Message>,
    pub(super) hello: Sender<Result<Hello, Error>>,
    pub(super) on_eof: Option<EofHook>,
    /// Dropped when the thread ends, which tells `Link::wait_reader`.
    pub(super) _done: Sender<()>,
}

/// How reading ended.
enum End {
    /// The stream ended between frames; `bye` if the peer said goodbye first.
    Eof { bye: bool },
    /// The stream or a frame was bad.
    Broken(String),
}

impl Reader {
    pub(super) fn run(mut self, input: Input, max: u32) {
        let mut input = BufReader::with_capacity(64 * 1024, input);
        let end = match Self::handshake(&mut input) {
            Ok(hello) => {
                let _ = self.hello.send(Ok(hello));
                self.route(&mut input, max)
            }
            Err(e) => {
                let _ = self.hello.send(Err(e.duplicate()));
                End::Broken(e.to_string())
            }
        };
        self.finish(end);
    }

    fn handshake(input: &mut impl std::io::Read) -> Result<Hello, Error> {
        let mut buf = Vec::new();
        match frame::read_frame(input, HELLO_MAX, &mut buf) {
            Ok(true) => message::decode_hello(&buf).map_err(Error::Protocol),
            Ok(false) => Err(Error::Protocol(
                "the peer closed the link before the handshake".into(),
            )),
            Err(FrameError::TooLarge { len, .. }) => Err(Error::Protocol(format!(
                "the peer is not a coproq endpoint (its first frame claims {len} bytes)"
            ))),
            Err(e) => Err(Error::Protocol(format!("handshake failed: {e}"))),
        }
    }

    fn route(&mut self, input: &mut impl std::io::Read, max: u32) -> End {
        let mut bye = false;
        loop {
            let mut buf = Vec::new();
            match frame::read_frame(input, max, &mut buf) {
                Ok(true) => {}
                Ok(false) => return End::Eof { bye },
                Err(FrameError::Io(e)) => return End::Broken(format!("read failed: {e}")),
                Err(e) => return End::Broken(e.to_string()),
            }
            match message::decode(buf) {
                Ok(Message::Reply { id, outcome, body }) => {
                    self.link
                        .calls()
                        .complete(id, Ok(RawReply { outcome, body }));
                }
                Ok(Message::Bye) => bye = true,
                Ok(message) => {
                    if self.inbox.send(message).is_err() {
                        return End::Eof { bye };
                    }
                }
                Err(e) => return End::Broken(e),
            }
        }
    }

    fn finish(self, end: End) {
        let error = match end {
            End::Eof { bye } => {
                if !bye {
                    // The peer died: nothing it asked for can be answered any more.
                    self.link.writer.shutdown(None);
                    self.link.abandoned.store(true, Ordering::Release);
                }
                Error::Disconnected {
                    status: self.on_eof.and_then(|hook| hook()),
                }
            }
            End::Broken(reason) => {
                self.link.writer.shutdown(None);
                self.link.abandoned.store(true, Ordering::Release);
                Error::Protocol(reason)
            }
        };
        self.link.calls().fail_all(&error);
        if let Error::Protocol(reason) = &error {
            crate::launch::report_protocol_error(reason);
        }
        // Dropping `inbox` and `_done` here ends the dispatcher and wakes `wait_reader`.
    }
}
