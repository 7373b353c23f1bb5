//! Code generation: the role trait impl (with `terminate`, `init`, `batch_from` and the
//! subscription callbacks, `handle_subscribe`, `handle_cancel`, `handle_consumer_subscribe` and
//! `handle_consumer_cancel`, when the block has them), an impl of `HandleCall<M>`, `HandleCast<M>` or `HandleInfo<M>` for
//! each message callback, and the `Stage` impl, next to the user's impl block.
//!
//! The event and message types come from the model (read from the callbacks' signatures by
//! `parse.rs` and `validate.rs`). The callbacks' arguments and values are converted through helper
//! traits (`DemandArg`, `SubscribeReturn`, and the [`Conversion`]s `IntoEmit`, `IntoEvents`,
//! `IntoDone`, `CallReturn`, `CastReturn`, `InfoReturn`, `CancelReturn`, `ConsumerCancelReturn`),
//! each use spanned at the user's type, so a wrong one is reported there with the helper trait's
//! `on_unimplemented` sentence. The traits are defined inside the
//! expansion's `const _` block, so rustc's `help:` line names them plainly, never through
//! genstage's hidden module (rustc prints the path of an item of a `#[doc(hidden)]` module), each
//! after its stage ("the trait `PrinterIntoDone` is not implemented for `Vec<u64>`"), so that the
//! helpers of two stages in one crate do not share a name (see [`helper_ident`]).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::Type;

use super::parse::{Callback, CallbackKind, PartitionFn, Role, SubscriptionSide};
use super::validate::{
    BufferSize, DispatchModel, ProducerOpts, Settings, StageModel, SubscribeOpts,
};

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
    let conversion = Conversion::of_event_callback(&model.item.self_ty, model.role);
    let terminate = terminate_fn(model);
    let init = init_fn(model);
    let batch_from = batch_from_fn(model);
    let subscription_fns = subscription_fns(model);
    let dispatcher_fn = dispatcher_fn(model);
    let restart_fn = restart_fn(model);

    let (role_trait, (add, add_with), stage_ref, role_items) = match model.role {
        Role::Producer => {
            let demand_arg = helper_ident(self_ty, "DemandArg");
            let demand = quote_spanned! {arg_span=>
                <#arg as #demand_arg>::from_demand(__demand)
            };
            let convert = conversion.convert(output, output_span, krate);
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
                #dispatcher_fn
                #restart_fn
                #terminate
                #init
                #subscription_fns
            };
            (
                quote!(#krate::Producer),
                (quote!(add_producer_as), quote!(add_producer_with_as)),
                quote!(#krate::ProducerRef<Self>),
                items,
            )
        }
        Role::ProducerConsumer => {
            let convert = conversion.convert(output, output_span, krate);
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
                #dispatcher_fn
                #restart_fn
                #terminate
                #init
                #batch_from
                #subscription_fns
            };
            (
                quote!(#krate::ProducerConsumer),
                (
                    quote!(add_producer_consumer_as),
                    quote!(add_producer_consumer_with_as),
                ),
                quote!(#krate::ProducerConsumerRef<Self>),
                items,
            )
        }
        Role::Consumer => {
            let convert = conversion.convert(output, output_span, krate);
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
                #restart_fn
                #terminate
                #init
                #batch_from
                #subscription_fns
            };
            (
                quote!(#krate::Consumer),
                (quote!(add_consumer_as), quote!(add_consumer_with_as)),
                quote!(#krate::ConsumerRef<Self>),
                items,
            )
        }
    };

    let max_demand = known_max_demand(model).map(|(max, default)| {
        quote!(const __MAX_DEMAND: #private::Option<(::core::primitive::usize, ::core::primitive::bool)> = #private::Some((#max, #default));)
    });
    let min_demand = known_min_demand(model).map(|min| {
        quote!(const __MIN_DEMAND: #private::Option<::core::primitive::usize> = #private::Some(#min);)
    });

    let mut helpers = conversion.define(krate);
    if let Some(span) = model
        .restart
        .as_ref()
        .and_then(|r| r.redeliver)
        .filter(|_| !is_generic(&model.item))
    {
        // At `redeliver` too, so that rustc's notes about the bound point there.
        helpers.extend(respan(
            redeliver_event(self_ty, krate),
            Span::call_site().located_at(span),
        ));
    }
    if model.role == Role::Producer {
        helpers.extend(demand_arg(self_ty));
    }
    if model.role != Role::Consumer
        && matches!(model.dispatcher, DispatchModel::Broadcast(_))
        && !is_generic(&model.item)
    {
        helpers.extend(broadcast_event(self_ty, krate));
    }
    for callback in &model.subscriptions {
        match callback.kind {
            CallbackKind::HandleSubscribe => helpers.extend(subscribe_return(self_ty, krate)),
            CallbackKind::HandleCancel | CallbackKind::HandleConsumerCancel => helpers.extend(
                Conversion::of_message_callback(&model.item.self_ty, model.role, callback.kind)
                    .define(krate),
            ),
            _ => {}
        }
    }
    let dispatch = dispatch_items(model, &generics);
    let waits = waits_impl(model, &generics);
    let mut messages = TokenStream::new();
    for callback in &model.messages {
        let conversion =
            Conversion::of_message_callback(&model.item.self_ty, model.role, callback.kind);
        helpers.extend(conversion.define(krate));
        messages.extend(message_impl(model, callback, &conversion, &generics));
    }

    quote! {
        const _: () = {
            #helpers

            impl #impl_generics #role_trait for #self_ty #where_clause {
                #role_items
            }

            #messages

            #dispatch
            #waits

            impl #impl_generics #krate::Stage for #self_ty #where_clause {
                type Ref = #stage_ref;
                #max_demand
                #min_demand
                fn add_to(
                    self,
                    __pipeline: &mut #krate::Pipeline,
                    __name: #private::Option<#private::String>,
                ) -> Self::Ref {
                    __pipeline.#add(__name, self)
                }
                fn add_with(
                    __build: impl ::core::ops::FnMut() -> Self + #private::stage::Send + 'static,
                    __pipeline: &mut #krate::Pipeline,
                    __name: #private::Option<#private::String>,
                ) -> Self::Ref {
                    __pipeline.#add_with(__name, __build)
                }
            }
        };
    }
}

/// A conversion trait: the values one callback may return, each turned into what the role trait's
/// or message trait's method gives, with the sentence rustc prints when a type is not one of them.
///
/// | callback | returns | trait |
/// |---|---|---|
/// | producer `handle_demand` | `Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>`, `Result<Emit<T>, E>` | `IntoEmit<T>` |
/// | producer_consumer `handle_events` | `Vec<O>`, `Result<Vec<O>, E>` | `IntoEvents<O>` |
/// | consumer `handle_events` | `()`, `Result<(), E>` | `IntoDone` |
/// | a producer's message callback | as `handle_demand`, and `()`, `Result<(), E>` | `CallReturn<T>`, `CastReturn<T>`, `InfoReturn<T>` |
/// | a producer_consumer's message callback | as `handle_events`, and `()`, `Result<(), E>` | the same |
/// | a consumer's message callback | as `handle_events` | `CallReturn`, `CastReturn`, `InfoReturn` |
/// | a producer_consumer's `handle_cancel` | as its message callbacks | `CancelReturn<T>` |
/// | a consumer's `handle_cancel` | as its message callbacks | `CancelReturn` |
/// | a producer's or producer_consumer's `handle_consumer_cancel` | as a producer_consumer's message callbacks | `ConsumerCancelReturn<T>` |
///
/// `E` is any error that converts into `StageError`. A producer's value becomes an `Emit<T>`, a
/// producer_consumer's a `Vec<O>`, a consumer's `()`: `()` from a message callback emits nothing.
/// `handle_consumer_cancel`'s becomes a `Vec<T>` of the stage's events, whatever its role: the role
/// traits' method gives that (a producer does not end from it).
/// The values implement a hidden trait (`__` before the name), and the named trait has one
/// blanket impl over it, `do_not_recommend`: the error is the named trait's sentence, with no list
/// of impls and no "similar impl" for another event type.
struct Conversion {
    /// The trait's name after the stage's (see [`helper_ident`]), which rustc's `help:` line shows.
    name: &'static str,
    /// The stage's type, whose name the trait's begins with.
    stage: Type,
    /// Its method's name.
    method: &'static str,
    /// The stage's role: the messages name it, and the events are its `Output`.
    role: Role,
    /// What the value becomes.
    events: Events,
    /// The callback, for the messages.
    kind: CallbackKind,
}

/// What a callback's value becomes: the events of a producer's callbacks (`Emit<T>`), of a
/// producer_consumer's and of any `handle_consumer_cancel` (`Vec<T>`), or a consumer's `()`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Events {
    Emit,
    Vec,
    Nothing,
}

impl Events {
    /// What the role's event and message callbacks emit.
    fn of(role: Role) -> Events {
        match role {
            Role::Producer => Events::Emit,
            Role::ProducerConsumer => Events::Vec,
            Role::Consumer => Events::Nothing,
        }
    }
}

impl Conversion {
    /// The conversion of the role's event callback: `handle_demand` or `handle_events`.
    fn of_event_callback(stage: &Type, role: Role) -> Conversion {
        let (name, method, kind) = match role {
            Role::Producer => ("IntoEmit", "into_emit", CallbackKind::HandleDemand),
            Role::ProducerConsumer => ("IntoEvents", "into_events", CallbackKind::HandleEvents),
            Role::Consumer => ("IntoDone", "into_done", CallbackKind::HandleEvents),
        };
        Conversion {
            name,
            stage: stage.clone(),
            method,
            role,
            events: Events::of(role),
            kind,
        }
    }

    /// The conversion of a message callback (`handle_call`, `handle_cast` or `handle_info`) or of
    /// `handle_cancel` or `handle_consumer_cancel`, which may emit events as they do.
    fn of_message_callback(stage: &Type, role: Role, kind: CallbackKind) -> Conversion {
        let name = match kind {
            CallbackKind::HandleCall => "CallReturn",
            CallbackKind::HandleCast => "CastReturn",
            CallbackKind::HandleCancel => "CancelReturn",
            CallbackKind::HandleConsumerCancel => "ConsumerCancelReturn",
            _ => "InfoReturn",
        };
        let events = if kind == CallbackKind::HandleConsumerCancel {
            Events::Vec
        } else {
            Events::of(role)
        };
        Conversion {
            name,
            stage: stage.clone(),
            method: "into_emitted",
            role,
            events,
            kind,
        }
    }

    /// Whether `()` means "no events" (message callbacks) rather than a mistake (`handle_demand`,
    /// a producer_consumer's `handle_events`).
    fn unit_emits_nothing(&self) -> bool {
        !matches!(
            self.kind,
            CallbackKind::HandleDemand | CallbackKind::HandleEvents
        )
    }

    fn ident(&self) -> syn::Ident {
        helper_ident(&self.stage, self.name)
    }

    /// `<#value as Trait<T>>::method`, spanned at `span` (the user's return type), so that a type
    /// that is not one of the trait's is reported there.
    fn convert(&self, value: &Type, span: Span, krate: &syn::Path) -> TokenStream {
        let name = self.ident();
        let method = syn::Ident::new(self.method, Span::call_site());
        let event = match self.role {
            Role::Producer => Some(quote!(<Self as #krate::Producer>::Output)),
            Role::ProducerConsumer => Some(quote!(<Self as #krate::ProducerConsumer>::Output)),
            Role::Consumer => None,
        };
        let event = event.map(|event| quote!(<#event>));
        quote_spanned! {span=> <#value as #name #event>::#method }
    }

    /// The trait and its impls.
    fn define(&self, krate: &syn::Path) -> TokenStream {
        let private = crate::private_path(krate);
        let result = quote!(#krate::StageResult);
        let emit = quote!(#krate::Emit);
        let vec = quote!(#private::Vec);
        let error = quote!(#krate::StageError);
        let into = quote!(::core::convert::Into);
        let name = self.ident();
        let method = syn::Ident::new(self.method, Span::call_site());
        const ERROR_NOTE: &str = "`E` converts into `genstage::StageError` when it is a `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`";
        let callback = self.kind.name();
        // "a producer_consumer's `handle_cancel`"
        let whose = format!("{}'s `{callback}`", self.role.a());
        let (message, label, note) = match (self.events, self.unit_emits_nothing()) {
            (Events::Emit, false) => (
                format!("a producer's `{callback}` cannot return `{{Self}}`"),
                "expected `Vec<{T}>`, `Emit<{T}>`, or a `Result` of either whose error converts into `genstage::StageError`".to_owned(),
                format!("`{callback}` returns `Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>` or `Result<Emit<T>, E>`, where `T` is the event type"),
            ),
            (Events::Emit, true) => (
                format!("a producer's `{callback}` cannot return `{{Self}}`"),
                "expected `Vec<{T}>`, `Emit<{T}>`, `()`, or a `Result` of one of them whose error converts into `genstage::StageError`".to_owned(),
                format!("`{callback}` returns the events it emits, `Vec<T>` or `Emit<T>`, or `()` for none, maybe in a `Result<_, E>`, where `T` is the event type"),
            ),
            (Events::Vec, false) => (
                format!("{whose} cannot return `{{Self}}`"),
                "expected `Vec<{T}>` or a `Result<Vec<{T}>, E>` whose error converts into `genstage::StageError`".to_owned(),
                format!("{whose} returns `Vec<T>` or `Result<Vec<T>, E>`, where `T` is the event type it emits"),
            ),
            (Events::Vec, true) => (
                format!("{whose} cannot return `{{Self}}`"),
                "expected `Vec<{T}>`, `()`, or a `Result` of either whose error converts into `genstage::StageError`".to_owned(),
                format!("{whose} returns the events it emits, `Vec<T>`, or `()` for none, maybe in a `Result<_, E>`, where `T` is the event type it emits"),
            ),
            (Events::Nothing, _) => (
                format!("a consumer's `{callback}` returns `()` or `Result<(), E>`, not `{{Self}}`"),
                "expected `()` or a `Result<(), E>` whose error converts into `genstage::StageError`".to_owned(),
                ERROR_NOTE.to_owned(),
            ),
        };
        let second_note = match self.events {
            Events::Nothing => "a consumer emits no events; a stage that does is a producer_consumer: `#[stage(producer_consumer)]`".to_owned(),
            _ => ERROR_NOTE.to_owned(),
        };
        let attribute = quote! {
            #[diagnostic::on_unimplemented(
                message = #message,
                label = #label,
                note = #note,
                note = #second_note
            )]
        };
        // What the events become, and the containers of events the callback may return.
        let (generics, args, target, containers) = match self.events {
            Events::Emit => (
                quote!(<T>),
                quote!(<T>),
                quote!(#emit<T>),
                vec![
                    (quote!(#vec<T>), quote!(#emit::more)),
                    (quote!(#emit<T>), quote!(::core::convert::identity)),
                ],
            ),
            Events::Vec => (
                quote!(<T>),
                quote!(<T>),
                quote!(#vec<T>),
                vec![(quote!(#vec<T>), quote!(::core::convert::identity))],
            ),
            Events::Nothing => (
                TokenStream::new(),
                TokenStream::new(),
                quote!(()),
                vec![(quote!(()), quote!(::core::convert::identity))],
            ),
        };
        let mut containers = containers;
        if self.unit_emits_nothing() && self.events != Events::Nothing {
            let empty = match self.events {
                Events::Emit => quote!(|()| #emit::more(#vec::new())),
                _ => quote!(|()| #vec::new()),
            };
            containers.push((quote!(()), empty));
        }
        // The values it converts implement a hidden trait, and the named one has a single
        // blanket impl over it: were the named trait implemented for `Vec<T>` itself, rustc would
        // add, to a `Vec` of another event type, the confusing help that the trait "is
        // implemented for it" with that other type.
        let inner = syn::Ident::new(&format!("__{name}"), name.span());
        let params = match self.events {
            Events::Nothing => TokenStream::new(),
            _ => quote!(T,),
        };
        let impls = containers.iter().map(|(ty, wrap)| {
            quote! {
                impl<#params> #inner #args for #ty {
                    #[inline]
                    fn #method(self) -> #result<#target> {
                        #private::Ok((#wrap)(self))
                    }
                }
                impl<#params E: #into<#error>> #inner #args for #private::Result<#ty, E> {
                    #[inline]
                    fn #method(self) -> #result<#target> {
                        self.map(#wrap).map_err(#into::into)
                    }
                }
            }
        });
        quote! {
            #attribute
            #[allow(non_camel_case_types)]
            trait #name #generics {
                fn #method(self) -> #result<#target>;
            }
            #[allow(non_camel_case_types)]
            trait #inner #generics {
                fn #method(self) -> #result<#target>;
            }
            #(#impls)*
            #[diagnostic::do_not_recommend]
            impl<#params __V: #inner #args> #name #args for __V {
                #[inline]
                fn #method(self) -> #result<#target> {
                    #inner::#method(self)
                }
            }
        }
    }
}

/// The impl of `HandleCall<M>`, `HandleCast<M>` or `HandleInfo<M>` for a message callback: `M`
/// (and the call's `Reply`) read from its signature, its value converted by `conversion` into the
/// role's events (`Emitted`: `Emit<T>` for a producer, `Vec<T>` for a producer_consumer, `()` for
/// a consumer).
fn message_impl(
    model: &StageModel,
    callback: &Callback,
    conversion: &Conversion,
    generics: &syn::Generics,
) -> TokenStream {
    let Some(message) = &callback.arg else {
        return TokenStream::new();
    };
    let krate = &model.krate;
    let private = crate::private_path(krate);
    let self_ty = &model.item.self_ty;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let name = &callback.name;
    let name_span = name.span();
    let output = &callback.output;
    let convert = conversion.convert(output, first_span(output), krate);
    let awaited = callback.awaited.then(|| quote!(.await));
    let emitted = match model.role {
        Role::Producer => quote!(#krate::Emit<<Self as #krate::Producer>::Output>),
        Role::ProducerConsumer => {
            quote!(#private::Vec<<Self as #krate::ProducerConsumer>::Output>)
        }
        Role::Consumer => quote!(()),
    };
    let (ctx_param, ctx_arg) = context_param(callback);
    let ctx_arg = ctx_arg.iter();
    let result = quote!(
        impl #private::Future<Output = #krate::StageResult<Self::Emitted>> + #private::stage::Send
    );
    let (message_trait, reply_type, method) = match callback.kind {
        CallbackKind::HandleCall => {
            let reply = callback.reply.iter();
            let method = quote_spanned! {name_span=>
                // A trait method returning `impl Future + Send` (the trait's signature), whose
                // body is one async block: what clippy would have written as an `async fn`.
                #[allow(clippy::manual_async_fn)]
                fn handle_call(
                    &mut self,
                    __request: #message,
                    __reply: #krate::ReplyTo<Self::Reply>,
                    #ctx_param: &mut #krate::Context<'_, Self>,
                ) -> #result {
                    async move {
                        #convert(<#self_ty>::#name(self, __request, __reply #(, #ctx_arg)*) #awaited)
                    }
                }
            };
            (
                quote!(#krate::HandleCall<#message>),
                quote!(#( type Reply = #reply; )*),
                method,
            )
        }
        kind => {
            let (message_trait, method_name) = if kind == CallbackKind::HandleCast {
                (quote!(#krate::HandleCast<#message>), quote!(handle_cast))
            } else {
                (quote!(#krate::HandleInfo<#message>), quote!(handle_info))
            };
            let method = quote_spanned! {name_span=>
                // A trait method returning `impl Future + Send` (the trait's signature), whose
                // body is one async block: what clippy would have written as an `async fn`.
                #[allow(clippy::manual_async_fn)]
                fn #method_name(
                    &mut self,
                    __message: #message,
                    #ctx_param: &mut #krate::Context<'_, Self>,
                ) -> #result {
                    async move {
                        #convert(<#self_ty>::#name(self, __message #(, #ctx_arg)*) #awaited)
                    }
                }
            };
            (message_trait, TokenStream::new(), method)
        }
    };
    quote! {
        impl #impl_generics #message_trait for #self_ty #where_clause {
            #reply_type
            type Emitted = #emitted;
            #method
        }
    }
}

/// The context parameter of a generated method, and the argument that passes the context on to the
/// callback when the callback takes it (`_`, and none, when it does not).
fn context_param(callback: &Callback) -> (TokenStream, Option<TokenStream>) {
    if callback.ctx {
        (quote!(__ctx), Some(quote!(__ctx)))
    } else {
        (quote!(_), None)
    }
}

/// The role trait's `init`, calling the impl block's; nothing when it has none (the trait's default
/// does nothing).
fn init_fn(model: &StageModel) -> TokenStream {
    let Some(callback) = &model.init else {
        return TokenStream::new();
    };
    let krate = &model.krate;
    let self_ty = &model.item.self_ty;
    let name = &callback.name;
    let (ctx_param, ctx_arg) = context_param(callback);
    let ctx_arg = ctx_arg.iter();
    quote_spanned! {name.span()=>
        fn init(&mut self, #ctx_param: &mut #krate::Context<'_, Self>) {
            <#self_ty>::#name(self #(, #ctx_arg)*)
        }
    }
}

/// The role trait's `batch_from`, calling the impl block's; nothing when it has none (the trait's
/// default does nothing). `validate.rs` keeps it only for a consumer or a producer_consumer.
fn batch_from_fn(model: &StageModel) -> TokenStream {
    let Some(callback) = &model.batch_from else {
        return TokenStream::new();
    };
    let krate = &model.krate;
    let self_ty = &model.item.self_ty;
    let name = &callback.name;
    quote_spanned! {name.span()=>
        #[inline]
        fn batch_from(&mut self, __subscription: #krate::SubscriptionTag) {
            <#self_ty>::#name(self, __subscription)
        }
    }
}

/// The role trait's `terminate`, calling the impl block's; nothing when it has none (the trait's
/// default does nothing).
fn terminate_fn(model: &StageModel) -> TokenStream {
    let Some(callback) = &model.terminate else {
        return TokenStream::new();
    };
    let krate = &model.krate;
    let private = crate::private_path(krate);
    let self_ty = &model.item.self_ty;
    let name = &callback.name;
    let awaited = callback.awaited.then(|| quote!(.await));
    quote_spanned! {name.span()=>
        // A trait method returning `impl Future + Send` (the trait's signature), whose body is one
        // async block: what clippy would have written as an `async fn`.
        #[allow(clippy::manual_async_fn)]
        fn terminate(
            &mut self,
            __status: &#krate::StageStatus,
        ) -> impl #private::Future<Output = ()> + #private::stage::Send {
            async move { <#self_ty>::#name(self, __status) #awaited }
        }
    }
}

/// The role trait's subscription callbacks (`handle_subscribe`, `handle_cancel`,
/// `handle_consumer_subscribe`, `handle_consumer_cancel`), calling the impl block's; nothing for
/// those it has not (the trait's defaults: `Demand::Automatic`, and no events). `validate.rs` keeps
/// only those of the stage's role.
fn subscription_fns(model: &StageModel) -> TokenStream {
    let krate = &model.krate;
    let private = crate::private_path(krate);
    let self_ty = &model.item.self_ty;
    let mut fns = TokenStream::new();
    for callback in &model.subscriptions {
        let Some((side, cancels)) = callback.kind.subscription_side() else {
            continue;
        };
        let name = &callback.name;
        let output = &callback.output;
        // What the stage is told of: its subscription to a producer, or a consumer's to it.
        let (subject, subject_ty) = match side {
            SubscriptionSide::Consumer => (quote!(__subscription), quote!(#krate::Subscription)),
            SubscriptionSide::Producer => (quote!(__subscriber), quote!(#krate::Subscriber)),
        };
        let (reason_param, reason_arg) = if cancels {
            (
                Some(quote!(__reason: &#krate::CancelReason,)),
                Some(quote!(__reason)),
            )
        } else {
            (None, None)
        };
        let reason_arg = reason_arg.iter();
        let (ctx_param, ctx_arg) = context_param(callback);
        let ctx_arg = ctx_arg.iter();
        let call = quote!(<#self_ty>::#name(self, #subject #(, #reason_arg)* #(, #ctx_arg)*));
        let params = quote! {
            &mut self,
            #subject: &#subject_ty,
            #reason_param
            #ctx_param: &mut #krate::Context<'_, Self>,
        };
        fns.extend(match callback.kind {
            CallbackKind::HandleSubscribe => {
                // Spanned at the user's return type, so that one that is not a `Demand` is
                // reported there.
                let subscribe_return = helper_ident(self_ty, "SubscribeReturn");
                let convert = quote_spanned! {first_span(output)=>
                    <#output as #subscribe_return>::into_demand
                };
                quote_spanned! {name.span()=>
                    fn #name(#params) -> #krate::Demand {
                        #convert(#call)
                    }
                }
            }
            // It returns nothing (`parse.rs` checks it).
            CallbackKind::HandleConsumerSubscribe => quote_spanned! {name.span()=>
                fn #name(#params) {
                    #call
                }
            },
            kind => {
                let conversion =
                    Conversion::of_message_callback(&model.item.self_ty, model.role, kind);
                let convert = conversion.convert(output, first_span(output), krate);
                let awaited = callback.awaited.then(|| quote!(.await));
                let emitted = match (conversion.events, model.role) {
                    (Events::Vec, Role::Producer) => {
                        quote!(#private::Vec<<Self as #krate::Producer>::Output>)
                    }
                    (Events::Vec, _) => {
                        quote!(#private::Vec<<Self as #krate::ProducerConsumer>::Output>)
                    }
                    _ => quote!(()),
                };
                quote_spanned! {name.span()=>
                    // A trait method returning `impl Future + Send` (the trait's signature), whose
                    // body is one async block: what clippy would have written as an `async fn`.
                    #[allow(clippy::manual_async_fn)]
                    fn #name(#params) -> impl #private::Future<
                        Output = #krate::StageResult<#emitted>,
                    > + #private::stage::Send {
                        async move { #convert(#call #awaited) }
                    }
                }
            }
        });
    }
    fns
}

/// The role trait's `dispatcher`, for `dispatcher = broadcast` or `partition(n)`; nothing for the
/// default (`demand`), or for a consumer.
fn dispatcher_fn(model: &StageModel) -> TokenStream {
    let krate = &model.krate;
    let role_trait = match model.role {
        Role::Producer => quote!(#krate::Producer),
        Role::ProducerConsumer => quote!(#krate::ProducerConsumer),
        Role::Consumer => return TokenStream::new(),
    };
    let dispatch = match &model.dispatcher {
        DispatchModel::Demand | DispatchModel::Rejected => return TokenStream::new(),
        // Every token at the method's return type, with the expansion's hygiene (its `self`): a
        // `Dispatch` of another event type is reported there, not at the attribute.
        DispatchModel::Method { span, .. } => {
            let self_ty = &model.item.self_ty;
            respan(
                quote!(<#self_ty>::dispatcher(self)),
                Span::call_site().located_at(*span),
            )
        }
        // In a generic block, the events' type may be a type parameter, or hold one (`Vec<T>`):
        // the helper trait would then be the bound rustc's help suggests, by a name the user
        // cannot write (`_::SrcBroadcastEvent`). `Dispatch::broadcast()` is called as a user would
        // call it: rustc traces the bound down to the `Clone` the events miss, and suggests
        // `T: Clone`. Every token at `broadcast`, where the error is reported.
        DispatchModel::Broadcast(span) if is_generic(&model.item) => respan(
            quote!(#krate::Dispatch::broadcast()),
            Span::call_site().located_at(*span),
        ),
        // Every token at `broadcast`: an event type that is not `Clone` is reported there, with
        // the helper trait's sentence alone (see `broadcast_event`).
        DispatchModel::Broadcast(span) => {
            let broadcast = helper_ident(&model.item.self_ty, "BroadcastEvent");
            respan(
                quote!(<<Self as #role_trait>::Output as #broadcast>::dispatch::<Self>()),
                Span::mixed_site().located_at(*span),
            )
        }
        DispatchModel::Partition { count, .. } => {
            let count = proc_macro2::Literal::usize_unsuffixed(*count);
            quote!(#krate::Dispatch::partition(#count))
        }
    };
    quote! {
        fn dispatcher(&self) -> #krate::Dispatch<Self, <Self as #role_trait>::Output> {
            #dispatch
        }
    }
}

/// The role trait's `restart_policy`, for `restart = …` (with `max_restarts`, `max_seconds` and
/// `redeliver`); nothing when the attribute sets no restart policy (the trait's default,
/// `temporary`).
fn restart_fn(model: &StageModel) -> TokenStream {
    let krate = &model.krate;
    let Some(restart) = &model.restart else {
        return TokenStream::new();
    };
    let input = match model.role {
        Role::Producer => quote!(#krate::NoInput),
        Role::ProducerConsumer => quote!(<Self as #krate::ProducerConsumer>::Input),
        Role::Consumer => quote!(<Self as #krate::Consumer>::Input),
    };
    let variant = &restart.restart;
    let mut policy = quote!(#krate::RestartPolicy::new(#krate::Restart::#variant));
    if let Some((max, seconds)) = restart.limit {
        let max = proc_macro2::Literal::u32_unsuffixed(max);
        let seconds = proc_macro2::Literal::u64_unsuffixed(seconds);
        policy = quote!(#policy.max_restarts(#max, ::core::time::Duration::from_secs(#seconds)));
    }
    if let Some(span) = restart.redeliver.filter(|_| is_generic(&model.item)) {
        // As for a generic block's broadcast (see `dispatcher_fn`): the method itself, whose
        // `Clone` bound rustc's help then asks of the type parameter.
        policy = respan(
            quote!(#krate::RestartPolicy::redeliver(#policy)),
            Span::call_site().located_at(span),
        );
    } else if let Some(span) = restart.redeliver {
        // Every token at `redeliver`: an event type that is not `Clone` is reported there.
        let redeliver = helper_ident(&model.item.self_ty, "RedeliverEvent");
        policy = respan(
            quote!(<#input as #redeliver>::redeliver(#policy)),
            Span::mixed_site().located_at(span),
        );
    }
    quote! {
        fn restart_policy(&self) -> #krate::RestartPolicy<#input> {
            #policy
        }
    }
}

/// `RedeliverEvent`: the events of a stage that redelivers are copied while its callback runs, so
/// they are `Clone`; with the sentence rustc prints, under `redeliver`, when they are not.
/// `RestartPolicy::redeliver` is called through the trait's method, by a path, and its one impl is
/// `do_not_recommend`: rustc then reports the trait's sentence alone, without the notes of a
/// bound (`required for `Job` to implement …`, `required by a bound in …`).
fn redeliver_event(self_ty: &Type, krate: &syn::Path) -> TokenStream {
    let name = helper_ident(self_ty, "RedeliverEvent");
    let policy = quote!(#krate::RestartPolicy);
    quote! {
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot be redelivered: it does not implement `Clone`",
            label = "redelivery needs `Clone` events",
            note = "`redeliver` keeps a copy of each batch while the stage handles it, to hand it again to the stage restarted after a failure: derive or implement `Clone` for `{Self}`"
        )]
        #[allow(non_camel_case_types)]
        trait #name: ::core::marker::Sized {
            fn redeliver(policy: #policy<Self>) -> #policy<Self>;
        }
        #[diagnostic::do_not_recommend]
        impl<__T: ::core::clone::Clone> #name for __T {
            #[inline]
            fn redeliver(policy: #policy<__T>) -> #policy<__T> {
                policy.redeliver()
            }
        }
    }
}

/// `BroadcastEvent`: the events of a broadcasting stage are cloned, once per consumer, so they are
/// `Clone`; with the sentence rustc prints, under `broadcast`, when they are not. As for
/// `redeliver` (see [`redeliver_event`]), `Dispatch::broadcast` is called through the trait's
/// method, so that rustc reports the sentence alone, without pointing into genstage's source.
fn broadcast_event(self_ty: &Type, krate: &syn::Path) -> TokenStream {
    let private = crate::private_path(krate);
    let name = helper_ident(self_ty, "BroadcastEvent");
    let dispatch = quote!(#krate::Dispatch);
    let send = quote!(#private::stage::Send);
    quote! {
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot be broadcast: it does not implement `Clone`",
            label = "a broadcast needs `Clone` events",
            note = "a broadcast dispatcher sends every event to every consumer, one clone each: derive or implement `Clone` for `{Self}`"
        )]
        #[allow(non_camel_case_types)]
        trait #name: ::core::marker::Sized {
            fn dispatch<__S>() -> #dispatch<__S, Self>
            where
                Self: #send + 'static;
        }
        #[diagnostic::do_not_recommend]
        impl<__T: ::core::clone::Clone> #name for __T {
            #[inline]
            fn dispatch<__S>() -> #dispatch<__S, __T>
            where
                __T: #send + 'static,
            {
                #dispatch::broadcast()
            }
        }
    }
}

/// Whether the impl block has type parameters, which its events' type may name.
fn is_generic(item: &syn::ItemImpl) -> bool {
    item.generics.type_params().next().is_some()
}

/// Partitions listed one by one for `pipeline!`'s check of a literal `partition = i`; a stage
/// with more has every index (`run()` checks them).
const LISTED_PARTITIONS: usize = 256;

/// What the dispatcher adds next to the role trait impl: the `Partition` impl of a partitioned
/// stage (see [`partition_impl`]), and what `pipeline!` checks an edge against (`Dispatched`, and
/// `HasPartition<i>` for each partition); only the `Partition` impl, if the block has a `partition`
/// method, for a stage with its own `dispatcher`; nothing for a consumer or a rejected `dispatcher`
/// option.
fn dispatch_items(model: &StageModel, generics: &syn::Generics) -> TokenStream {
    let krate = &model.krate;
    let private = crate::private_path(krate);
    let dispatch = quote!(#private::dispatch);
    let self_ty = &model.item.self_ty;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    if model.output.is_none() {
        return TokenStream::new();
    }
    let kind = match &model.dispatcher {
        DispatchModel::Rejected => return TokenStream::new(),
        // What the block's own `dispatcher` returns is known only when the stage is added.
        DispatchModel::Method { partition, .. } => {
            return partition.as_ref().map_or_else(TokenStream::new, |method| {
                partition_impl(model, method, None, generics)
            });
        }
        DispatchModel::Demand => quote!(#dispatch::DemandDispatch),
        DispatchModel::Broadcast(_) => quote!(#dispatch::BroadcastDispatch),
        DispatchModel::Partition { count, .. } => {
            let count = proc_macro2::Literal::usize_unsuffixed(*count);
            quote!(#dispatch::PartitionDispatch<#count>)
        }
    };
    let mut out = quote! {
        impl #impl_generics #dispatch::Dispatched for #self_ty #where_clause {
            type Kind = #kind;
        }
    };
    let DispatchModel::Partition { count, method } = &model.dispatcher else {
        return out;
    };
    if *count <= LISTED_PARTITIONS {
        for index in 0..*count {
            let index = proc_macro2::Literal::usize_unsuffixed(index);
            out.extend(quote! {
                impl #impl_generics #dispatch::HasPartition<#index> for #self_ty #where_clause {}
            });
        }
    } else {
        let mut every = generics.clone();
        every
            .params
            .push(syn::parse_quote!(const __I: ::core::primitive::usize));
        let (impl_generics, _, where_clause) = every.split_for_impl();
        out.extend(quote! {
            impl #impl_generics #dispatch::HasPartition<__I> for #self_ty #where_clause {}
        });
    }

    out.extend(partition_impl(model, method, Some(*count), generics));
    out
}

/// The stage's `Partition` impl, calling the block's `partition` through helper traits spanned at
/// its types; `count`, the number of partitions, when the attribute gives it.
fn partition_impl(
    model: &StageModel,
    method: &PartitionFn,
    count: Option<usize>,
    generics: &syn::Generics,
) -> TokenStream {
    let krate = &model.krate;
    let private = crate::private_path(krate);
    let self_ty = &model.item.self_ty;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let Some(output) = &model.output else {
        return TokenStream::new();
    };
    let stage = escape(&super::parse::tokens_text(self_ty));
    let name = &method.name;
    let event = &method.event;
    let returned = &method.output;
    let usize = quote!(::core::primitive::usize);
    let event_message =
        format!("`{stage}`'s `partition` takes the events it emits, `&{{Out}}`, not `&{{Self}}`");
    let return_message =
        format!("`{stage}`'s `partition` returns the event's partition as an `Option<usize>`, not `{{Self}}`");
    let below = count.map_or_else(
        || "below the number of partitions".to_owned(),
        |count| format!("below {count}"),
    );
    let return_note =
        format!("`Some(i)` sends the event to partition `i`, {below}; `None` discards it");
    let partition_event = helper_ident(self_ty, "PartitionEvent");
    let partition_return = helper_ident(self_ty, "PartitionReturn");
    let from_event = quote_spanned! {first_span(event)=>
        <#event as #partition_event<#output>>::from_event
    };
    let into_partition = quote_spanned! {first_span(returned)=>
        <#returned as #partition_return>::into_partition
    };
    quote! {
        #[diagnostic::on_unimplemented(message = #event_message, label = "expected `&{Out}`")]
        #[allow(non_camel_case_types)]
        trait #partition_event<Out> {
            fn from_event(event: &Out) -> &Self;
        }
        #[diagnostic::do_not_recommend]
        impl<__T> #partition_event<__T> for __T {
            #[inline]
            fn from_event(event: &__T) -> &__T {
                event
            }
        }
        #[diagnostic::on_unimplemented(
            message = #return_message,
            label = "expected `Option<usize>`",
            note = #return_note
        )]
        #[allow(non_camel_case_types)]
        trait #partition_return {
            fn into_partition(self) -> #private::Option<#usize>;
        }
        #[diagnostic::do_not_recommend]
        impl #partition_return for #private::Option<#usize> {
            #[inline]
            fn into_partition(self) -> #private::Option<#usize> {
                self
            }
        }
        impl #impl_generics #krate::Partition<#output> for #self_ty #where_clause {
            #[inline]
            fn partition(&self, __event: &#output) -> #private::Option<#usize> {
                #into_partition(<#self_ty>::#name(self, #from_event(__event)))
            }
        }
    }
}

/// Every token of `tokens` at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(group) = &tree {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = proc_macro2::TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// The name of one of the expansion's helper traits: `base` after the stage type's name
/// (`QueueCallReturn` for `Queue`'s `CallReturn`). rustc's `help:` line prints a trait's bare name
/// only when no other item of the crate has that name; two stages' `CallReturn`s would both print
/// as `_::CallReturn`, the path through the expansion's `const _`. Two stages of one name in two
/// modules still share their helpers' names, and print so.
fn helper_ident(self_ty: &Type, base: &str) -> syn::Ident {
    let stage = stage_name(self_ty).unwrap_or_else(|| "Stage".to_owned());
    syn::Ident::new(&format!("{stage}{base}"), Span::call_site())
}

/// The last name of a stage's type path (`Queue` for `jobs::Queue<T>`), without `r#`.
fn stage_name(self_ty: &Type) -> Option<String> {
    match self_ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .map(|segment| syn::ext::IdentExt::unraw(&segment.ident).to_string()),
        Type::Group(group) => stage_name(&group.elem),
        Type::Paren(paren) => stage_name(&paren.elem),
        _ => None,
    }
}

/// Text for an `on_unimplemented` format string: braces doubled.
fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// `SubscribeReturn`: what `handle_subscribe` may return (a `Demand`, or nothing for
/// `Demand::Automatic`), with the sentence rustc prints when it returns something else.
fn subscribe_return(self_ty: &Type, krate: &syn::Path) -> TokenStream {
    let demand = quote!(#krate::Demand);
    let name = helper_ident(self_ty, "SubscribeReturn");
    quote! {
        #[diagnostic::on_unimplemented(
            message = "`handle_subscribe` returns a `genstage::Demand`, not `{Self}`",
            label = "expected `Demand`",
            note = "`Demand::Automatic`: the runtime asks for the subscription's events; `Demand::Manual`: the stage asks, with `ctx.ask(subscription.tag(), n)`",
            note = "write it `fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand`, maybe with `ctx: &mut Context<Self>` last; without a return type it keeps `Demand::Automatic`"
        )]
        #[allow(non_camel_case_types)]
        trait #name {
            fn into_demand(self) -> #demand;
        }
        #[diagnostic::do_not_recommend]
        impl #name for #demand {
            #[inline]
            fn into_demand(self) -> #demand {
                self
            }
        }
        #[diagnostic::do_not_recommend]
        impl #name for () {
            #[inline]
            fn into_demand(self) -> #demand {
                #demand::Automatic
            }
        }
    }
}

/// `DemandArg`: what a producer's `handle_demand` may take (`usize`), with the sentence rustc
/// prints when it takes something else.
fn demand_arg(self_ty: &Type) -> TokenStream {
    let name = helper_ident(self_ty, "DemandArg");
    quote! {
        #[diagnostic::on_unimplemented(
            message = "a producer's `handle_demand` takes the demand as a `usize`, not `{Self}`",
            label = "expected `usize`",
            note = "write it `fn handle_demand(&mut self, demand: usize) -> Vec<T>`"
        )]
        #[allow(non_camel_case_types)]
        trait #name {
            fn from_demand(demand: ::core::primitive::usize) -> Self;
        }
        #[diagnostic::do_not_recommend]
        impl #name for ::core::primitive::usize {
            #[inline]
            fn from_demand(demand: ::core::primitive::usize) -> Self {
                demand
            }
        }
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

/// The `min_demand` a consumer or producer_consumer's attribute sets, when a literal.
fn known_min_demand(model: &StageModel) -> Option<usize> {
    if model.role == Role::Producer {
        return None;
    }
    match &model.subscribe {
        Settings::Attribute(SubscribeOpts {
            min_demand:
                Some(syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Int(int),
                    ..
                })),
            ..
        }) => int.base10_parse().ok(),
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

/// For a stage whose attribute says `without_consumers = wait`, what lets `pipeline!` have it
/// stand alone (`__private::pipeline::Waits`); nothing otherwise.
fn waits_impl(model: &StageModel, generics: &syn::Generics) -> TokenStream {
    let waits = matches!(
        &model.producer,
        Settings::Attribute(ProducerOpts { without_consumers: Some(without), .. }) if without == "Wait"
    );
    if !waits {
        return TokenStream::new();
    }
    let private = crate::private_path(&model.krate);
    let self_ty = &model.item.self_ty;
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    quote!(impl #impl_generics #private::pipeline::Waits for #self_ty #where_clause {})
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
            demand,
            without_consumers,
        }) => {
            let size = match buffer_size {
                None => None,
                Some(BufferSize::Infinity) => Some(quote!(.unbounded())),
                Some(BufferSize::Size(size)) => Some(quote!(.buffer_size(#size))),
            };
            let keep = buffer_keep
                .iter()
                .map(|keep| quote!(.buffer_keep(#krate::BufferKeep::#keep)));
            let demand = demand
                .iter()
                .map(|mode| quote!(.demand(#krate::DemandMode::#mode)));
            let without = without_consumers
                .iter()
                .map(|without| quote!(.without_consumers(#krate::WithoutConsumers::#without)));
            quote! {
                #krate::ProducerOptions::#constructor() #size #(#keep)* #(#demand)* #(#without)*
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
