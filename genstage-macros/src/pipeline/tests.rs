//! The parser and the checks never panic: each malformed input gives an error, placed at the
//! offending tokens (proc-macro2's `span-locations` gives real positions in unit tests).

use std::str::FromStr;

use proc_macro2::{LineColumn, TokenStream};

use super::try_expand;

/// Expands `input`; the error, if any.
fn error_of(input: &str) -> Option<syn::Error> {
    let tokens = TokenStream::from_str(input).expect("test inputs tokenize");
    let mut krate = quote::quote!(::genstage);
    try_expand(tokens, &mut krate).err()
}

/// The position of the `nth` (0-based) occurrence of `snippet` in the single-line `input`.
fn position(input: &str, snippet: &str, nth: usize) -> LineColumn {
    let (offset, _) = input
        .match_indices(snippet)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{snippet}` occurs {} times in `{input}`", nth + 1));
    LineColumn {
        line: 1,
        column: input[..offset].chars().count(),
    }
}

/// Each case: the input, where its error starts (snippet and which occurrence), and a piece of
/// the message.
const MALFORMED: &[(&str, &str, usize, &str)] = &[
    // Arrows without stages.
    ("->", "->", 0, "expected a stage before `->`"),
    ("-> A", "->", 0, "expected a stage before `->`"),
    ("A ->", "->", 0, "expected a stage after `->`"),
    ("A -> B ->", "->", 1, "expected a stage after `->`"),
    (
        "A -> -> B",
        "->",
        0,
        "expected a stage between these arrows",
    ),
    (
        "A -[max_demand = 1]->",
        "-[",
        0,
        "expected a stage after `->`",
    ),
    ("A -> B; -> C", "->", 1, "expected a stage before `->`"),
    // Stray tokens and lone stages.
    ("A -> B C", "C", 0, "unexpected tokens after this stage"),
    ("A B -> C", "B", 0, "unexpected tokens after this stage"),
    ("A => B", "=>", 0, "unexpected tokens after this stage"),
    ("A", "A", 0, "expected `->` after this stage"),
    ("A -> B; C", "C", 0, "expected `->` after this stage"),
    ("a = A; a -> B; a", "a", 2, "`a` alone does nothing"),
    ("A - > B", ">", 0, "expected"),
    ("fn f() {} -> A", "fn", 0, "expected"),
    // Groups.
    (
        "A -> [B;]",
        "]",
        0,
        "expected the number of instances after `;`",
    ),
    ("A -> [B]", "[B]", 0, "expected `[stage; count]`"),
    ("A -> []", "[]", 0, "expected `[stage; count]`"),
    ("A -> [[[;]]]", "[[[;]]]", 0, "expected `[stage; count]`"),
    (
        "A -> [B; 2 3]",
        "3",
        0,
        "unexpected tokens after the number of instances",
    ),
    ("A -> [; 2]", ";", 0, "expected"),
    (
        "A -> [B; 0]",
        "0",
        0,
        "the number of instances must be at least 1",
    ),
    // Names.
    ("x = ; A -> B", "=", 0, "expected a stage after `x =`"),
    (
        "x = A; x = B; x -> C",
        "x",
        1,
        "the stage name `x` is already defined",
    ),
    (
        "a = A; b = a; a -> b",
        "b = a",
        0,
        "`a` already names a stage",
    ),
    (
        "a = A; [a; 2] -> B",
        "[a; 2]",
        0,
        "names one stage and cannot be repeated",
    ),
    (
        "self = A; self -> B",
        "self",
        0,
        "is a keyword and cannot name a stage",
    ),
    // Wiring.
    (
        "a = A; b = B; a -> b -> a",
        "-> a",
        0,
        "closes a cycle: `a -> b -> a`",
    ),
    ("a = A; a -> a", "-> a", 0, "closes a cycle: `a -> a`"),
    (
        "a = A; b = B; a -> b; a -> b",
        "-> b",
        1,
        "`b` is already wired after `a`",
    ),
    // A variable holds one stage.
    (
        "A -> sink; B -> sink",
        "sink",
        1,
        "`sink` is used as a stage a second time",
    ),
    (
        "a = sink; b = sink; A -> a; B -> b",
        "sink",
        1,
        "name it, e.g. `sink = sink;`",
    ),
    // Edge options.
    (
        "A -[max_demand = 0]-> B",
        "0",
        0,
        "`max_demand` must be at least 1",
    ),
    // The same rules and words as `#[stage]`'s (`options.rs`).
    (
        "A -[max_demand = 10, min_demand = 10]-> B",
        "10",
        1,
        "`min_demand` must be less than `max_demand`, which is 10; got 10",
    ),
    (
        "A -[min_demand = 20, max_demand = 10]-> B",
        "20",
        0,
        "`min_demand` must be less than `max_demand`, which is 10; got 20",
    ),
    (
        "A -[max_demand = \"ten\"]-> B",
        "\"ten\"",
        0,
        "`max_demand` is a number of events (a `usize`), not this literal",
    ),
    ("A -[foo = 1]-> B", "foo", 0, "unknown edge option `foo`"),
    ("A -[]-> B", "[]", 0, "sets no option"),
    (
        "A -[max_demand]-> B",
        "max_demand",
        0,
        "expected `=` and a value",
    ),
    (
        "A -[max_demand =]-> B",
        "=",
        0,
        "expected a value after `max_demand =`",
    ),
    (
        "A -[max_demand = , min_demand = 1]-> B",
        "=",
        0,
        "expected a value",
    ),
    (
        "A -[cancel = sometimes]-> B",
        "sometimes",
        0,
        "unknown cancel mode `sometimes`",
    ),
    (
        "A -[cancel = 1]-> B",
        "1",
        0,
        "`cancel` is `permanent`, `transient` or `temporary`",
    ),
    (
        "A -[max_demand = 1, max_demand = 2]-> B",
        "max_demand",
        1,
        "duplicate option",
    ),
    (
        "A -[cancel = temporary, cancel = permanent]-> B",
        "cancel",
        1,
        "duplicate option",
    ),
    ("A -[, ]-> B", ",", 0, "expected an edge option"),
    (
        "A -[max_demand = 99999999999999999999999999]-> B",
        "9",
        0,
        "`max_demand` is a number of events (a `usize`); `99999999999999999999999999` is too large",
    ),
    // Dispatcher options.
    (
        "A -[partition = 0]-> [B; 2]",
        "partition",
        0,
        "`partition` gives one partition of `A` to one consumer, but `B` is a group: wire it with `->` to give instance `i` partition `i`",
    ),
    (
        "A -[partition = 0]-> bs; bs = [B; n]",
        "partition",
        0,
        "but `bs` is a group",
    ),
    (
        "A -[selector = |e: &u64| *e > 1, partition = 0]-> B",
        "partition",
        0,
        "an edge takes a `selector` (from a stage that broadcasts) or a `partition` (from a partitioned stage), not both",
    ),
    (
        "A -[partition = 0, selector = f]-> B",
        "selector",
        0,
        "not both",
    ),
    (
        "A -[partition = 0, partition = 1]-> B",
        "partition",
        1,
        "duplicate option `partition`",
    ),
    (
        "A -[selector = f, selector = g]-> B",
        "selector",
        1,
        "duplicate option `selector`",
    ),
    (
        "A -[partition = \"1\"]-> B",
        "\"1\"",
        0,
        "`partition` is the index of a partition (a `usize`, from 0), not this literal",
    ),
    (
        "A -[partition = 99999999999999999999999999]-> B",
        "9",
        0,
        "`99999999999999999999999999` is too large",
    ),
    // The crate override.
    (
        "A -> B; crate = ::genstage",
        "crate",
        0,
        "must be the first statement",
    ),
    (
        "crate = ; A -> B",
        "=",
        0,
        "expected the path of the genstage crate",
    ),
    ("crate = 1; A -> B", "1", 0, "expected"),
    // Found by the fuzzer: the expansion's `use` cannot go through `Self`.
    (
        "crate = Self::gs; A -> B",
        "Self",
        0,
        "`Self` names a type, not a crate: `crate =` takes the path of the genstage crate, e.g. `crate = ::genstage;`",
    ),
    ("crate = gs::<u8>; A -> B", "<", 0, "expected path segment after `::`"),
];

#[test]
fn each_malformed_input_gets_an_error_at_the_offending_tokens() {
    for &(input, snippet, nth, message) in MALFORMED {
        let error = error_of(input).unwrap_or_else(|| panic!("`{input}` was accepted"));
        let text = error.to_string();
        assert!(
            text.contains(message),
            "`{input}`: expected a message containing {message:?}, got {text:?}"
        );
        assert_eq!(
            error.span().start(),
            position(input, snippet, nth),
            "`{input}`: the error `{text}` is not at `{snippet}` #{nth}"
        );
    }
}

#[test]
fn an_empty_pipeline_is_an_error_about_the_whole_call() {
    for input in ["", ";", ";;"] {
        let error = error_of(input).unwrap_or_else(|| panic!("`{input}` was accepted"));
        assert!(error.to_string().starts_with("empty pipeline"), "{error}");
    }
}

/// A definition no chain uses is checked against its stage's type: only a producer whose
/// `#[stage]` says `without_consumers = wait` may stand alone (a definition wired is not checked).
#[test]
fn a_definition_never_wired_must_be_a_producer_that_waits() {
    let expansion = expansion_of("x = A; A -> B");
    assert!(
        expansion.contains("the stage `x` is never wired"),
        "{expansion}"
    );
    assert!(expansion.contains("Waits"), "{expansion}");
    let expansion = expansion_of("x = A; x -> B");
    assert!(!expansion.contains("never wired"), "{expansion}");
}

#[test]
fn independent_mistakes_are_all_reported() {
    let error = error_of("A -[foo = 1]-> [B; 0]; A -> D; E -[max_demand = 0]-> F").unwrap();
    let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
}

#[test]
fn well_formed_inputs_expand() {
    for input in [
        "from_iter(0..10u64) -> Evens -> [Printer; 2]",
        "a = A; b = B; a -> b; c = [C; n + 1]; b -> c;",
        "A -[max_demand = 10, min_demand = 5, cancel = temporary]-> B",
        "A -[max_demand = m, min_demand = m - 1,]-> B",
        "evens -> C; A -> evens = Evens",
        "printer = printer; A -> printer",
        "A -> Printer; B -> Printer; C -> [Printer; 2]",
        "crate = ::genstage; A -> B",
        "[A { x: 1 }; 2] -> (B) -> |x| x",
    ] {
        assert!(
            error_of(input).is_none(),
            "`{input}`: {:?}",
            error_of(input)
        );
    }
}

/// Every short sequence over an alphabet of pieces, valid or not: no panic, and every error has a
/// message.
#[test]
fn no_input_makes_the_macro_panic() {
    const PIECES: &[&str] = &[
        "A",
        "x",
        "->",
        "-",
        ">",
        ";",
        "=",
        "[A; 2]",
        "[A;]",
        "[A; 0]",
        "-[]->",
        "-[cancel = temporary]->",
        "-[max_demand = 0]->",
        "-[partition = 1]->",
        "-[selector = f, partition = 0]->",
        "(A)",
        "x = A",
        "crate = ::g",
        "self",
    ];
    let mut inputs: Vec<String> = vec![String::new()];
    for _ in 0..3 {
        let mut longer = Vec::new();
        for input in &inputs {
            for piece in PIECES {
                longer.push(format!("{input} {piece}"));
            }
        }
        inputs.extend(longer);
    }
    inputs.sort();
    inputs.dedup();
    for input in &inputs {
        if let Some(error) = error_of(input) {
            assert!(!error.to_string().is_empty(), "`{input}`");
        }
        // The whole macro, its value on a mistake included.
        let tokens = TokenStream::from_str(input).expect("test inputs tokenize");
        assert!(!super::expand_pipeline(tokens).is_empty(), "`{input}`");
    }
}

/// The names `input` defines, read from its tokens, as for the value of a failed `pipeline!`.
fn names_in(input: &str) -> Vec<String> {
    let tokens = TokenStream::from_str(input).expect("test inputs tokenize");
    super::parse::defined_names(tokens)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_names_of_a_pipeline_are_read_from_its_tokens_even_when_it_does_not_parse() {
    let cases: &[(&str, &[&str])] = &[
        ("a = A -> b = [B; 2]; a -> c = C", &["a", "b", "c"]),
        // Every statement, the malformed ones included.
        ("a = A -> B B; b = C -> ; c = ", &["a", "b", "c"]),
        ("a = A; a = B; a -> C", &["a"]),
        ("r#type = A -> B", &["r#type"]),
        // Not names: the crate path, a keyword, comparisons, options, what is inside a stage.
        ("crate = ::g; A -> B", &[]),
        ("type = A -> B", &[]),
        ("x == y -> A; x <= y -> B; x >= y -> C", &[]),
        ("A -[max_demand = 1]-> B", &[]),
        ("A -> B { x = 1 } -> f(y = 2)", &[]),
        (
            "A -> Fwd::<fn() -> u64>::new() -> f = |n| -> u64 { n } -> B",
            &["f"],
        ),
    ];
    for &(input, expected) in cases {
        assert_eq!(names_in(input), expected, "`{input}`");
    }
}

/// A failed `pipeline!` with names is still a value with their fields: each holds the value of the
/// first error's `compile_error!`, and the errors are there once each.
#[test]
fn a_failed_pipeline_with_names_keeps_its_fields() {
    // Two mistakes, two errors.
    let tokens = TokenStream::from_str("a = A -> B B; b = [C; 0] D -> E").expect("tokenizes");
    let expansion = super::expand_pipeline(tokens).to_string();
    assert_eq!(expansion.matches("compile_error").count(), 2, "{expansion}");
    assert_eq!(expansion.matches("let __error").count(), 1, "{expansion}");
    assert!(
        expansion.contains("let __error = :: core :: compile_error !"),
        "{expansion}"
    );
    assert!(expansion.contains("pub a : __T0"), "{expansion}");
    assert!(expansion.contains("pub b : __T1"), "{expansion}");
    assert!(expansion.contains("a : __error"), "{expansion}");

    // Without names, an empty `Pipeline`, as before.
    let tokens = TokenStream::from_str("A -> B B").expect("tokenizes");
    let expansion = super::expand_pipeline(tokens).to_string();
    assert!(!expansion.contains("__NamedPipeline"), "{expansion}");
    assert!(
        expansion.contains(":: genstage :: Pipeline :: new ()"),
        "{expansion}"
    );
}

/// The value of a well-formed pipeline: a `Pipeline` without names; with names, the struct with a
/// field per name, and the pipeline's own field named apart from them.
#[test]
fn named_stages_become_fields_of_the_value() {
    let expansion = expansion_of("A -> B");
    assert!(!expansion.contains("__NamedPipeline"), "{expansion}");
    let expansion = expansion_of("queue = Queue::default() -> workers = [Worker; 4]");
    assert!(expansion.contains("pub queue : __T0"), "{expansion}");
    assert!(expansion.contains("pub workers : __T1"), "{expansion}");
    assert!(
        expansion.contains("__pipeline : :: genstage :: Pipeline"),
        "{expansion}"
    );
    let expansion = expansion_of("__pipeline = A -> B");
    assert!(expansion.contains("pub __pipeline : __T0"), "{expansion}");
    assert!(
        expansion.contains("__pipeline_ : :: genstage :: Pipeline"),
        "{expansion}"
    );
}

/// The stages of each statement of `input`, as text.
fn pieces_of(input: &str) -> Vec<Vec<String>> {
    let tokens = TokenStream::from_str(input).expect("test inputs tokenize");
    let parsed = super::parse::parse_pipeline(tokens)
        .unwrap_or_else(|error| panic!("`{input}` does not parse: {error}"));
    parsed
        .statements
        .iter()
        .map(|statement| {
            std::iter::once(&statement.first)
                .chain(statement.links.iter().map(|(_, node)| node))
                .map(|node| node.tokens.to_string().replace(' ', ""))
                .collect()
        })
        .collect()
}

#[test]
fn an_arrow_inside_generic_arguments_or_a_closure_signature_is_not_a_link() {
    let cases: &[(&str, &[&str])] = &[
        (
            "Counter::new() -> Fwd::<fn() -> u64>::new() -> Printer",
            &["Counter::new()", "Fwd::<fn()->u64>::new()", "Printer"],
        ),
        (
            "A -> Fwd::<Vec<fn(u8) -> Vec<u64>>>::new() -> B",
            &["A", "Fwd::<Vec<fn(u8)->Vec<u64>>>::new()", "B"],
        ),
        (
            "<Fwd<fn() -> u64> as Default>::default() -> B",
            &["<Fwd<fn()->u64>asDefault>::default()", "B"],
        ),
        (
            "from_iter((0..3).map(|n| -> u64 { n })) -> B",
            &["from_iter((0..3).map(|n|->u64{n}))", "B"],
        ),
        (
            "A -> f = |n| -> u64 { n } -> B",
            &["A", "f=|n|->u64{n}", "B"],
        ),
        (
            "A -> f = move || -> u64 { 1 } -> B",
            &["A", "f=move||->u64{1}", "B"],
        ),
        // A comparison is not a generic argument: the arrow after it is a link.
        ("A -> [B; x < y] -> C", &["A", "[B;x<y]", "C"]),
        ("A -> B::new(a < b) -> C", &["A", "B::new(a<b)", "C"]),
        (
            "A -[max_demand = 2]-> Fwd::<fn() -> u64>::new() -[min_demand = 1]-> B",
            &["A", "Fwd::<fn()->u64>::new()", "B"],
        ),
    ];
    for &(input, expected) in cases {
        assert_eq!(pieces_of(input), vec![expected.to_vec()], "`{input}`");
        assert!(
            error_of(input).is_none(),
            "`{input}`: {:?}",
            error_of(input)
        );
    }
}

/// The expansion of a well-formed `input`, as text.
fn expansion_of(input: &str) -> String {
    let tokens = TokenStream::from_str(input).expect("test inputs tokenize");
    let mut krate = quote::quote!(::genstage);
    try_expand(tokens, &mut krate)
        .unwrap_or_else(|error| panic!("`{input}`: {error}"))
        .to_string()
}

#[test]
fn a_constant_group_count_gets_a_const_assertion_and_any_other_a_run_time_check() {
    for input in [
        "A -> [B; WORKERS]",
        "A -> [B; config::MAX_2]",
        "A -> [B; Z]",
    ] {
        let expansion = expansion_of(input);
        assert!(
            expansion.contains("const _ : () = :: core :: assert !"),
            "`{input}`"
        );
        assert!(expansion.contains("empty_group"), "`{input}`");
    }
    for input in [
        "A -> [B; n]",
        "A -> [B; Self::N]",
        "A -> [B; { N }]",
        "A -> [B; n + 1]",
    ] {
        let expansion = expansion_of(input);
        assert!(!expansion.contains(":: core :: assert !"), "`{input}`");
        assert!(expansion.contains("empty_group"), "`{input}`");
    }
}

#[test]
fn a_literal_min_demand_is_checked_against_a_consumer_written_as_its_type() {
    for input in [
        "A -[min_demand = 1000]-> Printer",
        "A -[min_demand = 10]-> p; p = [Printer; 2]",
    ] {
        let expansion = expansion_of(input);
        assert!(expansion.contains("max_demand_of"), "`{input}`");
        assert!(
            expansion.contains("DemandMessage :: min_demand"),
            "`{input}`"
        );
    }
    for input in [
        "A -[min_demand = 10]-> Printer::new()",
        // A struct literal's type may be generic, its parameters inferred: it cannot be named.
        "A -[min_demand = 10]-> Printer { id: 1 }",
        "A -[min_demand = 10]-> stages::Printer",
        "A -[min_demand = 10]-> printer",
        "A -[min_demand = 10]-> PRINTER",
        "A -[min_demand = m]-> Printer",
        "A -[max_demand = 20, min_demand = 10]-> Printer",
        "A -> Printer",
    ] {
        assert!(!expansion_of(input).contains("max_demand_of"), "`{input}`");
    }
}

#[test]
fn a_literal_max_demand_is_checked_against_a_consumer_written_as_its_type() {
    for input in [
        "A -[max_demand = 4]-> Printer",
        "A -[max_demand = 4]-> p; p = [Printer; 2]",
    ] {
        let expansion = expansion_of(input);
        assert!(expansion.contains("min_demand_of"), "`{input}`");
        assert!(
            expansion.contains("DemandMessage :: max_demand"),
            "`{input}`"
        );
        assert!(!expansion.contains("max_demand_of"), "`{input}`");
    }
    for input in [
        "A -[max_demand = 4]-> Printer::new()",
        "A -[max_demand = 4]-> Printer { id: 1 }",
        "A -[max_demand = 4]-> stages::Printer",
        "A -[max_demand = 4]-> printer",
        "A -[max_demand = m]-> Printer",
        "A -[max_demand = 20, min_demand = 10]-> Printer",
    ] {
        assert!(!expansion_of(input).contains("min_demand_of"), "`{input}`");
    }
}

#[test]
fn every_edge_is_checked_against_its_producers_dispatcher() {
    let checks = |input: &str| {
        let expansion = expansion_of(input);
        [
            "Selector",
            "Partitioned",
            "PartitionIndex",
            "OnePartition",
            "Group",
        ]
        .into_iter()
        .filter(|check| expansion.contains(&format!("trait {check}")))
        .collect::<Vec<_>>()
    };
    assert_eq!(checks("A -> B"), ["OnePartition"]);
    assert_eq!(checks("A -> [B; 2]"), ["Group"]);
    // A group of a size that is not a literal is checked by `run()`.
    assert!(checks("A -> [B; n]").is_empty());
    assert_eq!(checks("A -[selector = |e: &u64| *e > 1]-> B"), ["Selector"]);
    assert_eq!(checks("A -[selector = f]-> [B; 2]"), ["Selector"]);
    assert_eq!(
        checks("A -[partition = 1]-> B"),
        ["Partitioned", "PartitionIndex"]
    );
    assert_eq!(checks("A -[partition = i]-> B"), ["Partitioned"]);
    let expansion = expansion_of("A -[partition = 1]-> B");
    assert!(expansion.contains("HasPartition < 1 >"), "{expansion}");
    let expansion = expansion_of("A -> [B; 3]");
    assert!(expansion.contains("Is < 3 >"), "{expansion}");
}

#[test]
fn a_group_takes_one_partition_per_instance_and_a_selector_is_evaluated_once_per_edge() {
    let expansion = expansion_of("A -> [B; 2]");
    assert!(expansion.contains("instance_options"), "{expansion}");
    assert!(expansion.contains("enumerate"), "{expansion}");
    // A single consumer, or a group whose edge names its partition (an error), takes the edge's.
    assert!(!expansion_of("A -> B").contains("instance_options"));
    assert!(!expansion_of("A -[partition = 1]-> B").contains("instance_options"));
    let expansion = expansion_of("[A; 2] -[selector = |e: &u64| *e > 1]-> [B; 3]");
    assert_eq!(
        expansion.matches("selector (& __stage0").count(),
        1,
        "{expansion}"
    );
    assert!(expansion.contains("events_selected"), "{expansion}");
    assert!(!expansion.contains("events_of"), "{expansion}");
}

#[test]
fn a_stage_expression_that_stands_alone_is_added_with_a_constructor() {
    // Each call of `add_rebuilt` (a constructor) or `add_stage` (a value), in node order.
    let adds = |input: &str| -> Vec<&'static str> {
        let expansion = expansion_of(input);
        let mut adds: Vec<(usize, &'static str)> = Vec::new();
        for (call, kind) in [
            ("Stage :: add_rebuilt (", "rebuilt"),
            ("Stage :: add_stage (", "value"),
        ] {
            adds.extend(expansion.match_indices(call).map(|(at, _)| (at, kind)));
        }
        adds.sort_unstable();
        adds.into_iter().map(|(_, kind)| kind).collect()
    };
    assert_eq!(
        adds("genstage::from_iter(0..10) -> Counter::new(0) -> Worker"),
        ["rebuilt", "rebuilt", "rebuilt"]
    );
    // A bare-named call may be of a local closure: evaluated once.
    assert_eq!(
        adds("from_iter(0..10) -> make() -> Worker"),
        ["value", "value", "rebuilt"]
    );
    assert_eq!(
        adds("Queue::new(rx) -> Worker::new(cfg.clone()) -> Counter { next: 0, end }"),
        ["value", "value", "value"]
    );
    assert_eq!(
        adds("q = Queue::new(rx); q -> [Flaky { fail_on: 3 }; 2]"),
        ["value", "rebuilt"]
    );
    // A rebuilt stage's expression is the body of a closure, evaluated once for the first value.
    let expansion = expansion_of("genstage::from_iter(0..10) -> Worker");
    assert!(
        expansion.contains(
            "let __build = move || genstage :: from_iter (0 .. 10) ; let __value = __build () ;"
        ),
        "{expansion}"
    );
    assert_eq!(
        expansion.matches("from_iter (0 .. 10)").count(),
        1,
        "{expansion}"
    );
    let expansion = expansion_of("Queue::new(rx) -> Worker");
    assert!(
        expansion.contains("let __value = Queue :: new (rx) ;"),
        "{expansion}"
    );
}

/// Every edge into a stage fed by several producers carries the note that names them, so the note
/// names at most eight: with all of them, a fan-in's expansion would grow with its square.
#[test]
fn the_fan_in_note_names_at_most_eight_producers() {
    let note = |producers: usize| {
        let input: String = (0..producers).map(|i| format!("P{i} -> c; ")).collect();
        let tokens = TokenStream::from_str(&format!("c = C; {input}")).expect("tokenizes");
        let expansion = super::expand_pipeline(tokens).to_string();
        let start = expansion.find("`c` is fed by").expect("a note");
        let end = start + expansion[start..].find('"').expect("the note's end");
        (
            expansion[start..end].to_owned(),
            expansion.matches("`c` is fed by").count(),
        )
    };
    assert_eq!(
        note(2),
        (
            "`c` is fed by `P0` and `P1`: each of them must emit `{In}`".to_owned(),
            2
        )
    );
    assert_eq!(
        note(8).0,
        "`c` is fed by `P0`, `P1`, `P2`, `P3`, `P4`, `P5`, `P6` and `P7`: each of them must emit `{In}`"
    );
    assert_eq!(
        note(11),
        (
            "`c` is fed by `P0`, `P1`, `P2`, `P3`, `P4`, `P5`, `P6`, `P7`, and 3 more: each of them must emit `{In}`".to_owned(),
            11
        )
    );
}

/// A failed `pipeline!` under `crate = path;` names that crate in its value, not `::genstage`,
/// which a crate that renamed genstage does not have: else a syntax error anywhere in the
/// pipeline gives a second error, "cannot find `genstage` in the crate root".
#[test]
fn a_failed_pipeline_names_the_crate_of_its_override() {
    for input in [
        "crate = gs; Nums ->",
        "crate = gs; n = Nums; n ->",
        "crate = ::gs::inner; A -> B B",
        // `#[stage]`'s form: reported, and still the crate meant.
        "crate = \"gs\"; A -> B",
    ] {
        let tokens = TokenStream::from_str(input).expect("tokenizes");
        let expansion = super::expand_pipeline(tokens).to_string();
        assert!(!expansion.contains("genstage"), "`{input}`: {expansion}");
        assert!(expansion.contains("gs ::"), "`{input}`: {expansion}");
        assert_eq!(
            expansion.matches("compile_error").count(),
            1,
            "`{input}`: {expansion}"
        );
    }
}

/// `crate = "gs";`, the form `#[stage]` takes, is told apart from other malformed paths.
#[test]
fn a_string_crate_path_says_that_pipeline_takes_a_path() {
    let input = "crate = \"gs\"; A -> B";
    let error = error_of(input).expect("an error");
    assert_eq!(
        error.to_string(),
        "`crate =` in `pipeline!` takes a path, not a string: `crate = gs;` (a string is `#[stage]`'s form, `crate = \"gs\"`)"
    );
    assert_eq!(error.span().start(), position(input, "\"gs\"", 0));
}

/// Each node hands its handle to its checks through the probe of its stage's type (see
/// `__private::checked`): a stage that fails its `Stage` bound is reported once, by `add_stage`,
/// and its role and edge checks see a handle they accept.
#[test]
fn every_node_hands_its_checks_its_handle_through_the_probe_of_its_stage() {
    for input in ["A -> B", "A -> [B; 2]"] {
        let expansion = expansion_of(input);
        assert_eq!(
            expansion
                .matches("checked :: stage_probe (& __value)")
                .count(),
            2,
            "{expansion}"
        );
        assert_eq!(expansion.matches(". checked (").count(), 2, "{expansion}");
        assert!(
            expansion.contains("checked :: { CheckedStage as _ , UncheckedStage as _ }"),
            "{expansion}"
        );
    }
}
