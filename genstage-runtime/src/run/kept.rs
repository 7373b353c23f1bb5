//! What a consumer's or producer_consumer's loop keeps across restarts of its stage: the batch its
//! callback holds (lost or handed again when the callback fails), the messages not yet opened, the
//! events waiting to be handed again, and the batches lost to failures.

use std::collections::VecDeque;

use crate::demand::BatchDemand;
use crate::dispatcher::SubscriptionId;
use crate::messages::Letter;
use crate::restart::CopyBatch;

use super::inputs::Inputs;
use super::restarts::Redelivery;

/// The batch a stage's callback holds, while it holds one.
pub(super) struct InHand<T> {
    /// Events handed to the callback that has not returned them yet: when the stage stops, the
    /// batch its callback failed or panicked on.
    pub(super) batch: u64,
    /// Whether that callback was dropped because the stage had to stop, rather than failed.
    pub(super) interrupted: bool,
    /// The subscription the batch came on.
    sub: Option<SubscriptionId>,
    /// The ask the batch earns once handled: a restart makes it for the failed value.
    ask: Option<BatchDemand>,
    /// A copy of the batch, when the stage redelivers.
    copy: Option<Vec<T>>,
    /// How to copy a batch, when the stage redelivers.
    copier: Option<CopyBatch<T>>,
    /// The index of the event, when the batch is one event handed again.
    redelivered: Option<usize>,
}

impl<T> InHand<T> {
    /// Nothing in hand; each batch copied by `copier`, when the stage redelivers.
    pub(super) fn new(copier: Option<CopyBatch<T>>) -> Self {
        InHand {
            batch: 0,
            interrupted: false,
            sub: None,
            ask: None,
            copy: None,
            copier,
            redelivered: None,
        }
    }

    /// The callback takes `events`, which came on `sub`: a batch that earns `ask`, or
    /// (`redelivered`) one event handed again; kept for redelivery, when the stage redelivers.
    #[inline]
    pub(super) fn take(
        &mut self,
        events: &[T],
        sub: SubscriptionId,
        ask: Option<BatchDemand>,
        redelivered: Option<usize>,
    ) {
        self.batch = events.len() as u64;
        self.sub = Some(sub);
        self.ask = ask;
        self.redelivered = redelivered;
        if let Some(copier) = self.copier {
            self.copy = Some(copier(events));
        }
    }

    /// The ask the batch earns is made: a restart is not to make it again.
    #[inline]
    pub(super) fn asked(&mut self) {
        self.ask = None;
    }

    /// The batch is handled (a producer_consumer's output dispatched too): nothing is in hand.
    /// (What else `take` set is read only while a batch is.)
    #[inline]
    pub(super) fn done(&mut self) {
        self.batch = 0;
        self.copy = None;
    }

    /// The subscription of the batch in hand, and its size.
    pub(super) fn held(&self) -> Option<(SubscriptionId, u64)> {
        self.sub
            .filter(|_| self.batch > 0)
            .map(|sub| (sub, self.batch))
    }

    /// The index of the event in hand, when it is one event handed again: the poison event, if
    /// the stage gives up on it.
    pub(super) fn poison(&self) -> Option<usize> {
        self.redelivered.filter(|_| self.batch > 0)
    }

    /// Nothing is in hand.
    pub(super) fn clear(&mut self) {
        *self = InHand::new(self.copier);
    }
}

/// What a consumer's or producer_consumer's loop keeps across restarts of its stage.
pub(super) struct Kept<T> {
    /// The batch its callback holds.
    pub(super) in_hand: InHand<T>,
    /// Calls, casts and infos taken in and not yet opened.
    pub(super) letters: VecDeque<Letter>,
    /// Events to hand again to the restarted stage.
    pub(super) redelivery: Redelivery<T>,
    /// Events of batches its failed values held, lost, by subscription.
    failed: Vec<(SubscriptionId, u64)>,
    /// A restarted value is to be told of the stage's subscriptions.
    pub(super) announce: bool,
    /// The stage is told that a producer whose failure stops it ended: it is not restarted, even
    /// if that callback fails.
    pub(super) stopping: bool,
}

impl<T> Kept<T> {
    /// Nothing yet; each batch copied by `copier`, when the stage redelivers.
    pub(super) fn new(copier: Option<CopyBatch<T>>) -> Self {
        Kept {
            in_hand: InHand::new(copier),
            letters: VecDeque::new(),
            redelivery: Redelivery::default(),
            failed: Vec::new(),
            announce: false,
            stopping: false,
        }
    }

    /// After a restart: the batch the failed value held is lost, or queued to be handed again;
    /// the ask it earned is made; the new value is to be told of its subscriptions.
    pub(super) fn restarted(&mut self, inputs: &Inputs<T>) {
        let in_hand = &mut self.in_hand;
        if let Some((sub, batch)) = in_hand.held() {
            if let Some(demand) = in_hand.ask {
                drop(inputs.ask(sub, demand));
            }
            match in_hand.copy.take() {
                Some(events) => self.redelivery.again(in_hand.redelivered, sub, events),
                None => self.failed.push((sub, batch)),
            }
        }
        in_hand.clear();
        self.announce = true;
    }

    /// Events of batches its failed values held, lost.
    pub(super) fn failed(&self) -> u64 {
        self.failed.iter().map(|&(_, count)| count).sum()
    }

    /// Events of `sub` handed out and not handled: lost with the batches the stage's values failed
    /// on, in hand when it stopped, or waiting to be handed again.
    pub(super) fn not_handled(&self, sub: SubscriptionId) -> u64 {
        let failed: u64 = self
            .failed
            .iter()
            .filter(|&&(failed, _)| failed == sub)
            .map(|&(_, count)| count)
            .sum();
        let in_hand = match self.in_hand.held() {
            Some((held, batch)) if held == sub => batch,
            _ => 0,
        };
        failed + in_hand + self.redelivery.waiting_on(sub)
    }
}
