//! Rules that look at more than one node: every stage wired, each pair wired once, no cycle, group
//! sizes and edge options that make sense. Roles and event types are left to rustc (see
//! `expand.rs`): the macro cannot see a stage's type.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Expr, ExprLit, Ident, Lit};

use super::graph::Graph;
use super::parse::{combine, EdgeOptions, StageSyntax};

/// The subscription options one edge sets, checked.
#[derive(Default)]
pub(crate) struct EdgeSettings {
    pub(crate) max_demand: Option<Expr>,
    pub(crate) min_demand: Option<Expr>,
    /// `Permanent`, `Transient` or `Temporary`, spanned at the user's value.
    pub(crate) cancel: Option<Ident>,
}

/// Checks the graph and each edge's options.
pub(crate) fn validate_graph(graph: &Graph) -> syn::Result<Vec<EdgeSettings>> {
    let mut errors: Option<syn::Error> = None;
    check_wired(graph, &mut errors);
    check_variables_used_once(graph, &mut errors);
    check_groups(graph, &mut errors);
    check_duplicate_edges(graph, &mut errors);
    check_cycles(graph, &mut errors);
    let mut settings = Vec::with_capacity(graph.edges.len());
    for edge in &graph.edges {
        match &edge.link.options {
            Some(options) => match check_edge_options(options) {
                Ok(checked) => settings.push(checked),
                Err(error) => combine(&mut errors, error),
            },
            None => settings.push(EdgeSettings::default()),
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(settings),
    }
}

/// A defined name that no chain uses.
fn check_wired(graph: &Graph, errors: &mut Option<syn::Error>) {
    for (index, node) in graph.nodes.iter().enumerate() {
        let wired = graph.edges.iter().any(|e| e.from == index || e.to == index);
        if let (false, Some(name)) = (wired, &node.name) {
            combine(
                errors,
                syn::Error::new(
                    name.span(),
                    format!(
                        "the stage `{name}` is never wired: use `{name}` in a chain, before or after `->`"
                    ),
                ),
            );
        }
    }
}

/// A variable used as a stage twice: it holds one stage, which can be added once, so the second
/// use would be a move error. A variable is told from a unit struct (`Printer`, which makes a new
/// stage at each use) by its lower-case first letter, as Rust's naming conventions have it.
fn check_variables_used_once(graph: &Graph, errors: &mut Option<syn::Error>) {
    let mut seen: Vec<&Ident> = Vec::new();
    for node in &graph.nodes {
        if node.name.is_some() {
            continue;
        }
        let Some(ident) = node.stage.as_ident() else {
            continue;
        };
        let text = ident.to_string();
        if !text.starts_with(|c: char| c.is_lowercase() || c == '_') {
            continue;
        }
        if seen.iter().any(|earlier| **earlier == *ident) {
            combine(
                errors,
                syn::Error::new(
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
fn check_groups(graph: &Graph, errors: &mut Option<syn::Error>) {
    for node in &graph.nodes {
        if let StageSyntax::Group(group) = &node.stage {
            if let Some(Ok(0)) = literal_usize(&group.count) {
                combine(errors, syn::Error::new_spanned(&group.count, EMPTY_GROUP));
            }
        }
    }
}

/// The same producer and consumer wired twice.
fn check_duplicate_edges(graph: &Graph, errors: &mut Option<syn::Error>) {
    for (index, edge) in graph.edges.iter().enumerate() {
        let earlier = graph.edges[..index]
            .iter()
            .any(|e| e.from == edge.from && e.to == edge.to);
        if earlier {
            let from = graph.nodes[edge.from].label();
            let to = graph.nodes[edge.to].label();
            combine(
                errors,
                edge.error(format!(
                    "`{to}` is already wired after `{from}`: a second subscription adds nothing, so wire each pair of stages once"
                )),
            );
        }
    }
}

/// A cycle of arrows, reported once, at the arrow that closes it.
fn check_cycles(graph: &Graph, errors: &mut Option<syn::Error>) {
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
                    combine(
                        errors,
                        graph.edges[edge_index].error(format!(
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

const EDGE_OPTIONS: &str = "`max_demand`, `min_demand` and `cancel`";

/// Known, single, sensible options.
fn check_edge_options(options: &EdgeOptions) -> syn::Result<EdgeSettings> {
    let mut errors: Option<syn::Error> = None;
    let mut settings = EdgeSettings::default();
    let mut max_literal: Option<(usize, Span)> = None;
    let mut min_literal: Option<(usize, TokenStream)> = None;
    for option in &options.options {
        let name = option.name.to_string();
        let duplicate = || {
            syn::Error::new(
                option.name.span(),
                format!("`{name}` is set twice for this edge: set each option once"),
            )
        };
        match name.as_str() {
            "max_demand" | "min_demand" => {
                let slot = if name == "max_demand" {
                    &mut settings.max_demand
                } else {
                    &mut settings.min_demand
                };
                if slot.is_some() {
                    combine(&mut errors, duplicate());
                    continue;
                }
                *slot = Some(option.value.clone());
                match literal_usize(&option.value) {
                    Some(Ok(value)) if name == "max_demand" => {
                        if value == 0 {
                            combine(
                                &mut errors,
                                syn::Error::new_spanned(
                                    &option.value,
                                    "`max_demand = 0` would never ask for an event: `max_demand` must be at least 1",
                                ),
                            );
                        }
                        max_literal = Some((value, option.name.span()));
                    }
                    Some(Ok(value)) => {
                        let value_tokens = &option.value;
                        let name_tokens = &option.name;
                        min_literal = Some((value, quote!(#name_tokens = #value_tokens)));
                    }
                    Some(Err(error)) => combine(&mut errors, error),
                    None => {}
                }
            }
            "cancel" => {
                if settings.cancel.is_some() {
                    combine(&mut errors, duplicate());
                    continue;
                }
                match cancel_mode(&option.value) {
                    Ok(mode) => settings.cancel = Some(mode),
                    Err(error) => combine(&mut errors, error),
                }
            }
            _ => combine(
                &mut errors,
                syn::Error::new(
                    option.name.span(),
                    format!(
                        "unknown edge option `{name}`: the options of an edge are {EDGE_OPTIONS}"
                    ),
                ),
            ),
        }
    }
    if let (Some((max, _)), Some((min, min_tokens))) = (&max_literal, &min_literal) {
        if max > &0 && min >= max {
            combine(
                &mut errors,
                syn::Error::new_spanned(
                    min_tokens,
                    format!(
                        "`min_demand = {min}` must be less than `max_demand = {max}`: a consumer asks for more events once its outstanding demand falls to `min_demand`"
                    ),
                ),
            );
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(settings),
    }
}

/// `permanent`, `transient` or `temporary`, as the variant's name spanned at the value.
fn cancel_mode(value: &Expr) -> syn::Result<Ident> {
    const MODES: &str = "`permanent`, `transient` and `temporary`";
    let ident = match value {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => path.path.get_ident(),
        _ => None,
    };
    let Some(ident) = ident else {
        return Err(syn::Error::new_spanned(
            value,
            format!("expected a cancel mode: the modes are {MODES}"),
        ));
    };
    let variant = match ident.to_string().as_str() {
        "permanent" => "Permanent",
        "transient" => "Transient",
        "temporary" => "Temporary",
        other => {
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown cancel mode `{other}`: the modes are {MODES}"),
            ))
        }
    };
    Ok(Ident::new(variant, ident.span()))
}

/// The value of an integer literal that must fit a `usize`; `None` when `expr` is not one.
fn literal_usize(expr: &Expr) -> Option<syn::Result<usize>> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => Some(int.base10_parse::<usize>()),
        _ => None,
    }
}
