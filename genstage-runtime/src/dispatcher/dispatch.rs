//! What a stage dispatches with.

use std::fmt;

use super::{
    BroadcastDispatcher, BroadcastEvent, DemandDispatcher, Dispatcher, Partition,
    PartitionDispatcher, PartitionFns,
};

/// What a stage dispatches with, as its [`dispatcher`](crate::Producer::dispatcher) returns it: a
/// [`Dispatcher`] and, for one that partitions, the stage's [`Partition`] function.
///
/// ```
/// use genstage::{Dispatch, Emit, Partition, Producer, StageResult};
///
/// /// Numbers, split by parity into two partitions.
/// struct Numbers(u64);
///
/// impl Partition<u64> for Numbers {
///     fn partition(&self, event: &u64) -> Option<usize> {
///         Some((event % 2) as usize)
///     }
/// }
///
/// impl Producer for Numbers {
///     type Output = u64;
///     async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
///         let start = self.0;
///         self.0 += demand as u64;
///         Ok(Emit::more((start..self.0).collect()))
///     }
///     fn dispatcher(&self) -> Dispatch<Self, u64> {
///         Dispatch::partition(2)
///     }
/// }
/// ```
pub struct Dispatch<S, T> {
    pub(crate) dispatcher: Box<dyn Dispatcher<T>>,
    pub(crate) partition: Option<PartitionFns<S, T>>,
}

impl<S, T: Send + 'static> Dispatch<S, T> {
    /// GenStage's default: each event to one consumer, the one with the most demand
    /// ([`DemandDispatcher`]).
    pub fn demand() -> Self {
        Self::custom(DemandDispatcher::new())
    }

    /// Every event to every consumer, paced by the slowest ([`BroadcastDispatcher`]); a subscription
    /// may take only some events with a selector. The events are cloned, once per consumer.
    pub fn broadcast() -> Self
    where
        T: BroadcastEvent,
    {
        Self::custom(BroadcastDispatcher::new())
    }

    /// Each event to the one consumer of its partition, `0..partitions`, by the stage's
    /// [`Partition`] function ([`PartitionDispatcher`]). Every partition must have exactly one
    /// consumer when the pipeline starts, unless the stage waits for consumers and has none then
    /// ([`WithoutConsumers::Wait`](crate::WithoutConsumers::Wait)).
    pub fn partition(partitions: usize) -> Self
    where
        S: Partition<T>,
    {
        Dispatch {
            dispatcher: Box::new(PartitionDispatcher::new(partitions)),
            partition: Some(PartitionFns::of()),
        }
    }

    /// A dispatcher of your own. One that [`partitions`](Dispatcher::partitions) needs the stage's
    /// partition function: use [`custom_partitioned`](Self::custom_partitioned).
    pub fn custom(dispatcher: impl Dispatcher<T>) -> Self {
        Dispatch {
            dispatcher: Box::new(dispatcher),
            partition: None,
        }
    }

    /// A dispatcher of your own that routes by the stage's [`Partition`] function, which its
    /// [`Outbox`](super::Outbox) lends it. When the dispatcher has no
    /// [`partitions`](Dispatcher::partitions) (`None`), the function's values are not checked
    /// against a count: they may be keys, which the dispatcher maps to consumers as it likes.
    pub fn custom_partitioned(dispatcher: impl Dispatcher<T>) -> Self
    where
        S: Partition<T>,
    {
        Dispatch {
            dispatcher: Box::new(dispatcher),
            partition: Some(PartitionFns::of()),
        }
    }

    /// How many partitions it routes events to, if it partitions.
    pub fn partitions(&self) -> Option<usize> {
        self.dispatcher.partitions()
    }

    /// Whether its subscriptions may have a selector.
    pub fn selects(&self) -> bool {
        self.dispatcher.selects()
    }
}

impl<S, T: 'static> fmt::Debug for Dispatch<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("partitions", &self.dispatcher.partitions())
            .field("selects", &self.dispatcher.selects())
            .finish_non_exhaustive()
    }
}
