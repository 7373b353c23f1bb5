//! GenStage's `BroadcastDispatcher`: every event to every consumer.

use std::fmt;

use super::{DispatchError, DispatchOptions, Dispatcher, Outbox, Selector, SubscriptionId};

/// The events of a broadcasting stage: they are cloned, once per consumer.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be broadcast: it does not implement `Clone`",
    label = "a broadcast needs `Clone` events",
    note = "a broadcast dispatcher sends every event to every consumer, one clone each: derive or implement `Clone` for `{Self}`"
)]
pub trait BroadcastEvent: Clone {}

impl<T: Clone> BroadcastEvent for T {}

/// One consumer of a broadcast.
struct Subscriber<T> {
    sub: SubscriptionId,
    /// What it has asked for and not yet been sent, less what is counted in `waiting`.
    demand: usize,
    selector: Option<Selector<T>>,
}

/// Sends every event to every consumer, in order. A consumer is sent events only once **every**
/// consumer has demand for them, so the slowest consumer paces all the others (and a consumer that
/// subscribes and never asks stops the broadcast): give a slow consumer a larger `max_demand`, by
/// which the others may run ahead of it. A producer_consumer put in front of it adds only its own
/// `max_demand` (and one batch), not its buffer: it handles its input only while its consumers
/// have demand, so its buffer never takes in what the slow consumer has not asked for.
///
/// A subscription with a [`Selector`] is sent only the events it accepts; the events it rejects do
/// not use up its demand. An event that every selector rejects goes to no one, and is counted as
/// discarded.
///
/// It asks upstream only for demand it has not asked for yet (GenStage #318: a consumer subscribing
/// or leaving never duplicates upstream demand).
///
/// A consumer subscribes to it once ([`broadcasts`](Dispatcher::broadcasts)): the pipeline refuses
/// a second subscription of the same consumer, which would be sent every event twice.
///
/// ```
/// use genstage::dispatcher::{BroadcastDispatcher, DispatchOptions, Dispatcher, Outbox};
/// let mut dispatcher = BroadcastDispatcher::new();
/// dispatcher.subscribe(1, &DispatchOptions::none()).unwrap();
/// dispatcher.subscribe(2, &DispatchOptions::selector(|n: &u32| n % 2 == 0)).unwrap();
/// let mut deliveries = Vec::new();
/// let mut out = Outbox::new(&mut deliveries);
/// assert_eq!(dispatcher.ask(1, 4, &mut out), 0);
/// assert_eq!(dispatcher.ask(2, 4, &mut out), 4);
/// assert_eq!(dispatcher.dispatch(vec![1, 2, 3, 4], &mut out), Ok(vec![]));
/// assert_eq!(out.copies(), 2);
/// assert_eq!(deliveries, vec![(1, vec![1, 2, 3, 4]), (2, vec![2, 4])]);
/// ```
pub struct BroadcastDispatcher<T> {
    /// In the order they subscribed.
    subscribers: Vec<Subscriber<T>>,
    /// Events every consumer can take now.
    waiting: usize,
    /// Demand asked upstream and not yet dispatched.
    requested: usize,
}

impl<T> BroadcastDispatcher<T> {
    /// A dispatcher with no consumers.
    pub fn new() -> Self {
        BroadcastDispatcher {
            subscribers: Vec::new(),
            waiting: 0,
            requested: 0,
        }
    }

    /// `(subscription, demand)` of each consumer, in the order they subscribed: what each has
    /// asked for beyond [`waiting`](Self::waiting).
    pub fn demands(&self) -> Vec<(SubscriptionId, usize)> {
        self.subscribers.iter().map(|s| (s.sub, s.demand)).collect()
    }

    /// Events every consumer can take now.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Demand asked upstream and not yet dispatched.
    pub fn requested(&self) -> usize {
        self.requested
    }

    /// Moves the demand every consumer shares into `waiting`; returns the part of it not yet asked
    /// upstream, which it now is. `waiting` stops at `usize::MAX`: what does not fit stays in each
    /// consumer's own demand, to move once events have gone out.
    fn sync_demands(&mut self) -> usize {
        let Some(shared) = self.subscribers.iter().map(|s| s.demand).min() else {
            return 0;
        };
        let shared = shared.min(usize::MAX - self.waiting);
        for subscriber in &mut self.subscribers {
            subscriber.demand -= shared;
        }
        self.waiting += shared;
        let upstream = self.waiting.saturating_sub(self.requested);
        self.requested += upstream;
        upstream
    }
}

impl<T> Default for BroadcastDispatcher<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for BroadcastDispatcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastDispatcher")
            .field("demands", &self.demands())
            .field("waiting", &self.waiting)
            .field("requested", &self.requested)
            .finish()
    }
}

impl<T: BroadcastEvent + Send + 'static> Dispatcher<T> for BroadcastDispatcher<T> {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError> {
        if options.partition.is_some() {
            return Err(DispatchError(
                "a broadcast dispatcher has no partitions: a subscription to it takes every event, \
                 or those its selector accepts"
                    .to_owned(),
            ));
        }
        if self.subscribers.iter().any(|s| s.sub == sub) {
            return Err(DispatchError(format!(
                "subscription {sub} is already registered"
            )));
        }
        // What everyone could take so far goes back to each consumer's own demand: nothing is sent
        // until the newcomer asks too. Every demand here saturates: a consumer may ask for any
        // `usize`, however many times.
        for subscriber in &mut self.subscribers {
            subscriber.demand = subscriber.demand.saturating_add(self.waiting);
        }
        self.waiting = 0;
        self.subscribers.push(Subscriber {
            sub,
            demand: 0,
            selector: options.selector.clone(),
        });
        Ok(0)
    }

    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        let Some(at) = self.subscribers.iter().position(|s| s.sub == sub) else {
            return 0;
        };
        self.subscribers.remove(at);
        if self.subscribers.is_empty() {
            self.waiting = 0;
            return 0;
        }
        // The slowest consumer may be the one that left.
        self.sync_demands()
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, T>) -> usize {
        let Some(subscriber) = self.subscribers.iter_mut().find(|s| s.sub == sub) else {
            return 0;
        };
        subscriber.demand = subscriber.demand.saturating_add(demand);
        self.sync_demands()
    }

    fn dispatch(
        &mut self,
        mut events: Vec<T>,
        out: &mut Outbox<'_, T>,
    ) -> Result<Vec<T>, DispatchError> {
        if self.waiting == 0 || self.subscribers.is_empty() {
            return Ok(events);
        }
        let leftover = events.split_off(self.waiting.min(events.len()));
        let count = events.len();
        // Every selector's verdicts before anything changes: a selector that panics fails the
        // stage, whose restarted value goes on with this dispatcher as it was.
        let selective = self.subscribers.iter().any(|s| s.selector.is_some());
        let mut verdicts: Vec<Option<Vec<bool>>> = if selective {
            self.subscribers
                .iter()
                .map(|s| {
                    let selector = s.selector.as_ref()?;
                    Some(events.iter().map(|event| selector(event)).collect())
                })
                .collect()
        } else {
            Vec::new()
        };
        self.waiting -= count;
        self.requested = self.requested.saturating_sub(count);
        // How many consumers each event goes to, when some select: an event no one takes is
        // discarded, and each one beyond the first is a copy.
        let mut takers = if selective {
            vec![0usize; count]
        } else {
            Vec::new()
        };
        let last = self.subscribers.len() - 1;
        let mut events = Some(events);
        for (i, subscriber) in self.subscribers.iter_mut().enumerate() {
            let all = if i == last {
                events.take().unwrap_or_default()
            } else {
                events
                    .as_ref()
                    .map_or_else(Vec::new, |events| events.clone())
            };
            let batch: Vec<T> = match verdicts.get_mut(i).and_then(Option::take) {
                None => {
                    takers.iter_mut().for_each(|n| *n += 1);
                    all
                }
                Some(accepted) => {
                    let mut batch = Vec::with_capacity(all.len());
                    for ((event, takers), accepted) in
                        all.into_iter().zip(takers.iter_mut()).zip(accepted)
                    {
                        if accepted {
                            *takers += 1;
                            batch.push(event);
                        }
                    }
                    // Rejected events do not use up its demand (GenStage asks them again).
                    subscriber.demand = subscriber.demand.saturating_add(count - batch.len());
                    batch
                }
            };
            out.send(subscriber.sub, batch);
        }
        if takers.is_empty() {
            out.copied(count.saturating_mul(last));
        } else {
            let nobody = takers.iter().filter(|&&n| n == 0).count();
            out.discard(nobody);
            out.copied(takers.iter().map(|&n| n.saturating_sub(1)).sum());
            self.sync_demands();
        }
        Ok(leftover)
    }

    fn capacity(&self) -> usize {
        if self.subscribers.is_empty() {
            0
        } else {
            self.waiting
        }
    }

    fn consumers(&self) -> usize {
        self.subscribers.len()
    }

    fn selects(&self) -> bool {
        true
    }

    fn broadcasts(&self) -> bool {
        true
    }
}
