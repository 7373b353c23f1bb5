//! Subscriptions as a stage's callbacks see them. On the consumer side, a [`Subscription`] to a
//! producer: GenStage's `handle_subscribe(:producer, …)` (which may take control of the demand: manual
//! mode) and `handle_cancel`. On the producer side, a [`Subscriber`]: GenStage's
//! `handle_subscribe(:consumer, …)` and the producer's `handle_cancel`.

use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::dispatcher::SubscriptionId;

/// Identifies one subscription of a consumer (GenStage's subscription tag): what
/// [`Context::ask`](crate::Context::ask) asks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionTag(pub(crate) SubscriptionId);

impl SubscriptionTag {
    /// The subscription's number, as its producer's
    /// [`Dispatcher`](crate::dispatcher::Dispatcher) knows it (`sub` in its methods). A
    /// dispatcher sees only that number; the stage links it to its consumer through the
    /// [`Subscriber`] that `handle_consumer_subscribe` is given, whose [`tag`](Subscriber::tag)
    /// has this number and whose [`consumer`](Subscriber::consumer) names the consumer: the stage
    /// can share what it learns there with the dispatcher it made.
    pub fn id(self) -> SubscriptionId {
        self.0
    }
}

/// A subscription of this stage to a producer, as `handle_subscribe` and `handle_cancel` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub(crate) tag: SubscriptionTag,
    pub(crate) producer: String,
    pub(crate) max_demand: usize,
    pub(crate) min_demand: usize,
    /// See [`partition`](Self::partition).
    pub(crate) partition: Option<usize>,
    /// See [`outstanding`](Self::outstanding).
    pub(crate) outstanding: usize,
}

impl Subscription {
    /// The subscription's tag, to [`ask`](crate::Context::ask) on it in manual mode.
    pub fn tag(&self) -> SubscriptionTag {
        self.tag
    }

    /// The producer's name.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The subscription's `max_demand`.
    pub fn max_demand(&self) -> usize {
        self.max_demand
    }

    /// The subscription's `min_demand`.
    pub fn min_demand(&self) -> usize {
        self.min_demand
    }

    /// The partition of the producer this subscription takes (`partition = i` in `pipeline!`,
    /// `i` for instance `i` of a group after a partitioned stage,
    /// [`SubscribeOptions::partition`](crate::SubscribeOptions::partition)), or `None` when it
    /// takes none (its producer is not partitioned). GenStage's consumer finds it in the options
    /// its `handle_subscribe` is given: a worker of a group learns here which share of the events
    /// it gets, in each value a restart makes too.
    pub fn partition(&self) -> Option<usize> {
        self.partition
    }

    /// Events asked for on it and not yet handed to the stage, as the stage is told of it:
    /// `max_demand` for a new subscription, whose initial ask is in place.
    ///
    /// A stage restarted after a failure is told of its subscriptions again, and the batch its
    /// failed value held was asked for and handed: lost, unless its restart policy redelivers it.
    /// In manual demand the new value asks for that batch's events again, or the subscription keeps
    /// that much less demand for good: the [`Asker`](crate::Asker) it makes there asks for
    /// `max_demand().saturating_sub(outstanding())`, which is nothing for a new subscription
    /// (saturating: a manual stage may have asked for more than `max_demand`, and then has more
    /// outstanding). (A stage whose policy redelivers asks as it handles the batch again instead.)
    ///
    /// It counts the asks made, and those an [`Asker`](crate::Asker) sent that the stage has not
    /// made yet (they wait in its mailbox, and are made after `handle_subscribe`), but not those a
    /// task of the failed value still owes: a stage whose tasks ask for the batches they work on
    /// asks again for the failed batch alone, whose size it knows, rather than topping up.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

/// A consumer subscribed to this stage, as a producer's (or producer_consumer's)
/// `handle_consumer_subscribe` and `handle_consumer_cancel` see it.
///
/// # Examples
///
/// A producer that keeps count of its consumers, and tells the others when one fails:
///
/// ```
/// use genstage::{CancelReason, Context, Emit, Producer, StageResult, Subscriber};
///
/// struct Announcer { consumers: usize }
///
/// impl Producer for Announcer {
///     type Output = String;
///
///     async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<String>> {
///         Ok(Emit::more(vec![format!("{} consumers", self.consumers); demand]))
///     }
///
///     fn handle_consumer_subscribe(&mut self, _: &Subscriber, _: &mut Context<'_, Self>) {
///         self.consumers += 1;
///     }
///
///     async fn handle_consumer_cancel(
///         &mut self,
///         subscriber: &Subscriber,
///         reason: &CancelReason,
///         _: &mut Context<'_, Self>,
///     ) -> StageResult<Vec<String>> {
///         self.consumers -= 1;
///         Ok(match reason {
///             CancelReason::Failed { .. } => vec![format!("{} failed", subscriber.consumer())],
///             _ => Vec::new(),
///         })
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub(crate) tag: SubscriptionTag,
    pub(crate) consumer: String,
    pub(crate) max_demand: usize,
    pub(crate) min_demand: usize,
    pub(crate) partition: Option<usize>,
}

impl Subscriber {
    /// The subscription's tag: the consumer's [`Subscription::tag`] for the same subscription.
    pub fn tag(&self) -> SubscriptionTag {
        self.tag
    }

    /// The consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The subscription's `max_demand`: at most this many events are asked at once.
    pub fn max_demand(&self) -> usize {
        self.max_demand
    }

    /// The subscription's `min_demand`.
    pub fn min_demand(&self) -> usize {
        self.min_demand
    }

    /// The partition of this stage the consumer takes, or `None` when the stage is not
    /// partitioned: the consumer's [`Subscription::partition`].
    pub fn partition(&self) -> Option<usize> {
        self.partition
    }
}

/// Who asks a producer for events on a subscription, as `handle_subscribe` chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Demand {
    /// The runtime does, by GenStage's rule: batches of at most `max_demand - min_demand`, and an
    /// ask for `max_demand - outstanding` once outstanding demand falls to `min_demand`. The default.
    #[default]
    Automatic,
    /// The stage does, with [`Context::ask`](crate::Context::ask) (GenStage's manual mode): events
    /// reach `handle_events` in the batches the producer sent, and nothing is asked after them.
    /// The subscription starts with its initial ask of `max_demand` in place, as the pipeline made it
    /// when it wired the stage; the stage keeps within `max_demand` itself.
    Manual,
}

/// Why a subscription ended, as `handle_cancel` (the consumer's side) and `handle_consumer_cancel`
/// (the producer's side) are told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The other side ended normally. To a consumer: its producer, after sending its last events,
    /// which are all handled already. To a producer: its consumer, which handled what it took.
    Finished,
    /// The other side failed, or stopped because the named stage failed. To a consumer, a
    /// `permanent` or `transient` subscription then stops it, after `handle_cancel` returns; a
    /// producer keeps running (GenStage's `{:down, reason}`).
    Failed {
        /// The stage whose failure ended the subscription.
        cause: String,
    },
    /// The subscription was cancelled through
    /// [`PipelineHandle::cancel`](crate::PipelineHandle::cancel) (GenStage's `{:cancel, reason}`);
    /// the consumer had every event the producer sent it. Neither side stops for it.
    Cancelled,
    /// The producer's dispatcher refused the subscription
    /// ([`Dispatcher::subscribe`](crate::dispatcher::Dispatcher::subscribe) returned an error; GenStage
    /// cancels it with the dispatcher's reason), so no event ever came on it. Told to the consumer
    /// only: the producer never had it. A `permanent` or `transient` subscription then stops the
    /// consumer, failed with a [`SubscriptionRefused`](crate::SubscriptionRefused) error, after
    /// `handle_cancel` returns, and its restart policy does not restart it (as for a producer's
    /// failure); a `temporary` one leaves it running.
    Refused {
        /// What the dispatcher said.
        reason: String,
    },
}

/// Why [`Context::ask`](crate::Context::ask) asked for nothing,
/// [`Context::cancel`](crate::Context::cancel) cancelled nothing, or
/// [`Context::asker`](crate::Context::asker) made no [`Asker`](crate::Asker). Every variant names
/// the stage whose callback asked ([`stage`](Self::stage)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AskError {
    /// The subscription is not this stage's, or has ended.
    Unknown {
        /// The stage that asked.
        stage: String,
        /// The subscription it named.
        subscription: SubscriptionTag,
    },
    /// The runtime asks on this subscription (it is not in manual mode).
    Automatic {
        /// The stage that asked.
        stage: String,
        /// The subscription it named.
        subscription: SubscriptionTag,
    },
    /// Asked or cancelled from a callback that cannot (a producer's, which has no subscriptions
    /// to producers).
    NotAConsumer {
        /// The stage that asked: a producer.
        stage: String,
    },
}

impl AskError {
    /// The name of the stage whose callback asked.
    pub fn stage(&self) -> &str {
        match self {
            AskError::Unknown { stage, .. }
            | AskError::Automatic { stage, .. }
            | AskError::NotAConsumer { stage } => stage,
        }
    }
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Unknown {
                stage,
                subscription,
            } => write!(
                f,
                "stage `{stage}` has no subscription {}: it is another stage's, or has ended",
                subscription.0
            ),
            AskError::Automatic {
                stage,
                subscription,
            } => write!(
                f,
                "subscription {} of stage `{stage}` is automatic: the runtime asks for its events",
                subscription.0
            ),
            AskError::NotAConsumer { stage } => write!(
                f,
                "stage `{stage}` is a producer: only a consumer's or producer_consumer's callbacks \
                 can ask or cancel, and a producer has no subscriptions to producers"
            ),
        }
    }
}

impl std::error::Error for AskError {}

/// Where a stage's callbacks ask on its manual subscriptions.
pub(crate) trait ManualAsks: Send {
    fn ask_manual(&mut self, tag: SubscriptionTag, demand: usize) -> Result<(), AskError>;
    /// What an [`Asker`](crate::Asker) for the subscription `tag` shares with the stage, in one
    /// lookup; `None` when `tag` is not one of the stage's subscriptions.
    fn asker_ends(&self, tag: SubscriptionTag) -> Option<AskerEnds>;
    /// The producer of the subscription `tag`; `None` when `tag` is not one of the stage's
    /// subscriptions.
    fn producer_of(&self, tag: SubscriptionTag) -> Option<Arc<dyn CancelAtProducer>>;
}

/// What an [`Asker`](crate::Asker) shares with its stage of one subscription.
pub(crate) struct AskerEnds {
    /// The count of what the subscription's `Asker`s have asked for and the stage has not yet
    /// asked (their asks wait in its mailbox), which `outstanding` adds.
    pub(crate) on_their_way: Arc<AtomicUsize>,
    /// The subscription's producer, where an `Asker` cancels it.
    pub(crate) producer: Arc<dyn CancelAtProducer>,
}

/// What a consumer holds of a subscription's producer to cancel it there (the producer's mailbox,
/// whatever its event types).
pub(crate) trait CancelAtProducer: Send + Sync {
    /// Cancels `sub`: the producer stops sending on it and tells the consumer, after the events it
    /// sent it. Nothing when the producer is gone.
    fn cancel(&self, sub: SubscriptionId);
}
