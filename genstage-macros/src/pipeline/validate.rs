//! Rules that look at more than one node: every stage wired, each pair wired once, no cycle, group
//! sizes and edge options that make sense. Roles and event types are left to rustc (see
//! `expand.rs`): the macro cannot see a stage's type.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ExprLit, Ident, Lit};

use super::graph::Graph;
use super::parse::{EdgeOptions, StageSyntax};
use crate::errors::Errors;
use crate::options::{
    self, list, MaxDemand, CANCEL, CANCEL_MODES, EDGE_OPTIONS, MAX_DEMAND, MIN_DEMAND, PARTITION,
    SELECTOR,
};

/// The options one edge sets, checked.
#[derive(Default)]
pub(crate) struct EdgeSettings {
    pub(crate) max_demand: Option<Expr>,
    pub(crate) min_demand: Option<Expr>,
    /// `Permanent`, `Transient` or `Temporary`, spanned at the user's value.
    pub(crate) cancel: Option<Ident>,
    /// `partition = i`: the partition of a partitioned producer this edge takes.
    pub(crate) partition: Option<EdgeValue>,
    /// `selector = |event: &T| …`: the events of a broadcasting producer this edge takes.
    pub(crate) selector: Option<EdgeValue>,
}

/// The value of an edge option, with its tokens (`key = value`) for the checks' spans.
pub(crate) struct EdgeValue {
    pub(crate) value: Expr,
    /// `key value`: where a check of the option is reported.
    pub(crate) tokens: TokenStream,
    /// The value of an integer literal (`partition = 1`).
    pub(crate) literal: Option<usize>,
}

/// Checks the graph and each edge's options.
pub(crate) fn validate_graph(graph: &Graph) -> syn::Result<Vec<EdgeSettings>> {
    let mut errors = Errors::default();
    check_variables_used_once(graph, &mut errors);
    check_groups(graph, &mut errors);
    check_duplicate_edges(graph, &mut errors);
    check_cycles(graph, &mut errors);
    let mut settings = Vec::with_capacity(graph.edges.len());
    for edge in &graph.edges {
        match &edge.link.options {
            Some(options) => match check_edge_options(options) {
                Ok(checked) => {
                    let to_group = matches!(graph.nodes[edge.to].stage, StageSyntax::Group(_));
                    if let (Some(partition), true) = (&checked.partition, to_group) {
                        let from = graph.nodes[edge.from].label();
                        let to = graph.nodes[edge.to].label();
                        errors.push(syn::Error::new_spanned(
                            &partition.tokens,
                            format!(
                                "`partition` gives one partition of `{from}` to one consumer, but `{to}` is a group: wire it with `->` to give instance `i` partition `i`, or take this partition with a single stage"
                            ),
                        ));
                    }
                    settings.push(checked);
                }
                Err(error) => errors.push(error),
            },
            None => settings.push(EdgeSettings::default()),
        }
    }
    errors.check()?;
    Ok(settings)
}

/// A variable used as a stage twice: it holds one stage, which can be added once, so the second
/// use would be a move error. A variable is told from a unit struct (`Printer`, which makes a new
/// stage at each use) by its lower-case first letter, as Rust's naming conventions have it.
fn check_variables_used_once(graph: &Graph, errors: &mut Errors) {
    let mut seen: Vec<&Ident> = Vec::new();
    for node in &graph.nodes {
        let Some(ident) = node.stage.as_ident() else {
            continue;
        };
        let text = ident.to_string();
        if !text.starts_with(|c: char| c.is_lowercase() || c == '_') {
            continue;
        }
        if seen.iter().any(|earlier| **earlier == *ident) {
            errors.push(syn::Error::new(
                    ident.span(),
                    format!(
                        "`{text}` is used as a stage a second time: a variable holds one stage, which can be added to a pipeline once; to wire it in several chains, name it, e.g. `{text} = {text};`, then use `{text}` in each chain"
                    ),
                ),
            );
        } else {
            seen.push(ident);
        }
    }
}

/// The error of a group of no instance, at compile time.
pub(crate) const EMPTY_GROUP: &str =
    "a group of 0 instances starts no stage: the number of instances must be at least 1";

/// `[S; 0]` with a literal `0`.
fn check_groups(graph: &Graph, errors: &mut Errors) {
    for node in &graph.nodes {
        if let StageSyntax::Group(group) = &node.stage {
            if let Ok(Some(0)) = literal_usize(&group.count) {
                errors.push(syn::Error::new_spanned(&group.count, EMPTY_GROUP));
            }
        }
    }
}

/// The same producer and consumer wired twice.
fn check_duplicate_edges(graph: &Graph, errors: &mut Errors) {
    let mut wired = HashSet::new();
    for edge in &graph.edges {
        if !wired.insert((edge.from, edge.to)) {
            let from = graph.nodes[edge.from].label();
            let to = graph.nodes[edge.to].label();
            errors.push(edge.error(format!(
                    "`{to}` is already wired after `{from}`: a second subscription adds nothing, so wire each pair of stages once"
                )),
            );
        }
    }
}

/// A cycle of arrows, reported once, at the arrow that closes it.
fn check_cycles(graph: &Graph, errors: &mut Errors) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = graph.nodes.len();
    let mut marks = vec![Mark::New; n];
    for root in 0..n {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search; `path` holds the open nodes with the edge that reached them.
        let mut path: Vec<(usize, Option<usize>)> = vec![(root, None)];
        let mut next_edge: Vec<usize> = vec![0];
        marks[root] = Mark::Open;
        while let (Some(&(node, _)), Some(cursor)) = (path.last(), next_edge.last_mut()) {
            let found = graph.edges[*cursor..]
                .iter()
                .position(|e| e.from == node)
                .map(|offset| *cursor + offset);
            let Some(edge_index) = found else {
                marks[node] = Mark::Done;
                path.pop();
                next_edge.pop();
                continue;
            };
            *cursor = edge_index + 1;
            let to = graph.edges[edge_index].to;
            match marks[to] {
                Mark::Open => {
                    let start = path.iter().position(|&(n, _)| n == to).unwrap_or(0);
                    let mut names: Vec<String> = path[start..]
                        .iter()
                        .map(|&(n, _)| graph.nodes[n].label())
                        .collect();
                    names.push(graph.nodes[to].label());
                    errors.push(graph.edges[edge_index].error(format!(
                            "this arrow closes a cycle: `{}`; events flow from producers to consumers and never come back, so a pipeline has no cycle",
                            names.join(" -> ")
                        )),
                    );
                    return;
                }
                Mark::New => {
                    marks[to] = Mark::Open;
                    path.push((to, Some(edge_index)));
                    next_edge.push(0);
                }
                Mark::Done => {}
            }
        }
    }
}

/// Known, single, sensible options, by the rules `#[stage]` applies to the same options.
fn check_edge_options(options: &EdgeOptions) -> syn::Result<EdgeSettings> {
    let mut errors = Errors::default();
    let mut settings = EdgeSettings::default();
    let mut max_literal: Option<usize> = None;
    let mut min_literal: Option<(usize, &Expr)> = None;
    for option in &options.options {
        let key = &option.name;
        let slot = if *key == MAX_DEMAND {
            &mut settings.max_demand
        } else if *key == MIN_DEMAND {
            &mut settings.min_demand
        } else if *key == CANCEL {
            if settings.cancel.is_some() {
                errors.push(options::duplicate(key));
                continue;
            }
            match options::choice(key, &option.value, CANCEL_MODES, "cancel mode") {
                Ok(mode) => settings.cancel = Some(mode),
                Err(error) => errors.push(error),
            }
            continue;
        } else if *key == PARTITION || *key == SELECTOR {
            let value = &option.value;
            let (slot, other, other_name) = if *key == PARTITION {
                (&mut settings.partition, &settings.selector, SELECTOR)
            } else {
                (&mut settings.selector, &settings.partition, PARTITION)
            };
            if slot.is_some() {
                errors.push(options::duplicate(key));
                continue;
            }
            if other.is_some() {
                errors.push(syn::Error::new(
                    key.span(),
                    format!(
                        "an edge takes a `selector` (from a stage that broadcasts) or a `partition` (from a partitioned stage), not both: remove `{key}` or `{other_name}`"
                    ),
                ));
                continue;
            }
            let literal = if *key == PARTITION {
                match options::partition_index(value) {
                    Ok(literal) => literal,
                    Err(error) => {
                        errors.push(error);
                        continue;
                    }
                }
            } else {
                None
            };
            *slot = Some(EdgeValue {
                value: value.clone(),
                tokens: quote!(#key #value),
                literal,
            });
            continue;
        } else {
            let names: Vec<&str> = EDGE_OPTIONS.iter().map(|s| s.name()).collect();
            errors.push(syn::Error::new(
                key.span(),
                format!(
                    "unknown edge option `{key}`: the options of an edge are {}",
                    list(&names)
                ),
            ));
            continue;
        };
        if slot.is_some() {
            errors.push(options::duplicate(key));
            continue;
        }
        *slot = Some(option.value.clone());
        let literal = match options::count(key, &option.value) {
            Ok(literal) => literal,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        if *key == MAX_DEMAND {
            match options::check_max_demand(&option.value, literal) {
                Ok(()) => max_literal = literal,
                Err(error) => errors.push(error),
            }
        } else if let Some(min) = literal {
            min_literal = Some((min, &option.value));
        }
    }
    // Against the edge's own `max_demand`; one set by an expression is checked by `run()`, and
    // so is the consumer's when the edge sets none.
    if let (Some(max), Some((min, value))) = (max_literal, min_literal) {
        if let Err(error) = options::check_min_demand(value, min, MaxDemand::Set(max)) {
            errors.push(error);
        }
    }
    errors.check()?;
    Ok(settings)
}

/// The value of an integer literal that must fit a `usize`; `Ok(None)` when `expr` is not one.
pub(crate) fn literal_usize(expr: &Expr) -> syn::Result<Option<usize>> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<usize>().map(Some),
        _ => Ok(None),
    }
}
