//! Serving a run of calls (see `wire::map_run`): each item runs its method's handler
//! exactly as a call of its own would (decoded against its shape, its errors and panics
//! its own result), one after another on the serving thread, and the run is answered
//! once every item is, in one reply.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::handlers::LookupCache;
use super::responder::Responder;
use super::{Link, context};
use crate::bytes::ByteBuf;
use crate::wire::message::Args;
use crate::wire::{OutcomeKind, map_run};

/// How many items run between two looks at what arrived (a cancel of the run).
const LOOK_EVERY: usize = 64;

/// The reply of a run of calls, filled item by item as they answer (a deferred or async
/// handler's item may answer later, from another thread), sent when the last one does.
pub(crate) struct RunReply {
    /// The run's own responder, until the reply goes.
    responder: Mutex<Option<Responder>>,
    /// The items' replies so far (see `wire::map_run`), and which items answered.
    reply: Mutex<(Vec<u8>, Vec<bool>)>,
    left: AtomicUsize,
}

impl RunReply {
    fn new(responder: Responder, items: usize) -> Self {
        Self {
            responder: Mutex::new(Some(responder)),
            reply: Mutex::new((Vec::with_capacity(items * 32), vec![false; items])),
            left: AtomicUsize::new(items),
        }
    }

    /// Item `index` answers with the reply frame that `encode` appends (its id the
    /// run's); the last answer sends the run's reply.
    pub(crate) fn put(&self, index: usize, encode: impl FnOnce(&mut Vec<u8>)) {
        {
            let mut reply = self.reply.lock().unwrap_or_else(PoisonError::into_inner);
            let (buf, answered) = &mut *reply;
            match answered.get_mut(index) {
                Some(done @ false) => *done = true,
                // Answered twice (no handler adapter does): the first answer stands.
                _ => return,
            }
            map_run::push_result(buf, index, encode);
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.send();
        }
    }

    fn send(&self) {
        let reply =
            std::mem::take(&mut self.reply.lock().unwrap_or_else(PoisonError::into_inner).0);
        let responder = self
            .responder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(responder) = responder {
            responder.send(&ByteBuf(reply));
        }
    }
}

/// Serves the run of calls `id`, whose argument `args` holds (see `wire::map_run`),
/// answering through `responder`: a malformed run, or one of a method this end lacks, is
/// answered as a whole; otherwise each item runs, unless the run was cancelled or its
/// deadline passed before the item's turn.
pub(crate) fn serve(
    link: &Arc<Link>,
    id: u64,
    deadline: Option<Instant>,
    args: &mut Args<'_>,
    responder: Responder,
    recent: &mut LookupCache,
) {
    let bytes = match args.decode::<ByteBuf>() {
        Ok(bytes) => bytes.0,
        Err(e) => {
            let message = format!("{}: malformed run of calls: {e}", map_run::MAP_METHOD);
            return responder.fail(OutcomeKind::InvalidArguments, message);
        }
    };
    let Some((name, items)) = map_run::parse_args(&bytes) else {
        let message = format!("{}: malformed run of calls", map_run::MAP_METHOD);
        return responder.fail(OutcomeKind::InvalidArguments, message);
    };
    let name = &bytes[name];
    let Some(handler) = link.handlers.call_via(name, recent) else {
        let message = format!("{}: method not found", String::from_utf8_lossy(name));
        return responder.fail(OutcomeKind::MethodNotFound, message);
    };
    let run = Arc::new(RunReply::new(responder, items.len()));
    for (index, item) in items.into_iter().enumerate() {
        if index % LOOK_EVERY == LOOK_EVERY - 1 {
            // Nobody else may be reading: a cancel of this run would wait behind it.
            link.read_ahead();
        }
        let responder = Responder::for_item(Arc::clone(link), id, Arc::clone(&run), index);
        if link.cancels.contains(id) {
            responder.fail(OutcomeKind::Cancelled, "cancelled before it started".into());
            continue;
        }
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            let message = format!(
                "{}: its deadline passed before it started",
                String::from_utf8_lossy(name)
            );
            responder.fail(OutcomeKind::Expired, message);
            continue;
        }
        let mut args = Args::InPlace {
            name,
            shape: &bytes[item.shape],
            bytes: &bytes[item.value],
        };
        let current = context::Current { id, deadline };
        context::handling(current, || handler(&mut args, responder));
    }
}
