//! The producer side of a stage task: the dispatcher, the buffer and the consumers' mailboxes.

use std::convert::Infallible;
use std::sync::Arc;

use crate::buffer::Buffer;
use crate::dispatcher::{Deliveries, Dispatcher, SubscriptionId};
use crate::mailbox::DeferredWake;
use crate::options::ProducerOptions;
use crate::protocol::{Downstream, EventSink};

use super::by_subscription::BySubscription;

pub(super) struct Outputs<T> {
    stage: Arc<str>,
    dispatcher: Box<dyn Dispatcher<T>>,
    buffer: Buffer<T, Infallible>,
    consumers: BySubscription<Box<dyn EventSink<T>>>,
    /// Reused for every dispatch.
    deliveries: Deliveries<T>,
    /// A wake-up owed to this stage's producer while [`emit_handing_off`](Self::emit_handing_off)
    /// runs, for the first consumer it wakes to take (see [`crate::mailbox`]).
    hand_off: DeferredWake,
    /// Whether any consumer ever subscribed: a producer whose consumers have all left stops.
    had_consumers: bool,
    pub(super) events_out: u64,
    pub(super) discarded: u64,
}

impl<T: Send + 'static> Outputs<T> {
    pub(super) fn new(
        stage: Arc<str>,
        dispatcher: Box<dyn Dispatcher<T>>,
        options: ProducerOptions,
    ) -> Self {
        Outputs {
            stage,
            dispatcher,
            buffer: Buffer::new(options),
            consumers: BySubscription::new(),
            deliveries: Vec::new(),
            hand_off: DeferredWake::default(),
            had_consumers: false,
            events_out: 0,
            discarded: 0,
        }
    }

    /// Takes in a message from downstream; returns new upstream demand.
    pub(super) fn handle(&mut self, mail: Downstream<T>) -> usize {
        match mail {
            Downstream::Subscribe(subscriber) => {
                self.subscribe(subscriber.sub, subscriber.consumer)
            }
            Downstream::Ask { sub, demand } => self.ask(sub, demand),
            Downstream::Cancel { sub } => self.cancel(sub),
        }
    }

    /// Registers a consumer; returns new upstream demand.
    fn subscribe(&mut self, sub: SubscriptionId, consumer: Box<dyn EventSink<T>>) -> usize {
        match self.dispatcher.subscribe(sub) {
            Ok(demand) => {
                self.consumers.insert(sub, consumer);
                self.had_consumers = true;
                demand
            }
            Err(error) => {
                tracing::error!(stage = %self.stage, "subscription {sub} refused: {error}");
                0
            }
        }
    }

    /// A consumer left; returns new upstream demand.
    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        if self.consumers.remove(sub).is_none() {
            return 0;
        }
        let demand = self.dispatcher.cancel(sub);
        demand.saturating_sub(self.drain_buffer())
    }

    /// A consumer asked; returns the upstream demand left once the buffer has served what it can.
    fn ask(&mut self, sub: SubscriptionId, demand: usize) -> usize {
        let upstream = self.dispatcher.ask(sub, demand);
        if self.buffer.is_empty() {
            return upstream;
        }
        upstream.saturating_sub(self.drain_buffer())
    }

    /// Like [`emit`](Self::emit), and hands `producer`, a wake-up owed to this stage's producer, to
    /// the first consumer the events wake and that takes it; gives it when none does.
    pub(super) fn emit_handing_off(&mut self, events: Vec<T>, producer: DeferredWake) {
        self.hand_off = producer;
        self.emit(events);
        drop(std::mem::take(&mut self.hand_off));
    }

    /// Sends `events` to consumers with demand and buffers the rest. Buffered events always go first,
    /// so newer events never overtake older ones.
    pub(super) fn emit(&mut self, events: Vec<T>) {
        if events.is_empty() {
            return;
        }
        if !self.buffer.is_empty() {
            self.store(events);
            return;
        }
        // The hot path: one consumer takes the whole batch.
        if let Some(sub) = self.dispatcher.dispatch_whole(events.len()) {
            self.deliver(sub, events);
            return;
        }
        let leftover = self.dispatch(events);
        if !leftover.is_empty() {
            self.store(leftover);
        }
    }

    /// Buffers what no consumer could take, then serves what demand there is from the buffer.
    fn store(&mut self, events: Vec<T>) {
        let stored = self.buffer.store(events);
        self.record_discarded(stored.discarded);
        self.drain_buffer();
    }

    /// How many more events the consumers can take now (a producer_consumer handles input only
    /// while this is above zero).
    pub(super) fn capacity(&self) -> usize {
        self.dispatcher.capacity()
    }

    pub(super) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether every consumer that ever subscribed has left.
    pub(super) fn abandoned(&self) -> bool {
        self.had_consumers && self.consumers.is_empty()
    }

    /// Drops what is still buffered when the stage stops early, counting it as discarded.
    pub(super) fn abandon_buffer(&mut self) {
        let (dropped, _) = self.buffer.clear();
        self.discarded += dropped as u64;
    }

    /// Serves buffered events up to what the consumers can take; returns how many went out.
    fn drain_buffer(&mut self) -> usize {
        let mut drained = 0;
        // The buffer is checked first: it is empty on the hot path, and `capacity` is a dynamic call.
        while !self.buffer.is_empty() {
            let capacity = self.dispatcher.capacity();
            if capacity == 0 {
                return drained;
            }
            let taken = self.buffer.take(capacity).events;
            drained += taken.len();
            let leftover = self.dispatch(taken);
            // `Dispatcher::capacity`'s contract: at most `capacity` events all find a consumer.
            debug_assert!(
                leftover.is_empty(),
                "dispatcher broke its capacity contract"
            );
            if !leftover.is_empty() {
                drained -= leftover.len();
                let stored = self.buffer.store(leftover);
                self.record_discarded(stored.discarded);
                return drained;
            }
        }
        drained
    }

    /// Dispatches and sends; returns what no consumer took.
    fn dispatch(&mut self, events: Vec<T>) -> Vec<T> {
        let mut deliveries = std::mem::take(&mut self.deliveries);
        let leftover = self.dispatcher.dispatch(events, &mut deliveries);
        for (sub, batch) in deliveries.drain(..) {
            self.deliver(sub, batch);
        }
        self.deliveries = deliveries;
        leftover
    }

    /// Sends one batch to the consumer of `sub`.
    #[inline]
    fn deliver(&mut self, sub: SubscriptionId, batch: Vec<T>) {
        let len = batch.len() as u64;
        match self
            .consumers
            .get(sub)
            .map(|consumer| consumer.send(sub, batch, &mut self.hand_off))
        {
            Some(Ok(())) => self.events_out += len,
            // The consumer's task has ended: the events are lost with it, as in GenStage.
            _ => {
                self.discarded += len;
                self.consumers.remove(sub);
                self.dispatcher.cancel(sub);
            }
        }
    }

    fn record_discarded(&mut self, discarded: usize) {
        if discarded > 0 {
            self.discarded += discarded as u64;
            tracing::warn!(
                stage = %self.stage,
                discarded,
                "GenStage producer {} has discarded {discarded} events from buffer",
                self.stage
            );
        }
    }
}
