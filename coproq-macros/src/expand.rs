//! Code generation: one function per generated item.
//!
//! For `trait Calc`, the output is the trait itself, `CalcClient` (a typed stub over a
//! `Coprocess`) and `CalcServer<T: Calc>` (a `Service` that registers one handler per
//! method). Generated code names only `::coproq::__private` and absolute std paths, and its
//! locals start with `__`, so no user name can interfere.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemTrait, Type};

use crate::ast::{Method, Output, Service, is_byte_slice, is_byte_vec};
use crate::fallback;
use crate::valid::{self, Errors};

/// The whole macro: parse, validate, generate (or fall back with every error).
#[allow(clippy::needless_pass_by_value)] // the proc-macro entry hands over owned streams
pub(crate) fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemTrait = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let service = Service::from_syn(&item);
    let mut errors = Errors::default();
    valid::check_args(&args, &mut errors);
    service.validate(&mut errors);
    match errors.finish() {
        Ok(()) => Generator::new(&service).into_token_stream(),
        Err(error) => fallback::expand(&item, &error),
    }
}

struct Generator<'a> {
    service: &'a Service<'a>,
    trait_ident: &'a Ident,
    client: Ident,
    server: Ident,
    vis: &'a syn::Visibility,
}

impl<'a> Generator<'a> {
    fn new(service: &'a Service<'a>) -> Self {
        let trait_ident = &service.original.ident;
        Self {
            service,
            trait_ident,
            client: format_ident!("{}Client", trait_ident),
            server: format_ident!("{}Server", trait_ident),
            vis: &service.original.vis,
        }
    }

    fn service_name(&self) -> String {
        self.trait_ident
            .to_string()
            .trim_start_matches("r#")
            .to_owned()
    }

    /// The trait, without `#[event]` markers, each `async fn` declared as returning a
    /// `Send` future (which an `impl` writes as `async fn`), so that the server can run
    /// it on any thread.
    fn trait_item(&self) -> TokenStream {
        let mut item = fallback::strip_markers(self.service.original);
        for member in &mut item.items {
            if let syn::TraitItem::Fn(method) = member
                && method.sig.asyncness.take().is_some()
            {
                let output = match &method.sig.output {
                    syn::ReturnType::Default => quote!(()),
                    syn::ReturnType::Type(_, ty) => ty.to_token_stream(),
                };
                method.sig.output = syn::parse_quote! {
                    -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
                };
            }
        }
        item.into_token_stream()
    }

    /// `CalcClient` and its `Clone` and `Debug` impls.
    fn client_struct(&self) -> TokenStream {
        let Self {
            client,
            vis,
            trait_ident,
            ..
        } = self;
        let doc = format!(
            "Typed client of the [`{trait_ident}`] service: calls a peer that listens to a `{trait_ident}Server`."
        );
        quote! {
            #[doc = #doc]
            #vis struct #client {
                __coproq: ::coproq::__private::Target,
                __check: ::std::sync::Arc<::coproq::__private::ServiceCheck>,
            }

            #[automatically_derived]
            impl ::core::clone::Clone for #client {
                fn clone(&self) -> Self {
                    Self {
                        __coproq: ::core::clone::Clone::clone(&self.__coproq),
                        __check: ::core::clone::Clone::clone(&self.__check),
                    }
                }
            }

            #[automatically_derived]
            impl ::core::fmt::Debug for #client {
                fn fmt(&self, __f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Debug::fmt(&self.__coproq, __f)
                }
            }
        }
    }

    /// `CalcClient::new`, the fingerprint, and one (or two) methods per trait method.
    fn client_impl(&self) -> TokenStream {
        let Self { client, vis, .. } = self;
        let service_name = self.service_name();
        let fingerprint = self.fingerprint_fn();
        let methods = self.service.methods.iter().map(|m| self.client_method(m));
        quote! {
            #[automatically_derived]
            #[allow(unused_qualifications, clippy::used_underscore_binding)]
            impl #client {
                /// A client that calls the service through `peer`: a `Coprocess`, or a
                /// `Pool` (each call then goes to one of its workers).
                #vis fn new<__P: ::coproq::__private::Peer + ?::core::marker::Sized>(peer: &__P) -> Self {
                    Self {
                        __coproq: ::coproq::__private::Peer::__coproq_target(peer),
                        __check: ::std::sync::Arc::new(::coproq::__private::ServiceCheck::new(
                            #service_name,
                            Self::__coproq_fingerprint,
                        )),
                    }
                }

                /// Resolves when the peer has room for the next call, so that the next
                /// `_async` call does not block the thread: for async callers, as
                /// `Coprocess::ready` and `Pool::ready` are.
                #vis fn ready(&self) -> ::coproq::Ready {
                    self.__coproq.ready()
                }

                #fingerprint

                #(#methods)*
            }
        }
    }

    /// The methods and their types as written, one line each (compared by clients).
    fn fingerprint_fn(&self) -> TokenStream {
        let lines_var = local("__lines");
        let lines = self.service.methods.iter().map(|method| {
            let cfgs = method.cfgs();
            let line = fingerprint_line(method);
            quote! {
                #(#cfgs)*
                {
                    #lines_var.push_str(#line);
                    #lines_var.push('\n');
                }
            }
        });
        quote! {
            #[doc(hidden)]
            pub fn __coproq_fingerprint() -> ::std::string::String {
                let mut #lines_var = ::std::string::String::new();
                #(#lines)*
                #lines_var
            }
        }
    }

    fn client_method(&self, method: &Method<'_>) -> TokenStream {
        let vis = self.vis;
        let ident = method.ident;
        let name = method.name();
        let docs = method.docs();
        let cfgs: Vec<_> = method.cfgs().collect();
        let params = method.args.iter().map(|arg| {
            let (ident, ty) = (arg.ident, arg.ty);
            quote!(#ident: #ty)
        });
        let params: Vec<_> = params.collect();
        let packed = pack(method);
        let errors_doc = quote! {
            #[doc = ""]
            #[doc = "# Errors"]
            #[doc = ""]
            #[doc = "A [`coproq::Error`](coproq::Error) when the peer cannot be reached or the call fails there."]
        };
        if method.event.is_some() {
            return quote! {
                #(#docs)*
                #errors_doc
                #(#cfgs)*
                #vis fn #ident(&self, #(#params),*) -> ::coproq::__private::Result<()> {
                    ::coproq::__private::emit(&self.__coproq, &self.__check, #name, #packed)
                }
            };
        }
        let async_ident = format_ident!("{}_async", name, span = ident.span());
        let async_doc =
            format!("Like [`{name}`](Self::{name}), but returns at once with the call in flight.");
        let (reply, call) = match &method.output {
            Output::Unit => (quote!(()), quote!(::coproq::__private::call::<()>)),
            Output::Value(ty) | Output::FlatResult(ty) => {
                (quote!(#ty), quote!(::coproq::__private::call::<#ty>))
            }
            Output::AppResult { ok, err } => (
                quote!(::core::result::Result<#ok, #err>),
                quote!(::coproq::__private::call_result::<#ok, #err>),
            ),
        };
        quote! {
            #(#docs)*
            #errors_doc
            #(#cfgs)*
            #vis fn #ident(&self, #(#params),*) -> ::coproq::__private::Result<#reply> {
                #call(&self.__coproq, &self.__check, #name, #packed, true).wait()
            }

            #[doc = #async_doc]
            #(#cfgs)*
            #vis fn #async_ident(&self, #(#params),*) -> ::coproq::__private::Pending<#reply> {
                #call(&self.__coproq, &self.__check, #name, #packed, false)
            }
        }
    }

    /// `CalcServer<T>`, its constructors and `Debug`.
    fn server_struct(&self) -> TokenStream {
        let Self {
            server,
            vis,
            trait_ident,
            ..
        } = self;
        let doc = format!(
            "Serves a [`{trait_ident}`] implementation to the peer: register it with `Coprocess::listen`."
        );
        quote! {
            #[doc = #doc]
            #vis struct #server<__T> {
                __imp: ::std::sync::Arc<__T>,
            }

            #[automatically_derived]
            impl<__T> #server<__T> {
                /// Serves `imp`.
                #vis fn new(imp: __T) -> Self {
                    Self { __imp: ::std::sync::Arc::new(imp) }
                }

                /// Serves a shared `imp`.
                #vis fn from_arc(imp: ::std::sync::Arc<__T>) -> Self {
                    Self { __imp: imp }
                }
            }

            #[automatically_derived]
            impl<__T> ::core::fmt::Debug for #server<__T> {
                fn fmt(&self, __f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    __f.write_str(::core::stringify!(#server))
                }
            }
        }
    }

    /// `impl Service for CalcServer<T>`: one handler per method, plus the fingerprint.
    fn server_impl(&self) -> TokenStream {
        let Self {
            server,
            trait_ident,
            client,
            ..
        } = self;
        let service_name = self.service_name();
        let handlers = self.service.methods.iter().map(|m| self.server_handler(m));
        let checks = self.wire_type_checks();
        let registry = local("__registry");
        quote! {
            const _: () = {
                #checks

                #[automatically_derived]
                #[allow(unused_qualifications)]
                impl<__T> ::coproq::__private::Service for #server<__T>
                where
                    __T: #trait_ident + ::core::marker::Send + ::core::marker::Sync + 'static,
                {
                    fn register(self, #registry: &mut ::coproq::__private::Registry<'_>) {
                        #(#handlers)*
                        #registry.handle(
                            ::coproq::__private::fingerprint_method(#service_name),
                            |(): ()| #client::__coproq_fingerprint(),
                        );
                    }
                }
            };
        }
    }

    fn server_handler(&self, method: &Method<'_>) -> TokenStream {
        let trait_ident = self.trait_ident;
        let ident = method.ident;
        let name = method.name();
        let cfgs = method.cfgs();
        let idents: Vec<_> = method.args.iter().map(|arg| arg.ident).collect();
        let owned: Vec<_> = method.args.iter().map(|arg| owned(arg.ty)).collect();
        let pattern = match idents.as_slice() {
            [] => quote!((): ()),
            [one] => quote!(#one: #(#owned)*),
            _ => quote!((#(#idents),*): (#(#owned),*)),
        };
        let passed = method.args.iter().map(|arg| {
            let ident = arg.ident;
            if is_byte_slice(arg.ty) {
                quote!(#ident.as_slice())
            } else if is_byte_vec(arg.ty) {
                quote!(#ident.into_vec())
            } else if matches!(arg.ty, Type::Reference(_)) {
                quote!(&#ident)
            } else {
                quote!(#ident)
            }
        });
        let (imp, registry) = (local("__imp"), local("__registry"));
        let (register, handle_result) = match (method.event.is_some(), method.is_async) {
            (true, false) => (quote!(on), quote!(__handle_result)),
            (false, false) => (quote!(handle), quote!(__handle_result)),
            (true, true) => (quote!(on_async), quote!(__handle_result_async)),
            (false, true) => (quote!(handle_async), quote!(__handle_result_async)),
        };
        let call = quote!(<__T as #trait_ident>::#ident(&*#imp, #(#passed),*));
        // An async method's future owns what it uses: its own handle on the server, and
        // the decoded arguments.
        let body = if method.is_async {
            quote! {{
                let #imp = <::std::sync::Arc<__T> as ::core::clone::Clone>::clone(&#imp);
                async move { #call.await }
            }}
        } else {
            call
        };
        let register = match method.output {
            // A typed error's text, for dynamic callers, is its `Display` where it has one.
            Output::AppResult { err, .. } if method.event.is_none() => quote! {
                #registry.#handle_result(#name, move |#pattern| #body, |__e: &#err| {
                    use ::coproq::__private::{DisplayText as _, NoText as _};
                    (&::coproq::__private::ErrorText(__e)).__coproq_text()
                });
            },
            _ => quote!(#registry.#register(#name, move |#pattern| #body);),
        };
        quote! {
            #(#cfgs)*
            {
                let #imp = <::std::sync::Arc<__T> as ::core::clone::Clone>::clone(&self.__imp);
                #register
            }
        }
    }

    /// Compile-time checks that every argument and return type can cross the link, each
    /// spanned at the type so that the error points there.
    fn wire_type_checks(&self) -> TokenStream {
        let mut types: Vec<(Type, Span)> = Vec::new();
        for method in &self.service.methods {
            for arg in &method.args {
                types.push((owned(arg.ty), arg.ty.span()));
            }
            match &method.output {
                Output::Unit => {}
                Output::Value(ty) | Output::FlatResult(ty) => {
                    types.push(((*ty).clone(), ty.span()));
                }
                Output::AppResult { ok, err } => {
                    types.push(((*ok).clone(), ok.span()));
                    types.push(((*err).clone(), err.span()));
                }
            }
        }
        let checks = types.iter().map(
            |(ty, span)| quote_spanned!(*span=> ::coproq::__private::assert_wire_type::<#ty>();),
        );
        quote! {
            const _: () = { #(#checks)* };
        }
    }
}

impl ToTokens for Generator<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend([
            self.trait_item(),
            self.client_struct(),
            self.client_impl(),
            self.server_struct(),
            self.server_impl(),
        ]);
    }
}

/// A local of generated code: hygienic (mixed-site), so no user name can meet it.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// The arguments as one value: none as `()`, one bare, several as a tuple, exactly as a
/// dynamic caller would send them. Each name is re-spanned at its type, so that "does not
/// implement `Serialize`" points at the type.
fn pack(method: &Method<'_>) -> TokenStream {
    let idents: Vec<_> = method
        .args
        .iter()
        .filter_map(|arg| {
            let mut ident = arg.ident?.clone();
            ident.set_span(arg.ty.span());
            Some(if is_byte_slice(arg.ty) || is_byte_vec(arg.ty) {
                quote!(::coproq::__private::Bytes(::core::convert::AsRef::<[u8]>::as_ref(&#ident)))
            } else {
                ident.into_token_stream()
            })
        })
        .collect();
    match idents.as_slice() {
        [] => quote!(()),
        [one] => quote!(#one),
        _ => quote!((#(#idents),*)),
    }
}

/// The owned type a server decodes for an argument the trait takes by reference:
/// `&str` → `String`, `&[T]` → `Vec<T>`, `&T` → `T`; bytes (`&[u8]`, `Vec<u8>`) as bytes.
fn owned(ty: &Type) -> Type {
    if is_byte_slice(ty) || is_byte_vec(ty) {
        return syn::parse_quote!(::coproq::__private::ByteBuf);
    }
    let Type::Reference(reference) = ty else {
        return ty.clone();
    };
    match &*reference.elem {
        Type::Path(path) if path.path.is_ident("str") => syn::parse_quote!(::std::string::String),
        Type::Slice(slice) => {
            let elem = &slice.elem;
            syn::parse_quote!(::std::vec::Vec<#elem>)
        }
        elem => elem.clone(),
    }
}

/// One method's line of the fingerprint: `fn add(i32, i32) -> i32`, or `... event`.
fn fingerprint_line(method: &Method<'_>) -> String {
    let types: Vec<String> = method.args.iter().map(|arg| tokens_text(arg.ty)).collect();
    let output = match &method.output {
        Output::Unit => String::new(),
        Output::Value(ty) | Output::FlatResult(ty) => {
            format!(" -> {}", tokens_text(ty))
        }
        Output::AppResult { ok, err } => {
            format!(" -> Result<{}, {}>", tokens_text(ok), tokens_text(err))
        }
    };
    let kind = if method.event.is_some() { " event" } else { "" };
    format!("fn {}({}){output}{kind}", method.name(), types.join(", "))
}

/// A type's tokens as compact text.
fn tokens_text(ty: &impl ToTokens) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" < ", "<")
        .replace(" >", ">")
        .replace("& ", "&")
        .replace(" ,", ",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(input: TokenStream) -> String {
        service(TokenStream::new(), input).to_string()
    }

    #[test]
    fn generates_client_and_server() {
        let out = expand(quote! {
            pub trait Calc {
                fn add(&self, a: i32, b: i32) -> i32;
                #[event]
                fn log(&self, line: String);
            }
        });
        assert!(out.contains("pub struct CalcClient"), "{out}");
        assert!(out.contains("pub struct CalcServer"), "{out}");
        assert!(out.contains("fn add_async"), "{out}");
        assert!(!out.contains("fn log_async"), "{out}");
        assert!(
            !out.contains("# [event]"),
            "the marker must not reach the compiler: {out}"
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn invalid_services_keep_the_trait_and_report_every_error() {
        let out = expand(quote! {
            trait Bad {
                fn a(&mut self);
                fn b<T>(&self, t: T);
                #[event]
                fn c(&self) -> u32;
            }
        });
        assert!(out.contains("trait Bad"), "{out}");
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
        assert!(!out.contains("BadClient"), "{out}");
    }

    #[test]
    fn fingerprint_lines() {
        let item: ItemTrait = syn::parse_quote! {
            trait T {
                fn f(&self, a: &str, b: Vec<u8>) -> Result<u32, String>;
                #[event]
                fn e(&self, x: (u8, u8));
            }
        };
        let service = Service::from_syn(&item);
        let lines: Vec<_> = service.methods.iter().map(fingerprint_line).collect();
        assert_eq!(
            lines,
            [
                "fn f(&str, Vec<u8>) -> Result<u32, String>",
                "fn e((u8, u8)) event"
            ]
        );
    }

    #[test]
    fn borrowed_arguments_decode_owned() {
        let owned_of = |ty: Type| owned(&ty).to_token_stream().to_string();
        assert_eq!(
            owned_of(syn::parse_quote!(&str)),
            ":: std :: string :: String"
        );
        assert_eq!(
            owned_of(syn::parse_quote!(&[u32])),
            ":: std :: vec :: Vec < u32 >"
        );
        assert_eq!(
            owned_of(syn::parse_quote!(&[u8])),
            ":: coproq :: __private :: ByteBuf"
        );
        assert_eq!(
            owned_of(syn::parse_quote!(Vec<u8>)),
            ":: coproq :: __private :: ByteBuf"
        );
        assert_eq!(owned_of(syn::parse_quote!(&Point)), "Point");
        assert_eq!(owned_of(syn::parse_quote!(u32)), "u32");
    }

    #[test]
    fn attribute_arguments_are_refused() {
        let out = service(
            quote!(foo),
            quote!(
                trait T {
                    fn f(&self);
                }
            ),
        )
        .to_string();
        assert!(out.contains("takes no arguments"), "{out}");
    }
}
