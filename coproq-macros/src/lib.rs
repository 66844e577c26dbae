//! The `#[coproq::service]` attribute. Use it through the `coproq` crate.
//!
//! Typed services are not generated yet: the attribute currently passes the trait
//! through unchanged and reports a clear compile error, so that code written against the
//! final design fails loudly rather than silently.

use proc_macro::TokenStream;

/// Generates `<Trait>Client` and `<Trait>Server` for a trait (not yet implemented: it
/// reports a compile error and leaves the trait unchanged).
#[proc_macro_attribute]
pub fn service(_args: TokenStream, item: TokenStream) -> TokenStream {
    let mut out: TokenStream =
        "::core::compile_error!(\"`#[coproq::service]` is not implemented yet; use `Coprocess::handle` and `Coprocess::call`\");"
            .parse()
            .expect("a valid token stream");
    out.extend(item);
    out
}
