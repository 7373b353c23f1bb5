//! The `pipeline!` grammar and its AST. Every node keeps the tokens it came from, for spans.
//!
//! syn's expression parser would take the `-` of `->` for a minus sign, so the input is first split
//! at top-level `;` (statements) and at top-level arrows (links); only the pieces in between are
//! parsed as expressions. An arrow inside a group, inside the angle brackets of a path
//! (`Fwd::<fn() -> u64>::new()`) or in a closure's signature (`|n| -> u64 { n }`) belongs to its
//! expression (see [`Nesting`]). A missing piece is reported at the arrow or `;` next to it.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Token};

use crate::errors::Errors;

/// The whole input.
///
/// `PIPELINE := ( "crate" "=" PATH ";" )? STATEMENT ( ";" STATEMENT )* ";"?`
pub(crate) struct PipelineInput {
    /// The path of the `genstage` crate, when overridden with `crate = path;`.
    pub(crate) krate: Option<syn::Path>,
    pub(crate) statements: Vec<Statement>,
}

/// One statement: a chain of stages joined by links, or a lone definition `name = stage`.
///
/// `STATEMENT := NODE ( LINK NODE )*`
pub(crate) struct Statement {
    pub(crate) first: Node,
    pub(crate) links: Vec<(Link, Node)>,
    /// The statement's tokens, for errors about the whole statement.
    pub(crate) tokens: TokenStream,
}

/// An arrow between two stages, maybe with subscription options.
///
/// `LINK := "->" | "-[" OPTION ( "," OPTION )* ","? "]->"`
pub(crate) struct Link {
    /// The arrow's tokens (`-` `>`, or `-` `[…]` `-` `>`), for spans.
    pub(crate) tokens: TokenStream,
    /// The options between the brackets, for `-[…]->`.
    pub(crate) options: Option<EdgeOptions>,
}

/// The options of one edge: `-[max_demand = 10, min_demand = 5, cancel = temporary]->`.
pub(crate) struct EdgeOptions {
    pub(crate) options: Vec<EdgeOption>,
}

/// `OPTION := IDENT "=" EXPR`
pub(crate) struct EdgeOption {
    pub(crate) name: Ident,
    pub(crate) value: Expr,
}

/// A stage in a chain: a definition, a reference to a named stage, or an anonymous stage.
///
/// `NODE := IDENT "=" STAGE | STAGE`
/// (whether a bare `IDENT` names a stage is decided once every definition is known)
pub(crate) struct Node {
    pub(crate) binding: Option<Binding>,
    pub(crate) stage: StageSyntax,
    /// The node's tokens, for spans.
    pub(crate) tokens: TokenStream,
}

/// `IDENT "="`
pub(crate) struct Binding {
    pub(crate) name: Ident,
}

/// `STAGE := "[" EXPR ";" EXPR "]" | EXPR`
pub(crate) enum StageSyntax {
    /// One instance of the expression.
    One(Box<Expr>),
    /// `[expr; count]`: `count` instances, evaluating `expr` once per instance.
    Group(Box<GroupSyntax>),
}

/// `"[" EXPR ";" EXPR "]"`
pub(crate) struct GroupSyntax {
    /// The bracket group, for spans.
    pub(crate) group: Group,
    pub(crate) expr: Expr,
    pub(crate) count: Expr,
}

impl StageSyntax {
    /// The stage expression (of every instance, for a group).
    pub(crate) fn expr(&self) -> &Expr {
        match self {
            StageSyntax::One(expr) => expr,
            StageSyntax::Group(group) => &group.expr,
        }
    }

    /// The identifier, when the stage is a bare identifier (perhaps the name of a stage).
    pub(crate) fn as_ident(&self) -> Option<&Ident> {
        match self {
            StageSyntax::One(expr) => match &**expr {
                Expr::Path(path) if path.attrs.is_empty() && path.qself.is_none() => {
                    path.path.get_ident()
                }
                _ => None,
            },
            StageSyntax::Group(_) => None,
        }
    }
}

impl ToTokens for StageSyntax {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            StageSyntax::One(expr) => expr.to_tokens(tokens),
            StageSyntax::Group(group) => group.group.to_tokens(tokens),
        }
    }
}

/// Parses the macro input.
pub(crate) fn parse_pipeline(input: TokenStream) -> syn::Result<PipelineInput> {
    let mut statements = Vec::new();
    let mut errors = Errors::default();
    let mut krate = None;
    let mut first = true;
    for tokens in split_statements(input) {
        if tokens.is_empty() {
            continue;
        }
        if first {
            first = false;
            if let Some(path) = parse_crate_override(&tokens)? {
                krate = Some(path);
                continue;
            }
        }
        match parse_statement(tokens) {
            Ok(statement) => statements.push(statement),
            Err(error) => errors.push(error),
        }
    }
    errors.check()?;
    if statements.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "empty pipeline: wire stages with `->`, e.g. `pipeline! { from_iter(0..10u64) -> Printer }`",
        ));
    }
    Ok(PipelineInput { krate, statements })
}

/// `crate = path`, when the statement is one.
fn parse_crate_override(tokens: &[TokenTree]) -> syn::Result<Option<syn::Path>> {
    match tokens {
        [TokenTree::Ident(krate), TokenTree::Punct(eq), ..]
            if krate == "crate" && eq.as_char() == '=' =>
        {
            let rest: TokenStream = tokens[2..].iter().cloned().collect();
            if rest.is_empty() {
                return Err(syn::Error::new(
                    eq.span(),
                    "expected the path of the genstage crate after `crate =`, e.g. `crate = ::genstage;`",
                ));
            }
            if let [TokenTree::Literal(literal)] = &tokens[2..] {
                if let Ok(string) = syn::parse2::<syn::LitStr>(literal.to_token_stream()) {
                    return Err(syn::Error::new(
                        literal.span(),
                        format!(
                            "`crate =` in `pipeline!` takes a path, not a string: `crate = {};` (a string is `#[stage]`'s form, `crate = \"{0}\"`)",
                            string.value()
                        ),
                    ));
                }
            }
            let path = syn::Path::parse_mod_style.parse2(rest)?;
            if let Some(ident) = crate::options::self_in_crate_path(&path) {
                return Err(syn::Error::new(
                    ident.span(),
                    "`Self` names a type, not a crate: `crate =` takes the path of the genstage crate, e.g. `crate = ::genstage;`",
                ));
            }
            Ok(Some(path))
        }
        _ => Ok(None),
    }
}

/// The genstage crate for the value of a failed `pipeline!`: the path of a first statement
/// `crate = path` (or `crate = "path"`, `#[stage]`'s form, reported by `parse_crate_override`),
/// read from the tokens whether or not the rest parses, so that the value names the crate the
/// user named and one mistake gives one error. `None` without one, or when it does not parse.
pub(crate) fn fallback_crate(input: TokenStream) -> Option<syn::Path> {
    let statement = split_statements(input)
        .into_iter()
        .find(|statement| !statement.is_empty())?;
    let [TokenTree::Ident(krate), TokenTree::Punct(eq), rest @ ..] = statement.as_slice() else {
        return None;
    };
    if krate != "crate" || eq.as_char() != '=' {
        return None;
    }
    let path = match rest {
        [TokenTree::Literal(literal)] => syn::parse2::<syn::LitStr>(literal.to_token_stream())
            .ok()?
            .parse_with(syn::Path::parse_mod_style)
            .ok()?,
        _ => syn::Path::parse_mod_style
            .parse2(rest.iter().cloned().collect())
            .ok()?,
    };
    crate::options::self_in_crate_path(&path)
        .is_none()
        .then_some(path)
}

/// Splits at top-level `;`. Each statement keeps its tokens; a trailing `;` leaves an empty one.
fn split_statements(input: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut statements = vec![Vec::new()];
    for tree in input {
        match &tree {
            TokenTree::Punct(p) if p.as_char() == ';' => statements.push(Vec::new()),
            _ => {
                if let Some(current) = statements.last_mut() {
                    current.push(tree);
                }
            }
        }
    }
    statements
}

/// One piece of a statement between links.
struct Piece {
    tokens: Vec<TokenTree>,
}

/// Splits a statement at its links, then parses each piece as a node.
fn parse_statement(tokens: Vec<TokenTree>) -> syn::Result<Statement> {
    let all: TokenStream = tokens.iter().cloned().collect();
    let (pieces, links) = split_pieces(&tokens);

    // Every link needs a stage on both sides.
    let mut errors = Errors::default();
    for (index, (link, _)) in links.iter().enumerate() {
        let before = &pieces[index];
        let after = &pieces[index + 1];
        if before.tokens.is_empty() && index == 0 {
            errors.push(syn::Error::new_spanned(
                    link,
                    "expected a stage before `->`: a chain starts with a stage, e.g. `from_iter(0..10u64) -> Printer`",
                ),
            );
        } else if after.tokens.is_empty() {
            let message = if index + 1 == links.len() {
                "expected a stage after `->`: a chain ends with a stage, e.g. `Evens -> Printer`"
            } else {
                "expected a stage between these arrows"
            };
            errors.push(syn::Error::new_spanned(link, message));
        }
    }
    errors.take()?;

    let mut nodes = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match parse_node(piece) {
            Ok(node) => nodes.push(node),
            Err(error) => errors.push(error),
        }
    }
    let mut parsed_links = Vec::with_capacity(links.len());
    for (tokens, group) in links {
        let options = match group {
            Some(group) => match parse_edge_options(group) {
                Ok(options) => Some(options),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
            None => None,
        };
        parsed_links.push(Link { tokens, options });
    }
    errors.check()?;
    let mut nodes = nodes.into_iter();
    let Some(first) = nodes.next() else {
        return Err(syn::Error::new_spanned(all, "expected a stage"));
    };
    Ok(Statement {
        first,
        links: parsed_links.into_iter().zip(nodes).collect(),
        tokens: all,
    })
}

/// Splits a statement at its links: the pieces (one more than the links) and each link's tokens
/// and options group.
fn split_pieces(tokens: &[TokenTree]) -> (Vec<Piece>, Vec<(TokenStream, Option<Group>)>) {
    let mut pieces = vec![Piece { tokens: Vec::new() }];
    let mut links: Vec<(TokenStream, Option<Group>)> = Vec::new();
    let mut nesting = Nesting::default();
    let mut i = 0;
    while i < tokens.len() {
        let link = if nesting.is_top_level() {
            link_at(&tokens[i..])
        } else {
            None
        };
        if let Some((len, options)) = link {
            links.push((tokens[i..i + len].iter().cloned().collect(), options));
            pieces.push(Piece { tokens: Vec::new() });
            nesting = Nesting::default();
            i += len;
        } else {
            let consumed = nesting.step(&tokens[i..]);
            if let Some(piece) = pieces.last_mut() {
                piece.tokens.extend(tokens[i..i + consumed].iter().cloned());
            }
            i += consumed;
        }
    }
    (pieces, links)
}

/// The names the input defines (`name = stage`), each once, in order, read from its tokens alone:
/// for the value of a `pipeline!` that failed, so that its fields are still there and code that
/// uses them gives no second error. A statement that does not parse still gives its names.
pub(crate) fn defined_names(input: TokenStream) -> Vec<Ident> {
    let mut names: Vec<Ident> = Vec::new();
    for statement in split_statements(input) {
        let (pieces, _) = split_pieces(&statement);
        for piece in pieces {
            if let Some((name, _, _)) = binding_of(&piece.tokens) {
                if is_plain_ident(name) && !names.iter().any(|known| known == name) {
                    names.push(name.clone());
                }
            }
        }
    }
    names
}

/// Where the splitter stands inside one piece of a statement: an arrow there is a link only at
/// the top level, not inside the angle brackets of a path (`Fwd::<fn() -> u64>::new()`) nor in a
/// closure's signature (`|n| -> u64 { n }`). Parentheses, brackets and braces are token groups
/// already, so only these two need tracking.
#[derive(Default)]
struct Nesting {
    /// Open `<` of generic arguments or of a qualified path.
    angles: usize,
    /// Inside a closure's return type: from its `->` to the block that is its body.
    closure_return: bool,
    /// The previous token, to tell a generic `<` from a comparison and a closure's `|` from an
    /// or: `None` at the start of the piece.
    prev: Option<TokenTree>,
}

impl Nesting {
    fn is_top_level(&self) -> bool {
        self.angles == 0 && !self.closure_return
    }

    /// Takes in the tokens at the start of `tokens` (at least one), returning how many.
    fn step(&mut self, tokens: &[TokenTree]) -> usize {
        let punct = |at: usize| match tokens.get(at) {
            Some(TokenTree::Punct(p)) => Some(p.as_char()),
            _ => None,
        };
        let is_arrow_at = |at: usize| {
            matches!(tokens.get(at), Some(TokenTree::Punct(p))
                if p.as_char() == '-' && p.spacing() == proc_macro2::Spacing::Joint)
                && punct(at + 1) == Some('>')
        };
        let mut consumed = 1;
        match &tokens[0] {
            // `fn() -> T` inside generic arguments: the arrow's `>` closes nothing.
            TokenTree::Punct(_) if is_arrow_at(0) => consumed = 2,
            TokenTree::Punct(p) if p.as_char() == '<' && self.opens_angle() => self.angles += 1,
            TokenTree::Punct(p) if p.as_char() == '>' && self.angles > 0 => self.angles -= 1,
            TokenTree::Punct(p)
                if p.as_char() == '|' && self.angles == 0 && self.starts_closure() =>
            {
                // The closure's parameters: `||`, or `|` … `|` (patterns hold no bare `|` at the
                // top level of a parameter list in practice; a nested one is in a group).
                let close = if p.spacing() == proc_macro2::Spacing::Joint && punct(1) == Some('|') {
                    1
                } else {
                    tokens[1..]
                        .iter()
                        .position(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == '|'))
                        .map_or(tokens.len() - 1, |offset| offset + 1)
                };
                consumed = close + 1;
                if is_arrow_at(consumed) {
                    self.closure_return = true;
                    consumed += 2;
                }
            }
            TokenTree::Group(group)
                if self.closure_return
                    && self.angles == 0
                    && group.delimiter() == Delimiter::Brace =>
            {
                self.closure_return = false;
            }
            _ => {}
        }
        self.prev = tokens.get(consumed - 1).cloned();
        consumed.min(tokens.len())
    }

    /// A `<` opens generic arguments after `::` (a turbofish), inside other generic arguments
    /// (`Vec<Vec<u64>>`), in a closure's return type, or where an expression starts (a qualified
    /// path `<T as Trait>::f()`); elsewhere it is a comparison.
    fn opens_angle(&self) -> bool {
        if self.angles > 0 || self.closure_return {
            return true;
        }
        match &self.prev {
            None => true,
            Some(TokenTree::Punct(p)) => p.as_char() == ':' || p.as_char() == '=',
            _ => false,
        }
    }

    /// A `|` starts a closure where an expression starts: at the start of the piece, after `=`
    /// (`name = |…|`) or after `move`.
    fn starts_closure(&self) -> bool {
        match &self.prev {
            None => true,
            Some(TokenTree::Punct(p)) => p.as_char() == '=',
            Some(TokenTree::Ident(ident)) => ident == "move",
            _ => false,
        }
    }
}

/// The link starting at `tokens[0]`, as (number of tokens, options group): `->` or `-[…]->`.
fn link_at(tokens: &[TokenTree]) -> Option<(usize, Option<Group>)> {
    let is_punct = |tree: Option<&TokenTree>, ch: char| matches!(tree, Some(TokenTree::Punct(p)) if p.as_char() == ch);
    let is_arrow = |at: usize| {
        matches!(tokens.get(at), Some(TokenTree::Punct(p))
            if p.as_char() == '-' && p.spacing() == proc_macro2::Spacing::Joint)
            && is_punct(tokens.get(at + 1), '>')
    };
    if is_arrow(0) {
        return Some((2, None));
    }
    if is_punct(tokens.first(), '-') {
        if let Some(TokenTree::Group(group)) = tokens.get(1) {
            if group.delimiter() == Delimiter::Bracket && is_arrow(2) {
                return Some((4, Some(group.clone())));
            }
        }
    }
    None
}

/// The `name`, `=` and the rest of a piece that starts `name = …` (a lone `=`, not `==`).
fn binding_of(tokens: &[TokenTree]) -> Option<(&Ident, &proc_macro2::Punct, &[TokenTree])> {
    match tokens {
        [TokenTree::Ident(name), TokenTree::Punct(eq), rest @ ..]
            if eq.as_char() == '=' && eq.spacing() == proc_macro2::Spacing::Alone =>
        {
            Some((name, eq, rest))
        }
        _ => None,
    }
}

/// Whether `ident` is an identifier that can name a stage (not a keyword).
fn is_plain_ident(ident: &Ident) -> bool {
    syn::parse2::<Ident>(ident.to_token_stream()).is_ok()
}

/// Parses one piece: `name = stage` or `stage`.
fn parse_node(piece: Piece) -> syn::Result<Node> {
    let tokens: TokenStream = piece.tokens.iter().cloned().collect();
    let (binding, rest) = match binding_of(&piece.tokens) {
        Some((name, eq, rest)) => {
            if name == "crate" {
                return Err(syn::Error::new(
                    name.span(),
                    "`crate = path` must be the first statement of the pipeline",
                ));
            }
            if !is_plain_ident(name) {
                return Err(syn::Error::new(
                    name.span(),
                    format!("`{name}` is a keyword and cannot name a stage"),
                ));
            }
            if rest.is_empty() {
                return Err(syn::Error::new(
                    eq.span(),
                    format!("expected a stage after `{name} =`, e.g. `{name} = Printer`"),
                ));
            }
            let binding = Binding { name: name.clone() };
            (Some(binding), rest)
        }
        None => (None, piece.tokens.as_slice()),
    };
    let stage = parse_stage(rest)?;
    Ok(Node {
        binding,
        stage,
        tokens,
    })
}

/// Parses `[expr; count]` or an expression, which must use up the piece.
fn parse_stage(tokens: &[TokenTree]) -> syn::Result<StageSyntax> {
    if let [TokenTree::Group(group)] = tokens {
        match group.delimiter() {
            Delimiter::Bracket => {
                return parse_group(group.clone()).map(|group| StageSyntax::Group(Box::new(group)));
            }
            // `a -> (b; c)` reads as a fan-out, which rustc would answer with "expected `,`".
            Delimiter::Parenthesis if has_semicolon(group) => {
                return Err(syn::Error::new(
                    group.span(),
                    "a list of stages is not a stage: to feed several stages from one, name it and write a chain to each, e.g. `src = Source; src -> a; src -> b`",
                ));
            }
            _ => {}
        }
    }
    let stream: TokenStream = tokens.iter().cloned().collect();
    Parser::parse2(
        |input: ParseStream<'_>| {
            let expr: Expr = input.parse()?;
            if !input.is_empty() {
                let rest: TokenStream = input.parse()?;
                return Err(syn::Error::new_spanned(
                    rest,
                    "unexpected tokens after this stage: join stages with `->` and end statements with `;`",
                ));
            }
            Ok(StageSyntax::One(Box::new(expr)))
        },
        stream,
    )
}

/// Whether `group` holds a `;` of its own (not one nested in a group inside it).
fn has_semicolon(group: &Group) -> bool {
    group
        .stream()
        .into_iter()
        .any(|tree| matches!(&tree, TokenTree::Punct(p) if p.as_char() == ';'))
}

/// Parses the inside of `[expr; count]`.
fn parse_group(group: Group) -> syn::Result<GroupSyntax> {
    let span = group.span();
    let content = group.stream();
    if content.is_empty() {
        return Err(syn::Error::new(
            span,
            "expected `[stage; count]`, e.g. `[Printer; 2]` for two instances of `Printer`",
        ));
    }
    if !has_semicolon(&group) {
        return Err(syn::Error::new(
            span,
            "expected `[stage; count]`, e.g. `[Printer; 2]` for two instances of `Printer`; a list of stages is not a stage",
        ));
    }
    let close = group.span_close();
    Parser::parse2(
        |input: ParseStream<'_>| {
            let expr: Expr = input.parse()?;
            let _semi: Token![;] = input.parse()?;
            if input.is_empty() {
                return Err(syn::Error::new(
                    close,
                    "expected the number of instances after `;`, e.g. `[Printer; 2]`",
                ));
            }
            let count: Expr = input.parse()?;
            if !input.is_empty() {
                let rest: TokenStream = input.parse()?;
                return Err(syn::Error::new_spanned(
                    rest,
                    "unexpected tokens after the number of instances: write `[stage; count]`",
                ));
            }
            Ok(GroupSyntax {
                group: group.clone(),
                expr,
                count,
            })
        },
        content,
    )
}

/// Parses the inside of `-[…]->`.
fn parse_edge_options(group: Group) -> syn::Result<EdgeOptions> {
    if group.stream().is_empty() {
        return Err(syn::Error::new(
            group.span(),
            "`-[]->` sets no option: write `->`, or set `max_demand`, `min_demand`, `cancel`, `partition` or `selector`, e.g. `-[max_demand = 10]->`",
        ));
    }
    let options = Parser::parse2(
        Punctuated::<EdgeOption, Token![,]>::parse_terminated,
        group.stream(),
    )?;
    Ok(EdgeOptions {
        options: options.into_iter().collect(),
    })
}

impl Parse for EdgeOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let name: Ident = syn::ext::IdentExt::parse_any(input).map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected an edge option: `max_demand = …`, `min_demand = …`, `cancel = …`, `partition = …` or `selector = …`",
            )
        })?;
        let eq: Token![=] = input.parse().map_err(|_| {
            syn::Error::new(
                name.span(),
                format!("expected `=` and a value after `{name}`, e.g. `{name} = 10`"),
            )
        })?;
        if input.is_empty() || input.peek(Token![,]) {
            return Err(syn::Error::new(
                eq.span,
                format!("expected a value after `{name} =`"),
            ));
        }
        let value: Expr = input.parse()?;
        Ok(EdgeOption { name, value })
    }
}
