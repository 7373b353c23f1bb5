//! What a subscription asks of its producer's dispatcher.

use std::fmt;
use std::sync::Arc;

/// A broadcast subscription's filter: the events for which it returns `false` are not sent to that
/// consumer, and do not use up its demand (GenStage's `:selector`).
pub type Selector<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// What a consumer asked of the dispatcher when it subscribed: GenStage's subscription options that
/// a dispatcher reads. A dispatcher refuses (with a [`DispatchError`](super::DispatchError)) an option it does not use,
/// rather than ignore it.
pub struct DispatchOptions<T> {
    /// The partition the consumer takes (a [`PartitionDispatcher`](super::PartitionDispatcher)'s subscriptions).
    pub partition: Option<usize>,
    /// Which events the consumer wants (a [`BroadcastDispatcher`](super::BroadcastDispatcher)'s subscriptions).
    pub selector: Option<Selector<T>>,
}

impl<T> DispatchOptions<T> {
    /// No option: what a subscription to a [`DemandDispatcher`](super::DemandDispatcher) has.
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
