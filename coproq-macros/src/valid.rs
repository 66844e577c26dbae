//! Checks of a service definition, one rule per function. Every problem is reported, at
//! the tokens that cause it, with a sentence saying what to write instead.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Error, FnArg, GenericArgument, PathArguments, ReturnType, TraitItem, Type};

use crate::ast::{Method, Service, is_event};

/// Collects errors so that all of them are reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, tokens: impl ToTokens, message: &str) {
        self.push(Error::new_spanned(tokens, message));
    }

    pub(crate) fn finish(self) -> Result<(), Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The attribute takes no arguments.
pub(crate) fn check_args(args: &TokenStream, errors: &mut Errors) {
    if !args.is_empty() {
        errors.at(
            args,
            "unknown argument: `#[coproq::service]` takes no arguments",
        );
    }
}

impl Service<'_> {
    pub(crate) fn validate(&self, errors: &mut Errors) {
        self.check_trait(errors);
        for method in &self.methods {
            method.validate(errors);
        }
        self.check_collisions(errors);
    }

    /// The trait itself: no generics, and only methods.
    fn check_trait(&self, errors: &mut Errors) {
        let item = self.original;
        if !item.generics.params.is_empty() {
            errors.at(
                &item.generics,
                "generic service traits are not supported; use concrete types",
            );
        }
        for item in &item.items {
            match item {
                TraitItem::Fn(_) => {}
                TraitItem::Type(ty) => errors.at(
                    ty,
                    "associated types are not supported in a `#[coproq::service]` trait; use a concrete type",
                ),
                TraitItem::Const(c) => errors.at(
                    c,
                    "associated consts are not supported in a `#[coproq::service]` trait; use a method or a free const",
                ),
                other => errors.at(other, "only methods are supported in a `#[coproq::service]` trait"),
            }
        }
    }

    /// Generated names must not clash: `new` is the client's constructor, `ready` its
    /// wait for room, a call method
    /// `x` gets an `x_async` twin, and an inherent method named like a method of a trait
    /// the client implements would shadow it (`client.clone()` would call the peer).
    fn check_collisions(&self, errors: &mut Errors) {
        let client = format!("{}Client", self.original.ident);
        for method in &self.methods {
            let name = method.name();
            if let Some(owner) = client_trait_method(&name) {
                errors.at(
                    method.ident,
                    &format!(
                        "method `{name}` conflicts with `{owner}::{name}`, which the generated `{client}` implements (`client.{name}()` would call the peer); rename the method"
                    ),
                );
            }
            if name == "new" || name == "ready" {
                errors.at(
                    method.ident,
                    &format!(
                        "method `{name}` conflicts with generated `{client}::{name}`; rename the method"
                    ),
                );
            }
            if let Some(base) = name.strip_suffix("_async")
                && self
                    .methods
                    .iter()
                    .any(|m| m.event.is_none() && m.name() == base)
            {
                errors.at(
                        method.ident,
                        &format!("method `{name}` conflicts with the generated `{client}::{name}` of method `{base}`; rename one of them"),
                    );
            }
        }
    }
}

impl Method<'_> {
    /// The method's name without `r#`: also its wire name.
    pub(crate) fn name(&self) -> String {
        self.ident.to_string().trim_start_matches("r#").to_owned()
    }

    fn validate(&self, errors: &mut Errors) {
        self.check_receiver(errors);
        self.check_signature(errors);
        self.check_args(errors);
        self.check_output(errors);
        self.check_event(errors);
    }

    /// Methods take `&self`: calls run concurrently and from other processes.
    fn check_receiver(&self, errors: &mut Errors) {
        let sig = &self.original.sig;
        match sig.inputs.first() {
            Some(FnArg::Receiver(receiver)) => {
                if receiver.reference.is_none() {
                    errors.at(receiver, "`#[coproq::service]` methods must take `&self`, not `self` by value");
                } else if receiver.mutability.is_some() {
                    errors.at(
                        receiver,
                        "`#[coproq::service]` methods must take `&self`, not `&mut self`; keep mutable state behind a `Mutex`",
                    );
                } else if receiver.colon_token.is_some() {
                    errors.at(receiver, "`#[coproq::service]` methods must take plain `&self`");
                }
            }
            _ => errors.at(
                &sig.ident,
                "`#[coproq::service]` methods must take `&self`; associated functions cannot be called remotely",
            ),
        }
    }

    /// No generics, `unsafe`, `extern` or variadics; an `async fn` has no default body.
    fn check_signature(&self, errors: &mut Errors) {
        let sig = &self.original.sig;
        if let Some(param) = sig.generics.lifetimes().next() {
            errors.at(
                param,
                "lifetime parameters are not supported on `#[coproq::service]` methods; arguments are borrowed for the call only, so write `&str` or `&[T]` without a lifetime, or an owned type",
            );
        }
        if let Some(param) = sig.generics.type_params().next() {
            errors.at(
                param,
                "`#[coproq::service]` methods cannot be generic; use concrete types",
            );
        }
        if let Some(param) = sig.generics.const_params().next() {
            errors.at(
                param,
                "`#[coproq::service]` methods cannot be generic; use concrete types",
            );
        }
        if let (Some(asyncness), Some(_)) = (&sig.asyncness, &self.original.default) {
            errors.at(
                asyncness,
                "an `async fn` of a `#[coproq::service]` trait cannot have a default body (its future must be `Send`, which the trait cannot promise for every `Self`); declare it with `;` and write the body in the `impl`",
            );
        }
        if let Some(unsafety) = &sig.unsafety {
            errors.at(
                unsafety,
                "`unsafe` methods are not supported in a `#[coproq::service]` trait",
            );
        }
        if let Some(abi) = &sig.abi {
            errors.at(
                abi,
                "`extern` methods are not supported in a `#[coproq::service]` trait",
            );
        }
        if let Some(variadic) = &sig.variadic {
            errors.at(
                variadic,
                "variadic methods are not supported in a `#[coproq::service]` trait",
            );
        }
    }

    /// Arguments are named plainly and have types that can be decoded into.
    fn check_args(&self, errors: &mut Errors) {
        for arg in &self.args {
            if arg.ident.is_none() {
                errors.at(
                    &arg.original.pat,
                    "argument patterns are not supported; use a plain identifier",
                );
            }
            check_wire_type(arg.ty, "an argument", errors);
            match arg.ty {
                Type::Reference(reference) => {
                    if reference.mutability.is_some() {
                        errors.at(arg.ty, "`&mut` arguments are not supported: the callee's changes could not reach the caller; pass the value and return the result");
                    } else if let Some(lifetime) = &reference.lifetime {
                        errors.at(
                            lifetime,
                            "explicit lifetimes are not supported in argument types; write `&str` or `&[T]` (borrowed for the call), or an owned type",
                        );
                    }
                    check_no_borrow_inside(&reference.elem, errors);
                }
                ty => check_no_borrow_inside(ty, errors),
            }
        }
    }

    /// The return type is an owned value.
    fn check_output(&self, errors: &mut Errors) {
        if let ReturnType::Type(_, ty) = &self.original.sig.output {
            if let Type::Reference(_) = &**ty {
                errors.at(
                    ty,
                    "`#[coproq::service]` methods must return an owned value, not a reference",
                );
            } else {
                check_wire_type(ty, "a return", errors);
                check_no_borrow_inside(ty, errors);
                check_serializable_error(ty, errors);
            }
        }
    }

    /// `#[event]` is bare, and events are one-way: nothing to return.
    fn check_event(&self, errors: &mut Errors) {
        let Some(event) = self.event else { return };
        if !matches!(event.meta, syn::Meta::Path(_)) {
            errors.at(event, "`#[event]` takes no arguments");
        }
        if self.original.attrs.iter().filter(|a| is_event(a)).count() > 1 {
            errors.at(event, "`#[event]` is given more than once");
        }
        if let ReturnType::Type(_, ty) = &self.original.sig.output {
            let unit = matches!(&**ty, Type::Tuple(t) if t.elems.is_empty());
            if !unit {
                errors.at(ty, "an `#[event]` method is one-way and cannot return a value; remove the return type, or remove `#[event]` to make it a call");
            }
        }
    }
}

/// Types that cannot be named on both sides of the link.
fn check_wire_type(ty: &Type, what: &str, errors: &mut Errors) {
    match ty {
        Type::ImplTrait(_) => errors.at(
            ty,
            &format!("`impl Trait` is not supported as {what} type; use a concrete type"),
        ),
        Type::TraitObject(_) => errors.at(
            ty,
            &format!("trait objects are not supported as {what} type; use a concrete type"),
        ),
        Type::Reference(reference) => check_wire_type(&reference.elem, what, errors),
        _ => {}
    }
}

/// The trait whose method `name` the generated client implements (directly, or through
/// a blanket impl), if any.
fn client_trait_method(name: &str) -> Option<&'static str> {
    Some(match name {
        "clone" | "clone_from" => "Clone",
        "fmt" => "Debug",
        "to_owned" | "clone_into" => "ToOwned",
        "borrow" => "Borrow",
        "borrow_mut" => "BorrowMut",
        "into" => "Into",
        "from" => "From",
        "try_into" => "TryInto",
        "try_from" => "TryFrom",
        "type_id" => "Any",
        _ => return None,
    })
}

/// Borrowed types only at the top of an argument (`&str`, `&[T]`, borrowed for the call):
/// the far side decodes into owned values, so `Option<&str>` or `Vec<&str>` cannot be
/// built there.
fn check_no_borrow_inside(ty: &Type, errors: &mut Errors) {
    let inner: Vec<&Type> = match ty {
        Type::Path(path) => path
            .path
            .segments
            .iter()
            .flat_map(|segment| match &segment.arguments {
                PathArguments::AngleBracketed(args) => args
                    .args
                    .iter()
                    .filter_map(|arg| match arg {
                        GenericArgument::Type(ty) => Some(ty),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect(),
        Type::Tuple(tuple) => tuple.elems.iter().collect(),
        Type::Array(array) => vec![&*array.elem],
        Type::Slice(slice) => vec![&*slice.elem],
        Type::Paren(paren) => vec![&*paren.elem],
        Type::Group(group) => vec![&*group.elem],
        _ => Vec::new(),
    };
    for ty in inner {
        if let Type::Reference(reference) = ty {
            let owned = match &*reference.elem {
                Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
                Type::Slice(s) => format!("Vec<{}>", s.elem.to_token_stream()),
                elem => elem.to_token_stream().to_string(),
            };
            errors.at(
                ty,
                &format!("borrowed types are supported only as a whole argument (`&str`, `&[T]`), not inside another type: the far side decodes owned values; use `{owned}` here"),
            );
        } else {
            check_no_borrow_inside(ty, errors);
        }
    }
}

/// `std::io::Error` (in `io::Result<T>` or `Result<T, io::Error>`) has no serde impls.
fn check_serializable_error(ty: &Type, errors: &mut Errors) {
    let Type::Path(path) = ty else { return };
    let Some(last) = path.path.segments.last() else {
        return;
    };
    let in_io = path.path.segments.iter().any(|s| s.ident == "io");
    let err = match &last.arguments {
        PathArguments::AngleBracketed(args) if last.ident == "Result" => {
            match args.args.iter().nth(1) {
                Some(GenericArgument::Type(err)) => Some(err),
                _ if in_io => None,
                _ => return,
            }
        }
        _ => return,
    };
    let io_error = match err {
        // `io::Result<T>`.
        None => true,
        Some(Type::Path(err)) => {
            let segments: Vec<String> = err
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            segments.ends_with(&["io".to_owned(), "Error".to_owned()])
        }
        Some(_) => false,
    };
    if io_error {
        errors.at(
            ty,
            "`std::io::Error` cannot cross the link (it is not serializable); return `Result<T, String>` with `.map_err(|e| e.to_string())`, or a serializable error type",
        );
    }
}
