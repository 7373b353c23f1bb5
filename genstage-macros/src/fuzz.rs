//! The randomized side of "the macros never panic, on any input". Two kinds of cases, for each
//! macro (`stage/fuzz.rs`, `pipeline/fuzz.rs`):
//!
//! - valid inputs (corpora taken from the examples, the README and the tests) mutated at the token
//!   level: delete a token, duplicate one, swap two, insert a token (or a few, such as `->`) from
//!   a vocabulary of the grammar's tokens, replace a token by one of them or by one of its kind,
//!   splice in a token tree from another input of the corpus, change a group's delimiter (to an
//!   invisible one too, as `macro_rules!` makes), wrap tokens in a new group, unwrap a group;
//! - inputs generated from the grammar, with options, callbacks, names and shapes at random,
//!   which mostly parse and so reach the checks after the parser.
//!
//! Each is fed to the macro's entry point, which has to return, within a second, with one
//! `compile_error!` per error it reports and none when it reports none, errors that name no item
//! of the expansion's own, and an expansion that parses. proptest shrinks a failing case and
//! prints its input as text (an invisible group as `⟦…⟧`).
//!
//! Each property runs 256 cases (a second or two); to hunt, run more:
//! `PROPTEST_CASES=40000 cargo test -p genstage-macros --lib never_panics`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use proc_macro2::{Delimiter, Group, Literal, Span, TokenStream, TokenTree};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

use crate::PRIVATE_MODULE;

/// How long one case (one input, expanded twice) may take. An expansion takes milliseconds; this
/// only catches a loop or a blow-up, with room for a loaded machine.
pub(crate) const TIME_LIMIT: Duration = Duration::from_secs(1);

/// The properties' configuration: 256 cases unless `PROPTEST_CASES` says otherwise, and no
/// `proptest-regressions` files (a failure found is kept as a unit test instead).
pub(crate) fn config() -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

/// A token tree that can be edited in place (proc-macro2's groups cannot).
#[derive(Clone)]
pub(crate) enum Tok {
    Leaf(TokenTree),
    /// A group: its delimiter, its span (the original one, so that errors keep their positions)
    /// and its tokens.
    Group(Delimiter, Span, Vec<Tok>),
}

/// The tokens of `text`, which has to tokenize.
pub(crate) fn toks(text: &str) -> Vec<Tok> {
    let stream = TokenStream::from_str(text)
        .unwrap_or_else(|error| panic!("corpus text `{text}` does not tokenize: {error}"));
    from_stream(stream)
}

fn from_stream(stream: TokenStream) -> Vec<Tok> {
    stream
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(group) => {
                Tok::Group(group.delimiter(), group.span(), from_stream(group.stream()))
            }
            leaf => Tok::Leaf(leaf),
        })
        .collect()
}

fn to_stream(toks: &[Tok]) -> TokenStream {
    toks.iter()
        .map(|tok| match tok {
            Tok::Leaf(tree) => tree.clone(),
            Tok::Group(delimiter, span, inner) => {
                let mut group = Group::new(*delimiter, to_stream(inner));
                group.set_span(*span);
                TokenTree::Group(group)
            }
        })
        .collect()
}

/// Source text for the tokens: it tokenizes back to them (up to a punctuation's spacing before a
/// group) unless it holds an invisible group, written `⟦…⟧`, or a negative literal (one token,
/// `-1`, which source text makes two).
fn render(toks: &[Tok], out: &mut String) {
    for tok in toks {
        match tok {
            Tok::Leaf(TokenTree::Punct(punct)) => {
                out.push(punct.as_char());
                if punct.spacing() == proc_macro2::Spacing::Alone {
                    out.push(' ');
                }
            }
            Tok::Leaf(tree) => {
                out.push_str(&tree.to_string());
                out.push(' ');
            }
            Tok::Group(delimiter, _, inner) => {
                let (open, close) = match delimiter {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{ ", "}"),
                    Delimiter::None => ("⟦ ", "⟧"),
                };
                out.push_str(open);
                render(inner, out);
                out.push_str(close);
                out.push(' ');
            }
        }
    }
}

/// A (mutated) macro input; its `Debug` is its source text, for proptest's report.
#[derive(Clone)]
pub(crate) struct Input(pub(crate) Vec<Tok>);

impl Input {
    pub(crate) fn stream(&self) -> TokenStream {
        to_stream(&self.0)
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        render(&self.0, &mut text);
        f.write_str(text.trim_end())
    }
}

/// The tokens a mutation inserts: the grammars' punctuation, arrows, literals (at and past the
/// limits of the integer types) and identifiers (options, roles, callbacks, keywords, names the
/// expansions use for their own items).
#[rustfmt::skip] // grouped by kind, several to a line
const VOCABULARY: &[&str] = &[
    // Punctuation and arrows.
    "->", "-", ">", "<", "=", "==", "=>", ";", ",", ":", "::", ".", "..", "..=", "&", "&&", "|",
    "||", "!", "?", "#", "*", "+", "/", "%", "@", "$", "'a", "'static", "-[partition = 1]->",
    "-[max_demand = 1]->", "-[]->", "-[selector = |e: &u64| e % 3 == 0]->",
    // Groups.
    "()", "[]", "{}", "(0)", "[A; 2]", "[B; 0]", "{ 1 }", "(&mut self)", "(&self)", "(2)",
    // Literals.
    "0", "1", "2", "3", "18446744073709551615", "18446744073709551616",
    "340282366920938463463374607431768211456", "-1", "1.5", "1e3", "\"s\"", "\"::genstage\"",
    "\"(\"", "\"\"", "'c'", "b'x'", "b\"x\"", "0x2", "0b11", "0o7", "1usize", "1u8", "256u8",
    "1i32", "10_000", "1_", "true", "false", "r\"x\"", "\"Self::gs\"", "\"gs<u8>\"",
    "\"renamed::gs\"",
    // The options, their values and the roles.
    "partition", "dispatcher", "broadcast", "demand", "producer", "consumer", "producer_consumer",
    "selector", "max_demand", "min_demand", "cancel", "temporary", "permanent", "transient",
    "restart", "redeliver", "max_restarts", "max_seconds", "buffer_size", "buffer_keep", "first",
    "last", "infinity", "infinite", "Infinity", "accumulate", "forward", "without_consumers", "stop", "wait", "crate",
    // The callbacks.
    "handle_events", "handle_demand", "handle_call", "handle_cast", "handle_info",
    "handle_subscribe", "handle_cancel", "handle_consumer_subscribe", "handle_consumer_cancel",
    "terminate", "subscribe_options", "producer_options",
    // Keywords, types and other names.
    "self", "Self", "super", "_", "mut", "async", "fn", "impl", "pub", "const", "unsafe", "where",
    "dyn", "move", "return", "for", "Vec", "Option", "Result", "Emit", "Demand", "ReplyTo",
    "Context", "StageResult", "usize", "u8", "u64", "r#type", "r#async", "A", "B", "a", "b", "x",
    "__pipeline", "__error", "__T0",
];

/// One edit of an input. Each number picks, modulo their count, among what exists when the edit
/// is made (a token, a place between tokens, a group, a vocabulary entry), so every mutation
/// applies to any input, and shrinking a number moves it to the first.
/// A choice among the things a mutation can act on: their number is `self.0` modulo their count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pick(pub(crate) u16);

#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    Delete(Pick),
    Duplicate(Pick),
    Swap(Pick, Pick),
    /// Inserts vocabulary entry `.1` at place `.0`.
    Insert(Pick, Pick),
    /// Replaces token `.0` by vocabulary entry `.1`.
    Replace(Pick, Pick),
    /// Replaces token `.0`, an identifier, a literal or a punctuation, by the `.1`th vocabulary
    /// entry of the same kind: the input mostly still parses, and what the checks after the
    /// parser see changes (an option's name or value, a role, a callback, a count).
    Retoken(Pick, Pick),
    /// Inserts at place `.0` a token tree `.1` of the corpus.
    Splice(Pick, Pick),
    /// Gives group `.0` the delimiter `.1`.
    Redelimit(Pick, Pick),
    /// Wraps the (up to) `.1` tokens from place `.0` in a new group with delimiter `.2`.
    Wrap(Pick, usize, Pick),
    /// Replaces group `.0` by its tokens.
    Unwrap(Pick),
}

const DELIMITERS: [Delimiter; 4] = [
    Delimiter::Parenthesis,
    Delimiter::Bracket,
    Delimiter::Brace,
    Delimiter::None,
];

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    let index = || any::<u16>().prop_map(Pick);
    prop_oneof![
        2 => index().prop_map(Mutation::Delete),
        1 => index().prop_map(Mutation::Duplicate),
        1 => (index(), index()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        4 => (index(), index()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        3 => (index(), index()).prop_map(|(a, b)| Mutation::Replace(a, b)),
        4 => (index(), index()).prop_map(|(a, b)| Mutation::Retoken(a, b)),
        2 => (index(), index()).prop_map(|(a, b)| Mutation::Splice(a, b)),
        1 => (index(), index()).prop_map(|(a, b)| Mutation::Redelimit(a, b)),
        1 => (index(), 0..4usize, index()).prop_map(|(a, n, d)| Mutation::Wrap(a, n, d)),
        1 => index().prop_map(Mutation::Unwrap),
    ]
}

/// What mutations draw from: the vocabulary, its one-token entries by kind, and every token tree
/// of the corpus.
pub(crate) struct Material {
    vocabulary: Vec<Vec<Tok>>,
    idents: Vec<Tok>,
    literals: Vec<Tok>,
    puncts: Vec<Tok>,
    donors: Vec<Tok>,
}

impl Material {
    pub(crate) fn new<'a>(corpus: impl IntoIterator<Item = &'a str>) -> Material {
        let mut donors = Vec::new();
        for text in corpus {
            collect_trees(&toks(text), &mut donors);
        }
        let mut vocabulary: Vec<Vec<Tok>> = VOCABULARY.iter().map(|text| toks(text)).collect();
        // Literals no source text makes, which another macro can hand on: negative ones.
        vocabulary.extend(
            [
                Literal::i64_unsuffixed(-1),
                Literal::i128_suffixed(i128::MIN),
                Literal::f64_unsuffixed(-1.5),
            ]
            .map(|literal| vec![Tok::Leaf(TokenTree::Literal(literal))]),
        );
        let single = |kind: fn(&TokenTree) -> bool| -> Vec<Tok> {
            vocabulary
                .iter()
                .filter_map(|entry| match entry.as_slice() {
                    [tok @ Tok::Leaf(tree)] if kind(tree) => Some(tok.clone()),
                    _ => None,
                })
                .collect()
        };
        Material {
            idents: single(|tree| matches!(tree, TokenTree::Ident(_))),
            literals: single(|tree| matches!(tree, TokenTree::Literal(_))),
            puncts: single(|tree| matches!(tree, TokenTree::Punct(_))),
            vocabulary,
            donors,
        }
    }
}

fn collect_trees(toks: &[Tok], out: &mut Vec<Tok>) {
    for tok in toks {
        out.push(tok.clone());
        if let Tok::Group(_, _, inner) = tok {
            collect_trees(inner, out);
        }
    }
}

/// The path of every token: its index in each enclosing group's tokens, outermost first.
fn token_paths(toks: &[Tok], prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    for (i, tok) in toks.iter().enumerate() {
        prefix.push(i);
        out.push(prefix.clone());
        if let Tok::Group(_, _, inner) = tok {
            token_paths(inner, prefix, out);
        }
        prefix.pop();
    }
}

fn all_paths(toks: &[Tok]) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    token_paths(toks, &mut Vec::new(), &mut out);
    out
}

/// Every place a token can go: (path of the enclosing group, empty for the top level; position).
fn places(toks: &[Tok]) -> Vec<(Vec<usize>, usize)> {
    let mut out: Vec<(Vec<usize>, usize)> = (0..=toks.len()).map(|i| (Vec::new(), i)).collect();
    for path in all_paths(toks) {
        if let Some(Tok::Group(_, _, inner)) = at(toks, &path) {
            out.extend((0..=inner.len()).map(|i| (path.clone(), i)));
        }
    }
    out
}

fn at<'a>(toks: &'a [Tok], path: &[usize]) -> Option<&'a Tok> {
    let (&last, outer) = path.split_last()?;
    let mut seq = toks;
    for &i in outer {
        match seq.get(i)? {
            Tok::Group(_, _, inner) => seq = inner,
            Tok::Leaf(_) => return None,
        }
    }
    seq.get(last)
}

/// The tokens of the group at `path` (the top level for an empty path).
fn seq_mut<'a>(toks: &'a mut Vec<Tok>, path: &[usize]) -> Option<&'a mut Vec<Tok>> {
    let mut seq = toks;
    for &i in path {
        match seq.get_mut(i)? {
            Tok::Group(_, _, inner) => seq = inner,
            Tok::Leaf(_) => return None,
        }
    }
    Some(seq)
}

/// The token at `path`: its enclosing tokens and its position in them.
fn parent_mut<'a>(toks: &'a mut Vec<Tok>, path: &[usize]) -> Option<(&'a mut Vec<Tok>, usize)> {
    let (&last, outer) = path.split_last()?;
    let seq = seq_mut(toks, outer)?;
    (last < seq.len()).then_some((seq, last))
}

fn pick<T: Clone>(items: &[T], pick: &Pick) -> Option<T> {
    (!items.is_empty()).then(|| items[usize::from(pick.0) % items.len()].clone())
}

fn delimiter(pick: &Pick) -> Delimiter {
    DELIMITERS[usize::from(pick.0) % DELIMITERS.len()]
}

fn group_paths(toks: &[Tok]) -> Vec<Vec<usize>> {
    all_paths(toks)
        .into_iter()
        .filter(|path| matches!(at(toks, path), Some(Tok::Group(..))))
        .collect()
}

impl Material {
    /// Applies `mutation` to `toks`; one that finds nothing to act on (a swap of a group with a
    /// token inside it, an unwrap without groups) leaves them as they are.
    pub(crate) fn apply(&self, toks: &mut Vec<Tok>, mutation: &Mutation) {
        match mutation {
            Mutation::Delete(token) => {
                if let Some(path) = pick(&all_paths(toks), token) {
                    if let Some((seq, i)) = parent_mut(toks, &path) {
                        seq.remove(i);
                    }
                }
            }
            Mutation::Duplicate(token) => {
                if let Some(path) = pick(&all_paths(toks), token) {
                    if let Some((seq, i)) = parent_mut(toks, &path) {
                        let copy = seq[i].clone();
                        seq.insert(i, copy);
                    }
                }
            }
            Mutation::Swap(a, b) => {
                let paths = all_paths(toks);
                let (Some(a), Some(b)) = (pick(&paths, a), pick(&paths, b)) else {
                    return;
                };
                if a.starts_with(&b) || b.starts_with(&a) {
                    return;
                }
                let (Some(tok_a), Some(tok_b)) = (at(toks, &a).cloned(), at(toks, &b).cloned())
                else {
                    return;
                };
                if let Some((seq, i)) = parent_mut(toks, &a) {
                    seq[i] = tok_b;
                }
                if let Some((seq, i)) = parent_mut(toks, &b) {
                    seq[i] = tok_a;
                }
            }
            Mutation::Insert(place, entry) => {
                if let Some(new) = pick(&self.vocabulary, entry) {
                    insert(toks, place, new);
                }
            }
            Mutation::Replace(token, entry) => {
                let (Some(path), Some(new)) =
                    (pick(&all_paths(toks), token), pick(&self.vocabulary, entry))
                else {
                    return;
                };
                if let Some((seq, i)) = parent_mut(toks, &path) {
                    seq.splice(i..=i, new);
                }
            }
            Mutation::Retoken(token, entry) => {
                let Some(path) = pick(&all_paths(toks), token) else {
                    return;
                };
                if let Some((seq, i)) = parent_mut(toks, &path) {
                    let same_kind = match &seq[i] {
                        Tok::Leaf(TokenTree::Ident(_)) => &self.idents,
                        Tok::Leaf(TokenTree::Literal(_)) => &self.literals,
                        Tok::Leaf(_) => &self.puncts,
                        Tok::Group(..) => return,
                    };
                    if let Some(new) = pick(same_kind, entry) {
                        seq[i] = new;
                    }
                }
            }
            Mutation::Splice(place, donor) => {
                if let Some(new) = pick(&self.donors, donor) {
                    insert(toks, place, vec![new]);
                }
            }
            Mutation::Redelimit(group, new) => {
                if let Some(path) = pick(&group_paths(toks), group) {
                    if let Some((seq, i)) = parent_mut(toks, &path) {
                        if let Tok::Group(old, _, _) = &mut seq[i] {
                            *old = delimiter(new);
                        }
                    }
                }
            }
            Mutation::Wrap(place, len, new) => {
                if let Some((path, i)) = pick(&places(toks), place) {
                    if let Some(seq) = seq_mut(toks, &path) {
                        let end = (i + len).min(seq.len());
                        let inner: Vec<Tok> = seq.drain(i..end).collect();
                        let group = Tok::Group(delimiter(new), Span::call_site(), inner);
                        seq.insert(i, group);
                    }
                }
            }
            Mutation::Unwrap(group) => {
                if let Some(path) = pick(&group_paths(toks), group) {
                    if let Some((seq, i)) = parent_mut(toks, &path) {
                        if let Tok::Group(_, _, inner) = seq[i].clone() {
                            seq.splice(i..=i, inner);
                        }
                    }
                }
            }
        }
    }

    /// `toks` with `mutations` applied in order.
    pub(crate) fn mutate(&self, mut toks: Vec<Tok>, mutations: &[Mutation]) -> Input {
        for mutation in mutations {
            self.apply(&mut toks, mutation);
        }
        Input(toks)
    }
}

fn insert(toks: &mut Vec<Tok>, place: &Pick, new: Vec<Tok>) {
    if let Some((path, i)) = pick(&places(toks), place) {
        if let Some(seq) = seq_mut(toks, &path) {
            seq.splice(i..i, new);
        }
    }
}

/// How many `compile_error` identifiers `tokens` holds, at any depth.
fn compile_errors(tokens: TokenStream) -> usize {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Ident(ident) if ident == "compile_error" => 1,
            TokenTree::Group(group) => compile_errors(group.stream()),
            _ => 0,
        })
        .sum()
}

/// Checks an expansion against the errors the macro found: each error has a message that names
/// no item of the expansion's own, and becomes one `compile_error!` of the output; no error, no
/// `compile_error!`. (No input of the corpus or the vocabulary writes `compile_error` itself.)
pub(crate) fn check_errors(
    error: Option<syn::Error>,
    output: &TokenStream,
) -> Result<(), TestCaseError> {
    let messages: Vec<String> = error
        .into_iter()
        .flat_map(|error| error.into_iter().map(|e| e.to_string()))
        .collect();
    for message in &messages {
        prop_assert!(!message.trim().is_empty(), "an error without a message");
        prop_assert!(
            !message.contains(PRIVATE_MODULE) && !message.contains("__private"),
            "an error names the hidden module: {message}"
        );
    }
    prop_assert_eq!(
        compile_errors(output.clone()),
        messages.len(),
        "one `compile_error!` per error; errors: {:?}; output: {}",
        messages,
        output
    );
    Ok(())
}

/// Runs `expand`, checking it takes less than [`TIME_LIMIT`].
pub(crate) fn timed<T>(what: &str, expand: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let start = Instant::now();
    let out = expand();
    let elapsed = start.elapsed();
    prop_assert!(
        elapsed < TIME_LIMIT,
        "{what} took {elapsed:?}, more than {TIME_LIMIT:?}"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(toks: &[Tok]) -> String {
        format!("{:?}", Input(toks.to_vec()))
    }

    #[test]
    fn render_tokenizes_back() {
        let source = "a -> [B; 2] -[max_demand = 1]-> { x: 'a' } 'b :: c";
        let rendered = text(&toks(source));
        assert_eq!(
            rendered,
            "a -> [B ; 2 ] - [max_demand = 1 ] -> { x : 'a' } 'b :: c"
        );
        assert_eq!(
            TokenStream::from_str(&rendered).unwrap().to_string(),
            TokenStream::from_str(source).unwrap().to_string()
        );
    }

    #[test]
    fn each_mutation_edits_as_documented() {
        let material = Material::new(["Z"]);
        let input = toks("a (b c) d");
        let first = || Pick(0);
        let mutate = |mutation: Mutation| text(&material.mutate(input.clone(), &[mutation]).0);
        // Paths in order: a, (b c), b, c, d.
        let nth = |n: u16| Pick(n);
        assert_eq!(mutate(Mutation::Delete(nth(1))), "a d");
        assert_eq!(mutate(Mutation::Delete(nth(3))), "a (b ) d");
        assert_eq!(mutate(Mutation::Duplicate(nth(2))), "a (b b c ) d");
        assert_eq!(mutate(Mutation::Swap(nth(0), nth(3))), "c (b a ) d");
        assert_eq!(mutate(Mutation::Swap(nth(1), nth(2))), "a (b c ) d");
        assert_eq!(mutate(Mutation::Insert(first(), first())), "-> a (b c ) d");
        assert_eq!(mutate(Mutation::Replace(nth(4), first())), "a (b c ) ->");
        assert_eq!(mutate(Mutation::Retoken(nth(3), first())), "a (b true ) d");
        assert_eq!(mutate(Mutation::Retoken(nth(1), first())), "a (b c ) d");
        assert_eq!(mutate(Mutation::Splice(first(), first())), "Z a (b c ) d");
        assert_eq!(mutate(Mutation::Redelimit(first(), Pick(3))), "a ⟦ b c ⟧ d");
        assert_eq!(mutate(Mutation::Wrap(first(), 2, Pick(1))), "[a (b c ) ] d");
        assert_eq!(mutate(Mutation::Unwrap(first())), "a b c d");
    }
}
