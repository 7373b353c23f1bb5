//! Support for `pipeline!` expansions.
//!
//! `pipeline!` cannot see a stage's type, so it leaves the checks to rustc: every stage expression
//! goes through [`AddStage::add_stage`], and each node and edge of the pipeline gets a small trait,
//! generated inside the expansion with the names of its stages in its `on_unimplemented` message,
//! implemented for what is allowed there. Those traits are written against the types below:
//!
//! - [`Wiring`] tells a stage handle's role ([`IsProducer`], [`IsProducerConsumer`],
//!   [`IsConsumer`]), whether it emits and accepts events ([`Yes`]/[`No`]), and its event types.
//!   It is implemented for all three handles, so a stage in the wrong place still has event types
//!   (the uninhabited [`Nothing`]) and its edges are skipped rather than reported a second time.
//! - An edge's check is implemented for [`Pair`]`<Yes, Out, In>` when `(): `[`SameEvents`]`<Out,
//!   In>`, and for `Pair<No, Out, In>`: a side in the wrong role is reported by its node's check, and
//!   the edge is skipped. [`SameEvents::subscribe`] calls [`Pipeline::subscribe_with`].
//! - The handle of a stage whose `#[stage]` was rejected ([`RejectedRef`](super::fallback::RejectedRef))
//!   neither emits nor accepts, so its edges are skipped too; its role is the attribute's, or
//!   [`AnyRole`](super::fallback::AnyRole), which every node check is implemented for.

use std::marker::PhantomData;

use crate::options::{CancelMode, SubscribeOptions};
use crate::pipeline::ends::{Sealed, SinkEnd, SourceEnd};
use crate::pipeline::Stage;
use crate::pipeline::{
    ConsumerRef, Pipeline, ProducerConsumerRef, ProducerRef, Sink, Source, StageId,
};

/// Adds a stage expression to the pipeline; rustc's error for a non-stage names its type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stage",
    label = "not a producer, producer_consumer or consumer",
    note = "a stage in `pipeline!` implements `genstage::Stage`: add `#[stage(producer)]`, `#[stage(producer_consumer)]` or `#[stage(consumer)]` to its impl block, or implement `Stage` by hand"
)]
pub trait AddStage: Sized {
    /// The handle the pipeline gives back.
    type Ref;
    /// Adds `self` to `pipeline` under `name` (its type's name when `None`).
    fn add_stage(self, pipeline: &mut Pipeline, name: Option<&str>) -> Self::Ref;
}

#[diagnostic::do_not_recommend]
impl<S: Stage> AddStage for S {
    type Ref = S::Ref;
    #[inline]
    fn add_stage(self, pipeline: &mut Pipeline, name: Option<&str>) -> S::Ref {
        self.add_to(pipeline, name.map(str::to_owned))
    }
}

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

impl<T: Send + 'static> Wiring for ProducerRef<T> {
    type Role = IsProducer;
    type Emits = Yes;
    type Accepts = No;
    type Out = T;
    type In = Nothing;
    fn source_end(&self) -> Option<SourceEnd<T>> {
        Some(Source::source_end(self))
    }
    fn sink_end(&self) -> Option<SinkEnd<Nothing>> {
        None
    }
}

impl<I: Send + 'static, O: Send + 'static> Wiring for ProducerConsumerRef<I, O> {
    type Role = IsProducerConsumer;
    type Emits = Yes;
    type Accepts = Yes;
    type Out = O;
    type In = I;
    fn source_end(&self) -> Option<SourceEnd<O>> {
        Some(Source::source_end(self))
    }
    fn sink_end(&self) -> Option<SinkEnd<I>> {
        Some(Sink::sink_end(self))
    }
}

impl<T: Send + 'static> Wiring for ConsumerRef<T> {
    type Role = IsConsumer;
    type Emits = No;
    type Accepts = Yes;
    type Out = Nothing;
    type In = T;
    fn source_end(&self) -> Option<SourceEnd<Nothing>> {
        None
    }
    fn sink_end(&self) -> Option<SinkEnd<T>> {
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

/// The role of the stages of one node (all its instances share a type): what its check is
/// implemented for.
#[derive(Debug)]
pub struct StageRole<R>(PhantomData<R>);

/// The role of a node's stages.
#[inline]
pub fn role<R: Wiring>(_instances: &[R]) -> StageRole<R::Role> {
    StageRole(PhantomData)
}

/// One edge as its check sees it: whether both sides can be wired ([`Yes`] when the producer side
/// emits and the consumer side accepts events), and their event types.
#[derive(Debug)]
pub struct Pair<Wired, Out, In>(PhantomData<(Wired, Out, In)>);

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

/// The pair of an edge from `producer` to `consumer`.
#[inline]
pub fn pair<A: Wiring, B: Wiring>(_producer: &A, _consumer: &B) -> Pair<Wired<A, B>, A::Out, B::In>
where
    A::Emits: Both<B::Accepts>,
{
    Pair(PhantomData)
}

/// `Out` and `In` are the same event type: an edge whose producer emits `Out` may feed a consumer
/// of `In`. Implemented for `(): SameEvents<T, T>` only.
pub trait SameEvents<Out, In> {
    /// Subscribes `consumer` to `producer` with `options`.
    fn subscribe<A: Wiring<Out = Out>, B: Wiring<In = In>>(
        pipeline: &mut Pipeline,
        producer: &A,
        consumer: &B,
        options: SubscribeOptions,
    );
}

impl<T: Send + 'static> SameEvents<T, T> for () {
    #[inline]
    fn subscribe<A: Wiring<Out = T>, B: Wiring<In = T>>(
        pipeline: &mut Pipeline,
        producer: &A,
        consumer: &B,
        options: SubscribeOptions,
    ) {
        // Both ends exist: the edge's check implements this only for a producer side that emits
        // and a consumer side that accepts.
        if let (Some(source), Some(sink)) = (producer.source_end(), consumer.sink_end()) {
            pipeline.subscribe_with(&End(source), &End(sink), options);
        }
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

/// Subscription options of one edge, from its `-[…]->` settings.
#[inline]
pub fn edge_options(
    max_demand: Option<usize>,
    min_demand: Option<usize>,
    cancel: Option<CancelMode>,
) -> SubscribeOptions {
    SubscribeOptions {
        max_demand,
        min_demand,
        cancel,
    }
}

/// The cancel modes, as `-[cancel = …]->` names them.
pub use crate::options::CancelMode::{Permanent, Temporary, Transient};
