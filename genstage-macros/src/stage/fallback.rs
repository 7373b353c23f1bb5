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
use quote::quote;
use syn::ItemImpl;

use super::expand::stage_generics;
use super::parse::{not_a_stage_type, Role};

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
    let role_marker = match role {
        Some(Role::Producer) => quote!(#private::pipeline::IsProducer),
        Some(Role::ProducerConsumer) => quote!(#private::pipeline::IsProducerConsumer),
        Some(Role::Consumer) => quote!(#private::pipeline::IsConsumer),
        None => quote!(#private::fallback::AnyRole),
    };
    quote! {
        const _: () = {
            #role_impl

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
/// `validate.rs` would accept it, or `::genstage`), read from the attribute's arguments whether or
/// not they parse.
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
            _ => None,
        })
        .unwrap_or_else(|| syn::parse_quote!(::genstage));
    (role, krate)
}
