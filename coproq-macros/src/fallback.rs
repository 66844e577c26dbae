//! What the macro emits when the service is invalid: the user's trait, minus the
//! `#[event]` markers that only the macro understands, followed by the errors. Keeping the
//! trait means the user's `impl` blocks do not fail too and bury the real message.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{ItemTrait, TraitItem};

use crate::ast::is_event;

pub(crate) fn expand(item: &ItemTrait, error: &syn::Error) -> TokenStream {
    let mut tokens = strip_markers(item).into_token_stream();
    tokens.extend(error.to_compile_error());
    tokens
}

/// The trait without `#[event]` attributes on its methods.
pub(crate) fn strip_markers(item: &ItemTrait) -> ItemTrait {
    let mut item = item.clone();
    for member in &mut item.items {
        if let TraitItem::Fn(method) = member {
            method.attrs.retain(|attr| !is_event(attr));
        }
    }
    item
}
