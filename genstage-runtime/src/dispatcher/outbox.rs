//! Where a dispatcher puts what it decides.

use std::fmt;

use super::{Partitioner, SubscriptionId};

/// The events a dispatch sends, one message per consumer, in the order they are to be sent.
pub type Deliveries<T> = Vec<(SubscriptionId, Vec<T>)>;

/// Where a dispatcher puts what it decides: the batches to send, and the events it accounts for
/// otherwise (discarded, or copied to several consumers), so that the stage's report balances. It
/// also gives the stage's [`Partition`](super::Partition) function to a dispatcher that routes by it.
///
/// ```
/// use genstage::dispatcher::{Deliveries, Outbox};
/// let mut deliveries: Deliveries<u32> = Vec::new();
/// let parity = |n: &u32| Some((n % 2) as usize);
/// let mut out = Outbox::new(&mut deliveries).with_partition(&parity);
/// let mut routes = Vec::new();
/// assert!(out.partitions_of(&[3, 4], &mut routes));
/// assert_eq!(routes, [Some(1), Some(0)]);
/// out.send(7, vec![1, 3]);
/// out.discard(2);
/// assert_eq!((out.sent(), out.discarded()), (2, 2));
/// assert_eq!(deliveries, vec![(7, vec![1, 3])]);
/// ```
pub struct Outbox<'a, T> {
    deliveries: &'a mut Deliveries<T>,
    partitioner: Option<&'a dyn Partitioner<T>>,
    sent: usize,
    discarded: usize,
    copies: usize,
}

impl<'a, T> Outbox<'a, T> {
    /// An outbox that appends to `deliveries`, with no partition function.
    pub fn new(deliveries: &'a mut Deliveries<T>) -> Self {
        Outbox {
            deliveries,
            partitioner: None,
            sent: 0,
            discarded: 0,
            copies: 0,
        }
    }

    /// Gives the dispatcher the stage's partition function.
    pub fn with_partition(mut self, partitioner: &'a dyn Partitioner<T>) -> Self {
        self.partitioner = Some(partitioner);
        self
    }

    /// Sends `events` to the consumer of `sub`, as one message; nothing when `events` is empty.
    pub fn send(&mut self, sub: SubscriptionId, events: Vec<T>) {
        if !events.is_empty() {
            self.sent = self.sent.saturating_add(events.len());
            self.deliveries.push((sub, events));
        }
    }

    /// Accounts for `count` events that go to no consumer (a partition function's `None`, or
    /// rejected by every selector): the report counts them as discarded.
    pub fn discard(&mut self, count: usize) {
        self.discarded = self.discarded.saturating_add(count);
    }

    /// Accounts for `count` copies of events, beyond the first, sent to more consumers (a
    /// broadcast): the report counts every copy a consumer handles.
    pub fn copied(&mut self, count: usize) {
        self.copies = self.copies.saturating_add(count);
    }

    /// Appends the partition the stage's function gives each of `events` to `routes`, in order;
    /// `false` (and nothing appended) when the outbox has no partition function (a dispatcher that
    /// [`partitions`](super::Dispatcher::partitions) is only ever given events with one).
    pub fn partitions_of(&self, events: &[T], routes: &mut Vec<Option<usize>>) -> bool {
        match self.partitioner {
            Some(partitioner) => {
                partitioner.partitions_of(events, routes);
                true
            }
            None => false,
        }
    }

    /// Moves `events` to the lanes of their partitions, as [`Partitioner::split`] does; `None`
    /// when the outbox has no partition function.
    pub fn split(&self, events: Vec<T>, lanes: &mut [Vec<T>]) -> Option<Result<usize, usize>> {
        self.partitioner
            .map(|partitioner| partitioner.split(events, lanes))
    }

    /// Events sent so far, every copy counted.
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// Events discarded so far.
    pub fn discarded(&self) -> usize {
        self.discarded
    }

    /// Copies made so far.
    pub fn copies(&self) -> usize {
        self.copies
    }
}

impl<T> fmt::Debug for Outbox<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("batches", &self.deliveries.len())
            .field("sent", &self.sent)
            .field("discarded", &self.discarded)
            .field("copies", &self.copies)
            .finish_non_exhaustive()
    }
}
