//! The [`Stage`] trait: how a stage value of any role adds itself to a pipeline.

use super::Pipeline;

/// A stage of any role, as `pipeline!` sees it: how to add it to a [`Pipeline`].
///
/// `#[stage]` implements it alongside the role trait, and [`from_iter`](crate::from_iter)'s producer
/// implements it too. A stage written by hand against [`Producer`](crate::Producer),
/// [`ProducerConsumer`](crate::ProducerConsumer) or
/// [`Consumer`](crate::Consumer) implements it in three lines, to be usable in `pipeline!`:
///
/// ```
/// use genstage::{Consumer, ConsumerRef, Pipeline, Stage, StageResult};
///
/// struct Discard;
/// impl Consumer for Discard {
///     type Input = u64;
///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
/// }
/// impl Stage for Discard {
///     type Ref = ConsumerRef<Self>;
///     fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
///         pipeline.add_consumer_as(name, self)
///     }
///     // Only for a stage that may be restarted (see `RestartPolicy`).
///     fn add_with(
///         build: impl FnMut() -> Self + Send + 'static,
///         pipeline: &mut Pipeline,
///         name: Option<String>,
///     ) -> Self::Ref {
///         pipeline.add_consumer_with_as(name, build)
///     }
/// }
/// ```
pub trait Stage: Send + Sized + 'static {
    /// The handle the pipeline gives back: [`ProducerRef`](crate::ProducerRef),
    /// [`ProducerConsumerRef`](crate::ProducerConsumerRef) or [`ConsumerRef`](crate::ConsumerRef).
    type Ref: Clone;

    /// Adds this stage to `pipeline`, under `name` or, when `None`, under its type's name.
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref;

    /// Adds the stage `build` makes to `pipeline`, under `name` or, when `None`, under its type's
    /// name; `build` makes it again each time it is restarted (see
    /// [`RestartPolicy`](crate::RestartPolicy)). `pipeline!` adds a stage this way when it can
    /// evaluate the stage's expression again.
    ///
    /// The default adds the value `build` makes once, which cannot be restarted: `#[stage]`
    /// implements it with the builder's `add_producer_with_as` and its siblings, and so should a
    /// stage written by hand that may be restarted.
    fn add_with(
        mut build: impl FnMut() -> Self + Send + 'static,
        pipeline: &mut Pipeline,
        name: Option<String>,
    ) -> Self::Ref {
        build().add_to(pipeline, name)
    }

    /// Not part of the API: the `max_demand` this stage subscribes with, when `#[stage]` knows it
    /// at compile time, and whether it is GenStage's default. `pipeline!` checks a literal
    /// `-[min_demand = n]->` against it.
    #[doc(hidden)]
    const __MAX_DEMAND: Option<(usize, bool)> = None;

    /// Not part of the API: the `min_demand` this stage's `#[stage]` attribute sets, when a
    /// literal. `pipeline!` checks a literal `-[max_demand = n]->` against it.
    #[doc(hidden)]
    const __MIN_DEMAND: Option<usize> = None;
}
