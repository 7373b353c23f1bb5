//! GenStage's `PartitionDispatcher`: each event to the one consumer of its partition.

use std::collections::VecDeque;
use std::fmt;

use super::{BacklogMark, DispatchError, DispatchOptions, Dispatcher, Outbox, SubscriptionId};

/// GenStage's default bound for a producer's buffer, used for the events kept for partitions that
/// have no consumer.
const DEFAULT_STRANDED_LIMIT: usize = 10_000;

/// The most partitions a [`PartitionDispatcher`] has: a pipeline refuses a stage with more
/// ([`DispatchSetupError::TooManyPartitions`](crate::DispatchSetupError::TooManyPartitions)), and
/// `#[stage]` a literal above it.
pub const MAX_PARTITIONS: usize = 1 << 16;

/// One partition.
struct Slot<T> {
    /// The subscription that takes it, if any.
    sub: Option<SubscriptionId>,
    /// What its consumer has asked for and not been sent.
    demand: usize,
    /// Events for it beyond its demand, or while it has no consumer, in order.
    queue: Backlog<T>,
    /// How many events at the front of `queue` no longer count against the shared demand: those
    /// kept while the partition had no consumer. Serving them adds nothing upstream.
    prepaid: usize,
    /// How many events have ever left `queue`: what a [`BacklogMark`] counts.
    dequeued: u64,
}

/// Sends each event to the consumer of its partition, as the stage's
/// [`Partition`](super::Partition) function gives it; order is kept within a partition. Each
/// partition has exactly one consumer: a subscription names the partition it takes, and one that
/// names none, one out of range or one already taken is refused (the pipeline checks its wiring for
/// this before it runs, rather than crash the producer as GenStage does).
///
/// Demand is shared, as in GenStage: the producer is asked for what all consumers asked, and the
/// events go where the partition function sends them, so a partition that gets more than its share
/// keeps a backlog, which its consumer is served from first. This assumes an even spread: a hot
/// partition holds back the producer once the others' demand is spent on its events.
///
/// A `None` partition discards the event (counted as discarded) without using up demand. A partition
/// out of range is an error that fails the stage, naming the index and the count.
///
/// Events for a partition with no consumer (its consumer left) are kept for the next consumer that
/// takes it, up to 10 000 in all, and do not count against the other consumers' demand; the events
/// its consumer had not taken when it left are kept the same way. Beyond that limit, events are
/// discarded (and counted so) from the front of the partitions with no consumer, the
/// lowest-numbered partition first: its oldest events go, and the newest are kept.
///
/// ```
/// use genstage::dispatcher::{DispatchOptions, Dispatcher, Outbox, PartitionDispatcher};
/// let mut dispatcher = PartitionDispatcher::new(2);
/// dispatcher.subscribe(10, &DispatchOptions::partition(0)).unwrap();
/// dispatcher.subscribe(11, &DispatchOptions::partition(1)).unwrap();
/// let parity = |n: &u32| Some((n % 2) as usize);
/// let mut deliveries = Vec::new();
/// let mut out = Outbox::new(&mut deliveries).with_partition(&parity);
/// assert_eq!(dispatcher.ask(10, 3, &mut out), 3);
/// assert_eq!(dispatcher.ask(11, 3, &mut out), 3);
/// assert_eq!(dispatcher.dispatch(vec![1, 2, 3, 4, 5, 6, 7], &mut out), Ok(vec![7]));
/// assert_eq!(deliveries, vec![(10, vec![2, 4, 6]), (11, vec![1, 3, 5])]);
/// ```
pub struct PartitionDispatcher<T> {
    /// How many partitions it was made with (no slot is made for more than [`MAX_PARTITIONS`]).
    partitions: usize,
    slots: Vec<Slot<T>>,
    /// Events the producer may send: what consumers asked, less what was dispatched to them.
    waiting: usize,
    /// Demand asked upstream for consumers that have since left.
    pending: usize,
    /// The most events kept for partitions with no consumer.
    stranded_limit: usize,
    /// The partitions of the batch being dispatched (kept to reuse its allocation).
    routes: Vec<Option<usize>>,
}

impl<T> PartitionDispatcher<T> {
    /// A dispatcher with partitions `0..partitions`, none taken yet. With more than
    /// [`MAX_PARTITIONS`], it takes no subscription, and a pipeline refuses the stage.
    pub fn new(partitions: usize) -> Self {
        let made = if partitions > MAX_PARTITIONS {
            0
        } else {
            partitions
        };
        PartitionDispatcher {
            partitions,
            slots: (0..made)
                .map(|_| Slot {
                    sub: None,
                    demand: 0,
                    queue: Backlog::default(),
                    prepaid: 0,
                    dequeued: 0,
                })
                .collect(),
            waiting: 0,
            pending: 0,
            stranded_limit: DEFAULT_STRANDED_LIMIT,
            routes: Vec::new(),
        }
    }

    /// Keeps at most `limit` events for partitions with no consumer (10 000 by default).
    pub fn with_stranded_limit(mut self, limit: usize) -> Self {
        self.stranded_limit = limit;
        self
    }

    /// Events the producer may send (GenStage's `waiting`).
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Demand asked upstream for consumers that have left (GenStage's `pending`).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The demand of partition `partition`'s consumer, and how many events it keeps for it.
    pub fn partition_state(&self, partition: usize) -> Option<(usize, usize)> {
        self.slots
            .get(partition)
            .map(|slot| (slot.demand, slot.queue.len()))
    }

    fn slot_of(&mut self, sub: SubscriptionId) -> Option<&mut Slot<T>> {
        self.slots.iter_mut().find(|slot| slot.sub == Some(sub))
    }

    fn stranded_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.sub.is_none())
            .map(|slot| slot.queue.len())
            .sum()
    }
}

impl<T> fmt::Debug for PartitionDispatcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionDispatcher")
            .field("partitions", &self.slots.len())
            .field("waiting", &self.waiting)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Dispatcher<T> for PartitionDispatcher<T> {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError> {
        let partitions = self.slots.len();
        if options.selector.is_some() {
            return Err(DispatchError(
                "a partition dispatcher takes no selector: its partition function chooses each \
                 event's consumer"
                    .to_owned(),
            ));
        }
        let Some(partition) = options.partition else {
            return Err(DispatchError(format!(
                "a subscription to a partitioned stage must name its partition (0..{partitions})"
            )));
        };
        if self.slots.iter().any(|slot| slot.sub == Some(sub)) {
            return Err(DispatchError(format!(
                "subscription {sub} is already registered"
            )));
        }
        let Some(slot) = self.slots.get_mut(partition) else {
            return Err(DispatchError(format!(
                "partition {partition} does not exist: there are {partitions} (0..{partitions})"
            )));
        };
        if let Some(taken_by) = slot.sub {
            return Err(DispatchError(format!(
                "partition {partition} is already taken by subscription {taken_by}"
            )));
        }
        slot.sub = Some(sub);
        slot.demand = 0;
        Ok(0)
    }

    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        let Some(slot) = self.slot_of(sub) else {
            return 0;
        };
        slot.sub = None;
        let unmet = std::mem::take(&mut slot.demand);
        // Its backlog took the place of other partitions' events: they are asked for again, and the
        // backlog is kept, prepaid, for the partition's next consumer.
        let repaid = slot.queue.len() - slot.prepaid;
        slot.prepaid = slot.queue.len();
        self.pending = self.pending.saturating_add(unmet);
        self.waiting = self.waiting.saturating_add(repaid);
        repaid
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, T>) -> usize {
        let Some(slot) = self.slot_of(sub) else {
            return 0;
        };
        let batch = slot.queue.take(demand);
        let served = batch.len();
        slot.dequeued += served as u64;
        let prepaid = served.min(slot.prepaid);
        slot.prepaid -= prepaid;
        // Saturating, as every demand: a consumer may ask for any `usize`, however many times.
        slot.demand = slot.demand.saturating_add(demand - served);
        out.send(sub, batch);
        let fresh = demand - prepaid;
        let absorbed = self.pending.min(fresh);
        self.pending -= absorbed;
        let upstream = fresh - absorbed;
        self.waiting = self.waiting.saturating_add(upstream);
        upstream
    }

    fn dispatch(
        &mut self,
        events: Vec<T>,
        out: &mut Outbox<'_, T>,
    ) -> Result<Vec<T>, DispatchError> {
        let partitions = self.slots.len();
        let no_function = || {
            DispatchError("a partition dispatcher needs the stage's partition function".to_owned())
        };
        let out_of_range = |index: usize| {
            DispatchError(format!(
                "its partition function returned partition {index}, but it has {partitions} \
                 partitions (0..{partitions})"
            ))
        };
        // Each partition's events, in order: the first go straight to its consumer (as many as it
        // asked for, when it has no backlog to go first), the others it keeps. Nothing changes in
        // `self` before every route is known to be in range. The first lane is left without room:
        // the batch's own buffer becomes it (see `Partitioner::split`).
        let share = events.len() / partitions.max(1) + 1;
        let mut lanes: Vec<Vec<T>> = (0..partitions)
            .map(|i| Vec::with_capacity(if i == 0 { 0 } else { share }))
            .collect();
        let (leftover, mut discarded) = if self.waiting >= events.len() {
            // The common case: the producer emitted no more than its consumers asked for, so
            // every event is taken, and the stage's function moves each to its lane.
            match out.split(events, &mut lanes) {
                None => return Err(no_function()),
                Some(Err(index)) => return Err(out_of_range(index)),
                Some(Ok(none)) => (Vec::new(), none),
            }
        } else {
            // Only as many events as the consumers asked for are taken; events for a partition
            // with no consumer, and those discarded, do not count.
            self.routes.clear();
            if !out.partitions_of(&events, &mut self.routes) {
                return Err(no_function());
            }
            let (mut counted, mut none) = (0, 0);
            let mut events = events.into_iter();
            for &route in &self.routes {
                if counted == self.waiting {
                    break;
                }
                let Some(event) = events.next() else {
                    break;
                };
                let Some(index) = route else {
                    none += 1;
                    continue;
                };
                let lane = lanes.get_mut(index).ok_or_else(|| out_of_range(index))?;
                counted += usize::from(self.slots[index].sub.is_some());
                lane.push(event);
            }
            (events.collect(), none)
        };
        for (slot, mut sent) in self.slots.iter_mut().zip(lanes) {
            let straight = match slot.sub {
                Some(_) if slot.queue.is_empty() => slot.demand.min(sent.len()),
                _ => 0,
            };
            // Moved whole when nothing goes straight (`split_off(0)` would allocate a buffer of the
            // same size for what stays).
            let kept = if straight == 0 {
                std::mem::take(&mut sent)
            } else {
                sent.split_off(straight)
            };
            match slot.sub {
                Some(sub) => {
                    // Both count against the shared demand; only those sent against its own.
                    self.waiting -= sent.len() + kept.len();
                    slot.demand -= sent.len();
                    out.send(sub, sent);
                }
                None => slot.prepaid += kept.len(),
            }
            slot.queue.push(kept);
        }
        // Beyond the limit, events kept for no consumer go: the oldest first, the lowest-numbered
        // partition first.
        let mut excess = self.stranded_count().saturating_sub(self.stranded_limit);
        for slot in self.slots.iter_mut().filter(|slot| slot.sub.is_none()) {
            let dropped = slot.queue.drop_front(excess);
            slot.dequeued += dropped as u64;
            slot.prepaid -= dropped;
            excess -= dropped;
            discarded += dropped;
        }
        out.discard(discarded);
        Ok(leftover)
    }

    fn capacity(&self) -> usize {
        self.waiting.saturating_sub(self.pending)
    }

    fn consumers(&self) -> usize {
        self.slots.iter().filter(|slot| slot.sub.is_some()).count()
    }

    fn held(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.sub.is_some())
            .map(|slot| slot.queue.len())
            .sum()
    }

    fn stranded(&self) -> usize {
        self.stranded_count()
    }

    fn partitions(&self) -> Option<usize> {
        Some(self.partitions)
    }

    /// An info follows the backlog of every partition that has a consumer (as GenStage's); one
    /// whose consumer leaves is not waited for.
    fn mark(&self) -> Option<BacklogMark> {
        if self.held() == 0 {
            return None;
        }
        Some(BacklogMark(
            self.slots
                .iter()
                .map(|slot| match slot.sub {
                    Some(_) => slot.dequeued + slot.queue.len() as u64,
                    None => 0,
                })
                .collect(),
        ))
    }

    fn passed(&self, mark: &BacklogMark) -> bool {
        self.slots
            .iter()
            .zip(&mark.0)
            .all(|(slot, &until)| slot.sub.is_none() || slot.dequeued >= until)
    }
}

/// A partition's backlog: its events in order, kept as the batches they came in, so that a batch
/// served whole moves without a copy.
struct Backlog<T> {
    batches: VecDeque<Vec<T>>,
    len: usize,
}

impl<T> Default for Backlog<T> {
    fn default() -> Self {
        Backlog {
            batches: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Backlog<T> {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `events`, after those kept.
    fn push(&mut self, events: Vec<T>) {
        if !events.is_empty() {
            self.len += events.len();
            self.batches.push_back(events);
        }
    }

    /// Takes up to `count` events from the front, in order.
    fn take(&mut self, count: usize) -> Vec<T> {
        let single = self.batches.len() == 1;
        let Some(front) = self.batches.front_mut() else {
            return Vec::new();
        };
        if front.len() >= count || single {
            // The first batch is enough, or all there is: all of it moves, or its front is split off.
            let taken = if front.len() <= count {
                self.batches.pop_front().unwrap_or_default()
            } else {
                let rest = front.split_off(count);
                std::mem::replace(front, rest)
            };
            self.len -= taken.len();
            return taken;
        }
        let mut taken = Vec::with_capacity(count.min(self.len));
        while taken.len() < count {
            let Some(front) = self.batches.front_mut() else {
                break;
            };
            let wanted = count - taken.len();
            if front.len() <= wanted {
                taken.append(front);
                self.batches.pop_front();
            } else {
                taken.extend(front.drain(..wanted));
            }
        }
        self.len -= taken.len();
        taken
    }

    /// Drops up to `count` events from the front; returns how many it dropped.
    fn drop_front(&mut self, count: usize) -> usize {
        self.take(count).len()
    }
}
