//! Support for `pipeline!` expansions.
//!
//! `pipeline!` cannot see a stage's type, so it leaves the checks to rustc: every stage expression
//! goes through `Stage::add_to`, and each node and edge of the pipeline gets a small trait,
//! generated inside the expansion with the names of its stages in its `on_unimplemented` message,
//! implemented for the stage handles allowed there (`ProducerRef`, `ProducerConsumerRef`,
//! `ConsumerRef`). rustc prints the trait and the handle type in a `help:` line, so both read as
//! the user's own code: "the trait `main::Sink<u64, String>` is not implemented for
//! `ConsumerRef<String>`" (the trait is local to the expansion, so rustc prefixes the enclosing
//! function's path).
//! Nothing of this module may appear in an error. The checks use:
//!
//! - [`Wiring`]: a stage handle's role ([`IsProducer`], [`IsProducerConsumer`], [`IsConsumer`]),
//!   whether it emits and accepts events ([`Yes`]/[`No`]), and its event types. It is
//!   implemented for all three handles, so a stage in the wrong place still has event types (the
//!   uninhabited [`Nothing`]) and its edges are skipped rather than reported a second time.
//! - [`events_of`] and [`consumer_side`]: an edge's check is `Sink<Out>`, implemented for the
//!   consumer handles of `Out` and for [`Skipped`], the consumer side of an edge with a side in
//!   the wrong role (its node's check reported it). [`subscribe`] calls
//!   [`Pipeline::subscribe_with`].
//! - The handle of a stage whose `#[stage]` was rejected ([`RejectedRef`](super::fallback::RejectedRef))
//!   neither emits nor accepts, so its edges are skipped too, and every node check is implemented
//!   for it: its one error is the one under its `#[stage]`.

use std::sync::Arc;

use crate::error::PipelineError;
use crate::options::{CancelMode, SubscribeOptions};
use crate::pipeline::ends::{Sealed, SinkEnd, SourceEnd};
use crate::pipeline::{
    ConsumerRef, Pipeline, ProducerConsumerRef, ProducerRef, Sink, Source, StageId,
};
use crate::stage::{Consumer, Producer, ProducerConsumer};

/// The role of a producer.
#[derive(Debug)]
pub enum IsProducer {}
/// The role of a producer_consumer.
#[derive(Debug)]
pub enum IsProducerConsumer {}
/// The role of a consumer.
#[derive(Debug)]
pub enum IsConsumer {}

/// The stage emits (as `Emits`) or accepts (as `Accepts`) events.
#[derive(Debug)]
pub enum Yes {}
/// The stage does not emit (as `Emits`) or accept (as `Accepts`) events.
#[derive(Debug)]
pub enum No {}

/// The event type of a side a stage does not have: a consumer's output, a producer's input.
#[derive(Debug)]
pub enum Nothing {}

/// What `pipeline!` needs to know about a stage handle: its role, its event types, its ends.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stage handle",
    note = "`Stage::Ref` is `ProducerRef<T>`, `ProducerConsumerRef<I, O>` or `ConsumerRef<T>`, as `Pipeline::add_producer_as` and its siblings return"
)]
pub trait Wiring {
    /// [`IsProducer`], [`IsProducerConsumer`] or [`IsConsumer`].
    type Role;
    /// [`Yes`] when the stage emits events (may stand before `->`).
    type Emits;
    /// [`Yes`] when the stage accepts events (may stand after `->`).
    type Accepts;
    /// The events it emits ([`Nothing`] for a consumer).
    type Out: Send + 'static;
    /// The events it accepts ([`Nothing`] for a producer).
    type In: Send + 'static;
    /// Where consumers subscribe to it, if it emits.
    fn source_end(&self) -> Option<SourceEnd<Self::Out>>;
    /// Where producers send it events, if it accepts them.
    fn sink_end(&self) -> Option<SinkEnd<Self::In>>;
}

impl<S: Producer> Wiring for ProducerRef<S> {
    type Role = IsProducer;
    type Emits = Yes;
    type Accepts = No;
    type Out = S::Output;
    type In = Nothing;
    fn source_end(&self) -> Option<SourceEnd<S::Output>> {
        Some(Source::source_end(self))
    }
    fn sink_end(&self) -> Option<SinkEnd<Nothing>> {
        None
    }
}

impl<S: ProducerConsumer> Wiring for ProducerConsumerRef<S> {
    type Role = IsProducerConsumer;
    type Emits = Yes;
    type Accepts = Yes;
    type Out = S::Output;
    type In = S::Input;
    fn source_end(&self) -> Option<SourceEnd<S::Output>> {
        Some(Source::source_end(self))
    }
    fn sink_end(&self) -> Option<SinkEnd<S::Input>> {
        Some(Sink::sink_end(self))
    }
}

impl<S: Consumer> Wiring for ConsumerRef<S> {
    type Role = IsConsumer;
    type Emits = No;
    type Accepts = Yes;
    type Out = Nothing;
    type In = S::Input;
    fn source_end(&self) -> Option<SourceEnd<Nothing>> {
        None
    }
    fn sink_end(&self) -> Option<SinkEnd<S::Input>> {
        Some(Sink::sink_end(self))
    }
}

/// Marks the instances of a group `[C; n]` as one group, so that the report names them `C[0]`,
/// `C[1]`, … (two unnamed stages of one type elsewhere are `C` and `C#2`).
pub fn group<R: Wiring>(pipeline: &mut Pipeline, instances: &[R]) {
    let ids: Vec<StageId> = instances
        .iter()
        .filter_map(|instance| {
            let source = instance.source_end().map(|end| end.id);
            source.or_else(|| instance.sink_end().map(|end| end.id))
        })
        .collect();
    pipeline.mark_group(&ids);
}

/// [`Yes`] when both are [`Yes`].
pub trait Both<Other> {
    /// [`Yes`] or [`No`].
    type Output;
}

impl Both<Yes> for Yes {
    type Output = Yes;
}

impl Both<No> for Yes {
    type Output = No;
}

impl<Other> Both<Other> for No {
    type Output = No;
}

/// Whether an edge from `A` to `B` can be wired: [`Yes`] or [`No`].
pub type Wired<A, B> = <<A as Wiring>::Emits as Both<<B as Wiring>::Accepts>>::Output;

/// The consumer side of an edge that is skipped: a side in the wrong role was reported by its
/// node's check, and every edge check is implemented for this.
#[derive(Debug)]
pub struct Skipped;

/// The events of an edge, as its check's parameter: the producer's end (`None` for a skipped
/// edge), and the edge's selector, if it has one.
pub struct Events<T> {
    source: Option<SourceEnd<T>>,
    selector: Option<Selector<T>>,
}

impl<T> std::fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("source", &self.source.as_ref().map(|end| end.id))
            .field("selected", &self.selector.is_some())
            .finish()
    }
}

/// An edge's `selector = …`, evaluated once and shared by the edge's subscriptions.
pub type Selector<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// What makes the selector of an edge from the stages `_producers` to the stages `_consumers`: a
/// function that takes it as an `Arc` of the closure, typed by the producers' events (so that a
/// closure needs no annotation), or by the consumers' when the producers emit none (a stage in the
/// wrong role, or one whose `#[stage]` was rejected: reported once, by its own check, not again by
/// the closure). The closure is coerced to a `Selector` at that call, not checked against a bound
/// of a generic function, so that a closure of the wrong type, or one that is not `Send + Sync`, is
/// reported under the user's closure without naming this item.
#[inline]
pub fn selector<A: Wiring, B: Wiring>(_producers: &[A], _consumers: &[B]) -> MakeSelector<A, B>
where
    A::Emits: SelectorEvent<A::Out, B::In>,
{
    |selector| selector
}

/// What [`selector`] returns: the identity on the edge's `Selector`, to coerce the closure at.
pub type MakeSelector<A, B> = fn(Selector<SelectedEvent<A, B>>) -> Selector<SelectedEvent<A, B>>;

/// The events an edge's selector takes: see [`selector`].
pub type SelectedEvent<A, B> =
    <<A as Wiring>::Emits as SelectorEvent<<A as Wiring>::Out, <B as Wiring>::In>>::Event;

/// The events an edge's selector takes, by whether its producer emits (`Out`) or not (`In`, the
/// consumer's, so that the closure still type-checks).
pub trait SelectorEvent<Out, In> {
    /// `Out` or `In`.
    type Event;
    /// The selector, for the producer's events: `None` when the producer emits none (the edge is
    /// skipped).
    fn selector_of(selector: &Selector<Self::Event>) -> Option<Selector<Out>>;
}

impl<Out, In> SelectorEvent<Out, In> for Yes {
    type Event = Out;
    #[inline]
    fn selector_of(selector: &Selector<Out>) -> Option<Selector<Out>> {
        Some(Arc::clone(selector))
    }
}

impl<Out, In> SelectorEvent<Out, In> for No {
    type Event = In;
    #[inline]
    fn selector_of(_selector: &Selector<In>) -> Option<Selector<Out>> {
        None
    }
}

/// The consumer side of an edge as its check sees it: the consumer's handle when the edge can be
/// wired ([`Yes`]), [`Skipped`] otherwise ([`No`]).
pub trait Select<B> {
    /// `B` or [`Skipped`].
    type Consumer;
    /// The consumer side.
    fn select(consumer: &B) -> &Self::Consumer;
}

impl<B> Select<B> for Yes {
    type Consumer = B;
    #[inline]
    fn select(consumer: &B) -> &B {
        consumer
    }
}

impl<B> Select<B> for No {
    type Consumer = Skipped;
    #[inline]
    fn select(_consumer: &B) -> &Skipped {
        &Skipped
    }
}

/// The events an edge from `producer` carries: its check's parameter.
#[inline]
pub fn events_of<A: Wiring>(producer: &A) -> Events<A::Out> {
    Events {
        source: producer.source_end(),
        selector: None,
    }
}

/// The events an edge from `producer` to `_consumer` carries, through `selector`.
#[inline]
pub fn events_selected<A: Wiring, B: Wiring>(
    producer: &A,
    _consumer: &B,
    selector: &Selector<SelectedEvent<A, B>>,
) -> Events<A::Out>
where
    A::Emits: SelectorEvent<A::Out, B::In>,
{
    Events {
        source: producer.source_end(),
        selector: <A::Emits as SelectorEvent<A::Out, B::In>>::selector_of(selector),
    }
}

/// The events `consumer` accepts: its edge check's second parameter, for the message.
#[inline]
pub fn events_into<B: Wiring>(_consumer: &B) -> std::marker::PhantomData<B::In> {
    std::marker::PhantomData
}

/// The consumer side of an edge from `producer` to `consumer`: its check's `Self`.
#[inline]
pub fn consumer_side<'a, A: Wiring, B: Wiring>(
    _producer: &A,
    consumer: &'a B,
) -> &'a <Wired<A, B> as Select<B>>::Consumer
where
    A::Emits: Both<B::Accepts>,
    Wired<A, B>: Select<B>,
{
    <Wired<A, B> as Select<B>>::select(consumer)
}

/// `Self` and `T` are the same event type: implemented for `T: SameEvents<T>` only. An edge's
/// check requires it of the producer's and the consumer's event types.
pub trait SameEvents<T>: Sized {
    /// The events, typed as the consumer's.
    fn cast(events: Events<Self>) -> Events<T>;
}

impl<T> SameEvents<T> for T {
    #[inline]
    fn cast(events: Events<T>) -> Events<T> {
        events
    }
}

/// Returns its argument: gives a value bound by the expansion the span of the user's tokens.
#[inline]
pub fn identity<T>(value: T) -> T {
    value
}

/// Subscribes `consumer` to the producer of `events` with `options`, through the edge's selector
/// if it has one: the body of an edge's check.
#[inline]
pub fn subscribe<B: Wiring>(
    pipeline: &mut Pipeline,
    events: Events<B::In>,
    consumer: &B,
    options: SubscribeOptions,
) {
    if let (Some(source), Some(sink)) = (events.source, consumer.sink_end()) {
        match events.selector {
            Some(selector) => {
                pipeline.subscribe_selected(&End(source), &End(sink), options, move |event| {
                    selector(event)
                });
            }
            None => {
                pipeline.subscribe_with(&End(source), &End(sink), options);
            }
        }
    }
}

/// The options of instance `instance` of a group wired after `producer` by an edge that names no
/// partition: partition `instance` when `producer` is partitioned (`run()` reports a group whose
/// size differs from the number of partitions), `options` as they are otherwise.
#[inline]
pub fn instance_options<A: Wiring>(
    pipeline: &Pipeline,
    producer: &A,
    options: SubscribeOptions,
    instance: usize,
) -> SubscribeOptions {
    let partitioned = producer
        .source_end()
        .is_some_and(|source| pipeline.partitions(&End(source)).is_some());
    if partitioned {
        options.partition(instance)
    } else {
        options
    }
}

/// A mailbox end, as the builder's [`Source`]/[`Sink`] arguments.
struct End<E>(E);

impl<E> Sealed for End<E> {}

impl<T> Source<T> for End<SourceEnd<T>> {
    fn source_end(&self) -> SourceEnd<T> {
        self.0.clone()
    }
}

impl<T> Sink<T> for End<SinkEnd<T>> {
    fn sink_end(&self) -> SinkEnd<T> {
        self.0.clone()
    }
}

/// Records that the group `[S; n]` named `group` has no instance: `run()` then fails with
/// [`PipelineError::EmptyGroup`] naming it (a literal or constant 0 is a compile error instead).
#[inline]
pub fn empty_group(pipeline: &mut Pipeline, group: &str) {
    pipeline.record_error(PipelineError::EmptyGroup {
        group: group.to_owned(),
    });
}

/// The error of an edge's literal `min_demand` that is not below its consumer's `max_demand`, or of
/// its literal `max_demand` not above the consumer's `min_demand`, written at compile time by a
/// `const` assertion of `pipeline!`, in `#[stage]`'s words.
#[derive(Debug)]
pub struct DemandMessage {
    bytes: [u8; 128],
    len: usize,
}

impl DemandMessage {
    const EMPTY: Self = DemandMessage {
        bytes: [0; 128],
        len: 0,
    };

    /// The message for the edge's `min` against the consumer's `max` (GenStage's default when
    /// `default`).
    pub const fn min_demand(min: usize, max: usize, default: bool) -> Self {
        let mut message = Self::EMPTY;
        message.push(b"`min_demand` must be less than `max_demand`, which is ");
        message.number(max);
        if default {
            message.push(b" by default");
        }
        message.push(b"; got ");
        message.number(min);
        message
    }

    /// The message for the edge's `max` against the consumer's `min`.
    pub const fn max_demand(max: usize, min: usize) -> Self {
        let mut message = Self::EMPTY;
        message.push(b"`max_demand` must be more than `min_demand`, which the consumer sets to ");
        message.number(min);
        message.push(b"; got ");
        message.number(max);
        message
    }

    /// The message as text.
    pub const fn as_str(&self) -> &str {
        match core::str::from_utf8(self.bytes.split_at(self.len).0) {
            Ok(text) => text,
            Err(_) => "`min_demand` must be less than `max_demand`",
        }
    }

    const fn push(&mut self, text: &[u8]) {
        let mut i = 0;
        while i < text.len() && self.len < self.bytes.len() {
            self.bytes[self.len] = text[i];
            self.len += 1;
            i += 1;
        }
    }

    const fn number(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        while count > 0 {
            count -= 1;
            self.push(&[digits[count]]);
        }
    }
}

/// A stage whose `#[stage]` says `without_consumers = wait`: `pipeline!` lets it stand alone, its
/// consumers subscribed through the running pipeline's handle. Implemented by the expansion only.
pub trait Waits {}

/// Subscription options of one edge, from its `-[…]->` settings.
#[inline]
pub fn edge_options(
    max_demand: Option<usize>,
    min_demand: Option<usize>,
    cancel: Option<CancelMode>,
    partition: Option<usize>,
) -> SubscribeOptions {
    SubscribeOptions {
        max_demand,
        min_demand,
        cancel,
        partition,
    }
}

/// The cancel modes, as `-[cancel = …]->` names them.
pub use crate::options::CancelMode::{Permanent, Temporary, Transient};
