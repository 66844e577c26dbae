//! Heartbeats: both ends ping every interval, and an end that hears nothing from its peer
//! for `SILENT_AFTER` intervals ends the link. This catches what the end of a stream
//! cannot: a half-open TCP connection under ssh, a stopped relay.
//!
//! "Heard" means bytes arrived (counted by the input stream itself, so a large frame
//! that streams in for longer than the limit keeps its peer heard), or input waits to be
//! read (a busy serving thread may not read for a while; data in the pipe still shows
//! the peer is there).

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::Link;
use super::io::{Input, InputStream};
use super::writer::{Flush, Lane, Shutdown};
use crate::error::{DisconnectCause, Error};
use crate::sys;
use crate::wire::message;

/// How many intervals of silence end the link.
pub(crate) const SILENT_AFTER: u32 = 3;

/// When the peer was last heard from.
#[derive(Debug, Default)]
pub(crate) struct Heartbeat {
    /// Heartbeats are on for this link (otherwise nothing is timed).
    on: AtomicBool,
    /// The coarse clock, in nanoseconds, when bytes last arrived.
    last_heard: AtomicU64,
}

impl Heartbeat {
    /// Bytes arrived (costs nothing when heartbeats are off).
    #[inline]
    pub(crate) fn heard(&self) {
        if self.on.load(Ordering::Relaxed) {
            self.last_heard.store(now_nanos(), Ordering::Relaxed);
        }
    }

    /// Whether heartbeats are on for this link.
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// How long ago the peer was last heard from.
    fn silence(&self) -> Duration {
        Duration::from_nanos(now_nanos().saturating_sub(self.last_heard.load(Ordering::Relaxed)))
    }
}

fn now_nanos() -> u64 {
    u64::try_from(sys::coarse_now().as_nanos()).unwrap_or(u64::MAX)
}

/// An input stream that tells a heartbeat whenever bytes arrive.
pub(crate) struct Heard {
    input: Input,
    heartbeat: Arc<Heartbeat>,
}

impl Heard {
    pub(crate) fn boxed(input: Input, heartbeat: Arc<Heartbeat>) -> Input {
        Box::new(Self { input, heartbeat })
    }
}

impl Read for Heard {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        if n > 0 {
            self.heartbeat.heard();
        }
        Ok(n)
    }
}

impl InputStream for Heard {
    fn wait_readable(&self, timeout: Duration) -> bool {
        self.input.wait_readable(timeout)
    }

    fn set_polling(&mut self, polling: bool) -> bool {
        self.input.set_polling(polling)
    }

    fn set_mid_frame(&mut self, mid_frame: bool) {
        self.input.set_mid_frame(mid_frame);
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.input.set_deadline(deadline);
    }
}

impl Link {
    /// Starts pinging the peer every `interval` on a thread of its own, and ends the link
    /// when the peer has been silent for `SILENT_AFTER` intervals; then runs `on_silence`
    /// (a worker exits).
    pub(crate) fn start_heartbeat(
        self: &Arc<Self>,
        interval: Duration,
        on_silence: impl FnOnce() + Send + 'static,
    ) {
        self.heartbeat.on.store(true, Ordering::Relaxed);
        self.heartbeat.heard();
        let link = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("coproq-heartbeat".into())
            .spawn(move || beat(&link, interval, on_silence));
    }

    /// Whether the peer has been silent for `limit`: no bytes arrived in that time, and
    /// none wait to be read.
    fn peer_silent(&self, limit: Duration) -> bool {
        if self.heartbeat.silence() < limit {
            return false;
        }
        // Someone may just not have read lately: data waiting shows the peer is there.
        // (A reader holding the stream waits for input that does not come: bytes that
        // came would have counted as heard.)
        match self.stream.try_lock() {
            Ok(guard) => guard.as_ref().is_some_and(|stream| {
                stream.input.buffer().is_empty()
                    && !stream.input.get_ref().wait_readable(Duration::ZERO)
            }),
            Err(_) => true,
        }
    }
}

fn beat(link: &Weak<Link>, interval: Duration, on_silence: impl FnOnce()) {
    let mut ping = Vec::new();
    message::encode_ping(&mut ping);
    loop {
        std::thread::sleep(interval);
        let Some(link) = link.upgrade() else { return };
        if link.is_ended() {
            return;
        }
        let limit = interval * SILENT_AFTER;
        if link.peer_silent(limit) {
            crate::trace::event!(WARN, silent_for = ?limit, "heartbeat lost: the peer fell silent");
            link.writer.shutdown(Shutdown::Discard);
            link.end(|| Error::disconnected(None, DisconnectCause::Silent { after: limit }, None));
            drop(link);
            on_silence();
            return;
        }
        // Bytes already waiting to go out will be heard when they do; a ping behind them
        // would say nothing more.
        if !link.writer.has_pending() {
            let _ = link
                .writer
                .send(Lane::Control, Flush::Soon, None, |buf, _, _| {
                    buf.extend_from_slice(&ping);
                    Ok::<(), ()>(())
                });
        }
    }
}
