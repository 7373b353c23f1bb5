//! The `#[stage]` AST: the attribute's role and options, and the impl block's callbacks.
//!
//! Every node keeps the tokens it came from, so the checks in `validate.rs` can put each error
//! under the tokens that caused it.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, Item, ItemImpl, PathArguments,
    ReturnType, Token, Type, TypeParamBound,
};

/// The three roles, with GenStage's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Producer,
    ProducerConsumer,
    Consumer,
}

impl Role {
    /// The role's name as written in `#[stage(...)]`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::ProducerConsumer => "producer_consumer",
            Role::Consumer => "consumer",
        }
    }

    /// The role's name with its article, for messages: "a producer".
    pub(crate) fn a(self) -> &'static str {
        match self {
            Role::Producer => "a producer",
            Role::ProducerConsumer => "a producer_consumer",
            Role::Consumer => "a consumer",
        }
    }

    pub(crate) fn from_ident(ident: &Ident) -> Option<Role> {
        match ident.to_string().as_str() {
            "producer" => Some(Role::Producer),
            "producer_consumer" => Some(Role::ProducerConsumer),
            "consumer" => Some(Role::Consumer),
            _ => None,
        }
    }
}

/// The roles, as a message lists them.
pub(crate) const ROLES: &str = "`producer`, `producer_consumer` or `consumer`";

/// `ROLE ( , OPTION )* ,?` — the attribute's arguments.
pub(crate) struct StageAttr {
    pub(crate) role: RoleArg,
    pub(crate) options: Vec<StageOption>,
}

/// `producer | producer_consumer | consumer`
pub(crate) struct RoleArg {
    #[allow(dead_code)] // kept with its tokens, as every node is
    pub(crate) ident: Ident,
    pub(crate) role: Role,
}

/// `KEY = VALUE`, where `KEY` is an identifier or `crate` and `VALUE` an expression.
pub(crate) struct StageOption {
    pub(crate) key: Ident,
    #[allow(dead_code)] // kept with its tokens, as every node is
    pub(crate) eq: Token![=],
    pub(crate) value: Expr,
}

impl Parse for StageOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Ident::parse_any(input)?;
        let eq = input.parse().map_err(|_| {
            syn::Error::new(
                input.span(),
                format!("expected `=` after `{key}`: options are written `{key} = value`"),
            )
        })?;
        let value = input.parse()?;
        Ok(StageOption { key, eq, value })
    }
}

/// Parses the attribute's arguments (the tokens inside `#[stage(...)]`).
pub(crate) fn parse_attr(attr: TokenStream) -> syn::Result<StageAttr> {
    Parser::parse2(parse_attr_tokens, attr)
}

fn parse_attr_tokens(input: ParseStream<'_>) -> syn::Result<StageAttr> {
    if input.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("#[stage] needs a role: {ROLES}, as in `#[stage(producer)]`"),
        ));
    }
    // The role comes first; an option in its place (`max_demand = 10`) means it is missing.
    if !input.peek(Ident::peek_any) || input.peek2(Token![=]) {
        return Err(syn::Error::new(
            input.span(),
            format!(
                "#[stage] needs a role before its options: {ROLES}, as in `#[stage(consumer, max_demand = 10)]`"
            ),
        ));
    }
    let ident = Ident::parse_any(input)?;
    let role = Role::from_ident(&ident).ok_or_else(|| {
        syn::Error::new(
            ident.span(),
            format!("unknown stage role `{ident}`; the roles are {ROLES}"),
        )
    })?;
    let mut options = Vec::new();
    while !input.is_empty() {
        input.parse::<Token![,]>()?;
        if input.is_empty() {
            break;
        }
        options.push(input.parse()?);
    }
    Ok(StageAttr {
        role: RoleArg { ident, role },
        options,
    })
}

/// The callbacks `#[stage]` knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CallbackKind {
    /// `handle_demand(&mut self, demand: usize) -> EVENTS`
    HandleDemand,
    /// `handle_events(&mut self, events: Vec<T>) -> EVENTS | ()`
    HandleEvents,
    /// `subscribe_options(&self) -> SubscribeOptions`
    SubscribeOptions,
    /// `producer_options(&self) -> ProducerOptions`
    ProducerOptions,
}

impl CallbackKind {
    fn from_ident(ident: &Ident) -> Option<CallbackKind> {
        match ident.to_string().as_str() {
            "handle_demand" => Some(CallbackKind::HandleDemand),
            "handle_events" => Some(CallbackKind::HandleEvents),
            "subscribe_options" => Some(CallbackKind::SubscribeOptions),
            "producer_options" => Some(CallbackKind::ProducerOptions),
            _ => None,
        }
    }

    /// The callback's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CallbackKind::HandleDemand => "handle_demand",
            CallbackKind::HandleEvents => "handle_events",
            CallbackKind::SubscribeOptions => "subscribe_options",
            CallbackKind::ProducerOptions => "producer_options",
        }
    }

    /// How the callback is written, for messages.
    fn shape(self) -> &'static str {
        match self {
            CallbackKind::HandleDemand => "fn handle_demand(&mut self, demand: usize) -> Vec<T>",
            CallbackKind::HandleEvents => "fn handle_events(&mut self, events: Vec<T>)",
            CallbackKind::SubscribeOptions => {
                "fn subscribe_options(&self) -> genstage::SubscribeOptions"
            }
            CallbackKind::ProducerOptions => {
                "fn producer_options(&self) -> genstage::ProducerOptions"
            }
        }
    }

    /// Whether the callback takes `&mut self` and one argument (an event callback) rather than just
    /// `&self` (an options method).
    fn is_event_callback(self) -> bool {
        matches!(
            self,
            CallbackKind::HandleDemand | CallbackKind::HandleEvents
        )
    }
}

/// GenStage callbacks that genstage does not support yet. A method of a stage with one of these
/// names would never be called, so `#[stage]` rejects it rather than ignore it. When the runtime
/// gains one of them, its name moves from here to [`CallbackKind`].
pub(crate) const UNSUPPORTED_CALLBACKS: &[&str] = &[
    "handle_call",
    "handle_cancel",
    "handle_cast",
    "handle_info",
    "handle_subscribe",
    "terminate",
];

/// `async? fn NAME(&mut self, ARG: TYPE) -> OUTPUT` for an event callback, or
/// `fn NAME(&self) -> OUTPUT` for an options method.
pub(crate) struct Callback {
    pub(crate) kind: CallbackKind,
    pub(crate) name: Ident,
    /// The argument's type, for an event callback.
    pub(crate) arg: Option<Type>,
    /// What the call gives once awaited (when `awaited`): the declared return type, or the `Output`
    /// of a returned `impl Future<Output = …>`; `()` when there is no return type.
    pub(crate) output: Type,
    /// Whether the call's value is a future to await.
    pub(crate) awaited: bool,
    /// Whether the signature has a return type (`output` is `()` when not).
    pub(crate) returns: bool,
}

/// `impl GENERICS TYPE WHERE { ITEMS }` — an inherent impl block, and its recognised callbacks.
pub(crate) struct StageImpl {
    pub(crate) item: ItemImpl,
    /// The recognised callbacks, each parsed or with the error that its signature caused.
    pub(crate) callbacks: Vec<syn::Result<Callback>>,
    /// The recognised callbacks' names, including those that failed to parse.
    pub(crate) callback_names: Vec<(CallbackKind, Ident)>,
    /// The methods named after a GenStage callback that genstage does not support yet
    /// ([`UNSUPPORTED_CALLBACKS`]).
    pub(crate) unsupported: Vec<Ident>,
}

/// Parses the item `#[stage]` is on, which must be an inherent impl block.
pub(crate) fn parse_impl(item: TokenStream) -> syn::Result<StageImpl> {
    let item: Item = syn::parse2(item)?;
    let item = match item {
        Item::Impl(item) => item,
        other => {
            let (what, span) = describe_item(&other);
            return Err(syn::Error::new(
                span,
                format!(
                    "#[stage] goes on an inherent impl block, as in `#[stage(producer)] impl Counter {{ fn handle_demand(…) }}`, not on {what}"
                ),
            ));
        }
    };
    if let Some((_, path, for_token)) = &item.trait_ {
        let ty = &item.self_ty;
        return Err(syn::Error::new_spanned(
            quote::quote!(#path #for_token),
            format!(
                "#[stage] goes on an inherent impl block (`impl {} {{ … }}`), not on an impl of a trait: it writes the trait impls itself",
                tokens_text(ty)
            ),
        ));
    }
    let mut callbacks = Vec::new();
    let mut callback_names = Vec::new();
    let mut unsupported = Vec::new();
    for impl_item in &item.items {
        if let ImplItem::Fn(method) = impl_item {
            let name = &method.sig.ident;
            if let Some(kind) = CallbackKind::from_ident(name) {
                callback_names.push((kind, name.clone()));
                callbacks.push(parse_callback(kind, method));
            } else if UNSUPPORTED_CALLBACKS
                .iter()
                .any(|unsupported| name == unsupported)
            {
                unsupported.push(name.clone());
            }
        }
    }
    Ok(StageImpl {
        item,
        callbacks,
        callback_names,
        unsupported,
    })
}

/// What kind of item this is, and where to point at it.
fn describe_item(item: &Item) -> (&'static str, Span) {
    match item {
        Item::Struct(s) => ("a struct", s.ident.span()),
        Item::Enum(e) => ("an enum", e.ident.span()),
        Item::Fn(f) => ("a function", f.sig.ident.span()),
        Item::Trait(t) => ("a trait", t.ident.span()),
        Item::Mod(m) => ("a module", m.ident.span()),
        Item::Type(t) => ("a type alias", t.ident.span()),
        Item::Const(c) => ("a const", c.ident.span()),
        Item::Static(s) => ("a static", s.ident.span()),
        Item::Union(u) => ("a union", u.ident.span()),
        Item::Use(u) => ("a use declaration", u.use_token.span),
        other => ("this item", first_span(other)),
    }
}

fn first_span(tokens: &impl quote::ToTokens) -> Span {
    tokens
        .to_token_stream()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// Parses one callback's signature; every independent problem is reported.
fn parse_callback(kind: CallbackKind, method: &ImplItemFn) -> syn::Result<Callback> {
    let sig = &method.sig;
    let name = sig.ident.clone();
    let shape = kind.shape();
    let mut errors = Errors::default();

    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let generics = &sig.generics;
        let where_clause = &generics.where_clause;
        errors.push(syn::Error::new_spanned(
            quote::quote!(#generics #where_clause),
            format!("`{name}` cannot be generic: write it `{shape}`"),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new(
            unsafety.span,
            format!("`{name}` cannot be `unsafe`: the runtime calls it"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new(
            variadic.span(),
            format!("`{name}` cannot be variadic: write it `{shape}`"),
        ));
    }

    // The receiver: `&mut self` for an event callback, `&self` for an options method.
    let wants_mut = kind.is_event_callback();
    let receiver = match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            if !is_self_reference(&receiver.ty, wants_mut) {
                let wanted = if wants_mut { "&mut self" } else { "&self" };
                errors.push(syn::Error::new_spanned(
                    receiver,
                    format!("`{name}` takes `{wanted}` first: write it `{shape}`"),
                ));
            }
            true
        }
        _ => {
            let wanted = if wants_mut { "&mut self" } else { "&self" };
            let message = format!("`{name}` takes `{wanted}` first: write it `{shape}`");
            errors.push(match sig.inputs.first() {
                Some(arg) => syn::Error::new_spanned(arg, message),
                None => syn::Error::new(sig.paren_token.span.join(), message),
            });
            false
        }
    };

    // The arguments after the receiver.
    let args: Vec<&FnArg> = sig.inputs.iter().skip(usize::from(receiver)).collect();
    let wanted_args = usize::from(wants_mut);
    let arg = if args.len() == wanted_args {
        args.first().and_then(|arg| match arg {
            FnArg::Typed(typed) => Some((*typed.ty).clone()),
            FnArg::Receiver(_) => None,
        })
    } else {
        let what = match kind {
            CallbackKind::HandleDemand => "`&mut self` and the demand",
            CallbackKind::HandleEvents => "`&mut self` and the events",
            _ => "only `&self`",
        };
        let count = args.len() + usize::from(receiver);
        let message = format!(
            "`{name}` takes {what}, but this one takes {count} argument{}: write it `{shape}`",
            if count == 1 { "" } else { "s" },
        );
        errors.push(if args.len() > wanted_args {
            let extra = &args[wanted_args..];
            syn::Error::new_spanned(quote::quote!(#(#extra),*), message)
        } else {
            syn::Error::new(sig.paren_token.span.join(), message)
        });
        None
    };

    if !kind.is_event_callback() {
        if let Some(asyncness) = &sig.asyncness {
            errors.push(syn::Error::new(
                asyncness.span,
                format!("`{name}` cannot be `async`: write it `{shape}`"),
            ));
        }
    }

    // What the call gives.
    let declared = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let (output, awaited) = match (&declared, &sig.asyncness) {
        (Type::ImplTrait(bounds), None) if kind.is_event_callback() => {
            match future_output(&bounds.bounds) {
                Some(output) => (output, true),
                None => {
                    errors.push(syn::Error::new_spanned(
                        &declared,
                        format!(
                            "#[stage] cannot read the event type of `{name}` from `impl …`: return the type itself (`Vec<T>`, …) or `impl Future<Output = …>`"
                        ),
                    ));
                    (declared.clone(), false)
                }
            }
        }
        (Type::ImplTrait(_), Some(_)) => {
            errors.push(syn::Error::new_spanned(
                &declared,
                format!(
                    "#[stage] cannot read the event type of `{name}` from `impl …`: return the type itself (`Vec<T>`, …)"
                ),
            ));
            (declared.clone(), true)
        }
        (_, asyncness) => (declared.clone(), asyncness.is_some()),
    };

    errors.check()?;
    Ok(Callback {
        kind,
        name,
        arg,
        output,
        awaited,
        returns: !matches!(sig.output, ReturnType::Default),
    })
}

/// Whether `ty` is `&mut Self` (or `&Self` when `!mutable`).
fn is_self_reference(ty: &Type, mutable: bool) -> bool {
    match ty {
        Type::Reference(reference) => {
            reference.mutability.is_some() == mutable
                && matches!(&*reference.elem, Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self"))
        }
        _ => false,
    }
}

/// The `Output` of `impl Future<Output = X> + …`.
fn future_output(bounds: &Punctuated<TypeParamBound, Token![+]>) -> Option<Type> {
    bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(assoc.ty.clone()),
            _ => None,
        })
    })
}

/// Tokens as a person writes them, for messages: `Vec<u64>`, not `Vec < u64 >`.
pub(crate) fn tokens_text(tokens: &impl quote::ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        ("< ", "<"),
        (" <", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        (" ;", ";"),
    ] {
        text = text.replace(from, to);
    }
    text
}

pub(crate) use crate::errors::Errors;
