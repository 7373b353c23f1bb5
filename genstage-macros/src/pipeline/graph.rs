//! From statements to a graph: named stages resolved, one node per stage, one edge per arrow.
//!
//! A node is a definition `name = stage` or an anonymous stage written in a chain. A bare identifier
//! that some statement defines as a name refers to that node, wherever the definition is; any other
//! expression, a bare identifier included (a unit struct, a local variable), is a new stage.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Expr, Ident};

use super::parse::{Link, Node, PipelineInput, StageSyntax};
use super::ALONE_HINT;
use crate::errors::Errors;

/// The pipeline as a graph.
pub(crate) struct Graph {
    /// The path of the `genstage` crate.
    pub(crate) krate: TokenStream,
    /// In the order of their definitions.
    pub(crate) nodes: Vec<StageNode>,
    /// In the order of their arrows.
    pub(crate) edges: Vec<Edge>,
}

/// One stage of the pipeline, or one group of instances `[expr; n]`.
pub(crate) struct StageNode {
    /// Its name, for `name = stage`.
    pub(crate) name: Option<Ident>,
    pub(crate) stage: StageSyntax,
}

/// One arrow: every instance of `to` subscribes to every instance of `from`.
pub(crate) struct Edge {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) link: Link,
    /// The producer's piece at this arrow (its name, or its definition).
    pub(crate) source: TokenStream,
    /// The consumer's piece at this arrow.
    pub(crate) target: TokenStream,
}

impl Edge {
    /// A compile error under this arrow and the consumer piece it points at.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> syn::Error {
        let link = &self.link.tokens;
        let target = &self.target;
        syn::Error::new_spanned(quote::quote!(#link #target), message)
    }
}

impl StageNode {
    /// How messages call this stage: its name, or a short form of its expression.
    pub(crate) fn label(&self) -> String {
        match &self.name {
            Some(name) => name.to_string(),
            None => describe(self.stage.expr()),
        }
    }

    /// How the pipeline calls this stage when it runs: its name, a raw identifier without its
    /// `r#` (`r#type = …` is the stage `type`), or a short form of its expression.
    pub(crate) fn run_name(&self) -> String {
        match &self.name {
            Some(name) => name.unraw().to_string(),
            None => self.label(),
        }
    }
}

impl Graph {
    /// For each node, the nodes feeding it, each once, in the order of their first arrow into it.
    pub(crate) fn producers(&self) -> Vec<Vec<usize>> {
        let mut producers = vec![Vec::new(); self.nodes.len()];
        let mut seen = HashSet::new();
        for edge in &self.edges {
            if seen.insert((edge.from, edge.to)) {
                producers[edge.to].push(edge.from);
            }
        }
        producers
    }
}

/// Where a piece of a chain points.
enum Slot {
    Node(usize),
    Name(Ident),
}

/// Resolves names and collects nodes and edges.
pub(crate) fn build_graph(input: PipelineInput) -> syn::Result<Graph> {
    let krate = match &input.krate {
        Some(path) => path.to_token_stream(),
        None => quote::quote!(::genstage),
    };
    let mut errors = Errors::default();

    // Every name first: a chain may use a name defined further down.
    let mut defined: HashMap<String, Ident> = HashMap::new();
    for statement in &input.statements {
        for node in std::iter::once(&statement.first).chain(statement.links.iter().map(|(_, n)| n))
        {
            if let Some(binding) = &node.binding {
                let key = binding.name.to_string();
                match defined.entry(key) {
                    Entry::Occupied(entry) => errors.push(syn::Error::new(
                            binding.name.span(),
                            format!(
                                "the stage name `{0}` is already defined: define each name once with `{0} = stage`, then use `{0}` in chains",
                                entry.key()
                            ),
                        ),
                    ),
                    Entry::Vacant(entry) => {
                        entry.insert(binding.name.clone());
                    }
                }
            }
        }
    }

    let mut nodes: Vec<StageNode> = Vec::new();
    let mut index_of_name: HashMap<String, usize> = HashMap::new();
    let mut chains: Vec<Vec<(Slot, TokenStream)>> = Vec::new();
    let mut links: Vec<Vec<Link>> = Vec::new();
    for statement in input.statements {
        if statement.links.is_empty() && statement.first.binding.is_none() {
            let message = match statement.first.stage.as_ident() {
                Some(ident) if defined.contains_key(&ident.to_string()) => format!(
                    "`{ident}` alone does nothing: wire it with `->`, e.g. `{ident} -> Printer` {ALONE_HINT}"
                ),
                _ => format!("expected `->` after this stage: a statement is a chain `a -> b -> c` or a definition `name = stage` {ALONE_HINT}"),
            };
            errors.push(syn::Error::new_spanned(&statement.tokens, message));
            continue;
        }
        let (chain_links, rest): (Vec<Link>, Vec<Node>) = statement.links.into_iter().unzip();
        let mut chain = Vec::with_capacity(rest.len() + 1);
        for node in std::iter::once(statement.first).chain(rest) {
            match resolve_node(node, &defined, &mut nodes, &mut index_of_name) {
                Ok(slot) => chain.push(slot),
                Err(error) => errors.push(error),
            }
        }
        chains.push(chain);
        links.push(chain_links);
    }
    errors.take()?;

    let mut edges = Vec::new();
    for (chain, chain_links) in chains.into_iter().zip(links) {
        let mut resolved = Vec::with_capacity(chain.len());
        for (slot, tokens) in chain {
            let index = match slot {
                Slot::Node(index) => index,
                Slot::Name(name) => match index_of_name.get(&name.to_string()) {
                    Some(&index) => index,
                    None => {
                        // Defined names all have nodes; this is unreachable, but stay total.
                        errors.push(syn::Error::new(
                            name.span(),
                            format!("no stage is named `{name}`"),
                        ));
                        continue;
                    }
                },
            };
            resolved.push((index, tokens));
        }
        for (link, pair) in chain_links.into_iter().zip(resolved.windows(2)) {
            let [(from, source), (to, target)] = pair else {
                continue;
            };
            edges.push(Edge {
                from: *from,
                to: *to,
                link,
                source: source.clone(),
                target: target.clone(),
            });
        }
    }
    errors.check()?;
    Ok(Graph {
        krate,
        nodes,
        edges,
    })
}

/// The node a piece stands for, creating it for a definition or an anonymous stage.
fn resolve_node(
    node: Node,
    defined: &HashMap<String, Ident>,
    nodes: &mut Vec<StageNode>,
    index_of_name: &mut HashMap<String, usize>,
) -> syn::Result<(Slot, TokenStream)> {
    let is_name = |ident: &Ident| defined.contains_key(&ident.to_string());
    let Node {
        binding,
        stage,
        tokens,
    } = node;
    match (&binding, stage.as_ident()) {
        (None, Some(ident)) if is_name(ident) => {
            return Ok((Slot::Name(ident.clone()), tokens));
        }
        (Some(binding), Some(ident)) if is_name(ident) && binding.name != *ident => {
            return Err(syn::Error::new_spanned(
                &tokens,
                format!(
                    "`{ident}` already names a stage: use `{ident}` itself instead of naming it again as `{}`",
                    binding.name
                ),
            ));
        }
        _ => {}
    }
    if let StageSyntax::Group(group) = &stage {
        if let Expr::Path(path) = &group.expr {
            if let Some(ident) = path.path.get_ident() {
                if is_name(ident) {
                    return Err(syn::Error::new_spanned(
                        &group.group,
                        format!(
                            "`{ident}` names one stage and cannot be repeated: define the group itself, e.g. `{ident} = [Printer; 2]`"
                        ),
                    ));
                }
            }
        }
    }
    let index = nodes.len();
    if let Some(binding) = &binding {
        index_of_name.insert(binding.name.to_string(), index);
    }
    nodes.push(StageNode {
        name: binding.map(|b| b.name),
        stage,
    });
    Ok((Slot::Node(index), tokens))
}

/// A short form of a stage expression for messages: `Printer`, `Collect::new(tx)`,
/// `from_iter(..)`, `Printer { .. }`.
pub(crate) fn describe(expr: &Expr) -> String {
    const SHORT: usize = 32;
    let full = compact(expr.to_token_stream());
    if full.chars().count() <= SHORT {
        return full;
    }
    match expr {
        Expr::Call(call) => format!("{}(..)", describe(&call.func)),
        Expr::MethodCall(call) => format!("{}.{}(..)", describe(&call.receiver), call.method),
        Expr::Struct(literal) => format!("{} {{ .. }}", compact(literal.path.to_token_stream())),
        Expr::Paren(inner) => describe(&inner.expr),
        _ => {
            let mut short: String = full.chars().take(SHORT - 1).collect();
            short.push('…');
            short
        }
    }
}

/// Tokens as text, with spaces only where Rust needs them or a reader expects them.
fn compact(tokens: TokenStream) -> String {
    #[derive(PartialEq)]
    enum Prev {
        Word,
        JointPunct,
        Other,
    }
    let mut out = String::new();
    let mut prev = Prev::Other;
    for tree in tokens {
        match tree {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => {
                        if !out.is_empty() && !out.ends_with(' ') {
                            out.push(' ');
                        }
                        ("{ ", " }")
                    }
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                out.push_str(&compact(group.stream()));
                out.push_str(close);
                prev = Prev::Other;
            }
            TokenTree::Punct(punct) => {
                let ch = punct.as_char();
                out.push(ch);
                let joint = punct.spacing() == Spacing::Joint;
                if !joint && (ch == ',' || ch == ';' || (ch == ':' && prev != Prev::JointPunct)) {
                    out.push(' ');
                }
                prev = if joint { Prev::JointPunct } else { Prev::Other };
            }
            TokenTree::Ident(_) | TokenTree::Literal(_) => {
                if prev == Prev::Word {
                    out.push(' ');
                }
                out.push_str(&tree.to_string());
                prev = Prev::Word;
            }
        }
    }
    out.trim_end().to_owned()
}
