//! `#[stage]` never panics: each malformed attribute or item gives an error, placed at the
//! offending tokens (proc-macro2's `span-locations` gives real positions in unit tests), and each
//! well-formed one expands to items that parse.

use std::str::FromStr;

use proc_macro2::{LineColumn, TokenStream};

use super::expand_stage;
use crate::PRIVATE_MODULE;

/// Where an error should start: the `nth` (0-based) occurrence of a snippet in the attribute or
/// in the item.
#[derive(Clone, Copy, Debug)]
enum At {
    Attr(&'static str, usize),
    Item(&'static str, usize),
    /// The whole call (`Span::call_site()`), for an error about the attribute as a whole.
    CallSite,
}

/// The impls generated for `#[stage(attr)] item` (when it expands), and its errors.
fn expand_checked(
    attr: TokenStream,
    item: TokenStream,
) -> (Option<TokenStream>, Option<syn::Error>) {
    let (expanded, error) = super::expand_checked(attr, item);
    (expanded.map(|(_, generated)| generated), error)
}

fn tokens(text: &str) -> TokenStream {
    TokenStream::from_str(text).expect("test inputs tokenize")
}

/// The position of the `nth` occurrence of `snippet` in `text` (lines 1-based, columns 0-based).
fn position(text: &str, snippet: &str, nth: usize) -> LineColumn {
    let (offset, _) = text
        .match_indices(snippet)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{snippet}` occurs {} times in `{text}`", nth + 1));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count());
    LineColumn { line, column }
}

/// Expands `#[stage(attr)] item` and checks that one of its errors starts at `at` and contains
/// `message`.
#[track_caller]
fn assert_error(attr: &str, item: &str, at: At, message: &str) {
    let (_, error) = expand_checked(tokens(attr), tokens(item));
    let error = error
        .unwrap_or_else(|| panic!("no error for `#[stage({attr})] {item}`, expected {message:?}"));
    let errors: Vec<(String, LineColumn)> = error
        .into_iter()
        .map(|e| (e.to_string(), e.span().start()))
        .collect();
    let expected = match at {
        At::Attr(snippet, nth) => Some(position(attr, snippet, nth)),
        At::Item(snippet, nth) => Some(position(item, snippet, nth)),
        At::CallSite => None,
    };
    let found = errors.iter().any(|(text, start)| {
        text.contains(message) && expected.is_none_or(|expected| *start == expected)
    });
    assert!(
        found,
        "`#[stage({attr})] {item}`: expected an error containing {message:?} at {expected:?}, got {errors:?}"
    );
}

const CONSUMER: &str = "impl S { fn handle_events(&mut self, events: Vec<u8>) {} }";
const PRODUCER: &str =
    "impl S { fn handle_demand(&mut self, demand: usize) -> Vec<u8> { vec![] } }";
const PRODUCER_CONSUMER: &str =
    "impl S { fn handle_events(&mut self, events: Vec<u8>) -> Vec<u8> { events } }";

#[test]
fn malformed_attributes_give_spanned_errors() {
    let cases: &[(&str, At, &str)] = &[
        ("", At::CallSite, "#[stage] needs a role"),
        ("max_demand = 10", At::Attr("max_demand", 0), "needs a role before its options"),
        ("consumer = 1", At::Attr("consumer", 0), "needs a role before its options"),
        ("\"consumer\"", At::Attr("\"", 0), "needs a role"),
        (", consumer", At::Attr(",", 0), "needs a role"),
        ("sink", At::Attr("sink", 0), "unknown stage role `sink`; the roles are `producer`, `producer_consumer` or `consumer`"),
        ("Consumer", At::Attr("Consumer", 0), "unknown stage role"),
        ("consumer consumer", At::Attr("consumer", 1), "expected `,`"),
        ("consumer(max_demand = 10)", At::Attr("(", 0), "expected `,`"),
        ("consumer, max_demand", At::CallSite, "expected `=` after `max_demand`"),
        ("consumer, max_demand 10", At::Attr("10", 0), "expected `=` after `max_demand`"),
        ("consumer, max_demand =", At::CallSite, "expected"),
        ("consumer, max_demand = 10 20", At::Attr("20", 0), "expected `,`"),
        ("consumer, = 10", At::Attr("=", 0), "expected"),
        ("consumer, 10", At::Attr("10", 0), "expected"),
        ("consumer,, max_demand = 1", At::Attr(",", 1), "expected"),
        ("consumer, max_demnd = 1", At::Attr("max_demnd", 0), "unknown option `max_demnd` for a consumer; its options are `max_demand`, `min_demand`, `cancel`, `restart`, `max_restarts`, `max_seconds`, `redeliver` and `crate`"),
        ("producer, max_demand = 1", At::Attr("max_demand", 0), "`max_demand` is an option of consumers and producer_consumers"),
        ("consumer, buffer_size = 1", At::Attr("buffer_size", 0), "`buffer_size` is an option of producers and producer_consumers"),
        ("consumer, buffer_keep = first", At::Attr("buffer_keep", 0), "not of a consumer"),
        ("producer, cancel = temporary", At::Attr("cancel", 0), "not of a producer"),
        ("consumer, max_demand = 1, max_demand = 2", At::Attr("max_demand", 1), "duplicate option `max_demand`"),
        ("consumer, max_demand = 0", At::Attr("0", 0), "`max_demand` must be at least 1"),
        ("consumer, max_demand = 0x0", At::Attr("0x0", 0), "`max_demand` must be at least 1"),
        ("consumer, max_demand = 10, min_demand = 10", At::Attr("10", 1), "`min_demand` must be less than `max_demand`, which is 10; got 10"),
        ("consumer, min_demand = 11, max_demand = 10", At::Attr("11", 0), "must be less than `max_demand`"),
        ("consumer, min_demand = 1000", At::Attr("1000", 0), "which is 1000 by default"),
        ("consumer, max_demand = 99999999999999999999999999999", At::Attr("9", 0), "is too large"),
        ("consumer, max_demand = 1.5", At::Attr("1.5", 0), "`max_demand` is a number of events (a `usize`), not this literal"),
        ("consumer, min_demand = \"1\"", At::Attr("\"1\"", 0), "not this literal"),
        ("producer, buffer_size = true", At::Attr("true", 0), "or `infinity`, not this literal"),
        ("producer, buffer_size = infinite", At::Attr("infinite", 0), "unknown buffer_size value `infinite`: `buffer_size` is a number of events (a `usize` expression) or `infinity`, for a buffer without bound"),
        ("consumer, cancel = sometimes", At::Attr("sometimes", 0), "unknown cancel mode `sometimes`: `cancel` is `permanent`, `transient` or `temporary`"),
        ("consumer, cancel = 3", At::Attr("3", 0), "`cancel` is `permanent`, `transient` or `temporary`"),
        ("consumer, cancel = CancelMode::Temporary", At::Attr("CancelMode", 0), "`cancel` is `permanent`"),
        ("producer, buffer_keep = middle", At::Attr("middle", 0), "unknown buffer_keep value `middle`: `buffer_keep` is `first` or `last`"),
        ("consumer, demand = accumulate", At::Attr("demand", 0), "`demand` is an option of producers only (it sets their demand mode), not of a consumer; a consumer's options are `max_demand`, `min_demand`, `cancel`, `restart`, `max_restarts`, `max_seconds`, `redeliver` and `crate`"),
        ("producer_consumer, demand = forward", At::Attr("demand", 0), "`demand` is an option of producers only (it sets their demand mode), not of a producer_consumer"),
        ("producer, demand = manual", At::Attr("manual", 0), "unknown demand mode `manual`: `demand` is `forward` or `accumulate`"),
        ("producer, demand = 1", At::Attr("1", 0), "`demand` is `forward` or `accumulate`"),
        ("producer, demand = forward, demand = accumulate", At::Attr("demand", 1), "duplicate option `demand`"),
        ("producer, buffer = 1", At::Attr("buffer", 0), "unknown option `buffer` for a producer; its options are `buffer_size`, `buffer_keep`, `demand`, `without_consumers`, `dispatcher`, `restart`, `max_restarts`, `max_seconds` and `crate`"),
        ("consumer, without_consumers = wait", At::Attr("without_consumers", 0), "`without_consumers` is an option of producers and producer_consumers (it says whether they stop or wait when they have no consumer), not of a consumer; a consumer's options are `max_demand`, `min_demand`, `cancel`, `restart`, `max_restarts`, `max_seconds`, `redeliver` and `crate`"),
        ("producer, without_consumers = linger", At::Attr("linger", 0), "unknown without_consumers value `linger`: `without_consumers` is `stop` or `wait`"),
        ("producer_consumer, without_consumers = Wait", At::Attr("Wait", 0), "unknown without_consumers value `Wait`: `without_consumers` is `stop` or `wait`"),
        ("producer, without_consumers = 1", At::Attr("1", 0), "`without_consumers` is `stop` or `wait`"),
        ("producer, without_consumers = wait, without_consumers = stop", At::Attr("without_consumers", 1), "duplicate option `without_consumers`"),
        ("producer, dispatcher = round_robin", At::Attr("round_robin", 0), "unknown dispatcher `round_robin` for `S`: `dispatcher` is `demand`, `broadcast` or `partition(n)`"),
        ("producer, dispatcher = partition(0)", At::Attr("0", 0), "`partition(0)` gives `S` no partition to send its events to"),
        ("producer, dispatcher = partition", At::Attr("partition", 0), "`partition` needs the number of partitions of `S`"),
        ("producer, dispatcher = partition(N)", At::Attr("N", 0), "the number of partitions of `S` is an integer literal of at least 1"),
        ("producer, dispatcher = broadcast, dispatcher = demand", At::Attr("dispatcher", 1), "duplicate option `dispatcher`"),
        ("producer, dispatcher = partition(2)", At::Attr("partition(2)", 0), "`S` has `dispatcher = partition(2)` but no `partition` method: add `fn partition(&self, event: &u8) -> Option<usize>` to this impl block"),
        ("consumer, dispatcher = broadcast", At::Attr("dispatcher", 0), "`dispatcher` chooses which consumers get the events of a producer or a producer_consumer, but `S` is a consumer, which emits no events; a consumer's options are `max_demand`, `min_demand`, `cancel`, `restart`, `max_restarts`, `max_seconds`, `redeliver` and `crate`"),
        ("consumer, crate = genstage", At::Attr("genstage", 0), "`crate` takes the path of the genstage crate as a string"),
        ("consumer, crate = \"not a path\"", At::Attr("\"", 0), "is not a path"),
        ("consumer, crate = \"\"", At::Attr("\"", 0), "is not a path"),
        // Found by the fuzzer: generic arguments came out in expressions as comparisons
        // (`Vec < u8 > :: …`), and a `use` cannot go through `Self`.
        ("consumer, crate = \"Vec<u8>\"", At::Attr("\"", 0), "`crate` takes the path of the genstage crate, as in `crate = \"::genstage\"`; `Vec<u8>` is not a path of modules"),
        ("consumer, crate = \"Self::gs\"", At::Attr("\"", 0), "`crate` takes the path of the genstage crate, as in `crate = \"::genstage\"`; `Self::gs` goes through `Self`, which names a type"),
    ];
    for (attr, at, message) in cases {
        let item = if attr.starts_with("producer,") || *attr == "producer" {
            PRODUCER
        } else {
            CONSUMER
        };
        assert_error(attr, item, *at, message);
    }
}

#[test]
fn malformed_items_give_spanned_errors() {
    let cases: &[(&str, &str, At, &str)] = &[
        ("consumer", "", At::CallSite, "unexpected end of input"),
        ("consumer", "impl", At::CallSite, "expected"),
        ("consumer", "impl S", At::CallSite, "expected"),
        ("consumer", "impl S { fn handle_events }", At::Item("}", 0), "expected"),
        ("consumer", "struct S;", At::Item("S", 0), "#[stage] goes on an inherent impl block, as in `#[stage(producer)] impl Counter { fn handle_demand(…) }`, not on a struct"),
        ("consumer", "enum E { A }", At::Item("E", 0), "not on an enum"),
        ("consumer", "fn handle_events() {}", At::Item("handle_events", 0), "not on a function"),
        ("consumer", "trait T {}", At::Item("T {", 0), "not on a trait"),
        ("consumer", "mod m {}", At::Item("m {", 0), "not on a module"),
        ("consumer", "use a::b;", At::Item("use", 0), "not on a use declaration"),
        ("consumer", "extern crate a;", At::Item("extern", 0), "not on this item"),
        ("consumer", "impl Consumer for S { type Input = u8; }", At::Item("Consumer", 0), "#[stage] goes on an inherent impl block (`impl S { … }`), not on an impl of a trait"),
        ("producer", "impl S {}", At::Item("S", 0), "producer `S` has no `handle_demand`: add `fn handle_demand(&mut self, demand: usize) -> Vec<T>` to this impl block"),
        ("consumer", "impl S { fn new() -> Self { S } }", At::Item("S", 0), "consumer `S` has no `handle_events`"),
        ("producer_consumer", "impl<T> Forward<T> {}", At::Item("Forward", 0), "producer_consumer `Forward<T>` has no `handle_events`"),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } }", At::Item("handle_demand", 0), "`handle_demand` is a producer callback, but this stage is a consumer"),
        ("consumer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } }", At::Item("handle_demand", 0), "`handle_demand` is a producer callback"),
        ("producer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} }", At::Item("handle_events", 0), "`handle_events` is not a producer callback"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn subscribe_options(&self) -> SubscribeOptions { todo!() } }", At::Item("subscribe_options", 0), "which subscribes to nothing"),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn producer_options(&self) -> ProducerOptions { todo!() } }", At::Item("producer_options", 0), "which emits no events"),
        ("producer", "impl S { fn handle_demand(&self, d: usize) -> Vec<u8> { vec![] } }", At::Item("&self", 0), "`handle_demand` takes `&mut self` first"),
        ("producer", "impl S { fn handle_demand(self, d: usize) -> Vec<u8> { vec![] } }", At::Item("self", 0), "takes `&mut self` first"),
        ("producer", "impl S { fn handle_demand(self: Box<Self>, d: usize) -> Vec<u8> { vec![] } }", At::Item("self", 0), "takes `&mut self` first"),
        ("producer", "impl S { fn handle_demand(d: usize) -> Vec<u8> { vec![] } }", At::Item("d: usize", 0), "takes `&mut self` first"),
        ("producer", "impl S { fn handle_demand() -> Vec<u8> { vec![] } }", At::Item("(", 0), "takes `&mut self` first"),
        ("producer", "impl S { fn handle_demand(&mut self) -> Vec<u8> { vec![] } }", At::Item("(", 0), "`handle_demand` takes `&mut self` and the demand, but this one takes 1 argument"),
        ("consumer", "impl S { fn handle_events(&mut self, a: Vec<u8>, b: u8) {} }", At::Item("b", 0), "takes `&mut self` and the events, but this one takes 3 arguments"),
        ("consumer", "impl S { fn handle_events(&mut self, a: Vec<u8>, ctx: &mut Context<Self>) {} }", At::Item("ctx", 0), "`handle_events` gets no context: a stage in manual demand asks from it through the `Asker` that `ctx.asker(subscription.tag())` makes in `handle_subscribe`"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize, ctx: &mut genstage::Context<'_, Self>) -> Vec<u8> { vec![] } }", At::Item("ctx", 0), "`handle_demand` gets no context: `init` and the message callbacks"),
        ("producer", "impl S { fn handle_demand<T>(&mut self, d: usize) -> Vec<T> { vec![] } }", At::Item("<", 0), "`handle_demand` cannot be generic"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> where u8: Copy { vec![] } }", At::Item("where", 0), "cannot be generic"),
        ("producer", "impl S { unsafe fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } }", At::Item("unsafe", 0), "cannot be `unsafe`"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> impl Iterator<Item = u8> { None.into_iter() } }", At::Item("impl", 1), "cannot read the event type of `handle_demand` from `impl …`"),
        ("producer", "impl S { async fn handle_demand(&mut self, d: usize) -> impl Send { 1 } }", At::Item("impl", 1), "cannot read the event type"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) {} }", At::Item("handle_demand", 0), "`handle_demand` returns nothing, but a producer returns the events it emits"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Option<Vec<u8>> { None } }", At::Item("Option", 0), "`handle_demand` returns `Option<Vec<u8>>`, but a producer returns"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Result<u8, E> { Ok(0) } }", At::Item("Result", 0), "returns `Result<u8, E>`"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8, A> { vec![] } }", At::Item("Vec", 0), "returns `Vec<u8, A>`"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> (Vec<u8>,) { (vec![],) } }", At::Item("(", 1), "returns `(Vec<u8>,)`"),
        ("producer_consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} }", At::Item("handle_events", 0), "a stage that emits nothing is a consumer"),
        ("producer_consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) -> Emit<u8> { todo!() } }", At::Item("Emit", 0), "a producer_consumer returns the events it emits: `Vec<T>` or `Result<Vec<T>, E>`"),
        ("consumer", "impl S { fn handle_events(&mut self, e: &[u8]) {} }", At::Item("&[", 0), "`handle_events` takes its events as `Vec<T>`, not `&[u8]`"),
        ("consumer", "impl S { fn handle_events(&mut self, e: Batch) {} }", At::Item("Batch", 0), "not `Batch`"),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn subscribe_options(&mut self) -> SubscribeOptions { todo!() } }", At::Item("&mut self", 1), "`subscribe_options` takes `&self` first"),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} async fn subscribe_options(&self) -> SubscribeOptions { todo!() } }", At::Item("async", 0), "`subscribe_options` cannot be `async`"),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn subscribe_options(&self, x: u8) -> SubscribeOptions { todo!() } }", At::Item("x", 0), "takes only `&self`"),
        ("consumer, max_demand = 5", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn subscribe_options(&self) -> SubscribeOptions { todo!() } }", At::Attr("max_demand", 0), "`max_demand` is set here, but this impl block also defines `subscribe_options`"),
        ("producer, buffer_size = 5", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn producer_options(&self) -> ProducerOptions { todo!() } }", At::Attr("buffer_size", 0), "also defines `producer_options`"),
        ("producer, demand = accumulate", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn producer_options(&self) -> ProducerOptions { todo!() } }", At::Attr("demand", 0), "`demand` is set here, but this impl block also defines `producer_options`"),
        ("consumer", "impl<'a> S<'a> { fn handle_events(&mut self, e: Vec<u8>) {} }", At::Item("'a", 0), "a stage cannot borrow"),
        // Found by the fuzzer: the generated impls wrote `for Sink + where …`, which does not parse.
        ("consumer", "impl dyn Sink { fn handle_events(&mut self, e: Vec<u8>) {} }", At::Item("dyn", 0), "#[stage] goes on the impl block of a struct or an enum, as in `impl Counter { … }`, not of the trait object `dyn Sink`: a stage is a value of a known size, which the pipeline owns"),
        ("consumer", "impl<T> Sink + { fn handle_events(&mut self, e: Vec<T>) {} }", At::Item("Sink", 0), "not of the trait object `Sink +`"),
        ("consumer", "impl (dyn Sink + Send) { fn handle_events(&mut self, e: Vec<u8>) {} }", At::Item("(", 0), "not of the trait object `(dyn Sink + Send)`"),
    ];
    for (attr, item, at, message) in cases {
        assert_error(attr, item, *at, message);
    }
}

/// `#[stage(consumer)]` on a consumer with `methods` beside its `handle_events`.
fn consumer_with(methods: &str) -> String {
    format!("impl S {{ fn handle_events(&mut self, e: Vec<u8>) {{}} {methods} }}")
}

#[test]
fn message_callbacks_init_batch_from_and_terminate_of_the_wrong_shape_give_spanned_errors() {
    const CALL: &str = "write it `fn handle_call(&mut self, request: M, reply: ReplyTo<R>)` or `fn handle_call(&mut self, request: M, reply: ReplyTo<R>, ctx: &mut Context<Self>)`, returning the events it emits if any";
    const CAST: &str = "write it `fn handle_cast(&mut self, message: M)` or `fn handle_cast(&mut self, message: M, ctx: &mut Context<Self>)`, returning the events it emits if any";
    const INFO: &str = "write it `fn handle_info(&mut self, message: M)` or `fn handle_info(&mut self, message: M, ctx: &mut Context<Self>)`";
    const TERMINATE: &str = "write it `fn terminate(&mut self, status: &StageStatus)`";
    const INIT: &str = "write it `fn init(&mut self)` or `fn init(&mut self, ctx: &mut Context<Self>)`, returning nothing, not `async`";
    const BATCH_FROM: &str = "write it `fn batch_from(&mut self, subscription: SubscriptionTag)`, returning nothing, not `async`";
    let cases: &[(&str, &str, &str)] = &[
        // handle_call
        ("fn handle_call(&mut self, r: u8) {}", "(&mut", "`handle_call` answers through a `reply: ReplyTo<R>` argument after the request, and this one has none"),
        ("fn handle_call(&mut self, r: u8, ctx: &mut Context<Self>) {}", "ctx", "`handle_call` answers through a `reply: ReplyTo<R>` argument after the request, before the context"),
        ("fn handle_call(&mut self, r: u8, reply: Sender<u8>) {}", "reply", "`handle_call`'s second argument is where the answer goes, `reply: ReplyTo<R>` (`R` is the answer's type), not `Sender<u8>`"),
        ("fn handle_call(&mut self, r: u8, reply: ReplyTo<u8>, n: usize) {}", "n: usize", "`handle_call` takes one request: after the `ReplyTo` comes only the context, `ctx: &mut Context<Self>`"),
        ("fn handle_call(&mut self, r: u8, reply: ReplyTo<u8>, ctx: &mut Context<Self>, n: usize) {}", "n: usize", "`handle_call` takes `&mut self`, the request, a `ReplyTo` and optionally the context, but this one takes 5 arguments"),
        ("fn handle_call(&mut self) {}", "(&mut", "`handle_call` takes `&mut self`, the request, a `ReplyTo` and optionally the context, but this one takes 1 argument"),
        ("fn handle_call(&self, r: u8, reply: ReplyTo<u8>) {}", "&self", "`handle_call` takes `&mut self` first"),
        ("fn handle_call<M>(&mut self, r: M, reply: ReplyTo<u8>) {}", "<M>", "`handle_call` cannot be generic"),
        ("unsafe fn handle_call(&mut self, r: u8, reply: ReplyTo<u8>) {}", "unsafe", "`handle_call` cannot be `unsafe`"),
        ("fn handle_call(&mut self, r: impl Into<u8>, reply: ReplyTo<u8>) {}", "impl", "`handle_call` cannot be generic: its request type is named in the impl of the message trait"),
        ("fn handle_call(&mut self, r: u8, reply: ReplyTo<&str>) {}", "&str", "`handle_call`'s reply cannot borrow, but `&str` does"),
        // handle_cast
        ("fn handle_cast(&mut self, a: u8, b: u8) {}", "b: u8", "`handle_cast` takes one message: after the message comes only the context, `ctx: &mut Context<Self>`"),
        ("fn handle_cast(&mut self, a: u8, ctx: Context<Self>) {}", "ctx", "after the message comes only the context"),
        ("fn handle_cast(&mut self) {}", "(&mut", "`handle_cast` takes `&mut self`, the message and optionally the context, but this one takes 1 argument"),
        ("fn handle_cast(a: u8) {}", "a: u8", "`handle_cast` takes `&mut self` first"),
        ("fn handle_cast(&mut self, m: &str) {}", "&str", "`handle_cast`'s message cannot borrow, but `&str` does: a message is sent to the stage's task, so it is `'static`"),
        ("fn handle_cast(&mut self, m: Cow<'a, str>) {}", "'a", "`handle_cast`'s message cannot borrow"),
        ("fn handle_cast(&mut self, m: Vec<&'a [u8]>) {}", "&'a", "`handle_cast`'s message cannot borrow, but `Vec<&'a [u8]>` does"),
        ("fn handle_cast(&mut self, m: u8) -> impl Iterator<Item = u8> { None.into_iter() }", "impl", "#[stage] cannot read what `handle_cast` returns from `impl …`"),
        // handle_info
        ("fn handle_info(&self, m: u8) {}", "&self", "`handle_info` takes `&mut self` first"),
        ("fn handle_info(&mut self, a: u8, b: u8, c: u8) {}", "c: u8", "but this one takes 4 arguments"),
        // terminate
        ("fn terminate(&mut self, status: StageStatus) {}", "StageStatus", "`terminate` takes the stage's status by reference, `status: &StageStatus`, not `StageStatus`"),
        ("fn terminate(&mut self, status: &mut StageStatus) {}", "&mut StageStatus", "not `&mut StageStatus`"),
        ("fn terminate(&mut self) {}", "(&mut", "`terminate` takes `&mut self` and the status, but this one takes 1 argument"),
        ("fn terminate(&mut self, status: &StageStatus, n: u8) {}", "n: u8", "but this one takes 3 arguments"),
        ("fn terminate(&self, status: &StageStatus) {}", "&self", "`terminate` takes `&mut self` first"),
        ("fn terminate(&mut self, status: &StageStatus) -> bool { true }", "bool", "`terminate` returns nothing, not `bool`"),
        ("async fn terminate(&mut self, status: &StageStatus) -> Result<(), E> { Ok(()) }", "Result", "`terminate` returns nothing, not `Result<(), E>`"),
        ("fn terminate(&mut self, status: &StageStatus) -> impl Future<Output = u8> { async { 1 } }", "impl", "`terminate` returns nothing, not `u8`"),
        // init
        ("async fn init(&mut self) {}", "async", "`init` cannot be `async`: the runtime calls it at once, as the stage starts (work that waits goes in a message to the stage, `ctx.info(…)`)"),
        ("fn init(&mut self) -> impl Future<Output = ()> { async {} }", "impl", "`init` returns nothing, not a future or an `impl …`"),
        ("fn init(&mut self) -> StageResult<()> { Ok(()) }", "StageResult", "`init` returns nothing, not `StageResult<()>`"),
        ("fn init(&mut self, n: u8) {}", "n: u8", "`init` takes `&mut self` and optionally the context, but this one takes 2 arguments"),
        ("fn init(&mut self, ctx: &mut Context<Self>, n: u8) {}", "n: u8", "but this one takes 3 arguments"),
        ("fn init(&self) {}", "&self", "`init` takes `&mut self` first"),
        ("fn init<T>(&mut self) {}", "<T>", "`init` cannot be generic"),
        // batch_from
        ("async fn batch_from(&mut self, s: SubscriptionTag) {}", "async", "`batch_from` cannot be `async`: the runtime calls it at once, right before each `handle_events`"),
        ("fn batch_from(&mut self, s: SubscriptionTag) -> impl Future<Output = ()> { async {} }", "impl", "`batch_from` returns nothing, not a future or an `impl …`"),
        ("fn batch_from(&mut self, s: SubscriptionTag) -> bool { true }", "bool", "`batch_from` returns nothing, not `bool`"),
        ("fn batch_from(&mut self, s: &SubscriptionTag) {}", "&SubscriptionTag", "`batch_from` takes the subscription's tag by value, `subscription: SubscriptionTag`, not `&SubscriptionTag`"),
        ("fn batch_from(&mut self, s: &genstage::Subscription) {}", "&genstage", "not `&genstage::Subscription`"),
        ("fn batch_from(&mut self, s: Option<SubscriptionTag>) {}", "Option", "not `Option<SubscriptionTag>`"),
        ("fn batch_from(&mut self) {}", "(&mut", "`batch_from` takes `&mut self` and the subscription's tag, but this one takes 1 argument"),
        ("fn batch_from(&mut self, s: SubscriptionTag, ctx: &mut Context<Self>) {}", "ctx", "`batch_from` takes `&mut self` and the subscription's tag, but this one takes 3 arguments"),
        ("fn batch_from(&self, s: SubscriptionTag) {}", "&self", "`batch_from` takes `&mut self` first"),
        ("fn batch_from(s: SubscriptionTag) {}", "s: Sub", "`batch_from` takes `&mut self` first"),
        ("fn batch_from<T>(&mut self, s: SubscriptionTag) {}", "<T>", "`batch_from` cannot be generic"),
    ];
    for (method, at, message) in cases {
        let item = consumer_with(method);
        // The snippet is found in the method, after the stage's own `handle_events`.
        let nth = item.matches(at).count() - method.matches(at).count();
        assert_error("consumer", &item, At::Item(at, nth), message);
        // One error, with the allowed shapes when it is about the signature.
        let (generated, error) = expand_checked(tokens("consumer"), tokens(&item));
        let messages: Vec<String> = error.unwrap().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 1, "{method}: {messages:?}");
        let shapes = [CALL, CAST, INFO, TERMINATE, INIT, BATCH_FROM];
        let lists_shapes = shapes.iter().any(|shape| messages[0].contains(shape));
        let about_types = [
            "cannot borrow",
            "is named in the impl",
            "cannot be `unsafe`",
            "cannot read what",
        ];
        assert!(
            lists_shapes || about_types.iter().any(|t| messages[0].contains(t)),
            "{method}: {messages:?}"
        );
        // The stage still expands, without calling the broken callback: its role and events do
        // not depend on it, so its uses give no follow-on error. A message callback's trait is
        // implemented all the same, never called, so that its senders give none either.
        let text = generated.expect("the stage expands").to_string();
        assert!(text.contains("Consumer"), "{text}");
        for callback in [
            "handle_call",
            "handle_cast",
            "handle_info",
            "terminate",
            "init",
            "batch_from",
        ] {
            assert!(
                !text.contains(&format!("< S > :: {callback} (self")),
                "{method}: {text}"
            );
        }
        for lifecycle in ["fn terminate", "fn init", "fn batch_from"] {
            assert!(!text.contains(lifecycle), "{method}: {text}");
        }
        for message_trait in ["HandleCall", "HandleCast", "HandleInfo"] {
            if text.contains(message_trait) {
                assert!(
                    text.contains(":: core :: unreachable ! ()"),
                    "{method}: {text}"
                );
            }
        }
    }
}

#[test]
fn message_callbacks_expand_to_the_message_traits() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn handle_call(&mut self, r: Push, reply: ReplyTo<usize>, ctx: &mut Context<Self>) -> Emit<u8> { todo!() } }",
            &["HandleCall < Push >", "type Reply = usize", "type Emitted = :: genstage :: Emit << Self as :: genstage :: Producer > :: Output >", "CallReturn", "(self , __request , __reply , __ctx)"]),
        ("producer_consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> { e } async fn handle_cast(&mut self, m: String) {} }",
            &["HandleCast < String >", "type Emitted = :: genstage :: __private", "CastReturn", "(self , __message) . await", "_ : & mut :: genstage :: Context"]),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn handle_info(&mut self, m: Tick, ctx: &mut genstage::Context<'_, Self>) -> Result<(), E> { Ok(()) } }",
            &["HandleInfo < Tick >", "type Emitted = ()", "InfoReturn", "(self , __message , __ctx)"]),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} async fn terminate(&mut self, status: &StageStatus) {} }",
            &["fn terminate (& mut self , __status : & :: genstage :: StageStatus", "(self , __status) . await"]),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn terminate(&mut self, _: &genstage::StageStatus) -> impl Future<Output = ()> + Send { async {} } }",
            &["fn terminate", "(self , __status) . await"]),
        // What does not borrow: `'static` references, and the arguments of function types.
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn handle_call(&mut self, r: Box<dyn FnOnce(&mut Vec<u8>) + Send>, reply: ReplyTo<&'static str>) {} }",
            &["HandleCall < Box < dyn FnOnce (& mut Vec < u8 >) + Send > >", "type Reply = & 'static str"]),
        ("producer_consumer", "impl<T> Relay<T> { fn handle_events(&mut self, e: Vec<T>) -> Vec<T> { e } fn handle_cast(&mut self, m: T) -> Vec<T> { vec![m] } }",
            &["impl < T > :: genstage :: HandleCast < T > for Relay < T > where"]),
    ];
    for (attr, item, expected) in cases {
        let (generated, error) = expand_checked(tokens(attr), tokens(item));
        assert!(error.is_none(), "`#[stage({attr})] {item}`: {error:?}");
        let generated = generated.expect("a well-formed stage expands");
        let file: syn::File = syn::parse2(generated.clone())
            .unwrap_or_else(|e| panic!("`#[stage({attr})] {item}` expands to {generated}: {e}"));
        assert_eq!(file.items.len(), 1, "one `const _` holding the impls");
        let text = generated.to_string();
        for snippet in *expected {
            assert!(
                text.contains(snippet),
                "`#[stage({attr})] {item}`: no `{snippet}` in {text}"
            );
        }
    }
    // Without them, none of it.
    let text = expand_checked(tokens("consumer"), tokens(CONSUMER))
        .0
        .unwrap()
        .to_string();
    for absent in ["HandleCall", "HandleCast", "HandleInfo", "fn terminate"] {
        assert!(!text.contains(absent), "{text}");
    }
}

#[test]
fn init_becomes_the_role_traits_init_on_every_role() {
    for method in [
        "fn init(&mut self) {}",
        "fn init(&mut self, ctx: &mut Context<Self>) {}",
        "fn init(&mut self, ctx: &mut genstage::Context<'_, Self>) {}",
    ] {
        for (attr, item) in [
            ("consumer", consumer_with(method)),
            ("producer_consumer", format!("impl S {{ fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> {{ e }} {method} }}")),
            ("producer", format!("impl S {{ fn handle_demand(&mut self, d: usize) -> Vec<u8> {{ vec![] }} {method} }}")),
        ] {
            let (generated, error) = expand_checked(tokens(attr), tokens(&item));
            assert!(error.is_none(), "{item}: {error:?}");
            let text = generated.expect("it expands").to_string();
            assert!(text.contains("fn init (& mut self"), "{text}");
            // The context is passed on when the callback takes it.
            let passes_ctx = text.contains(":: init (self , __ctx)");
            assert_eq!(passes_ctx, method.contains("ctx"), "{text}");
        }
    }
    // An `init` without `self` is a constructor, the user's own.
    let (generated, error) = expand_checked(
        tokens("consumer"),
        tokens(&consumer_with("fn init() -> Self { S }")),
    );
    assert!(error.is_none(), "{error:?}");
    assert!(!generated.unwrap().to_string().contains("fn init"));
}

#[test]
fn batch_from_becomes_the_role_traits_batch_from_on_a_consumer_and_a_producer_consumer() {
    for method in [
        "fn batch_from(&mut self, subscription: SubscriptionTag) {}",
        "fn batch_from(&mut self, _: genstage::SubscriptionTag) -> () {}",
    ] {
        for (attr, item) in [
            ("consumer", consumer_with(method)),
            ("producer_consumer", format!("impl S {{ fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> {{ e }} {method} }}")),
        ] {
            let (generated, error) = expand_checked(tokens(attr), tokens(&item));
            assert!(error.is_none(), "{item}: {error:?}");
            let text = generated.expect("it expands").to_string();
            assert!(
                text.contains("fn batch_from (& mut self , __subscription : :: genstage :: SubscriptionTag) { < S > :: batch_from (self , __subscription) }"),
                "{text}"
            );
        }
    }
    // Without it, the trait's default.
    let text = expand_checked(tokens("consumer"), tokens(CONSUMER))
        .0
        .unwrap()
        .to_string();
    assert!(!text.contains("batch_from"), "{text}");
}

#[test]
fn batch_from_on_a_producer_is_one_error_at_its_name() {
    for method in [
        "fn batch_from(&mut self, s: SubscriptionTag) {}",
        // Of the wrong shape too: reported once, as not the producer's.
        "async fn batch_from(&self) -> bool { true }",
    ] {
        let item = format!(
            "impl S {{ fn handle_demand(&mut self, d: usize) -> Vec<u8> {{ vec![] }} {method} }}"
        );
        assert_error(
            "producer",
            &item,
            At::Item("batch_from", 0),
            "`batch_from` is not a producer callback: it tells a consumer or a producer_consumer which subscription each batch of `handle_events` came on, and a producer receives no events; use `#[stage(consumer)]` or `#[stage(producer_consumer)]` for a stage that receives events",
        );
        let (generated, error) = expand_checked(tokens("producer"), tokens(&item));
        let messages: Vec<String> = error.unwrap().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 1, "{method}: {messages:?}");
        assert!(generated.is_none(), "the fallback expands instead");
    }
}

#[test]
fn subscription_callbacks_of_the_wrong_shape_give_spanned_errors() {
    const SUBSCRIBE: &str = "write it `fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand` or `fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand`, not `async` (without a return type the runtime asks: `Demand::Automatic`)";
    const CANCEL: &str = "write it `fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason)` or `fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason, ctx: &mut Context<Self>)`, returning the events it emits if any";
    const CONSUMER_SUBSCRIBE: &str = "write it `fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber)` or `fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, ctx: &mut Context<Self>)`, returning nothing, not `async`";
    const CONSUMER_CANCEL: &str = "write it `fn handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason)` or `fn handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason, ctx: &mut Context<Self>)`, returning the events it emits if any (`Vec<T>`)";
    let cases: &[(&str, &str, &str)] = &[
        // handle_subscribe
        ("fn handle_subscribe(&mut self) -> Demand { todo!() }", "(&mut", "`handle_subscribe` takes `&mut self`, the subscription and optionally the context, but this one takes 1 argument"),
        ("fn handle_subscribe(&mut self, s: &Subscription, ctx: &mut Context<Self>, n: u8) -> Demand { todo!() }", "n: u8", "but this one takes 4 arguments"),
        ("fn handle_subscribe(&mut self, s: Subscription) -> Demand { todo!() }", "s: Subscription", "`handle_subscribe` takes the subscription by reference, `subscription: &Subscription`, not `Subscription`"),
        ("fn handle_subscribe(&mut self, s: &mut genstage::Subscription) -> Demand { todo!() }", "s: &mut", "not `&mut genstage::Subscription`"),
        ("fn handle_subscribe(&mut self, ctx: &mut Context<Self>) -> Demand { todo!() }", "ctx", "`handle_subscribe` takes the subscription by reference"),
        ("fn handle_subscribe(&mut self, s: &Subscription, n: u8) -> Demand { todo!() }", "n: u8", "after the subscription, `handle_subscribe` takes only the context, `ctx: &mut Context<Self>`"),
        ("fn handle_subscribe(&self, s: &Subscription) -> Demand { todo!() }", "&self", "`handle_subscribe` takes `&mut self` first"),
        ("fn handle_subscribe<T>(&mut self, s: &Subscription) -> Demand { todo!() }", "<T>", "`handle_subscribe` cannot be generic"),
        ("async fn handle_subscribe(&mut self, s: &Subscription) -> Demand { todo!() }", "async", "`handle_subscribe` cannot be `async`: the runtime takes its `Demand` at once"),
        ("fn handle_subscribe(&mut self, s: &Subscription) -> impl Future<Output = Demand> { async { todo!() } }", "impl", "`handle_subscribe` returns a `Demand`, not a future or an `impl …`"),
        // handle_cancel
        ("fn handle_cancel(&mut self, s: &Subscription) {}", "(&mut", "`handle_cancel` takes `&mut self`, the subscription, the reason and optionally the context, but this one takes 2 arguments"),
        ("fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason, ctx: &mut Context<Self>, n: u8) {}", "n: u8", "but this one takes 5 arguments"),
        ("fn handle_cancel(&mut self, r: &CancelReason, s: &Subscription) {}", "r: &", "`handle_cancel` takes the subscription by reference, `subscription: &Subscription`, not `&CancelReason`"),
        ("fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason, ctx: Context<Self>) {}", "ctx", "after the reason, `handle_cancel` takes only the context"),
        ("fn handle_cancel(&mut self, s: &Subscription, r: CancelReason) {}", "r: CancelReason", "`handle_cancel` takes why it ended by reference, `reason: &CancelReason`, not `CancelReason`"),
        ("fn handle_cancel(&mut self, s: &Subscription, ctx: &mut Context<Self>) {}", "ctx", "not `&mut Context<Self>`"),
        ("fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason, n: u8) {}", "n: u8", "after the reason, `handle_cancel` takes only the context"),
        ("fn handle_cancel(s: &Subscription, r: &CancelReason) {}", "s: &", "`handle_cancel` takes `&mut self` first"),
        ("fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason) -> impl Iterator<Item = u8> { None.into_iter() }", "impl", "#[stage] cannot read what `handle_cancel` returns from `impl …`"),
        // handle_consumer_subscribe
        ("fn handle_consumer_subscribe(&mut self) {}", "(&mut", "`handle_consumer_subscribe` takes `&mut self`, the subscriber and optionally the context, but this one takes 1 argument"),
        ("fn handle_consumer_subscribe(&mut self, s: &Subscriber, ctx: &mut Context<Self>, n: u8) {}", "n: u8", "but this one takes 4 arguments"),
        ("fn handle_consumer_subscribe(&mut self, s: Subscriber) {}", "s: Subscriber", "`handle_consumer_subscribe` takes the subscriber by reference, `subscriber: &Subscriber`, not `Subscriber`"),
        // The consumer side's type, on the producer side.
        ("fn handle_consumer_subscribe(&mut self, s: &Subscription) {}", "s: &", "`handle_consumer_subscribe` takes the subscriber by reference, `subscriber: &Subscriber`, not `&Subscription`"),
        ("fn handle_consumer_subscribe(&mut self, ctx: &mut Context<Self>) {}", "ctx", "not `&mut Context<Self>`"),
        ("fn handle_consumer_subscribe(&mut self, s: &genstage::Subscriber, n: u8) {}", "n: u8", "after the subscriber, `handle_consumer_subscribe` takes only the context, `ctx: &mut Context<Self>`"),
        ("fn handle_consumer_subscribe(&self, s: &Subscriber) {}", "&self", "`handle_consumer_subscribe` takes `&mut self` first"),
        ("fn handle_consumer_subscribe<T>(&mut self, s: &Subscriber) {}", "<T>", "`handle_consumer_subscribe` cannot be generic"),
        ("async fn handle_consumer_subscribe(&mut self, s: &Subscriber) {}", "async", "`handle_consumer_subscribe` cannot be `async`: the runtime calls it at once, as the consumer subscribes"),
        ("fn handle_consumer_subscribe(&mut self, s: &Subscriber) -> impl Future<Output = ()> { async {} }", "impl", "`handle_consumer_subscribe` returns nothing, not a future or an `impl …`"),
        ("fn handle_consumer_subscribe(&mut self, s: &Subscriber) -> Demand { Demand::Manual }", "Demand {", "`handle_consumer_subscribe` returns nothing, not `Demand`; a producer never takes control of its consumers' demand"),
        ("fn handle_consumer_subscribe(&mut self, s: &Subscriber) -> Vec<u8> { vec![] }", "Vec<u8> {", "`handle_consumer_subscribe` returns nothing, not `Vec<u8>`"),
        // handle_consumer_cancel
        ("fn handle_consumer_cancel(&mut self, s: &Subscriber) {}", "(&mut", "`handle_consumer_cancel` takes `&mut self`, the subscriber, the reason and optionally the context, but this one takes 2 arguments"),
        ("fn handle_consumer_cancel(&mut self, s: &Subscriber, r: &CancelReason, ctx: &mut Context<Self>, n: u8) {}", "n: u8", "but this one takes 5 arguments"),
        ("fn handle_consumer_cancel(&mut self, r: &CancelReason, s: &Subscriber) {}", "r: &", "`handle_consumer_cancel` takes the subscriber by reference, `subscriber: &Subscriber`, not `&CancelReason`"),
        ("fn handle_consumer_cancel(&mut self, s: &Subscription, r: &CancelReason) {}", "s: &", "`handle_consumer_cancel` takes the subscriber by reference, `subscriber: &Subscriber`, not `&Subscription`"),
        ("fn handle_consumer_cancel(&mut self, s: &Subscriber, r: &CancelReason, ctx: Context<Self>) {}", "ctx", "after the reason, `handle_consumer_cancel` takes only the context"),
        ("fn handle_consumer_cancel(&mut self, s: &Subscriber, r: CancelReason) {}", "r: CancelReason", "`handle_consumer_cancel` takes why it ended by reference, `reason: &CancelReason`, not `CancelReason`"),
        ("fn handle_consumer_cancel(&mut self, s: &Subscriber, ctx: &mut Context<Self>) {}", "ctx", "not `&mut Context<Self>`"),
        ("fn handle_consumer_cancel(&mut self, s: &Subscriber, r: &CancelReason, n: u8) {}", "n: u8", "after the reason, `handle_consumer_cancel` takes only the context"),
        ("fn handle_consumer_cancel(s: &Subscriber, r: &CancelReason) {}", "s: &", "`handle_consumer_cancel` takes `&mut self` first"),
        ("fn handle_consumer_cancel<T>(&mut self, s: &Subscriber, r: &CancelReason) {}", "<T>", "`handle_consumer_cancel` cannot be generic"),
        ("fn handle_consumer_cancel(&mut self, s: &Subscriber, r: &CancelReason) -> impl Iterator<Item = u8> { None.into_iter() }", "impl", "#[stage] cannot read what `handle_consumer_cancel` returns from `impl …`"),
    ];
    for (method, at, message) in cases {
        // The consumer side's callbacks on a consumer and a producer_consumer, the producer side's
        // on a producer and a producer_consumer.
        let first = if method.contains("handle_consumer_") {
            ("producer", format!("impl S {{ fn handle_demand(&mut self, d: usize) -> Vec<u8> {{ vec![] }} {method} }}"))
        } else {
            ("consumer", consumer_with(method))
        };
        for (attr, item) in [
            first,
            ("producer_consumer", format!("impl S {{ fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> {{ e }} {method} }}")),
        ] {
            // The snippet is found in the method, after the stage's own `handle_events`.
            let nth = item.matches(at).count() - method.matches(at).count();
            assert_error(attr, &item, At::Item(at, nth), message);
            // One error, with the allowed shapes when it is about the signature.
            let (generated, error) = expand_checked(tokens(attr), tokens(&item));
            let messages: Vec<String> = error.unwrap().into_iter().map(|e| e.to_string()).collect();
            assert_eq!(messages.len(), 1, "{method}: {messages:?}");
            assert!(
                [SUBSCRIBE, CANCEL, CONSUMER_SUBSCRIBE, CONSUMER_CANCEL]
                    .iter()
                    .any(|shape| messages[0].contains(shape))
                    || messages[0].contains("cannot read what"),
                "{method}: {messages:?}"
            );
            // The stage still expands, without the broken callback.
            let text = generated.expect("the stage expands").to_string();
            assert!(text.contains("Stage for S"), "{text}");
            for absent in [
                "fn handle_subscribe",
                "fn handle_cancel",
                "fn handle_consumer_subscribe",
                "fn handle_consumer_cancel",
            ] {
                assert!(!text.contains(absent), "{method}: {text}");
            }
        }
    }
}

#[test]
fn a_subscription_callback_of_the_other_side_is_one_error_at_its_name() {
    let cases: &[(&str, &str, &str)] = &[
        // A producer has no subscriptions to producers.
        (
            "producer",
            "handle_subscribe",
            "fn handle_subscribe(&mut self, s: &Subscription) -> Demand { Demand::Manual }",
        ),
        (
            "producer",
            "handle_cancel",
            "fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason) {}",
        ),
        // Of the wrong shape too: reported once, as not the producer's.
        (
            "producer",
            "handle_subscribe",
            "async fn handle_subscribe(&mut self) -> bool { true }",
        ),
        (
            "producer",
            "handle_cancel",
            "fn handle_cancel(&mut self) -> Vec<u8> { vec![] }",
        ),
        // A consumer has no consumers.
        (
            "consumer",
            "handle_consumer_subscribe",
            "fn handle_consumer_subscribe(&mut self, s: &Subscriber) {}",
        ),
        (
            "consumer",
            "handle_consumer_cancel",
            "fn handle_consumer_cancel(&mut self, s: &Subscriber, r: &CancelReason) {}",
        ),
        (
            "consumer",
            "handle_consumer_subscribe",
            "fn handle_consumer_subscribe(&mut self, s: &Subscriber) -> Demand { Demand::Manual }",
        ),
        (
            "consumer",
            "handle_consumer_cancel",
            "async fn handle_consumer_cancel(&mut self) -> Vec<u8> { vec![] }",
        ),
    ];
    for (role, name, method) in cases {
        let (item, message) = if *role == "producer" {
            (
                format!("impl S {{ fn handle_demand(&mut self, d: usize) -> Vec<u8> {{ vec![] }} {method} }}"),
                format!("`{name}` is told of a subscription to a producer, but this stage is a producer, which has no subscriptions to producers: a producer is told of its consumers by `handle_consumer_subscribe` and `handle_consumer_cancel`"),
            )
        } else {
            (
                consumer_with(method),
                format!("`{name}` is told of a consumer's subscription to this stage, but this stage is a consumer, which has no consumers: a consumer is told of its subscriptions to producers by `handle_subscribe` and `handle_cancel`"),
            )
        };
        assert_error(role, &item, At::Item(name, 0), &message);
        let (generated, error) = expand_checked(tokens(role), tokens(&item));
        let messages: Vec<String> = error.unwrap().into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 1, "{method}: {messages:?}");
        assert!(generated.is_none(), "the fallback expands instead");
    }
}

#[test]
fn subscription_callbacks_expand_to_the_role_traits_methods() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn handle_subscribe(&mut self, s: &Subscription, ctx: &mut Context<'_, Self>) -> Demand { Demand::Manual } }",
            &["fn handle_subscribe (& mut self , __subscription : & :: genstage :: Subscription , __ctx : & mut :: genstage :: Context < '_ , Self > ,) -> :: genstage :: Demand", "< Demand as SSubscribeReturn > :: into_demand (< S > :: handle_subscribe (self , __subscription , __ctx))", "impl SSubscribeReturn for ()"]),
        ("producer_consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> { e } fn handle_subscribe(&mut self, s: &genstage::Subscription) {} }",
            &["fn handle_subscribe (& mut self , __subscription : & :: genstage :: Subscription , _ : & mut", "< () as SSubscribeReturn > :: into_demand (< S > :: handle_subscribe (self , __subscription))"]),
        ("consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) {} async fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason) -> Result<(), E> { Ok(()) } }",
            &["fn handle_cancel (& mut self , __subscription : & :: genstage :: Subscription , __reason : & :: genstage :: CancelReason , _ : & mut :: genstage :: Context < '_ , Self > ,)", "StageResult < () >", "< Result < () , E > as SCancelReturn > :: into_emitted (< S > :: handle_cancel (self , __subscription , __reason) . await)", "trait SCancelReturn"]),
        ("producer_consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> { e } fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason, ctx: &mut Context<Self>) -> Vec<u8> { vec![] } }",
            &["fn handle_cancel", "StageResult < :: genstage :: __private", "Vec << Self as :: genstage :: ProducerConsumer > :: Output >", "< Vec < u8 > as SCancelReturn < < Self as :: genstage :: ProducerConsumer > :: Output > > :: into_emitted (< S > :: handle_cancel (self , __subscription , __reason , __ctx))"]),
        ("producer_consumer", "impl<T> Hold<T> { fn handle_events(&mut self, e: Vec<T>) -> Vec<T> { e } fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason) -> impl Future<Output = StageResult<Vec<T>>> + Send { async { Ok(vec![]) } } }",
            &["impl < T > :: genstage :: ProducerConsumer for Hold < T > where", "fn handle_cancel", "(self , __subscription , __reason) . await"]),
        // The producer side's.
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn handle_consumer_subscribe(&mut self, s: &Subscriber) {} }",
            &["fn handle_consumer_subscribe (& mut self , __subscriber : & :: genstage :: Subscriber , _ : & mut :: genstage :: Context < '_ , Self > ,) { < S > :: handle_consumer_subscribe (self , __subscriber) }"]),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn handle_consumer_subscribe(&mut self, s: &genstage::Subscriber, ctx: &mut Context<'_, Self>) -> () {} }",
            &["fn handle_consumer_subscribe (& mut self , __subscriber : & :: genstage :: Subscriber , __ctx : & mut :: genstage :: Context < '_ , Self > ,) { < S > :: handle_consumer_subscribe (self , __subscriber , __ctx) }"]),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } async fn handle_consumer_cancel(&mut self, s: &Subscriber, r: &CancelReason) -> Result<Vec<u8>, E> { Ok(vec![]) } }",
            &["fn handle_consumer_cancel (& mut self , __subscriber : & :: genstage :: Subscriber , __reason : & :: genstage :: CancelReason , _ : & mut :: genstage :: Context < '_ , Self > ,)", "Vec << Self as :: genstage :: Producer > :: Output >", "< Result < Vec < u8 > , E > as SConsumerCancelReturn < < Self as :: genstage :: Producer > :: Output > > :: into_emitted (< S > :: handle_consumer_cancel (self , __subscriber , __reason) . await)", "trait SConsumerCancelReturn < T >", "impl < T , > __SConsumerCancelReturn < T > for :: genstage :: __private", "impl < T , __V : __SConsumerCancelReturn < T > > SConsumerCancelReturn < T > for __V"]),
        // Both sides' on a producer_consumer, each with its own conversion.
        ("producer_consumer", "impl S { fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> { e } fn handle_subscribe(&mut self, s: &Subscription) {} fn handle_cancel(&mut self, s: &Subscription, r: &CancelReason) {} fn handle_consumer_subscribe(&mut self, s: &Subscriber) {} fn handle_consumer_cancel(&mut self, s: &Subscriber, r: &CancelReason, ctx: &mut Context<Self>) -> Vec<u8> { vec![] } }",
            &["fn handle_subscribe (", "fn handle_cancel (", "fn handle_consumer_subscribe (", "trait SCancelReturn < T >", "trait SConsumerCancelReturn < T >", "< Vec < u8 > as SConsumerCancelReturn < < Self as :: genstage :: ProducerConsumer > :: Output > > :: into_emitted (< S > :: handle_consumer_cancel (self , __subscriber , __reason , __ctx))"]),
    ];
    for (attr, item, expected) in cases {
        let (generated, error) = expand_checked(tokens(attr), tokens(item));
        assert!(error.is_none(), "`#[stage({attr})] {item}`: {error:?}");
        let generated = generated.expect("a well-formed stage expands");
        let file: syn::File = syn::parse2(generated.clone())
            .unwrap_or_else(|e| panic!("`#[stage({attr})] {item}` expands to {generated}: {e}"));
        assert_eq!(file.items.len(), 1, "one `const _` holding the impls");
        let text = generated.to_string();
        for snippet in *expected {
            assert!(
                text.contains(snippet),
                "`#[stage({attr})] {item}`: no `{snippet}` in {text}"
            );
        }
    }
    // Without them, the trait's defaults.
    for (attr, item) in [
        ("producer", PRODUCER),
        ("consumer", CONSUMER),
        ("producer_consumer", PRODUCER_CONSUMER),
    ] {
        let text = expand_checked(tokens(attr), tokens(item))
            .0
            .unwrap()
            .to_string();
        for absent in [
            "handle_subscribe",
            "handle_cancel",
            "handle_consumer_subscribe",
            "handle_consumer_cancel",
            "SubscribeReturn",
            "CancelReturn",
        ] {
            assert!(!text.contains(absent), "{text}");
        }
    }
}

#[test]
fn independent_errors_are_all_reported() {
    // An attribute error and an item error together.
    let (_, error) = expand_checked(tokens("sink"), tokens("struct S;"));
    let messages: Vec<String> = error.unwrap().into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].contains("unknown stage role"));
    assert!(messages[1].contains("not on a struct"));

    // Several option errors and a callback error.
    let (generated, error) = expand_checked(
        tokens("consumer, max_demand = 0, cancel = never, buffer_size = 1"),
        tokens("impl S { fn handle_events(&self, e: Vec<u8>) {} }"),
    );
    let messages: Vec<String> = error.unwrap().into_iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(
        generated.is_none(),
        "a broken callback is not expanded (the fallback is)"
    );
}

#[test]
fn option_errors_still_expand_the_stage() {
    // A bad option is left out, the rest expands: using the stage gives no follow-on error.
    let (generated, error) = expand_checked(tokens("consumer, max_demand = 0"), tokens(CONSUMER));
    assert!(error.is_some());
    let text = generated.expect("the stage expands").to_string();
    assert!(text.contains("Consumer"), "{text}");
    assert!(!text.contains("max_demand"), "{text}");
}

#[test]
fn the_item_is_kept_whatever_the_errors() {
    let item = "impl S { fn helper(&self) -> u8 { 1 } }";
    let out = expand_stage(tokens("sink"), tokens(item)).to_string();
    assert!(out.starts_with(&tokens(item).to_string()), "{out}");
    assert!(out.contains("compile_error"), "{out}");
}

#[test]
fn a_callback_defined_a_second_time_is_one_error_and_left_out() {
    let item = "impl S {
        fn handle_events(&mut self, events: Vec<u8>) {}
        fn handle_call(&mut self, request: A, reply: ReplyTo<u8>) {}
        fn handle_call(&mut self, request: B, reply: ReplyTo<u8>) {}
        fn handle_events(&mut self, events: Vec<u8>) {}
    }";
    assert_error(
        "consumer",
        item,
        At::Item("handle_call", 1),
        "`handle_call` is defined a second time in this impl block: a `#[stage]` block has one `handle_call`, for one request type and one reply type: to answer `B` too, move this one into a hand-written `impl HandleCall<B> for S` beside the block (its `handle_call` is an `async fn` that also takes `ctx: &mut Context<'_, Self>`; see `genstage::HandleCall`), or make the requests one enum (and their replies another)",
    );
    assert_error(
        "consumer",
        item,
        At::Item("handle_events", 1),
        "`handle_events` is defined a second time in this impl block: a stage has one: remove this one",
    );
    let (expanded, error) = super::expand_checked(tokens("consumer"), tokens(item));
    assert_eq!(error.map(|e| e.into_iter().count()), Some(2));
    // The stage expands with the first of each; the block it emits has only those.
    let (block, generated) = expanded.expect("the stage expands");
    let block = block.expect("the block is rewritten").to_string();
    assert_eq!(block.matches("fn handle_call").count(), 1, "{block}");
    assert_eq!(block.matches("fn handle_events").count(), 1, "{block}");
    assert!(block.contains("request : A"), "{block}");
    assert!(
        generated.to_string().contains("HandleCall < A"),
        "{generated}"
    );
    // A block with no second definition is emitted as written.
    let (expanded, _) = super::expand_checked(tokens("consumer"), tokens(CONSUMER));
    assert!(expanded.expect("the stage expands").0.is_none());
}

#[test]
fn a_callback_under_cfg_is_one_error_at_the_cfg() {
    let message = "`handle_events` cannot be under `#[cfg]`: #[stage] reads its callbacks before `cfg` removes any; put the `#[cfg]` on statements inside `handle_events`, or on the whole impl block";
    let once = "impl S { #[cfg(test)] fn handle_events(&mut self, events: Vec<u8>) {} }";
    assert_error("consumer", once, At::Item("#", 0), message);
    // Two definitions under exclusive `cfg`s: the first `cfg` is the one error (the second
    // definition is left out, as any second definition is), and no duplicate is reported.
    let twice = "impl S {
        #[cfg(test)] fn handle_events(&mut self, events: Vec<u8>) {}
        #[cfg(not(test))] fn handle_events(&mut self, events: Vec<u8>) {}
    }";
    assert_error("consumer", twice, At::Item("#", 0), message);
    let (_, error) = super::expand_checked(tokens("consumer"), tokens(twice));
    assert_eq!(error.map(|e| e.into_iter().count()), Some(1));
    // Other attributes on a callback are the user's own.
    let (_, error) = expand_checked(
        tokens("consumer"),
        tokens("impl S { #[inline] #[cfg_attr(test, allow(unused))] fn handle_events(&mut self, events: Vec<u8>) {} }"),
    );
    assert!(error.is_none(), "{error:?}");
}

#[test]
fn well_formed_stages_expand_to_items() {
    let cases: &[(&str, &str)] = &[
        ("producer", PRODUCER),
        ("producer, buffer_size = infinity, buffer_keep = first", PRODUCER),
        ("producer, buffer_size = SIZE, crate = \"::my::genstage\"", PRODUCER),
        ("producer, demand = accumulate", PRODUCER),
        ("producer, buffer_size = 5, demand = forward", PRODUCER),
        ("producer", "impl S { async fn handle_demand(&mut self, d: usize) -> Result<Emit<u8>, E> { todo!() } }"),
        ("producer", "impl S { fn handle_demand(&mut self, d: Demand) -> StageResult<std::vec::Vec<u8>> { todo!() } }"),
        ("producer", "impl S { fn handle_demand(&mut self, d: usize) -> impl Future<Output = Vec<u8>> + Send { async { vec![] } } }"),
        ("producer_consumer, max_demand = 10, min_demand = 5, cancel = transient, buffer_size = 4", PRODUCER_CONSUMER),
        ("producer_consumer,", "impl<T: Send + 'static> Forward<T> where T: Clone { async fn handle_events(&mut self, e: Vec<T>) -> anyhow::Result<Vec<T>> { Ok(e) } }"),
        ("consumer, max_demand = N * 2, min_demand = N", CONSUMER),
        ("consumer", "impl S { async fn handle_events(&mut self, e: Vec<u8>) -> std::io::Result<()> { Ok(()) } fn subscribe_options(&self) -> SubscribeOptions { todo!() } }"),
        ("consumer, crate = \"gs\"", CONSUMER),
        // Found by the fuzzer: a trailing `+` (`StageResult<()> +`), written back before `as`,
        // did not parse.
        ("consumer", "impl S { async fn handle_events(&mut self, e: Vec<u8>) -> StageResult<()> + { Ok(()) } }"),
        ("producer_consumer", "impl S { fn handle_events(&mut self, e: Vec<Box<dyn Send +>>) -> Result<Vec<u8>, Box<dyn Error + Send +>> { todo!() } }"),
    ];
    for (attr, item) in cases {
        let (generated, error) = expand_checked(tokens(attr), tokens(item));
        assert!(error.is_none(), "`#[stage({attr})] {item}`: {error:?}");
        let generated = generated.expect("a well-formed stage expands");
        let file: syn::File = syn::parse2(generated.clone())
            .unwrap_or_else(|e| panic!("`#[stage({attr})] {item}` expands to {generated}: {e}"));
        assert_eq!(file.items.len(), 1, "one `const _` holding the impls");
    }
}

/// The items `#[stage(attr)] item` expands to after the user's block, as text.
fn expanded_after_item(attr: &str, item: &str) -> (String, Vec<String>) {
    let out = expand_stage(tokens(attr), tokens(item));
    let file: syn::File = syn::parse2(out.clone()).unwrap_or_else(|e| panic!("{out}: {e}"));
    let texts: Vec<String> = file
        .items
        .iter()
        .skip(1)
        .map(|item| quote::ToTokens::to_token_stream(item).to_string())
        .collect();
    (out.to_string(), texts)
}

#[test]
fn the_hidden_module_is_named_after_the_release() {
    // genstage-runtime/build.rs exports the module under the same name, from the same version.
    assert_eq!(
        PRIVATE_MODULE,
        format!("__private_{}", env!("CARGO_PKG_VERSION").replace('.', "_"))
    );
    let (out, _) = expanded_after_item(
        "consumer",
        "impl S { fn handle_events(&mut self, e: Vec<u8>) {} }",
    );
    assert!(
        out.contains(&format!(":: genstage :: {PRIVATE_MODULE} ::")),
        "{out}"
    );
    assert!(!out.contains("__private ::"), "{out}");
}

#[test]
fn a_rejected_stage_falls_back_to_its_role_with_placeholder_events() {
    let (_, items) = expanded_after_item(
        "consumer, max_demand = 0",
        "impl S { fn handle_events(&self, e: Vec<u8>) {} }",
    );
    // The fallback's `const _` (role and `Stage` impls), then the two errors.
    assert_eq!(items.len(), 3, "{items:?}");
    let fallback = &items[0];
    assert!(
        fallback.contains("impl :: genstage :: Consumer for S"),
        "{fallback}"
    );
    assert!(
        fallback.contains(&format!(
            "type Input = :: genstage :: {PRIVATE_MODULE} :: fallback :: Rejected"
        )),
        "{fallback}"
    );
    assert!(
        fallback.contains(&format!(
            "RejectedRef < :: genstage :: {PRIVATE_MODULE} :: pipeline :: IsConsumer >"
        )),
        "{fallback}"
    );
    assert!(
        items[1..].iter().all(|item| item.contains("compile_error")),
        "{items:?}"
    );

    for (attr, marker) in [
        ("producer, buffer_size = ", "IsProducer"),
        ("producer_consumer, crate = \"::gs\"", "IsProducerConsumer"),
        ("sink", "AnyRole"),
        ("max_demand = 10", "AnyRole"),
    ] {
        let (_, items) = expanded_after_item(attr, "impl S { fn helper(&self) {} }");
        assert_eq!(items.len(), 2, "`{attr}`: {items:?}");
        assert!(items[0].contains(marker), "`{attr}`: {}", items[0]);
    }
    let (_, items) = expanded_after_item(
        "producer_consumer, crate = \"::gs\"",
        "impl S { fn helper(&self) {} }",
    );
    assert!(
        items[0].contains("impl :: gs :: ProducerConsumer for S"),
        "{}",
        items[0]
    );
    assert!(!items[0].contains("genstage"), "{}", items[0]);
}

/// `crate = gs` (`pipeline!`'s form, without the string) is one error: the expansion, or the
/// fallback, still names the crate meant, where `::genstage` may not exist (it is renamed), which
/// gave a second error at the attribute ("ambiguous associated type").
#[test]
fn a_crate_path_without_its_string_is_still_the_crate_meant() {
    for (attr, block, meant) in [
        // Expanded, the rest being sound.
        (
            "consumer, crate = gs",
            "impl S { fn handle_events(&mut self, e: Vec<u8>) {} }",
            "impl gs :: Consumer for S",
        ),
        (
            "consumer, crate = ::gs::inner",
            "impl S { fn handle_events(&mut self, e: Vec<u8>) {} }",
            "impl :: gs :: inner :: Consumer for S",
        ),
        // The fallback, the block being rejected too.
        (
            "consumer, crate = gs",
            "impl S { fn handle_events(&self, e: Vec<u8>) {} }",
            "impl gs :: Consumer for S",
        ),
    ] {
        let (_, items) = expanded_after_item(attr, block);
        let expansion = items.join(" ");
        assert!(
            !expansion.contains(":: genstage ::"),
            "`{attr}` `{block}`: {expansion}"
        );
        assert!(expansion.contains(meant), "`{attr}` `{block}`: {expansion}");
        assert!(
            expansion.contains("as a string"),
            "`{attr}` `{block}`: {expansion}"
        );
    }
}

#[test]
fn the_fallback_keeps_the_generics_and_bounds_a_borrowing_stage() {
    let (_, items) = expanded_after_item(
        "consumer",
        "impl<'a, T> S<'a, T> { fn handle_events(&mut self, e: Vec<&'a T>) {} }",
    );
    let fallback = &items[0];
    assert!(
        fallback.contains("impl < 'a , T > :: genstage :: Stage for S < 'a , T >"),
        "{fallback}"
    );
    assert!(
        fallback.contains(&format!(
            "for < '__rejected > S < 'a , T > : :: genstage :: {PRIVATE_MODULE} :: stage :: Send + 'static"
        )),
        "{fallback}"
    );
    assert!(
        fallback.contains(&format!(
            "T : :: genstage :: {PRIVATE_MODULE} :: stage :: Send + 'static"
        )),
        "{fallback}"
    );
}

#[test]
fn the_fallback_never_duplicates_a_users_trait_impl() {
    // On `impl Consumer for S`, only `Stage` is added; on `impl Stage for S`, nothing.
    let (_, items) = expanded_after_item("consumer", "impl Consumer for S { type Input = u8; }");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(!items[0].contains("Consumer for S"), "{}", items[0]);
    assert!(
        items[0].contains(":: genstage :: Stage for S"),
        "{}",
        items[0]
    );
    let (_, items) = expanded_after_item("consumer", "impl genstage::Stage for S { }");
    assert_eq!(items.len(), 1, "only the error: {items:?}");
    // Not an impl block: nothing to fall back to.
    let (_, items) = expanded_after_item("consumer", "struct S;");
    assert_eq!(items.len(), 1, "only the error: {items:?}");
    // An impl block of a trait object: no stage impls for it (`for Sink + where` would not
    // parse), only the error.
    for item in [
        "impl dyn Sink { fn handle_events(&mut self, e: Vec<u8>) {} }",
        "impl<T> Sink + { fn handle_events(&mut self, e: Vec<T>) {} }",
    ] {
        let (_, items) = expanded_after_item("consumer", item);
        assert_eq!(items.len(), 1, "only the error: {items:?}");
    }
}

#[test]
fn unsupported_genstage_callbacks_are_errors_at_their_name() {
    for name in super::parse::UNSUPPORTED_CALLBACKS {
        let item = format!(
            "impl S {{ fn handle_events(&mut self, e: Vec<u8>) {{}} fn {name}(&mut self) {{}} }}"
        );
        assert_error(
            "consumer",
            &item,
            At::Item(name, 0),
            &format!("`{name}` is a GenStage callback that genstage does not support yet, so #[stage] would never call it"),
        );
        // One error, and the stage still expands: nothing else is reported at its uses.
        let (generated, error) = expand_checked(tokens("consumer"), tokens(&item));
        assert_eq!(error.map(|e| e.into_iter().count()), Some(1), "{item}");
        assert!(generated.is_some(), "{item}");
    }
    // A method whose name merely resembles one is the user's own.
    let (_, error) = expand_checked(
        tokens("consumer"),
        tokens("impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn handle_info_later(&self) {} fn terminate_all() {} }"),
    );
    assert!(error.is_none(), "{error:?}");
}

#[test]
fn a_restart_policy_method_is_an_error_at_its_name() {
    // `#[stage]` writes the role trait's `restart_policy` from its options: a method of the block by
    // that name would never be called, and the stage would silently keep the default policy.
    for (role, item) in [
        (
            "consumer",
            "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn restart_policy(&self) -> RestartPolicy<u8> { todo!() } }",
        ),
        (
            "producer_consumer, restart = transient",
            "impl S { fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> { e } pub fn restart_policy(&self) -> RestartPolicy<u8> { todo!() } }",
        ),
        (
            "producer",
            "impl S { fn handle_demand(&mut self, d: usize) -> Vec<u8> { vec![] } fn restart_policy(&self) -> RestartPolicy<std::convert::Infallible> { todo!() } }",
        ),
    ] {
        assert_error(
            role,
            item,
            At::Item("restart_policy", 0),
            "#[stage] writes `restart_policy` from its `restart`, `max_restarts`, `max_seconds` and `redeliver` options, so this method would never be called",
        );
        // One error, and the stage still expands: nothing else is reported at its uses.
        let (generated, error) = expand_checked(tokens(role), tokens(item));
        assert_eq!(error.map(|e| e.into_iter().count()), Some(1), "{item}");
        assert!(generated.is_some(), "{item}");
    }
    // A method whose name merely resembles it is the user's own.
    let (_, error) = expand_checked(
        tokens("consumer"),
        tokens(
            "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn restart_policy_for(&self) {} }",
        ),
    );
    assert!(error.is_none(), "{error:?}");
}

#[test]
fn the_demand_option_sets_the_producers_demand_mode() {
    let (generated, error) =
        expand_checked(tokens("producer, demand = accumulate"), tokens(PRODUCER));
    assert!(error.is_none(), "{error:?}");
    let text = generated.expect("the stage expands").to_string();
    assert!(
        text.contains(
            "ProducerOptions :: for_producer () . demand (:: genstage :: DemandMode :: Accumulate)"
        ),
        "{text}"
    );
}

/// A partitioned producer of `u8` with these extra methods.
fn partitioned_with(methods: &str) -> String {
    format!("impl S {{ fn handle_demand(&mut self, d: usize) -> Vec<u8> {{ vec![] }} {methods} }}")
}

#[test]
fn a_partition_method_of_the_wrong_shape_gives_a_spanned_error() {
    let shape = "write it `fn partition(&self, event: &u8) -> Option<usize>`";
    let cases: &[(&str, &str, &str)] = &[
        (
            "fn partition(&self, event: u8) -> Option<usize> { None }",
            "event",
            "`S`'s `partition` takes the event by reference, not `u8`",
        ),
        (
            "fn partition(&self, event: &mut u8) -> Option<usize> { None }",
            "event",
            "takes the event by reference, not `&mut u8`",
        ),
        (
            "fn partition(&mut self, event: &u8) -> Option<usize> { None }",
            "&mut self, event",
            "`S`'s `partition` takes `&self` first",
        ),
        (
            "fn partition(event: &u8) -> Option<usize> { None }",
            "event",
            "takes `&self` first",
        ),
        (
            "fn partition(&self) -> Option<usize> { None }",
            "(&self)",
            "takes `&self` and one event by reference, but this one takes 1 argument",
        ),
        (
            "fn partition(&self, a: &u8, b: &u8) -> Option<usize> { None }",
            "a:",
            "but this one takes 3 arguments",
        ),
        (
            "fn partition(&self, event: &u8) { }",
            "partition",
            "`S`'s `partition` returns the event's partition",
        ),
        (
            "async fn partition(&self, event: &u8) -> Option<usize> { None }",
            "async",
            "`S`'s `partition` cannot be `async`",
        ),
        (
            "fn partition<T>(&self, event: &T) -> Option<usize> { None }",
            "<T>",
            "`S`'s `partition` cannot be generic",
        ),
    ];
    for (method, snippet, message) in cases {
        let item = partitioned_with(method);
        assert_error(
            "producer, dispatcher = partition(2)",
            &item,
            At::Item(snippet, 0),
            message,
        );
        assert_error(
            "producer, dispatcher = partition(2)",
            &item,
            At::Item(snippet, 0),
            shape,
        );
    }
}

#[test]
fn a_partition_method_is_read_only_for_a_partitioned_stage() {
    // Another stage may have a method of its own by that name.
    let item =
        partitioned_with("fn partition(&mut self, all: Vec<u8>) -> (Vec<u8>, Vec<u8>) { todo!() }");
    for attr in [
        "producer",
        "producer, dispatcher = broadcast",
        "producer, dispatcher = demand",
    ] {
        let (generated, error) = expand_checked(tokens(attr), tokens(&item));
        assert!(error.is_none(), "`#[stage({attr})]`: {error:?}");
        assert!(generated.is_some());
    }
}

/// The generated items of a stage that must expand without error, as text.
fn generated(attr: &str, item: &str) -> String {
    let (generated, error) = expand_checked(tokens(attr), tokens(item));
    assert!(error.is_none(), "`#[stage({attr})] {item}`: {error:?}");
    let generated = generated.expect("a well-formed stage expands");
    syn::parse2::<syn::File>(generated.clone())
        .unwrap_or_else(|e| panic!("`#[stage({attr})] {item}` expands to {generated}: {e}"));
    generated.to_string()
}

#[test]
fn the_dispatcher_option_expands_to_the_role_traits_dispatcher_and_what_pipeline_checks() {
    let private = format!(":: genstage :: {PRIVATE_MODULE} :: dispatch");
    let demand = generated("producer", PRODUCER);
    assert!(!demand.contains("fn dispatcher"), "{demand}");
    assert!(
        demand.contains(&format!(
            "Dispatched for S {{ type Kind = {private} :: DemandDispatch ; }}"
        )),
        "{demand}"
    );
    assert_eq!(generated("producer, dispatcher = demand", PRODUCER), demand);

    let broadcast = generated(
        "producer_consumer, dispatcher = broadcast",
        PRODUCER_CONSUMER,
    );
    assert!(broadcast.contains("fn dispatcher (& self) -> :: genstage :: Dispatch < Self , < Self as :: genstage :: ProducerConsumer > :: Output > { << Self as :: genstage :: ProducerConsumer > :: Output as SBroadcastEvent > :: dispatch :: < Self > () }"), "{broadcast}");
    assert!(
        broadcast.contains("impl < __T : :: core :: clone :: Clone > SBroadcastEvent for __T"),
        "{broadcast}"
    );
    assert!(
        broadcast.contains(&format!("type Kind = {private} :: BroadcastDispatch")),
        "{broadcast}"
    );

    let item = partitioned_with("fn partition(&self, event: &u8) -> Option<usize> { Some(0) }");
    let partition = generated("producer, dispatcher = partition(3)", &item);
    assert!(
        partition.contains("{ :: genstage :: Dispatch :: partition (3) }"),
        "{partition}"
    );
    assert!(
        partition.contains(&format!("type Kind = {private} :: PartitionDispatch < 3 >")),
        "{partition}"
    );
    for index in 0..3 {
        assert!(
            partition.contains(&format!("HasPartition < {index} > for S")),
            "{partition}"
        );
    }
    assert!(!partition.contains("HasPartition < 3 >"), "{partition}");
    assert!(
        partition.contains("impl :: genstage :: Partition < u8 > for S"),
        "{partition}"
    );
    assert!(
        partition.contains(
            "< S > :: partition (self , < u8 as SPartitionEvent < u8 >> :: from_event (__event))"
        ),
        "{partition}"
    );

    // Too many partitions to list: every index passes, `run()` checks.
    let many = generated("producer, dispatcher = partition(1000)", &item);
    assert!(
        many.contains("impl < const __I : :: core :: primitive :: usize > "),
        "{many}"
    );
    assert!(many.contains("HasPartition < __I > for S"), "{many}");
    assert!(!many.contains("HasPartition < 0 >"), "{many}");
}

#[test]
fn a_rejected_dispatcher_leaves_nothing_for_pipeline_to_check() {
    // The stage still expands, with the default dispatcher, but `pipeline!` knows nothing of it:
    // an edge with a selector or a partition gives no second error.
    for (attr, item) in [
        ("producer, dispatcher = brodcast", PRODUCER.to_owned()),
        ("producer, dispatcher = partition(2)", PRODUCER.to_owned()),
        (
            "producer, dispatcher = partition(2)",
            partitioned_with("fn partition(&self, e: u8) -> Option<usize> { None }"),
        ),
    ] {
        let (generated, error) = expand_checked(tokens(attr), tokens(&item));
        assert!(error.is_some(), "`#[stage({attr})]`");
        let text = generated.expect("the stage expands").to_string();
        assert!(text.contains("Producer for S"), "{text}");
        assert!(!text.contains("fn dispatcher"), "{text}");
        assert!(!text.contains("Dispatched"), "{text}");
    }
}

#[test]
fn a_dispatcher_method_is_called_by_the_role_trait_and_checked_by_run() {
    let item =
        partitioned_with("fn dispatcher(&self) -> Dispatch<Self, u8> { Dispatch::demand() }");
    let text = generated("producer", &item);
    assert!(text.contains("fn dispatcher (& self) -> :: genstage :: Dispatch < Self , < Self as :: genstage :: Producer > :: Output > { < S > :: dispatcher (self) }"), "{text}");
    // `pipeline!` cannot know what it returns.
    assert!(!text.contains("Dispatched"), "{text}");
    // A consumer's method of that name is its own, unless it returns a `Dispatch`.
    generated(
        "consumer",
        "impl S { fn handle_events(&mut self, e: Vec<u8>) {} fn dispatcher(&mut self, x: u8) {} }",
    );
    assert_error(
        "consumer",
        "impl S { fn handle_events(&mut self, e: Vec<u8>) {} \
         fn dispatcher(&self) -> genstage::Dispatch<Self, u8> { todo!() } }",
        At::Item("dispatcher", 0),
        "`S` is a consumer, which emits no events: `dispatcher` chooses which consumers get the events of a producer or a producer_consumer; give this method another name",
    );

    let shape = "write it `fn dispatcher(&self) -> Dispatch<Self, u8>`";
    let cases: &[(&str, &str, &str)] = &[
        (
            "fn dispatcher(&mut self) -> Dispatch<Self, u8> { todo!() }",
            "&mut self)",
            "`S`'s `dispatcher` takes `&self` first",
        ),
        (
            "fn dispatcher(&self, n: usize) -> Dispatch<Self, u8> { todo!() }",
            "n: usize",
            "`S`'s `dispatcher` takes only `&self`",
        ),
        (
            "fn dispatcher(&self) {}",
            "dispatcher",
            "`S`'s `dispatcher` returns the stage's dispatcher",
        ),
        (
            "async fn dispatcher(&self) -> Dispatch<Self, u8> { todo!() }",
            "async",
            "`S`'s `dispatcher` cannot be `async`",
        ),
    ];
    for (method, snippet, message) in cases {
        let item = partitioned_with(method);
        assert_error("producer", &item, At::Item(snippet, 0), message);
        assert_error("producer", &item, At::Item(snippet, 0), shape);
    }
    let item =
        partitioned_with("fn dispatcher(&self) -> Dispatch<Self, u8> { Dispatch::demand() }");
    assert_error(
        "producer, dispatcher = broadcast",
        &item,
        At::Attr("dispatcher", 0),
        "`dispatcher` is set here, but this impl block also defines `dispatcher`: set the dispatcher in one place",
    );
}

#[test]
fn a_dispatcher_method_s_stage_has_the_blocks_partition_function() {
    // A `dispatcher` method may return a `Dispatch::partition` whose count is known at run time:
    // the block's `partition` is then the stage's `Partition`, as with `dispatcher = partition(N)`.
    let item = partitioned_with(
        "fn dispatcher(&self) -> Dispatch<Self, u8> { Dispatch::partition(3) } \
         fn partition(&self, event: &u8) -> Option<usize> { Some(*event as usize % 3) }",
    );
    let text = generated("producer", &item);
    assert!(
        text.contains(":: genstage :: Partition < u8 > for S"),
        "{text}"
    );
    assert!(text.contains("below the number of partitions"), "{text}");
    // Without a `partition` method, or with one of another shape (a method of the user's own),
    // no `Partition`: the user may implement it by hand.
    for other in [
        "",
        "fn partition(&mut self, all: Vec<u8>) -> (Vec<u8>, Vec<u8>) { todo!() }",
    ] {
        let item = partitioned_with(&format!(
            "fn dispatcher(&self) -> Dispatch<Self, u8> {{ Dispatch::demand() }} {other}"
        ));
        let text = generated("producer", &item);
        assert!(!text.contains("Partition <"), "{text}");
    }
}

#[test]
fn a_partition_function_without_a_partitioned_dispatcher_is_an_error() {
    let method = "fn partition(&self, event: &u8) -> Option<usize> { Some(0) }";
    for attr in [
        "producer",
        "producer, dispatcher = demand",
        "producer, dispatcher = broadcast",
    ] {
        let role = attr.split(',').next().unwrap_or_default();
        assert_error(
            attr,
            &partitioned_with(method),
            At::Item("partition", 0),
            &format!("`S`'s `partition` is its partition function only with `dispatcher = partition(N)`, N the number of partitions, which `S` does not have: add it to `#[stage({role})]`, or give this method another name"),
        );
    }
    assert_error(
        "producer_consumer",
        &format!(
            "impl S {{ fn handle_events(&mut self, e: Vec<u8>) -> Vec<u8> {{ e }} {method} }}"
        ),
        At::Item("partition", 0),
        "add it to `#[stage(producer_consumer)]`",
    );
    assert_error(
        "consumer",
        &format!("impl S {{ fn handle_events(&mut self, e: Vec<u8>) {{}} {method} }}"),
        At::Item("partition", 0),
        "`S` is a consumer, which emits no events: `partition` is the partition function of a producer or producer_consumer with `dispatcher = partition(N)`; give this method another name",
    );
}

#[test]
fn restart_options_give_spanned_errors() {
    let never = "is never restarted";
    let fix = "add `restart = transient` (restarted after a failure) or `restart = permanent` (always restarted)";
    let cases: &[(&str, At, &str)] = &[
        ("consumer, restart = sometimes", At::Attr("sometimes", 0), "unknown restart value `sometimes`: `restart` is `permanent`, `transient` or `temporary`"),
        ("consumer, restart = 1", At::Attr("1", 0), "`restart` is `permanent`, `transient` or `temporary`"),
        ("consumer, restart = Restart::Transient", At::Attr("Restart", 0), "`restart` is `permanent`, `transient` or `temporary`"),
        ("consumer, restart = transient, restart = permanent", At::Attr("restart", 1), "duplicate option `restart`"),
        ("producer, redeliver, restart = transient", At::Attr("redeliver", 0), "`redeliver` hands the events a failed stage was handling to the stage restarted in its place, but `S` is a producer, which receives no events, so it has none to redeliver; a producer's options are `buffer_size`, `buffer_keep`, `demand`, `without_consumers`, `dispatcher`, `restart`, `max_restarts`, `max_seconds` and `crate`"),
        ("consumer, redeliver", At::Attr("redeliver", 0), "`redeliver` hands the events a failed stage was handling to the stage restarted in its place, but `S` is never restarted: it has no `restart` option, so it is `temporary`; add `restart = transient`"),
        ("consumer, restart = temporary, redeliver", At::Attr("redeliver", 0), "but `S` is never restarted: `restart = temporary`; add"),
        ("consumer, max_restarts = 5", At::Attr("max_restarts", 0), "`max_restarts` limits how often a failed stage is restarted, but `S` is never restarted: it has no `restart` option"),
        ("consumer, max_seconds = 5, restart = temporary", At::Attr("max_seconds", 0), "`max_seconds` limits how often a failed stage is restarted, but `S` is never restarted: `restart = temporary`"),
        ("consumer, max_seconds = 5, redeliver", At::Attr("max_seconds", 0), fix),
        ("consumer, restart = transient, max_seconds = 0", At::Attr("0", 0), "`max_seconds` must be at least 1"),
        ("consumer, restart = transient, max_seconds = window", At::Attr("window", 0), "`max_seconds` is the window, in seconds"),
        ("consumer, restart = transient, max_restarts = limit", At::Attr("limit", 0), "`max_restarts` is the number of restarts allowed within `max_seconds`, an integer literal (a `u32`), not this"),
        ("consumer, restart = transient, max_restarts = -1", At::Attr("-", 0), "an integer literal (a `u32`), not this"),
        ("consumer, restart = transient, max_restarts = 4294967296", At::Attr("4294967296", 0), "is too large"),
        ("consumer, restart = transient, redeliver, redeliver", At::Attr("redeliver", 1), "duplicate option `redeliver`"),
        ("consumer, restart = transient, redeliver = true", At::Attr("true", 0), "`redeliver` is a flag and takes no value: write `redeliver` alone"),
        ("consumer, restart = transient, redeliver true", At::Attr("true", 0), "expected `,` after `redeliver`: it is a flag, written alone"),
        ("consumer, restart", At::CallSite, "expected `=` after `restart`"),
        ("consumer, max_restarts", At::CallSite, "expected `=` after `max_restarts`"),
    ];
    for (attr, at, message) in cases {
        let item = if attr.starts_with("producer,") {
            PRODUCER
        } else {
            CONSUMER
        };
        assert_error(attr, item, *at, message);
    }
    // One error for a stage that is never restarted, however many options say how.
    let (_, error) = expand_checked(
        tokens("consumer, max_restarts = 1, max_seconds = 2, redeliver"),
        tokens(CONSUMER),
    );
    let errors: Vec<String> = error.into_iter().flatten().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(never), "{errors:?}");
    // A rejected `restart` value is the only error: the options after it are not blamed on it.
    let (generated, error) = expand_checked(
        tokens("consumer, restart = sometimes, redeliver"),
        tokens(CONSUMER),
    );
    let errors: Vec<String> = error.into_iter().flatten().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    // The stage still expands, without a restart policy.
    let text = generated.expect("the stage expands").to_string();
    assert!(!text.contains("fn restart_policy"), "{text}");
}

#[test]
fn restart_options_expand_to_the_role_traits_restart_policy() {
    let policy = |attr: &str, item: &str| {
        let text = generated(attr, item);
        let start = text.find("fn restart_policy").map(|start| &text[start..]);
        start.map(|rest| rest[..rest.find('}').map_or(rest.len(), |end| end + 1)].to_owned())
    };
    assert_eq!(policy("consumer", CONSUMER), None);
    assert_eq!(
        policy("consumer, restart = transient", CONSUMER).as_deref(),
        Some("fn restart_policy (& self) -> :: genstage :: RestartPolicy < < Self as :: genstage :: Consumer > :: Input > { :: genstage :: RestartPolicy :: new (:: genstage :: Restart :: Transient) }")
    );
    assert_eq!(
        policy("producer, restart = permanent, max_restarts = 10", PRODUCER).as_deref(),
        Some("fn restart_policy (& self) -> :: genstage :: RestartPolicy < :: genstage :: NoInput > { :: genstage :: RestartPolicy :: new (:: genstage :: Restart :: Permanent) . max_restarts (10 , :: core :: time :: Duration :: from_secs (5)) }")
    );
    assert_eq!(
        policy("producer_consumer, max_seconds = 60, restart = transient, redeliver", PRODUCER_CONSUMER).as_deref(),
        Some("fn restart_policy (& self) -> :: genstage :: RestartPolicy < < Self as :: genstage :: ProducerConsumer > :: Input > { < < Self as :: genstage :: ProducerConsumer > :: Input as SRedeliverEvent > :: redeliver (:: genstage :: RestartPolicy :: new (:: genstage :: Restart :: Transient) . max_restarts (3 , :: core :: time :: Duration :: from_secs (60))) }")
    );
    assert_eq!(
        policy("consumer, restart = temporary", CONSUMER).as_deref(),
        Some("fn restart_policy (& self) -> :: genstage :: RestartPolicy < < Self as :: genstage :: Consumer > :: Input > { :: genstage :: RestartPolicy :: new (:: genstage :: Restart :: Temporary) }")
    );
    // `redeliver` brings the helper trait whose message names a non-`Clone` event type.
    let text = generated("consumer, restart = transient, redeliver", CONSUMER);
    assert!(
        text.contains("cannot be redelivered: it does not implement `Clone`"),
        "{text}"
    );
    assert!(!generated("consumer, restart = transient", CONSUMER).contains("RedeliverEvent"));
}

/// In a generic block the events' type may be a type parameter (or hold one): `broadcast` and
/// `redeliver` call the runtime's methods as a user would, so that rustc's help asks for
/// `T: Clone`, not for a helper trait the user cannot name (`_::SBroadcastEvent`).
#[test]
fn a_generic_block_broadcasts_and_redelivers_through_the_runtimes_methods() {
    let relay = "impl<T: Send + 'static> S<T> { fn handle_events(&mut self, events: Vec<T>) -> Vec<T> { events } }";
    let broadcast = generated("producer_consumer, dispatcher = broadcast", relay);
    assert!(
        broadcast.contains("{ :: genstage :: Dispatch :: broadcast () }"),
        "{broadcast}"
    );
    assert!(!broadcast.contains("BroadcastEvent"), "{broadcast}");
    let redeliver = generated("producer_consumer, restart = transient, redeliver", relay);
    assert!(
        redeliver.contains("{ :: genstage :: RestartPolicy :: redeliver (:: genstage :: RestartPolicy :: new (:: genstage :: Restart :: Transient)) }"),
        "{redeliver}"
    );
    assert!(!redeliver.contains("RedeliverEvent"), "{redeliver}");
}

#[test]
fn every_stage_is_added_rebuildable_by_add_with() {
    for (attr, item, add) in [
        ("producer", PRODUCER, "add_producer_with_as"),
        (
            "producer_consumer",
            PRODUCER_CONSUMER,
            "add_producer_consumer_with_as",
        ),
        ("consumer", CONSUMER, "add_consumer_with_as"),
    ] {
        let text = generated(attr, item);
        assert!(
            text.contains("fn add_with (__build : impl :: core :: ops :: FnMut () -> Self"),
            "{text}"
        );
        assert!(
            text.contains(&format!("__pipeline . {add} (__name , __build)")),
            "{text}"
        );
    }
}

/// A message callback rejected (or defined a second time) still implements its message trait,
/// never called, for every type an impl header can name: its senders give no second error. Types
/// it cannot name (a borrow, `Self`, an unsized message) give no impl, which would be an error of
/// its own.
#[test]
fn a_rejected_message_callback_implements_its_trait_for_every_type_it_can_name() {
    for (method, expected) in [
        // The answer of a call without `ReplyTo` is what it returns, through a future too.
        (
            "fn handle_call(&mut self, r: Get) -> impl Future<Output = u64> + Send { async { 1 } }",
            &[":: genstage :: HandleCall < Get > for S", "type Reply = u64 ;"][..],
        ),
        (
            "async fn handle_call(&mut self, r: Get) -> StageResult<Vec<u8>> { Ok(vec![]) }",
            &[":: genstage :: HandleCall < Get > for S", "type Reply = Vec < u8 > ;"],
        ),
        (
            "fn handle_call(&mut self, r: Get) -> impl Future<Output = Result<u64, String>> { async { Ok(1) } }",
            &[":: genstage :: HandleCall < Get > for S", "type Reply = u64 ;"],
        ),
        (
            "fn handle_call(&self, r: Get, reply: ReplyTo<&'static str>) {}",
            &[":: genstage :: HandleCall < Get > for S", "type Reply = & 'static str ;"],
        ),
        (
            "fn handle_cast(&self, m: Box<dyn Fn() + Send>) {}",
            &[":: genstage :: HandleCast < Box < dyn Fn () + Send > > for S"],
        ),
        (
            "fn handle_cast(&self, m: Box<dyn Iterator<Item = u8> + Send + 'static>) {}",
            &[":: genstage :: HandleCast < Box < dyn Iterator < Item = u8 > + Send + 'static > > for S"],
        ),
        (
            "fn handle_info(&self, m: fn(&str) -> usize) {}",
            &[":: genstage :: HandleInfo < fn (& str) -> usize > for S"],
        ),
        (
            "fn handle_info(&self, m: &'static [u8]) {}",
            &[":: genstage :: HandleInfo < & 'static [u8] > for S"],
        ),
        // The second definition, left out of the block, still takes its message; the first is
        // implemented once, by the expansion.
        (
            "fn handle_call(&mut self, r: Get, reply: ReplyTo<u64>) {} fn handle_call(&mut self, r: Put, reply: ReplyTo<u8>) {}",
            &[":: genstage :: HandleCall < Get > for S", ":: genstage :: HandleCall < Put > for S", "type Reply = u8 ;"],
        ),
        (
            "fn handle_cast(&mut self, m: Box<dyn Fn() + Send +>) {} fn handle_cast(&mut self, m: Box<dyn Fn() + Send +>) {}",
            &[":: genstage :: HandleCast < Box < dyn Fn () + Send > > for S"],
        ),
    ] {
        let item = consumer_with(method);
        let (generated, error) = expand_checked(tokens("consumer"), tokens(&item));
        assert!(error.is_some(), "{item}");
        let text = generated.expect("the stage expands").to_string();
        for expected in expected {
            assert_eq!(text.matches(expected).count(), 1, "{expected}\n{item}\n{text}");
        }
    }
    for method in [
        "fn handle_cast(&self, m: Box<dyn Fn(Self) + Send>) {}",
        "fn handle_cast(&self, m: &'a str) {}",
        "fn handle_cast(&self, m: &str) {}",
        "fn handle_cast(&self, m: [u8]) {}",
        "fn handle_cast(&self, m: dyn Fn() + Send) {}",
        "fn handle_cast(&self, m: Box<dyn Fn(&'a str) + Send>) {}",
        "fn handle_cast(&self, m: Vec<impl Send>) {}",
    ] {
        let item = consumer_with(method);
        let (generated, error) = expand_checked(tokens("consumer"), tokens(&item));
        assert!(error.is_some(), "{item}");
        let text = generated.expect("the stage expands").to_string();
        assert!(!text.contains("HandleCast"), "{item}\n{text}");
    }
}
