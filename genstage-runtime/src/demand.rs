//! Per-subscription demand accounting on the consumer side (GenStage's `Utils.split_batches`).
//!
//! A consumer starts by asking for `max_demand`. Incoming events are cut into batches of at most
//! `max_demand - min_demand`; each batch uses up outstanding demand, and once outstanding demand falls
//! to `min_demand` or below, the consumer asks for enough to refill it to `max_demand`. The ask is sent
//! *after* the batch has been handled, so a slow consumer slows its producer.
//!
//! Everything here is plain data: the tokio loops (the runtime's private `run` module) call it.

use std::vec;

use crate::error::DemandError;
use crate::options::SubscribeOptions;

/// GenStage's default `max_demand`.
pub const DEFAULT_MAX_DEMAND: usize = 1000;

/// The largest `max_demand` a subscription may have: 2^30 events outstanding is far beyond any useful
/// demand, and keeps the demand of a producer's consumers summed (and a consumer's refill arithmetic)
/// clear of overflow. GenStage has no limit; a larger value is a [`DemandError::MaxDemandTooLarge`].
pub const MAX_DEMAND_LIMIT: usize = 1 << 30;

/// Validated `max_demand` / `min_demand` of one subscription.
///
/// ```
/// use genstage::demand::DemandLimits;
/// let limits = DemandLimits::new(100, 80).unwrap();
/// assert_eq!(limits.batch_size(), 20);
/// assert!(DemandLimits::new(0, 0).is_err());
/// assert!(DemandLimits::new(10, 10).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandLimits {
    max: usize,
    min: usize,
}

impl DemandLimits {
    /// Checks `1 <= max <= MAX_DEMAND_LIMIT` and `min < max`.
    ///
    /// # Errors
    ///
    /// [`DemandError`] with GenStage's messages when either bound is violated.
    pub fn new(max: usize, min: usize) -> Result<Self, DemandError> {
        if max == 0 {
            return Err(DemandError::MaxDemandZero);
        }
        if max > MAX_DEMAND_LIMIT {
            return Err(DemandError::MaxDemandTooLarge { max_demand: max });
        }
        if min >= max {
            return Err(DemandError::MinDemandTooLarge {
                min_demand: min,
                max_demand: max,
            });
        }
        Ok(DemandLimits { max, min })
    }

    /// The limits an edge's options give: `max_demand` defaults to 1000, `min_demand` to `max / 2`.
    ///
    /// # Errors
    ///
    /// As [`DemandLimits::new`].
    pub fn from_options(options: &SubscribeOptions) -> Result<Self, DemandError> {
        let max = options.max_demand.unwrap_or(DEFAULT_MAX_DEMAND);
        Self::new(max, options.min_demand.unwrap_or(max / 2))
    }

    /// `max_demand`.
    pub fn max(&self) -> usize {
        self.max
    }

    /// `min_demand`.
    pub fn min(&self) -> usize {
        self.min
    }

    /// The largest batch handed to `handle_events`: `max - min`.
    pub fn batch_size(&self) -> usize {
        self.max - self.min
    }
}

impl Default for DemandLimits {
    fn default() -> Self {
        DemandLimits {
            max: DEFAULT_MAX_DEMAND,
            min: DEFAULT_MAX_DEMAND / 2,
        }
    }
}

/// What accounting one batch gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDemand {
    /// Events received beyond the outstanding demand (a misbehaving producer); logged, then ignored.
    pub excess: usize,
    /// Demand to send to the producer once the batch has been handled; 0 means no ask.
    pub ask: usize,
}

/// The outstanding demand of one subscription.
///
/// ```
/// use genstage::demand::{ConsumerDemand, DemandLimits};
/// let mut demand = ConsumerDemand::new(DemandLimits::new(100, 20).unwrap());
/// assert_eq!(demand.initial_ask(), 100);
/// assert_eq!(demand.on_batch(80).ask, 80); // 0..79: outstanding 20 <= 20, refill to 100
/// assert_eq!(demand.on_batch(20).ask, 0);  // 80..99: outstanding 80
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerDemand {
    limits: DemandLimits,
    /// Events asked for and not yet received. Never above `limits.max`, unless a manual consumer
    /// asks for more.
    outstanding: usize,
    /// The consumer asks for itself (GenStage's manual mode).
    manual: bool,
}

impl ConsumerDemand {
    /// A subscription that has not asked yet.
    pub fn new(limits: DemandLimits) -> Self {
        ConsumerDemand {
            limits,
            outstanding: 0,
            manual: false,
        }
    }

    /// The ask sent on subscribing: `max_demand`.
    pub fn initial_ask(&mut self) -> usize {
        self.outstanding = self.limits.max;
        self.limits.max
    }

    /// The limits of this subscription.
    pub fn limits(&self) -> DemandLimits {
        self.limits
    }

    /// Events asked for and not yet received.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// The consumer asks for itself from now on (GenStage's manual mode): [`on_batch`](Self::on_batch)
    /// asks for nothing, and [`ask`](Self::ask) records what the consumer asks.
    pub fn set_manual(&mut self) {
        self.manual = true;
    }

    /// Whether the consumer asks for itself.
    pub fn is_manual(&self) -> bool {
        self.manual
    }

    /// A manual consumer asks for `demand` more events.
    pub fn ask(&mut self, demand: usize) {
        self.outstanding = self.outstanding.saturating_add(demand);
    }

    /// Accounts a batch of `len` events (at most [`DemandLimits::batch_size`], unless manual) and
    /// says what to ask for once it has been handled.
    pub fn on_batch(&mut self, len: usize) -> BatchDemand {
        let excess = len.saturating_sub(self.outstanding);
        self.outstanding -= len - excess;
        let ask = if self.manual {
            0
        } else if self.outstanding <= self.limits.min {
            let ask = self.limits.max - self.outstanding;
            self.outstanding = self.limits.max;
            ask
        } else {
            0
        };
        BatchDemand { excess, ask }
    }
}

/// Cuts one incoming message into batches of a given size, without copying when it fits whole.
///
/// ```
/// use genstage::demand::Batches;
/// let mut batches = Batches::new(vec![1, 2, 3, 4, 5]);
/// assert_eq!(batches.next_batch(2), Some(vec![1, 2]));
/// assert_eq!(batches.next_batch(2), Some(vec![3, 4]));
/// assert_eq!(batches.next_batch(2), Some(vec![5]));
/// assert_eq!(batches.next_batch(2), None);
/// ```
#[derive(Debug)]
pub struct Batches<T> {
    rest: Rest<T>,
}

/// A message is kept whole until it must be cut: most messages fit one batch and go on as they came.
#[derive(Debug)]
enum Rest<T> {
    Whole(Vec<T>),
    Cut(vec::IntoIter<T>),
}

impl<T> Batches<T> {
    /// The batches of one message.
    pub fn new(events: Vec<T>) -> Self {
        Batches {
            rest: Rest::Whole(events),
        }
    }

    /// Events not yet handed out.
    pub fn len(&self) -> usize {
        match &self.rest {
            Rest::Whole(events) => events.len(),
            Rest::Cut(events) => events.len(),
        }
    }

    /// Whether every event has been handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next batch of at most `size` events (`size >= 1`), or `None` when none are left.
    #[inline]
    pub fn next_batch(&mut self, size: usize) -> Option<Vec<T>> {
        match &mut self.rest {
            Rest::Whole(events) if events.is_empty() => None,
            Rest::Whole(events) if events.len() <= size => Some(std::mem::take(events)),
            Rest::Whole(events) => {
                let mut cut = std::mem::take(events).into_iter();
                let batch = cut.by_ref().take(size).collect();
                self.rest = Rest::Cut(cut);
                Some(batch)
            }
            Rest::Cut(events) => match events.len() {
                0 => None,
                // Collecting a whole `vec::IntoIter` reuses its allocation.
                n if n <= size => Some(std::mem::take(events).collect()),
                _ => Some(events.by_ref().take(size).collect()),
            },
        }
    }

    /// Every event left, as one batch.
    pub fn into_rest(self) -> Vec<T> {
        match self.rest {
            Rest::Whole(events) => events,
            Rest::Cut(events) => events.collect(),
        }
    }
}
