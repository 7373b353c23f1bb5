//! Dispatchers decide which consumer gets which events (GenStage's `GenStage.Dispatcher`).
//!
//! A dispatcher is a pure state machine owned by a producer's task: it learns of subscriptions,
//! cancellations and asks, and turns emitted events into deliveries. It never sends anything itself;
//! the task sends the deliveries it returns. So every dispatcher is tested without tokio, and a new one
//! plugs into the stage loops without changing them.

mod demand;

pub use demand::DemandDispatcher;

/// Identifies one subscription (one producer–consumer edge) within a pipeline.
pub type SubscriptionId = u64;

/// Why a dispatcher refused a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchError(pub String);

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DispatchError {}

/// The events a dispatch sends, one message per consumer, in the order they are to be sent.
pub type Deliveries<T> = Vec<(SubscriptionId, Vec<T>)>;

/// The contract between a producer's loop and its dispatcher.
///
/// "Upstream demand" is GenStage's name for what the producer is asked to emit as a result of a
/// subscribe, ask or cancel, and the values these methods return follow GenStage's dispatchers
/// exactly (their tests are GenStage's scenarios). The stage loops do not add them up: they derive
/// what a producer is asked for from [`capacity`](Dispatcher::capacity) less what the buffer holds,
/// which cannot drift when consumers leave with demand unmet (see the runtime's `event_path`).
pub trait Dispatcher<T>: Send + 'static {
    /// A consumer subscribed; returns new upstream demand.
    ///
    /// # Errors
    ///
    /// A [`DispatchError`] refuses the subscription; the producer goes on with its other consumers.
    fn subscribe(&mut self, sub: SubscriptionId) -> Result<usize, DispatchError>;

    /// A consumer left; returns new upstream demand.
    fn cancel(&mut self, sub: SubscriptionId) -> usize;

    /// A consumer asked for `demand > 0` more events; returns new upstream demand. An ask for a
    /// subscription the dispatcher does not hold (refused, or cancelled) changes nothing and returns 0.
    fn ask(&mut self, sub: SubscriptionId, demand: usize) -> usize;

    /// Hands `events` to consumers with demand, appending one message per consumer to `deliveries`;
    /// returns the events no consumer could take (the loop buffers them), in order.
    fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T>;

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
}
