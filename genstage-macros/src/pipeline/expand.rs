//! Code generation: the typed builder calls, and one small check per node and per edge.
//!
//! The macro cannot see a stage's type, so it leaves role and event-type checks to rustc. Each
//! check is a trait generated inside the expansion, whose `#[diagnostic::on_unimplemented]` message
//! names the stages in the user's words, implemented only for what is allowed there, and called
//! with tokens spanned at the user's stage, so rustc's error is one sentence under that stage:
//!
//! - per node, from the arrows around it: `__CanFeed` (it stands before `->`: not a consumer),
//!   `__CanBeFed` (it stands after `->`: not a producer), `__CanStart` (nothing feeds it: not a
//!   producer_consumer), `__CanEnd` (it feeds nothing: not a producer_consumer). A stage of any role
//!   fails at most one of them.
//! - per edge, `__CanWire<Out, In>`: the producer's `Out` is the consumer's `In`. Its method does
//!   the subscribing, so a failed check leaves no second error in the builder call; an edge whose
//!   side already failed its node check is implemented (and skipped) instead of reported again.

use proc_macro2::{Delimiter, Group, Ident, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};

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
    for (index, edge_settings) in settings.iter().enumerate() {
        body.extend(expand_edge(graph, index, edge_settings, &pipeline));
    }

    quote! {
        {
            let mut #pipeline = #krate::Pipeline::new();
            #body
            #pipeline
        }
    }
}

/// `let __stageN = vec![instances…];`, evaluating the expression once per instance.
fn expand_node(graph: &Graph, index: usize, pipeline: &Ident) -> TokenStream {
    let krate = &graph.krate;
    let node = &graph.nodes[index];
    let stage = local(&format!("__stage{index}"), Span::call_site());
    let instances = local("__instances", Span::call_site());
    let name = match &node.name {
        Some(name) => {
            let text = Literal::string(&name.to_string());
            quote!(#krate::__private::Some(#text))
        }
        None => quote!(#krate::__private::None),
    };
    let expr = node.stage.expr();
    let range = SpanRange::of(&quote!(#expr));
    let add = call_at(
        quote!(#krate::__private::pipeline::AddStage::add_stage),
        quote!(#expr, &mut #pipeline, #name),
        range,
    );
    match &node.stage {
        StageSyntax::One(_) => quote! {
            let #stage = {
                let mut #instances = #krate::__private::Vec::with_capacity(1);
                #instances.push(#add);
                #instances
            };
        },
        StageSyntax::Group(group) => {
            let count_expr = &group.count;
            let count = local("__count", Span::call_site());
            let count_span = SpanRange::of(&quote!(#count_expr)).first;
            let count_let = quote_spanned! {count_span=>
                let #count: ::core::primitive::usize = #count_expr;
            };
            quote! {
                let #stage = {
                    #count_let
                    let mut #instances = #krate::__private::Vec::with_capacity(#count);
                    for _ in 0..#count {
                        #instances.push(#add);
                    }
                    #krate::__private::pipeline::group(&mut #pipeline, &#instances);
                    #instances
                };
            }
        }
    }
}

/// What a node's position allows, checked against its role.
fn expand_node_checks(graph: &Graph, index: usize) -> TokenStream {
    let krate = &graph.krate;
    let node = &graph.nodes[index];
    let label = escape(&node.label());
    let as_source = graph.edges.iter().find(|e| e.from == index);
    let as_target = graph.edges.iter().find(|e| e.to == index);
    let mut out = TokenStream::new();
    let role = |name: &str| -> TokenStream {
        let ident = format_ident!("{}", name);
        quote!(#krate::__private::pipeline::#ident)
    };
    if let Some(edge) = as_source {
        out.extend(node_check(
            graph,
            index,
            &format!("__CanFeed{index}"),
            &format!("`{label}` is a consumer, so it cannot stand before `->`: it emits no events"),
            "a consumer emits no events",
            "only a producer or a producer_consumer can feed other stages",
            &[role("IsProducer"), role("IsProducerConsumer")],
            SpanRange::of(&edge.source),
        ));
        if as_target.is_none() {
            out.extend(node_check(
                graph,
                index,
                &format!("__CanStart{index}"),
                &format!(
                    "`{label}` is a producer_consumer, so it cannot start the pipeline: nothing would feed it"
                ),
                "nothing feeds this producer_consumer",
                &format!("a pipeline starts with a producer: put one before `{label}` with `->`"),
                &[role("IsProducer"), role("IsConsumer")],
                SpanRange::of(&edge.source),
            ));
        }
    }
    if let Some(edge) = as_target {
        out.extend(node_check(
            graph,
            index,
            &format!("__CanBeFed{index}"),
            &format!("`{label}` is a producer, so it cannot stand after `->`: it takes no events"),
            "a producer takes no events",
            "only a producer_consumer or a consumer can subscribe to other stages",
            &[role("IsProducerConsumer"), role("IsConsumer")],
            SpanRange::of(&edge.target),
        ));
        if as_source.is_none() {
            out.extend(node_check(
                graph,
                index,
                &format!("__CanEnd{index}"),
                &format!(
                    "`{label}` is a producer_consumer, so it cannot end the pipeline: its events would go nowhere"
                ),
                "nothing consumes the events of this producer_consumer",
                &format!("a pipeline ends with a consumer: put one after `{label}` with `->`"),
                &[role("IsProducer"), role("IsConsumer")],
                SpanRange::of(&edge.target),
            ));
        }
    }
    out
}

/// One node check: a trait implemented for the allowed roles, called on the node's role.
#[allow(clippy::too_many_arguments)]
fn node_check(
    graph: &Graph,
    index: usize,
    trait_name: &str,
    message: &str,
    label: &str,
    note: &str,
    allowed: &[TokenStream],
    range: SpanRange,
) -> TokenStream {
    let krate = &graph.krate;
    let name = Ident::new(trait_name, Span::call_site());
    let stage = local(&format!("__stage{index}"), range.first);
    let role_of = call_at(
        quote!(#krate::__private::pipeline::role),
        quote!(&#stage),
        range,
    );
    let check = call_at(quote!(#name::check), role_of, range);
    quote! {
        {
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            trait #name {
                fn check(self)
                where
                    Self: ::core::marker::Sized,
                {
                }
            }
            #(
                #[diagnostic::do_not_recommend]
                impl #name for #krate::__private::pipeline::StageRole<#allowed> {}
            )*
            // A stage whose `#[stage]` was rejected and named no role: reported there already.
            #[diagnostic::do_not_recommend]
            impl #name for #krate::__private::pipeline::StageRole<#krate::__private::fallback::AnyRole> {}
            #check;
        }
    }
}

/// One edge: its event-type check, which also subscribes every consumer instance to every producer
/// instance.
fn expand_edge(
    graph: &Graph,
    index: usize,
    settings: &EdgeSettings,
    pipeline: &Ident,
) -> TokenStream {
    let krate = &graph.krate;
    let private = quote!(#krate::__private::pipeline);
    let edge = &graph.edges[index];
    let from = escape(&graph.nodes[edge.from].label());
    let to = escape(&graph.nodes[edge.to].label());
    let message = format!(
        "`{to}` cannot be wired after `{from}`: it consumes `{{In}}` but `{from}` emits `{{Out}}`"
    );
    let label = "expects `{In}`, not `{Out}`";
    let producers = graph.producers_of(edge.to);
    let note = if producers.len() > 1 {
        let names: Vec<String> = producers
            .iter()
            .map(|&p| format!("`{}`", escape(&graph.nodes[p].label())))
            .collect();
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        };
        let note = format!("`{to}` is fed by {list}: each of them must emit `{{In}}`");
        quote!(, note = #note)
    } else {
        TokenStream::new()
    };

    let range = SpanRange::of(&edge.target);
    let name = format_ident!("__CanWire{}", index);
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
                    #krate::__private::Some(#local)
                }
            }
        }
        None => quote!(#krate::__private::None),
    };
    let max_demand = demand(settings.max_demand.as_ref());
    let min_demand = demand(settings.min_demand.as_ref());
    let cancel = match &settings.cancel {
        Some(mode) => quote!(#krate::__private::Some(#private::#mode)),
        None => quote!(#krate::__private::None),
    };

    let pair = call_at(quote!(#private::pair), quote!(#producer, #consumer), range);
    let wire = call_at(
        quote!(#name::wire),
        quote!(#pair, &mut #pipeline_at, #producer, #consumer, #options),
        range,
    );
    let signature = quote! {
        fn wire<__A, __B>(
            self,
            pipeline: &mut #krate::Pipeline,
            producer: &__A,
            consumer: &__B,
            options: #krate::SubscribeOptions,
        )
        where
            __A: #private::Wiring<Out = Out>,
            __B: #private::Wiring<In = In>
    };
    quote! {
        {
            #[diagnostic::on_unimplemented(message = #message, label = #label #note)]
            trait #name<Out, In> {
                #signature;
            }
            #[diagnostic::do_not_recommend]
            impl<Out, In> #name<Out, In> for #private::Pair<#private::Yes, Out, In>
            where
                (): #private::SameEvents<Out, In>,
            {
                #signature {
                    <() as #private::SameEvents<Out, In>>::subscribe(pipeline, producer, consumer, options)
                }
            }
            // A side in the wrong role was reported by its node check: skip the edge.
            #[diagnostic::do_not_recommend]
            impl<Out, In> #name<Out, In> for #private::Pair<#private::No, Out, In> {
                #signature {
                    let _ = (pipeline, producer, consumer, options);
                }
            }
            let #options = #private::edge_options(#max_demand, #min_demand, #cancel);
            for #producer in &#producer_stage {
                for #consumer in &#consumer_stage {
                    #wire;
                }
            }
        }
    }
}
