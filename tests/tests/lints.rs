//! Tests that generated code is warning-free under strict lints: a service expanded with
//! `missing_docs`, `unused_qualifications`, `missing_debug_implementations` and clippy's
//! pedantic group denied (clippy runs on this file in CI).
#![deny(
    missing_docs,
    unused_qualifications,
    missing_debug_implementations,
    unreachable_pub
)]
#![deny(clippy::all, clippy::pedantic)]

use coproq_tests::call;

/// A documented service.
#[coproq::service]
pub trait Documented {
    /// Adds one.
    fn inc(&self, x: u32) -> u32;
    /// Fails typed.
    ///
    /// # Errors
    ///
    /// When told to.
    fn fallible(&self, ok: bool) -> Result<(), String>;
    /// Says something.
    #[event]
    fn say(&self, line: String);
}

/// A private service too.
#[coproq::service]
trait Private {
    fn ping(&self) -> bool;
}

struct Impl;

impl Documented for Impl {
    fn inc(&self, x: u32) -> u32 {
        x + 1
    }
    fn fallible(&self, ok: bool) -> Result<(), String> {
        if ok { Ok(()) } else { Err("no".into()) }
    }
    fn say(&self, _line: String) {}
}

impl Private for Impl {
    fn ping(&self) -> bool {
        true
    }
}

#[test]
fn a_strictly_linted_service_works() {
    let worker = coproq::fork(|parent| {
        parent
            .listen(DocumentedServer::new(Impl))
            .listen(PrivateServer::new(Impl));
    })
    .unwrap();
    let client = DocumentedClient::new(&worker);
    assert_eq!(client.inc(1).unwrap(), 2);
    assert_eq!(client.fallible(false).unwrap(), Err("no".to_string()));
    client.say("hi".into()).unwrap();
    assert!(PrivateClient::new(&worker).ping().unwrap());
    assert_eq!(call::<u32>(&worker, "inc", 41u32).unwrap(), 42);
}
