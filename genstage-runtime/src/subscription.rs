//! A consumer's subscriptions to its producers, as its callbacks see them: GenStage's
//! `handle_subscribe` (which may take control of the demand: manual mode) and `handle_cancel`.

use std::fmt;

use crate::dispatcher::SubscriptionId;

/// Identifies one subscription of a consumer (GenStage's subscription tag): what
/// [`Context::ask`](crate::Context::ask) asks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionTag(pub(crate) SubscriptionId);

/// A subscription of this stage to a producer, as `handle_subscribe` and `handle_cancel` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub(crate) tag: SubscriptionTag,
    pub(crate) producer: String,
    pub(crate) max_demand: usize,
    pub(crate) min_demand: usize,
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

/// Why a subscription ended, as `handle_cancel` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The producer ended normally, after sending its last events: they are all handled already.
    Finished,
    /// The producer failed, or stopped because the named stage failed; a `permanent` or `transient`
    /// subscription stops this stage after `handle_cancel` returns.
    Failed {
        /// The stage whose failure ended the subscription.
        cause: String,
    },
}

/// Why [`Context::ask`](crate::Context::ask) asked for nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AskError {
    /// The subscription is not this stage's, or has ended.
    Unknown(SubscriptionTag),
    /// The runtime asks on this subscription (it is not in manual mode).
    Automatic(SubscriptionTag),
    /// Asked from a callback that cannot ask (a producer's, which has no subscriptions to
    /// producers).
    NotAConsumer,
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Unknown(tag) => write!(f, "no subscription {} in this stage", tag.0),
            AskError::Automatic(tag) => write!(
                f,
                "subscription {} is automatic: the runtime asks for its events",
                tag.0
            ),
            AskError::NotAConsumer => f.write_str("only a consumer's callbacks can ask"),
        }
    }
}

impl std::error::Error for AskError {}

/// Where a stage's callbacks ask on its manual subscriptions.
pub(crate) trait ManualAsks: Send {
    fn ask_manual(&mut self, tag: SubscriptionTag, demand: usize) -> Result<(), AskError>;
}
