//! Code generation: the role trait impl and the `Stage` impl, next to the user's impl block.
//!
//! The event types come from the model (read from the callback's signature by `validate.rs`). The
//! callback's argument and value are converted through helper traits (`DemandArg`, `IntoEmit`,
//! `IntoEvents`, `IntoDone`), each use spanned at the user's type, so a wrong one is reported
//! there with the helper trait's `on_unimplemented` sentence. The traits are defined inside the
//! expansion's `const _` block, so rustc's `help:` line names them plainly ("the trait `IntoDone`
//! is not implemented for `Vec<u64>`"), never through genstage's hidden module.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::Type;

use super::parse::Role;
use super::validate::{BufferSize, ProducerOpts, Settings, StageModel, SubscribeOpts};

/// The trait impls for a validated stage (without the user's impl block, which is kept as written).
pub(crate) fn expand_model(model: &StageModel) -> TokenStream {
    let krate = &model.krate;
    let private = crate::private_path(krate);
    let self_ty = &model.item.self_ty;
    let generics = stage_generics(&model.item, &model.krate);
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let callback = &model.callback;
    let name = &callback.name;
    let output = &callback.output;
    let output_span = first_span(output);
    let name_span = name.span();
    let awaited = callback.awaited.then(|| quote!(.await));
    let arg = callback
        .arg
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(()));
    let arg_span = first_span(&arg);

    // The events type, from the signature; the callback's value converted through a helper trait
    // spanned at the user's return type, so a wrong one is reported there.
    let input = model.input.iter();
    let output_event = model.output.iter();

    let (role_trait, add, stage_ref, role_items) = match model.role {
        Role::Producer => {
            let demand = quote_spanned! {arg_span=>
                <#arg as DemandArg>::from_demand(__demand)
            };
            let convert = quote_spanned! {output_span=>
                <#output as IntoEmit<Self::Output>>::into_emit
            };
            let future = quote_spanned! {name_span=>
                async move { #convert(<#self_ty>::#name(self, #demand) #awaited) }
            };
            let callback_fn = quote_spanned! {name_span=>
                // A trait method returning `impl Future + Send` (the trait's signature), whose body
                // is one async block: what clippy would have written as an `async fn`.
                #[allow(clippy::manual_async_fn)]
                fn handle_demand(
                    &mut self,
                    __demand: usize,
                ) -> impl #private::Future<
                    Output = #krate::StageResult<#krate::Emit<Self::Output>>,
                > + #private::stage::Send {
                    #future
                }
            };
            let options = producer_options(model, "for_producer");
            let items = quote! {
                #( type Output = #output_event; )*
                #callback_fn
                #options
            };
            (
                quote!(#krate::Producer),
                quote!(add_producer_as),
                quote!(#krate::ProducerRef<Self>),
                items,
            )
        }
        Role::ProducerConsumer => {
            let convert = quote_spanned! {output_span=>
                <#output as IntoEvents<Self::Output>>::into_events
            };
            let future = quote_spanned! {name_span=>
                async move { #convert(<#self_ty>::#name(self, __events) #awaited) }
            };
            let subscribe = subscribe_options(model);
            let callback_fn = quote_spanned! {name_span=>
                // A trait method returning `impl Future + Send` (the trait's signature), whose body
                // is one async block: what clippy would have written as an `async fn`.
                #[allow(clippy::manual_async_fn)]
                fn handle_events(
                    &mut self,
                    __events: #private::Vec<Self::Input>,
                ) -> impl #private::Future<
                    Output = #krate::StageResult<#private::Vec<Self::Output>>,
                > + #private::stage::Send {
                    #future
                }
            };
            let options = producer_options(model, "for_producer_consumer");
            let items = quote! {
                #( type Input = #input; )*
                #( type Output = #output_event; )*
                #callback_fn
                #subscribe
                #options
            };
            (
                quote!(#krate::ProducerConsumer),
                quote!(add_producer_consumer_as),
                quote!(#krate::ProducerConsumerRef<Self>),
                items,
            )
        }
        Role::Consumer => {
            let convert = quote_spanned! {output_span=>
                <#output as IntoDone>::into_done
            };
            let future = quote_spanned! {name_span=>
                async move { #convert(<#self_ty>::#name(self, __events) #awaited) }
            };
            let callback_fn = quote_spanned! {name_span=>
                // A trait method returning `impl Future + Send` (the trait's signature), whose body
                // is one async block: what clippy would have written as an `async fn`.
                #[allow(clippy::manual_async_fn)]
                fn handle_events(
                    &mut self,
                    __events: #private::Vec<Self::Input>,
                ) -> impl #private::Future<Output = #krate::StageResult<()>> + #private::stage::Send {
                    #future
                }
            };
            let subscribe = subscribe_options(model);
            let items = quote! {
                #( type Input = #input; )*
                #callback_fn
                #subscribe
            };
            (
                quote!(#krate::Consumer),
                quote!(add_consumer_as),
                quote!(#krate::ConsumerRef<Self>),
                items,
            )
        }
    };

    let max_demand = known_max_demand(model).map(|(max, default)| {
        quote!(const __MAX_DEMAND: #private::Option<(::core::primitive::usize, ::core::primitive::bool)> = #private::Some((#max, #default));)
    });

    let helpers = helper_traits(model.role, krate);

    quote! {
        const _: () = {
            #helpers

            impl #impl_generics #role_trait for #self_ty #where_clause {
                #role_items
            }

            impl #impl_generics #krate::Stage for #self_ty #where_clause {
                type Ref = #stage_ref;
                #max_demand
                fn add_to(
                    self,
                    __pipeline: &mut #krate::Pipeline,
                    __name: #private::Option<#private::String>,
                ) -> Self::Ref {
                    __pipeline.#add(__name, self)
                }
            }
        };
    }
}

/// The helper traits the role's callback goes through: what the callback may take and return,
/// each with the sentence rustc prints when a type is not one of them.
///
/// | callback | parameter | returns |
/// |---|---|---|
/// | producer `handle_demand` | `usize` (`DemandArg`) | `Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>`, `Result<Emit<T>, E>` (`IntoEmit`) |
/// | producer_consumer `handle_events` | `Vec<I>` | `Vec<O>`, `Result<Vec<O>, E>` (`IntoEvents`) |
/// | consumer `handle_events` | `Vec<I>` | `()`, `Result<(), E>` (`IntoDone`) |
///
/// `E` is any error that converts into `StageError`. Every impl is `do_not_recommend`, so the
/// error is the trait's sentence rather than a list of impls.
fn helper_traits(role: Role, krate: &syn::Path) -> TokenStream {
    let private = crate::private_path(krate);
    let result = quote!(#krate::StageResult);
    let emit = quote!(#krate::Emit);
    let vec = quote!(#private::Vec);
    let error = quote!(#krate::StageError);
    const ERROR_NOTE: &str = "`E` converts into `genstage::StageError` when it is a `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`";
    match role {
        Role::Producer => quote! {
            #[diagnostic::on_unimplemented(
                message = "a producer's `handle_demand` takes the demand as a `usize`, not `{Self}`",
                label = "expected `usize`",
                note = "write it `fn handle_demand(&mut self, demand: usize) -> Vec<T>`"
            )]
            trait DemandArg {
                fn from_demand(demand: ::core::primitive::usize) -> Self;
            }
            #[diagnostic::do_not_recommend]
            impl DemandArg for ::core::primitive::usize {
                #[inline]
                fn from_demand(demand: ::core::primitive::usize) -> Self {
                    demand
                }
            }
            #[diagnostic::on_unimplemented(
                message = "a producer's `handle_demand` cannot return `{Self}`",
                label = "expected `Vec<T>`, `Emit<T>`, or a `Result` of either whose error converts into `genstage::StageError`",
                note = "`handle_demand` returns `Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>` or `Result<Emit<T>, E>`, where `T` is the event type",
                note = #ERROR_NOTE
            )]
            trait IntoEmit<T> {
                fn into_emit(self) -> #result<#emit<T>>;
            }
            #[diagnostic::do_not_recommend]
            impl<T> IntoEmit<T> for #vec<T> {
                #[inline]
                fn into_emit(self) -> #result<#emit<T>> {
                    #private::Ok(#emit::more(self))
                }
            }
            #[diagnostic::do_not_recommend]
            impl<T> IntoEmit<T> for #emit<T> {
                #[inline]
                fn into_emit(self) -> #result<#emit<T>> {
                    #private::Ok(self)
                }
            }
            #[diagnostic::do_not_recommend]
            impl<T, E: ::core::convert::Into<#error>> IntoEmit<T> for #private::Result<#vec<T>, E> {
                #[inline]
                fn into_emit(self) -> #result<#emit<T>> {
                    self.map(#emit::more).map_err(::core::convert::Into::into)
                }
            }
            #[diagnostic::do_not_recommend]
            impl<T, E: ::core::convert::Into<#error>> IntoEmit<T> for #private::Result<#emit<T>, E> {
                #[inline]
                fn into_emit(self) -> #result<#emit<T>> {
                    self.map_err(::core::convert::Into::into)
                }
            }
        },
        Role::ProducerConsumer => quote! {
            #[diagnostic::on_unimplemented(
                message = "a producer_consumer's `handle_events` cannot return `{Self}`",
                label = "expected `Vec<T>` or a `Result<Vec<T>, E>` whose error converts into `genstage::StageError`",
                note = "a producer_consumer's `handle_events` returns `Vec<T>` or `Result<Vec<T>, E>`, where `T` is the event type it emits",
                note = #ERROR_NOTE
            )]
            trait IntoEvents<T> {
                fn into_events(self) -> #result<#vec<T>>;
            }
            #[diagnostic::do_not_recommend]
            impl<T> IntoEvents<T> for #vec<T> {
                #[inline]
                fn into_events(self) -> #result<#vec<T>> {
                    #private::Ok(self)
                }
            }
            #[diagnostic::do_not_recommend]
            impl<T, E: ::core::convert::Into<#error>> IntoEvents<T> for #private::Result<#vec<T>, E> {
                #[inline]
                fn into_events(self) -> #result<#vec<T>> {
                    self.map_err(::core::convert::Into::into)
                }
            }
        },
        Role::Consumer => quote! {
            #[diagnostic::on_unimplemented(
                message = "a consumer's `handle_events` returns `()` or `Result<(), E>`, not `{Self}`",
                label = "expected `()` or a `Result<(), E>` whose error converts into `genstage::StageError`",
                note = #ERROR_NOTE,
                note = "a consumer emits no events; a stage that does is a producer_consumer: `#[stage(producer_consumer)]`"
            )]
            trait IntoDone {
                fn into_done(self) -> #result<()>;
            }
            #[diagnostic::do_not_recommend]
            impl IntoDone for () {
                #[inline]
                fn into_done(self) -> #result<()> {
                    #private::Ok(())
                }
            }
            #[diagnostic::do_not_recommend]
            impl<E: ::core::convert::Into<#error>> IntoDone for #private::Result<(), E> {
                #[inline]
                fn into_done(self) -> #result<()> {
                    self.map_err(::core::convert::Into::into)
                }
            }
        },
    }
}

/// The `max_demand` a consumer or producer_consumer subscribes with, when known here (a literal
/// or the default), and whether it is the default: `pipeline!` checks a literal edge
/// `min_demand` against it.
fn known_max_demand(model: &StageModel) -> Option<(usize, bool)> {
    if model.role == Role::Producer {
        return None;
    }
    match &model.subscribe {
        Settings::Attribute(SubscribeOpts {
            max_demand: None, ..
        }) => Some((crate::options::DEFAULT_MAX_DEMAND, true)),
        Settings::Attribute(SubscribeOpts {
            max_demand:
                Some(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Int(int),
                    ..
                })),
            ..
        }) => int.base10_parse().ok().map(|max| (max, false)),
        _ => None,
    }
}

/// The impl block's generics, with `Send + 'static` required of the stage and of each type
/// parameter: a stage runs in its own task, and its events cross tasks. Without these bounds, an
/// `impl<T> Forward<T>` that did not spell them out would fail in many places at once; with them,
/// the trait impls simply hold for the `T`s that can run.
pub(crate) fn stage_generics(item: &syn::ItemImpl, krate: &syn::Path) -> syn::Generics {
    let mut generics = item.generics.clone();
    if generics.type_params().next().is_none() {
        return generics;
    }
    let private = crate::private_path(krate);
    let self_ty = &item.self_ty;
    let params: Vec<syn::Ident> = generics.type_params().map(|p| p.ident.clone()).collect();
    let where_clause = generics.make_where_clause();
    // Any type parses as a bounded type; should one not, the bound is left to the trait's own.
    if let Ok(predicate) = syn::parse2(quote!(#self_ty: #private::stage::Send + 'static)) {
        where_clause.predicates.push(predicate);
    }
    for param in params {
        where_clause
            .predicates
            .push(syn::parse_quote!(#param: #private::stage::Send + 'static));
    }
    generics
}

/// `fn subscribe_options` from the attribute's options or the user's method; nothing when neither
/// sets anything (the trait's default applies).
fn subscribe_options(model: &StageModel) -> TokenStream {
    let krate = &model.krate;
    let self_ty = &model.item.self_ty;
    let body = match &model.subscribe {
        Settings::Method => quote!(<#self_ty>::subscribe_options(self)),
        Settings::Attribute(opts) if opts.is_empty() => return TokenStream::new(),
        Settings::Attribute(SubscribeOpts {
            max_demand,
            min_demand,
            cancel,
        }) => {
            let max_demand = max_demand.iter();
            let min_demand = min_demand.iter();
            let cancel = cancel.iter();
            quote! {
                #krate::SubscribeOptions::new()
                    #( .max_demand(#max_demand) )*
                    #( .min_demand(#min_demand) )*
                    #( .cancel(#krate::CancelMode::#cancel) )*
            }
        }
    };
    quote! {
        fn subscribe_options(&self) -> #krate::SubscribeOptions {
            #body
        }
    }
}

/// `fn producer_options` from the attribute's options (over the role's defaults, `constructor`) or
/// the user's method; nothing when neither sets anything.
fn producer_options(model: &StageModel, constructor: &str) -> TokenStream {
    let krate = &model.krate;
    let self_ty = &model.item.self_ty;
    let constructor = syn::Ident::new(constructor, Span::call_site());
    let body = match &model.producer {
        Settings::Method => quote!(<#self_ty>::producer_options(self)),
        Settings::Attribute(opts) if opts.is_empty() => return TokenStream::new(),
        Settings::Attribute(ProducerOpts {
            buffer_size,
            buffer_keep,
        }) => {
            let size = match buffer_size {
                None => None,
                Some(BufferSize::Infinity) => Some(quote!(.unbounded())),
                Some(BufferSize::Size(size)) => Some(quote!(.buffer_size(#size))),
            };
            let keep = buffer_keep
                .iter()
                .map(|keep| quote!(.buffer_keep(#krate::BufferKeep::#keep)));
            quote! {
                #krate::ProducerOptions::#constructor() #size #(#keep)*
            }
        }
    };
    quote! {
        fn producer_options(&self) -> #krate::ProducerOptions {
            #body
        }
    }
}

/// The span of a type's first token: where rustc's errors about the type are aimed.
fn first_span(ty: &Type) -> Span {
    ty.to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |token| token.span())
}
