//! `pipeline!` on mutated valid pipelines (see `crate::fuzz`): it returns, quickly, with one
//! `compile_error!` per error, and its expansion, accepted or not, parses as an expression.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{expand_pipeline, try_expand};
use crate::fuzz::{self, check_errors, timed, Input, Material};

/// Valid `pipeline!` inputs: chains, groups, names, edge options, fan-in and fan-out, the crate
/// override, in the forms the examples, the README and the tests write them.
const CORPUS: &[&str] = &[
    "Counter { next: 0, end } -> Evens -> [Printer::next(); 2]",
    "from_iter(0..10u64) -> Sink",
    "from_iter(0..1_000u64) -> Evens -> [Collect::new(&seen, &ids); 2]",
    "Orders { next: 0, count: 10_000 } -> Ledger::default() -> [Shipping::default(); 3]",
    "[from_iter(0..50u64); 2] -> [Forward::new(); 3] -> Collect::new(&seen, &ids)",
    "[{ next += 10; from_iter(next - 10..next) }; 3] -> Collect::new(&seen, &ids)",
    "from_iter(0..5u64) -> sinks = [Collect::new(&seen, &ids); workers]",
    "from_iter(0..90u64) -> [Collect::new(&seen, &ids); workers.len()]",
    "Hexa { next: 0, end: 100 } -> [Keep::new(&all); 0x2]",
    "One { next: 0, end: 30 } -[partition = 0]-> Keep::new(&all)",
    "numbers = from_iter(0..10u64) -> sink = Collect::new(&seen, &ids)",
    "numbers = from_iter(0..10u64);
     numbers -> Evens -> workers = [Collect::new(&seen, &ids); 3];
     numbers -> all = received.collector();",
    "split = Parity(Numbers::upto(10));
     split -[partition = 0, max_demand = 4]-> even = received.collector();
     split -[partition = 1usize, max_demand = 3, min_demand = 1]-> odd = received.collector();",
    "numbers = Broadcast(Numbers::upto(100));
     numbers -[selector = |n: &u64| *n >= 40]-> high = received.collector();
     numbers -[selector = |e: &u64| e % 3 == 0]-> thirds = received.collector();",
    "Broadcast(Numbers::upto(300)) -[selector = |n: &u64| n.is_multiple_of(3)]-> [received.collector(); 2]",
    "from_iter(0..40u64) -> Echo -[selector = move |e: &u64| *e >= 20]-> [Keep::new(&all); n]",
    "from_iter(0..100u64) -[min_demand = 999]-> PassOn -[min_demand = 6]-> Tally { seen: seen.clone() }",
    "from_iter(0..200u64) -> Evens -[max_demand = 10, min_demand = 5,]-> [Rendezvous { seen }; 2]",
    "broken = Broken; broken -[cancel = temporary]-> sink = Sink; from_iter(0..3u64) -> broken;",
    "out = Collect::new(&seen, &ids); from_iter(0..30u64) -> out; from_iter(100..110u64) -> out",
    "queue = Queue::default() -> [Worker::next(); 4]",
    "queue = Queue::default(); queue -[max_demand = 4, min_demand = 0]-> jobs = ConsumerSupervisor::new(square)",
    "from_iter((0..6u64).map(|n| -> u64 { n * 10 })) -> Tagged::<fn() -> u64>::new() -> Sink",
    "from_iter(0..30u64) -> Keyed::<u64, 2> { key: |e: &u64| (*e / 10) as usize } -> [Keep::new(&all); 2]",
    "crate = renamed::gs; from_iter(0..3u64) -> Collect(total.clone())",
    "from_stream(futures::stream::iter(0..1000u64)) -> collect",
    "Numbers::up_to(60) -> Slow { handled: 0 }",
    "numbers = from_iter(0..10u64); numbers -> Tap -> Collect(total.clone()); numbers -> [Collect(total.clone()); 2];",
    "r#type = from_iter(0..3u64) -> Collect::new(&seen, &ids)",
];

fn material() -> Material {
    Material::new(CORPUS.iter().copied())
}

/// An entry of the corpus with 1 to 3 mutations.
fn pipeline_case() -> impl Strategy<Value = Input> {
    let material = material();
    (
        0..CORPUS.len(),
        prop::collection::vec(fuzz::mutation(), 1..=3),
    )
        .prop_map(move |(entry, mutations)| {
            let mut toks = fuzz::toks(CORPUS[entry]);
            for mutation in &mutations {
                material.apply(&mut toks, mutation);
            }
            Input(toks)
        })
}

/// `pipeline!` returns on the input, in time, with its errors as `compile_error!`s, and expands
/// to an expression that parses.
fn check(input: &Input) -> Result<(), TestCaseError> {
    let tokens = input.stream();
    let (result, output) = timed("pipeline!", || {
        let mut krate = quote::quote!(::genstage);
        (
            try_expand(tokens.clone(), &mut krate),
            expand_pipeline(tokens),
        )
    })?;
    check_errors(result.err(), &output)?;
    if let Err(e) = syn::parse2::<syn::Expr>(output.clone()) {
        return Err(TestCaseError::fail(format!(
            "the expansion does not parse as an expression ({e}): {output}"
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn pipeline_never_panics_on_mutated_pipelines(input in pipeline_case()) {
        check(&input)?;
    }
}

/// The corpus is valid: each entry expands without an error (so the mutations start from
/// pipelines the macro accepts).
#[test]
fn the_corpus_is_accepted() {
    for text in CORPUS {
        let input = Input(fuzz::toks(text));
        let mut krate = quote::quote!(::genstage);
        if let Err(error) = try_expand(input.stream(), &mut krate) {
            let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
            panic!("{input:?}: {messages:?}");
        }
        if let Err(error) = check(&input) {
            panic!("{input:?}: {error}");
        }
    }
}

/// Inputs the property once failed on, each with what was wrong.
const REGRESSIONS: &[&str] = &[
    // `crate = Self::gs;` gave `use Self::gs::…`, which does not parse: now an error at `Self`.
    "crate = Self::gs; from_iter(0..3u64) -> Collect(total.clone())",
];

#[test]
fn regressions() {
    for text in REGRESSIONS {
        let input = Input(fuzz::toks(text));
        if let Err(error) = check(&input) {
            panic!("{input:?}: {error}");
        }
    }
}

/// A stage: a definition or use of a name from a small pool (so that names repeat, fan in, fan
/// out and close cycles), or an anonymous stage or group of some size.
fn stage() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "b", "c", "d"]);
    let expr = prop::sample::select(vec![
        "A",
        "B::new()",
        "from_iter(0..3u64)",
        "Keep::new(&all)",
        "|e: u64| e",
        "{ n += 1; C(n) }",
    ]);
    let count = prop::sample::select(vec![
        "0",
        "1",
        "2",
        "3",
        "n",
        "0x2",
        "2usize",
        "18446744073709551616",
    ]);
    let single = prop_oneof![
        expr.clone().prop_map(str::to_owned),
        (expr, count).prop_map(|(expr, count)| format!("[{expr}; {count}]")),
    ];
    prop_oneof![
        2 => single.clone(),
        2 => name.clone().prop_map(str::to_owned),
        1 => (name, single).prop_map(|(name, stage)| format!("{name} = {stage}")),
    ]
}

/// An arrow, maybe with options (known or not, sensible or not, repeated or not).
fn link() -> impl Strategy<Value = String> {
    let option = prop::sample::select(vec![
        "max_demand = 10",
        "max_demand = 0",
        "max_demand = 18446744073709551615",
        "min_demand = 5",
        "min_demand = 10",
        "min_demand = m",
        "partition = 0",
        "partition = 1",
        "partition = 7",
        "partition = i",
        "selector = |e: &u64| *e > 2",
        "cancel = temporary",
        "cancel = sometimes",
        "max_demnd = 1",
    ]);
    prop_oneof![
        3 => Just("->".to_owned()),
        2 => prop::collection::vec(option, 1..=3)
            .prop_map(|options| format!("-[{}]->", options.join(", "))),
    ]
}

/// Statements of stages joined by arrows, maybe after `crate = …;`.
fn generated_pipeline() -> impl Strategy<Value = String> {
    let statement =
        (stage(), prop::collection::vec((link(), stage()), 1..=3)).prop_map(|(first, links)| {
            let mut text = first;
            for (link, stage) in links {
                text.push_str(&format!(" {link} {stage}"));
            }
            text
        });
    (any::<bool>(), prop::collection::vec(statement, 1..=4)).prop_map(|(krate, statements)| {
        let prefix = if krate { "crate = ::gs; " } else { "" };
        format!("{prefix}{}", statements.join("; "))
    })
}

proptest! {
    #![proptest_config(fuzz::config())]

    /// Pipelines of the grammar, with shapes and options at random: what the checks after the
    /// parser see (names, cycles, duplicate edges, groups, partitions, selectors, demands).
    #[test]
    fn pipeline_never_panics_on_generated_pipelines(text in generated_pipeline()) {
        check(&Input(fuzz::toks(&text)))?;
    }
}
