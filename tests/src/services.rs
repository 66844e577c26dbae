//! Typed services shared by the typed-service tests and the `typed_worker` binary.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The application error of [`Calc::div`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalcError {
    /// Division by zero.
    DivisionByZero,
    /// The result does not fit.
    Overflow {
        /// Dividend.
        a: i64,
        /// Divisor.
        b: i64,
    },
}

/// A service exercising every kind of method the macro supports.
#[coproq::service]
pub trait Calc {
    /// Adds.
    fn add(&self, a: i64, b: i64) -> i64;
    /// Divides, with a typed application error.
    fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// Fails through `coproq::Result`: the error collapses into a remote error.
    fn checked(&self, ok: bool) -> coproq::Result<u8>;
    /// No arguments.
    fn count(&self) -> u64;
    /// Unit return.
    fn reset(&self);
    /// Borrowed string argument.
    fn greet(&self, name: &str) -> String;
    /// Borrowed bytes argument.
    fn checksum(&self, data: &[u8]) -> u64;
    /// Raw identifier: wire name `type`.
    fn r#type(&self) -> String;
    /// Present: `cfg` that holds.
    #[cfg(unix)]
    fn configured(&self) -> bool;
    /// Absent: `cfg` that never holds.
    #[cfg(windows)]
    fn never(&self) -> bool;
    /// One-way.
    #[event]
    fn note(&self, line: String);
    /// Everything noted so far.
    fn notes(&self) -> Vec<String>;
}

/// The implementation the tests serve.
#[derive(Debug, Default)]
pub struct Calculator {
    ops: AtomicU64,
    notes: Mutex<Vec<String>>,
}

impl Calc for Calculator {
    fn add(&self, a: i64, b: i64) -> i64 {
        self.ops.fetch_add(1, Ordering::SeqCst);
        a + b
    }

    fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.ops.fetch_add(1, Ordering::SeqCst);
        if b == 0 {
            return Err(CalcError::DivisionByZero);
        }
        a.checked_div(b).ok_or(CalcError::Overflow { a, b })
    }

    fn checked(&self, ok: bool) -> coproq::Result<u8> {
        if ok {
            Ok(1)
        } else {
            Err(coproq::Error::MethodNotFound("inner".into()))
        }
    }

    fn count(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.ops.store(0, Ordering::SeqCst);
    }

    fn greet(&self, name: &str) -> String {
        format!("hello, {name}")
    }

    fn checksum(&self, data: &[u8]) -> u64 {
        data.iter().map(|&b| u64::from(b)).sum()
    }

    fn r#type(&self) -> String {
        "calculator".into()
    }

    #[cfg(unix)]
    fn configured(&self) -> bool {
        true
    }

    #[cfg(windows)]
    fn never(&self) -> bool {
        false
    }

    fn note(&self, line: String) {
        self.notes.lock().unwrap().push(line);
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }
}

/// A service the parent offers its workers.
#[coproq::service]
pub trait Registry {
    /// Stores a value under a key; returns the previous one.
    fn put(&self, key: String, value: u64) -> Option<u64>;
    /// Reads a key.
    fn get(&self, key: String) -> Option<u64>;
}

/// A service whose methods call the peer back through a typed client.
#[coproq::service]
pub trait Relay {
    /// Stores `value` in the parent's [`Registry`] and reads it back.
    fn store_in_parent(&self, key: String, value: u64) -> coproq::Result<Option<u64>>;
}

/// An older definition of [`Calc`], as a stale worker binary would have it.
pub mod stale {
    /// `add` took `i32`s here.
    #[coproq::service]
    pub trait Calc {
        /// Adds.
        fn add(&self, a: i32, b: i32) -> i32;
    }
}

/// A service mixing blocking and async methods; the client cannot tell which is which.
#[coproq::service]
pub trait Mixed {
    /// Blocking.
    fn add(&self, a: u64, b: u64) -> u64;
    /// Async, napping on a timer that needs no runtime.
    async fn nap(&self, ms: u64) -> u64;
    /// Async, with a typed error.
    async fn parse(&self, text: &str) -> Result<u64, CalcError>;
    /// Async, calling the parent's `double` back.
    async fn ask(&self, n: u64) -> coproq::Result<u64>;
    /// An async one-way event: the parent hears `noted` when its future has run.
    #[event]
    async fn note(&self, n: u64);
}

/// The worker's [`Mixed`].
#[derive(Debug)]
pub struct MixedWorker {
    /// The parent, for callbacks.
    pub parent: coproq::WeakCoprocess,
}

impl Mixed for MixedWorker {
    fn add(&self, a: u64, b: u64) -> u64 {
        a + b
    }

    async fn nap(&self, ms: u64) -> u64 {
        crate::nap(std::time::Duration::from_millis(ms)).await;
        ms
    }

    async fn parse(&self, text: &str) -> Result<u64, CalcError> {
        crate::nap(std::time::Duration::from_millis(1)).await;
        text.parse().map_err(|_| CalcError::DivisionByZero)
    }

    async fn ask(&self, n: u64) -> coproq::Result<u64> {
        let parent = self.parent.upgrade().ok_or(coproq::Error::NotConnected)?;
        parent.call_async::<u64>("double", n).await
    }

    async fn note(&self, n: u64) {
        crate::nap(std::time::Duration::from_millis(1)).await;
        if let Some(parent) = self.parent.upgrade() {
            let _ = parent.emit("noted", n);
        }
    }
}
