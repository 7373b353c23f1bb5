//! A stage's partition function, and how a dispatcher is lent it.

/// How a stage maps its events to partitions, for a [`PartitionDispatcher`](super::PartitionDispatcher): `Some(i)` sends the
/// event to partition `i`, `None` discards it (counted in the report as discarded, and without using
/// up any consumer's demand).
///
/// The runtime calls it once per event, when the event is dispatched, with the stage between its
/// callbacks. An index not below the number of partitions fails the stage with an error naming the
/// index and the count: it is a bug, never a silent drop. `#[stage(…, dispatcher = partition(N))]`
/// implements it from the impl block's `fn partition(&self, event: &T) -> Option<usize>`.
pub trait Partition<T> {
    /// The partition of `event`, or `None` to discard it.
    fn partition(&self, event: &T) -> Option<usize>;
}

/// The stage's [`Partition`] function, as an [`Outbox`](super::Outbox) lends it to a dispatcher: over a batch, so
/// that the stage's function is inlined in the loop. A closure `Fn(&T) -> Option<usize>` is one.
pub trait Partitioner<T> {
    /// Appends the partition of each of `events` to `routes`, in order.
    fn partitions_of(&self, events: &[T], routes: &mut Vec<Option<usize>>);

    /// Moves each of `events`, in order, to the end of `lanes[i]`, `i` its partition; returns how
    /// many had none (`None`), or the first partition not below `lanes.len()` (then the events
    /// are dropped, some of them maybe already moved).
    ///
    /// # Errors
    ///
    /// The partition out of range.
    fn split(&self, events: Vec<T>, lanes: &mut [Vec<T>]) -> Result<usize, usize>;
}

impl<T, F: Fn(&T) -> Option<usize>> Partitioner<T> for F {
    fn partitions_of(&self, events: &[T], routes: &mut Vec<Option<usize>>) {
        routes.extend(events.iter().map(self));
    }

    fn split(&self, events: Vec<T>, lanes: &mut [Vec<T>]) -> Result<usize, usize> {
        split_by(events, lanes, self)
    }
}

/// [`Partitioner::split`] by `partition`.
#[inline]
fn split_by<T>(
    events: Vec<T>,
    lanes: &mut [Vec<T>],
    partition: impl Fn(&T) -> Option<usize>,
) -> Result<usize, usize> {
    let mut none = 0;
    for event in events {
        match partition(&event) {
            Some(index) => match lanes.get_mut(index) {
                Some(lane) => lane.push(event),
                None => return Err(index),
            },
            None => none += 1,
        }
    }
    Ok(none)
}

/// A stage's [`Partition`] function over a batch, for a stage whose type the runtime's loops do not
/// know to implement it: plain functions, made where it is known ([`Dispatch::partition`](super::Dispatch::partition)).
pub(crate) struct PartitionFns<S, T> {
    route: fn(&S, &[T], &mut Vec<Option<usize>>),
    split: SplitFn<S, T>,
}

/// [`Partitioner::split`] for a stage `S`.
type SplitFn<S, T> = fn(&S, Vec<T>, &mut [Vec<T>]) -> Result<usize, usize>;

impl<S, T> Clone for PartitionFns<S, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S, T> Copy for PartitionFns<S, T> {}

impl<S: Partition<T>, T> PartitionFns<S, T> {
    pub(super) fn of() -> Self {
        PartitionFns {
            route: |stage, events, routes| {
                routes.extend(events.iter().map(|event| stage.partition(event)));
            },
            split: |stage, events, lanes| split_by(events, lanes, |event| stage.partition(event)),
        }
    }
}

impl<S, T> PartitionFns<S, T> {
    /// The functions bound to `stage`, as an [`Outbox`](super::Outbox) takes them.
    pub(crate) fn bind(self, stage: &S) -> BoundPartition<'_, S, T> {
        BoundPartition { stage, fns: self }
    }
}

/// [`PartitionFns`] bound to their stage.
pub(crate) struct BoundPartition<'a, S, T> {
    stage: &'a S,
    fns: PartitionFns<S, T>,
}

impl<S, T> Partitioner<T> for BoundPartition<'_, S, T> {
    fn partitions_of(&self, events: &[T], routes: &mut Vec<Option<usize>>) {
        (self.fns.route)(self.stage, events, routes)
    }

    fn split(&self, events: Vec<T>, lanes: &mut [Vec<T>]) -> Result<usize, usize> {
        (self.fns.split)(self.stage, events, lanes)
    }
}
