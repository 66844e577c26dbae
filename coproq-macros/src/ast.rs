//! The service as the macro sees it: the trait's methods, their arguments and return
//! shapes, each keeping a reference to the syntax it came from so errors can point there.

use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, ReturnType, TraitItem,
    TraitItemFn, Type,
};

/// A trait under `#[coproq::service]`.
pub(crate) struct Service<'a> {
    pub(crate) original: &'a ItemTrait,
    pub(crate) methods: Vec<Method<'a>>,
}

/// One method of the trait.
pub(crate) struct Method<'a> {
    pub(crate) original: &'a TraitItemFn,
    pub(crate) ident: &'a Ident,
    /// The `#[event]` marker, if this is a one-way event.
    pub(crate) event: Option<&'a Attribute>,
    pub(crate) args: Vec<Arg<'a>>,
    pub(crate) output: Output<'a>,
    /// Declared `async fn`: served by a future, called like any other method.
    pub(crate) is_async: bool,
}

/// One argument after `&self`.
pub(crate) struct Arg<'a> {
    pub(crate) original: &'a syn::PatType,
    /// The argument's name, if it is a plain identifier.
    pub(crate) ident: Option<&'a Ident>,
    pub(crate) ty: &'a Type,
}

/// What a method returns, as far as the wire is concerned.
pub(crate) enum Output<'a> {
    /// Nothing (or `()`).
    Unit,
    /// A plain value.
    Value(&'a Type),
    /// `Result<T, E>`: the client receives `E` typed.
    AppResult { ok: &'a Type, err: &'a Type },
    /// `Result<T>` of some crate's alias (`coproq::Result`, `io::Result`): the error
    /// becomes the client's remote error.
    FlatResult(&'a Type),
}

impl<'a> Service<'a> {
    pub(crate) fn from_syn(item: &'a ItemTrait) -> Self {
        let methods = item
            .items
            .iter()
            .filter_map(|item| match item {
                TraitItem::Fn(method) => Some(Method::from_syn(method)),
                _ => None,
            })
            .collect();
        Self {
            original: item,
            methods,
        }
    }
}

impl<'a> Method<'a> {
    fn from_syn(original: &'a TraitItemFn) -> Self {
        let args = original
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(arg) => Some(Arg {
                    original: arg,
                    ident: match &*arg.pat {
                        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                            Some(&pat.ident)
                        }
                        _ => None,
                    },
                    ty: &arg.ty,
                }),
                FnArg::Receiver(_) => None,
            })
            .collect();
        Self {
            original,
            ident: &original.sig.ident,
            event: original.attrs.iter().find(|a| is_event(a)),
            args,
            output: Output::from_syn(&original.sig.output),
            is_async: original.sig.asyncness.is_some(),
        }
    }

    /// Attributes that carry over to generated items: docs and `#[cfg]`s.
    pub(crate) fn docs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.original
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
    }

    pub(crate) fn cfgs(&self) -> impl Iterator<Item = &'a Attribute> {
        self.original
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
    }
}

/// Whether `attr` is the `#[event]` marker.
pub(crate) fn is_event(attr: &Attribute) -> bool {
    attr.path().is_ident("event")
}

impl<'a> Output<'a> {
    fn from_syn(output: &'a ReturnType) -> Self {
        let ty = match output {
            ReturnType::Default => return Self::Unit,
            ReturnType::Type(_, ty) => &**ty,
        };
        if let Type::Tuple(tuple) = ty
            && tuple.elems.is_empty()
        {
            return Self::Unit;
        }
        match result_args(ty).as_deref() {
            Some([ok, err]) => Self::AppResult { ok, err },
            Some([ok]) => Self::FlatResult(ok),
            _ => Self::Value(ty),
        }
    }
}

/// The type arguments of `Result<..>` (any path ending in `Result`).
fn result_args(ty: &Type) -> Option<Vec<&Type>> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args
        .iter()
        .map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect()
}

/// `Vec<u8>` (any path ending in `Vec`).
pub(crate) fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    last.ident == "Vec"
        && args.args.len() == 1
        && matches!(args.args.first(), Some(GenericArgument::Type(elem)) if is_u8(elem))
}

/// `&[u8]`.
pub(crate) fn is_byte_slice(ty: &Type) -> bool {
    matches!(ty, Type::Reference(r) if r.mutability.is_none() && matches!(&*r.elem, Type::Slice(s) if is_u8(&s.elem)))
}

fn is_u8(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident("u8"))
}
