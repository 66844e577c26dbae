//! The `#[coproq::service]` attribute. Use it through the `coproq` crate, whose docs
//! describe what it generates.
//!
//! Structure: `ast` reads the trait, `valid` checks it (reporting every problem at
//! once, at the offending tokens), `expand` generates the client and server, and
//! `fallback` emits the user's trait unchanged beside the errors.

mod ast;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;

/// Generates `<Trait>Client` and `<Trait>Server` for a trait; see the `coproq` crate.
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::service(args.into(), item.into()).into()
}
