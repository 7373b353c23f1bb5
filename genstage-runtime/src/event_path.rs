//! The producer side of a stage as plain data: its dispatcher and its buffer, and the one place where
//! they meet.
//!
//! Emitted events go to the dispatcher, what no consumer can take waits in the buffer, and demand is
//! served from the buffer before anything newer. [`EventPath`] does all of it and returns what to send
//! ([`EventPath::take_deliveries`]); the stage task only sends. So the whole event path is tested
//! without tokio.
//!
//! # Demand
//! What a producer is asked to emit is not kept as a running count but derived, whenever it is needed,
//! from the dispatcher's capacity and the buffer: [`EventPath::demand`] is what the consumers can take
//! now minus what is already buffered for them. A running count drifts as soon as one path forgets
//! to update it (a consumer that leaves with demand unmet, events that arrive while others are
//! buffered); a derived one cannot.

use std::convert::Infallible;

use crate::buffer::Buffer;
use crate::dispatcher::{Deliveries, DispatchError, Dispatcher, SubscriptionId};
use crate::options::ProducerOptions;

/// Where emitted events go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Emitted<T> {
    /// All of them to this consumer: send them.
    Whole(SubscriptionId, Vec<T>),
    /// Dispatched to the deliveries and the buffer, which dropped `discarded` on overflow.
    Dispatched { discarded: usize },
}

/// A producer's dispatcher and buffer. Every method that can make events go out appends them to the
/// deliveries, which the caller takes and sends.
pub(crate) struct EventPath<T> {
    dispatcher: Box<dyn Dispatcher<T>>,
    buffer: Buffer<T, Infallible>,
    /// What to send, in order; emptied by [`take_deliveries`](Self::take_deliveries).
    deliveries: Deliveries<T>,
    /// Events emitted so far.
    pub(crate) emitted: u64,
    /// Events the buffer dropped on overflow so far.
    pub(crate) discarded: u64,
    /// Nothing is dispatched: a producer accumulating demand (see [`set_held`](Self::set_held)).
    held: bool,
}

impl<T: Send + 'static> EventPath<T> {
    pub(crate) fn new(dispatcher: Box<dyn Dispatcher<T>>, options: ProducerOptions) -> Self {
        EventPath {
            dispatcher,
            buffer: Buffer::new(options),
            deliveries: Vec::new(),
            emitted: 0,
            discarded: 0,
            held: false,
        }
    }

    /// A consumer subscribed.
    ///
    /// # Errors
    ///
    /// The dispatcher refused it.
    pub(crate) fn subscribe(&mut self, sub: SubscriptionId) -> Result<(), DispatchError> {
        self.dispatcher.subscribe(sub).map(drop)
    }

    /// The consumer of `sub` asked for `demand` more events: served from the buffer first.
    #[inline]
    pub(crate) fn ask(&mut self, sub: SubscriptionId, demand: usize) {
        self.dispatcher.ask(sub, demand);
        if !self.buffer.is_empty() {
            self.drain_buffer();
        }
    }

    /// The consumer of `sub` left; its unmet demand goes with it.
    pub(crate) fn cancel(&mut self, sub: SubscriptionId) {
        self.dispatcher.cancel(sub);
        self.drain_buffer();
    }

    /// Emitted events: to consumers with demand, the rest to the buffer. Buffered events always go
    /// first, so newer events never overtake older ones. Not while held: [`hold`](Self::hold) then.
    #[inline]
    pub(crate) fn emit(&mut self, events: Vec<T>) -> Emitted<T> {
        debug_assert!(!self.held, "events emitted through a held event path");
        if events.is_empty() {
            return Emitted::Dispatched { discarded: 0 };
        }
        self.emitted += events.len() as u64;
        if !self.buffer.is_empty() {
            return Emitted::Dispatched {
                discarded: self.store(events),
            };
        }
        // The hot path: one consumer takes the whole batch, sent without building deliveries.
        if let Some(sub) = self.dispatcher.dispatch_whole(events.len()) {
            return Emitted::Whole(sub, events);
        }
        let leftover = self.dispatcher.dispatch(events, &mut self.deliveries);
        let discarded = if leftover.is_empty() {
            0
        } else {
            self.store(leftover)
        };
        Emitted::Dispatched { discarded }
    }

    /// Holds the path (a producer that accumulates demand) or releases it. While held, nothing is
    /// dispatched: emitted events go to the buffer ([`hold`](Self::hold)), and neither a cancel nor
    /// an ask drains it (the producer gives no ask to the dispatcher meanwhile). Releasing serves
    /// what the consumers can take now from the buffer.
    pub(crate) fn set_held(&mut self, held: bool) {
        self.held = held;
        if !held {
            self.drain_buffer();
        }
    }

    /// Emitted events, while held: all to the buffer; returns how many it dropped.
    pub(crate) fn hold(&mut self, events: Vec<T>) -> usize {
        self.emitted += events.len() as u64;
        self.store(events)
    }

    /// What a producer should emit now: what its consumers can take, less what is buffered for them.
    #[inline]
    pub(crate) fn demand(&self) -> usize {
        self.dispatcher.capacity().saturating_sub(self.buffer.len())
    }

    /// How many more events the consumers can take now (a producer_consumer handles input only while
    /// this is above zero).
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.dispatcher.capacity()
    }

    pub(crate) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether anything is ready to send.
    #[inline]
    pub(crate) fn has_deliveries(&self) -> bool {
        !self.deliveries.is_empty()
    }

    /// What to send, in order, one message per consumer and batch.
    #[inline]
    pub(crate) fn take_deliveries(&mut self) -> Deliveries<T> {
        std::mem::take(&mut self.deliveries)
    }

    /// Gives back an emptied deliveries vector, to reuse its allocation.
    #[inline]
    pub(crate) fn recycle(&mut self, mut deliveries: Deliveries<T>) {
        if self.deliveries.is_empty() {
            deliveries.clear();
            self.deliveries = deliveries;
        }
    }

    /// Empties the buffer when the stage stops early; returns how many events it held.
    pub(crate) fn clear_buffer(&mut self) -> usize {
        self.buffer.clear().0
    }

    /// Buffers `events`, then serves what demand there is from the buffer; returns how many the
    /// buffer dropped.
    fn store(&mut self, events: Vec<T>) -> usize {
        let dropped = self.buffer.store(events).discarded;
        self.discarded += dropped as u64;
        self.drain_buffer();
        dropped
    }

    /// Serves buffered events up to what the consumers can take; nothing while held.
    fn drain_buffer(&mut self) {
        if self.held {
            return;
        }
        loop {
            let capacity = self.dispatcher.capacity();
            if capacity == 0 || self.buffer.is_empty() {
                return;
            }
            let taken = self.buffer.take(capacity).events;
            let leftover = self.dispatcher.dispatch(taken, &mut self.deliveries);
            // `Dispatcher::capacity`'s contract: at most `capacity` events all find a consumer. A
            // dispatcher that breaks it gets its leftover back in the buffer.
            debug_assert!(
                leftover.is_empty(),
                "dispatcher broke its capacity contract"
            );
            if !leftover.is_empty() {
                self.discarded += self.buffer.store(leftover).discarded as u64;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::DemandDispatcher;

    fn path(buffer_size: usize) -> EventPath<u32> {
        EventPath::new(
            Box::new(DemandDispatcher::new()),
            ProducerOptions::for_producer().buffer_size(buffer_size),
        )
    }

    /// Emits `events` as a stage does: what one consumer takes whole is sent at once.
    fn emit(path: &mut EventPath<u32>, events: Vec<u32>) -> usize {
        match path.emit(events) {
            Emitted::Whole(sub, events) => {
                path.deliveries.push((sub, events));
                0
            }
            Emitted::Dispatched { discarded } => discarded,
        }
    }

    fn sent(path: &mut EventPath<u32>) -> Vec<(SubscriptionId, Vec<u32>)> {
        path.take_deliveries()
    }

    #[test]
    fn demand_is_what_consumers_can_take_less_what_is_buffered() {
        let mut path = path(100);
        path.subscribe(1).unwrap();
        path.subscribe(2).unwrap();
        path.ask(1, 10);
        path.ask(2, 6);
        assert_eq!(path.demand(), 16);
        assert_eq!(emit(&mut path, (0..4).collect()), 0);
        assert_eq!(sent(&mut path), vec![(1, vec![0, 1, 2, 3])]);
        assert_eq!(path.demand(), 12);
    }

    /// The stall of the issue: a consumer leaves with demand unmet while the producer emits fewer
    /// events than asked and events sit in the buffer. The demand asked of the producer must stay
    /// exactly the remaining consumer's unmet demand, whatever the order of events.
    #[test]
    fn a_departed_consumers_demand_never_absorbs_anothers() {
        let mut path = path(1000);
        path.subscribe(0).unwrap();
        path.subscribe(1).unwrap();
        path.ask(0, 242);
        path.ask(1, 286);
        // The producer emits fewer than asked: 30.
        emit(&mut path, (0..30).collect());
        assert_eq!(sent(&mut path), vec![(1, (0..30).collect())]);
        // Consumer 1 fails and leaves with 256 unmet.
        path.cancel(1);
        assert_eq!(path.demand(), 242);
        // More events than consumer 0 wants arrive: the rest waits in the buffer.
        emit(&mut path, (30..300).collect());
        assert_eq!(sent(&mut path), vec![(0, (30..272).collect())]);
        assert_eq!(path.buffered(), 28);
        assert_eq!(path.demand(), 0);
        // Events emitted while others are buffered go behind them.
        emit(&mut path, (300..310).collect());
        assert_eq!(path.buffered(), 38);
        // Consumer 0 asks for 226: 38 come from the buffer, the producer is asked for the rest.
        path.ask(0, 226);
        assert_eq!(sent(&mut path), vec![(0, (272..310).collect())]);
        assert_eq!(path.demand(), 226 - 38);
    }

    #[test]
    fn buffered_events_go_out_before_newer_ones() {
        let mut path = path(100);
        path.subscribe(1).unwrap();
        emit(&mut path, vec![1, 2]);
        emit(&mut path, vec![3]);
        assert!(sent(&mut path).is_empty());
        path.ask(1, 2);
        assert_eq!(sent(&mut path), vec![(1, vec![1, 2])]);
        path.ask(1, 5);
        emit(&mut path, vec![4]);
        assert_eq!(sent(&mut path), vec![(1, vec![3]), (1, vec![4])]);
        assert_eq!(path.emitted, 4);
    }

    #[test]
    fn overflow_is_counted_as_discarded() {
        let mut path = path(3);
        path.subscribe(1).unwrap();
        assert_eq!(emit(&mut path, (0..5).collect()), 2);
        assert_eq!(path.discarded, 2);
        path.ask(1, 10);
        // buffer_keep last: the oldest two went.
        assert_eq!(sent(&mut path), vec![(1, vec![2, 3, 4])]);
    }

    #[test]
    fn a_held_path_dispatches_nothing_until_released() {
        let mut path = path(3);
        path.subscribe(1).unwrap();
        path.subscribe(2).unwrap();
        // Demand from before the hold.
        path.ask(1, 2);
        path.ask(2, 1);
        path.set_held(true);
        assert_eq!(path.hold(vec![0, 1]), 0);
        assert_eq!(
            path.hold(vec![2, 3]),
            1,
            "the buffer keeps its size while held"
        );
        path.cancel(2);
        assert!(sent(&mut path).is_empty());
        assert_eq!(path.buffered(), 3);
        assert_eq!(path.emitted, 4);
        // Released: the demand from before the hold is served first.
        path.set_held(false);
        assert_eq!(sent(&mut path), vec![(1, vec![1, 2])]);
        path.ask(1, 5);
        assert_eq!(sent(&mut path), vec![(1, vec![3])]);
    }

    #[test]
    fn a_cancel_serves_the_others_from_the_buffer() {
        let mut path = path(100);
        path.subscribe(1).unwrap();
        path.subscribe(2).unwrap();
        path.ask(1, 2);
        emit(&mut path, (0..5).collect());
        assert_eq!(sent(&mut path), vec![(1, vec![0, 1])]);
        path.ask(2, 2);
        assert_eq!(sent(&mut path), vec![(2, vec![2, 3])]);
        path.cancel(1);
        assert_eq!(path.buffered(), 1);
        assert_eq!(path.clear_buffer(), 1);
        assert_eq!(path.demand(), 0);
    }
}
