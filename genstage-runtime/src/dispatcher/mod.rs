//! Dispatchers decide which consumer gets which events (GenStage's `GenStage.Dispatcher`).
//!
//! A dispatcher is a pure state machine owned by a producer's task: it learns of subscriptions,
//! cancellations and asks, and turns emitted events into deliveries. It never sends anything itself:
//! it puts what to send in an [`Outbox`], which the task empties. So every dispatcher is tested
//! without tokio, and a new one plugs into the stage loops without changing them.
//!
//! Three come with the crate, each chosen by a stage's [`dispatcher`](crate::Producer::dispatcher)
//! through [`Dispatch`]:
//! - [`DemandDispatcher`] (the default): each event to one consumer, the one with the most demand;
//! - [`BroadcastDispatcher`]: every event to every consumer, paced by the slowest;
//! - [`PartitionDispatcher`]: each event to the consumer of its partition, given by the stage's
//!   [`Partition`] function.
//!
//! A dispatcher of your own implements [`Dispatcher`] and is given to a stage with
//! [`Dispatch::custom`].

mod broadcast;
mod demand;
mod partition;

use std::fmt;
use std::sync::Arc;

pub use broadcast::{BroadcastDispatcher, BroadcastEvent};
pub use demand::DemandDispatcher;
pub use partition::PartitionDispatcher;

/// Identifies one subscription (one producer–consumer edge) within a pipeline.
pub type SubscriptionId = u64;

/// Why a dispatcher refused a subscription, or could not dispatch an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchError(pub String);

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DispatchError {}

/// The events a dispatch sends, one message per consumer, in the order they are to be sent.
pub type Deliveries<T> = Vec<(SubscriptionId, Vec<T>)>;

/// A broadcast subscription's filter: the events for which it returns `false` are not sent to that
/// consumer, and do not use up its demand (GenStage's `:selector`).
pub type Selector<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// What a consumer asked of the dispatcher when it subscribed: GenStage's subscription options that
/// a dispatcher reads. A dispatcher refuses (with a [`DispatchError`]) an option it does not use,
/// rather than ignore it.
pub struct DispatchOptions<T> {
    /// The partition the consumer takes (a [`PartitionDispatcher`]'s subscriptions).
    pub partition: Option<usize>,
    /// Which events the consumer wants (a [`BroadcastDispatcher`]'s subscriptions).
    pub selector: Option<Selector<T>>,
}

impl<T> DispatchOptions<T> {
    /// No option: what a subscription to a [`DemandDispatcher`] has.
    pub fn none() -> Self {
        DispatchOptions {
            partition: None,
            selector: None,
        }
    }

    /// Takes `partition`.
    pub fn partition(partition: usize) -> Self {
        DispatchOptions {
            partition: Some(partition),
            selector: None,
        }
    }

    /// Wants only the events `selector` accepts.
    pub fn selector(selector: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        DispatchOptions {
            partition: None,
            selector: Some(Arc::new(selector)),
        }
    }
}

impl<T> Clone for DispatchOptions<T> {
    fn clone(&self) -> Self {
        DispatchOptions {
            partition: self.partition,
            selector: self.selector.clone(),
        }
    }
}

impl<T> Default for DispatchOptions<T> {
    fn default() -> Self {
        Self::none()
    }
}

impl<T> fmt::Debug for DispatchOptions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchOptions")
            .field("partition", &self.partition)
            .field(
                "selector",
                &self.selector.as_ref().map(|_| "Fn(&T) -> bool"),
            )
            .finish()
    }
}

/// The stage's [`Partition`] function, as an [`Outbox`] lends it to a dispatcher: over a batch, so
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
/// know to implement it: plain functions, made where it is known ([`Dispatch::partition`]).
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
    fn of() -> Self {
        PartitionFns {
            route: |stage, events, routes| {
                routes.extend(events.iter().map(|event| stage.partition(event)));
            },
            split: |stage, events, lanes| split_by(events, lanes, |event| stage.partition(event)),
        }
    }
}

impl<S, T> PartitionFns<S, T> {
    /// The functions bound to `stage`, as an [`Outbox`] takes them.
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

/// Where a dispatcher puts what it decides: the batches to send, and the events it accounts for
/// otherwise (discarded, or copied to several consumers), so that the stage's report balances. It
/// also gives the stage's [`Partition`] function to a dispatcher that routes by it.
///
/// ```
/// use genstage_runtime::dispatcher::{Deliveries, Outbox};
/// let mut deliveries: Deliveries<u32> = Vec::new();
/// let parity = |n: &u32| Some((n % 2) as usize);
/// let mut out = Outbox::new(&mut deliveries).with_partition(&parity);
/// let mut routes = Vec::new();
/// assert!(out.partitions_of(&[3, 4], &mut routes));
/// assert_eq!(routes, [Some(1), Some(0)]);
/// out.send(7, vec![1, 3]);
/// out.discard(2);
/// assert_eq!(out.discarded(), 2);
/// drop(out);
/// assert_eq!(deliveries, vec![(7, vec![1, 3])]);
/// ```
pub struct Outbox<'a, T> {
    deliveries: &'a mut Deliveries<T>,
    partitioner: Option<&'a dyn Partitioner<T>>,
    discarded: usize,
    copies: usize,
}

impl<'a, T> Outbox<'a, T> {
    /// An outbox that appends to `deliveries`, with no partition function.
    pub fn new(deliveries: &'a mut Deliveries<T>) -> Self {
        Outbox {
            deliveries,
            partitioner: None,
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
            self.deliveries.push((sub, events));
        }
    }

    /// Accounts for `count` events that go to no consumer (a partition function's `None`, or
    /// rejected by every selector): the report counts them as discarded.
    pub fn discard(&mut self, count: usize) {
        self.discarded += count;
    }

    /// Accounts for `count` copies of events, beyond the first, sent to more consumers (a
    /// broadcast): the report counts every copy a consumer handles.
    pub fn copied(&mut self, count: usize) {
        self.copies += count;
    }

    /// Appends the partition the stage's function gives each of `events` to `routes`, in order;
    /// `false` (and nothing appended) when the outbox has no partition function (a dispatcher that
    /// [`partitions`](Dispatcher::partitions) is only ever given events with one).
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
            .field("discarded", &self.discarded)
            .field("copies", &self.copies)
            .finish_non_exhaustive()
    }
}

/// The contract between a producer's loop and its dispatcher (GenStage's `GenStage.Dispatcher`).
///
/// "Upstream demand" is GenStage's name for what the producer is asked to emit as a result of a
/// subscribe, ask or cancel, and the values these methods return follow GenStage's dispatchers
/// exactly (their tests are GenStage's scenarios). The stage loops do not add them up: they derive
/// what a producer is asked for from [`capacity`](Dispatcher::capacity) less what the buffer holds,
/// which cannot drift when consumers leave with demand unmet (GenStage #311).
///
/// # Writing one
/// A dispatcher owns the demand accounting of its subscriptions. It is told of each subscription
/// with its [`DispatchOptions`] (refuse those it does not use), of each ask and cancel, and is handed
/// the events to dispatch: it puts batches in the [`Outbox`], and returns what no consumer can take
/// now, which the loop buffers and hands back, first, once [`capacity`](Dispatcher::capacity) says
/// there is room. Events it keeps itself (a partition's backlog) it reports through
/// [`held`](Dispatcher::held), so that the producer does not end before they are sent.
///
/// ```
/// use genstage_runtime::dispatcher::{
///     DispatchError, DispatchOptions, Dispatcher, Outbox, SubscriptionId,
/// };
///
/// /// Everything to the consumer that subscribed first; the others wait their turn.
/// #[derive(Default)]
/// struct FirstOnly { first: Option<(SubscriptionId, usize)>, others: Vec<SubscriptionId> }
///
/// impl<T: Send + 'static> Dispatcher<T> for FirstOnly {
///     fn subscribe(&mut self, sub: SubscriptionId, options: &DispatchOptions<T>)
///         -> Result<usize, DispatchError> {
///         if options.partition.is_some() || options.selector.is_some() {
///             return Err(DispatchError("FirstOnly takes no options".into()));
///         }
///         match self.first {
///             None => self.first = Some((sub, 0)),
///             Some(_) => self.others.push(sub),
///         }
///         Ok(0)
///     }
///     fn cancel(&mut self, sub: SubscriptionId) -> usize {
///         if self.first.is_some_and(|(first, _)| first == sub) {
///             self.first = (!self.others.is_empty()).then(|| (self.others.remove(0), 0));
///         } else {
///             self.others.retain(|&other| other != sub);
///         }
///         0
///     }
///     fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, T>) -> usize {
///         match &mut self.first {
///             Some((first, wants)) if *first == sub => { *wants += demand; demand }
///             _ => 0,
///         }
///     }
///     fn dispatch(&mut self, mut events: Vec<T>, out: &mut Outbox<'_, T>)
///         -> Result<Vec<T>, DispatchError> {
///         let Some((first, wants)) = &mut self.first else { return Ok(events) };
///         let rest = events.split_off((*wants).min(events.len()));
///         *wants -= events.len();
///         out.send(*first, events);
///         Ok(rest)
///     }
///     fn capacity(&self) -> usize { self.first.map_or(0, |(_, wants)| wants) }
///     fn consumers(&self) -> usize { usize::from(self.first.is_some()) + self.others.len() }
/// }
///
/// let mut dispatcher = FirstOnly::default();
/// Dispatcher::<u8>::subscribe(&mut dispatcher, 1, &DispatchOptions::none()).unwrap();
/// let mut deliveries = Vec::new();
/// let mut out = Outbox::new(&mut deliveries);
/// assert_eq!(dispatcher.ask(1, 2, &mut out), 2);
/// assert_eq!(dispatcher.dispatch(vec![7u8, 8, 9], &mut out), Ok(vec![9]));
/// drop(out);
/// assert_eq!(deliveries, vec![(1, vec![7, 8])]);
/// ```
pub trait Dispatcher<T>: Send + 'static {
    /// A consumer subscribed with `options`; returns new upstream demand.
    ///
    /// # Errors
    ///
    /// A [`DispatchError`] refuses the subscription (an option the dispatcher does not use, a
    /// partition already taken); the producer goes on with its other consumers.
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError>;

    /// A consumer left; returns new upstream demand.
    fn cancel(&mut self, sub: SubscriptionId) -> usize;

    /// A consumer asked for `demand > 0` more events, which the dispatcher may serve at once from
    /// events it holds (into `out`); returns new upstream demand. An ask for a subscription the
    /// dispatcher does not hold (refused, or cancelled) changes nothing and returns 0.
    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, T>) -> usize;

    /// Hands `events` to consumers with demand, through `out`; returns the events no consumer could
    /// take now (the loop buffers them), in order.
    ///
    /// # Errors
    ///
    /// The events cannot be dispatched (a partition function gave a partition that does not
    /// exist): the stage fails with this error. The dispatcher's state must be as before the call.
    fn dispatch(
        &mut self,
        events: Vec<T>,
        out: &mut Outbox<'_, T>,
    ) -> Result<Vec<T>, DispatchError>;

    /// The common case of `dispatch`, without building deliveries: when `dispatch` would send all
    /// `len` events to one consumer, accounts for them as it would and names that consumer; otherwise
    /// changes nothing and returns `None`, and the loop calls `dispatch`. The default always declines.
    fn dispatch_whole(&mut self, len: usize) -> Option<SubscriptionId> {
        let _ = len;
        None
    }

    /// How many events the consumers could take right now.
    ///
    /// The loop drains its buffer up to this, whatever the upstream demand says, so buffered events
    /// never get stuck behind demand the dispatcher holds for departed consumers (GenStage #311).
    /// Contract: dispatching at most `capacity()` events leaves no leftover.
    fn capacity(&self) -> usize;

    /// How many consumers are subscribed.
    fn consumers(&self) -> usize;

    /// Events the dispatcher has taken and keeps for a subscribed consumer, to send when it asks
    /// (a partition's backlog): the producer does not end before they are sent. The default is 0.
    fn held(&self) -> usize {
        0
    }

    /// Events the dispatcher keeps for no consumer (a partition nobody has taken, or whose consumer
    /// left): sent if a consumer subscribes to take them, lost if the producer ends first. The
    /// default is 0.
    fn stranded(&self) -> usize {
        0
    }

    /// `Some(n)` when the dispatcher routes events by the stage's [`Partition`] function into
    /// partitions `0..n`, each taken by exactly one subscription: the pipeline checks its wiring
    /// against that before it runs, and the loop hands it events only with the partition function.
    /// The default is `None`.
    fn partitions(&self) -> Option<usize> {
        None
    }

    /// Whether its subscriptions may have a [`Selector`]. The default is `false`.
    fn selects(&self) -> bool {
        false
    }

    /// Where its backlog ends now, for an info that must follow the events held now (GenStage's
    /// `info` callback: `info_after_buffered`); `None` when it holds nothing a consumer will be
    /// sent, and the info may go at once. The default is `None`: nothing is held.
    fn mark(&self) -> Option<BacklogMark> {
        None
    }

    /// Whether every event held when `mark` was taken has been sent, or will not be (its consumer
    /// left). The default is `true`.
    fn passed(&self, mark: &BacklogMark) -> bool {
        let _ = mark;
        true
    }
}

/// A place in a dispatcher's backlog ([`Dispatcher::mark`]); only the dispatcher that made it
/// reads it. A [`PartitionDispatcher`]'s is, for each partition, how many events will have left its
/// backlog once those held now have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacklogMark(pub Vec<u64>);

/// How a stage maps its events to partitions, for a [`PartitionDispatcher`]: `Some(i)` sends the
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

/// What a stage dispatches with, as its [`dispatcher`](crate::Producer::dispatcher) returns it: a
/// [`Dispatcher`] and, for one that partitions, the stage's [`Partition`] function.
///
/// ```
/// use genstage_runtime::{Dispatch, Emit, Partition, Producer, StageResult};
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
    /// consumer when the pipeline starts.
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

    /// A dispatcher of your own that routes by the stage's [`Partition`] function.
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
