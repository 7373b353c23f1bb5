//! The consumer side of a stage task: its subscriptions, their demand, and the events received but
//! not yet handled.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::demand::{BatchDemand, Batches, ConsumerDemand};
use crate::dispatcher::SubscriptionId;
use crate::mailbox::DeferredWake;
use crate::options::CancelMode;
use crate::protocol::{EndReason, ProducerPort, Subscribed, Upstream};
use crate::subscription::{AskError, ManualAsks, SubscriptionTag};

use super::by_subscription::BySubscription;

struct Subscription {
    producer: Arc<dyn ProducerPort>,
    demand: ConsumerDemand,
    cancel: CancelMode,
}

/// Received input, kept in arrival order so that an end notice is acted on only after the events its
/// producer sent before it (GenStage §1.8).
enum Queued<T> {
    Events(SubscriptionId, Batches<T>),
    Ended(SubscriptionId, EndReason),
}

/// The next thing a stage loop does with its input.
pub(super) enum Step<T> {
    /// Hand `events` to `handle_events`, then call [`Inputs::ask`] with `demand`.
    Handle {
        sub: SubscriptionId,
        events: Vec<T>,
        demand: BatchDemand,
    },
    /// Stop: the producer that the named stage caused to fail was subscribed permanently.
    Stop { cause: Arc<str> },
}

pub(super) struct Inputs<T> {
    stage: Arc<str>,
    subscriptions: BySubscription<Subscription>,
    queue: VecDeque<Queued<T>>,
    /// Subscriptions seen, ended or not: 0 means the stage has not been wired yet.
    subscribed: usize,
    /// Events handed out to `handle_events`, over all subscriptions.
    pub(super) events_in: u64,
    /// Events received beyond outstanding demand, over all subscriptions.
    pub(super) excess: u64,
}

impl<T> Inputs<T> {
    pub(super) fn new(stage: Arc<str>) -> Self {
        Inputs {
            stage,
            subscriptions: BySubscription::new(),
            queue: VecDeque::new(),
            subscribed: 0,
            events_in: 0,
            excess: 0,
        }
    }

    /// Takes in a message from upstream.
    #[inline]
    pub(super) fn handle(&mut self, mail: Upstream<T>) {
        match mail {
            Upstream::Subscribed(subscribed) => self.subscribe(*subscribed),
            Upstream::Events { sub, events } => {
                self.queue
                    .push_back(Queued::Events(sub, Batches::new(events)));
            }
            Upstream::Ended { sub, reason } => self.queue.push_back(Queued::Ended(sub, reason)),
        }
    }

    /// Once per subscription: kept out of [`handle`](Self::handle), which runs once per batch.
    #[cold]
    fn subscribe(&mut self, subscribed: Subscribed) {
        let Subscribed {
            sub,
            producer,
            limits,
            cancel,
        } = subscribed;
        // The pipeline has already queued the initial ask of `max_demand` behind the subscription,
        // so that every consumer has demand before any event flows; only account for it here.
        let mut demand = ConsumerDemand::new(limits);
        demand.initial_ask();
        let subscription = Subscription {
            producer,
            demand,
            cancel,
        };
        self.subscriptions.insert(sub, subscription);
        self.subscribed += 1;
    }

    /// Events received and not yet handed out.
    pub(super) fn unhandled(&self) -> u64 {
        self.queue
            .iter()
            .map(|queued| match queued {
                Queued::Events(_, batches) => batches.len() as u64,
                Queued::Ended(..) => 0,
            })
            .sum()
    }

    /// Nothing received is waiting to be handed out.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Every producer has ended and every event received has been handed out.
    pub(super) fn exhausted(&self) -> bool {
        self.subscribed > 0 && self.subscriptions.is_empty() && self.queue.is_empty()
    }

    /// The next step, acting on end notices on the way. `None` when nothing is queued, or when events
    /// are next and `handle_events` is false (a producer_consumer without downstream demand).
    #[inline]
    pub(super) fn next_step(&mut self, handle_events: bool) -> Option<Step<T>> {
        // Every loop ends with this call on an empty queue: keep that one cheap.
        if self.queue.is_empty() {
            return None;
        }
        self.take_step(handle_events)
    }

    fn take_step(&mut self, handle_events: bool) -> Option<Step<T>> {
        loop {
            match self.queue.front_mut()? {
                Queued::Events(..) if !handle_events => return None,
                Queued::Events(sub, batches) => {
                    let sub = *sub;
                    let (events, demand) = match self.subscriptions.get_mut(sub) {
                        Some(subscription) => {
                            let size = subscription.demand.limits().batch_size();
                            let Some(events) = batches.next_batch(size) else {
                                self.queue.pop_front();
                                continue;
                            };
                            let demand = subscription.demand.on_batch(events.len());
                            (events, demand)
                        }
                        // Events from a producer that has since gone: one last batch, no ask.
                        None => {
                            let events = std::mem::replace(batches, Batches::new(Vec::new()));
                            let demand = BatchDemand { excess: 0, ask: 0 };
                            (events.into_rest(), demand)
                        }
                    };
                    if batches.is_empty() {
                        self.queue.pop_front();
                    }
                    if demand.excess > 0 {
                        self.excess += demand.excess as u64;
                        warn_excess(&self.stage, sub, demand.excess);
                    }
                    self.events_in += events.len() as u64;
                    return Some(Step::Handle {
                        sub,
                        events,
                        demand,
                    });
                }
                Queued::Ended(..) => {
                    let Some(Queued::Ended(sub, reason)) = self.queue.pop_front() else {
                        continue;
                    };
                    let Some(subscription) = self.subscriptions.remove(sub) else {
                        continue;
                    };
                    if let EndReason::Failed(cause) = reason {
                        if subscription.cancel != CancelMode::Temporary {
                            return Some(Step::Stop { cause });
                        }
                    }
                }
            }
        }
    }

    /// Sends the ask a handled batch earned; returns the wake-up it owes the producer, given when
    /// dropped (see [`crate::mailbox`]).
    pub(super) fn ask(&self, sub: SubscriptionId, demand: BatchDemand) -> DeferredWake {
        if demand.ask == 0 {
            return DeferredWake::default();
        }
        match self.subscriptions.get(sub) {
            Some(subscription) => subscription.producer.ask(sub, demand.ask),
            None => DeferredWake::default(),
        }
    }
}

/// Logs a producer's overrun, out of the hot path.
#[cold]
fn warn_excess(stage: &str, sub: SubscriptionId, excess: usize) {
    tracing::warn!(
        stage,
        "GenStage consumer {stage} has received {excess} events in excess from subscription {sub}"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::demand::DemandLimits;

    /// A producer that records the asks it is sent.
    #[derive(Default)]
    struct Asks(Mutex<Vec<(SubscriptionId, usize)>>);

    impl ProducerPort for Asks {
        fn ask(&self, sub: SubscriptionId, demand: usize) -> DeferredWake {
            self.0.lock().unwrap().push((sub, demand));
            DeferredWake::default()
        }
    }

    fn subscribed(sub: SubscriptionId, producer: &Arc<Asks>, cancel: CancelMode) -> Upstream<u32> {
        Upstream::Subscribed(Box::new(Subscribed {
            sub,
            producer: producer.clone(),
            limits: DemandLimits::new(10, 5).unwrap(),
            cancel,
        }))
    }

    fn events(sub: SubscriptionId, events: std::ops::Range<u32>) -> Upstream<u32> {
        Upstream::Events {
            sub,
            events: events.collect(),
        }
    }

    /// Hands out the next batch and sends its ask, as a stage loop does.
    fn handle(inputs: &mut Inputs<u32>) -> Option<(SubscriptionId, Vec<u32>)> {
        match inputs.next_step(true)? {
            Step::Handle {
                sub,
                events,
                demand,
            } => {
                drop(inputs.ask(sub, demand));
                Some((sub, events))
            }
            Step::Stop { cause } => panic!("unexpected stop caused by {cause}"),
        }
    }

    #[test]
    fn batches_are_cut_and_asked_for_as_genstage_does() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        inputs.handle(events(1, 0..10));
        assert_eq!(inputs.unhandled(), 10);
        assert_eq!(handle(&mut inputs), Some((1, (0..5).collect())));
        assert_eq!(handle(&mut inputs), Some((1, (5..10).collect())));
        assert_eq!(handle(&mut inputs), None);
        // max 10 / min 5: each batch of 5 brings outstanding to 5, which asks for 5.
        assert_eq!(*producer.0.lock().unwrap(), [(1, 5), (1, 5)]);
        assert_eq!((inputs.events_in, inputs.unhandled()), (10, 0));
    }

    #[test]
    fn an_end_notice_is_acted_on_after_the_events_sent_before_it() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        inputs.handle(events(1, 0..3));
        inputs.handle(Upstream::Ended {
            sub: 1,
            reason: EndReason::Failed(Arc::from("p")),
        });
        assert_eq!(handle(&mut inputs), Some((1, vec![0, 1, 2])));
        match inputs.next_step(true) {
            Some(Step::Stop { cause }) => assert_eq!(&*cause, "p"),
            _ => panic!("a permanent subscription stops the stage"),
        }
    }

    #[test]
    fn a_temporary_subscription_outlives_its_failed_producer() {
        let (failed, healthy) = (Arc::new(Asks::default()), Arc::new(Asks::default()));
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &failed, CancelMode::Temporary));
        inputs.handle(subscribed(2, &healthy, CancelMode::Temporary));
        inputs.handle(Upstream::Ended {
            sub: 1,
            reason: EndReason::Failed(Arc::from("p")),
        });
        inputs.handle(events(2, 0..2));
        assert_eq!(handle(&mut inputs), Some((2, vec![0, 1])));
        assert!(!inputs.exhausted());
        inputs.handle(Upstream::Ended {
            sub: 2,
            reason: EndReason::Finished,
        });
        assert_eq!(handle(&mut inputs), None);
        assert!(inputs.exhausted());
    }

    #[test]
    fn a_producer_consumer_without_downstream_demand_holds_its_input() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("pc"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        inputs.handle(events(1, 0..4));
        assert!(inputs.next_step(false).is_none());
        assert_eq!(inputs.unhandled(), 4);
        assert!(producer.0.lock().unwrap().is_empty());
    }
}

impl<T: Send> ManualAsks for Inputs<T> {
    fn ask_manual(&mut self, tag: SubscriptionTag, demand: usize) -> Result<(), AskError> {
        let Some(subscription) = self.subscriptions.get_mut(tag.0) else {
            return Err(AskError::Unknown(tag));
        };
        if !subscription.demand.is_manual() {
            return Err(AskError::Automatic(tag));
        }
        if demand > 0 {
            subscription.demand.ask(demand);
            drop(subscription.producer.ask(tag.0, demand));
        }
        Ok(())
    }
}
