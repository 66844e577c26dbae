//! The handler table: call handlers and event listeners by name, as the dispatcher looks
//! them up per message, with who registered each (a service's names are its own).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::Responder;
use crate::wire::{Args, same_bytes};

/// A call handler: decodes the arguments, runs the user's function, answers through the
/// responder (now or later). The arguments are lent, not moved: they lie in the serving
/// loop's frame, and a dynamic call should not copy them.
pub(crate) type CallHandler = dyn Fn(&mut Args<'_>, Responder) + Send + Sync;
/// An event listener: decodes the arguments and runs the user's function.
pub(crate) type EventHandler = dyn Fn(&mut Args<'_>) + Send + Sync;

/// FNV-1a: method names are short, and a lookup per message should not pay for `SipHash`.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// Who registered a handler: a plain `handle`/`on` may be replaced by another, but a
/// name that a service registered may not be taken by anyone else (a typed client would
/// silently reach the wrong code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Plain,
    Service(&'static str),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain => f.write_str("a plain `handle`/`on`"),
            Self::Service(name) => write!(f, "service `{name}`"),
        }
    }
}

struct Registration<T: ?Sized> {
    handler: Arc<T>,
    owner: Owner,
}

type ByName<T> = HashMap<String, Registration<T>, BuildHasherDefault<NameHasher>>;

/// Handlers by name. Shared by the handle, the builder and the dispatcher; looked up
/// per message and cloned out, so handlers may be added or removed while others run.
#[derive(Default)]
pub(crate) struct Handlers {
    calls: RwLock<ByName<CallHandler>>,
    events: RwLock<ByName<EventHandler>>,
    /// Bumped whenever the table changes, so that a [`LookupCache`] knows when it is stale.
    generation: AtomicU64,
    /// The tokio runtime that this table's async handlers run on, if one was given.
    #[cfg(feature = "tokio")]
    tokio: RwLock<Option<tokio::runtime::Handle>>,
    /// A runtime handed over to keep, for as long as the table lives.
    #[cfg(feature = "tokio")]
    kept_tokio: std::sync::Mutex<Option<KeptRuntime>>,
}

/// A tokio runtime this end keeps; shut down without waiting when the table goes (which
/// may happen on one of its own threads, where dropping a runtime would panic).
#[cfg(feature = "tokio")]
struct KeptRuntime(Option<tokio::runtime::Runtime>);

#[cfg(feature = "tokio")]
impl Drop for KeptRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The last call handler and event listener that one serving loop looked up: while the
/// table is unchanged and names repeat (a stream of one kind of message), they are used
/// again without the table's lock, the hashing, or a reference count.
#[derive(Default)]
pub(crate) struct LookupCache {
    call: Option<Remembered<CallHandler>>,
    event: Option<Remembered<EventHandler>>,
}

struct Remembered<T: ?Sized> {
    generation: u64,
    name: Box<str>,
    handler: Arc<T>,
}

/// `slot`'s handler if it is for `name` and the table has not changed since, otherwise
/// what `find` finds (remembered for next time). `known_same`: the caller knows that
/// `name` is the one looked up last (so a handler remembered is for it).
#[inline]
fn remembered<'a, T: ?Sized>(
    slot: &'a mut Option<Remembered<T>>,
    generation: u64,
    name: &[u8],
    known_same: bool,
    find: impl FnOnce(&str) -> Option<Arc<T>>,
) -> Option<&'a Arc<T>> {
    let fresh = slot.as_ref().is_some_and(|r| {
        r.generation == generation && (known_same || same_bytes(r.name.as_bytes(), name))
    });
    if !fresh {
        // Names are checked as UTF-8 when read; one that is not finds nothing.
        let name = std::str::from_utf8(name).ok()?;
        *slot = find(name).map(|handler| Remembered {
            generation,
            name: name.into(),
            handler,
        });
    }
    slot.as_ref().map(|r| &r.handler)
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers").finish_non_exhaustive()
    }
}

impl Handlers {
    pub(crate) fn call(&self, name: &str) -> Option<Arc<CallHandler>> {
        let calls = self.calls.read().unwrap_or_else(PoisonError::into_inner);
        calls.get(name).map(|entry| Arc::clone(&entry.handler))
    }

    pub(crate) fn event(&self, name: &str) -> Option<Arc<EventHandler>> {
        let events = self.events.read().unwrap_or_else(PoisonError::into_inner);
        events.get(name).map(|entry| Arc::clone(&entry.handler))
    }

    /// [`Handlers::call`] of the name `name` spells, through `recent`.
    #[inline]
    pub(crate) fn call_via<'a>(
        &self,
        name: &[u8],
        recent: &'a mut LookupCache,
    ) -> Option<&'a Arc<CallHandler>> {
        let generation = self.generation.load(Ordering::Acquire);
        remembered(&mut recent.call, generation, name, false, |name| {
            self.call(name)
        })
    }

    /// [`Handlers::event`] of the name `name` spells, through `recent`; `same_as_last`:
    /// `name` is known to be the one looked up last through `recent`.
    #[inline]
    pub(crate) fn event_via<'a>(
        &self,
        name: &[u8],
        same_as_last: bool,
        recent: &'a mut LookupCache,
    ) -> Option<&'a Arc<EventHandler>> {
        let generation = self.generation.load(Ordering::Acquire);
        remembered(&mut recent.event, generation, name, same_as_last, |name| {
            self.event(name)
        })
    }

    /// The table changed: what any [`LookupCache`] holds is stale.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The names of every call handler and event listener, sorted, without coproq's own.
    /// The names of the call handlers, sorted (coproq's own left out).
    pub(crate) fn call_names(&self) -> Vec<String> {
        public_names(&self.calls.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The names of the event listeners, sorted.
    pub(crate) fn event_names(&self) -> Vec<String> {
        public_names(&self.events.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn set_call(&self, name: String, owner: Owner, handler: Arc<CallHandler>) {
        let mut calls = self.calls.write().unwrap_or_else(PoisonError::into_inner);
        insert_checked(&mut calls, name, Registration { handler, owner }, "method");
        self.changed();
    }

    pub(crate) fn set_event(&self, name: String, owner: Owner, handler: Arc<EventHandler>) {
        let mut events = self.events.write().unwrap_or_else(PoisonError::into_inner);
        insert_checked(&mut events, name, Registration { handler, owner }, "event");
        self.changed();
    }

    /// Removes a listener; returns whether there was one.
    pub(crate) fn remove_event(&self, name: &str) -> bool {
        let removed = self
            .events
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name)
            .is_some();
        self.changed();
        removed
    }

    /// Drops every handler (breaking cycles through handles that handlers captured).
    /// Runs this table's async handlers on `runtime` from now on.
    #[cfg(feature = "tokio")]
    pub(crate) fn set_tokio(&self, runtime: tokio::runtime::Handle) {
        *self.tokio.write().unwrap_or_else(PoisonError::into_inner) = Some(runtime);
    }

    /// Runs this table's async handlers on `runtime` from now on, keeping it.
    #[cfg(feature = "tokio")]
    pub(crate) fn keep_tokio(&self, runtime: tokio::runtime::Runtime) {
        self.set_tokio(runtime.handle().clone());
        let kept = KeptRuntime(Some(runtime));
        let previous = self
            .kept_tokio
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(kept);
        drop(previous);
    }

    /// The runtime this table's async handlers run on, if one was given.
    #[cfg(feature = "tokio")]
    pub(crate) fn tokio(&self) -> Option<tokio::runtime::Handle> {
        self.tokio
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn clear(&self) {
        let calls =
            std::mem::take(&mut *self.calls.write().unwrap_or_else(PoisonError::into_inner));
        let events =
            std::mem::take(&mut *self.events.write().unwrap_or_else(PoisonError::into_inner));
        self.changed();
        drop((calls, events));
    }
}

/// Names under this prefix are coproq's own (fingerprints, discovery, start-up).
pub(crate) const RESERVED_PREFIX: &str = "coproq:";

/// The built-in method that lists an end's call handlers (`Coprocess::methods`).
pub(crate) const METHODS_METHOD: &str = "coproq:methods";

/// The built-in method that lists an end's event listeners (`Coprocess::events`).
pub(crate) const EVENTS_METHOD: &str = "coproq:events";

/// The names in `table` that are not coproq's own, sorted.
fn public_names<H: ?Sized>(table: &ByName<H>) -> Vec<String> {
    let mut names: Vec<String> = table
        .keys()
        .filter(|name| !name.starts_with(RESERVED_PREFIX))
        .cloned()
        .collect();
    names.sort_unstable();
    names
}

/// Inserts a handler; a name that a service holds, or that a service asks for while
/// another holds it, is a programming error that would misroute calls: panic, naming both.
fn insert_checked<T: ?Sized>(
    map: &mut ByName<T>,
    name: String,
    entry: Registration<T>,
    kind: &str,
) {
    if let Some(old) = map.get(&name)
        && (old.owner != Owner::Plain || entry.owner != Owner::Plain)
    {
        let (first, second) = (old.owner, entry.owner);
        let what = match name.strip_prefix("coproq:fingerprint:") {
            Some(service) => format!("the fingerprint of a service named `{service}`"),
            None => format!("{kind} `{name}`"),
        };
        panic!(
            "coproq: {what} is registered twice on one end, first by {first} and then by \
                 {second}; a method's wire name is its Rust name, so rename one of them"
        );
    }
    map.insert(name, entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_alike_short_and_long() {
        let long = "a_name_longer_than_sixteen_bytes";
        for (a, b) in [
            ("", ""),
            ("tick", "tick"),
            ("sixteen_bytes_ab", "sixteen_bytes_ab"),
        ] {
            assert!(same_bytes(a.as_bytes(), b.as_bytes()), "{a}");
        }
        assert!(same_bytes(long.as_bytes(), long.as_bytes()));
        for (a, b) in [
            ("tick", "tock"),
            ("tick", "ticks"),
            ("", "x"),
            ("sixteen_bytes_ab", "sixteen_bytes_ac"),
            (long, "a_name_longer_than_sixteen_bytez"),
        ] {
            assert!(!same_bytes(a.as_bytes(), b.as_bytes()), "{a} vs {b}");
        }
    }

    #[test]
    fn a_remembered_handler_is_used_only_for_its_name_and_table() {
        let handlers = Handlers::default();
        let tick: Arc<EventHandler> = Arc::new(|_: &mut Args<'_>| {});
        handlers.set_event("tick".into(), Owner::Plain, Arc::clone(&tick));
        let mut recent = LookupCache::default();
        let found = handlers
            .event_via(b"tick", false, &mut recent)
            .map(Arc::clone);
        assert!(found.is_some_and(|found| Arc::ptr_eq(&found, &tick)));
        assert!(handlers.event_via(b"tock", false, &mut recent).is_none());
        assert!(handlers.event_via(b"tick", false, &mut recent).is_some());
        // Known to be the same name: used without comparing.
        assert!(handlers.event_via(b"tick", true, &mut recent).is_some());
        // The table changed: the remembered listener is not used, even for the same name.
        assert!(handlers.remove_event("tick"));
        assert!(handlers.event_via(b"tick", true, &mut recent).is_none());
        assert!(
            handlers
                .event_via(&[0xff, 0xfe], false, &mut recent)
                .is_none()
        );
    }
}
