//! The consumer side of a stage task: its subscriptions, their demand, and the events received but
//! not yet handled.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::demand::{BatchDemand, Batches, ConsumerDemand};
use crate::dispatcher::SubscriptionId;
use crate::error::SubscriptionRefused;
use crate::mailbox::DeferredWake;
use crate::messages::Letter;
use crate::options::CancelMode;
use crate::protocol::{EndReason, ProducerPort, Subscribed, Upstream};
use crate::subscription::{
    AskError, AskerEnds, CancelAtProducer, CancelReason, ManualAsks, SubscriptionTag,
};

use super::by_subscription::BySubscription;
use super::Exit;

struct Subscription {
    producer: Arc<dyn ProducerPort>,
    producer_name: Arc<str>,
    demand: ConsumerDemand,
    cancel: CancelMode,
    /// The producer's partition it takes, if it takes one.
    partition: Option<usize>,
    /// Events handed out to `handle_events`, for the report's edge.
    handed: u64,
    /// What its [`Asker`](crate::Asker)s have asked for and the stage has not yet asked
    /// (see [`ManualAsks::on_their_way`]).
    on_their_way: Arc<AtomicUsize>,
}

impl Subscription {
    /// The subscription as the stage's callbacks see it.
    fn seen_as(&self, sub: SubscriptionId) -> crate::subscription::Subscription {
        let limits = self.demand.limits();
        crate::subscription::Subscription {
            tag: SubscriptionTag(sub),
            producer: self.producer_name.to_string(),
            max_demand: limits.max(),
            min_demand: limits.min(),
            partition: self.partition,
            outstanding: self
                .demand
                .outstanding()
                .saturating_add(self.on_their_way.load(Ordering::Relaxed)),
        }
    }
}

/// Received input, kept in arrival order so that a subscription is announced before its events, and
/// an end notice is acted on only after the events its producer sent before it (GenStage §1.8); so
/// is an `info_after_buffered` letter that reached a producer_consumer with input queued.
enum Queued<T> {
    Subscribed(SubscriptionId),
    Events(SubscriptionId, Batches<T>),
    Ended(SubscriptionId, Ending),
    Info(Letter),
}

/// Why a subscription ended, as the stage takes it in.
enum Ending {
    /// The subscription was cancelled.
    Cancelled,
    /// The producer ended, for this reason.
    Ended(EndReason),
    /// The producer's dispatcher refused the subscription, for this reason.
    Refused(Arc<str>),
}

/// The next thing a stage loop does with its input.
pub(super) enum Step<T> {
    /// Tell the stage's `handle_subscribe`, and make the subscription manual if it says so.
    Subscribed(crate::subscription::Subscription),
    /// Hand `events` to `handle_events`, then call [`Inputs::ask`] with `demand`.
    Handle {
        sub: SubscriptionId,
        events: Vec<T>,
        demand: BatchDemand,
    },
    /// Tell the stage's `handle_cancel`; then stop, if `stop` says why a subscription that was not
    /// temporary ended.
    Cancelled {
        subscription: crate::subscription::Subscription,
        reason: CancelReason,
        stop: Option<Stop>,
    },
    /// An `info_after_buffered` letter whose input in front of it has been handled: place it behind
    /// the stage's buffer.
    Info(Letter),
}

/// Why a stage stops once `handle_cancel` returns: a subscription that was not temporary ended
/// for it.
pub(super) enum Stop {
    /// The named stage failed upstream.
    Failed(Arc<str>),
    /// The producer's dispatcher refused the subscription.
    Refused(SubscriptionRefused),
}

impl Stop {
    /// How the stage ends: cancelled by the failure, or failed with the refusal.
    pub(super) fn exit(self) -> Exit {
        match self {
            Stop::Failed(cause) => Exit::Cancelled(Some(cause)),
            Stop::Refused(refused) => Exit::Failed(Box::new(refused)),
        }
    }
}

pub(super) struct Inputs<T> {
    stage: Arc<str>,
    subscriptions: BySubscription<Subscription>,
    queue: VecDeque<Queued<T>>,
    /// Subscriptions seen, ended or not: 0 means the stage has not been wired yet.
    subscribed: usize,
    /// The pipeline is shutting down (see [`close`](Self::close)).
    closed: bool,
    /// Subscriptions that replace one of the stage's (a resubscribe to the same producer), which
    /// the producer announced as it cancelled the old one, before the pipeline's word of them
    /// reached the stage: it is not done until they have, though it has no subscription left.
    awaited: Vec<SubscriptionId>,
    /// Events handed out to `handle_events`, over all subscriptions.
    pub(super) events_in: u64,
    /// Events received beyond outstanding demand, over all subscriptions.
    pub(super) excess: u64,
    /// Events handed out to `handle_events` on each subscription that has ended, and left in the
    /// stage's mailbox when it stopped, for the report's edges.
    ended: Vec<(SubscriptionId, u64)>,
    left: Vec<(SubscriptionId, u64)>,
    /// Ends told by a producer before the pipeline's word of the subscription reached the stage (a
    /// subscription made while the pipeline runs, which its producer refused, cancelled or ended
    /// at once: the producer's message and the pipeline's come from two tasks, in either order).
    /// Each is queued behind its subscription once that arrives, rather than dropped, which left
    /// the stage waiting on a subscription that was over.
    early: Vec<(SubscriptionId, Ending)>,
}

/// What a stage received on one subscription, and handled of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceivedCounts {
    pub(crate) received: u64,
    pub(crate) handled: u64,
}

impl<T> Inputs<T> {
    pub(super) fn new(stage: Arc<str>) -> Self {
        Inputs {
            stage,
            subscriptions: BySubscription::new(),
            queue: VecDeque::new(),
            subscribed: 0,
            closed: false,
            awaited: Vec::new(),
            events_in: 0,
            excess: 0,
            ended: Vec::new(),
            left: Vec::new(),
            early: Vec::new(),
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
            Upstream::Ended { sub, reason } => {
                self.queue
                    .push_back(Queued::Ended(sub, Ending::Ended(reason)));
            }
            Upstream::Refused { sub, reason } => {
                self.queue
                    .push_back(Queued::Ended(sub, Ending::Refused(reason)));
            }
            Upstream::Cancelled { sub, replaced_by } => {
                // Not yet subscribed: the pipeline's word of it is on its way.
                let awaited = replaced_by.filter(|&new| self.subscriptions.get(new).is_none());
                self.awaited.extend(awaited);
                self.queue.push_back(Queued::Ended(sub, Ending::Cancelled));
            }
        }
    }

    /// Counts `count` events of `sub` left in the stage's mailbox when it stopped.
    pub(super) fn left(&mut self, sub: SubscriptionId, count: u64) {
        self.left.push((sub, count));
    }

    /// What each subscription, ended or not, brought, and what of it was handled: all it handed
    /// out but what `not_handled` says of each subscription (the batches its callbacks failed on,
    /// and those waiting to be handed again).
    pub(super) fn edges(
        &self,
        not_handled: impl Fn(SubscriptionId) -> u64,
    ) -> Vec<(SubscriptionId, ReceivedCounts)> {
        let mut edges: Vec<(SubscriptionId, ReceivedCounts)> = Vec::new();
        let mut add =
            |sub, received: u64, handed: u64| match edges.iter_mut().find(|(edge, _)| *edge == sub)
            {
                Some((_, counts)) => {
                    counts.received += received;
                    counts.handled += handed;
                }
                None => edges.push((
                    sub,
                    ReceivedCounts {
                        received,
                        handled: handed,
                    },
                )),
            };
        for &(sub, handed) in &self.ended {
            add(sub, handed, handed);
        }
        for (sub, subscription) in self.subscriptions.iter() {
            add(sub, subscription.handed, subscription.handed);
        }
        for queued in &self.queue {
            if let Queued::Events(sub, batches) = queued {
                add(*sub, batches.len() as u64, 0);
            }
        }
        for &(sub, count) in &self.left {
            add(sub, count, 0);
        }
        for (sub, counts) in &mut edges {
            counts.handled = counts.handled.saturating_sub(not_handled(*sub));
        }
        edges
    }

    /// Queues an `info_after_buffered` letter behind the input received so far (GenStage §1.8):
    /// [`next_step`](Self::next_step) gives it back once that input has been handled.
    pub(super) fn queue_info(&mut self, letter: Letter) {
        self.queue.push_back(Queued::Info(letter));
    }

    /// Once per subscription: kept out of [`handle`](Self::handle), which runs once per batch.
    #[cold]
    fn subscribe(&mut self, subscribed: Subscribed) {
        let Subscribed {
            sub,
            producer,
            producer_name,
            limits,
            cancel,
            partition,
            asked,
        } = subscribed;
        // The initial ask of `max_demand`: queued by the pipeline when it wired the stage, so that
        // every consumer has demand before any event flows; or, for a subscription made while the
        // pipeline runs, sent now.
        let mut demand = ConsumerDemand::new(limits);
        demand.initial_ask();
        if !asked {
            drop(producer.ask(sub, limits.max()));
        }
        let subscription = Subscription {
            producer,
            producer_name,
            demand,
            cancel,
            partition,
            handed: 0,
            on_their_way: Arc::default(),
        };
        self.subscriptions.insert(sub, subscription);
        self.subscribed += 1;
        self.awaited.retain(|&awaited| awaited != sub);
        self.queue.push_back(Queued::Subscribed(sub));
        if let Some(at) = self.early.iter().position(|&(early, _)| early == sub) {
            let (_, ending) = self.early.swap_remove(at);
            self.queue.push_back(Queued::Ended(sub, ending));
        }
    }

    /// Events received and not yet handed out.
    pub(super) fn unhandled(&self) -> u64 {
        self.queue
            .iter()
            .map(|queued| match queued {
                Queued::Events(_, batches) => batches.len() as u64,
                Queued::Subscribed(_) | Queued::Ended(..) | Queued::Info(_) => 0,
            })
            .sum()
    }

    /// Nothing received is waiting to be handed out.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Every producer has ended and every event received has been handed out, and no
    /// subscription replacing one of the stage's is on its way; a stage never subscribed is
    /// exhausted only once closed.
    pub(super) fn exhausted(&self) -> bool {
        (self.subscribed > 0 || self.closed)
            && self.subscriptions.is_empty()
            && self.queue.is_empty()
            && self.awaited.is_empty()
    }

    /// The pipeline is shutting down: once its subscriptions have ended, or at once if it has none,
    /// the stage is done.
    pub(super) fn close(&mut self) {
        self.closed = true;
    }

    /// Whether the pipeline is shutting down.
    pub(super) fn is_closed(&self) -> bool {
        self.closed
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
                Queued::Subscribed(sub) => {
                    let sub = *sub;
                    self.queue.pop_front();
                    if let Some(subscription) = self.subscriptions.get(sub) {
                        return Some(Step::Subscribed(subscription.seen_as(sub)));
                    }
                }
                Queued::Events(sub, batches) => {
                    let sub = *sub;
                    let (events, demand) = match self.subscriptions.get_mut(sub) {
                        Some(subscription) => {
                            // A manual subscription's events come in the batches the producer
                            // sent (GenStage does not split them).
                            let size = if subscription.demand.is_manual() {
                                usize::MAX
                            } else {
                                subscription.demand.limits().batch_size()
                            };
                            let Some(events) = batches.next_batch(size) else {
                                self.queue.pop_front();
                                continue;
                            };
                            let demand = subscription.demand.on_batch(events.len());
                            subscription.handed += events.len() as u64;
                            (events, demand)
                        }
                        // Events from a producer that has since gone: one last batch, no ask.
                        None => {
                            let events =
                                std::mem::replace(batches, Batches::new(Vec::new())).into_rest();
                            let demand = BatchDemand { excess: 0, ask: 0 };
                            handed_after_end(&mut self.ended, sub, events.len() as u64);
                            (events, demand)
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
                Queued::Info(_) => {
                    if let Some(Queued::Info(letter)) = self.queue.pop_front() {
                        return Some(Step::Info(letter));
                    }
                }
                Queued::Ended(..) => {
                    let Some(Queued::Ended(sub, reason)) = self.queue.pop_front() else {
                        continue;
                    };
                    let Some(subscription) = self.subscriptions.remove(sub) else {
                        // Not ended yet: not subscribed yet (see `early`).
                        if !self.ended.iter().any(|&(ended, _)| ended == sub) {
                            self.early.push((sub, reason));
                        }
                        continue;
                    };
                    self.ended.push((sub, subscription.handed));
                    let stops = subscription.cancel != CancelMode::Temporary;
                    let (reason, stop) = match reason {
                        Ending::Cancelled => (CancelReason::Cancelled, None),
                        Ending::Ended(EndReason::Finished) => (CancelReason::Finished, None),
                        Ending::Ended(EndReason::Failed(cause)) => (
                            CancelReason::Failed {
                                cause: cause.to_string(),
                            },
                            stops.then_some(Stop::Failed(cause)),
                        ),
                        Ending::Refused(reason) => (
                            CancelReason::Refused {
                                reason: reason.to_string(),
                            },
                            stops.then(|| {
                                Stop::Refused(SubscriptionRefused {
                                    producer: subscription.producer_name.to_string(),
                                    reason: reason.to_string(),
                                })
                            }),
                        ),
                    };
                    return Some(Step::Cancelled {
                        subscription: subscription.seen_as(sub),
                        reason,
                        stop,
                    });
                }
            }
        }
    }

    /// The subscriptions the stage's callbacks have been told of, as they see them: a restarted
    /// stage's new value is told of them again.
    pub(super) fn announced(&self) -> Vec<crate::subscription::Subscription> {
        let pending = |sub| {
            self.queue
                .iter()
                .any(|queued| matches!(queued, Queued::Subscribed(waiting) if *waiting == sub))
        };
        self.subscriptions
            .iter()
            .filter(|&(sub, _)| !pending(sub))
            .map(|(sub, subscription)| subscription.seen_as(sub))
            .collect()
    }

    /// Whether the stage asks for the events of any of its subscriptions itself.
    pub(super) fn has_manual(&self) -> bool {
        self.subscriptions
            .iter()
            .any(|(_, subscription)| subscription.demand.is_manual())
    }

    /// Makes the subscription manual: the stage asks for its events itself.
    pub(super) fn set_manual(&mut self, tag: SubscriptionTag) {
        if let Some(subscription) = self.subscriptions.get_mut(tag.0) {
            subscription.demand.set_manual();
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

/// Counts `count` events handed out on `sub`, which has ended, in `ended`.
#[cold]
fn handed_after_end(ended: &mut Vec<(SubscriptionId, u64)>, sub: SubscriptionId, count: u64) {
    match ended.iter_mut().find(|(done, _)| *done == sub) {
        Some((_, handed)) => *handed += count,
        None => ended.push((sub, count)),
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

impl<T: Send> ManualAsks for Inputs<T> {
    fn ask_manual(&mut self, tag: SubscriptionTag, demand: usize) -> Result<(), AskError> {
        let Some(subscription) = self.subscriptions.get_mut(tag.0) else {
            return Err(AskError::Unknown {
                stage: self.stage.to_string(),
                subscription: tag,
            });
        };
        if !subscription.demand.is_manual() {
            return Err(AskError::Automatic {
                stage: self.stage.to_string(),
                subscription: tag,
            });
        }
        if demand > 0 {
            subscription.demand.ask(demand);
            drop(subscription.producer.ask(tag.0, demand));
        }
        Ok(())
    }

    fn asker_ends(&self, tag: SubscriptionTag) -> Option<AskerEnds> {
        self.subscriptions.get(tag.0).map(|subscription| AskerEnds {
            on_their_way: Arc::clone(&subscription.on_their_way),
            producer: Arc::clone(&subscription.producer) as Arc<dyn CancelAtProducer>,
        })
    }

    fn producer_of(&self, tag: SubscriptionTag) -> Option<Arc<dyn CancelAtProducer>> {
        self.subscriptions
            .get(tag.0)
            .map(|subscription| Arc::clone(&subscription.producer) as Arc<dyn CancelAtProducer>)
    }
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

    impl CancelAtProducer for Asks {
        fn cancel(&self, _: SubscriptionId) {}
    }

    fn subscribed(sub: SubscriptionId, producer: &Arc<Asks>, cancel: CancelMode) -> Upstream<u32> {
        Upstream::Subscribed(Box::new(Subscribed {
            sub,
            producer: producer.clone(),
            producer_name: Arc::from("p"),
            limits: DemandLimits::new(10, 5).unwrap(),
            cancel,
            partition: None,
            asked: true,
        }))
    }

    fn events(sub: SubscriptionId, events: std::ops::Range<u32>) -> Upstream<u32> {
        Upstream::Events {
            sub,
            events: events.collect(),
        }
    }

    /// Hands out the next batch and sends its ask, as a stage loop does, past subscriptions
    /// announced.
    fn handle(inputs: &mut Inputs<u32>) -> Option<(SubscriptionId, Vec<u32>)> {
        loop {
            match inputs.next_step(true)? {
                Step::Subscribed(_) => {}
                Step::Handle {
                    sub,
                    events,
                    demand,
                } => {
                    drop(inputs.ask(sub, demand));
                    return Some((sub, events));
                }
                Step::Cancelled { subscription, .. } => {
                    panic!("unexpected end of {subscription:?}")
                }
                Step::Info(_) => panic!("unexpected info"),
            }
        }
    }

    /// The next end of a subscription: its tag, why, and whether the stage must stop.
    fn cancelled(
        inputs: &mut Inputs<u32>,
    ) -> Option<(SubscriptionId, CancelReason, Option<String>)> {
        match inputs.next_step(true)? {
            Step::Cancelled {
                subscription,
                reason,
                stop,
            } => Some((
                subscription.tag().0,
                reason,
                stop.map(|stop| match stop {
                    Stop::Failed(cause) => cause.to_string(),
                    Stop::Refused(refused) => refused.to_string(),
                }),
            )),
            _ => panic!("expected the end of a subscription"),
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
        let failed = CancelReason::Failed {
            cause: "p".to_owned(),
        };
        assert_eq!(
            cancelled(&mut inputs),
            Some((1, failed, Some("p".to_owned()))),
            "a permanent subscription stops the stage"
        );
    }

    /// `p`'s refusal of `sub` ("one at a time"), as the producer tells it.
    fn refusal(sub: SubscriptionId) -> Upstream<u32> {
        Upstream::Refused {
            sub,
            reason: Arc::from("one at a time"),
        }
    }

    /// The end step of `sub` after [`refusal`]: why, and what the stage stops with if it stops.
    fn refused_step(
        sub: SubscriptionId,
        stops: bool,
    ) -> (SubscriptionId, CancelReason, Option<String>) {
        let reason = CancelReason::Refused {
            reason: "one at a time".to_owned(),
        };
        let error = "its subscription to `p` was refused by that stage's dispatcher: one at a time";
        (sub, reason, stops.then(|| error.to_owned()))
    }

    #[test]
    fn a_refused_subscription_stops_the_stage_with_the_refusal_unless_it_is_temporary() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        inputs.handle(subscribed(2, &producer, CancelMode::Temporary));
        inputs.handle(refusal(1));
        inputs.handle(refusal(2));
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        assert_eq!(cancelled(&mut inputs), Some(refused_step(1, true)));
        assert_eq!(cancelled(&mut inputs), Some(refused_step(2, false)));
    }

    #[test]
    fn an_end_told_before_its_subscription_arrived_waits_for_it() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("c"));
        // The producer's refusal overtook the pipeline's word of the subscription.
        inputs.handle(refusal(1));
        assert!(inputs.next_step(true).is_none());
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        assert_eq!(cancelled(&mut inputs), Some(refused_step(1, true)));
        // So did a finish.
        inputs.handle(Upstream::Ended {
            sub: 2,
            reason: EndReason::Finished,
        });
        assert!(inputs.next_step(true).is_none());
        inputs.handle(subscribed(2, &producer, CancelMode::Permanent));
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        assert_eq!(
            cancelled(&mut inputs),
            Some((2, CancelReason::Finished, None))
        );
        assert!(inputs.exhausted());
        // An end told again for a subscription already over is dropped, not kept.
        inputs.handle(Upstream::Cancelled {
            sub: 1,
            replaced_by: None,
        });
        assert!(inputs.next_step(true).is_none());
        assert!(inputs.early.is_empty());
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
        // The two subscriptions are announced first.
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        let failed = CancelReason::Failed {
            cause: "p".to_owned(),
        };
        assert_eq!(cancelled(&mut inputs), Some((1, failed, None)));
        assert_eq!(handle(&mut inputs), Some((2, vec![0, 1])));
        assert!(!inputs.exhausted());
        inputs.handle(Upstream::Ended {
            sub: 2,
            reason: EndReason::Finished,
        });
        assert_eq!(
            cancelled(&mut inputs),
            Some((2, CancelReason::Finished, None))
        );
        assert!(inputs.exhausted());
    }

    /// A resubscribe to the same producer: the producer, cancelling the old subscription as it
    /// takes the new one in, may tell the stage before the pipeline's word of the new one has
    /// reached it (each comes from another task). The stage, left with no subscription then, is
    /// not done: the new one is on its way. (Found by tests/probe_open.rs: a resubscribed
    /// consumer finished, about once in a thousand resubscribes on four threads.)
    #[test]
    fn a_stage_whose_subscription_was_replaced_waits_for_the_new_one() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        inputs.handle(Upstream::Cancelled {
            sub: 1,
            replaced_by: Some(2),
        });
        assert_eq!(
            cancelled(&mut inputs),
            Some((1, CancelReason::Cancelled, None))
        );
        assert!(!inputs.exhausted(), "subscription 2 is on its way");
        inputs.handle(subscribed(2, &producer, CancelMode::Permanent));
        assert!(matches!(inputs.next_step(true), Some(Step::Subscribed(_))));
        assert!(!inputs.exhausted());
        inputs.handle(Upstream::Cancelled {
            sub: 2,
            replaced_by: None,
        });
        assert_eq!(
            cancelled(&mut inputs),
            Some((2, CancelReason::Cancelled, None))
        );
        assert!(inputs.exhausted());

        // Told of the new subscription first, as it usually is: nothing is awaited.
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        inputs.handle(subscribed(2, &producer, CancelMode::Permanent));
        inputs.handle(Upstream::Cancelled {
            sub: 1,
            replaced_by: Some(2),
        });
        inputs.handle(Upstream::Cancelled {
            sub: 2,
            replaced_by: None,
        });
        while inputs.next_step(true).is_some() {}
        assert!(inputs.exhausted());
    }

    #[test]
    fn a_producer_consumer_without_downstream_demand_holds_its_input() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("pc"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        inputs.handle(events(1, 0..4));
        // The subscription is announced whatever the demand; its events wait for demand.
        assert!(matches!(inputs.next_step(false), Some(Step::Subscribed(_))));
        assert!(inputs.next_step(false).is_none());
        assert_eq!(inputs.unhandled(), 4);
        assert!(producer.0.lock().unwrap().is_empty());
    }

    #[test]
    fn a_manual_subscription_gets_whole_messages_and_asks_only_when_told() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        match inputs.next_step(true) {
            Some(Step::Subscribed(subscription)) => {
                assert_eq!(subscription.producer(), "p");
                assert_eq!(
                    (subscription.max_demand(), subscription.min_demand()),
                    (10, 5)
                );
                inputs.set_manual(subscription.tag());
            }
            _ => panic!("the subscription is announced first"),
        }
        inputs.handle(events(1, 0..8));
        // GenStage does not cut a manual subscription's events into batches, nor ask after them.
        assert_eq!(handle(&mut inputs), Some((1, (0..8).collect())));
        assert!(producer.0.lock().unwrap().is_empty());
        assert_eq!(inputs.ask_manual(SubscriptionTag(1), 6), Ok(()));
        assert_eq!(inputs.ask_manual(SubscriptionTag(1), 0), Ok(()));
        assert_eq!(*producer.0.lock().unwrap(), [(1, 6)]);
        assert_eq!(
            inputs.ask_manual(SubscriptionTag(9), 1),
            Err(AskError::Unknown {
                stage: "c".to_owned(),
                subscription: SubscriptionTag(9)
            })
        );
    }

    /// `Context::asker` finds both ends of an `Asker` in one lookup: the subscription's own
    /// producer and its own count of asks on their way, shared with every `Asker` of it.
    #[test]
    fn an_askers_ends_are_those_of_its_subscription() {
        let (first, second) = (Arc::new(Asks::default()), Arc::new(Asks::default()));
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &first, CancelMode::Permanent));
        inputs.handle(subscribed(2, &second, CancelMode::Permanent));
        while let Some(Step::Subscribed(_)) = inputs.next_step(true) {}
        let address = |producer: &Arc<dyn CancelAtProducer>| Arc::as_ptr(producer).cast::<()>();
        let ends = inputs.asker_ends(SubscriptionTag(1)).unwrap();
        assert_eq!(address(&ends.producer), Arc::as_ptr(&first).cast::<()>());
        ends.on_their_way.store(3, Ordering::Relaxed);
        let again = inputs.asker_ends(SubscriptionTag(1)).unwrap();
        assert_eq!(again.on_their_way.load(Ordering::Relaxed), 3);
        let other = inputs.asker_ends(SubscriptionTag(2)).unwrap();
        assert_eq!(address(&other.producer), Arc::as_ptr(&second).cast::<()>());
        assert_eq!(other.on_their_way.load(Ordering::Relaxed), 0);
        assert!(inputs.asker_ends(SubscriptionTag(9)).is_none());
    }

    #[test]
    fn an_automatic_subscription_cannot_be_asked_on() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("c"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        assert_eq!(
            inputs.ask_manual(SubscriptionTag(1), 1),
            Err(AskError::Automatic {
                stage: "c".to_owned(),
                subscription: SubscriptionTag(1)
            })
        );
    }

    /// A stage that takes infos of `u8`, for letters.
    struct Infos;

    impl crate::messages::HandleInfo<u8> for Infos {
        type Emitted = ();
        async fn handle_info(
            &mut self,
            _: u8,
            _: &mut crate::messages::Context<'_, Self>,
        ) -> crate::stage::StageResult<()> {
            Ok(())
        }
    }

    // A subscription made while the pipeline runs: the consumer sends its initial ask itself, when it
    // takes the subscription in (one that has finished never does).
    #[test]
    fn a_subscription_not_asked_for_sends_its_initial_ask() {
        let producer = Arc::new(Asks::default());
        let mut inputs: Inputs<u32> = Inputs::new(Arc::from("c"));
        let Upstream::Subscribed(mut running) = subscribed(1, &producer, CancelMode::Permanent)
        else {
            unreachable!()
        };
        running.asked = false;
        inputs.handle(Upstream::Subscribed(running));
        // Asked for when the pipeline was wired: nothing to send.
        inputs.handle(subscribed(2, &producer, CancelMode::Permanent));
        assert_eq!(*producer.0.lock().unwrap(), [(1, 10)]);
    }

    fn info() -> Letter {
        crate::messages::after_buffered(crate::messages::typed_info_letter::<
            Infos,
            u8,
            std::convert::Infallible,
        >(0))
    }

    // Scenario 34 (§1.8): an info that reached a producer_consumer with input queued waits behind
    // that input, also while the input waits for downstream demand.
    #[test]
    fn an_info_waits_behind_the_input_queued_before_it() {
        let producer = Arc::new(Asks::default());
        let mut inputs = Inputs::new(Arc::from("pc"));
        inputs.handle(subscribed(1, &producer, CancelMode::Permanent));
        inputs.handle(events(1, 0..10));
        inputs.queue_info(info());
        inputs.handle(events(1, 10..12));
        assert!(matches!(inputs.next_step(false), Some(Step::Subscribed(_))));
        assert!(inputs.next_step(false).is_none(), "no downstream demand");
        assert!(!inputs.exhausted());
        assert_eq!(inputs.unhandled(), 12, "an info is not an event");
        // Demand: the events in front of the info go first, in batches of 5, then the info.
        for batch in [0..5, 5..10] {
            assert!(matches!(
                inputs.next_step(true),
                Some(Step::Handle { events, .. }) if events == batch.collect::<Vec<_>>()
            ));
        }
        match inputs.next_step(true) {
            Some(Step::Info(letter)) => assert!(letter.is_after_buffered()),
            _ => panic!("the info is next"),
        }
        assert_eq!(handle(&mut inputs), Some((1, vec![10, 11])));
        assert!(inputs.is_idle());
    }
}
