//! The rules that relate the attribute to the impl block: which options and callbacks each role has,
//! the option values, and the demand limits. The result is the model `expand.rs` generates from.

use std::collections::HashSet;

use syn::{Expr, GenericArgument, GenericParam, Ident, ItemImpl, Lit, PathArguments, Type};

use crate::options::{
    self, list, Dispatcher, MaxDemand, BUFFER_KEEP, BUFFER_KEEPS, BUFFER_SIZE, CANCEL,
    CANCEL_MODES, CRATE, DEMAND, DEMAND_MODES, DISPATCHER, MAX_DEMAND, MAX_RESTARTS, MAX_SECONDS,
    MIN_DEMAND, REDELIVER, RESTART, RESTARTS, WITHOUT_CONSUMERS, WITHOUT_CONSUMERS_CHOICES,
};

use super::parse::{
    check_dispatcher_method, container_arg, find_method, parse_partition, tokens_text, ungroup,
    Callback, CallbackKind, Errors, PartitionFn, Role, StageAttr, StageImpl, StageOption,
};

/// A stage ready to expand: its role, its callbacks and its valid options.
pub(crate) struct StageModel {
    pub(crate) role: Role,
    pub(crate) item: ItemImpl,
    /// Whether `item` differs from the impl block as written (a callback defined a second time was
    /// left out of it), and so is what must be emitted.
    pub(crate) rewritten: bool,
    /// The path of the `genstage` crate: `::genstage` unless `crate = "path"` says otherwise.
    pub(crate) krate: syn::Path,
    /// `handle_demand` (producer) or `handle_events` (producer_consumer, consumer).
    pub(crate) callback: Callback,
    /// The type of the events it receives (`T` of its `Vec<T>` parameter), unless a producer.
    pub(crate) input: Option<Type>,
    /// The type of the events it emits (`T` of the `Vec<T>` or `Emit<T>` it returns), unless a
    /// consumer.
    pub(crate) output: Option<Type>,
    pub(crate) subscribe: Settings<SubscribeOpts>,
    pub(crate) producer: Settings<ProducerOpts>,
    /// `handle_call`, `handle_cast` and `handle_info`, those the impl block defines soundly: each
    /// becomes an impl of the runtime's `HandleCall<M>`, `HandleCast<M>` or `HandleInfo<M>`.
    pub(crate) messages: Vec<Callback>,
    /// `terminate`, when the impl block defines it soundly: the role trait's `terminate` calls it.
    pub(crate) terminate: Option<Callback>,
    /// `init`, when the impl block defines it soundly: the role trait's `init` calls it.
    pub(crate) init: Option<Callback>,
    /// `batch_from`, when the impl block of a consumer or a producer_consumer defines it soundly:
    /// the role trait's `batch_from` calls it.
    pub(crate) batch_from: Option<Callback>,
    /// The subscription callbacks the impl block defines soundly, those of its role
    /// (`handle_subscribe` and `handle_cancel` for a consumer or a producer_consumer,
    /// `handle_consumer_subscribe` and `handle_consumer_cancel` for a producer or a
    /// producer_consumer): the role trait's methods of those names call them.
    pub(crate) subscriptions: Vec<Callback>,
    /// The dispatcher of a producer or producer_consumer.
    pub(crate) dispatcher: DispatchModel,
    /// The restart policy the attribute sets (`restart`, `max_restarts`, `max_seconds`,
    /// `redeliver`), if it sets one: the role trait's `restart_policy`.
    pub(crate) restart: Option<RestartOpts>,
}

/// `restart = …`, with the options that only mean something for a stage that is restarted.
pub(crate) struct RestartOpts {
    /// `Permanent`, `Transient` or `Temporary`, spanned at the user's value.
    pub(crate) restart: Ident,
    /// `max_restarts` and `max_seconds`, when either is set (the other one then has OTP's
    /// default).
    pub(crate) limit: Option<(u32, u64)>,
    /// The `redeliver` flag, where the attribute has it: a non-`Clone` event type is reported
    /// there.
    pub(crate) redeliver: Option<proc_macro2::Span>,
}

/// Whether `method` returns a `Dispatch<…>`, under any path.
fn returns_dispatch(method: &syn::ImplItemFn) -> bool {
    match &method.sig.output {
        syn::ReturnType::Type(_, ty) => match ungroup(ty) {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|segment| segment.ident == "Dispatch"),
            _ => false,
        },
        syn::ReturnType::Default => false,
    }
}

/// A stage's dispatcher, as the expansion writes it.
pub(crate) enum DispatchModel {
    /// No `dispatcher` option, or `dispatcher = demand`: the role trait's default.
    Demand,
    /// `dispatcher = broadcast`; the span of `broadcast`, where a non-`Clone` event type is
    /// reported.
    Broadcast(proc_macro2::Span),
    /// `dispatcher = partition(count)`, with the impl block's `partition` method.
    Partition {
        count: usize,
        method: Box<PartitionFn>,
    },
    /// The impl block's own `fn dispatcher(&self) -> Dispatch<Self, T>` (a dispatcher of the user's,
    /// `Dispatch::custom`, or one chosen at run time), which the role trait's calls; `pipeline!`
    /// cannot see what it returns, so `run()` checks the edges after the stage.
    Method {
        /// The span of its return type, where a `Dispatch` of another event type is reported.
        span: proc_macro2::Span,
        /// The block's `partition` method, when it has one of that shape: the stage's
        /// `Partition`, for a `Dispatch::partition` the method returns.
        partition: Option<Box<PartitionFn>>,
    },
    /// A `dispatcher` option that was rejected (or a partitioned stage without a sound `partition`
    /// method): the role trait's default, and nothing that `pipeline!` could check against, so
    /// that the mistake gives its one error only.
    Rejected,
}

/// Where a stage's options come from.
pub(crate) enum Settings<T> {
    /// The attribute (possibly setting nothing: the role's defaults apply).
    Attribute(T),
    /// A `subscribe_options` or `producer_options` method in the impl block.
    Method,
}

/// The consumer-side options: `max_demand`, `min_demand`, `cancel`.
#[derive(Default)]
pub(crate) struct SubscribeOpts {
    pub(crate) max_demand: Option<Expr>,
    pub(crate) min_demand: Option<Expr>,
    /// `Permanent`, `Transient` or `Temporary`, spanned at the user's value.
    pub(crate) cancel: Option<Ident>,
}

impl SubscribeOpts {
    pub(crate) fn is_empty(&self) -> bool {
        self.max_demand.is_none() && self.min_demand.is_none() && self.cancel.is_none()
    }
}

/// The producer-side options: `buffer_size`, `buffer_keep`, `without_consumers`, and a producer's
/// `demand`.
#[derive(Default)]
pub(crate) struct ProducerOpts {
    pub(crate) buffer_size: Option<BufferSize>,
    /// `First` or `Last`, spanned at the user's value.
    pub(crate) buffer_keep: Option<Ident>,
    /// `Forward` or `Accumulate`, spanned at the user's value.
    pub(crate) demand: Option<Ident>,
    /// `Stop` or `Wait`, spanned at the user's value.
    pub(crate) without_consumers: Option<Ident>,
}

impl ProducerOpts {
    pub(crate) fn is_empty(&self) -> bool {
        self.buffer_size.is_none()
            && self.buffer_keep.is_none()
            && self.demand.is_none()
            && self.without_consumers.is_none()
    }
}

/// `buffer_size = infinity | EXPR`
pub(crate) enum BufferSize {
    Infinity,
    Size(Box<Expr>),
}

/// Which side of a stage an option configures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Subscription options: consumers and producer_consumers.
    Consumer,
    /// Buffer options: producers and producer_consumers.
    Producer,
    /// `demand`: producers only (a producer_consumer forwards the demand of its consumers).
    ProducerOnly,
    /// `dispatcher`: producers and producer_consumers, which have consumers.
    Dispatch,
    /// `redeliver`: consumers and producer_consumers, which receive events.
    Input,
    /// `crate`: every role.
    Any,
}

const OPTIONS: &[(options::Symbol, Side)] = &[
    (MAX_DEMAND, Side::Consumer),
    (MIN_DEMAND, Side::Consumer),
    (CANCEL, Side::Consumer),
    (BUFFER_SIZE, Side::Producer),
    (BUFFER_KEEP, Side::Producer),
    (DEMAND, Side::ProducerOnly),
    (WITHOUT_CONSUMERS, Side::Producer),
    (DISPATCHER, Side::Dispatch),
    (RESTART, Side::Any),
    (MAX_RESTARTS, Side::Any),
    (MAX_SECONDS, Side::Any),
    (REDELIVER, Side::Input),
    (CRATE, Side::Any),
];

fn has_side(role: Role, side: Side) -> bool {
    match side {
        Side::Any => true,
        Side::Consumer | Side::Input => role != Role::Producer,
        Side::Producer | Side::Dispatch => role != Role::Consumer,
        Side::ProducerOnly => role == Role::Producer,
    }
}

fn options_of(role: Role) -> String {
    let names: Vec<&str> = OPTIONS
        .iter()
        .filter(|(_, side)| has_side(role, *side))
        .map(|(name, _)| name.name())
        .collect();
    list(&names)
}

/// Checks the attribute against the impl block. Returns the model when the stage can be expanded
/// (its callbacks are sound; invalid options are left out of it) and every error found.
pub(crate) fn validate_stage(
    attr: StageAttr,
    mut stage: StageImpl,
) -> (Option<StageModel>, Option<syn::Error>) {
    let mut errors = Errors::default();
    let rewritten = remove_second_definitions(&mut stage, &mut errors);
    let role = attr.role.role;
    let has_method = |kind: CallbackKind| stage.callback_names.iter().any(|(k, _)| *k == kind);

    // Options.
    let mut krate: syn::Path = syn::parse_quote!(::genstage);
    let mut subscribe = SubscribeOpts::default();
    let mut producer = ProducerOpts::default();
    let mut seen = HashSet::new();
    let mut max_demand_literal = None;
    let mut min_demand_option = None;
    let stage_name = tokens_text(&stage.item.self_ty);
    let mut dispatcher = None;
    let mut restart: Option<Result<Ident, ()>> = None;
    let mut restart_dependents: Vec<&StageOption> = Vec::new();
    let mut max_restarts = None;
    let mut max_seconds = None;
    let mut redeliver = None;
    for option in &attr.options {
        let key = option.key.to_string();
        let Some(&(_, side)) = OPTIONS.iter().find(|(name, _)| *key == *name) else {
            errors.push(syn::Error::new(
                option.key.span(),
                format!(
                    "unknown option `{key}` for {}; its options are {}",
                    role.a(),
                    options_of(role)
                ),
            ));
            continue;
        };
        if !has_side(role, side) && side == Side::Dispatch {
            errors.push(syn::Error::new(
                option.key.span(),
                format!(
                    "`dispatcher` chooses which consumers get the events of a producer or a producer_consumer, but `{stage_name}` is {}, which emits no events; {}'s options are {}",
                    role.a(),
                    role.a(),
                    options_of(role)
                ),
            ));
            continue;
        }
        if !has_side(role, side) && side == Side::Input {
            errors.push(syn::Error::new(
                option.key.span(),
                format!(
                    "`redeliver` hands the events a failed stage was handling to the stage restarted in its place, but `{stage_name}` is {}, which receives no events, so it has none to redeliver; {}'s options are {}",
                    role.a(),
                    role.a(),
                    options_of(role)
                ),
            ));
            continue;
        }
        if !has_side(role, side) {
            let (owners, what) = match side {
                Side::Consumer => (
                    "consumers and producer_consumers",
                    "it configures their subscriptions",
                ),
                Side::ProducerOnly => ("producers only", "it sets their demand mode"),
                _ if key == WITHOUT_CONSUMERS.name() => (
                    "producers and producer_consumers",
                    "it says whether they stop or wait when they have no consumer",
                ),
                _ => (
                    "producers and producer_consumers",
                    "it configures their buffer",
                ),
            };
            errors.push(syn::Error::new(
                option.key.span(),
                format!(
                    "`{key}` is an option of {owners} ({what}), not of {}; {}'s options are {}",
                    role.a(),
                    role.a(),
                    options_of(role)
                ),
            ));
            continue;
        }
        if !seen.insert(key.clone()) {
            errors.push(options::duplicate(&option.key));
            if key == "dispatcher" {
                // Which of the two was meant is unknown: judging the stage by the first would
                // add a second error (a `partition` method missing, or one nothing reads).
                dispatcher = Some(Err(()));
            }
            continue;
        }
        let method = match side {
            Side::Consumer => Some(CallbackKind::SubscribeOptions),
            Side::Producer | Side::ProducerOnly => Some(CallbackKind::ProducerOptions),
            Side::Dispatch | Side::Input | Side::Any => None,
        };
        if let Some(method) = method.filter(|m| has_method(*m)) {
            errors.push(syn::Error::new(
                option.key.span(),
                format!(
                    "`{key}` is set here, but this impl block also defines `{}`: set the options in one place",
                    method.name()
                ),
            ));
            continue;
        }
        if options::FLAGS.iter().any(|flag| option.key == *flag) && !option.is_bare() {
            errors.push(syn::Error::new_spanned(
                &option.value,
                format!("`{key}` is a flag and takes no value: write `{key}` alone"),
            ));
            continue;
        }
        match key.as_str() {
            "crate" => match parse_crate(option) {
                Ok(path) => krate = path,
                Err(error) => {
                    // The expansion goes on: with the crate meant by `crate = gs` (`pipeline!`'s
                    // form), as `::genstage` may not exist where genstage is renamed.
                    if let Some(path) = unquoted_crate(&option.value) {
                        krate = path;
                    }
                    errors.push(error)
                }
            },
            "max_demand" => match options::count(&option.key, &option.value).and_then(|literal| {
                options::check_max_demand(&option.value, literal).map(|()| literal)
            }) {
                Ok(literal) => {
                    max_demand_literal = literal;
                    subscribe.max_demand = Some(option.value.clone());
                }
                Err(error) => errors.push(error),
            },
            "min_demand" => match options::count(&option.key, &option.value) {
                Ok(literal) => min_demand_option = Some((option, literal)),
                Err(error) => errors.push(error),
            },
            "cancel" => {
                match options::choice(&option.key, &option.value, CANCEL_MODES, "cancel mode") {
                    Ok(variant) => subscribe.cancel = Some(variant),
                    Err(error) => errors.push(error),
                }
            }
            "buffer_size" => {
                if is_ident(&option.value, options::INFINITY) {
                    producer.buffer_size = Some(BufferSize::Infinity);
                } else if let Some(error) = options::misspelled_infinity(&option.value) {
                    errors.push(error);
                } else {
                    match options::count(&option.key, &option.value) {
                        Ok(_) => {
                            producer.buffer_size =
                                Some(BufferSize::Size(Box::new(option.value.clone())))
                        }
                        Err(error) => errors.push(error),
                    }
                }
            }
            "buffer_keep" => match options::choice(
                &option.key,
                &option.value,
                BUFFER_KEEPS,
                "buffer_keep value",
            ) {
                Ok(variant) => producer.buffer_keep = Some(variant),
                Err(error) => errors.push(error),
            },
            "demand" => {
                match options::choice(&option.key, &option.value, DEMAND_MODES, "demand mode") {
                    Ok(variant) => producer.demand = Some(variant),
                    Err(error) => errors.push(error),
                }
            }
            "without_consumers" => match options::choice(
                &option.key,
                &option.value,
                WITHOUT_CONSUMERS_CHOICES,
                "without_consumers value",
            ) {
                Ok(variant) => producer.without_consumers = Some(variant),
                Err(error) => errors.push(error),
            },
            "restart" => {
                match options::choice(&option.key, &option.value, RESTARTS, "restart value") {
                    Ok(variant) => restart = Some(Ok(variant)),
                    Err(error) => {
                        restart = Some(Err(()));
                        errors.push(error);
                    }
                }
            }
            "max_restarts" => {
                restart_dependents.push(option);
                match options::max_restarts(&option.value) {
                    Ok(max) => max_restarts = Some(max),
                    Err(error) => errors.push(error),
                }
            }
            "max_seconds" => {
                restart_dependents.push(option);
                match options::max_seconds(&option.value) {
                    Ok(seconds) => max_seconds = Some(seconds),
                    Err(error) => errors.push(error),
                }
            }
            "redeliver" => {
                restart_dependents.push(option);
                redeliver = Some(option.key.span());
            }
            "dispatcher" => match options::dispatcher(&stage_name, &option.value) {
                Ok(choice) => dispatcher = Some(Ok((choice, option))),
                Err(error) => {
                    dispatcher = Some(Err(()));
                    errors.push(error);
                }
            },
            _ => {}
        }
    }
    if let Some((option, literal)) = min_demand_option {
        let max = match (&subscribe.max_demand, max_demand_literal) {
            (None, _) if !seen.contains("max_demand") => Some(MaxDemand::Default),
            (Some(_), Some(max)) => Some(MaxDemand::Set(max)),
            _ => None,
        };
        match (literal, max) {
            (Some(min), Some(max)) => match options::check_min_demand(&option.value, min, max) {
                Ok(()) => subscribe.min_demand = Some(option.value.clone()),
                Err(error) => errors.push(error),
            },
            _ => subscribe.min_demand = Some(option.value.clone()),
        }
    }

    // `max_restarts`, `max_seconds` and `redeliver` mean something only for a stage that is
    // restarted: one error, at the first of them, for a stage that is not.
    let restart = match restart {
        Some(Ok(variant)) => {
            let temporary = variant == "Temporary";
            match restart_dependents.first() {
                Some(option) if temporary => {
                    errors.push(never_restarted(
                        option,
                        &stage_name,
                        "`restart = temporary`",
                    ));
                    None
                }
                _ => Some(RestartOpts {
                    restart: variant,
                    limit: match (max_restarts, max_seconds) {
                        (None, None) => None,
                        (max, seconds) => Some((
                            max.unwrap_or(options::DEFAULT_MAX_RESTARTS),
                            seconds.unwrap_or(options::DEFAULT_MAX_SECONDS),
                        )),
                    },
                    redeliver,
                }),
            }
        }
        Some(Err(())) => None,
        None => {
            if let Some(option) = restart_dependents.first() {
                errors.push(never_restarted(
                    option,
                    &stage_name,
                    "it has no `restart` option, so it is `temporary`",
                ));
            }
            None
        }
    };

    // The impl block: no borrowed state, and the role's callbacks.
    let mut sound = true;
    for param in &stage.item.generics.params {
        if let GenericParam::Lifetime(lifetime) = param {
            sound = false;
            errors.push(syn::Error::new_spanned(
                &lifetime.lifetime,
                format!(
                    "a stage cannot borrow (it runs in its own task, so it is `'static`): remove the lifetime `{}`",
                    lifetime.lifetime
                ),
            ));
        }
    }

    let required = match role {
        Role::Producer => CallbackKind::HandleDemand,
        _ => CallbackKind::HandleEvents,
    };
    let mut misplaced = false;
    for (kind, name) in &stage.callback_names {
        if let Some(message) = misplaced_callback(role, *kind) {
            misplaced = true;
            errors.push(syn::Error::new(name.span(), message));
        }
    }
    // Callbacks the runtime does not call yet: an error each, the stage still expands.
    for name in &stage.unsupported {
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "`{name}` is a GenStage callback that genstage does not support yet, so #[stage] would never call it: remove it, or rename it if it is a method of your own"
            ),
        ));
    }
    // Role trait methods #[stage] writes from its options: an error each, the stage still expands.
    for name in &stage.generated {
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "#[stage] writes `{name}` from its `restart`, `max_restarts`, `max_seconds` and `redeliver` options, so this method would never be called: set the policy with those options (or, for one known only at run time, with `Pipeline::set_restart`), or rename it if it is a method of your own"
            ),
        ));
    }
    let mut callback = None;
    let mut messages = Vec::new();
    let mut terminate = None;
    let mut init = None;
    let mut batch_from = None;
    let mut subscriptions = Vec::new();
    for (kind, parsed) in stage.callbacks {
        match parsed {
            // A callback the role does not have is reported once, as such, whatever its shape.
            _ if misplaced_callback(role, kind).is_some() => {}
            Ok(cb) if cb.kind.is_message_callback() => match message_types(&cb) {
                Ok(()) => messages.push(cb),
                Err(error) => errors.push(error),
            },
            Ok(cb) if cb.kind == CallbackKind::Terminate => terminate = Some(cb),
            Ok(cb) if cb.kind == CallbackKind::Init => init = Some(cb),
            Ok(cb) if cb.kind == CallbackKind::BatchFrom => batch_from = Some(cb),
            Ok(cb) if cb.kind.is_subscription_callback() => subscriptions.push(cb),
            Ok(cb) => {
                if cb.kind == required && callback.is_none() {
                    callback = Some(cb);
                }
            }
            // A message, subscription, `init`, `batch_from` or `terminate` callback of the wrong
            // shape is left out of the expansion; the stage's events and role do not depend on
            // it, so the rest still expands.
            Err(error)
                if kind.is_message_callback()
                    || kind.is_subscription_callback()
                    || matches!(
                        kind,
                        CallbackKind::Terminate | CallbackKind::Init | CallbackKind::BatchFrom
                    ) =>
            {
                errors.push(error)
            }
            Err(error) => {
                sound = false;
                errors.push(error);
            }
        }
    }
    if !has_method(required) && !misplaced {
        let ty = &stage.item.self_ty;
        let shape = match role {
            Role::Producer => "fn handle_demand(&mut self, demand: usize) -> Vec<T>",
            Role::ProducerConsumer => "fn handle_events(&mut self, events: Vec<T>) -> Vec<U>",
            Role::Consumer => "fn handle_events(&mut self, events: Vec<T>)",
        };
        errors.push(syn::Error::new_spanned(
            ty,
            format!(
                "{} `{}` has no `{}`: add `{shape}` to this impl block",
                role.name(),
                tokens_text(ty),
                required.name()
            ),
        ));
    }

    // The event types, read from the callback's signature.
    let mut input = None;
    let mut output = None;
    if let Some(callback) = &callback {
        match event_types(role, callback) {
            Ok((i, o)) => (input, output) = (i, o),
            Err(error) => {
                sound = false;
                errors.push(error);
            }
        }
    }

    // The dispatcher: the attribute's, or the impl block's own `dispatcher` method (not both); a
    // partitioned stage's `partition` method, written for its output events.
    let event = output.as_ref().map_or_else(|| "T".to_owned(), tokens_text);
    let own_dispatcher = match role {
        Role::Consumer => {
            // A consumer's method of that name is its own, unless it returns a `Dispatch`: then
            // it was written for a stage that emits.
            if let Some(method) =
                find_method(&stage.item, "dispatcher").filter(|method| returns_dispatch(method))
            {
                errors.push(syn::Error::new(
                    method.sig.ident.span(),
                    format!(
                        "`{stage_name}` is a consumer, which emits no events: `dispatcher` chooses which consumers get the events of a producer or a producer_consumer; give this method another name"
                    ),
                ));
            }
            None
        }
        _ => find_method(&stage.item, "dispatcher"),
    };
    if let (Some(Ok((_, option))), Some(_)) = (&dispatcher, own_dispatcher) {
        errors.push(syn::Error::new(
            option.key.span(),
            "`dispatcher` is set here, but this impl block also defines `dispatcher`: set the dispatcher in one place",
        ));
        dispatcher = Some(Err(()));
    }
    let partition_shape = format!("fn partition(&self, event: &{event}) -> Option<usize>");
    // A `partition` method of the partition function's shape: read by a partitioned stage, and by
    // one with its own `dispatcher` (which may partition); another stage may have a method of its
    // own by that name, of another shape.
    let partition_fn = || {
        find_method(&stage.item, "partition")
            .and_then(|method| parse_partition(method, &stage_name, &partition_shape).ok())
    };
    let dispatcher = match dispatcher {
        None => match own_dispatcher {
            None => DispatchModel::Demand,
            Some(method) => {
                let shape = format!("fn dispatcher(&self) -> Dispatch<Self, {event}>");
                match check_dispatcher_method(method, &stage_name, &shape) {
                    Ok(()) => DispatchModel::Method {
                        span: match &method.sig.output {
                            syn::ReturnType::Type(_, ty) => first_span(ty),
                            syn::ReturnType::Default => method.sig.ident.span(),
                        },
                        partition: partition_fn().map(Box::new),
                    },
                    Err(error) => {
                        errors.push(error);
                        DispatchModel::Rejected
                    }
                }
            }
        },
        Some(Ok((Dispatcher::Demand, _))) => DispatchModel::Demand,
        Some(Err(())) => DispatchModel::Rejected,
        Some(Ok((Dispatcher::Broadcast, option))) => {
            DispatchModel::Broadcast(first_span(&option.value))
        }
        Some(Ok((Dispatcher::Partition(count), option))) => {
            let shape = &partition_shape;
            match find_method(&stage.item, "partition") {
                None => {
                    errors.push(syn::Error::new_spanned(
                        &option.value,
                        format!(
                            "`{stage_name}` has `dispatcher = partition({count})` but no `partition` method: add `{shape}` to this impl block, giving each event's partition, below {count} (`None` discards the event)"
                        ),
                    ));
                    DispatchModel::Rejected
                }
                Some(method) => match parse_partition(method, &stage_name, shape) {
                    Ok(method) => DispatchModel::Partition {
                        count,
                        method: Box::new(method),
                    },
                    Err(error) => {
                        errors.push(error);
                        DispatchModel::Rejected
                    }
                },
            }
        }
    };
    // A partition function that nothing would read is a forgotten option rather than a method of
    // the user's own, which would have another shape.
    if matches!(
        dispatcher,
        DispatchModel::Demand | DispatchModel::Broadcast(_)
    ) {
        if let Some(partition) = partition_fn() {
            let message = match role {
                Role::Consumer => format!(
                    "`{stage_name}` is a consumer, which emits no events: `partition` is the partition function of a producer or producer_consumer with `dispatcher = partition(N)`; give this method another name"
                ),
                _ => format!(
                    "`{stage_name}`'s `partition` is its partition function only with `dispatcher = partition(N)`, N the number of partitions, which `{stage_name}` does not have: add it to `#[stage({})]`, or give this method another name",
                    role.name()
                ),
            };
            errors.push(syn::Error::new(partition.name.span(), message));
        }
    }

    let model = match callback {
        Some(callback) if sound && !misplaced => Some(StageModel {
            role,
            item: stage.item,
            rewritten,
            krate,
            callback,
            input,
            output,
            subscribe: if has_method(CallbackKind::SubscribeOptions) {
                Settings::Method
            } else {
                Settings::Attribute(subscribe)
            },
            producer: if has_method(CallbackKind::ProducerOptions) {
                Settings::Method
            } else {
                Settings::Attribute(producer)
            },
            messages,
            terminate,
            init,
            batch_from,
            subscriptions,
            dispatcher,
            restart,
        }),
        _ => None,
    };
    (model, errors.into_error())
}

/// A callback defined a second time in the impl block is reported, and left out of the block and
/// of its callbacks: the stage then expands with the first, so that this is the one error (rustc
/// would report the duplicate definition, and every use of the stage would fail to type-check).
/// Says whether it left any out.
fn remove_second_definitions(stage: &mut StageImpl, errors: &mut Errors) -> bool {
    // A callback defined under `#[cfg]` is refused for that, which says all there is.
    let configured: HashSet<CallbackKind> = stage
        .callback_names
        .iter()
        .zip(&stage.configured)
        .filter(|(_, &configured)| configured)
        .map(|(&(kind, _), _)| kind)
        .collect();
    let mut seen = HashSet::new();
    let self_ty = &stage.item.self_ty;
    let firsts: Vec<bool> = stage
        .callback_names
        .iter()
        .zip(&stage.callbacks)
        .map(|(&(kind, ref name), (_, callback))| {
            let first = seen.insert(kind);
            if !first && !configured.contains(&kind) {
                let message = callback.as_ref().ok().and_then(|c| c.arg.as_ref());
                errors.push(second_definition(kind, name, self_ty, message));
            }
            first
        })
        .collect();
    if firsts.iter().all(|&first| first) {
        return false;
    }
    let mut first = firsts.iter().copied();
    stage
        .callback_names
        .retain(|_| first.next().unwrap_or(true));
    let mut first = firsts.iter().copied();
    stage.callbacks.retain(|_| first.next().unwrap_or(true));
    let mut seen = HashSet::new();
    stage.item.items.retain(|item| match item {
        syn::ImplItem::Fn(method) => {
            CallbackKind::from_ident(&method.sig.ident).is_none_or(|kind| seen.insert(kind))
        }
        _ => true,
    });
    true
}

/// The error of a callback defined a second time, at its name. A second `handle_call`,
/// `handle_cast` or `handle_info` names the way to keep it: a hand-written impl of the message
/// trait for `message` (its first argument's type, when it parsed) beside the block.
fn second_definition(
    kind: CallbackKind,
    name: &Ident,
    self_ty: &Type,
    message: Option<&Type>,
) -> syn::Error {
    let stage = super::parse::tokens_text(self_ty);
    let message = message.map_or_else(|| "M".to_owned(), super::parse::tokens_text);
    let what = match kind {
        CallbackKind::HandleCall => format!(
            "a `#[stage]` block has one `handle_call`, for one request type and one reply type: \
             to answer `{message}` too, move this one into a hand-written \
             `impl HandleCall<{message}> for {stage}` beside the block (its `handle_call` is an \
             `async fn` that also takes `ctx: &mut Context<'_, Self>`; see `genstage::HandleCall`), \
             or make the requests one enum (and their replies another)"
        ),
        CallbackKind::HandleCast | CallbackKind::HandleInfo => {
            let trait_name = if kind == CallbackKind::HandleCast {
                "HandleCast"
            } else {
                "HandleInfo"
            };
            format!(
                "a `#[stage]` block has one `{name}`, for one message type: to take `{message}` \
                 too, move this one into a hand-written `impl {trait_name}<{message}> for {stage}` \
                 beside the block (its `{name}` is an `async fn` that also takes \
                 `ctx: &mut Context<'_, Self>`; see `genstage::{trait_name}`), or make the \
                 messages one enum"
            )
        }
        _ => "a stage has one: remove this one".to_owned(),
    };
    syn::Error::new(
        name.span(),
        format!("`{name}` is defined a second time in this impl block: {what}"),
    )
}

/// The types of the events `callback` receives and emits, read from its signature: the `T` of
/// `events: Vec<T>`, and of a returned `Vec<T>` or `Emit<T>`, maybe inside a `…Result<_, …>`.
///
/// The types must be spelled out (not hidden behind an alias) for the macro to see them; reading
/// them through a trait projection instead would turn one wrong type into several rustc errors.
fn event_types(role: Role, callback: &Callback) -> syn::Result<(Option<Type>, Option<Type>)> {
    let mut errors = Errors::default();
    let name = &callback.name;
    let input = match (&callback.arg, role) {
        (Some(arg), Role::ProducerConsumer | Role::Consumer) => {
            match container_arg(arg, &["Vec"]) {
                Some(event) => Some(event.clone()),
                None => {
                    errors.push(syn::Error::new_spanned(
                    arg,
                    format!(
                        "`{name}` takes its events as `Vec<T>`, not `{}`: write it `fn {name}(&mut self, events: Vec<T>)`, with `Vec<…>` written out so that #[stage] can read the event type `T`",
                        tokens_text(arg)
                    ),
                ));
                    None
                }
            }
        }
        _ => None,
    };
    let (forms, containers): (&str, &[&str]) = match role {
        Role::Producer => (
            "`Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>` or `Result<Emit<T>, E>`",
            &["Vec", "Emit"],
        ),
        Role::ProducerConsumer => ("`Vec<T>` or `Result<Vec<T>, E>`", &["Vec"]),
        Role::Consumer => ("", &[]),
    };
    let output = if role == Role::Consumer {
        None
    } else {
        let ty = &callback.output;
        let event = container_arg(ty, containers)
            .or_else(|| result_ok(ty).and_then(|ok| container_arg(ok, containers)));
        match event {
            Some(event) => Some(event.clone()),
            None => {
                let hint = if role == Role::ProducerConsumer {
                    "; a stage that emits nothing is a consumer: `#[stage(consumer)]`"
                } else {
                    ""
                };
                let what = format!(
                    "but {} returns the events it emits: {forms}, written out so that #[stage] can read the event type `T`{hint}",
                    role.a()
                );
                errors.push(if callback.returns {
                    syn::Error::new_spanned(
                        ty,
                        format!("`{name}` returns `{}`, {what}", tokens_text(ty)),
                    )
                } else {
                    syn::Error::new(name.span(), format!("`{name}` returns nothing, {what}"))
                });
                None
            }
        }
    };
    for event in input.iter().chain(&output) {
        if let Some(keyword) = impl_trait_in(event) {
            errors.push(syn::Error::new(
                keyword.span(),
                format!(
                    "`{}` cannot be an event type: the stage's trait impl must name its events' type, so write the type out (e.g. `Vec<u64>`), or make the stage generic over it",
                    tokens_text(event)
                ),
            ));
        } else if let Some(borrow) = borrow_in(event) {
            // Left to rustc, this is "missing lifetime in associated type" under the role
            // trait's `Input`/`Output`, in genstage's own source.
            errors.push(syn::Error::new_spanned(
                borrow,
                format!(
                    "`{}` cannot be an event type: it borrows, but events are sent to other stages' tasks, so they are `'static`; take an owned type instead (`String` rather than `&str`, `T` rather than `&T`)",
                    tokens_text(event)
                ),
            ));
        }
    }
    errors.check()?;
    Ok((input, output))
}

/// The `impl` keyword of an `impl Trait` inside `ty`, if any: an event type must be nameable.
fn impl_trait_in(ty: &Type) -> Option<proc_macro2::Ident> {
    fn find(tokens: proc_macro2::TokenStream) -> Option<proc_macro2::Ident> {
        tokens.into_iter().find_map(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) if ident == "impl" => Some(ident),
            proc_macro2::TokenTree::Group(group) => find(group.stream()),
            _ => None,
        })
    }
    find(quote::ToTokens::to_token_stream(ty))
}

/// Checks the message type (and the reply type, for `handle_call`) read from a message callback:
/// a trait impl names them (`impl HandleCast<M> for Stage`), and they cross tasks, so they must be
/// written out and own their data.
fn message_types(callback: &Callback) -> syn::Result<()> {
    let mut errors = Errors::default();
    let name = &callback.name;
    let what = if callback.kind == CallbackKind::HandleCall {
        "request"
    } else {
        "message"
    };
    let types = callback
        .arg
        .iter()
        .map(|ty| (ty, what))
        .chain(callback.reply.iter().map(|ty| (ty, "reply")));
    for (ty, what) in types {
        if let Some(keyword) = impl_trait_in(ty) {
            errors.push(syn::Error::new(
                keyword.span(),
                format!(
                    "`{name}` cannot be generic: its {what} type is named in the impl of the message trait, so write it out instead of `{}`",
                    tokens_text(ty)
                ),
            ));
        } else if let Some(borrow) = borrow_in(ty) {
            errors.push(syn::Error::new_spanned(
                borrow,
                format!(
                    "`{name}`'s {what} cannot borrow, but `{}` does: a {what} is sent to the stage's task, so it is `'static`; take an owned type instead (`String` rather than `&str`, `Vec<T>` rather than `&[T]`)",
                    tokens_text(ty)
                ),
            ));
        }
    }
    errors.check()
}

/// Where `ty` borrows, if it does: the first reference or lifetime other than `'static` in it,
/// outside the signatures of function types (`Box<dyn Fn(&str) + Send>` owns its data).
fn borrow_in(ty: &Type) -> Option<proc_macro2::TokenStream> {
    use quote::ToTokens;
    use syn::visit_mut::{self, VisitMut};

    struct FindBorrow(Option<proc_macro2::TokenStream>);
    impl VisitMut for FindBorrow {
        fn visit_type_reference_mut(&mut self, reference: &mut syn::TypeReference) {
            match &reference.lifetime {
                Some(lifetime) if lifetime.ident == "static" => {
                    visit_mut::visit_type_mut(self, &mut reference.elem)
                }
                _ => {
                    self.0.get_or_insert_with(|| reference.to_token_stream());
                }
            }
        }
        fn visit_lifetime_mut(&mut self, lifetime: &mut syn::Lifetime) {
            if lifetime.ident != "static" {
                self.0.get_or_insert_with(|| lifetime.to_token_stream());
            }
        }
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if self.0.is_none() {
                visit_mut::visit_type_mut(self, ty);
            }
        }
        // A function's own arguments and result may borrow: the function type is still owned.
        fn visit_parenthesized_generic_arguments_mut(
            &mut self,
            _: &mut syn::ParenthesizedGenericArguments,
        ) {
        }
        fn visit_type_bare_fn_mut(&mut self, _: &mut syn::TypeBareFn) {}
        fn visit_bound_lifetimes_mut(&mut self, _: &mut syn::BoundLifetimes) {}
    }
    let mut finder = FindBorrow(None);
    finder.visit_type_mut(&mut ty.clone());
    finder.0
}

/// `T` when `ty` is `Result<T, E>`, or any `…Result<T>` alias (`StageResult<T>`, `io::Result<T>`).
pub(crate) fn result_ok(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if !last.ident.to_string().ends_with("Result") {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// Why `kind` does not belong to `role`, if it does not.
fn misplaced_callback(role: Role, kind: CallbackKind) -> Option<String> {
    match (role, kind) {
        (Role::Producer, CallbackKind::HandleDemand)
        | (Role::ProducerConsumer | Role::Consumer, CallbackKind::HandleEvents)
        | (Role::Producer | Role::ProducerConsumer, CallbackKind::ProducerOptions)
        | (Role::ProducerConsumer | Role::Consumer, CallbackKind::SubscribeOptions) => None,
        (
            _,
            CallbackKind::HandleCall
            | CallbackKind::HandleCast
            | CallbackKind::HandleInfo
            | CallbackKind::Terminate
            | CallbackKind::Init,
        )
        | (
            Role::ProducerConsumer | Role::Consumer,
            CallbackKind::HandleSubscribe | CallbackKind::HandleCancel | CallbackKind::BatchFrom,
        )
        | (
            Role::Producer | Role::ProducerConsumer,
            CallbackKind::HandleConsumerSubscribe | CallbackKind::HandleConsumerCancel,
        ) => None,
        (_, CallbackKind::HandleDemand) => Some(format!(
            "`handle_demand` is a producer callback, but this stage is {}: it receives its events in `handle_events`; use `#[stage(producer)]` for a stage that emits events on demand",
            role.a()
        )),
        (_, CallbackKind::HandleEvents) => Some(
            "`handle_events` is not a producer callback: a producer emits events from `handle_demand`; a stage that receives events is a `producer_consumer` or a `consumer`".to_owned()
        ),
        (_, CallbackKind::ProducerOptions) => Some(format!(
            "`producer_options` configures the buffer of producers and producer_consumers, but this stage is {}, which emits no events",
            role.a()
        )),
        (_, CallbackKind::BatchFrom) => Some(
            "`batch_from` is not a producer callback: it tells a consumer or a producer_consumer which subscription each batch of `handle_events` came on, and a producer receives no events; use `#[stage(consumer)]` or `#[stage(producer_consumer)]` for a stage that receives events".to_owned()
        ),
        (_, CallbackKind::HandleSubscribe | CallbackKind::HandleCancel) => Some(format!(
            "`{}` is told of a subscription to a producer, but this stage is {}, which has no subscriptions to producers: a producer is told of its consumers by `handle_consumer_subscribe` and `handle_consumer_cancel`",
            kind.name(),
            role.a()
        )),
        (_, CallbackKind::HandleConsumerSubscribe | CallbackKind::HandleConsumerCancel) => {
            Some(format!(
                "`{}` is told of a consumer's subscription to this stage, but this stage is {}, which has no consumers: a consumer is told of its subscriptions to producers by `handle_subscribe` and `handle_cancel`",
                kind.name(),
                role.a()
            ))
        }
        (_, CallbackKind::SubscribeOptions) => Some(format!(
            "`subscribe_options` configures the subscriptions of consumers and producer_consumers, but this stage is {}, which subscribes to nothing",
            role.a()
        )),
    }
}

/// The error of `max_restarts`, `max_seconds` or `redeliver` (`option`) on a stage that is never
/// restarted (`why`).
fn never_restarted(option: &StageOption, stage: &str, why: &str) -> syn::Error {
    let key = &option.key;
    let what = if *key == REDELIVER {
        "hands the events a failed stage was handling to the stage restarted in its place"
    } else {
        "limits how often a failed stage is restarted"
    };
    syn::Error::new(
        key.span(),
        format!(
            "`{key}` {what}, but `{stage}` is never restarted: {why}; add `restart = transient` (restarted after a failure) or `restart = permanent` (always restarted)"
        ),
    )
}

/// `crate = "path"`: the path the expansion names the `genstage` crate by.
fn parse_crate(option: &StageOption) -> syn::Result<syn::Path> {
    match &option.value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => {
            let path = lit
                .parse_with(syn::Path::parse_mod_style)
                .map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        format!(
                            "`crate` takes the path of the genstage crate, as in `crate = \"::genstage\"`; `{}` is not a path of modules",
                            lit.value()
                        ),
                    )
                })?;
            if crate::options::self_in_crate_path(&path).is_some() {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "`crate` takes the path of the genstage crate, as in `crate = \"::genstage\"`; `{}` goes through `Self`, which names a type",
                        lit.value()
                    ),
                ));
            }
            Ok(path)
        }
        other => Err(syn::Error::new_spanned(
            other,
            "`crate` takes the path of the genstage crate as a string, as in `crate = \"::genstage\"`",
        )),
    }
}

/// The path of a mistaken `crate = path` (a path of modules not in a string), or `None`.
fn unquoted_crate(value: &Expr) -> Option<syn::Path> {
    let Expr::Path(path) = value else {
        return None;
    };
    let plain = path.attrs.is_empty()
        && path.qself.is_none()
        && path
            .path
            .segments
            .iter()
            .all(|segment| segment.arguments.is_none());
    (plain && crate::options::self_in_crate_path(&path.path).is_none()).then(|| path.path.clone())
}

/// The span of the first token of `tokens`.
fn first_span(tokens: &impl quote::ToTokens) -> proc_macro2::Span {
    quote::ToTokens::to_token_stream(tokens)
        .into_iter()
        .next()
        .map_or_else(proc_macro2::Span::call_site, |token| token.span())
}

fn is_ident(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Path(path) if path.qself.is_none() && path.path.is_ident(name))
}
