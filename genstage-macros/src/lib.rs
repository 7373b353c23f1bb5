//! The `#[stage]` and `pipeline!` macros of genstage. Use them through the `genstage` crate, whose
//! documentation describes them.
//!
//! Each entry point only parses, hands on, and turns errors into compile errors; the work lives in
//! `stage/` and `pipeline/`, each split into parse, validate and expand steps.

use proc_macro::TokenStream;

mod errors;
#[cfg(test)]
mod fuzz;
mod options;
mod pipeline;
mod stage;

/// The name genstage-runtime exports its hidden module under for this release (its build script
/// computes the same name from its own version): `__private_<major>_<minor>_<patch>`. The workspace
/// gives every crate one version and the facade pins the runtime and the macros exactly, so the
/// two names agree; a macro crate of another release fails to resolve the module instead of
/// expanding to items that may have changed.
const PRIVATE_MODULE: &str = concat!(
    "__private_",
    env!("CARGO_PKG_VERSION_MAJOR"),
    "_",
    env!("CARGO_PKG_VERSION_MINOR"),
    "_",
    env!("CARGO_PKG_VERSION_PATCH"),
);

/// The path of the runtime's hidden module through `krate` (`::genstage` unless the user set
/// `crate = …`): every generated item that is not public API is named through it.
fn private_path(krate: &impl quote::ToTokens) -> proc_macro2::TokenStream {
    let module = proc_macro2::Ident::new(PRIVATE_MODULE, proc_macro2::Span::call_site());
    quote::quote!(#krate::#module)
}

/// Turns an inherent impl block into a stage: `#[stage(producer | producer_consumer | consumer, …)]`.
///
/// The impl block is kept as written (it may hold other methods); next to it the macro implements
/// the role trait (`genstage::Producer`, `ProducerConsumer` or `Consumer`) and `genstage::Stage`, so
/// the value can be added to a pipeline by `pipeline!` or by the typed builder.
///
/// ```
/// use genstage::prelude::*;
///
/// /// Counts 0, 1, 2, … up to `end` (excluded).
/// struct Counter { next: u64, end: u64 }
///
/// #[stage(producer)]
/// impl Counter {
///     fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
///         let stop = self.end.min(self.next + demand as u64);
///         let events = (self.next..stop).collect();
///         self.next = stop;
///         if stop == self.end { Emit::last(events) } else { Emit::more(events) }
///     }
/// }
///
/// struct Evens;
///
/// #[stage(producer_consumer)]
/// impl Evens {
///     fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
///         events.into_iter().filter(|n| n % 2 == 0).collect()
///     }
/// }
///
/// struct Printer { printed: usize }
///
/// #[stage(consumer, max_demand = 10, min_demand = 5)]
/// impl Printer {
///     async fn handle_events(&mut self, events: Vec<u64>) {
///         self.printed += events.len();
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), PipelineError> {
/// let mut pipeline = Pipeline::new();
/// let counter = Counter { next: 0, end: 100 }.add_to(&mut pipeline, None);
/// let evens = Evens.add_to(&mut pipeline, None);
/// let printer = Printer { printed: 0 }.add_to(&mut pipeline, None);
/// pipeline.subscribe(&counter, &evens);
/// pipeline.subscribe(&evens, &printer);
/// let report = pipeline.run().await?;
/// assert_eq!(report.stage("Printer").unwrap().events_in, 50);
/// # Ok(()) }
/// ```
///
/// # Callbacks
///
/// Each may be a `fn` or an `async fn` (or a `fn` returning `impl Future<Output = …>`); the future
/// must be `Send`, since the stage runs in its own task. The event types are read from the
/// signature, so `Vec<…>` and `Emit<…>` must be written out rather than hidden behind an alias.
/// `#[stage]` reads the callbacks before `#[cfg]` is applied, so a callback cannot be under
/// `#[cfg]`: put the `cfg` on statements inside it, or on the whole impl block.
///
/// | role | callback | returns |
/// |---|---|---|
/// | `producer` | `handle_demand(&mut self, demand: usize)` | `Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>`, `Result<Emit<T>, E>` |
/// | `producer_consumer` | `handle_events(&mut self, events: Vec<I>)` | `Vec<O>`, `Result<Vec<O>, E>` |
/// | `consumer` | `handle_events(&mut self, events: Vec<I>)` | `()`, `Result<(), E>` |
///
/// `E` is anything that converts into `genstage::StageError` (any
/// `std::error::Error + Send + Sync + 'static`, `String`, `&str`), and the `Result` may be an alias
/// such as `StageResult<Vec<T>>` or `std::io::Result<()>`. A returned `Vec<T>` means "more to come"; a producer ends by returning
/// `Emit::last(events)`.
///
/// Every role may also define these, each optional:
///
/// | callback | becomes |
/// |---|---|
/// | `handle_call(&mut self, request: M, reply: ReplyTo<R>)` | `impl HandleCall<M>` with `type Reply = R` |
/// | `handle_cast(&mut self, message: M)` | `impl HandleCast<M>` |
/// | `handle_info(&mut self, message: M)` | `impl HandleInfo<M>` |
/// | `terminate(&mut self, status: &StageStatus)` | the role trait's `terminate` |
/// | `init(&mut self)`, or with `ctx: &mut Context<Self>`; not `async` | the role trait's `init`, run as the stage starts (and in each restarted value), before any other callback |
///
/// The message callbacks may take `ctx: &mut Context<Self>` last, and return the events they emit
/// as the role's event callback does (`Vec<T>` or `Emit<T>` for a producer, `Vec<T>` for a
/// producer_consumer), or `()` for none (always, for a consumer), each maybe in a `Result<_, E>`.
/// `M` and `R` are read from the signature, so a block answers one type of each (GenStage's several
/// `handle_call` clauses become one `handle_call` taking an enum of requests, or a hand-written
/// `impl HandleCall<M2> for Stage` beside the block for each further request type; a second
/// definition in the block is an error that says so); they are owned
/// (`'static`), since they cross tasks. `terminate` returns nothing. `ReplyTo`, `Context` and
/// `StageStatus` are `genstage::ReplyTo`, `genstage::Context` and `genstage::StageStatus`.
///
/// A stage may also be told of its subscriptions, each callback optional, each but `batch_from`
/// maybe with `ctx: &mut Context<Self>` last. A consumer or a producer_consumer is told of its subscriptions to
/// producers, a producer or a producer_consumer of its consumers' subscriptions to it (a producer
/// has no producers and a consumer no consumers: on one, the other side's callbacks are an error):
///
/// | roles | callback | returns | becomes |
/// |---|---|---|---|
/// | consumer, producer_consumer | `handle_subscribe(&mut self, subscription: &Subscription)` | `Demand`, or nothing for `Demand::Automatic`; not `async` | the role trait's `handle_subscribe` |
/// | consumer, producer_consumer | `batch_from(&mut self, subscription: SubscriptionTag)`, without a context | nothing; not `async` | the role trait's `batch_from` |
/// | consumer, producer_consumer | `handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason)` | as a message callback: `Vec<O>` or `()` for a producer_consumer, `()` for a consumer, maybe in a `Result<_, E>` | the role trait's `handle_cancel` |
/// | producer, producer_consumer | `handle_consumer_subscribe(&mut self, subscriber: &Subscriber)` | nothing; not `async` | the role trait's `handle_consumer_subscribe` |
/// | producer, producer_consumer | `handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason)` | as a producer_consumer's message callback: `Vec<O>` or `()`, maybe in a `Result<_, E>` (not `Emit<O>`, even for a producer) | the role trait's `handle_consumer_cancel` |
///
/// `handle_subscribe` runs when the stage is subscribed to a producer, before its first events, and
/// chooses who asks for them: the runtime (`Demand::Automatic`) or the stage itself
/// (`Demand::Manual`, with `ctx.ask(subscription.tag(), n)` from a callback that has a context, or
/// through the `Asker` that `ctx.asker(subscription.tag())` makes, kept for `handle_events` and
/// the tasks the stage hands work to). `batch_from` runs right before each `handle_events`, with
/// the tag of the subscription the batch came on (GenStage's `from`, also for a batch handed again
/// after a restart): a stage in manual demand on several producers keeps it, and `handle_events`
/// asks through that subscription's `Asker`. `handle_cancel` runs when the
/// subscription has ended, with its `CancelReason`. On the producer side (GenStage's
/// `handle_subscribe(:consumer, …)` and `handle_cancel` of a producer), `handle_consumer_subscribe`
/// runs when a consumer has subscribed to the stage, and `handle_consumer_cancel` when that
/// subscription has ended: the events it returns go to the stage's other consumers. A producer never
/// takes control of a consumer's demand, so `handle_consumer_subscribe` returns nothing (GenStage
/// stops a producer whose `handle_subscribe` returns `:manual`; here it does not compile).
/// `Subscription`, `SubscriptionTag`, `Subscriber`, `Demand` and `CancelReason` are
/// `genstage::Subscription`, `genstage::SubscriptionTag`, `genstage::Subscriber`,
/// `genstage::Demand` and `genstage::CancelReason`.
///
/// ```
/// use genstage::prelude::*;
/// use genstage::{CancelReason, Demand, Subscriber, Subscription};
///
/// /// Emits its events in tens, and what is left when its producer is done.
/// struct Tens { held: Vec<u64> }
///
/// #[stage(producer_consumer)]
/// impl Tens {
///     fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
///         self.held.extend(events);
///         let whole = self.held.len() / 10 * 10;
///         self.held.drain(..whole).collect()
///     }
///
///     fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand {
///         println!("subscribed to {}", subscription.producer());
///         Demand::Automatic
///     }
///
///     fn handle_cancel(&mut self, _: &Subscription, reason: &CancelReason) -> Vec<u64> {
///         println!("unsubscribed: {reason:?}");
///         std::mem::take(&mut self.held)
///     }
///
///     fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber) {
///         println!("{} subscribed", subscriber.consumer());
///     }
///
///     fn handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason) {
///         println!("{} left: {reason:?}", subscriber.consumer());
///     }
/// }
/// ```
///
/// # Options
///
/// | option | roles | value | default |
/// |---|---|---|---|
/// | `max_demand` | consumer, producer_consumer | a `usize` expression, at least 1 | 1000 |
/// | `min_demand` | consumer, producer_consumer | a `usize` expression, below `max_demand` | `max_demand / 2` |
/// | `cancel` | consumer, producer_consumer | `permanent`, `transient` or `temporary` | `permanent` |
/// | `buffer_size` | producer, producer_consumer | a `usize` expression, or `infinity` (a lone name with a lower-case letter close to it, such as `infinite`, `Infinity`, `inf` or `unbounded`, is refused as a misspelling; a constant's upper-case name, such as `INFINITY`, is read as a `usize` expression) | 10 000 for a producer, `infinity` for a producer_consumer |
/// | `buffer_keep` | producer, producer_consumer | `first` or `last` | `last` |
/// | `dispatcher` | producer, producer_consumer | `demand` (to the consumer with the most demand), `broadcast` (every event to every consumer; the events must be `Clone`) or `partition(n)` (each event to the one consumer of its partition, `0..n`, `n` an integer literal of at least 1, by the block's `partition` method) | `demand` |
/// | `demand` | producer | `forward` or `accumulate`: whether it serves demand from the start, or records it until switched to forward through its reference (`ProducerRef::demand`) | `forward` |
/// | `without_consumers` | producer, producer_consumer | `stop` (it must have a consumer at the start, and stops when its last consumer leaves) or `wait` (it may start with none, and stays up, keeping its buffer for the next consumer, when the last leaves: GenStage's broadcaster; see `WithoutConsumers`) | `stop` |
/// | `restart` | all | `permanent` (always restarted: after a failure, and a producer also when it ends on its own), `transient` (restarted after a failure) or `temporary` (never restarted), OTP's values | `temporary` |
/// | `max_restarts` | all, with `restart` | at most this many restarts within `max_seconds`, an integer literal (a `u32`; `0` stops it at its first failure) | 3 |
/// | `max_seconds` | all, with `restart` | the window, in seconds, an integer literal of at least 1 | 5 |
/// | `redeliver` | consumer, producer_consumer, with `restart` | a flag, written alone: the batch a failed stage was handling is handed again to the stage restarted in its place (at least once delivery); its events must be `Clone` | off: the batch is lost |
/// | `crate` | all | the path of the genstage crate, as a string: `crate = "::my::genstage"` | `"::genstage"` |
///
/// Literal demands are checked at compile time (`max_demand = 0`, `min_demand >= max_demand`);
/// other expressions when the pipeline runs. Instead of options in the attribute, the impl block
/// may define `fn subscribe_options(&self) -> SubscribeOptions` (consumer side) or
/// `fn producer_options(&self) -> ProducerOptions` (producer side), e.g. to give each instance its
/// own; the generated trait impl then calls it.
///
/// # Restarts
///
/// `restart`, `max_restarts`, `max_seconds` and `redeliver` become the role trait's
/// `restart_policy` (`genstage::RestartPolicy::new(Restart::Transient).max_restarts(n,
/// Duration::from_secs(s)).redeliver()`); setting one of `max_restarts` and `max_seconds` keeps
/// OTP's default for the other. A restarted stage is made again by its constructor: `#[stage]`
/// implements `Stage::add_with` with the builder's `add_producer_with_as` (and its siblings), and
/// `pipeline!` evaluates a stage's expression again when it stands on its own (see its
/// documentation); a restarted stage added as a value makes `run()` fail with
/// `PipelineError::NotRebuildable`.
///
/// ```
/// use genstage::prelude::*;
///
/// struct Store;
///
/// /// Restarted after a failure, at most 10 times a minute, with the batch it failed on.
/// #[stage(consumer, restart = transient, max_restarts = 10, max_seconds = 60, redeliver)]
/// impl Store {
///     fn handle_events(&mut self, events: Vec<u64>) -> Result<(), String> {
///         let _ = events;
///         Ok(())
///     }
/// }
///
/// let policy = Consumer::restart_policy(&Store);
/// assert_eq!(policy.restart(), Restart::Transient);
/// assert_eq!(policy.limit(), (10, std::time::Duration::from_secs(60)));
/// assert!(policy.redelivers());
/// ```
///
/// # Dispatchers
///
/// `dispatcher = broadcast` and `dispatcher = partition(n)` become the role trait's `dispatcher`
/// (`genstage::Dispatch::broadcast()`, `Dispatch::partition(n)`). A partitioned stage defines, in
/// the same impl block, `fn partition(&self, event: &T) -> Option<usize>` for its output events
/// `T`: `Some(i)` sends the event to the consumer of partition `i` (an index not below `n` fails
/// the stage), `None` discards it (the report counts it as `discarded`). The runtime calls it as it
/// dispatches each event, between the stage's callbacks; the macro implements
/// `genstage::Partition<T>` with it.
///
/// ```
/// use genstage::prelude::*;
///
/// /// Every number to every consumer.
/// struct Numbers { next: u64 }
///
/// #[stage(producer, dispatcher = broadcast)]
/// impl Numbers {
///     fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
///         let events = (self.next..self.next + demand as u64).collect();
///         self.next += demand as u64;
///         events
///     }
/// }
///
/// /// Words by their first letter: a to m into partition 0, the rest into 1, none for an empty one.
/// struct ByLetter;
///
/// #[stage(producer_consumer, dispatcher = partition(2))]
/// impl ByLetter {
///     fn handle_events(&mut self, words: Vec<String>) -> Vec<String> {
///         words
///     }
///
///     fn partition(&self, word: &String) -> Option<usize> {
///         word.chars().next().map(|first| usize::from(first > 'm'))
///     }
/// }
/// ```
///
/// Instead of the attribute's `dispatcher`, the impl block may define
/// `fn dispatcher(&self) -> Dispatch<Self, T>` (a dispatcher of your own, `Dispatch::custom(…)`,
/// or `Dispatch::partition(n)` for a number of partitions known at run time), which the role
/// trait's `dispatcher` then calls; a `partition` method of the shape above is then the stage's
/// partition function too.
///
/// `pipeline!` reads the attribute's dispatcher from the stage to check the edges after it (see
/// its documentation); those after a stage whose dispatcher is a method are checked by `run()`.
///
/// # Generic stages
///
/// The impl block may be generic (`impl<T> Forward<T> where …`); the generated impls carry its
/// generics and where clause, and add `Send + 'static` bounds on the stage and each type
/// parameter. Lifetime parameters are refused: a stage owns its state.
///
/// # Expansion
///
/// `#[stage(consumer, max_demand = 10, min_demand = 5)]` on `impl Printer { async fn
/// handle_events(&mut self, events: Vec<u64>) { … } }` adds the equivalent of:
///
/// ```
/// # use genstage::prelude::*;
/// # use genstage::ConsumerRef;
/// # struct Printer;
/// # impl Printer { async fn handle_events(&mut self, events: Vec<u64>) {} }
/// impl Consumer for Printer {
///     type Input = u64;
///     fn handle_events(
///         &mut self,
///         events: Vec<u64>,
///     ) -> impl std::future::Future<Output = StageResult<()>> + Send {
///         // The inherent method, not this one; its `()` becomes `Ok(())`.
///         async move { Ok(Printer::handle_events(self, events).await) }
///     }
///     fn subscribe_options(&self) -> SubscribeOptions {
///         SubscribeOptions::new().max_demand(10).min_demand(5)
///     }
/// }
///
/// impl Stage for Printer {
///     // A handle typed by the stage: it carries `Printer`'s events and takes `Printer`'s messages.
///     type Ref = ConsumerRef<Printer>;
///     fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> ConsumerRef<Printer> {
///         pipeline.add_consumer_as(name, self)
///     }
///     // The stage `build` makes, made again by it at each restart.
///     fn add_with(
///         build: impl FnMut() -> Self + Send + 'static,
///         pipeline: &mut Pipeline,
///         name: Option<String>,
///     ) -> ConsumerRef<Printer> {
///         pipeline.add_consumer_with_as(name, build)
///     }
/// }
/// ```
///
/// A `handle_cast(&mut self, message: M)` in the block adds `impl HandleCast<M> for Printer`
/// (`type Emitted = ()` for a consumer, `Vec<T>` for a producer_consumer, `Emit<T>` for a
/// producer), whose `handle_cast` calls the block's; `handle_call` and `handle_info` likewise, and
/// `terminate` and the subscription callbacks become the role trait's methods of those names.
///
/// A producer gets `impl Producer` (`type Output` from its return type, `producer_options` from
/// its buffer options) and `add_producer_as` (`add_producer_with_as`); a producer_consumer gets
/// `impl ProducerConsumer` (both types, both kinds of options) and `add_producer_consumer_as`
/// (`add_producer_consumer_with_as`). With `restart = …`, the role trait gets `restart_policy`. The real expansion names
/// everything by absolute paths (`::genstage::…`) and converts the callback's value through hidden
/// helper traits, so that a wrong return type is reported at that type in a sentence.
///
/// # Errors
///
/// Mistakes are compile errors under the offending tokens: an unknown or missing role, an unknown,
/// duplicated or misplaced option (`buffer_size` on a consumer), a bad option value (a misspelt
/// `infinity`: ``unknown buffer_size value `infinite`: `buffer_size` is a number of events (a
/// `usize` expression) or `infinity`, for a buffer without bound``), a missing
/// callback or one that does not belong to the role, a callback defined twice or under `#[cfg]`, a
/// callback of the
/// wrong shape (no `&mut self`,
/// wrong arguments, a `handle_call` without its `ReplyTo`, a borrowed message, a consumer returning
/// events; the message lists the allowed shapes), `#[stage]` on something other than an inherent
/// impl block, a GenStage callback that genstage does not support yet (`format_discarded`: it would
/// never be called), a `restart_policy` method (written from the `restart` options, so it would
/// never be called either; `Pipeline::set_restart` sets a policy at run time), `handle_subscribe`
/// or `handle_cancel` on a producer, `handle_consumer_subscribe` or `handle_consumer_cancel` on a
/// consumer, a `handle_subscribe` that is `async` or returns
/// something other than a `Demand`, a `handle_consumer_subscribe` that is `async` or returns
/// something, an unknown dispatcher (``unknown dispatcher `round_robin` for `Numbers`: `dispatcher`
/// is `demand`, `broadcast` or `partition(n)` ``), `partition(0)` or more than 65 536 partitions, a `dispatcher` on a consumer
/// (the option, or a method returning a `Dispatch`),
/// `dispatcher = partition(n)` without a `partition` method (`` `Split` has `dispatcher =
/// partition(2)` but no `partition` method: add `fn partition(&self, event: &u64) ->
/// Option<usize>` to this impl block, … ``) or with one of another shape (its event by value or of
/// another type, a result other than `Option<usize>`), a `partition` method of that shape in a
/// stage with neither `dispatcher = partition(n)` nor a `dispatcher` method (the option forgotten:
/// `` `Split`'s `partition` is its partition function only with `dispatcher = partition(N)`, … ``),
/// `dispatcher = broadcast` with events that
/// are not `Clone` (reported under `broadcast`, naming the event type; in a generic block, rustc's
/// help asks for `T: Clone`), an unknown restart value
/// (``unknown restart value `always`: `restart` is `permanent`, `transient` or `temporary` ``),
/// `max_seconds = 0`, `redeliver` on a producer (it receives no events), `max_restarts`,
/// `max_seconds` or `redeliver` on a stage that is never restarted (no `restart`, or `restart =
/// temporary`), `redeliver` with events that are not `Clone` (reported under `redeliver`: `` `Job`
/// cannot be redelivered: it does not implement `Clone` ``; in a generic block, rustc's help asks
/// for `T: Clone`).
///
/// A rejected impl block is still emitted as written, and the stage still implements its role and
/// `Stage`, with a placeholder event type that `pipeline!` accepts anywhere: one mistake gives one
/// error, not a second one at each use of the stage.
#[proc_macro_attribute]
pub fn stage(attr: TokenStream, item: TokenStream) -> TokenStream {
    stage::expand_stage(attr.into(), item.into()).into()
}

/// Wires stages into a pipeline: `pipeline! { A -> B -> [C; 2] }`.
///
/// The macro is an expression built with the typed builder: a `genstage::Pipeline`, or, when it
/// names stages, a pipeline with a field per named stage (see [below](#what-it-evaluates-to));
/// call `.run().await` on it, or `.start()` to run it in the background. Each stage is any
/// expression whose type implements `genstage::Stage` (`#[stage]` implements it, and so does
/// `from_iter(..)`).
///
/// ```
/// # use genstage::prelude::*;
/// # use genstage::{ConsumerRef, ProducerConsumerRef};
/// # struct Evens;
/// # impl ProducerConsumer for Evens {
/// #     type Input = u64;
/// #     type Output = u64;
/// #     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
/// #         Ok(events.into_iter().filter(|n| n % 2 == 0).collect())
/// #     }
/// # }
/// # impl Stage for Evens {
/// #     type Ref = ProducerConsumerRef<Self>;
/// #     fn add_to(self, p: &mut Pipeline, name: Option<String>) -> Self::Ref {
/// #         p.add_producer_consumer_as(name, self)
/// #     }
/// # }
/// # struct Printer;
/// # impl Consumer for Printer {
/// #     type Input = u64;
/// #     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
/// # }
/// # impl Stage for Printer {
/// #     type Ref = ConsumerRef<Self>;
/// #     fn add_to(self, p: &mut Pipeline, name: Option<String>) -> Self::Ref {
/// #         p.add_consumer_as(name, self)
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), PipelineError> {
/// let report = pipeline! { from_iter(0..1_000u64) -> Evens -> [Printer; 2] }.run().await?;
///
/// let handled: u64 = report.instances("Printer").map(|printer| printer.events_in).sum();
/// assert_eq!(handled, 500);
/// assert_eq!(report.stages[2].name, "Printer[0]");
/// assert_eq!(report.stages[3].name, "Printer[1]");
/// # Ok(()) }
/// ```
///
/// # What it evaluates to
///
/// A pipeline without names is a `genstage::Pipeline`. A pipeline that names stages
/// (`name = stage`) is a value of a struct the macro makes, which has no name to write (bind it
/// with `let`), with:
///
/// - one public field per named stage, named as the stage, holding its reference, the
///   `Stage::Ref` the builder returns for it: a `ProducerRef<S>`, `ProducerConsumerRef<S>` or
///   `ConsumerRef<S>` for a stage of type `S`, and for a named group `name = [S; n]` a `Vec` of
///   its instances' references, in order. A reference reaches the running stage (`call`, `cast`,
///   `info` of `genstage::StageRef`, each checked against the stage's type: a message the stage
///   does not handle does not compile), with no type or name repeated;
/// - `run()`, `start()` and `into_pipeline()`, which consume it (take the references first:
///   `p.queue.clone()`), and `Deref`/`DerefMut` to its `Pipeline` for the rest of the builder
///   (`stage_names()`, `add_consumer`, `subscribe`, …).
///
/// So `pipeline! { … }.run().await` and `pipeline! { … }.start()` read the same with or without
/// names. Unnamed stages have no field: name a stage to reach it. (A pipeline without names stays
/// a `Pipeline`, which code can name as a type; with names, `into_pipeline()` gives one.)
///
/// ```
/// use genstage::prelude::*;
///
/// /// Jobs pushed by other tasks, emitted as the workers ask.
/// #[derive(Default)]
/// struct Queue;
///
/// struct Push(u64);
///
/// #[stage(producer)]
/// impl Queue {
///     fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
///         Vec::new() // nothing of its own: every job comes from a push
///     }
///
///     fn handle_call(&mut self, push: Push, reply: ReplyTo<()>) -> Vec<u64> {
///         reply.reply(()); // answered once the job is dispatched
///         vec![push.0]
///     }
/// }
///
/// struct Worker;
///
/// #[stage(consumer)]
/// impl Worker {
///     fn handle_events(&mut self, jobs: Vec<u64>) {
///         for job in jobs {
///             println!("job {job}");
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = pipeline! { queue = Queue::default() -> [Worker; 4] };
/// let queue = p.queue.clone(); // a `ProducerRef<Queue>`
/// let running = p.start();
/// queue.call(Push(1)).await?;
/// queue.call(Push(2)).await?;
/// let report = running.shutdown().await?;
/// assert_eq!(report.stage("queue").map(|s| s.emitted), Some(2));
/// assert_eq!(report.totals().handled, 2);
/// # Ok(()) }
/// ```
///
/// # What is evaluated again for a restart
///
/// A stage whose restart policy restarts it (`#[stage(…, restart = transient)]`) is made again by
/// evaluating its expression again, when the expression **stands on its own**: it uses no local
/// variable and no `self`, and contains no `?`, `.await`, `return`, `break`, `continue` or macro
/// call (those inside a closure or loop of the expression itself are its own). `Counter::new(0)`,
/// `Flaky { fail_on: 3 }`, `Worker`, `genstage::from_iter((0..20u64).map(|n| 2 * n))` and
/// `Worker::new(LIMIT)` stand on their own; `Worker::new(cfg.clone())`, `Queue::new(rx)`,
/// `Counter { next: 0, end }` (`end` is a local), `make()` and `from_iter(0..10)` (a bare-named
/// call may be of a local closure), `load()?` and `self.worker()` do not.
///
/// The test is syntactic and errs on the safe side: every single-segment path the expression
/// uses (not a method name or a struct name), a called one included, must be bound inside the
/// expression (a closure's parameter, a `let` of one of its blocks, a `match` arm's pattern) or
/// start with an upper-case letter (a constant, a unit or tuple struct); anything else counts as
/// a local. A function is called by its path (`genstage::from_iter(…)`, `self::make()`) to be
/// evaluated again. Such an expression becomes the body of a closure,
/// `move || expr`, called once as the stage is added (so it is evaluated once per instance, as
/// before) and at each restart, and given to `Stage::add_with`; each instance of a group has its
/// own. Every other expression is evaluated once and added as a value (`Stage::add_to`): a stage
/// added so whose policy restarts it makes `run()` fail with `PipelineError::NotRebuildable`
/// naming it. To restart such a stage, write its expression without the local (a constant, a
/// function that builds it), or add it with the builder's `add_consumer_with(move || …)` (and its
/// siblings). A stage that is never restarted may be written either way. A closure stored in a
/// local and called as the stage's expression (`make()`) counts as a function: it is moved into
/// the constructor.
///
/// # Syntax
///
/// ```text
/// PIPELINE  := ( "crate" "=" PATH ";" )? STATEMENT ( ";" STATEMENT )* ";"?
/// STATEMENT := NODE ( LINK NODE )*        a chain: each stage subscribes to the one before it
///            | NAME "=" STAGE             a definition, wired by the chains that mention NAME
///                                         (a producer that waits for consumers may stand alone)
/// NODE      := NAME "=" STAGE             a definition inside a chain
///            | NAME                       a stage defined in this pipeline, above or below
///            | STAGE                      a new, unnamed stage
/// STAGE     := EXPR                       any expression whose type implements `Stage`
///            | "[" EXPR ";" COUNT "]"     COUNT instances (a `usize` expression), EXPR evaluated once per instance
///                                         (and again at each restart, when EXPR stands on its own: see below)
/// LINK      := "->"                       subscribe with the consumer's own options
///            | "-[" OPTION ( "," OPTION )* "]->"   subscribe with these options instead
/// OPTION    := "max_demand" "=" EXPR | "min_demand" "=" EXPR
///            | "cancel" "=" ( "permanent" | "transient" | "temporary" )
///            | "partition" "=" EXPR       the partition this consumer takes (a `usize`, from 0)
///            | "selector" "=" EXPR        the events this consumer takes: a `Fn(&T) -> bool`
/// ```
///
/// - **Chains.** `A -> B -> C`: `B` subscribes to `A`, `C` to `B`. A chain starts with a producer,
///   ends with a consumer (or a producer_consumer that waits for consumers: see the end of
///   [Compile-time checks](#compile-time-checks)), and has producer_consumers in between.
/// - **Groups.** `[expr; n]` starts `n` instances of one stage, evaluating `expr` once per instance
///   (no `Clone` needed; `[Collect::new(tx.clone()); 4]` gives each instance its own sender).
///   `A -> [C; 2]`: each instance of `C` subscribes to `A`. `[B; 2] -> C`: `C` subscribes to each
///   instance of `B`. `[B; 2] -> [C; 3]`: every instance of `C` subscribes to every instance of `B`.
///   The report calls the instances `C[0]`, `C[1]`, … (`name[0]`, … for `name = [C; n]`). A count of 0 is a compile error when it
///   is a literal or names a constant (a path in upper case, `WORKERS` or `config::WORKERS`,
///   checked by a `const` assertion); any other count that is 0 makes `run()` fail with
///   `PipelineError::EmptyGroup` naming the group. A const generic parameter `N` cannot be used
///   by a `const` item, so write it `{ N }` to have it checked by `run()`.
/// - **Names.** `name = stage` defines a stage once; chains then mention `name`, in any statement,
///   above or below the definition, so a stage can have several producers (fan-in) and several
///   consumers (fan-out). The name is also the stage's name in the report and in errors; an unnamed
///   stage is named after its type (`from_iter` for `from_iter(..)`, as through the builder), and
///   unnamed stages of one type in different places are told apart as `Tap`, `Tap#2`, …. A name
///   that is also another stage's name makes `run()` return `PipelineError::DuplicateName`. Any
///   other identifier is an
///   ordinary expression (a unit struct like `Printer`, or a local variable), and each mention of it
///   is a new stage. `sink = sink` names a stage held in a local variable `sink`; a variable
///   (an identifier in lower case) used as a stage twice is an error that says so.
/// - **Fan-out splits, it does not copy.** A producer with several consumers sends each event to one
///   of them, the one with the most demand (GenStage's `DemandDispatcher`), unless its `#[stage]`
///   names another dispatcher:
///   - `dispatcher = broadcast`: every event to every consumer, in order. An edge from it may take
///     a **selector**, `numbers -[selector = |n: &u64| n % 3 == 0]-> threes`: the events it
///     rejects are not sent to that consumer and do not use up its demand. The selector is any
///     `Fn(&T) -> bool + Send + Sync + 'static` (a closure's argument type may be left out: it
///     is the producer's event type; a closure is made `move`, as it is kept for the whole run),
///     evaluated once per edge and shared by its subscriptions.
///   - `dispatcher = partition(n)`: each event to the one consumer of its partition. A **group**
///     after it, `split -> [Tap; 2]`, gives instance `i` partition `i` (the instances are made in
///     order, `0..n`); a single consumer names its partition, `split -[partition = 1]-> odd`.
///
///   The edges after a stage whose `#[stage]` names its dispatcher are checked at compile time
///   (see below); those after a stage written by hand (its role trait's `dispatcher`) by `run()`,
///   which returns `PipelineError::InvalidDispatch`, as it does for a `partition` or a group size
///   that is not a literal.
/// - **Edge options** override the consumer's defaults (those of `#[stage(consumer, max_demand =
///   …)]`) on that edge only: `A -[max_demand = 10, min_demand = 5, cancel = temporary]-> B`.
///   Values are any `usize` expressions; literal ones are checked here by the rules and in the
///   words of `#[stage]`, the others by `run()`, which returns
///   `PipelineError::InvalidSubscription` naming both stages. A literal `min_demand` on an edge
///   that sets no `max_demand` is checked against the consumer's own `max_demand` (GenStage's
///   1000, or a literal in its `#[stage]`), and a literal `max_demand` on an edge that sets no
///   `min_demand` against a literal `min_demand` in the consumer's `#[stage]`, at compile time
///   when the consumer is a unit struct written as its type, `-[min_demand = 5]-> Printer`;
///   otherwise by `run()`.
/// - **Arrows inside a stage.** Only a `->` between stages is a link: one in a path's generic
///   arguments (`Fwd::<fn() -> u64>::new()`) or in a closure's signature belongs to the stage.
/// - **`crate = path;`**, as the first statement, names the `genstage` crate when it is renamed or
///   re-exported.
///
/// ```
/// # use genstage::prelude::*;
/// # use genstage::{ConsumerRef, ProducerConsumerRef};
/// # struct Merge;
/// # impl ProducerConsumer for Merge {
/// #     type Input = u64;
/// #     type Output = u64;
/// #     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> { Ok(events) }
/// # }
/// # impl Stage for Merge {
/// #     type Ref = ProducerConsumerRef<Self>;
/// #     fn add_to(self, p: &mut Pipeline, name: Option<String>) -> Self::Ref {
/// #         p.add_producer_consumer_as(name, self)
/// #     }
/// # }
/// # struct Printer;
/// # impl Consumer for Printer {
/// #     type Input = u64;
/// #     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
/// # }
/// # impl Stage for Printer {
/// #     type Ref = ConsumerRef<Self>;
/// #     fn add_to(self, p: &mut Pipeline, name: Option<String>) -> Self::Ref {
/// #         p.add_consumer_as(name, self)
/// #     }
/// # }
/// # use crate::Printer as Audit;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), PipelineError> {
/// let report = pipeline! {
///     numbers = from_iter(0..100u64);
///     letters = from_iter(100..200u64);
///     merge = Merge;
///     numbers -> merge;  letters -> merge;            // fan-in
///     merge -[max_demand = 10]-> [Printer; 2];
///     numbers -> audit = Audit;                       // fan-out to a different stage
/// }
/// .run()
/// .await?;
///
/// let merged = report.stage("merge").unwrap().events_in;
/// let audited = report.stage("audit").unwrap().events_in;
/// assert_eq!(merged + audited, 200);
/// # Ok(()) }
/// ```
///
/// Broadcast with selectors, and partitions:
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use genstage::prelude::*;
///
/// /// 0, 1, …, 99 to every consumer.
/// struct Numbers { next: u64 }
///
/// #[stage(producer, dispatcher = broadcast)]
/// impl Numbers {
///     fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
///         let stop = 100.min(self.next + demand as u64);
///         let events = (self.next..stop).collect();
///         self.next = stop;
///         if stop == 100 { Emit::last(events) } else { Emit::more(events) }
///     }
/// }
///
/// /// Multiples of 3 discarded, the others by remainder into partitions 0 and 1.
/// struct Thirds;
///
/// #[stage(producer_consumer, dispatcher = partition(2))]
/// impl Thirds {
///     fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
///         events
///     }
///
///     fn partition(&self, n: &u64) -> Option<usize> {
///         (n % 3).checked_sub(1).map(|i| i as usize)
///     }
/// }
///
/// /// Adds up what it receives.
/// struct Sum(Arc<Mutex<u64>>);
///
/// #[stage(consumer)]
/// impl Sum {
///     fn handle_events(&mut self, events: Vec<u64>) {
///         *self.0.lock().unwrap() += events.iter().sum::<u64>();
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), PipelineError> {
/// let (evens, ones, twos) = <[Arc<Mutex<u64>>; 3]>::default().into();
/// let sums = [ones.clone(), twos.clone()];
/// let mut next = sums.iter();
/// let report = pipeline! {
///     numbers = Numbers { next: 0 };
///     numbers -[selector = |n| n % 2 == 0]-> Sum(evens.clone());        // the evens only
///     numbers -> thirds = Thirds -> [Sum(next.next().unwrap().clone()); 2]; // instance i, partition i
/// }
/// .run()
/// .await?;
///
/// assert_eq!(*evens.lock().unwrap(), (0..100).filter(|n| n % 2 == 0).sum::<u64>());
/// assert_eq!(*ones.lock().unwrap(), (0..100).filter(|n| n % 3 == 1).sum::<u64>());
/// assert_eq!(*twos.lock().unwrap(), (0..100).filter(|n| n % 3 == 2).sum::<u64>());
/// assert_eq!(report.stage("thirds").unwrap().discarded, 34);
/// # Ok(()) }
/// ```
///
/// # What it expands to
///
/// The typed builder calls below, in this order: every stage is added in the order of its
/// definition, then every arrow subscribes in the order written; each stage here stands on its
/// own, so it is added with a constructor (`Stage::add_with`; one that does not is added as a
/// value, `expr.add_to(&mut pipeline, name)`). The pipeline above is
///
/// ```
/// # use genstage::prelude::*;
/// # use genstage::{ConsumerRef, ProducerConsumerRef};
/// # struct Merge;
/// # impl ProducerConsumer for Merge {
/// #     type Input = u64;
/// #     type Output = u64;
/// #     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> { Ok(events) }
/// # }
/// # impl Stage for Merge {
/// #     type Ref = ProducerConsumerRef<Self>;
/// #     fn add_to(self, p: &mut Pipeline, name: Option<String>) -> Self::Ref {
/// #         p.add_producer_consumer_as(name, self)
/// #     }
/// # }
/// # struct Printer;
/// # impl Consumer for Printer {
/// #     type Input = u64;
/// #     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
/// # }
/// # impl Stage for Printer {
/// #     type Ref = ConsumerRef<Self>;
/// #     fn add_to(self, p: &mut Pipeline, name: Option<String>) -> Self::Ref {
/// #         p.add_consumer_as(name, self)
/// #     }
/// # }
/// # use crate::Printer as Audit;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), PipelineError> {
/// let mut pipeline = Pipeline::new();
/// let name = |name: &str| Some(name.to_owned());
/// let numbers = Stage::add_with(move || from_iter(0..100u64), &mut pipeline, name("numbers"));
/// let letters = Stage::add_with(move || from_iter(100..200u64), &mut pipeline, name("letters"));
/// let merge = Stage::add_with(move || Merge, &mut pipeline, name("merge"));
/// let printers: Vec<_> = (0..2)
///     .map(|_| Stage::add_with(move || Printer, &mut pipeline, None))
///     .collect();
/// let audit = Stage::add_with(move || Audit, &mut pipeline, name("audit"));
/// pipeline.subscribe(&numbers, &merge);
/// pipeline.subscribe(&letters, &merge);
/// for printer in &printers {
///     pipeline.subscribe_with(&merge, printer, SubscribeOptions::new().max_demand(10));
/// }
/// pipeline.subscribe(&numbers, &audit);
/// # let report = pipeline.run().await?;
/// # assert_eq!(report.stages.len(), 6);
/// # Ok(()) }
/// ```
///
/// (its value being the struct of [named stages](#what-it-evaluates-to) whose fields are
/// `numbers`, `letters`, `merge` and `audit`, holding the references above, and `pipeline`),
/// with, in addition, one check per stage and one per arrow: small traits generated inside the
/// expansion, implemented for the stage handles allowed there, that turn a wrongly wired pipeline
/// into one compile error under the stage at fault (rustc adds a `help:` line that states the
/// failed check in terms of those handles, e.g. "the trait `Sink<u64, String>` is not
/// implemented for `ConsumerRef<String>`"); and each group's instances are marked as one group (a
/// hidden call), so that the report names them `Printer[0]`, `Printer[1]` where the hand-written
/// loop above gives `Printer`, `Printer#2`.
///
/// An edge with a `selector` subscribes through
/// `pipeline.subscribe_selected(&producer, &consumer, options, selector)`, one with a
/// `partition = i` with `SubscribeOptions::partition(i)`, and instance `i` of a group after a
/// partitioned stage (one for which `pipeline.partitions(&producer)` is `Some`) with
/// `.partition(i)`.
///
/// # Compile-time checks
///
/// Each mistake is one error, underlined at the stage or arrow at fault:
///
/// | mistake | error |
/// |---|---|
/// | a consumer before `->` | `` `Printer` is a consumer, so it cannot stand before `->`: it emits no events `` |
/// | a producer after `->` | `` `Counter` is a producer, so it cannot stand after `->`: it takes no events `` |
/// | adjacent stages disagree on the event type (fan-in included) | `` `Shout` cannot be wired after `Double`: it consumes `String` but `Double` emits `u64` `` |
/// | a producer_consumer starts a chain | `` `Double` is a producer_consumer, so it cannot start the pipeline: nothing would feed it `` |
/// | a producer_consumer ends every chain it is in (but one that waits for consumers) | `` `Double` is a producer_consumer, so it cannot end the pipeline: its events would go nowhere `` |
/// | not a stage, an adapter given the wrong value (`from_stream(0..3u64)`, `from_iter(5u64)`), a generic stage whose type arguments miss its bounds | `` `NotAStage` is not a stage ``, `` `from_stream` takes a `Stream` of events, both `Send + 'static`, and `std::ops::Range<u64>` is not one ``, rustc's `` `u64` is not an iterator `` or `` `Point` doesn't implement `std::fmt::Display` `` |
/// | `[S; 0]`, `[S; N]` with `const N: usize = 0` | `a group of 0 instances starts no stage: the number of instances must be at least 1` |
/// | `-[max_demand = 0]->`, `-[max_demand = 2_000_000_000]->`, `-[max_demand = 10, min_demand = 10]->` | `` `max_demand` must be at least 1: a stage that asks for 0 events never gets any ``, `` `max_demand` must be at most 1073741824 (2^30), … ``, `` `min_demand` must be less than `max_demand`, which is 10; got 10 `` |
/// | `-[min_demand = 1000]-> Printer` where `Printer`'s `max_demand` is the default | `` `min_demand` must be less than `max_demand`, which is 1000 by default; got 1000 `` |
/// | `-[max_demand = 4]-> Printer` where `Printer`'s `#[stage]` sets `min_demand = 5` | `` `max_demand` must be more than `min_demand`, which the consumer sets to 5; got 4 `` |
/// | a variable used as a stage twice | `` `sink` is used as a stage a second time: a variable holds one stage, … name it, e.g. `sink = sink;` `` |
/// | a `selector` on an edge from a stage that does not broadcast | `` `numbers` does not broadcast, so the edge to `Tap` cannot take a `selector` `` |
/// | a `partition` on an edge from a stage that is not partitioned | `` `numbers` is not partitioned, so the edge to `Tap` cannot take a `partition` `` |
/// | a literal `partition` that is not below the number of partitions | `` `split` has 2 partitions, numbered from 0, so it has no partition 2 `` |
/// | a partitioned stage wired by `->` to a single consumer | `` `split` sends each event to one of its 2 partitions, so `Tap` must take one of them `` |
/// | a partitioned stage wired to a group of another literal size | `` `split` has 2 partitions, so the group after it has 2 instances, one per partition, not 3 `` |
/// | a `partition` on an edge to a group, or with a `selector` | `` `partition` gives one partition of `split` to one consumer, but `Tap` is a group: … ``, `` an edge takes a `selector` (from a stage that broadcasts) or a `partition` (from a partitioned stage), not both: … `` |
/// | an unknown or repeated edge option, an unknown cancel mode | `` unknown edge option `max_demnd`: the options of an edge are `max_demand`, `min_demand`, `cancel`, `partition` and `selector` `` |
/// | an edge option's value of the wrong type | `` `max_demand` is a number of events (a `usize`), not this literal ``, `` expected a `Fn(&u64)` closure, found `bool` `` |
/// | stages listed in parentheses as a fan-out, `a -> (b; c)` | `` a list of stages is not a stage: to feed several stages from one, name it and write a chain to each, e.g. `src = Source; src -> a; src -> b` `` |
/// | a cycle | `` this arrow closes a cycle: `first -> second -> first` `` |
/// | the same pair wired twice | `` `printer` is already wired after `numbers` `` |
/// | a name defined twice, or never wired (but a producer that waits for consumers) | `` the stage name `numbers` is already defined ``, `` the stage `letters` is never wired `` |
/// | a misspelt name (an ordinary expression, see above) | rustc's `` cannot find value `nubmers` in this scope `` |
/// | an empty pipeline, a dangling `->`, `[S;]`, stray tokens, a lone stage | `expected a stage after ->`, … |
///
/// A stage whose events would go nowhere is refused (a dead end is most likely a mistake), unless
/// its `#[stage]` says `without_consumers = wait`: such a producer may stand alone as a
/// definition, `room = Room;`, and such a producer_consumer may end a chain, `room -> relay =
/// Relay;`, their consumers subscribing later through the running pipeline's handle (GenStage's
/// broadcaster; see `WithoutConsumers`). A stage written by hand that waits is added so through
/// the builder.
#[proc_macro]
pub fn pipeline(input: TokenStream) -> TokenStream {
    pipeline::expand_pipeline(input.into()).into()
}
