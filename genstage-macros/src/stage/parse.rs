//! The `#[stage]` AST: the attribute's role and options, and the impl block's callbacks.
//!
//! Every node keeps the tokens it came from, so the checks in `validate.rs` can put each error
//! under the tokens that caused it.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
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

/// `KEY = VALUE`, where `KEY` is an identifier or `crate` and `VALUE` an expression; or `KEY`
/// alone for a flag (`redeliver`, see `options::FLAGS`).
pub(crate) struct StageOption {
    pub(crate) key: Ident,
    /// `None` for a flag written alone.
    pub(crate) eq: Option<Token![=]>,
    /// The value; empty tokens (`Expr::Verbatim`) for a flag written alone.
    pub(crate) value: Expr,
}

impl StageOption {
    /// Whether it is written without `= VALUE`.
    pub(crate) fn is_bare(&self) -> bool {
        self.eq.is_none()
    }
}

impl Parse for StageOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = Ident::parse_any(input)?;
        let is_flag = crate::options::FLAGS.iter().any(|flag| key == *flag);
        if is_flag && !input.peek(Token![=]) {
            if !input.is_empty() && !input.peek(Token![,]) {
                return Err(syn::Error::new(
                    input.span(),
                    format!("expected `,` after `{key}`: it is a flag, written alone"),
                ));
            }
            return Ok(StageOption {
                key,
                eq: None,
                value: Expr::Verbatim(TokenStream::new()),
            });
        }
        let eq = input.parse().map_err(|_| {
            syn::Error::new(
                input.span(),
                format!("expected `=` after `{key}`: options are written `{key} = value`"),
            )
        })?;
        let value = input.parse()?;
        Ok(StageOption {
            key,
            eq: Some(eq),
            value,
        })
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
    /// `handle_call(&mut self, request: M, reply: ReplyTo<R>, ctx?) -> EMITTED`
    HandleCall,
    /// `handle_cast(&mut self, message: M, ctx?) -> EMITTED`
    HandleCast,
    /// `handle_info(&mut self, message: M, ctx?) -> EMITTED`
    HandleInfo,
    /// `terminate(&mut self, status: &StageStatus)`
    Terminate,
    /// `init(&mut self, ctx?)`
    Init,
    /// `handle_subscribe(&mut self, subscription: &Subscription, ctx?) -> Demand`
    HandleSubscribe,
    /// `batch_from(&mut self, subscription: SubscriptionTag)`
    BatchFrom,
    /// `handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason, ctx?) -> EMITTED`
    HandleCancel,
    /// `handle_consumer_subscribe(&mut self, subscriber: &Subscriber, ctx?)`
    HandleConsumerSubscribe,
    /// `handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason, ctx?) -> EMITTED`
    HandleConsumerCancel,
}

impl CallbackKind {
    pub(crate) fn from_ident(ident: &Ident) -> Option<CallbackKind> {
        match ident.to_string().as_str() {
            "handle_demand" => Some(CallbackKind::HandleDemand),
            "handle_events" => Some(CallbackKind::HandleEvents),
            "subscribe_options" => Some(CallbackKind::SubscribeOptions),
            "producer_options" => Some(CallbackKind::ProducerOptions),
            "handle_call" => Some(CallbackKind::HandleCall),
            "handle_cast" => Some(CallbackKind::HandleCast),
            "handle_info" => Some(CallbackKind::HandleInfo),
            "terminate" => Some(CallbackKind::Terminate),
            "init" => Some(CallbackKind::Init),
            "handle_subscribe" => Some(CallbackKind::HandleSubscribe),
            "batch_from" => Some(CallbackKind::BatchFrom),
            "handle_cancel" => Some(CallbackKind::HandleCancel),
            "handle_consumer_subscribe" => Some(CallbackKind::HandleConsumerSubscribe),
            "handle_consumer_cancel" => Some(CallbackKind::HandleConsumerCancel),
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
            CallbackKind::HandleCall => "handle_call",
            CallbackKind::HandleCast => "handle_cast",
            CallbackKind::HandleInfo => "handle_info",
            CallbackKind::Terminate => "terminate",
            CallbackKind::Init => "init",
            CallbackKind::HandleSubscribe => "handle_subscribe",
            CallbackKind::BatchFrom => "batch_from",
            CallbackKind::HandleCancel => "handle_cancel",
            CallbackKind::HandleConsumerSubscribe => "handle_consumer_subscribe",
            CallbackKind::HandleConsumerCancel => "handle_consumer_cancel",
        }
    }

    /// How the callback is written, for messages: each allowed form, in backticks.
    fn shapes(self) -> &'static str {
        match self {
            CallbackKind::HandleDemand => "`fn handle_demand(&mut self, demand: usize) -> Vec<T>`",
            CallbackKind::HandleEvents => "`fn handle_events(&mut self, events: Vec<T>)`",
            CallbackKind::SubscribeOptions => {
                "`fn subscribe_options(&self) -> genstage::SubscribeOptions`"
            }
            CallbackKind::ProducerOptions => {
                "`fn producer_options(&self) -> genstage::ProducerOptions`"
            }
            CallbackKind::HandleCall => {
                "`fn handle_call(&mut self, request: M, reply: ReplyTo<R>)` or `fn handle_call(&mut self, request: M, reply: ReplyTo<R>, ctx: &mut Context<Self>)`, returning the events it emits if any"
            }
            CallbackKind::HandleCast => {
                "`fn handle_cast(&mut self, message: M)` or `fn handle_cast(&mut self, message: M, ctx: &mut Context<Self>)`, returning the events it emits if any"
            }
            CallbackKind::HandleInfo => {
                "`fn handle_info(&mut self, message: M)` or `fn handle_info(&mut self, message: M, ctx: &mut Context<Self>)`, returning the events it emits if any"
            }
            CallbackKind::Terminate => "`fn terminate(&mut self, status: &StageStatus)`",
            CallbackKind::Init => {
                "`fn init(&mut self)` or `fn init(&mut self, ctx: &mut Context<Self>)`, returning nothing, not `async`"
            }
            CallbackKind::HandleSubscribe => {
                "`fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand` or `fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand`, not `async` (without a return type the runtime asks: `Demand::Automatic`)"
            }
            CallbackKind::BatchFrom => {
                "`fn batch_from(&mut self, subscription: SubscriptionTag)`, returning nothing, not `async`"
            }
            CallbackKind::HandleCancel => {
                "`fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason)` or `fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason, ctx: &mut Context<Self>)`, returning the events it emits if any"
            }
            CallbackKind::HandleConsumerSubscribe => {
                "`fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber)` or `fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, ctx: &mut Context<Self>)`, returning nothing, not `async`"
            }
            CallbackKind::HandleConsumerCancel => {
                "`fn handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason)` or `fn handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason, ctx: &mut Context<Self>)`, returning the events it emits if any (`Vec<T>`)"
            }
        }
    }

    /// Whether the callback takes `&mut self` and may be `async` (a callback the runtime runs),
    /// rather than just `&self` (an options method).
    fn is_runtime_callback(self) -> bool {
        !matches!(
            self,
            CallbackKind::SubscribeOptions | CallbackKind::ProducerOptions
        )
    }

    /// Whether the callback handles a message sent to the stage (`handle_call`, `handle_cast`,
    /// `handle_info`).
    pub(crate) fn is_message_callback(self) -> bool {
        matches!(
            self,
            CallbackKind::HandleCall | CallbackKind::HandleCast | CallbackKind::HandleInfo
        )
    }

    /// Whether the callback is told of a subscription: one of the stage's to a producer
    /// (`handle_subscribe`, `handle_cancel`) or one of a consumer's to the stage
    /// (`handle_consumer_subscribe`, `handle_consumer_cancel`).
    pub(crate) fn is_subscription_callback(self) -> bool {
        self.subscription_side().is_some()
    }

    /// For a subscription callback: the side of the subscription it is on, and whether it is told
    /// that the subscription ended (and why, by a `reason: &CancelReason` after the first argument).
    pub(crate) fn subscription_side(self) -> Option<(SubscriptionSide, bool)> {
        match self {
            CallbackKind::HandleSubscribe => Some((SubscriptionSide::Consumer, false)),
            CallbackKind::HandleCancel => Some((SubscriptionSide::Consumer, true)),
            CallbackKind::HandleConsumerSubscribe => Some((SubscriptionSide::Producer, false)),
            CallbackKind::HandleConsumerCancel => Some((SubscriptionSide::Producer, true)),
            _ => None,
        }
    }

    /// For a callback that the runtime calls without awaiting it: what it returns, and why it
    /// answers at once (so it cannot be `async` or return a future).
    fn answers_at_once(self) -> Option<(&'static str, &'static str)> {
        match self {
            CallbackKind::HandleSubscribe => Some((
                "a `Demand`",
                "the runtime takes its `Demand` at once, before the subscription's first events",
            )),
            CallbackKind::HandleConsumerSubscribe => Some((
                "nothing",
                "the runtime calls it at once, as the consumer subscribes",
            )),
            CallbackKind::Init => Some((
                "nothing",
                "the runtime calls it at once, as the stage starts (work that waits goes in a message to the stage, `ctx.info(…)`)",
            )),
            CallbackKind::BatchFrom => Some((
                "nothing",
                "the runtime calls it at once, right before each `handle_events`",
            )),
            _ => None,
        }
    }

    /// For a callback that returns nothing (the role trait's method gives `()`): why, when there
    /// is more to say than its shapes.
    fn returns_nothing(self) -> Option<&'static str> {
        match self {
            CallbackKind::Terminate | CallbackKind::Init | CallbackKind::BatchFrom => Some(""),
            CallbackKind::HandleConsumerSubscribe => Some(
                "; a producer never takes control of its consumers' demand (a consumer does, from its own `handle_subscribe`)",
            ),
            _ => None,
        }
    }
}

/// The two sides of a subscription, as the subscription callbacks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscriptionSide {
    /// The consumer's: told of its producer by a `subscription: &Subscription`.
    Consumer,
    /// The producer's: told of its consumer by a `subscriber: &Subscriber`.
    Producer,
}

impl SubscriptionSide {
    /// The type the callback is told of the subscription by, the argument's usual name, and what
    /// it is, for messages.
    fn argument(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SubscriptionSide::Consumer => ("Subscription", "subscription", "the subscription"),
            SubscriptionSide::Producer => ("Subscriber", "subscriber", "the subscriber"),
        }
    }
}

/// GenStage callbacks that genstage does not support yet. A method of a stage with one of these
/// names would never be called, so `#[stage]` rejects it rather than ignore it. When the runtime
/// gains one of them, its name moves from here to [`CallbackKind`].
///
/// `format_discarded` is GenStage's hook for the events a full buffer discards: genstage counts
/// them in the report but calls nothing. GenServer's `code_change` and `format_status` are not
/// listed: they have no counterpart a Rust user would expect to be called (no hot code upgrade,
/// no `:sys.get_status`), so a method by those names is taken as the user's own. (`init` is a
/// callback, run as the stage starts; an `init` without `self`, a constructor, is the user's own.)
pub(crate) const UNSUPPORTED_CALLBACKS: &[&str] = &["format_discarded"];

/// Role trait methods that `#[stage]` writes from its options and does not take from the impl
/// block (as it takes `subscribe_options`, `producer_options` and `dispatcher`): a method of the
/// block by one of these names would never be called by the runtime, so `#[stage]` rejects it
/// rather than ignore it. `restart_policy` comes from `restart`, `max_restarts`, `max_seconds`
/// and `redeliver`; a policy known only at run time is `Pipeline::set_restart`'s.
pub(crate) const GENERATED_METHODS: &[&str] = &["restart_policy"];

/// `async? fn NAME(&mut self, ARGS…) -> OUTPUT` for a callback the runtime runs, or
/// `fn NAME(&self) -> OUTPUT` for an options method.
pub(crate) struct Callback {
    pub(crate) kind: CallbackKind,
    pub(crate) name: Ident,
    /// The first argument's type, for an event callback (the demand, the events) or a message
    /// callback (the message); the status's, for `terminate`; the subscription's or the
    /// subscriber's, for a subscription callback.
    pub(crate) arg: Option<Type>,
    /// The `R` of `reply: ReplyTo<R>`, for `handle_call`.
    pub(crate) reply: Option<Type>,
    /// Whether a message or subscription callback takes the context (`ctx: &mut Context<Self>`)
    /// last.
    pub(crate) ctx: bool,
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
    pub(crate) callbacks: Vec<(CallbackKind, syn::Result<Callback>)>,
    /// The recognised callbacks' names, including those that failed to parse.
    pub(crate) callback_names: Vec<(CallbackKind, Ident)>,
    /// For each of `callback_names`, whether it carries a `#[cfg]` (and is refused for it).
    pub(crate) configured: Vec<bool>,
    /// The methods named after a GenStage callback that genstage does not support yet
    /// ([`UNSUPPORTED_CALLBACKS`]).
    pub(crate) unsupported: Vec<Ident>,
    /// The methods named after a role trait method that `#[stage]` writes from its options
    /// ([`GENERATED_METHODS`]).
    pub(crate) generated: Vec<Ident>,
}

/// Parses the item `#[stage]` is on, which must be an inherent impl block.
pub(crate) fn parse_impl(item: TokenStream) -> syn::Result<StageImpl> {
    let item: Item = syn::parse2(item)?;
    let mut item = match item {
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
    if let Some(what) = not_a_stage_type(&item.self_ty) {
        return Err(syn::Error::new_spanned(
            &item.self_ty,
            format!(
                "#[stage] goes on the impl block of a struct or an enum, as in `impl Counter {{ … }}`, not of {what} `{}`: a stage is a value of a known size, which the pipeline owns",
                tokens_text(&item.self_ty)
            ),
        ));
    }
    TrailingPlus.visit_item_impl_mut(&mut item);
    let mut callbacks = Vec::new();
    let mut callback_names = Vec::new();
    let mut configured = Vec::new();
    let mut unsupported = Vec::new();
    let mut generated = Vec::new();
    for impl_item in &item.items {
        if let ImplItem::Fn(method) = impl_item {
            let name = &method.sig.ident;
            // An `init` without `self` is a constructor, not the callback.
            let constructor = name == "init" && method.sig.receiver().is_none();
            if let Some(kind) = CallbackKind::from_ident(name).filter(|_| !constructor) {
                callback_names.push((kind, name.clone()));
                let cfg = method.attrs.iter().find(|attr| attr.path().is_ident("cfg"));
                configured.push(cfg.is_some());
                let callback = match cfg {
                    Some(cfg) => Err(compiled_out(name, cfg)),
                    None => parse_callback(kind, method),
                };
                callbacks.push((kind, callback));
            } else if UNSUPPORTED_CALLBACKS
                .iter()
                .any(|unsupported| name == unsupported)
            {
                unsupported.push(name.clone());
            } else if GENERATED_METHODS.iter().any(|method| name == method) {
                generated.push(name.clone());
            }
        }
    }
    Ok(StageImpl {
        item,
        callbacks,
        callback_names,
        configured,
        unsupported,
        generated,
    })
}

/// The error of a callback under `#[cfg]`: the stage is written from the callbacks as they read
/// before `cfg` is applied, so one compiled out would leave it calling a method that is not there.
fn compiled_out(name: &Ident, cfg: &syn::Attribute) -> syn::Error {
    syn::Error::new_spanned(
        cfg,
        format!(
            "`{name}` cannot be under `#[cfg]`: #[stage] reads its callbacks before `cfg` removes any; put the `#[cfg]` on statements inside `{name}`, or on the whole impl block"
        ),
    )
}

/// `item` without the trailing `+` of its trait objects and `impl Trait`s, as [`parse_impl`]
/// reads it (see [`TrailingPlus`]).
pub(crate) fn without_trailing_plus(item: &mut ItemImpl) {
    TrailingPlus.visit_item_impl_mut(item);
}

/// Drops the trailing `+` of every trait object and `impl Trait` type of the block (`-> Box<dyn
/// Error +>`, `-> StageResult<()> +`): the expansion writes the block's types before `as`,
/// `where` or `{`, where a trailing `+` would read as the start of another bound and the
/// expansion would not parse. The type is the same without it; the block itself is emitted as
/// written.
struct TrailingPlus;

impl VisitMut for TrailingPlus {
    fn visit_type_trait_object_mut(&mut self, ty: &mut syn::TypeTraitObject) {
        visit_mut::visit_type_trait_object_mut(self, ty);
        ty.bounds.pop_punct();
    }

    fn visit_type_impl_trait_mut(&mut self, ty: &mut syn::TypeImplTrait) {
        visit_mut::visit_type_impl_trait_mut(self, ty);
        ty.bounds.pop_punct();
    }
}

/// What the self type of an impl block is, when it is a type no stage can be: a trait object
/// (`dyn Sink`, or `Sink +` without `dyn`) or an `impl Trait`, whose size is unknown. Such a type
/// is not written into the generated impls either: printed back before `where`, a trailing `+`
/// (`impl<T> Sink + { … }`) would not parse.
pub(crate) fn not_a_stage_type(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Group(group) => not_a_stage_type(&group.elem),
        Type::Paren(paren) => not_a_stage_type(&paren.elem),
        Type::TraitObject(_) => Some("the trait object"),
        Type::ImplTrait(_) => Some("the opaque type"),
        _ => None,
    }
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
    let shapes = kind.shapes();
    let mut errors = Errors::default();

    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let generics = &sig.generics;
        let where_clause = &generics.where_clause;
        errors.push(syn::Error::new_spanned(
            quote::quote!(#generics #where_clause),
            format!("`{name}` cannot be generic: write it {shapes}"),
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
            format!("`{name}` cannot be variadic: write it {shapes}"),
        ));
    }

    // The receiver: `&mut self` for a callback the runtime runs, `&self` for an options method.
    let wants_mut = kind.is_runtime_callback();
    let receiver = match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            if !is_self_reference(&receiver.ty, wants_mut) {
                let wanted = if wants_mut { "&mut self" } else { "&self" };
                errors.push(syn::Error::new_spanned(
                    receiver,
                    format!("`{name}` takes `{wanted}` first: write it {shapes}"),
                ));
            }
            true
        }
        _ => {
            let wanted = if wants_mut { "&mut self" } else { "&self" };
            let message = format!("`{name}` takes `{wanted}` first: write it {shapes}");
            errors.push(match sig.inputs.first() {
                Some(arg) => syn::Error::new_spanned(arg, message),
                None => syn::Error::new(sig.paren_token.span.join(), message),
            });
            false
        }
    };

    // The arguments after the receiver.
    let args: Vec<&FnArg> = sig.inputs.iter().skip(usize::from(receiver)).collect();
    let count = args.len() + usize::from(receiver);
    let (arg, reply, ctx) = if kind.is_message_callback() {
        message_args(kind, sig, &args, count, &mut errors)
    } else if kind.is_subscription_callback() {
        let (arg, ctx) = subscription_args(kind, sig, &args, count, &mut errors);
        (arg, None, ctx)
    } else if kind == CallbackKind::Init {
        (None, None, init_args(&args, count, &mut errors))
    } else {
        (
            fixed_args(kind, sig, &args, count, &mut errors),
            None,
            false,
        )
    };

    if !kind.is_runtime_callback() {
        if let Some(asyncness) = &sig.asyncness {
            errors.push(syn::Error::new(
                asyncness.span,
                format!("`{name}` cannot be `async`: write it {shapes}"),
            ));
        }
    }
    // `handle_subscribe` and `handle_consumer_subscribe` answer at once: their trait methods are
    // not `async`.
    let at_once = kind.answers_at_once();
    if let (Some((_, why)), Some(asyncness)) = (at_once, &sig.asyncness) {
        errors.push(syn::Error::new(
            asyncness.span,
            format!("`{name}` cannot be `async`: {why}: write it {shapes}"),
        ));
    }

    // What the call gives.
    let declared = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let what = if matches!(
        kind,
        CallbackKind::HandleDemand | CallbackKind::HandleEvents
    ) {
        format!("the event type of `{name}`")
    } else {
        format!("what `{name}` returns")
    };
    let mut read = true;
    let (output, awaited) = match (&declared, &sig.asyncness, at_once) {
        (Type::ImplTrait(_), None, Some((returns, why))) => {
            read = false;
            errors.push(syn::Error::new_spanned(
                &declared,
                format!(
                    "`{name}` returns {returns}, not a future or an `impl …`: {why}: write it {shapes}"
                ),
            ));
            (declared.clone(), false)
        }
        (Type::ImplTrait(bounds), None, _) if kind.is_runtime_callback() => {
            match future_output(&bounds.bounds) {
                Some(output) => (output, true),
                None => {
                    read = false;
                    errors.push(syn::Error::new_spanned(
                        &declared,
                        format!(
                            "#[stage] cannot read {what} from `impl …`: return the type itself (`Vec<T>`, …) or `impl Future<Output = …>`"
                        ),
                    ));
                    (declared.clone(), false)
                }
            }
        }
        (Type::ImplTrait(_), Some(_), _) => {
            read = false;
            errors.push(syn::Error::new_spanned(
                &declared,
                format!(
                    "#[stage] cannot read {what} from `impl …`: return the type itself (`Vec<T>`, …)"
                ),
            ));
            (declared.clone(), true)
        }
        (_, asyncness, _) => (declared.clone(), asyncness.is_some()),
    };
    // `terminate` and `handle_consumer_subscribe` return nothing: the role trait's method gives
    // `()`. (An `impl …` that could not be read is reported once, above.)
    if let Some(why) = kind.returns_nothing() {
        if read && !is_unit(&output) {
            errors.push(syn::Error::new_spanned(
                &declared,
                format!(
                    "`{name}` returns nothing, not `{}`{why}: write it {shapes}",
                    tokens_text(&output)
                ),
            ));
        }
    }

    errors.check()?;
    Ok(Callback {
        kind,
        name,
        arg,
        reply,
        ctx,
        output,
        awaited,
        returns: !matches!(sig.output, ReturnType::Default),
    })
}

/// The one argument of an event callback, of `terminate` or of `batch_from` (its type), or none
/// for an options method; a wrong count is an error.
fn fixed_args(
    kind: CallbackKind,
    sig: &syn::Signature,
    args: &[&FnArg],
    count: usize,
    errors: &mut Errors,
) -> Option<Type> {
    let name = &sig.ident;
    let shapes = kind.shapes();
    let wanted_args = usize::from(kind.is_runtime_callback());
    if args.len() != wanted_args {
        let what = match kind {
            CallbackKind::HandleDemand => "`&mut self` and the demand",
            CallbackKind::HandleEvents => "`&mut self` and the events",
            CallbackKind::Terminate => "`&mut self` and the status",
            CallbackKind::BatchFrom => "`&mut self` and the subscription's tag",
            _ => "only `&self`",
        };
        // A context where none is given: say where the stage gets what it wanted it for.
        let takes_context = args
            .iter()
            .skip(wanted_args)
            .any(|arg| typed(arg).is_some_and(is_context));
        let why = match kind {
            CallbackKind::HandleEvents if takes_context => {
                "; `handle_events` gets no context: a stage in manual demand asks from it through \
                 the `Asker` that `ctx.asker(subscription.tag())` makes in `handle_subscribe`, \
                 kept in the stage, and other callbacks (`handle_info`, …) may take the context"
            }
            CallbackKind::HandleDemand if takes_context => {
                "; `handle_demand` gets no context: `init` and the message callbacks \
                 (`handle_info`, …) may take it"
            }
            _ => "",
        };
        let message = format!(
            "`{name}` takes {what}, but this one takes {count} argument{}: write it {shapes}{why}",
            if count == 1 { "" } else { "s" },
        );
        errors.push(if args.len() > wanted_args {
            let extra = &args[wanted_args..];
            syn::Error::new_spanned(quote::quote!(#(#extra),*), message)
        } else {
            syn::Error::new(sig.paren_token.span.join(), message)
        });
        return None;
    }
    let ty = args.first().and_then(|arg| typed(arg))?;
    if kind == CallbackKind::Terminate && !is_status(ty) {
        errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "`terminate` takes the stage's status by reference, `status: &StageStatus`, not `{}`: write it {shapes}",
                tokens_text(ty)
            ),
        ));
        return None;
    }
    if kind == CallbackKind::BatchFrom && !is_named(ty, "SubscriptionTag") {
        errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "`batch_from` takes the subscription's tag by value, `subscription: SubscriptionTag`, not `{}`: write it {shapes}",
                tokens_text(ty)
            ),
        ));
        return None;
    }
    Some(ty.clone())
}

/// Whether `init` takes the context, its only argument besides `&mut self`; anything else is an
/// error.
fn init_args(args: &[&FnArg], count: usize, errors: &mut Errors) -> bool {
    let shapes = CallbackKind::Init.shapes();
    match args {
        [] => false,
        [ctx] if typed(ctx).is_some_and(is_context) => true,
        [first, ..] => {
            let message = format!(
                "`init` takes `&mut self` and optionally the context, but this one takes {count} arguments: write it {shapes}"
            );
            let wrong: Vec<&FnArg> = if typed(first).is_some_and(is_context) {
                args[1..].to_vec()
            } else {
                args.to_vec()
            };
            errors.push(syn::Error::new_spanned(quote::quote!(#(#wrong),*), message));
            false
        }
    }
}

/// The message's type, the reply's (`handle_call`) and whether the context comes last, read from a
/// message callback's arguments; each misplaced or missing argument is an error.
fn message_args(
    kind: CallbackKind,
    sig: &syn::Signature,
    args: &[&FnArg],
    count: usize,
    errors: &mut Errors,
) -> (Option<Type>, Option<Type>, bool) {
    let name = &sig.ident;
    let shapes = kind.shapes();
    let calls = kind == CallbackKind::HandleCall;
    // The message, and the `ReplyTo` of a call.
    let fixed = 1 + usize::from(calls);
    let what = if calls {
        "the request, a `ReplyTo` and optionally the context"
    } else {
        "the message and optionally the context"
    };
    let message = format!(
        "`{name}` takes `&mut self`, {what}, but this one takes {count} argument{}: write it {shapes}",
        if count == 1 { "" } else { "s" },
    );
    if args.len() > fixed + 1 {
        let extra = &args[fixed + 1..];
        errors.push(syn::Error::new_spanned(quote::quote!(#(#extra),*), message));
        return (None, None, false);
    }
    let Some(first) = args.first() else {
        errors.push(syn::Error::new(sig.paren_token.span.join(), message));
        return (None, None, false);
    };
    let mut sound = true;
    let arg = typed(first).cloned();
    let mut reply = None;
    if calls {
        match args.get(1) {
            Some(second) => match typed(second).and_then(reply_type) {
                Some(ty) => reply = Some(ty.clone()),
                None => {
                    sound = false;
                    let ty = typed(second);
                    let text = if ty.is_some_and(is_context) {
                        "`handle_call` answers through a `reply: ReplyTo<R>` argument after the request, before the context".to_owned()
                    } else {
                        format!(
                            "`handle_call`'s second argument is where the answer goes, `reply: ReplyTo<R>` (`R` is the answer's type), not `{}`",
                            ty.map_or_else(|| tokens_text(second), tokens_text)
                        )
                    };
                    errors.push(syn::Error::new_spanned(
                        second,
                        format!("{text}: write it {shapes}"),
                    ));
                }
            },
            None => {
                sound = false;
                errors.push(syn::Error::new(
                    sig.paren_token.span.join(),
                    format!(
                        "`handle_call` answers through a `reply: ReplyTo<R>` argument after the request, and this one has none: write it {shapes}"
                    ),
                ));
            }
        }
    }
    let ctx = match args.get(fixed) {
        Some(last) if typed(last).is_some_and(is_context) => true,
        Some(last) => {
            sound = false;
            let after = if calls {
                "the `ReplyTo`"
            } else {
                "the message"
            };
            errors.push(syn::Error::new_spanned(
                last,
                format!(
                    "`{name}` takes one {}: after {after} comes only the context, `ctx: &mut Context<Self>`: write it {shapes}",
                    if calls { "request" } else { "message" }
                ),
            ));
            false
        }
        None => false,
    };
    if !sound {
        return (None, None, false);
    }
    (arg, reply, ctx)
}

/// The subscription's (or subscriber's) type and whether the context comes last, read from the
/// arguments of a subscription callback: `subscription: &Subscription` (`handle_subscribe`) or
/// `subscriber: &Subscriber` (`handle_consumer_subscribe`), followed by `reason: &CancelReason`
/// when it is told that the subscription ended (`handle_cancel`, `handle_consumer_cancel`); each
/// misplaced or missing argument is an error.
fn subscription_args(
    kind: CallbackKind,
    sig: &syn::Signature,
    args: &[&FnArg],
    count: usize,
    errors: &mut Errors,
) -> (Option<Type>, bool) {
    let name = &sig.ident;
    let shapes = kind.shapes();
    let Some((side, cancels)) = kind.subscription_side() else {
        return (None, false);
    };
    let (subject_ty, subject_pattern, subject) = side.argument();
    // The subscription, and the reason of a cancel.
    let fixed = 1 + usize::from(cancels);
    let what = if cancels {
        format!("{subject}, the reason and optionally the context")
    } else {
        format!("{subject} and optionally the context")
    };
    let message = format!(
        "`{name}` takes `&mut self`, {what}, but this one takes {count} argument{}: write it {shapes}",
        if count == 1 { "" } else { "s" },
    );
    if args.len() > fixed + 1 {
        let extra = &args[fixed + 1..];
        errors.push(syn::Error::new_spanned(quote::quote!(#(#extra),*), message));
        return (None, false);
    }
    if args.len() < fixed {
        errors.push(syn::Error::new(sig.paren_token.span.join(), message));
        return (None, false);
    }
    let expected = [
        (subject_ty, subject, subject_pattern),
        ("CancelReason", "why it ended", "reason"),
    ];
    for (arg, (ty_name, what, pattern)) in args.iter().zip(&expected).take(fixed) {
        let ty = typed(arg);
        if !ty.is_some_and(|ty| is_reference_to(ty, ty_name)) {
            errors.push(syn::Error::new_spanned(
                arg,
                format!(
                    "`{name}` takes {what} by reference, `{pattern}: &{ty_name}`, not `{}`: write it {shapes}",
                    ty.map_or_else(|| tokens_text(arg), tokens_text)
                ),
            ));
            // One error for the arguments: two swapped ones are one mistake.
            return (None, false);
        }
    }
    let ctx = match args.get(fixed) {
        Some(last) if typed(last).is_some_and(is_context) => true,
        Some(last) => {
            let after = if cancels { "the reason" } else { subject };
            errors.push(syn::Error::new_spanned(
                last,
                format!(
                    "after {after}, `{name}` takes only the context, `ctx: &mut Context<Self>`: write it {shapes}"
                ),
            ));
            return (None, false);
        }
        None => false,
    };
    (args.first().and_then(|arg| typed(arg)).cloned(), ctx)
}

/// `fn partition(&self, event: &T) -> R`: the method a stage with `dispatcher = partition(n)`
/// defines in its impl block. rustc checks `T` (the stage's output events) and `R`
/// (`Option<usize>`) through the expansion's helper traits.
pub(crate) struct PartitionFn {
    pub(crate) name: Ident,
    /// The `T` of `event: &T`.
    pub(crate) event: Type,
    /// The return type.
    pub(crate) output: Type,
}

/// The method of the impl block named `name` (`partition`, `dispatcher`), if it has one.
pub(crate) fn find_method<'a>(item: &'a ItemImpl, name: &str) -> Option<&'a ImplItemFn> {
    item.items.iter().find_map(|impl_item| match impl_item {
        ImplItem::Fn(method) if method.sig.ident == name => Some(method),
        _ => None,
    })
}

/// Checks the signature of a producer's or producer_consumer's own `dispatcher` method, which the
/// role trait's `dispatcher` then calls: `fn dispatcher(&self) -> Dispatch<Self, T>` (the return
/// type is rustc's to check). `shape` is the signature to write, for the messages.
pub(crate) fn check_dispatcher_method(
    method: &ImplItemFn,
    stage: &str,
    shape: &str,
) -> syn::Result<()> {
    let sig = &method.sig;
    let wrong = |tokens: &dyn quote::ToTokens, what: &str| {
        syn::Error::new_spanned(
            tokens,
            format!("`{stage}`'s `dispatcher` {what}: write it `{shape}`"),
        )
    };
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(wrong(&sig.generics, "cannot be generic"));
    }
    if let Some(asyncness) = &sig.asyncness {
        return Err(wrong(
            asyncness,
            "cannot be `async`: the runtime asks for it once, as the stage is added",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver)) if is_self_reference(&receiver.ty, false) => {}
        Some(other) => return Err(wrong(other, "takes `&self` first")),
        None => {
            return Err(syn::Error::new(
                sig.paren_token.span.join(),
                format!("`{stage}`'s `dispatcher` takes `&self` first: write it `{shape}`"),
            ))
        }
    }
    let rest: Vec<&FnArg> = inputs.collect();
    if !rest.is_empty() {
        return Err(wrong(&quote::quote!(#(#rest),*), "takes only `&self`"));
    }
    if matches!(sig.output, ReturnType::Default) {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!("`{stage}`'s `dispatcher` returns the stage's dispatcher: write it `{shape}`"),
        ));
    }
    Ok(())
}

/// Reads the signature of a partitioned stage's `partition` method. `stage` names the stage and
/// `shape` is the signature to write, for the messages.
pub(crate) fn parse_partition(
    method: &ImplItemFn,
    stage: &str,
    shape: &str,
) -> syn::Result<PartitionFn> {
    let sig = &method.sig;
    let name = sig.ident.clone();
    let write = format!("write it `{shape}`");
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let generics = &sig.generics;
        let where_clause = &generics.where_clause;
        return Err(syn::Error::new_spanned(
            quote::quote!(#generics #where_clause),
            format!("`{stage}`'s `partition` cannot be generic: {write}"),
        ));
    }
    let at_once = "the runtime calls it as it dispatches each event";
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span,
            format!("`{stage}`'s `partition` cannot be `async`: {at_once}: {write}"),
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(
            unsafety.span,
            format!("`{stage}`'s `partition` cannot be `unsafe`: {at_once}: {write}"),
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            format!("`{stage}`'s `partition` cannot be variadic: {write}"),
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver)) if is_self_reference(&receiver.ty, false) => {}
        first => {
            let message = format!(
                "`{stage}`'s `partition` takes `&self` first: it reads the stage between its callbacks, without changing it: {write}"
            );
            return Err(match first {
                Some(arg) => syn::Error::new_spanned(arg, message),
                None => syn::Error::new(sig.paren_token.span.join(), message),
            });
        }
    }
    let rest: Vec<&FnArg> = inputs.collect();
    let event = match rest.as_slice() {
        [arg] => match typed(arg).map(ungroup) {
            Some(Type::Reference(reference)) if reference.mutability.is_none() => {
                (*reference.elem).clone()
            }
            ty => {
                return Err(syn::Error::new_spanned(
                    arg,
                    format!(
                        "`{stage}`'s `partition` takes the event by reference, not `{}`: {write}",
                        ty.map_or_else(|| tokens_text(arg), tokens_text)
                    ),
                ))
            }
        },
        _ => {
            let message = format!(
                "`{stage}`'s `partition` takes `&self` and one event by reference, but this one takes {} argument{}: {write}",
                rest.len() + 1,
                if rest.is_empty() { "" } else { "s" }
            );
            return Err(if rest.is_empty() {
                syn::Error::new(sig.paren_token.span.join(), message)
            } else {
                syn::Error::new_spanned(quote::quote!(#(#rest),*), message)
            });
        }
    };
    let output = match &sig.output {
        ReturnType::Type(_, ty) => (**ty).clone(),
        ReturnType::Default => {
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "`{stage}`'s `partition` returns the event's partition, `Some(i)`, or `None` to discard the event: {write}"
                ),
            ))
        }
    };
    Ok(PartitionFn {
        name,
        event,
        output,
    })
}

/// The type of a typed argument (`pattern: Type`).
pub(crate) fn typed(arg: &FnArg) -> Option<&Type> {
    match arg {
        FnArg::Typed(typed) => Some(&typed.ty),
        FnArg::Receiver(_) => None,
    }
}

/// `R` when `ty` is `ReplyTo<R>` (by the last path segment: `genstage::ReplyTo<R>` too).
fn reply_type(ty: &Type) -> Option<&Type> {
    container_arg(ty, &["ReplyTo"])
}

/// Whether `ty` is `&mut Context<…>` (by the last path segment: `&mut genstage::Context<'_, Self>`
/// too). Its arguments are rustc's to check, against the `Context<'_, Self>` the trait passes.
pub(crate) fn is_context(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Reference(reference) if reference.mutability.is_some() => matches!(
            ungroup(&reference.elem),
            Type::Path(path) if path.qself.is_none()
                && path.path.segments.last().is_some_and(|last| last.ident == "Context")
        ),
        _ => false,
    }
}

/// Whether `ty` is `&StageStatus` (by the last path segment: `&genstage::StageStatus` too).
fn is_status(ty: &Type) -> bool {
    is_reference_to(ty, "StageStatus")
}

/// Whether `ty` is a shared reference to the type `name`, without arguments (by the last path
/// segment: `&genstage::Subscription` too).
fn is_reference_to(ty: &Type, name: &str) -> bool {
    match ungroup(ty) {
        Type::Reference(reference) if reference.mutability.is_none() => matches!(
            ungroup(&reference.elem),
            Type::Path(path) if path.qself.is_none()
                && path.path.segments.last().is_some_and(|last| {
                    last.ident == name && last.arguments.is_none()
                })
        ),
        _ => false,
    }
}

/// Whether `ty` is the type `name`, without arguments and not a reference (by the last path
/// segment: `genstage::SubscriptionTag` too).
fn is_named(ty: &Type, name: &str) -> bool {
    matches!(
        ungroup(ty),
        Type::Path(path) if path.qself.is_none()
            && path.path.segments.last().is_some_and(|last| {
                last.ident == name && last.arguments.is_none()
            })
    )
}

/// Whether `ty` is `()`.
fn is_unit(ty: &Type) -> bool {
    matches!(ungroup(ty), Type::Tuple(tuple) if tuple.elems.is_empty())
}

/// `T` when `ty` is `C<T>` for one of `containers` (by the last path segment: `Vec`,
/// `std::vec::Vec`, `genstage::Emit`).
pub(crate) fn container_arg<'a>(ty: &'a Type, containers: &[&str]) -> Option<&'a Type> {
    let (ident, arg) = single_type_arg(ty)?;
    containers.iter().any(|c| ident == c).then_some(arg)
}

/// The last segment's name and its one type argument, for a path type `…::Name<T>`.
fn single_type_arg(ty: &Type) -> Option<(&Ident, &Type)> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(arg)] => Some((&last.ident, arg)),
        _ => None,
    }
}

/// `ty` without invisible groups and parentheses.
pub(crate) fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

/// [`ungroup`], for a type to change.
pub(crate) fn ungroup_mut(ty: &mut Type) -> &mut Type {
    match ty {
        Type::Group(group) => ungroup_mut(&mut group.elem),
        Type::Paren(paren) => ungroup_mut(&mut paren.elem),
        other => other,
    }
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
pub(crate) fn future_output(bounds: &Punctuated<TypeParamBound, Token![+]>) -> Option<Type> {
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
