//! The messages stages exchange (GenStage's `$gen_producer` / `$gen_consumer`), and the ports through
//! which one stage reaches another's mailbox.
//!
//! Every stage task owns one mailbox, a [`Mail`] channel: events and end notices from its producers,
//! subscriptions, asks and cancels from its consumers. One channel per stage keeps a stage's loop a
//! single `recv().await`, and FIFO order on it is what orders events before the notice that their
//! producer ended.
//!
//! # Bounds
//! The channels are unbounded, but what travels on them is bounded by the protocol: a producer sends
//! events only against demand and every message holds at least one event, so a subscription has at
//! most `max_demand` event messages in flight; a consumer asks only after receiving events, so asks in
//! flight are bounded the same way. Control messages are one per subscription.

use std::sync::Arc;

use crate::demand::DemandLimits;
use crate::dispatcher::{DispatchOptions, SubscriptionId};
use tokio::sync::oneshot;

use crate::mailbox::{DeferredWake, Refused, Sender};
use crate::messages::{Letter, PostLetter};
use crate::options::{CancelMode, DemandMode};
use crate::subscription::CancelAtProducer;

/// Why a stage ended, as told to the other side of its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// It ended normally: a producer ran out of events and delivered them all.
    Finished,
    /// It failed, or stopped because the named stage (the root cause) failed.
    Failed(Arc<str>),
}

/// A message in a stage's mailbox. `In` is what it consumes, `Out` what it emits.
pub(crate) enum Mail<In, Out> {
    /// From the producers this stage consumes (or from the pipeline on their behalf).
    Upstream(Upstream<In>),
    /// From the consumers of this stage.
    Downstream(Downstream<Out>),
    /// From the stage's handles and its pipeline; boxed, as subscriptions are (rare, and larger).
    Control(Box<Control>),
}

/// What a stage's handles and its pipeline send it.
pub(crate) enum Control {
    /// A call, cast or info, with the callback that handles it.
    Letter(Letter),
    /// A graceful shutdown: a producer emits nothing more, delivers what it has emitted, and ends.
    Shutdown,
    /// Asks how many events the stage's buffer holds.
    BufferedCount(oneshot::Sender<usize>),
    /// Sets a producer's demand mode (GenStage's `demand/2`).
    SetDemand(DemandMode),
    /// Asks a producer's demand mode (GenStage's `demand/1`).
    GetDemand(oneshot::Sender<DemandMode>),
}

// Events and asks are the hot messages: one per batch, copied into and out of a mailbox. The rare
// subscription messages are boxed so that they do not set the size of every `Mail`: on 64-bit
// targets it is 32 bytes, two to a cache line, where a subscription inline would make it 48, and
// every message copied would cost more (`benches/seed.rs` has the figure). `a_mail_is_32_bytes`
// below keeps it so.

/// What reaches a stage as a consumer.
pub(crate) enum Upstream<In> {
    /// This stage is subscribed to a producer (see [`Subscribed::asked`] for its initial ask).
    Subscribed(Box<Subscribed>),
    /// Events from the producer of `sub`; never empty.
    Events {
        sub: SubscriptionId,
        events: Vec<In>,
    },
    /// The producer of `sub` ended; every event it sent is already in the mailbox.
    Ended {
        sub: SubscriptionId,
        reason: EndReason,
    },
    /// `sub` is cancelled, and every event its producer sent on it is already in the mailbox;
    /// `replaced_by`, when it was replaced by a subscription to the same producer (a
    /// resubscribe), which the pipeline tells the consumer of, maybe only after this.
    Cancelled {
        sub: SubscriptionId,
        replaced_by: Option<SubscriptionId>,
    },
    /// The dispatcher of the producer of `sub` refused it, for `reason`: nothing was sent on it.
    Refused {
        sub: SubscriptionId,
        reason: Arc<str>,
    },
}

/// A subscription as its consumer learns of it.
pub(crate) struct Subscribed {
    pub(crate) sub: SubscriptionId,
    pub(crate) producer: Arc<dyn ProducerPort>,
    /// The producer's name, for the consumer's `handle_subscribe` and `handle_cancel`.
    pub(crate) producer_name: Arc<str>,
    pub(crate) limits: DemandLimits,
    pub(crate) cancel: CancelMode,
    /// The partition of the producer it takes, for the consumer's `handle_subscribe`.
    pub(crate) partition: Option<usize>,
    /// Whether the initial ask of `limits.max()` has been sent on the consumer's behalf (when the
    /// pipeline was wired); if not, the consumer sends it when it takes the subscription in.
    pub(crate) asked: bool,
}

/// A subscription as its producer learns of it: events for `sub` go to `consumer`.
pub(crate) struct NewConsumer<Out> {
    pub(crate) sub: SubscriptionId,
    pub(crate) consumer: Box<dyn EventSink<Out>>,
    /// The consumer's name, for the producer's `handle_consumer_subscribe` and
    /// `handle_consumer_cancel`.
    pub(crate) consumer_name: Arc<str>,
    pub(crate) limits: DemandLimits,
    /// What it asks of the producer's dispatcher: its partition, its selector.
    pub(crate) options: DispatchOptions<Out>,
    /// The subscription of the same consumer to this producer that it replaces (a resubscribe to
    /// the same producer): the producer cancels it first, in the same step, so that what the old
    /// one held (a partition) is free for the new one, and the producer has a consumer throughout.
    pub(crate) replacing: Option<SubscriptionId>,
}

/// What reaches a stage as a producer.
pub(crate) enum Downstream<Out> {
    /// A consumer subscribed.
    Subscribe(Box<NewConsumer<Out>>),
    /// The consumer of `sub` asks for `demand > 0` more events.
    Ask { sub: SubscriptionId, demand: usize },
    /// The consumer of `sub` has ended, for `reason` (boxed, as a subscription is: it is rare, and
    /// inline it would make every `Mail` larger).
    Ended {
        sub: SubscriptionId,
        reason: Box<EndReason>,
    },
    /// `sub` is cancelled: the producer tells the consumer, after the events it sent it (GenStage's
    /// cancel reply), so that the consumer ends the subscription only once it has them all.
    Cancel { sub: SubscriptionId },
}

/// A stage's mailbox, as seen by everyone else.
pub(crate) type Mailbox<In, Out> = Sender<Mail<In, Out>>;

/// What a consumer holds of its producer: a way to ask and to cancel, whatever the event types.
pub(crate) trait ProducerPort: CancelAtProducer {
    /// Sends an ask, lazily: a producer_consumer is owed a wake-up only when it has input or output
    /// waiting for demand (see [`crate::mailbox`]). Returns the wake-up owed, if any, for the caller
    /// to give (by dropping it) or to hand off with the events it sends next; nothing is owed when the
    /// producer is gone.
    fn ask(&self, sub: SubscriptionId, demand: usize) -> DeferredWake;
}

/// What a producer holds of a consumer: where its events go.
pub(crate) trait EventSink<T>: Send {
    /// Sends one batch, handing off `hand_off` to the consumer if it takes it (see
    /// [`crate::mailbox`]); when `chained`, a quick consumer is not woken, its wake-up replacing
    /// `hand_off`, to go with the next batch sent. Gives the batch back when the consumer is gone.
    fn send(
        &self,
        sub: SubscriptionId,
        events: Vec<T>,
        hand_off: &mut DeferredWake,
        chained: bool,
    ) -> Result<(), Vec<T>>;

    /// Tells the consumer that `sub` is cancelled, after every event sent on it; `replaced_by`
    /// is the subscription that replaces it, if any (see [`Upstream::Cancelled`]).
    fn cancelled(&self, sub: SubscriptionId, replaced_by: Option<SubscriptionId>);

    /// Tells the consumer that the producer's dispatcher refused `sub`, for `reason`.
    fn refused(&self, sub: SubscriptionId, reason: Arc<str>);
}

/// What the pipeline and the stage's handles hold of a stage: its control path, whatever the event
/// types. Its `cancel` ([`CancelAtProducer`]) ends a subscription of one of its consumers, as that
/// consumer's own cancel does: the stage stops sending on it and tells the consumer.
pub(crate) trait ControlPort: PostLetter + CancelAtProducer {
    /// The producer of `sub` ended.
    fn upstream_ended(&self, sub: SubscriptionId, reason: EndReason);
    /// The consumer of `sub` has ended, for `reason`.
    fn downstream_ended(&self, sub: SubscriptionId, reason: EndReason);
    /// Sends `control`; false when the stage has ended.
    fn control(&self, control: Control) -> bool;
    /// Sends `control` from outside the stage (a handle's letter or demand switch): refused once
    /// the stage has ended, or once it was told to shut down with `refuse_outside`.
    fn control_from_outside(&self, control: Control) -> Result<(), Unsent>;
    /// Tells the stage to shut down; when `refuse_outside` (a producer or producer_consumer, which
    /// drop what comes from outside from then on), every later
    /// [`control_from_outside`](Self::control_from_outside) is refused, decided in the same step
    /// as the shutdown is queued, so that one sent before it is taken before it.
    fn shut_down(&self, refuse_outside: bool);
}

/// Why [`ControlPort::control_from_outside`] sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsent {
    /// The stage has ended.
    Ended,
    /// The stage is shutting down and takes nothing more from outside.
    ShuttingDown,
}

impl<In: Send + 'static, Out: Send + 'static> ProducerPort for Mailbox<In, Out> {
    #[inline]
    fn ask(&self, sub: SubscriptionId, demand: usize) -> DeferredWake {
        self.send_lazy(Mail::Downstream(Downstream::Ask { sub, demand }))
            .unwrap_or_default()
    }
}

impl<In: Send + 'static, Out: Send + 'static> CancelAtProducer for Mailbox<In, Out> {
    fn cancel(&self, sub: SubscriptionId) {
        let _ = self.send(Mail::Downstream(Downstream::Cancel { sub }));
    }
}

impl<In: Send + 'static, Out: Send + 'static> EventSink<In> for Mailbox<In, Out> {
    #[inline]
    fn send(
        &self,
        sub: SubscriptionId,
        events: Vec<In>,
        hand_off: &mut DeferredWake,
        chained: bool,
    ) -> Result<(), Vec<In>> {
        let mail = Mail::Upstream(Upstream::Events { sub, events });
        let sent = if chained {
            self.send_deferring(mail, hand_off)
        } else {
            self.send_handing_off(mail, hand_off)
        };
        sent.map_err(|mail| match mail {
            Mail::Upstream(Upstream::Events { events, .. }) => events,
            _ => Vec::new(),
        })
    }

    fn cancelled(&self, sub: SubscriptionId, replaced_by: Option<SubscriptionId>) {
        let _ = self.send(Mail::Upstream(Upstream::Cancelled { sub, replaced_by }));
    }

    fn refused(&self, sub: SubscriptionId, reason: Arc<str>) {
        let _ = self.send(Mail::Upstream(Upstream::Refused { sub, reason }));
    }
}

impl<In: Send + 'static, Out: Send + 'static> ControlPort for Mailbox<In, Out> {
    fn upstream_ended(&self, sub: SubscriptionId, reason: EndReason) {
        // A closed mailbox means the stage has ended already: nobody is left to tell.
        let _ = self.send(Mail::Upstream(Upstream::Ended { sub, reason }));
    }

    fn downstream_ended(&self, sub: SubscriptionId, reason: EndReason) {
        let _ = self.send(Mail::Downstream(Downstream::Ended {
            sub,
            reason: Box::new(reason),
        }));
    }

    fn control(&self, control: Control) -> bool {
        self.send(Mail::Control(Box::new(control))).is_ok()
    }

    fn control_from_outside(&self, control: Control) -> Result<(), Unsent> {
        // The refused message (a letter, maybe holding a call's reply) is dropped here, outside
        // the mailbox's lock.
        self.send_from_outside(Mail::Control(Box::new(control)))
            .map_err(|refused| match refused {
                Refused::Gone(_) | Refused::Ending(_) => Unsent::Ended,
                Refused::ClosedToOutside(_) => Unsent::ShuttingDown,
            })
    }

    fn shut_down(&self, refuse_outside: bool) {
        let shutdown = Mail::Control(Box::new(Control::Shutdown));
        // A closed mailbox means the stage has ended already: nothing is left to shut down.
        let _ = if refuse_outside {
            self.send_closing(shutdown)
        } else {
            self.send(shutdown)
        };
    }
}

impl<In: Send + 'static, Out: Send + 'static> PostLetter for Mailbox<In, Out> {
    fn post(&self, letter: Letter) -> bool {
        self.control(Control::Letter(letter))
    }

    fn is_open(&self) -> bool {
        self.is_receiving()
    }

    fn clone_port(&self) -> Box<dyn PostLetter> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mail_is_32_bytes() {
        // At most: 32 on 64-bit targets, less on narrower ones.
        assert!(std::mem::size_of::<Mail<u64, String>>() <= 32);
    }
}
