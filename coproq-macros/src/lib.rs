//! The `#[coproq::service]` attribute. Use it through the `coproq` crate.
//!
//! Typed services are not generated yet: the attribute passes the trait through
//! unchanged and reports a clear compile error, so that code written against the final
//! design fails loudly rather than silently.

use proc_macro::TokenStream;
use quote::quote;

/// Generates `<Trait>Client` and `<Trait>Server` for a trait (not yet implemented: it
/// reports a compile error and leaves the trait unchanged).
#[proc_macro_attribute]
pub fn service(_args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    quote! {
        ::core::compile_error!(
            "`#[coproq::service]` is not implemented yet; use `Coprocess::handle` and `Coprocess::call`"
        );
        #item
    }
    .into()
}
