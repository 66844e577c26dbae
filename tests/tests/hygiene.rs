//! Tests for the hygiene of generated code: it compiles without the prelude, beside user
//! items that shadow every name it could use, and with the user's own names everywhere.
#![no_implicit_prelude]

/// A service defined where nothing of the prelude is in scope.
#[::coproq::service]
pub trait Hygienic {
    /// Shadowing-prone argument names.
    fn f(
        &self,
        __imp: u8,
        coproc: ::std::string::String,
        self_: ::std::vec::Vec<u8>,
    ) -> ::std::option::Option<u8>;
    /// A typed error.
    fn g(&self) -> ::std::result::Result<u8, ::std::string::String>;
    /// An event.
    #[event]
    fn e(&self, x: u32);
    /// No arguments, unit return.
    fn unit(&self);
}

/// User items named like everything generated code might reach for.
mod shadows {
    #![allow(dead_code)]
    pub(crate) struct Result;
    pub(crate) struct Option;
    pub(crate) struct String;
    pub(crate) struct Vec;
    pub(crate) struct Box;
    pub(crate) struct Arc;
    pub(crate) struct Coprocess;
    pub(crate) struct Pending;
    pub(crate) struct Send;
    pub(crate) struct Sync;
    pub(crate) trait Clone {}
    pub(crate) trait Debug {}
}

#[allow(unused_imports)]
use shadows::*;

/// The same service again, with the shadows in scope.
#[::coproq::service]
pub trait Shadowed {
    /// Anything.
    fn h(&self, x: u64) -> u64;
}

struct Impl;

impl Hygienic for Impl {
    fn f(
        &self,
        __imp: u8,
        coproc: ::std::string::String,
        self_: ::std::vec::Vec<u8>,
    ) -> ::std::option::Option<u8> {
        ::std::option::Option::Some(__imp + coproc.len() as u8 + self_.len() as u8)
    }
    fn g(&self) -> ::std::result::Result<u8, ::std::string::String> {
        ::std::result::Result::Ok(1)
    }
    fn e(&self, _x: u32) {}
    fn unit(&self) {}
}

#[::core::prelude::v1::test]
fn generated_code_is_hygienic() {
    let worker = ::coproq::fork(|parent| {
        parent.listen(HygienicServer::new(Impl));
    })
    .unwrap();
    let client = HygienicClient::new(&worker);
    let sum = client
        .f(
            1,
            ::std::string::ToString::to_string("ab"),
            ::std::vec![1, 2, 3],
        )
        .unwrap();
    ::std::assert_eq!(sum, ::std::option::Option::Some(6));
    ::std::assert_eq!(client.g().unwrap(), ::std::result::Result::Ok(1));
    client.e(5).unwrap();
    client.unit().unwrap();
    let _ = ShadowedClient::new(&worker);
}
