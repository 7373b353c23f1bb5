//! A stage's partition function, and how a dispatcher is lent it.

use std::cell::Cell;

/// How a stage maps its events to partitions, for a [`PartitionDispatcher`](super::PartitionDispatcher): `Some(i)` sends the
/// event to partition `i`, `None` discards it (counted in the report as discarded, and without using
/// up any consumer's demand).
///
/// The runtime calls it once per event, when the event is dispatched, with the stage between its
/// callbacks. An index not below the number of partitions fails the stage with an error naming the
/// index and the count: it is a bug, never a silent drop. The stage is not restarted then, whatever
/// its [`RestartPolicy`](crate::RestartPolicy): the dispatcher, which a restart keeps, cannot
/// dispatch the event, so the run fails (a panic in `partition` is a failure of the stage like a
/// callback's, and its policy restarts it). `#[stage(…, dispatcher = partition(N))]` implements it
/// from the impl block's `fn partition(&self, event: &T) -> Option<usize>`.
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
    /// are dropped, some of them maybe already moved). An empty `lanes[0]` may be replaced by the
    /// batch's own buffer: leave it without capacity, rather than reserve for it.
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
///
/// When the first lane is empty, the batch's own buffer becomes it: the first partition's events stay
/// where they are and only the others move. The batch was just written on this core, so its memory
/// is in this core's cache, where a fresh buffer mostly is not: the allocator hands back what a
/// consumer freed after reading it on another core, and writing there costs a transfer per cache
/// line.
#[inline]
fn split_by<T>(
    mut events: Vec<T>,
    lanes: &mut [Vec<T>],
    partition: impl Fn(&T) -> Option<usize>,
) -> Result<usize, usize> {
    let mut none = 0;
    if !lanes.first().is_some_and(Vec::is_empty) {
        for event in events {
            let route = partition(&event);
            place(event, route, lanes, &mut none)?;
        }
        return Ok(none);
    }
    // The partition of the event being looked at, which the loop reads as the event comes out.
    let route = Cell::new(None);
    let moved = events.extract_if(.., |event| {
        route.set(partition(event));
        route.get() != Some(0)
    });
    for event in moved {
        place(event, route.get(), lanes, &mut none)?;
    }
    // A lane that keeps a mostly empty buffer would hold on to its memory while it waits in a backlog.
    if events.capacity() / 2 > events.len() {
        events.shrink_to_fit();
    }
    lanes[0] = events;
    Ok(none)
}

/// Appends `event` to the lane of `route`, or counts it in `none` when it has no partition; the
/// route when its lane does not exist.
#[inline]
fn place<T>(
    event: T,
    route: Option<usize>,
    lanes: &mut [Vec<T>],
    none: &mut usize,
) -> Result<(), usize> {
    match route {
        Some(index) => match lanes.get_mut(index) {
            Some(lane) => lane.push(event),
            None => return Err(index),
        },
        None => *none += 1,
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::Partitioner;

    fn by_remainder(n: &u32) -> Option<usize> {
        (n % 5 != 4).then_some((n % 5) as usize % 4)
    }

    #[test]
    fn a_split_keeps_each_partitions_order_whether_or_not_the_batch_becomes_the_first_lane() {
        let expected = [
            vec![0, 5, 10, 15],
            vec![1, 6, 11, 16],
            vec![2, 7, 12, 17],
            vec![3, 8, 13, 18],
        ];
        for reserved in [0, 8] {
            let mut lanes: Vec<Vec<u32>> = (0..4).map(|_| Vec::with_capacity(reserved)).collect();
            let split = by_remainder.split((0..20).collect(), &mut lanes);
            assert_eq!(split, Ok(4), "4, 9, 14 and 19 have no partition");
            assert_eq!(lanes, expected);
        }
    }

    #[test]
    fn a_first_lane_that_takes_the_batch_does_not_keep_much_more_room_than_its_events() {
        let mut lanes: Vec<Vec<u32>> = vec![Vec::new(), Vec::new()];
        let first_of_ten = |n: &u32| Some(usize::from(!n.is_multiple_of(10)));
        assert_eq!(first_of_ten.split((0..1000).collect(), &mut lanes), Ok(0));
        assert_eq!(lanes[0], (0..100).map(|n| n * 10).collect::<Vec<_>>());
        assert!(lanes[0].capacity() <= 200, "{}", lanes[0].capacity());
        assert_eq!(lanes[1].len(), 900);
    }

    #[test]
    fn a_partition_out_of_range_is_reported_whichever_way_the_batch_is_split() {
        for reserved in [0, 8] {
            let mut lanes: Vec<Vec<u32>> = (0..2).map(|_| Vec::with_capacity(reserved)).collect();
            let split = (|n: &u32| Some(*n as usize)).split(vec![0, 1, 2, 3], &mut lanes);
            assert_eq!(split, Err(2));
        }
    }
}
