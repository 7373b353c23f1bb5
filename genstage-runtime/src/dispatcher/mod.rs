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
mod dispatch;
mod options;
mod outbox;
mod partition;
mod partitioner;

use std::fmt;

pub use broadcast::{BroadcastDispatcher, BroadcastEvent};
pub use demand::DemandDispatcher;
pub use dispatch::Dispatch;
pub use options::{DispatchOptions, Selector};
pub use outbox::{Deliveries, Outbox};
pub use partition::{PartitionDispatcher, MAX_PARTITIONS};
pub(crate) use partitioner::PartitionFns;
pub use partitioner::{Partition, Partitioner};

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

/// How a [`Dispatcher`] broke its contract; the stage fails with it.
///
/// The stage checks what each call of its dispatcher did with events against what went in, at the
/// cost of a few integer comparisons per call: every event handed to
/// [`dispatch`](Dispatcher::dispatch), and every event the dispatcher held, must be sent (once, or
/// again as a [`copied`](Outbox::copied) copy), [`discard`](Outbox::discard)ed, handed back, or
/// still held ([`held`](Dispatcher::held), [`stranded`](Dispatcher::stranded)) when it returns; and
/// it may send only to the subscriptions it was told of. The dispatchers of this crate never break
/// it: a breach is a bug in a dispatcher of the user's ([`Dispatch::custom`]).
///
/// On a breach, the stage fails with this error (a [`StageError`](crate::StageError): the
/// [`PipelineError::StageFailed`](crate::PipelineError::StageFailed) of the run names the stage, and
/// its `error` downcasts to `ContractBreach`). Nothing of the call that broke the contract is sent,
/// nothing more is dispatched, and the report counts the events of that call, those sent to a
/// subscription that does not exist and those the dispatcher held then as lost
/// ([`LossReason::BrokenDispatcher`](crate::LossReason::BrokenDispatcher)), so that it balances.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContractBreach {
    /// `dispatch`, handed no more events than [`capacity`](Dispatcher::capacity) said the consumers
    /// could take, handed some back.
    Capacity {
        /// What `capacity()` returned.
        capacity: usize,
        /// The events `dispatch` was handed.
        handed: usize,
        /// The events it handed back.
        leftover: usize,
    },
    /// A call did not account for every event it took: some vanished, or more came out than went
    /// in.
    Unaccounted {
        /// The method: `"dispatch"`, `"ask"`, `"subscribe"` or `"cancel"`.
        call: &'static str,
        /// The events it was handed (none for `ask`).
        handed: u64,
        /// The events it held before the call.
        held: u64,
        /// The events it accounted for: sent (copies aside), discarded, handed back, and held after
        /// the call.
        accounted: u64,
    },
    /// It sent events to a subscription that is not one of the stage's.
    UnknownSubscription {
        /// The subscription it sent to.
        sub: SubscriptionId,
        /// How many events it sent there.
        events: usize,
    },
}

impl fmt::Display for ContractBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("its dispatcher broke its contract: ")?;
        match self {
            ContractBreach::Capacity {
                capacity,
                handed,
                leftover,
            } => write!(
                f,
                "`capacity()` said its consumers could take {capacity} events, but `dispatch`, \
                 handed {handed}, handed {leftover} back"
            ),
            ContractBreach::Unaccounted {
                call,
                handed,
                held,
                accounted,
            } => write!(
                f,
                "`{call}` was handed {handed} events while it held {held}, and accounted for \
                 {accounted} (sent, discarded, handed back or held): each must be one of these"
            ),
            ContractBreach::UnknownSubscription { sub, events } => write!(
                f,
                "it sent {events} events to subscription {sub}, which is not one of the stage's"
            ),
        }
    }
}

impl std::error::Error for ContractBreach {}

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
/// # Breaking the contract
/// The stage checks every call: after `dispatch`, `ask`, `subscribe` or `cancel`, each event
/// it was handed or held before must be sent once (a further copy to another consumer is counted with
/// [`Outbox::copied`]), discarded ([`Outbox::discard`]), handed back (`dispatch`'s leftover), or still
/// held; `dispatch` handed at most [`capacity`](Dispatcher::capacity) events must hand none back; and
/// every batch must go to a subscription it was told of (a batch for one whose consumer has since
/// ended is counted as lost to that consumer).
/// A dispatcher that breaks this (drops events, or keeps them without reporting them through
/// [`held`](Dispatcher::held) or [`stranded`](Dispatcher::stranded), or sends to an unknown
/// subscription) fails its stage with a [`ContractBreach`] that says which rule it broke, and the
/// events it took are counted as lost
/// ([`LossReason::BrokenDispatcher`](crate::LossReason::BrokenDispatcher)): never a panic, a hang or
/// a report that does not balance. A panic in one of its methods is the stage's panic.
///
/// Every demand it adds up should saturate (`saturating_add`): a consumer may ask for any `usize`,
/// more than once.
///
/// ```
/// use genstage::dispatcher::{
///     DispatchError, DispatchOptions, Dispatcher, Outbox, SubscriptionId,
/// };
///
/// /// Everything to the consumer that subscribed first; the others wait their turn, with what they
/// /// asked for kept, so that the next one is served as soon as the first leaves.
/// #[derive(Default)]
/// struct FirstOnly {
///     first: Option<(SubscriptionId, usize)>,
///     others: Vec<(SubscriptionId, usize)>,
/// }
///
/// impl<T: Send + 'static> Dispatcher<T> for FirstOnly {
///     fn subscribe(&mut self, sub: SubscriptionId, options: &DispatchOptions<T>)
///         -> Result<usize, DispatchError> {
///         if options.partition.is_some() || options.selector.is_some() {
///             return Err(DispatchError("FirstOnly takes no options".into()));
///         }
///         match self.first {
///             None => self.first = Some((sub, 0)),
///             Some(_) => self.others.push((sub, 0)),
///         }
///         Ok(0)
///     }
///     fn cancel(&mut self, sub: SubscriptionId) -> usize {
///         if self.first.is_some_and(|(first, _)| first == sub) {
///             // The next one takes over, with its demand: the producer is asked for it.
///             self.first = (!self.others.is_empty()).then(|| self.others.remove(0));
///             self.first.map_or(0, |(_, wants)| wants)
///         } else {
///             self.others.retain(|&(other, _)| other != sub);
///             0
///         }
///     }
///     fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, T>) -> usize {
///         match &mut self.first {
///             Some((first, wants)) if *first == sub => {
///                 *wants = wants.saturating_add(demand);
///                 demand
///             }
///             _ => {
///                 // Kept for its turn: the consumer will not ask for it again.
///                 if let Some((_, wants)) = self.others.iter_mut().find(|(other, _)| *other == sub) {
///                     *wants = wants.saturating_add(demand);
///                 }
///                 0
///             }
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
/// Dispatcher::<u8>::subscribe(&mut dispatcher, 2, &DispatchOptions::none()).unwrap();
/// let mut deliveries = Vec::new();
/// let mut out = Outbox::new(&mut deliveries);
/// assert_eq!(dispatcher.ask(1, 2, &mut out), 2);
/// assert_eq!(dispatcher.ask(2, 5, &mut out), 0); // kept for its turn
/// assert_eq!(dispatcher.dispatch(vec![7u8, 8, 9], &mut out), Ok(vec![9]));
/// assert_eq!(deliveries, vec![(1, vec![7, 8])]);
/// // The first leaves: the second takes over with the 5 it asked for.
/// assert_eq!(Dispatcher::<u8>::cancel(&mut dispatcher, 1), 5);
/// assert_eq!(Dispatcher::<u8>::capacity(&dispatcher), 5);
/// ```
pub trait Dispatcher<T>: Send + 'static {
    /// A consumer subscribed with `options`; returns new upstream demand.
    ///
    /// # Errors
    ///
    /// A [`DispatchError`] refuses the subscription (an option the dispatcher does not use, a
    /// partition already taken); the producer goes on with its other consumers. The refusal is
    /// logged through `tracing`, naming both stages, and the subscription is over at once: its
    /// consumer's `handle_cancel` is told
    /// [`CancelReason::Refused`](crate::CancelReason::Refused) with the error's words, and then,
    /// unless the subscription is `temporary`, the consumer stops, failed with a
    /// [`SubscriptionRefused`](crate::SubscriptionRefused) error that the pipeline's run returns (as
    /// GenStage's consumer exits with the reason its producer cancelled it for). The subscription
    /// holds no place of its consumer's (no partition, no broadcast subscription), so that a later
    /// subscription is not refused for it;
    /// [`PipelineHandle::subscriptions`](crate::PipelineHandle::subscriptions) no longer lists it.
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError>;

    /// A consumer left; returns new upstream demand. What the dispatcher holds (see
    /// [`held`](Self::held) and [`stranded`](Self::stranded)) stays held, kept for no consumer if
    /// it was this one's: with no [`Outbox`] here, dropping it breaks the contract. Nothing can be
    /// sent here either: events it moves to another consumer are sent in the
    /// [`dispatch`](Self::dispatch) of no events that the stage makes right after a `subscribe` or
    /// a `cancel` while the dispatcher [`held`](Self::held) events (or in its next ask or
    /// dispatch), so that a consumer that already has demand outstanding, and will not ask again,
    /// gets them.
    fn cancel(&mut self, sub: SubscriptionId) -> usize;

    /// A consumer asked for `demand > 0` more events, which the dispatcher may serve at once from
    /// events it holds (into `out`); returns new upstream demand. An ask for a subscription the
    /// dispatcher does not hold (refused, or cancelled) changes nothing and returns 0.
    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, T>) -> usize;

    /// Hands `events` to consumers with demand, through `out`; returns the events no consumer could
    /// take now (the loop buffers them), in order.
    ///
    /// The stage's own functions (its partition function, through `out`, and subscriptions'
    /// selectors) may panic: the stage then fails with `events` counted as lost in its failed
    /// batch, nothing this call put in `out` is sent, and a restarted stage goes on with the same
    /// dispatcher. So call them all before changing the dispatcher's state, as the dispatchers of
    /// this crate do.
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
    /// Contract: dispatching at most `capacity()` events leaves no leftover (a dispatcher that
    /// leaves some fails its stage with [`ContractBreach::Capacity`]).
    ///
    /// It is also what the producer is asked for, less its buffer: a dispatcher that keeps events
    /// beyond a consumer's demand (a backlog, [`held`](Self::held)) counts them against it, or it
    /// is handed more without bound while a consumer without demand falls behind.
    fn capacity(&self) -> usize;

    /// How many consumers are subscribed.
    fn consumers(&self) -> usize;

    /// Events the dispatcher has taken and keeps for a subscribed consumer, to send when it asks
    /// (a partition's backlog): the producer does not end before they are sent. The default is 0.
    fn held(&self) -> usize {
        0
    }

    /// Events the dispatcher keeps for no consumer (a partition nobody has taken, or whose consumer
    /// left): sent if a consumer subscribes to take them, lost if the producer ends first, even by
    /// a graceful shutdown (counted as [`LossReason::Buffered`](crate::LossReason::Buffered), as
    /// its buffer is). The default is 0.
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

    /// Whether it sends every subscription every event (a broadcast), as [`BroadcastDispatcher`]
    /// does: a consumer then subscribes to the stage at most once, as a second subscription would
    /// hand it each event twice. The pipeline refuses the second, as GenStage does
    /// (`:already_subscribed`): [`Pipeline::run`](crate::Pipeline::run) and
    /// [`start`](crate::Pipeline::start) for the builder's subscriptions, the handle's
    /// [`subscribe`](crate::PipelineHandle::subscribe) and
    /// [`resubscribe`](crate::PipelineHandle::resubscribe) for a running pipeline's, each with
    /// [`DispatchSetupError::AlreadySubscribed`](crate::DispatchSetupError::AlreadySubscribed).
    /// Asked once, when the stage is added; a dispatcher of your own that broadcasts says so here.
    ///
    /// The default is `false`: a consumer subscribed twice to a [`DemandDispatcher`] shares the
    /// events between its two subscriptions, as GenStage's.
    fn broadcasts(&self) -> bool {
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
