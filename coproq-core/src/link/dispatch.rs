//! Dispatch: runs handlers for received calls and events, one at a time, in the order
//! they arrived.
//!
//! One thread serves a link (the parent's dispatcher thread, the fork worker's main
//! thread, or whoever calls `serve`). When a handler on that thread calls the peer and
//! waits, the wait keeps dispatching the link's inbox: the peer may call back before it
//! replies, to any depth, in both directions, without deadlock.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, select};

use super::Link;
use super::calls::Delivery;
use crate::error::Error;
use crate::handler::Responder;
use crate::wire::{Message, OutcomeKind};

thread_local! {
    /// The link whose inbox this thread serves, if any.
    static SERVING: RefCell<Option<Arc<Link>>> = const { RefCell::new(None) };
}

/// Dispatches `link`'s inbox on this thread until the peer is gone.
pub(crate) fn serve(link: &Arc<Link>) {
    let previous = SERVING.replace(Some(Arc::clone(link)));
    while let Ok(message) = link.inbox().recv() {
        if link.abandoned() {
            break;
        }
        dispatch(link, message);
    }
    SERVING.set(previous);
}

/// Whether this thread is the one serving `link`.
pub(crate) fn is_serving(link: &Arc<Link>) -> bool {
    SERVING.with_borrow(|serving| serving.as_ref().is_some_and(|s| Arc::ptr_eq(s, link)))
}

/// Runs the handler of one received call or event.
fn dispatch(link: &Arc<Link>, message: Message) {
    match message {
        Message::Call { id, name, body } => {
            let responder = Responder::new(Arc::clone(link), id);
            match link.handlers.call(&name) {
                Some(handler) => handler(&name, body, responder),
                None => responder.fail(
                    OutcomeKind::MethodNotFound,
                    format!("{name}: method not found"),
                ),
            }
        }
        Message::Event { name, body } => {
            // An event nobody listens to is discarded, as in the seed.
            if let Some(listener) = link.handlers.event(&name) {
                listener(&name, body);
            }
        }
        Message::Reply { .. } | Message::Bye => {
            unreachable!("the reader routes replies and byes itself")
        }
    }
}

/// The caller stopped waiting at its deadline.
pub(crate) struct TimedOut;

/// Waits for a reply. On a thread that serves a link, keeps dispatching that link's
/// inbox meanwhile, so that a callback from the peer cannot deadlock.
pub(crate) fn wait_reply(
    reply: &Receiver<Delivery>,
    deadline: Option<Instant>,
) -> Result<Delivery, TimedOut> {
    let serving = SERVING.with_borrow(Clone::clone);
    if let Some(link) = serving {
        let inbox = link.inbox();
        loop {
            let timeout = deadline.map_or(crossbeam_channel::never(), crossbeam_channel::at);
            select! {
                recv(reply) -> delivery => return Ok(closed_if_dropped(delivery.ok())),
                recv(inbox) -> message => match message {
                    Ok(message) => dispatch(&link, message),
                    Err(_) => break, // the peer is gone; only our reply (a failure) is left
                },
                recv(timeout) -> _ => return Err(TimedOut),
            }
        }
    }
    match deadline {
        None => Ok(closed_if_dropped(reply.recv().ok())),
        Some(deadline) => match reply.recv_deadline(deadline) {
            Ok(delivery) => Ok(delivery),
            Err(RecvTimeoutError::Timeout) => Err(TimedOut),
            Err(RecvTimeoutError::Disconnected) => Ok(closed_if_dropped(None)),
        },
    }
}

/// A waiter whose sender vanished without a word counts as disconnected.
fn closed_if_dropped(delivery: Option<Delivery>) -> Delivery {
    delivery.unwrap_or(Err(Error::Disconnected { status: None }))
}
