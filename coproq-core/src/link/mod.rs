//! One connection between two ends, independent of how its two byte streams were made.
//!
//! - [`calls`]: id → waiting caller.
//! - [`writer`]: frames out, under one lock; non-blocking shutdown.
//! - [`reader`]: frames in; replies to the call table, calls and events to the inbox.
//! - [`dispatch`]: runs handlers in arrival order; re-entrant waiting.

pub(crate) mod calls;
pub(crate) mod dispatch;
mod reader;
mod writer;

use std::cell::RefCell;
use std::io::Read;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, bounded};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::handler::Handlers;
use crate::wire::message::{self, EncodeError};
use crate::wire::{Hello, Message};
use calls::{Calls, Delivery, Waiter, WakerSlot};
pub(crate) use writer::Output;
use writer::Writer;

/// A byte stream from the peer.
pub(crate) type Input = Box<dyn Read + Send>;

/// Called by the reader when the peer's stream ends, to learn the worker's exit status.
pub(crate) type EofHook = Box<dyn FnOnce() -> Option<ExitStatus> + Send>;

/// How many received calls and events may wait for dispatch before the reader stops
/// reading: beyond this, a fast sender blocks on the full pipe (back-pressure).
const INBOX_CAPACITY: usize = 1024;

/// Settings of one link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkOptions {
    /// The largest frame payload accepted from the peer.
    pub(crate) max_frame: u32,
}

/// Both ends share this; the handle, the reader thread and the dispatcher each hold it.
pub(crate) struct Link {
    writer: Writer,
    calls: Mutex<Calls>,
    next_id: AtomicU64,
    pub(crate) handlers: Arc<Handlers>,
    inbox: Receiver<Message>,
    serving: AtomicBool,
    /// The peer's stream ended without a `Bye`: it died, so queued work is moot.
    abandoned: AtomicBool,
    /// Disconnects when the reader thread has finished.
    reader_done: Receiver<()>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// A reusable encode buffer per thread: frames are built here, then written.
    static FRAME: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Builds a frame in this thread's buffer and hands it to `send`.
fn with_frame<T>(build: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let mut buf = FRAME.take();
    let result = build(&mut buf);
    if buf.capacity() <= 1 << 20 {
        FRAME.set(buf);
    }
    result
}

impl Link {
    /// Starts a link on two streams: sends our `Hello`, starts the reader, and waits up
    /// to `timeout` for the peer's `Hello`.
    pub(crate) fn connect(
        input: Input,
        output: Output,
        options: LinkOptions,
        entry: Option<u64>,
        handlers: Arc<Handlers>,
        on_eof: Option<EofHook>,
        timeout: Duration,
    ) -> Result<(Arc<Self>, Hello)> {
        let (inbox_tx, inbox) = bounded(INBOX_CAPACITY);
        let (done_tx, reader_done) = bounded(0);
        let link = Arc::new(Self {
            writer: Writer::new(output),
            calls: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(1),
            handlers,
            inbox,
            serving: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            reader_done,
        });
        let mut hello = Vec::new();
        message::encode_hello(
            &mut hello,
            &Hello {
                max_frame: options.max_frame,
                entry,
            },
        );
        link.writer
            .send(&hello)
            .map_err(|_| Error::Protocol("the peer closed the link before the handshake".into()))?;

        let (hello_tx, hello_rx) = bounded(1);
        let reader = reader::Reader {
            link: Arc::clone(&link),
            inbox: inbox_tx,
            hello: hello_tx,
            on_eof,
            _done: done_tx,
        };
        std::thread::Builder::new()
            .name("coproq-reader".into())
            .spawn(move || reader.run(input, options.max_frame))
            .map_err(|e| Error::Protocol(format!("cannot start the reader thread: {e}")))?;

        let Ok(peer) = hello_rx.recv_timeout(timeout) else {
            link.shutdown();
            return Err(Error::Protocol(format!(
                "no handshake from the peer within {timeout:?}"
            )));
        };
        let peer = peer?;
        link.writer.set_peer_max(peer.max_frame);
        Ok((link, peer))
    }

    fn calls(&self) -> MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a call and registers its waiter; the reply arrives on the returned receiver.
    pub(crate) fn start_call<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
    ) -> Result<(u64, Receiver<Delivery>, WakerSlot)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        let waker = WakerSlot::default();
        if self.writer.is_closed()
            || self
                .calls()
                .insert(
                    id,
                    Waiter {
                        tx,
                        waker: Arc::clone(&waker),
                    },
                )
                .is_err()
        {
            return Err(Error::NotConnected);
        }
        let sent = with_frame(|buf| {
            message::encode_call(buf, id, name, args, self.writer.peer_max())
                .map_err(|e| encode_error(name, e))
                .and_then(|()| self.writer.send(buf).map_err(|_| Error::NotConnected))
        });
        match sent {
            Ok(()) => Ok((id, rx, waker)),
            Err(e) => {
                self.calls().remove(id);
                Err(e)
            }
        }
    }

    /// Forgets a call whose caller stopped waiting; a late reply is then dropped.
    pub(crate) fn forget_call(&self, id: u64) {
        self.calls().remove(id);
    }

    /// Sends a one-way event.
    pub(crate) fn emit<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<()> {
        if self.writer.is_closed() {
            return Err(Error::NotConnected);
        }
        with_frame(|buf| {
            message::encode_event(buf, name, args, self.writer.peer_max())
                .map_err(|e| encode_error(name, e))?;
            self.writer.send(buf).map_err(|_| Error::NotConnected)
        })
    }

    /// Sends a frame built by `build` (a reply); a closed link drops it.
    pub(crate) fn send_with(&self, build: impl FnOnce(&mut Vec<u8>, u32)) {
        with_frame(|buf| {
            build(buf, self.writer.peer_max());
            let _ = self.writer.send(buf);
        });
    }

    /// Says `Bye` (if the stream is free) and closes our sending half: the peer sees the
    /// end of its input and winds down. New calls fail with `NotConnected`.
    pub(crate) fn shutdown(&self) {
        let mut bye = Vec::new();
        message::encode_bye(&mut bye);
        self.writer.shutdown(Some(&bye));
    }

    /// Waits until the reader thread has finished, at most `timeout`.
    pub(crate) fn wait_reader(&self, timeout: Duration) -> bool {
        !matches!(
            self.reader_done.recv_timeout(timeout),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        )
    }

    /// Whether the peer vanished without a `Bye`.
    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Claims the right to dispatch; only one thread may serve a link.
    pub(crate) fn claim_serving(&self) -> bool {
        !self.serving.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn inbox(&self) -> &Receiver<Message> {
        &self.inbox
    }
}

fn encode_error(name: &str, e: EncodeError) -> Error {
    let reason = match e {
        EncodeError::Value(reason) => reason,
        EncodeError::TooLarge(e) => format!("{e} (the peer's maximum frame size)"),
    };
    Error::Encode {
        method: name.to_owned(),
        reason,
    }
}
