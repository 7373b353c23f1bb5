//! The producer side of a stage task: the [`EventPath`] and the consumers' mailboxes it sends to.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::dispatcher::{Dispatcher, SubscriptionId};
use crate::error::StageError;
use crate::event_path::{Emitted, EventPath, Failure, Interrupted, Route};
use crate::mailbox::{DeferredWake, OwnWake};
use crate::messages::{CancelPort, Letter};
use crate::options::{ProducerOptions, WithoutConsumers};
use crate::protocol::{Downstream, EndReason, EventSink, NewConsumer};
use crate::report::{Discard, DiscardReason, Loss, LossReason};
use crate::subscription::{CancelReason, Subscriber, SubscriptionTag};

use super::by_subscription::BySubscription;

/// A consumer of this stage: where its events go, and how the stage's callbacks see it.
struct Outlet<T> {
    sink: Box<dyn EventSink<T>>,
    seen_as: Subscriber,
    /// Its task has ended (a send failed): nothing more goes to it, and it is forgotten once the
    /// pipeline says why it ended.
    gone: bool,
    /// What went to it, for the report's edge.
    counts: SentCounts,
}

/// What a producer sent one subscription: delivered, and lost (sent to its consumer once gone).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentCounts {
    pub(crate) sent: u64,
    pub(crate) lost: u64,
}

/// What the stage's producer-side callbacks are to be told, in the order it happened.
pub(super) enum ConsumerNotice {
    /// `handle_consumer_subscribe`.
    Subscribed(Subscriber),
    /// `handle_consumer_cancel`.
    Cancelled(Subscriber, CancelReason),
}

pub(super) struct Outputs<T> {
    stage: Arc<str>,
    /// Its infos are `info_after_buffered` letters (see [`place_info`](Self::place_info)).
    path: EventPath<T, Letter>,
    consumers: BySubscription<Outlet<T>>,
    /// Subscriptions begun and ended since the stage's loop last told its callbacks.
    notices: VecDeque<ConsumerNotice>,
    /// A wake-up owed to this stage's producer while [`emit_handing_off`](Self::emit_handing_off)
    /// runs, for the first consumer it wakes to take, or to a consumer a broadcast sent a copy to,
    /// for the next one (see [`flush`](Self::flush) and [`crate::mailbox`]).
    hand_off: DeferredWake,
    /// The path's copies as of the last [`flush`](Self::flush): more now means its deliveries hold
    /// copies of the same events.
    copies_flushed: u64,
    /// Whether any consumer ever subscribed: a producer whose consumers have all left stops,
    /// unless it `waits`.
    had_consumers: bool,
    /// It stays up while it has no consumer ([`WithoutConsumers::Wait`]).
    waits: bool,
    /// What went to the subscriptions that have ended, for the report's edges.
    ended: Vec<(SubscriptionId, SentCounts)>,
    /// Consumers a send found gone, to leave the dispatcher once the deliveries in hand are out
    /// (see [`flush`](Self::flush)).
    leaving: Vec<SubscriptionId>,
    /// Where it tells the pipeline of the subscriptions its dispatcher refused.
    refusals: CancelPort,
    /// The stage's partition function routes its events.
    routed: bool,
}

impl<T: Send + 'static> Outputs<T> {
    pub(super) fn new(
        stage: Arc<str>,
        dispatcher: Box<dyn Dispatcher<T>>,
        options: ProducerOptions,
        routed: bool,
        refusals: CancelPort,
    ) -> Self {
        Outputs {
            stage,
            path: EventPath::new(dispatcher, options).routed_by_stage(routed),
            routed,
            consumers: BySubscription::new(),
            notices: VecDeque::new(),
            hand_off: DeferredWake::default(),
            copies_flushed: 0,
            had_consumers: false,
            waits: options.without_consumers == WithoutConsumers::Wait,
            ended: Vec::new(),
            leaving: Vec::new(),
            refusals,
        }
    }

    /// Takes in a message from downstream, and sends what it makes possible.
    pub(super) fn handle(&mut self, mail: Downstream<T>) {
        match mail {
            Downstream::Subscribe(consumer) => self.subscribe(*consumer),
            Downstream::Ask { sub, demand } => self.path.ask(sub, demand),
            Downstream::Ended { sub, reason } => {
                let reason = match *reason {
                    EndReason::Finished => CancelReason::Finished,
                    EndReason::Failed(cause) => CancelReason::Failed {
                        cause: cause.to_string(),
                    },
                };
                self.cancel(sub, reason);
            }
            Downstream::Cancel { sub } => self.cancel(sub, CancelReason::Cancelled),
        }
        self.flush();
    }

    #[cold]
    fn subscribe(&mut self, consumer: NewConsumer<T>) {
        let NewConsumer {
            sub,
            consumer,
            consumer_name,
            limits,
            options,
            replacing,
        } = consumer;
        // A resubscribe to this producer: the old subscription ends first, as GenStage cancels the
        // old reference first, so that the partition it took is free for the new one. Both in this
        // one step: the producer is never left without a consumer in between, and sends nothing
        // before the new one is in (a broadcast's other consumers would get events it never does).
        let left = replacing.filter(|&old| self.leave(old, CancelReason::Cancelled, Some(sub)));
        let subscribed = match left {
            Some(old) => self.path.replace(old, sub, &options),
            None => self.path.subscribe(sub, &options),
        };
        if let Err(error) = subscribed {
            // The pipeline is told first, so that whoever learns of the refusal from the consumer
            // finds the subscription ended, not holding the consumer's place; then the consumer,
            // so that it does not wait for events that will never come.
            self.refusals.refused(SubscriptionTag(sub));
            tracing::error!(
                stage = %self.stage,
                consumer = %consumer_name,
                "subscription {sub} refused: {error}"
            );
            consumer.refused(sub, Arc::from(error.to_string()));
            return;
        }
        let seen_as = Subscriber {
            tag: SubscriptionTag(sub),
            consumer: consumer_name.to_string(),
            max_demand: limits.max(),
            min_demand: limits.min(),
            partition: options.partition,
        };
        self.notices
            .push_back(ConsumerNotice::Subscribed(seen_as.clone()));
        self.consumers.insert(
            sub,
            Outlet {
                sink: consumer,
                seen_as,
                gone: false,
                counts: SentCounts::default(),
            },
        );
        self.had_consumers = true;
    }

    /// Ends the subscription `sub`: its consumer has ended, or (`CancelReason::Cancelled`) the
    /// subscription is cancelled, which the consumer is told of.
    #[cold]
    fn cancel(&mut self, sub: SubscriptionId, reason: CancelReason) {
        if self.leave(sub, reason, None) {
            self.path.cancel(sub);
        }
    }

    /// [`cancel`](Self::cancel) but for the event path; says whether the dispatcher is still to
    /// be told that `sub` left (it had not been, as a consumer found gone is). `replaced_by`: the
    /// subscription of a resubscribe that replaces it, which its consumer is told of.
    #[cold]
    fn leave(
        &mut self,
        sub: SubscriptionId,
        reason: CancelReason,
        replaced_by: Option<SubscriptionId>,
    ) -> bool {
        let Some(outlet) = self.consumers.remove(sub) else {
            return false;
        };
        self.ended.push((sub, outlet.counts));
        if reason == CancelReason::Cancelled {
            outlet.sink.cancelled(sub, replaced_by);
        }
        self.notices
            .push_back(ConsumerNotice::Cancelled(outlet.seen_as, reason));
        !outlet.gone
    }

    /// Tells a restarted stage's new value of every consumer it has: what the old value was to be
    /// told is forgotten (it knew consumers the new one never will, and the new one is told of
    /// every consumer there is).
    pub(super) fn announce_again(&mut self) {
        self.notices.clear();
        for (_, outlet) in self.consumers.iter() {
            self.notices
                .push_back(ConsumerNotice::Subscribed(outlet.seen_as.clone()));
        }
    }

    /// Whether the stage, a producer, offers its consumers its own wake-up as it emits
    /// ([`emit_offering`](Self::emit_offering)), and waits for their turn: when each emit goes to
    /// all of them at once, split by its partition function or copied by a broadcast (see
    /// [`crate::mailbox`]).
    #[inline]
    pub(super) fn offers_own_wake(&self) -> bool {
        self.routed || self.path.broadcasts()
    }

    /// Whether a subscription has begun or ended that the stage's callbacks have not been told of.
    #[inline]
    pub(super) fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// The next subscription begun or ended that the stage's callbacks have not been told of.
    #[inline]
    pub(super) fn next_notice(&mut self) -> Option<ConsumerNotice> {
        self.notices.pop_front()
    }

    /// Like [`emit`](Self::emit), and hands `producer`, a wake-up owed to this stage's producer, to
    /// the first consumer the events wake and that takes it; gives it when none does.
    pub(super) fn emit_handing_off(
        &mut self,
        events: Vec<T>,
        producer: DeferredWake,
        route: Route<'_, T>,
    ) {
        drop(self.emit_with(events, producer, false, route));
    }

    /// Like [`emit`](Self::emit), for a producer that offers its own wake-up
    /// ([`offers_own_wake`](Self::offers_own_wake)): offers `own` to the consumers the events wake
    /// (see [`crate::mailbox`]). When one took it, and the producer is to wait for it, returns the
    /// wake-up of the consumer to run first, not given yet: the producer holds it until its poll
    /// ends ([`Receiver::await_hand_off`](crate::mailbox::Receiver::await_hand_off)).
    pub(super) fn emit_offering(
        &mut self,
        events: Vec<T>,
        own: &OwnWake,
        route: Route<'_, T>,
    ) -> Option<DeferredWake> {
        let mut left = self.emit_with(events, own.offer(), true, route);
        own.taken(&mut left).then_some(left)
    }

    /// Sends `events` as [`emit`](Self::emit) does, with `hand_off` going to the consumers they
    /// wake; returns what is left of it, not given yet. When `defer_last`, the last consumer woken
    /// is not woken yet either: its wake-up is what is left.
    #[inline]
    fn emit_with(
        &mut self,
        events: Vec<T>,
        hand_off: DeferredWake,
        defer_last: bool,
        route: Route<'_, T>,
    ) -> DeferredWake {
        self.hand_off = hand_off;
        self.send_emitted(events, route);
        self.deliver_all(defer_last);
        std::mem::take(&mut self.hand_off)
    }

    /// Sends `events` to consumers with demand and buffers the rest; `route` is the stage's
    /// partition function, if its dispatcher partitions.
    #[inline]
    pub(super) fn emit(&mut self, events: Vec<T>, route: Route<'_, T>) {
        self.send_emitted(events, route);
        self.flush();
    }

    /// Dispatches `events`, sending a batch that one consumer takes whole; the deliveries of any
    /// other dispatch wait in the event path for [`deliver_all`](Self::deliver_all).
    #[inline]
    fn send_emitted(&mut self, events: Vec<T>, route: Route<'_, T>) {
        match self.path.emit(events, route) {
            Emitted::Whole(sub, events) => self.deliver(sub, events, false),
            Emitted::Dispatched { discarded } => {
                if discarded > 0 {
                    warn_discarded(&self.stage, discarded);
                }
            }
        }
    }

    /// Emitted events while the producer accumulates demand: all to the buffer, none dispatched.
    pub(super) fn hold(&mut self, events: Vec<T>) {
        let discarded = self.path.hold(events);
        if discarded > 0 {
            warn_discarded(&self.stage, discarded);
        }
    }

    /// Holds the event path (nothing is dispatched) or releases it, sending what the consumers can
    /// take now (see [`EventPath::set_held`]).
    pub(super) fn set_held(&mut self, held: bool) {
        self.path.set_held(held);
        self.flush();
    }

    /// Replays an ask the consumer of `sub` made while the producer accumulated: gives it to the
    /// dispatcher, which serves it from the buffer first, and returns what is left of it for
    /// `handle_demand`, but no more than the consumers can take now (a broadcast's consumer asks
    /// for what all of them must ask for); 0 when the consumer has left.
    pub(super) fn replay(&mut self, sub: SubscriptionId, demand: usize) -> usize {
        if self.consumers.get(sub).is_none_or(|outlet| outlet.gone) {
            return 0;
        }
        let buffered = self.path.buffered();
        self.handle(Downstream::Ask { sub, demand });
        let served = buffered.saturating_sub(self.path.buffered());
        demand.saturating_sub(served).min(self.path.demand())
    }

    /// Whether buffered events wait for the stage's partition function (an ask came while a
    /// callback ran): [`settle`](Self::settle) them between callbacks.
    #[inline]
    pub(super) fn unsettled(&self) -> bool {
        self.path.unsettled()
    }

    /// Dispatches and sends the events that waited for the partition function.
    pub(super) fn settle(&mut self, route: Route<'_, T>) {
        self.path.settle(route);
        self.flush();
    }

    /// Why the dispatcher could not dispatch, if it could not, or how it broke its contract: the
    /// stage fails with it.
    pub(super) fn failure(&self) -> Option<StageError> {
        self.path.failure().map(Failure::to_stage_error)
    }

    /// The events lost to a dispatcher that broke its contract, if any.
    pub(super) fn broken(&self) -> Option<Loss> {
        (self.path.broken > 0).then_some(Loss {
            count: self.path.broken,
            reason: LossReason::BrokenDispatcher,
        })
    }

    /// What a producer should emit now (see [`EventPath::demand`]).
    pub(super) fn demand(&self) -> usize {
        self.path.demand()
    }

    /// How many more events the consumers can take now.
    pub(super) fn capacity(&self) -> usize {
        self.path.capacity()
    }

    /// Events emitted and not yet sent: in the buffer, or kept by the dispatcher for a consumer.
    pub(super) fn buffered(&self) -> usize {
        self.path.buffered() + self.path.held_by_dispatcher()
    }

    /// What `estimate_buffered_count` answers: [`buffered`](Self::buffered), and the events kept for
    /// partitions that have no consumer, which a stage that stops now loses with its buffer (they
    /// do not hold it back from ending, as `buffered` does).
    pub(super) fn buffered_count(&self) -> usize {
        self.buffered() + self.path.stranded_by_dispatcher()
    }

    pub(super) fn emitted(&self) -> u64 {
        self.path.emitted
    }

    pub(super) fn discarded(&self) -> u64 {
        self.path.discarded
    }

    /// Why it discarded what it did, one entry per reason.
    pub(super) fn discards(&self) -> Vec<Discard> {
        [
            (
                self.path.discarded - self.path.unrouted,
                DiscardReason::BufferFull,
            ),
            (self.path.unrouted, DiscardReason::Unrouted),
        ]
        .into_iter()
        .filter(|&(count, _)| count > 0)
        .map(|(count, reason)| Discard { count, reason })
        .collect()
    }

    /// Copies of events sent to more than one consumer, beyond the first.
    pub(super) fn copies(&self) -> u64 {
        self.path.copies
    }

    /// Whether every consumer that ever subscribed has left, and the stage stops for it (it does
    /// not wait for consumers).
    pub(super) fn abandoned(&self) -> bool {
        !self.waits && self.had_consumers && self.consumers.is_empty()
    }

    /// Whether the stage has no consumer to deliver to, and none that a shutdown would wait for:
    /// it waits for consumers and has none now, or none ever subscribed to it (a stage added to
    /// the running pipeline). Shutting down, it ends at once, what it holds counted lost.
    pub(super) fn alone(&self) -> bool {
        self.consumers.is_empty() && (self.waits || !self.had_consumers)
    }

    /// Places an `info_after_buffered` letter behind the events buffered now, and gives back any
    /// other letter, to open now. The info is released once those events have been dispatched
    /// (see [`move_released`](Self::move_released)).
    pub(super) fn place_info(&mut self, letter: Letter) -> Option<Letter> {
        match letter.into_after_buffered() {
            Ok(info) => {
                self.path.info(info);
                None
            }
            Err(letter) => Some(letter),
        }
    }

    /// Whether infos placed behind the buffer have been released and wait to be moved.
    pub(super) fn has_released(&self) -> bool {
        self.path.has_released()
    }

    /// Moves the infos released (the events in front of them are sent) to the back of `letters`,
    /// in order, to be opened as any letter.
    pub(super) fn move_released(&mut self, letters: &mut VecDeque<Letter>) {
        if self.path.has_released() {
            letters.extend(self.path.take_released());
        }
    }

    /// The events of a dispatch that a panic in the stage's selector or partition function
    /// interrupted, counted once (see [`EventPath::take_interrupted`]).
    pub(super) fn take_interrupted(&mut self) -> Interrupted {
        let interrupted = self.path.take_interrupted();
        if interrupted.events > 0 {
            // What the dispatches before the interrupted one (of the same emit, or drain of the
            // buffer) put in the deliveries goes out now: a stage that stops for good sends
            // nothing more, and they would be neither sent nor counted lost. (Consumers found gone
            // leave the dispatcher at the next flush, in the restarted stage's loop: the drain that
            // may follow runs its selector or partition function.)
            self.deliver_ready(false);
        }
        // A wake-up the interrupted emit held for the stage's producer, or that those deliveries
        // left, is given now.
        drop(std::mem::take(&mut self.hand_off));
        interrupted
    }

    /// Takes back `count` events from those emitted (see [`EventPath::retract`]).
    pub(super) fn retract(&mut self, count: u64) {
        self.path.retract(count);
    }

    /// Drops what is still buffered when the stage stops early; returns how many events that was.
    pub(super) fn abandon_buffer(&mut self) -> u64 {
        self.path.clear_buffer() as u64
    }

    /// Sends every delivery the event path has ready.
    ///
    /// Copies of the same events (a broadcast) and the parts of a batch that the stage's partition
    /// function split go out chained: each quick consumer's wake-up goes with the next batch sent,
    /// so that the consumers run one after the other on this worker rather than each woken one
    /// moving to another (see [`crate::mailbox`]'s hand-offs). A broadcast emits again only once
    /// every consumer has asked, and a partition's consumers read what the producer has just
    /// written here: they gain nothing from running side by side, and each move costs a worker's
    /// wake-up and the events' cache lines. Other deliveries go to consumers whose asks each let
    /// the producer go on: those are woken at once, for another worker to take.
    #[inline]
    fn flush(&mut self) {
        self.deliver_all(false);
        // A wake-up the last consumer did not take (it was not parked, or has gone) is given now.
        drop(std::mem::take(&mut self.hand_off));
    }

    /// Sends every delivery ready, and those that consumers found gone make ready; `defer_last` as
    /// in [`emit_with`](Self::emit_with).
    #[inline]
    fn deliver_all(&mut self, defer_last: bool) {
        loop {
            self.deliver_ready(defer_last);
            // A consumer a send found gone leaves the dispatcher once the deliveries in hand are
            // out, which may make more deliveries ready: a selector or partition function that
            // panics in that drain loses its dispatch only, not the deliveries in hand.
            let Some(sub) = self.leaving.pop() else {
                break;
            };
            self.path.cancel(sub);
        }
    }

    /// Sends the deliveries the event path has ready (see [`flush`](Self::flush)); when
    /// `defer_last` and they are chained (a stage that routes, or a broadcast's copies), the last
    /// is chained too, its consumer's wake-up left in `hand_off`.
    #[inline]
    fn deliver_ready(&mut self, defer_last: bool) {
        let chained = self.routed
            || self.path.copies > std::mem::replace(&mut self.copies_flushed, self.path.copies);
        while self.path.has_deliveries() {
            let mut deliveries = self.path.take_deliveries();
            let last = deliveries.len().saturating_sub(1);
            for (i, (sub, batch)) in deliveries.drain(..).enumerate() {
                self.deliver(sub, batch, chained && (i < last || defer_last));
            }
            // The allocation goes back for the next round.
            self.path.recycle(deliveries);
        }
    }

    /// Sends one batch to the consumer of `sub`; when `chained`, the consumer's wake-up goes with
    /// the next one sent, if both are quick.
    #[inline]
    fn deliver(&mut self, sub: SubscriptionId, batch: Vec<T>, chained: bool) {
        let len = batch.len() as u64;
        if let Some(outlet) = self.consumers.get_mut(sub) {
            if !outlet.gone {
                match outlet.sink.send(sub, batch, &mut self.hand_off, chained) {
                    Ok(()) => outlet.counts.sent += len,
                    // The consumer's task has ended: the events are lost with it, as in GenStage.
                    // Its demand goes too, and what it frees is delivered by the flush's next
                    // round; the stage's callback hears of it when the pipeline says why it ended.
                    Err(_) => self.consumer_gone(sub, len),
                }
                return;
            }
        }
        self.lost_to_gone(sub, len);
    }

    /// The consumer of `sub` has stopped: the `len` events just sent are lost, and so is its demand.
    #[cold]
    fn consumer_gone(&mut self, sub: SubscriptionId, len: u64) {
        if let Some(outlet) = self.consumers.get_mut(sub) {
            outlet.gone = true;
        }
        // It leaves the dispatcher once the deliveries in hand are out (see `flush`).
        self.leaving.push(sub);
        self.lost_to_gone(sub, len);
    }

    /// Counts `len` events sent to the consumer of `sub`, stopped, as lost. A subscription the
    /// stage never had is the dispatcher's breach of its contract, and fails the stage.
    #[cold]
    fn lost_to_gone(&mut self, sub: SubscriptionId, len: u64) {
        if let Some(outlet) = self.consumers.get_mut(sub) {
            outlet.counts.lost += len;
            return;
        }
        match self.ended.iter_mut().find(|(ended, _)| *ended == sub) {
            Some((_, counts)) => counts.lost += len,
            None => self.path.unknown_subscription(sub, len as usize),
        }
    }

    /// The counts of every subscription, ended or not.
    fn all_counts(&self) -> impl Iterator<Item = &SentCounts> {
        self.ended
            .iter()
            .map(|(_, counts)| counts)
            .chain(self.consumers.iter().map(|(_, outlet)| &outlet.counts))
    }

    /// Events delivered to consumers.
    pub(super) fn events_out(&self) -> u64 {
        self.all_counts().map(|counts| counts.sent).sum()
    }

    /// Events sent to consumers that had stopped.
    pub(super) fn lost_to_gone_consumers(&self) -> u64 {
        self.all_counts().map(|counts| counts.lost).sum()
    }

    /// What went to each subscription, ended or not, for the report's edges.
    pub(super) fn edges(&self) -> Vec<(SubscriptionId, SentCounts)> {
        let mut edges = self.ended.clone();
        edges.extend(
            self.consumers
                .iter()
                .map(|(sub, outlet)| (sub, outlet.counts)),
        );
        edges
    }
}

/// Logs a buffer overflow, as GenStage does, out of the hot path.
#[cold]
fn warn_discarded(stage: &str, discarded: usize) {
    tracing::warn!(
        stage,
        discarded,
        "GenStage producer {stage} has discarded {discarded} events from buffer"
    );
}
