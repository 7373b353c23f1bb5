//! What `#[stage]` emits when it rejects the impl block: the role impl and the `Stage` impl of a
//! stage whose events are the placeholder `fallback::Rejected` of genstage's hidden module, next to the
//! user's block (kept as written) and the errors.
//!
//! Without them, one mistake in a stage gives a second error at each use of it ("`Printer` is not
//! a stage" in `pipeline!`, "`Printer: Consumer` is not satisfied" in the builder). With them, the
//! stage keeps the role its attribute names (or `AnyRole`, which every node check of `pipeline!`
//! accepts, when it names none) and its handle is a `RejectedRef`, whose edges `pipeline!` skips.
//! thiserror's `fallback.rs` does the same for `#[derive(Error)]`.
//!
//! The fallback only reads what it must from the attribute, leniently: the role when the first
//! argument is one, and `crate = "path"`. Nothing is reported here; `parse.rs` and `validate.rs`
//! have reported every mistake already.

use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::parse::Parser;
use syn::{GenericArgument, ImplItem, ItemImpl, PathArguments, ReturnType, Type, TypeParamBound};

use super::expand::stage_generics;
use super::parse::{
    container_arg, future_output, not_a_stage_type, typed, ungroup, Callback, Role,
};
use super::validate::result_ok;

/// The role and `Stage` impls of a rejected stage, or nothing when the item is not an impl block
/// of a type that can be a stage (not of a trait object, see `parse::not_a_stage_type`).
pub(crate) fn expand_fallback(attr: &TokenStream, item: &TokenStream) -> TokenStream {
    let Ok(item) = syn::parse2::<ItemImpl>(item.clone()) else {
        return TokenStream::new();
    };
    if not_a_stage_type(&item.self_ty).is_some() {
        return TokenStream::new();
    }
    let (role, krate) = read_attr(attr);
    let private = crate::private_path(&krate);
    let self_ty = &item.self_ty;

    let mut generics = stage_generics(&item, &krate);
    // The role traits and `Stage` require `Send + 'static`. A stage that is neither (one that
    // borrows, already reported) must not fail a second time here: with the bound as a where
    // clause the impls merely do not apply. `for<'__rejected>` keeps rustc from refusing a bound
    // that names no generic parameter and is false (trivial bounds are unstable, rust#48214).
    // Any type parses as a bounded type; should one not, the bound is left out.
    if let Ok(bound) =
        syn::parse2(quote!(for<'__rejected> #self_ty: #private::stage::Send + 'static))
    {
        generics.make_where_clause().predicates.push(bound);
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();

    // On `impl Trait for Type` (rejected: `#[stage]` writes the trait impls itself) the user's
    // impl may be the role impl or the `Stage` impl: only what cannot conflict with it is emitted.
    let trait_name = item
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .map(|segment| segment.ident.to_string());
    let role_impl = match (role, &trait_name) {
        (Some(role), None) => {
            let items = role_items(role, &krate);
            let role_trait = match role {
                Role::Producer => quote!(#krate::Producer),
                Role::ProducerConsumer => quote!(#krate::ProducerConsumer),
                Role::Consumer => quote!(#krate::Consumer),
            };
            quote! {
                impl #impl_generics #role_trait for #self_ty #where_clause {
                    #items
                }
            }
        }
        _ => TokenStream::new(),
    };
    if trait_name.as_deref() == Some("Stage") {
        return TokenStream::new();
    }
    let message_impls = message_impls(&item, &krate, &generics, &[]);
    let role_marker = match role {
        Some(Role::Producer) => quote!(#private::pipeline::IsProducer),
        Some(Role::ProducerConsumer) => quote!(#private::pipeline::IsProducerConsumer),
        Some(Role::Consumer) => quote!(#private::pipeline::IsConsumer),
        None => quote!(#private::fallback::AnyRole),
    };
    quote! {
        const _: () = {
            #role_impl
            #message_impls

            impl #impl_generics #krate::Stage for #self_ty #where_clause {
                type Ref = #private::fallback::RejectedRef<#role_marker>;
                fn add_to(
                    self,
                    _: &mut #krate::Pipeline,
                    _: #private::Option<#private::String>,
                ) -> Self::Ref {
                    #private::fallback::RejectedRef::new()
                }
            }
        };
    }
}

/// `HandleCall<M>`, `HandleCast<M>` or `HandleInfo<M>` for each message callback of the block
/// whose message type reads plainly, but those in `written` (the sound ones, which `expand.rs`
/// implements), never called: without them, code that sends the stage a message
/// (`stage.call(request)` on a builder's reference) reports a rejected callback again at each
/// send. A call's answer is the `R` of its `ReplyTo<R>` or, without one, what it returns (the
/// `Output` of a returned `impl Future`, the `T` of a `Result<T, E>`): returning the answer is the
/// likely mistake. Nothing is
/// emitted for a message type that an impl header could not name as written (a borrow, a lifetime
/// but `'static`, `Self`, `impl`, the method's own generics), which would be an error of its own.
/// `item` is the block as written: a callback defined a second time, left out of the block
/// emitted, still takes its message.
pub(crate) fn message_impls(
    item: &ItemImpl,
    krate: &syn::Path,
    generics: &syn::Generics,
    written: &[Callback],
) -> TokenStream {
    if item.trait_.is_some() {
        return TokenStream::new();
    }
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let context = quote!(&mut #krate::Context<'_, Self>);
    let never = quote!(-> #krate::StageResult<()> { ::core::unreachable!() });
    let mut written: Vec<(String, String)> = written
        .iter()
        .filter_map(|callback| {
            let message = callback.arg.as_ref()?.to_token_stream().to_string();
            Some((callback.kind.name().to_owned(), message))
        })
        .collect();
    let mut impls = TokenStream::new();
    for method in item.items.iter().filter_map(|item| match item {
        ImplItem::Fn(method) if method.sig.generics.params.is_empty() => Some(method),
        _ => None,
    }) {
        let name = method.sig.ident.to_string();
        let Some(message) = method
            .sig
            .inputs
            .iter()
            .filter_map(typed)
            .next()
            .filter(|ty| plain(ty))
        else {
            continue;
        };
        let key = (name.clone(), message.to_token_stream().to_string());
        if written.contains(&key) {
            continue;
        }
        let message_impl = match name.as_str() {
            "handle_call" => {
                // The `Output` of a returned `impl Future<Output = …>`, and the `T` of a
                // `Result<T, E>` (a call's error stops the stage: the caller never gets it).
                let returned = match &method.sig.output {
                    ReturnType::Type(_, ty) => match ungroup(ty) {
                        Type::ImplTrait(opaque) => future_output(&opaque.bounds),
                        ty => Some(ty.clone()),
                    },
                    ReturnType::Default => None,
                }
                .map(|ty| result_ok(&ty).cloned().unwrap_or(ty));
                let reply = method
                    .sig
                    .inputs
                    .iter()
                    .filter_map(typed)
                    .find_map(|ty| container_arg(ty, &["ReplyTo"]).cloned())
                    .or(returned)
                    .filter(plain)
                    .map_or_else(|| quote!(()), |ty| ty.to_token_stream());
                quote! {
                    impl #impl_generics #krate::HandleCall<#message> for #self_ty #where_clause {
                        type Reply = #reply;
                        type Emitted = ();
                        async fn handle_call(
                            &mut self,
                            _: #message,
                            _: #krate::ReplyTo<Self::Reply>,
                            _: #context,
                        ) #never
                    }
                }
            }
            "handle_cast" => quote! {
                impl #impl_generics #krate::HandleCast<#message> for #self_ty #where_clause {
                    type Emitted = ();
                    async fn handle_cast(&mut self, _: #message, _: #context) #never
                }
            },
            "handle_info" => quote! {
                impl #impl_generics #krate::HandleInfo<#message> for #self_ty #where_clause {
                    type Emitted = ();
                    async fn handle_info(&mut self, _: #message, _: #context) #never
                }
            },
            _ => continue,
        };
        written.push(key);
        impls.extend(message_impl);
    }
    impls
}

/// Whether `ty` is a sized type an impl header names as written: paths (without `Self`), tuples
/// and arrays of them, `&'static` references, function pointers, and trait objects behind a
/// reference or in a path's arguments, with no lifetime but `'static` (elided ones inside a
/// function's signature are its own).
fn plain(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Path(path) => path.qself.is_none() && plain_path(&path.path),
        Type::Tuple(tuple) => tuple.elems.iter().all(plain),
        Type::Array(array) => plain(&array.elem) && matches!(array.len, syn::Expr::Lit(_)),
        Type::Reference(reference) => {
            reference
                .lifetime
                .as_ref()
                .is_some_and(|lifetime| lifetime.ident == "static")
                && plain_unsized(&reference.elem)
        }
        Type::BareFn(function) => function.lifetimes.is_none() && plain_signature(function),
        _ => false,
    }
}

/// [`plain`], or a plain slice or trait object, which only a reference or a pointer's argument
/// (`Box<dyn Fn() + Send>`) holds: a message of one would be an error of its own.
fn plain_unsized(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Slice(slice) => plain(&slice.elem),
        Type::TraitObject(object) => object.bounds.iter().all(|bound| match bound {
            TypeParamBound::Trait(bound) => bound.lifetimes.is_none() && plain_path(&bound.path),
            TypeParamBound::Lifetime(lifetime) => lifetime.ident == "static",
            _ => false,
        }),
        ty => plain(ty),
    }
}

/// Whether each segment of `path` is plain: not `Self`, its arguments plain types, `'static`,
/// literals, `Item = T` of a plain `T`, or a function's signature, `Fn(A) -> B`.
fn plain_path(path: &syn::Path) -> bool {
    path.segments.iter().all(|segment| {
        segment.ident != "Self"
            && match &segment.arguments {
                PathArguments::None => true,
                PathArguments::AngleBracketed(args) => args.args.iter().all(|arg| match arg {
                    GenericArgument::Type(ty) => plain_unsized(ty),
                    GenericArgument::Lifetime(lifetime) => lifetime.ident == "static",
                    GenericArgument::Const(syn::Expr::Lit(_)) => true,
                    GenericArgument::AssocType(assoc) => {
                        assoc.generics.is_none() && plain(&assoc.ty)
                    }
                    _ => false,
                }),
                PathArguments::Parenthesized(args) => plain_signature(args),
            }
    })
}

/// Whether a function's signature (of `fn(A) -> B` or `Fn(A) -> B`) names no `Self`, no
/// lifetime but `'static` and no `impl` or `_`: its elided lifetimes are its own.
fn plain_signature(signature: &impl ToTokens) -> bool {
    fn plain_tokens(tokens: TokenStream) -> bool {
        let mut tokens = tokens.into_iter().peekable();
        while let Some(token) = tokens.next() {
            let plain = match &token {
                TokenTree::Ident(ident) => ident != "Self" && ident != "impl" && ident != "_",
                TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                    matches!(tokens.peek(), Some(TokenTree::Ident(ident)) if ident == "static")
                }
                TokenTree::Group(group) => plain_tokens(group.stream()),
                _ => true,
            };
            if !plain {
                return false;
            }
        }
        true
    }
    plain_tokens(signature.to_token_stream())
}

/// The role trait's items, with the placeholder event type; the callback is never called.
fn role_items(role: Role, krate: &syn::Path) -> TokenStream {
    let private = crate::private_path(krate);
    let rejected = quote!(#private::fallback::Rejected);
    match role {
        Role::Producer => quote! {
            type Output = #rejected;
            async fn handle_demand(
                &mut self,
                _: usize,
            ) -> #krate::StageResult<#krate::Emit<#rejected>> {
                ::core::unreachable!()
            }
        },
        Role::ProducerConsumer => quote! {
            type Input = #rejected;
            type Output = #rejected;
            async fn handle_events(
                &mut self,
                _: #private::Vec<#rejected>,
            ) -> #krate::StageResult<#private::Vec<#rejected>> {
                ::core::unreachable!()
            }
        },
        Role::Consumer => quote! {
            type Input = #rejected;
            async fn handle_events(
                &mut self,
                _: #private::Vec<#rejected>,
            ) -> #krate::StageResult<()> {
                ::core::unreachable!()
            }
        },
    }
}

/// The role (when the attribute's first argument is one) and the crate path (`crate = "path"` when
/// `validate.rs` would accept it, or the mistaken `crate = path`, or `::genstage`), read from the
/// attribute's arguments whether or not they parse.
fn read_attr(attr: &TokenStream) -> (Option<Role>, syn::Path) {
    let mut arguments: Vec<Vec<TokenTree>> = vec![Vec::new()];
    for tree in attr.clone() {
        match &tree {
            TokenTree::Punct(punct) if punct.as_char() == ',' => arguments.push(Vec::new()),
            _ => {
                if let Some(last) = arguments.last_mut() {
                    last.push(tree);
                }
            }
        }
    }
    let role = match arguments.first().map(Vec::as_slice) {
        Some([TokenTree::Ident(ident)]) => Role::from_ident(ident),
        _ => None,
    };
    let krate = arguments
        .iter()
        .find_map(|argument| match argument.as_slice() {
            [TokenTree::Ident(key), TokenTree::Punct(eq), TokenTree::Literal(value)]
                if key == "crate" && eq.as_char() == '=' =>
            {
                syn::parse2::<syn::LitStr>(TokenStream::from(TokenTree::Literal(value.clone())))
                    .ok()
                    .and_then(|lit| lit.parse_with(syn::Path::parse_mod_style).ok())
                    .filter(|path| crate::options::self_in_crate_path(path).is_none())
            }
            // `crate = gs`, `pipeline!`'s form without the string: reported by `validate.rs`,
            // and still the crate meant (`::genstage` may not exist where genstage is renamed).
            [TokenTree::Ident(key), TokenTree::Punct(eq), path @ ..]
                if key == "crate" && eq.as_char() == '=' && !path.is_empty() =>
            {
                syn::Path::parse_mod_style
                    .parse2(path.iter().cloned().collect())
                    .ok()
                    .filter(|path| crate::options::self_in_crate_path(path).is_none())
            }
            _ => None,
        })
        .unwrap_or_else(|| syn::parse_quote!(::genstage));
    (role, krate)
}
