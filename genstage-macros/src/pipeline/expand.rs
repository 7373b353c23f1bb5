//! Code generation: the typed builder calls, and one small check per node and per edge.
//!
//! The macro cannot see a stage's type, so it leaves role and event-type checks to rustc. Each
//! check is a trait generated inside the expansion, whose `#[diagnostic::on_unimplemented]` message
//! names the stages in the user's words, implemented only for the stage handles allowed there
//! (`ProducerRef`, `ProducerConsumerRef`, `ConsumerRef`), and called with tokens spanned at the
//! user's stage, so rustc's error is one sentence under that stage. rustc adds a `help:` line
//! naming the trait and the type it was asked of; both are user-facing (the local trait's name,
//! a public handle type), never an item of the hidden module (`tests/ui.rs` checks it).
//!
//! - per node, from the arrows around it: `Source` (it stands before `->`: not a consumer),
//!   `Sink` (it stands after `->`: not a producer), `Start` (nothing feeds it: not a
//!   producer_consumer), `End` (it feeds nothing: not a producer_consumer). A stage of any role
//!   fails at most one of them.
//! - per edge, `Sink<Out, In>` on the consumer's handle: it consumes the producer's `Out`. Its
//!   method does the subscribing, so a failed check leaves no second error in the builder call;
//!   an edge whose side already failed its node check is checked on `Skipped`, which passes.
//! - per stage expression, a local `Stage` trait over `genstage::Stage`, for a non-stage. The
//!   handle then reaches the node's other checks through the probe of `__private::checked`: as a
//!   `RejectedRef`, which they all accept, when the expression's type is known not to be a stage
//!   (`from_iter(5u64)`, `Show::<Point>(…)` whose bounds `Point` misses), so that it is reported
//!   once. A type whose parameters are inferred from the edges (`Show(PhantomData)`) is not known
//!   yet when the probe is resolved, and keeps its handle.
//! - constant checks: a constant group count, and an edge's literal `min_demand` against the
//!   consumer's known `max_demand` (`const` items, which `cargo check` evaluates).
//! - per edge, after every subscription, checks against the producer's dispatcher as its
//!   `#[stage]` declared it (read from its handle, see [`dispatch_checks`]): a `selector` needs a
//!   stage that broadcasts, a `partition` a partitioned stage and a literal one of its partitions,
//!   and a partitioned stage feeds a single consumer through `partition = i` and a group of a
//!   literal size one instance per partition.

use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};

use super::graph::Graph;
use super::parse::StageSyntax;
use super::validate::EdgeSettings;

/// The first and last token spans of some user tokens: generated code that starts with `first` and
/// ends with `last` is underlined by rustc exactly where the user's tokens are.
#[derive(Clone, Copy)]
struct SpanRange {
    first: Span,
    last: Span,
}

impl SpanRange {
    fn of(tokens: &TokenStream) -> SpanRange {
        let mut iter = tokens.clone().into_iter();
        let first = iter.next().map_or_else(Span::call_site, |t| t.span());
        let last = iter.last().map_or(first, |t| t.span());
        SpanRange { first, last }
    }
}

/// Every token of `tokens` at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut inner = Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tree = TokenTree::Group(inner);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// `callee(args)`, spanned so that the callee and the whole call both cover `range`: its first
/// token at `range.first`, every other token at `range.last`. rustc then puts every label of an
/// error about the call under the user's tokens, and merges them.
fn call_at(callee: TokenStream, args: TokenStream, range: SpanRange) -> TokenStream {
    let mut group = Group::new(Delimiter::Parenthesis, args);
    group.set_span(range.last);
    let mut out = TokenStream::new();
    for (i, tree) in callee.into_iter().enumerate() {
        let span = if i == 0 { range.first } else { range.last };
        out.extend(respan(TokenStream::from(tree), span));
    }
    out.extend([TokenTree::Group(group)]);
    out
}

/// A local variable of the expansion: hygienic, placed at `span` for error positions.
fn local(name: &str, span: Span) -> Ident {
    Ident::new(name, Span::mixed_site().located_at(span))
}

/// Text for an `on_unimplemented` format string: braces doubled.
fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// The expansion of a checked graph.
pub(crate) fn expand_graph(graph: &Graph, settings: &[EdgeSettings]) -> TokenStream {
    let krate = &graph.krate;
    let pipeline = local("__pipeline", Span::call_site());
    let mut body = TokenStream::new();

    for index in 0..graph.nodes.len() {
        body.extend(expand_node(graph, index, &pipeline));
    }
    for index in 0..graph.nodes.len() {
        body.extend(expand_node_checks(graph, index));
    }
    let producers = graph.producers();
    for (index, edge_settings) in settings.iter().enumerate() {
        let fed_by = &producers[graph.edges[index].to];
        body.extend(expand_edge(graph, index, edge_settings, fed_by, &pipeline));
    }
    // After every subscription, so that rustc knows each stage's type when it reads the
    // dispatcher from it.
    for (index, edge_settings) in settings.iter().enumerate() {
        body.extend(dispatch_checks(graph, index, edge_settings));
    }

    // A named stage's references become a field of the value: a group's `Vec`, or the one
    // reference of a single stage, taken out of its array once every check has used it.
    let mut fields = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        let Some(name) = &node.name else {
            continue;
        };
        let stage = local(&format!("__stage{index}"), Span::call_site());
        match &node.stage {
            StageSyntax::One(_) => {
                let reference = local(&format!("__ref{index}"), Span::call_site());
                body.extend(quote!(let [#reference] = #stage;));
                fields.push((name.clone(), quote!(#reference)));
            }
            StageSyntax::Group(_) => fields.push((name.clone(), quote!(#stage))),
        }
    }
    let value = with_names(krate, &fields, quote!(#pipeline));

    quote! {
        {
            let mut #pipeline = #krate::Pipeline::new();
            #body
            #value
        }
    }
}

/// The value of `pipeline!`: the pipeline itself when no stage is named; otherwise a struct made
/// here, with one public field per named stage (its `Stage::Ref`, or a `Vec` of them for a
/// group), the methods that end a `Pipeline`'s building (`run`, `start`, `into_pipeline`), and
/// `Deref<Target = Pipeline>` for the others.
///
/// The struct is defined in a block of its own, which holds no user tokens, so that its name and
/// its type parameters cannot clash with the user's items; only the field names are the user's.
/// The pipeline's own field takes a name no stage has.
pub(crate) fn with_names(
    krate: &TokenStream,
    fields: &[(Ident, TokenStream)],
    pipeline: TokenStream,
) -> TokenStream {
    if fields.is_empty() {
        return pipeline;
    }
    let mut hidden = String::from("__pipeline");
    while fields.iter().any(|(name, _)| name == hidden.as_str()) {
        hidden.push('_');
    }
    let hidden = Ident::new(&hidden, Span::call_site());
    let names: Vec<&Ident> = fields.iter().map(|(name, _)| name).collect();
    let values = fields.iter().map(|(_, value)| value);
    let params: Vec<Ident> = (0..fields.len())
        .map(|i| Ident::new(&format!("__T{i}"), Span::call_site()))
        .collect();
    let ty = quote!(__NamedPipeline<#(#params),*>);
    quote! {
        {
            /// A pipeline with a reference to each of its named stages.
            #[derive(Debug)]
            #[allow(dead_code, non_snake_case, unreachable_pub)]
            struct __NamedPipeline<#(#params),*> {
                #( pub #names: #params, )*
                #hidden: #krate::Pipeline,
            }
            #[allow(dead_code, unreachable_pub)]
            impl<#(#params),*> #ty {
                /// Runs the pipeline: `Pipeline::run`.
                pub fn run(self) -> #krate::Run {
                    self.#hidden.run()
                }
                /// Starts the pipeline in the background: `Pipeline::start`.
                pub fn start(self) -> #krate::PipelineHandle {
                    self.#hidden.start()
                }
                /// The pipeline, without the references.
                pub fn into_pipeline(self) -> #krate::Pipeline {
                    self.#hidden
                }
            }
            impl<#(#params),*> ::core::ops::Deref for #ty {
                type Target = #krate::Pipeline;
                fn deref(&self) -> &#krate::Pipeline {
                    &self.#hidden
                }
            }
            impl<#(#params),*> ::core::ops::DerefMut for #ty {
                fn deref_mut(&mut self) -> &mut #krate::Pipeline {
                    &mut self.#hidden
                }
            }
            __NamedPipeline { #( #names: #values, )* #hidden: #pipeline }
        }
    }
}

/// `let __stageN = vec![instances…];`, evaluating the expression once per instance.
fn expand_node(graph: &Graph, index: usize, pipeline: &Ident) -> TokenStream {
    let krate = &graph.krate;
    let private = crate::private_path(krate);
    let node = &graph.nodes[index];
    let stage = local(&format!("__stage{index}"), Span::call_site());
    let instances = local("__instances", Span::call_site());
    let name = match &node.name {
        Some(_) => {
            let text = Literal::string(&node.run_name());
            quote!(#private::Some(#private::String::from(#text)))
        }
        None => quote!(#private::None),
    };
    let expr = node.stage.expr();
    let range = SpanRange::of(&quote!(#expr));
    // The value is bound first, so a local moved twice is a plain move error under the user's
    // tokens; `Stage::add_to` then reports a non-stage with `Stage`'s own message.
    let value = local("__value", range.first);
    let value_arg = call_at(quote!(#private::pipeline::identity), quote!(#value), range);
    // An expression that stands on its own is evaluated again to restart its stage: it is the
    // body of a closure, called once now for the value (so the expression's tokens are in the
    // expansion once, and its mistakes are reported once), and given to `Stage::add_with`.
    let rebuild = super::rebuild::stands_alone(expr);
    let build = local("__build", range.first);
    let add_call = if rebuild {
        call_at(
            quote!(Stage::add_rebuilt),
            quote!(#value_arg, #build, &mut #pipeline, #name),
            range,
        )
    } else {
        call_at(
            quote!(Stage::add_stage),
            quote!(#value_arg, &mut #pipeline, #name),
            range,
        )
    };
    // A trait local to the call, so that rustc's `help:` line for a non-stage reads "the trait
    // `Stage` is not implemented for `NotAStage`" without listing every stage of the crate.
    let add = quote! {
        {
            #[diagnostic::on_unimplemented(
                message = "`{Self}` is not a stage",
                label = "no `#[stage]` impl block and no `impl Stage`",
                note = "a stage in `pipeline!` implements `genstage::Stage`: add `#[stage(producer)]`, `#[stage(producer_consumer)]` or `#[stage(consumer)]` to its impl block; a type that implements `Producer`, `ProducerConsumer` or `Consumer` by hand implements `Stage` too (three lines: see its docs)"
            )]
            trait Stage: ::core::marker::Sized {
                type Ref;
                fn add_stage(
                    stage: Self,
                    pipeline: &mut #krate::Pipeline,
                    name: #private::Option<#private::String>,
                ) -> Self::Ref;
                fn add_rebuilt(
                    stage: Self,
                    build: impl ::core::ops::FnMut() -> Self + #private::stage::Send + 'static,
                    pipeline: &mut #krate::Pipeline,
                    name: #private::Option<#private::String>,
                ) -> Self::Ref;
            }
            #[diagnostic::do_not_recommend]
            impl<__S: #krate::Stage> Stage for __S {
                type Ref = <__S as #krate::Stage>::Ref;
                fn add_stage(
                    stage: Self,
                    pipeline: &mut #krate::Pipeline,
                    name: #private::Option<#private::String>,
                ) -> Self::Ref {
                    #krate::Stage::add_to(stage, pipeline, name)
                }
                // `stage` first, then what `build` makes at each restart.
                fn add_rebuilt(
                    stage: Self,
                    mut build: impl ::core::ops::FnMut() -> Self + #private::stage::Send + 'static,
                    pipeline: &mut #krate::Pipeline,
                    name: #private::Option<#private::String>,
                ) -> Self::Ref {
                    let mut first = #private::Some(stage);
                    #krate::Stage::add_with(
                        move || match first.take() {
                            #private::Some(stage) => stage,
                            #private::None => build(),
                        },
                        pipeline,
                        name,
                    )
                }
            }
            #add_call
        }
    };
    // What the node's checks see: its handle when the expression is a stage, a `RejectedRef`
    // otherwise (see `__private::checked`), so that an expression `add_stage` reports is not
    // reported again by the node's role check and edges. The method call covers the user's
    // tokens, as the `add_stage` call does: rustc reports a failed bound there once.
    let probe = local("__probe", range.first);
    let probe_let = quote! {
        #[allow(unused_imports)]
        use #private::checked::{CheckedStage as _, UncheckedStage as _};
        let #probe = #private::checked::stage_probe(&#value);
    };
    let add = {
        // `&` at the user's tokens; `__probe` keeps its hygiene (`local` places it there too).
        let mut borrow = respan(quote!(&), range.first);
        borrow.extend(quote!(#probe));
        let mut receiver = Group::new(Delimiter::Parenthesis, borrow);
        receiver.set_span(range.first);
        let mut args = Group::new(Delimiter::Parenthesis, add);
        args.set_span(range.last);
        let mut out = TokenStream::from(TokenTree::Group(receiver));
        out.extend(respan(quote!(.checked), range.last));
        out.extend([TokenTree::Group(args)]);
        out
    };
    let bind = if rebuild {
        quote_spanned! {range.first=>
            let #build = move || #expr;
            let #value = #build();
        }
    } else {
        quote_spanned! {range.first=> let #value = #expr; }
    };
    match &node.stage {
        // An array, so that a named stage's one reference can be taken out of it.
        StageSyntax::One(_) => quote! {
            let #stage = {
                #bind
                #probe_let
                [#add]
            };
        },
        StageSyntax::Group(group) => {
            let count_expr = &group.count;
            let count = local("__count", Span::call_site());
            let count_span = SpanRange::of(&quote!(#count_expr)).first;
            let count_let = quote_spanned! {count_span=>
                let #count: ::core::primitive::usize = #count_expr;
            };
            let label = Literal::string(&node.run_name());
            // A constant count is checked at compile time (a literal was checked by the macro);
            // any other count by `run()`.
            let const_check = is_constant(count_expr).then(|| {
                let message = Literal::string(super::validate::EMPTY_GROUP);
                quote_spanned! {count_span=>
                    const _: () = ::core::assert!(#count_expr != 0, #message);
                }
            });
            quote! {
                let #stage = {
                    #const_check
                    #count_let
                    if #count == 0 {
                        #private::pipeline::empty_group(&mut #pipeline, #label);
                    }
                    let mut #instances = #private::Vec::with_capacity(#count);
                    for _ in 0..#count {
                        #bind
                        #probe_let
                        #instances.push(#add);
                    }
                    #private::pipeline::group(&mut #pipeline, &#instances);
                    #instances
                };
            }
        }
    }
}

/// Whether a group's count names a constant: a path whose last segment is in upper case
/// (`WORKERS`, `config::WORKERS`), as Rust's naming conventions have it. Such a count is checked
/// by a `const` assertion, which cannot see the generic parameters of the function around the
/// pipeline: a const generic parameter `N` is written `{ N }` to be checked by `run()` instead.
fn is_constant(count: &syn::Expr) -> bool {
    let syn::Expr::Path(path) = count else {
        return false;
    };
    if path.qself.is_some() || !path.attrs.is_empty() {
        return false;
    }
    let segments = &path.path.segments;
    let Some(last) = segments.last() else {
        return false;
    };
    let first_is_self = segments.first().is_some_and(|s| s.ident == "Self");
    let name = last.ident.to_string();
    !first_is_self
        && segments.iter().all(|s| s.arguments.is_none())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The name of a count that names a constant ([`is_constant`]), as written: `WORKERS`,
/// `config::WORKERS`.
fn constant_name(count: &syn::Expr) -> Option<String> {
    let syn::Expr::Path(path) = count else {
        return None;
    };
    is_constant(count).then(|| {
        let segments = path.path.segments.iter().map(|s| s.ident.to_string());
        let name = segments.collect::<Vec<_>>().join("::");
        match path.path.leading_colon {
            Some(_) => format!("::{name}"),
            None => name,
        }
    })
}

/// What a node's position allows, checked against its role.
fn expand_node_checks(graph: &Graph, index: usize) -> TokenStream {
    let node = &graph.nodes[index];
    let label = escape(&node.label());
    let as_source = graph.edges.iter().find(|e| e.from == index);
    let as_target = graph.edges.iter().find(|e| e.to == index);
    let mut out = TokenStream::new();
    let krate = &graph.krate;
    let private = crate::private_path(krate);
    let (producer, producer_consumer, consumer) = (
        quote!(<__S: #krate::Producer> ProducerRef<__S>),
        quote!(<__S: #krate::ProducerConsumer> ProducerConsumerRef<__S>),
        quote!(<__S: #krate::Consumer> ConsumerRef<__S>),
    );
    if let Some(edge) = as_source {
        out.extend(node_check(
            graph,
            index,
            "Source",
            &format!("`{label}` is a consumer, so it cannot stand before `->`: it emits no events"),
            "a consumer emits no events",
            "only a producer or a producer_consumer can feed other stages",
            &[&producer, &producer_consumer],
            SpanRange::of(&edge.source),
        ));
        if as_target.is_none() {
            out.extend(node_check(
                graph,
                index,
                "Start",
                &format!(
                    "`{label}` is a producer_consumer, so it cannot start the pipeline: nothing would feed it"
                ),
                "nothing feeds this producer_consumer",
                &format!("a pipeline starts with a producer: put one before `{label}` with `->`"),
                &[&producer, &consumer],
                SpanRange::of(&edge.source),
            ));
        }
    }
    if let (None, None, Some(name)) = (as_source, as_target, &node.name) {
        // A definition that no chain uses: only a producer that waits for consumers may be one.
        let waits = quote!(<__S: #krate::Producer + #private::pipeline::Waits> ProducerRef<__S>);
        out.extend(node_check(
            graph,
            index,
            "Wired",
            &format!("the stage `{label}` is never wired: use `{label}` in a chain, before or after `->`"),
            "never wired",
            "only a producer whose `#[stage]` says `without_consumers = wait` may stand alone (one \
             written by hand is added alone through the builder): its consumers subscribe through \
             the running pipeline's handle",
            &[&waits],
            SpanRange::of(&quote!(#name)),
        ));
    }
    if let Some(edge) = as_target {
        out.extend(node_check(
            graph,
            index,
            "Sink",
            &format!("`{label}` is a producer, so it cannot stand after `->`: it takes no events"),
            "a producer takes no events",
            "only a producer_consumer or a consumer can subscribe to other stages",
            &[&producer_consumer, &consumer],
            SpanRange::of(&edge.target),
        ));
        if as_source.is_none() {
            // One that waits for consumers may end a chain: they subscribe through the handle.
            let waits = quote!(<__S: #krate::ProducerConsumer + #private::pipeline::Waits> ProducerConsumerRef<__S>);
            out.extend(node_check(
                graph,
                index,
                "End",
                &format!(
                    "`{label}` is a producer_consumer, so it cannot end the pipeline: its events would go nowhere"
                ),
                "nothing consumes the events of this producer_consumer",
                &format!(
                    "a pipeline ends with a consumer: put one after `{label}` with `->` (a \
                     producer_consumer whose `#[stage]` says `without_consumers = wait` may end a \
                     chain, its consumers subscribed through the running pipeline's handle)"
                ),
                &[&producer, &consumer, &waits],
                SpanRange::of(&edge.target),
            ));
        }
    }
    out
}

/// One node check: a trait implemented for the stage handles allowed there, called on the node's
/// handles. rustc's `help:` line then reads "the trait `Source` is not implemented for
/// `genstage::ConsumerRef<u64>`": the trait is local to the check, named after what it checks,
/// and the handle is the public type the builder returns.
#[allow(clippy::too_many_arguments)]
fn node_check(
    graph: &Graph,
    index: usize,
    trait_name: &str,
    message: &str,
    label: &str,
    note: &str,
    allowed: &[&TokenStream], // `<generics> Handle<…>`
    range: SpanRange,
) -> TokenStream {
    let krate = &graph.krate;
    let private = crate::private_path(krate);
    let name = Ident::new(trait_name, Span::call_site());
    let stage = local(&format!("__stage{index}"), range.first);
    let instances = call_at(quote!(#private::pipeline::identity), quote!(&#stage), range);
    let check = call_at(quote!(#name::check), instances, range);
    let impls = allowed.iter().map(|handle| {
        let mut tokens = (*handle).clone().into_iter();
        let generics: TokenStream = tokens
            .by_ref()
            .take_while(|t| !matches!(t, TokenTree::Punct(p) if p.as_char() == '>'))
            .collect();
        let ty: TokenStream = tokens.collect();
        quote!(impl #generics> #name for #krate::#ty {})
    });
    quote! {
        {
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            trait #name {
                fn check(_: &[Self])
                where
                    Self: ::core::marker::Sized,
                {
                }
            }
            #(
                #[diagnostic::do_not_recommend]
                #impls
            )*
            // A stage whose `#[stage]` was rejected: its one error is there already.
            #[diagnostic::do_not_recommend]
            impl<__R> #name for #private::fallback::RejectedRef<__R> {}
            #check;
        }
    }
}

/// An edge's literal demand limit, when it sets only one, is checked against the other that its
/// consumer's `#[stage]` knows, by a `const` assertion spanned at the literal, so that `cargo
/// check` reports it in `#[stage]`'s words: a `min_demand` against the consumer's `max_demand`
/// (`Stage::__MAX_DEMAND`, GenStage's default when the attribute sets none), a `max_demand`
/// against the `min_demand` its attribute sets (`Stage::__MIN_DEMAND`).
///
/// The `const` item reads the limits from the type of the consumer's expression, so this is done
/// only when the consumer is one identifier in upper camel case (a unit struct `Printer`, an enum's
/// unit variant brought into scope, a constant so named), a value with no type parameters to
/// infer; a constant in upper case (`PRINTER`) is checked by `run()`. Struct
/// literals (whose type may be generic, its parameters inferred), constructor calls, paths
/// (`stages::Printer`, which may be an enum variant), local variables and the other forms are
/// checked by `run()` instead.
fn demand_check(graph: &Graph, consumer: usize, settings: &EdgeSettings) -> Option<TokenStream> {
    let krate = &graph.krate;
    let private = crate::private_path(krate);
    let message = quote!(#private::pipeline::DemandMessage);
    // The limit the edge sets, and whether it is its `min_demand`.
    let (limit, is_min) = match (&settings.min_demand, &settings.max_demand) {
        (Some(min), None) => (min, true),
        (None, Some(max)) => (max, false),
        _ => return None,
    };
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Int(int),
        ..
    }) = limit
    else {
        return None;
    };
    let value: usize = int.base10_parse().ok()?;
    let path = match graph.nodes[consumer].stage.expr() {
        syn::Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => &path.path,
        _ => return None,
    };
    let ident = path.get_ident()?;
    let name = ident.to_string();
    let camel = name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.contains('_')
        && name != "Self";
    if !camel {
        return None;
    }
    let span = int.span();
    let value = Literal::usize_unsuffixed(value);
    // The stage by value, not as a type: `Printer` may be an enum's unit variant brought into
    // scope, or a constant. Chosen as the node's handle is (`__private::checked`), so that a
    // unit struct that is not a stage is reported once, by its node. The closure is never called.
    let probe = quote_spanned! {span=>
        || {
            #[allow(unused_imports)]
            use #private::checked::{CheckedStage as _, UncheckedStage as _};
            (&#private::checked::stage_probe(&#ident)).known_demand()
        }
    };
    Some(if is_min {
        quote_spanned! {span=>
            const _: () = if let #private::Some((__max, __default)) =
                #private::checked::max_demand_of(#probe)
            {
                if #value >= __max {
                    ::core::panic!("{}", #message::min_demand(#value, __max, __default).as_str())
                }
            };
        }
    } else {
        quote_spanned! {span=>
            const _: () = if let #private::Some(__min) = #private::checked::min_demand_of(#probe) {
                if __min >= #value {
                    ::core::panic!("{}", #message::max_demand(#value, __min).as_str())
                }
            };
        }
    })
}

/// A selector written as a closure, made `move`: it is kept for the whole run (`'static`), so a
/// closure that borrowed a local could never be one, and rustc's error for it speaks of lifetimes,
/// not of `move`. Any other expression is left as written.
fn moved(selector: &syn::Expr) -> syn::Expr {
    match selector {
        syn::Expr::Closure(closure) if closure.capture.is_none() => {
            let mut closure = closure.clone();
            closure.capture = Some(syn::Token![move](closure.or1_token.span));
            syn::Expr::Closure(closure)
        }
        other => other.clone(),
    }
}

/// How many of the producers feeding a stage the note of a mismatched event type names.
const FED_BY_NAMES: usize = 8;

/// One edge: its event-type check, which also subscribes every consumer instance to every producer
/// instance.
///
/// The check is a trait `Sink<Out>` local to the edge, implemented for the consumer handles that
/// take `Out` and, for any handle, for the `Skipped` parameter (genstage-runtime's
/// `src/__private/pipeline.rs`) of an edge with a side in the wrong role (its node check reported
/// it). The trait's parameter is fixed by an argument's type before rustc looks at the impls, so a
/// mismatch is reported as `ConsumerRef<String>: Sink<u64>` with this edge's message, never as a
/// type mismatch of the argument.
///
/// `fed_by`: the producers feeding the edge's consumer (`Graph::producers`).
fn expand_edge(
    graph: &Graph,
    index: usize,
    settings: &EdgeSettings,
    fed_by: &[usize],
    pipeline: &Ident,
) -> TokenStream {
    let krate = &graph.krate;
    let hidden = crate::private_path(krate);
    let private = quote!(#hidden::pipeline);
    let edge = &graph.edges[index];
    let from = escape(&graph.nodes[edge.from].label());
    let to = escape(&graph.nodes[edge.to].label());
    let message = format!(
        "`{to}` cannot be wired after `{from}`: it consumes `{{In}}` but `{from}` emits `{{Out}}`"
    );
    let label = "expects `{In}`, not `{Out}`";
    let note = if fed_by.len() > 1 {
        // Every edge into the stage carries the note: with all the names in it, the expansion
        // of a fan-in would grow with the square of its size.
        let names: Vec<String> = fed_by
            .iter()
            .take(FED_BY_NAMES)
            .map(|&p| format!("`{}`", escape(&graph.nodes[p].label())))
            .collect();
        let more = fed_by.len() - names.len();
        let list = match names.split_last() {
            _ if more > 0 => format!("{}, and {more} more", names.join(", ")),
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        };
        let note = format!("`{to}` is fed by {list}: each of them must emit `{{In}}`");
        quote!(, note = #note)
    } else {
        TokenStream::new()
    };

    let range = SpanRange::of(&edge.target);
    let producer_stage = local(&format!("__stage{}", edge.from), Span::call_site());
    let consumer_stage = local(&format!("__stage{}", edge.to), Span::call_site());
    let producer = local("__producer", range.first);
    let consumer = local("__consumer", range.first);
    let options = local("__options", range.first);
    let pipeline_at = local(&pipeline.to_string(), range.first);

    // A typed `let` at the user's value: a value of another type is reported right there.
    let demand = |value: Option<&syn::Expr>| match value {
        Some(value) => {
            let span = SpanRange::of(&quote!(#value)).first;
            let local = local("__demand", span);
            quote_spanned! {span=>
                {
                    let #local: ::core::primitive::usize = #value;
                    #hidden::Some(#local)
                }
            }
        }
        None => quote!(#hidden::None),
    };
    let max_demand = demand(settings.max_demand.as_ref());
    let min_demand = demand(settings.min_demand.as_ref());
    let partition = demand(settings.partition.as_ref().map(|p| &p.value));
    let cancel = match &settings.cancel {
        Some(mode) => quote!(#hidden::Some(#private::#mode)),
        None => quote!(#hidden::None),
    };

    // A selector is evaluated once per edge, typed by the producer's events (so that a closure
    // needs no annotation; by the consumer's when the producer emits none: its own check reports
    // it), and shared by the edge's subscriptions.
    let selector = local("__selector", range.first);
    let selector_let = settings.selector.as_ref().map(|option| {
        let value = &moved(&option.value);
        let span = SpanRange::of(&quote!(#value));
        // `selector(…)` returns a function of the `Selector` type: the closure is coerced to it
        // at the call (see `__private::pipeline::selector`).
        let typed = call_at(
            quote!(#private::selector),
            quote!(&#producer_stage, &#consumer_stage),
            span,
        );
        let arc = call_at(quote!(::std::sync::Arc::new), quote!(#value), span);
        quote!(let #selector = (#typed)(#arc);)
    });
    let events = match &selector_let {
        Some(_) => call_at(
            quote!(#private::events_selected),
            quote!(#producer, #consumer, &#selector),
            range,
        ),
        None => call_at(quote!(#private::events_of), quote!(#producer), range),
    };
    // Instance `i` of a group takes partition `i` of a partitioned producer, when the edge names
    // no partition itself (`run()` reports a group whose size differs).
    let to_group = matches!(graph.nodes[edge.to].stage, StageSyntax::Group(_));
    let instance = local("__instance", range.first);
    let (consumers, instance_options) = if to_group && settings.partition.is_none() {
        (
            quote!((#instance, #consumer) in ::core::iter::Iterator::enumerate(#consumer_stage.iter())),
            Some(quote! {
                let #options = #private::instance_options(&#pipeline_at, #producer, #options, #instance);
            }),
        )
    } else {
        (quote!(#consumer in &#consumer_stage), None)
    };
    let side = call_at(
        quote!(#private::consumer_side),
        quote!(#producer, #consumer),
        range,
    );
    let accepted = call_at(quote!(#private::events_into), quote!(#consumer), range);
    let wire = call_at(
        quote!(Sink::wire),
        quote!(#events, #accepted, #side, &mut #pipeline_at, #options),
        range,
    );
    let signature = |out: TokenStream, accepts: TokenStream| {
        quote! {
            fn wire(
                events: #private::Events<#out>,
                accepted: ::core::marker::PhantomData<#accepts>,
                consumer: &Self,
                pipeline: &mut #krate::Pipeline,
                options: #krate::SubscribeOptions,
            )
        }
    };
    let trait_signature = signature(quote!(Out), quote!(In));
    let consumer_signature = signature(quote!(__O), quote!(__In));
    let skipped_signature = signature(quote!(__T), quote!(__In));
    let demand_check = demand_check(graph, edge.to, settings);
    // The options are evaluated outside the block that defines the check, so that the user's
    // expressions cannot see its local names. The events come first in `wire`, so that rustc
    // knows the trait's parameter before it looks at the impls.
    quote! {
        {
            #demand_check
            let #options = #private::edge_options(#max_demand, #min_demand, #cancel, #partition);
            #selector_let
            {
                #[diagnostic::on_unimplemented(message = #message, label = #label #note)]
                trait Sink<Out, In> {
                    #trait_signature;
                }
                #[diagnostic::do_not_recommend]
                impl<__O, __In, __S> Sink<__O, __In> for #krate::ConsumerRef<__S>
                where
                    __S: #krate::Consumer,
                    __O: #private::SameEvents<<__S as #krate::Consumer>::Input>,
                {
                    #consumer_signature {
                        let _ = accepted;
                        #private::subscribe(pipeline, #private::SameEvents::cast(events), consumer, options)
                    }
                }
                #[diagnostic::do_not_recommend]
                impl<__O, __In, __S> Sink<__O, __In> for #krate::ProducerConsumerRef<__S>
                where
                    __S: #krate::ProducerConsumer,
                    __O: #private::SameEvents<<__S as #krate::ProducerConsumer>::Input>,
                {
                    #consumer_signature {
                        let _ = accepted;
                        #private::subscribe(pipeline, #private::SameEvents::cast(events), consumer, options)
                    }
                }
                // A side in the wrong role was reported by its node check: skip the edge.
                #[diagnostic::do_not_recommend]
                impl<__T, __In> Sink<__T, __In> for #private::Skipped {
                    #skipped_signature {
                        let _ = (events, accepted, consumer, pipeline, options);
                    }
                }
                for #producer in &#producer_stage {
                    for #consumers {
                        #instance_options
                        #wire;
                    }
                }
            }
        }
    }
}

/// The checks of an edge against its producer's dispatcher, as far as `#[stage]` declared it (a
/// stage written by hand passes them all, and `run()` checks the wiring): a `selector` needs a
/// stage that broadcasts; a `partition = i` needs a partitioned stage, and a literal `i` one of its
/// partitions; a partitioned stage feeds a single consumer through `partition = i` only, and a
/// group of a literal size only when it has one instance per partition.
///
/// Each check is a trait local to the edge, with the edge's stages named in its message,
/// implemented for `Unchecked` and, where the check can pass for a partitioned stage, for the
/// stage handles. It is called on the check's subject, which `genstage-runtime`'s
/// `src/__private/dispatch.rs` gives from the producer's dispatcher kind: the producer's handle
/// when the check applies, `Unchecked` when it does not. The number of partitions comes first, so
/// that rustc prints it in the message.
fn dispatch_checks(graph: &Graph, index: usize, settings: &EdgeSettings) -> TokenStream {
    let krate = &graph.krate;
    let hidden = crate::private_path(krate);
    let dispatch = quote!(#hidden::dispatch);
    let edge = &graph.edges[index];
    let from = escape(&graph.nodes[edge.from].label());
    let to = escape(&graph.nodes[edge.to].label());
    let producer_stage = local(&format!("__stage{}", edge.from), Span::call_site());
    let kind = local("__kind", Span::call_site());
    let phantom = quote!(::core::marker::PhantomData);
    let unchecked = quote!(#dispatch::Unchecked);
    // The arguments are spanned at the user's tokens too: rustc points at the argument that
    // gives the check its `Self`.
    let count = |range: SpanRange| call_at(quote!(#dispatch::count), quote!(&#kind), range);
    let subject = |which: &str, range: SpanRange| {
        let which = Ident::new(which, Span::call_site());
        call_at(
            quote!(#dispatch::#which),
            quote!(&#kind, &#producer_stage),
            range,
        )
    };
    // `impl<__S: …> Trait<N> for ProducerRef<__S> {}` and for `ProducerConsumerRef<__S>`.
    let handle_impls = |check: &TokenStream, bound: &TokenStream, condition: &TokenStream| {
        let generics = quote!(__S, const __N: ::core::primitive::usize);
        quote! {
            #[diagnostic::do_not_recommend]
            impl<#generics> #check for #krate::ProducerRef<__S>
            where
                __S: #krate::Producer #bound,
                #condition
            {}
            #[diagnostic::do_not_recommend]
            impl<#generics> #check for #krate::ProducerConsumerRef<__S>
            where
                __S: #krate::ProducerConsumer #bound,
                #condition
            {}
        }
    };
    let mut checks = TokenStream::new();

    if let Some(selector) = &settings.selector {
        let message =
            format!("`{from}` does not broadcast, so the edge to `{to}` cannot take a `selector`");
        let note = format!(
            "a selector picks, for one consumer, among the events of a stage that sends every event to every consumer: give `{from}` `dispatcher = broadcast` in its `#[stage]`, or filter the events in `{to}`"
        );
        let range = SpanRange::of(&selector.tokens);
        let call = call_at(quote!(Selector::check), subject("selects", range), range);
        checks.extend(quote! {
            {
                #[diagnostic::on_unimplemented(
                    message = #message,
                    label = "a selector needs a stage that broadcasts",
                    note = #note
                )]
                trait Selector {
                    fn check(_: #phantom<Self>) {}
                }
                #[diagnostic::do_not_recommend]
                impl Selector for #unchecked {}
                #call;
            }
        });
    }

    if let Some(partition) = &settings.partition {
        let range = SpanRange::of(&partition.tokens);
        let message =
            format!("`{from}` is not partitioned, so the edge to `{to}` cannot take a `partition`");
        let label = format!("`{from}` has no partitions");
        let note = "a partitioned stage has `dispatcher = partition(n)` in its `#[stage]`, and a `partition` method that gives each event's partition";
        let call = call_at(
            quote!(Partitioned::check),
            subject("partitioned", range),
            range,
        );
        checks.extend(quote! {
            {
                #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
                trait Partitioned {
                    fn check(_: #phantom<Self>) {}
                }
                #[diagnostic::do_not_recommend]
                impl Partitioned for #unchecked {}
                #call;
            }
        });
        if let Some(literal) = partition.literal {
            let message = format!(
                "`{from}` has {{N}} partitions, numbered from 0, so it has no partition {literal}"
            );
            let label = "the partition must be below {N}";
            let index = Literal::usize_unsuffixed(literal);
            let impls = handle_impls(
                &quote!(PartitionIndex<__N>),
                &quote!(+ #dispatch::HasPartition<#index>),
                &TokenStream::new(),
            );
            let args = [count(range), subject("partitions", range)];
            let call = call_at(quote!(PartitionIndex::check), quote!(#(#args),*), range);
            checks.extend(quote! {
                {
                    #[diagnostic::on_unimplemented(message = #message, label = #label)]
                    trait PartitionIndex<const N: ::core::primitive::usize> {
                        fn check(_: #phantom<#dispatch::Count<N>>, _: #phantom<Self>) {}
                    }
                    #[diagnostic::do_not_recommend]
                    impl<const __N: ::core::primitive::usize> PartitionIndex<__N> for #unchecked {}
                    #impls
                    #call;
                }
            });
        }
    } else if settings.selector.is_none() {
        // (A selector on an edge from a partitioned stage is reported as such, above.)
        match &graph.nodes[edge.to].stage {
            StageSyntax::One(_) => {
                let message = format!(
                    "`{from}` sends each event to one of its {{N}} partitions, so `{to}` must take one of them"
                );
                let label = format!("takes no partition of `{from}`");
                let note = format!(
                    "write `-[partition = i]->` with `i` below {{N}} to give `{to}` partition `i`, or wire `{from}` to a group of {{N}}, `[…; {{N}}]`, one instance per partition"
                );
                let link = &edge.link.tokens;
                let target = &edge.target;
                let range = SpanRange::of(&quote!(#link #target));
                let args = [count(range), subject("partitions", range)];
                let call = call_at(quote!(OnePartition::check), quote!(#(#args),*), range);
                checks.extend(quote! {
                    {
                        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
                        trait OnePartition<const N: ::core::primitive::usize> {
                            fn check(_: #phantom<#dispatch::Count<N>>, _: #phantom<Self>) {}
                        }
                        #[diagnostic::do_not_recommend]
                        impl<const __N: ::core::primitive::usize> OnePartition<__N> for #unchecked {}
                        #call;
                    }
                });
            }
            StageSyntax::Group(group) => {
                // A group of a literal or constant size (see `is_constant`); any other size is
                // checked by `run()`.
                let instances = &group.count;
                let size = match super::validate::literal_usize(instances) {
                    Ok(Some(size)) => {
                        let literal = Literal::usize_unsuffixed(size);
                        Some((size.to_string(), quote!(#literal)))
                    }
                    _ => constant_name(instances).map(|name| {
                        (
                            format!("`{name}`"),
                            quote!({ #instances as ::core::primitive::usize }),
                        )
                    }),
                };
                if let Some((shown, size)) = size {
                    let message = format!(
                        "`{from}` has {{N}} partitions, so the group after it has {{N}} instances, one per partition, not {shown}"
                    );
                    let label = format!("{shown} instances for {{N}} partitions");
                    // The handles fit a group of `size` through a trait of their own, and `Group`
                    // has one blanket impl over it: an impl of `Group` for the handle itself
                    // would be shown by rustc as a "similar impl", `Group<size>`, under a message
                    // that gives the number of partitions (`do_not_recommend` does not hide an
                    // impl for the same type with other arguments).
                    let impls = handle_impls(
                        &quote!(__GroupFits<__N>),
                        &TokenStream::new(),
                        &quote!(#dispatch::Count<__N>: #dispatch::Is<#size>,),
                    );
                    let range = SpanRange::of(&edge.target);
                    let args = [count(range), subject("partitions", range)];
                    let call = call_at(quote!(Group::check), quote!(#(#args),*), range);
                    checks.extend(quote! {
                        {
                            #[diagnostic::on_unimplemented(message = #message, label = #label)]
                            trait Group<const N: ::core::primitive::usize> {
                                fn check(_: #phantom<#dispatch::Count<N>>, _: #phantom<Self>) {}
                            }
                            trait __GroupFits<const N: ::core::primitive::usize> {}
                            impl<const __N: ::core::primitive::usize> __GroupFits<__N> for #unchecked {}
                            #impls
                            #[diagnostic::do_not_recommend]
                            impl<__H: __GroupFits<__N>, const __N: ::core::primitive::usize> Group<__N> for __H {}
                            #call;
                        }
                    });
                }
            }
        }
    }

    if checks.is_empty() {
        return checks;
    }
    quote! {
        {
            #[allow(unused_imports)]
            use #dispatch::{ProbeKnown as _, ProbeUnknown as _};
            let #kind = (&#dispatch::probe(&#producer_stage)).dispatch_kind();
            #checks
        }
    }
}
