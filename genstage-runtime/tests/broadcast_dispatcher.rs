//! `BroadcastDispatcher` driven directly, without tokio, asserting exact states as GenStage's
//! `broadcast_dispatcher_test.exs` does.
//!
//! Ports GenStage's test items 126 to 134 and 136 (numbers from `genstage-semantics.md` §4). GenStage's
//! state `{demands, waiting, requested, pids}` is read here through `demands()` (each subscription's
//! own demand, in the order they subscribed: GenStage keeps its list newest first and reorders it,
//! the port keeps subscription order), `waiting()` and `requested()`; the events sent are the
//! `Outbox`'s deliveries, and the events sent to more than one consumer or to none are its
//! `copies()` and `discarded()`, which GenStage does not count. A subscription is identified by its
//! id, where GenStage has a pid and a reference.
//!
//! Not ported: item 135 (`info` is sent at once), since the port's dispatcher has no `info`
//! callback (the buffer orders info markers, see `tests/buffer.rs`).
//!
//! Then a property: random subscribes, asks, cancels and dispatches, through a model of the loop that
//! drives a dispatcher (`EventPath`: leftover is buffered and served first, by `capacity()`).

use std::collections::BTreeMap;

use genstage_runtime::dispatcher::{
    BroadcastDispatcher, Deliveries, DispatchOptions, Dispatcher, Outbox, SubscriptionId,
};
use proptest::prelude::*;

const R1: SubscriptionId = 1;
const R2: SubscriptionId = 2;
const R3: SubscriptionId = 3;

/// What one dispatch did: the batches sent, the leftover, and the outbox's counts.
#[derive(Debug, PartialEq, Eq)]
struct Dispatched<T> {
    sent: Deliveries<T>,
    leftover: Vec<T>,
    copies: usize,
    discarded: usize,
}

fn dispatch<T: Clone + Send + 'static>(
    dispatcher: &mut BroadcastDispatcher<T>,
    events: &[T],
) -> Dispatched<T> {
    let mut sent = Vec::new();
    let mut out = Outbox::new(&mut sent);
    let leftover = dispatcher
        .dispatch(events.to_vec(), &mut out)
        .expect("a broadcast dispatcher always dispatches");
    let (copies, discarded) = (out.copies(), out.discarded());
    Dispatched {
        sent,
        leftover,
        copies,
        discarded,
    }
}

/// Asks on behalf of `sub`; returns the upstream demand. A broadcast sends nothing on an ask.
fn ask<T: Clone + Send + 'static>(
    dispatcher: &mut BroadcastDispatcher<T>,
    sub: SubscriptionId,
    demand: usize,
) -> usize {
    let mut sent = Vec::new();
    let upstream = dispatcher.ask(sub, demand, &mut Outbox::new(&mut sent));
    assert!(sent.is_empty(), "a broadcast sends nothing on an ask");
    upstream
}

fn subscribe(dispatcher: &mut BroadcastDispatcher<char>, sub: SubscriptionId) -> usize {
    dispatcher
        .subscribe(sub, &DispatchOptions::none())
        .expect("a new subscription is taken")
}

fn chars(events: &str) -> Vec<char> {
    events.chars().collect()
}

/// `(demands, waiting, requested)`: GenStage's state, less the pid set.
fn state<T: Clone + Send + 'static>(
    dispatcher: &BroadcastDispatcher<T>,
) -> (Vec<(SubscriptionId, usize)>, usize, usize) {
    (
        dispatcher.demands(),
        dispatcher.waiting(),
        dispatcher.requested(),
    )
}

// Item 126.
#[test]
fn subscribes_and_cancels() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 0, 0));
    assert_eq!(dispatcher.consumers(), 1);

    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(state(&dispatcher), (vec![], 0, 0));
    assert_eq!(dispatcher.consumers(), 0);
    // Cancelling a subscription it does not hold changes nothing.
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(state(&dispatcher), (vec![], 0, 0));
}

// Item 127.
#[test]
fn subscribes_asks_and_cancels() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(ask(&mut dispatcher, R1, 10), 10);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 10, 10));
    assert_eq!(dispatcher.capacity(), 10);

    // The demand asked upstream stays requested: the next consumer is served from it.
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(state(&dispatcher), (vec![], 0, 10));
    assert_eq!(dispatcher.capacity(), 0);

    // With no consumers everything is leftover.
    let dispatched = dispatch(&mut dispatcher, &chars("abc"));
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![],
            leftover: chars("abc"),
            copies: 0,
            discarded: 0
        }
    );
    assert_eq!(state(&dispatcher), (vec![], 0, 10));
}

// Item 128.
#[test]
fn multiple_subscriptions_with_early_demand() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(ask(&mut dispatcher, R1, 10), 10);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 10, 10));

    // The newcomer has no demand: what everyone could take goes back to each one's own demand.
    assert_eq!(subscribe(&mut dispatcher, R2), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 10), (R2, 0)], 0, 10));
    assert_eq!(dispatcher.capacity(), 0);

    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(state(&dispatcher), (vec![(R2, 0)], 0, 10));

    // Already requested upstream: nothing more is asked (GenStage #318).
    assert_eq!(ask(&mut dispatcher, R2, 10), 0);
    assert_eq!(state(&dispatcher), (vec![(R2, 0)], 10, 10));
    assert_eq!(dispatcher.capacity(), 10);
}

// Item 129.
#[test]
fn multiple_subscriptions_with_late_demand() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(subscribe(&mut dispatcher, R2), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 0)], 0, 0));

    assert_eq!(ask(&mut dispatcher, R1, 10), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 10), (R2, 0)], 0, 0));

    // The slowest consumer leaves: the others' demand is released.
    assert_eq!(dispatcher.cancel(R2), 10);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 10, 10));

    assert_eq!(ask(&mut dispatcher, R1, 10), 10);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 20, 20));
    assert_eq!(dispatcher.capacity(), 20);
}

// Item 130.
#[test]
fn subscribes_asks_and_dispatches_to_multiple_consumers() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(subscribe(&mut dispatcher, R2), 0);
    assert_eq!(ask(&mut dispatcher, R1, 3), 0);
    assert_eq!(ask(&mut dispatcher, R2, 2), 2);
    assert_eq!(state(&dispatcher), (vec![(R1, 1), (R2, 0)], 2, 2));

    // One batch fits all.
    let dispatched = dispatch(&mut dispatcher, &chars("ab"));
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, chars("ab")), (R2, chars("ab"))],
            leftover: vec![],
            copies: 2,
            discarded: 0
        }
    );
    assert_eq!(state(&dispatcher), (vec![(R1, 1), (R2, 0)], 0, 0));

    // A batch with leftover.
    assert_eq!(ask(&mut dispatcher, R2, 2), 1);
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 1)], 1, 1));
    let dispatched = dispatch(&mut dispatcher, &chars("cd"));
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, chars("c")), (R2, chars("c"))],
            leftover: chars("d"),
            copies: 1,
            discarded: 0
        }
    );
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 1)], 0, 0));

    // A batch with no demand.
    let dispatched = dispatch(&mut dispatcher, &chars("d"));
    assert_eq!((dispatched.sent, dispatched.leftover), (vec![], chars("d")));
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 1)], 0, 0));

    // A late subscriber blocks the dispatch until it asks.
    assert_eq!(ask(&mut dispatcher, R1, 1), 1);
    assert_eq!(subscribe(&mut dispatcher, R3), 0);
    let dispatched = dispatch(&mut dispatcher, &chars("de"));
    assert_eq!(
        (dispatched.sent, dispatched.leftover),
        (vec![], chars("de"))
    );
    assert_eq!(state(&dispatcher), (vec![(R1, 1), (R2, 1), (R3, 0)], 0, 1));

    // Even out.
    assert_eq!(ask(&mut dispatcher, R1, 2), 0);
    assert_eq!(ask(&mut dispatcher, R2, 2), 0);
    assert_eq!(ask(&mut dispatcher, R3, 3), 2);
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 0), (R3, 0)], 3, 3));
    let dispatched = dispatch(&mut dispatcher, &chars("def"));
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, chars("def")), (R2, chars("def")), (R3, chars("def"))],
            leftover: vec![],
            copies: 6,
            discarded: 0
        }
    );
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 0), (R3, 0)], 0, 0));
}

// Item 131.
#[test]
fn subscribes_asks_dispatches_and_repeats() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(ask(&mut dispatcher, R1, 10), 10);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 10, 10));

    let dispatched = dispatch(&mut dispatcher, &chars("abc"));
    assert_eq!(
        (dispatched.sent, dispatched.copies),
        (vec![(R1, chars("abc"))], 0)
    );
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 7, 7));

    assert_eq!(subscribe(&mut dispatcher, R2), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 7), (R2, 0)], 0, 7));

    assert_eq!(ask(&mut dispatcher, R2, 20), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 13)], 7, 7));

    let dispatched = dispatch(&mut dispatcher, &chars("defghij"));
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, chars("defghij")), (R2, chars("defghij"))],
            leftover: vec![],
            copies: 7,
            discarded: 0
        }
    );
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 13)], 0, 0));
}

// Item 132.
#[test]
fn a_cancelled_consumers_requested_demand_serves_the_next_subscriber() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(ask(&mut dispatcher, R1, 10), 10);
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(state(&dispatcher), (vec![], 0, 10));

    assert_eq!(subscribe(&mut dispatcher, R2), 0);
    assert_eq!(state(&dispatcher), (vec![(R2, 0)], 0, 10));
    assert_eq!(ask(&mut dispatcher, R2, 5), 0);
    assert_eq!(state(&dispatcher), (vec![(R2, 0)], 5, 10));

    let dispatched = dispatch(&mut dispatcher, &chars("abc"));
    assert_eq!(
        (dispatched.sent, dispatched.leftover),
        (vec![(R2, chars("abc"))], vec![])
    );
    assert_eq!(state(&dispatcher), (vec![(R2, 0)], 2, 7));
}

// Item 133.
#[test]
fn cancelling_a_blocking_subscriber_releases_the_requested_demand() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(ask(&mut dispatcher, R1, 10), 10);
    assert_eq!(subscribe(&mut dispatcher, R2), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 10), (R2, 0)], 0, 10));

    assert_eq!(ask(&mut dispatcher, R1, 5), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 15), (R2, 0)], 0, 10));

    // Only what was not requested yet goes upstream.
    assert_eq!(dispatcher.cancel(R2), 5);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 15, 15));
    assert_eq!(dispatcher.capacity(), 15);
}

/// An event of item 134.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Keyed(&'static str);

// Item 134. GenStage sends each consumer an `ask` for the events its selector rejected, which
// reaches the dispatcher as an ask: (r1 rejects 1, r2 rejects 2). The port gives the rejected events
// back to the consumer's demand within the dispatch, with the same result. The event both selectors
// reject (`foo0000`) is counted as discarded, and each event sent to both as one copy (GenStage
// counts neither).
#[test]
fn selectors_filter_events_without_using_up_demand() {
    let mut dispatcher = BroadcastDispatcher::new();
    let pre = DispatchOptions::selector(|event: &Keyed| event.0.starts_with("pre"));
    let pref = DispatchOptions::selector(|event: &Keyed| event.0.starts_with("pref"));
    assert_eq!(dispatcher.subscribe(R1, &pre), Ok(0));
    assert_eq!(dispatcher.subscribe(R2, &pref), Ok(0));
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 0)], 0, 0));

    assert_eq!(ask(&mut dispatcher, R2, 4), 0);
    assert_eq!(ask(&mut dispatcher, R1, 4), 4);

    let events = [
        Keyed("pref-1234"),
        Keyed("pref-5678"),
        Keyed("pre0000"),
        Keyed("foo0000"),
    ];
    let dispatched = dispatch(&mut dispatcher, &events);
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, events[..3].to_vec()), (R2, events[..2].to_vec())],
            leftover: vec![],
            copies: 2,
            discarded: 1,
        }
    );
    // GenStage's self-asks of 1 (r1) and 2 (r2): the one event both can take again is waiting,
    // and requested upstream.
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 1)], 1, 1));
    assert_eq!(dispatcher.capacity(), 1);
}

// Not a GenStage item: a selector that panics (a bug in the user's code) fails the stage, whose
// restarted value goes on with the same dispatcher; the dispatcher is left exactly as it was, and
// the call puts nothing in the outbox, even when the consumer before it was already served.
#[test]
fn a_selector_that_panics_leaves_the_dispatcher_as_it_was() {
    let mut dispatcher = BroadcastDispatcher::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    let fussy = DispatchOptions::selector(|event: &char| {
        assert!(*event != 'x', "the selector panics on x");
        event.is_alphabetic()
    });
    assert_eq!(dispatcher.subscribe(R2, &fussy), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 5), 0);
    assert_eq!(ask(&mut dispatcher, R2, 3), 3);
    let before = state(&dispatcher);
    assert_eq!(before, (vec![(R1, 2), (R2, 0)], 3, 3));

    let mut sent = Vec::new();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut out = Outbox::new(&mut sent);
        dispatcher.dispatch(chars("axb"), &mut out)
    }));
    assert!(panicked.is_err(), "the selector panicked");
    assert_eq!(sent, Vec::new(), "nothing was put in the outbox");
    assert_eq!(state(&dispatcher), before);

    // The restarted stage's next batch goes out as if the failed one had never been.
    let dispatched = dispatch(&mut dispatcher, &chars("a1b"));
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, chars("a1b")), (R2, chars("ab"))],
            leftover: vec![],
            copies: 2,
            discarded: 0,
        }
    );
    // r2's rejected `1` goes back to its demand: one more event both can take.
    assert_eq!(state(&dispatcher), (vec![(R1, 1), (R2, 0)], 1, 1));
}

// Not a GenStage item: a consumer whose selector rejects a whole batch is sent nothing (GenStage
// sends it an empty list), and its demand stays whole.
#[test]
fn a_consumer_whose_selector_rejects_everything_is_sent_nothing() {
    let mut dispatcher = BroadcastDispatcher::new();
    assert_eq!(dispatcher.subscribe(R1, &DispatchOptions::none()), Ok(0));
    let odd = DispatchOptions::selector(|n: &u32| n % 2 == 1);
    assert_eq!(dispatcher.subscribe(R2, &odd), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 3), 0);
    assert_eq!(ask(&mut dispatcher, R2, 3), 3);

    let dispatched = dispatch(&mut dispatcher, &[2, 4, 6]);
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, vec![2, 4, 6])],
            leftover: vec![],
            copies: 0,
            discarded: 0
        }
    );
    // R1 is spent, R2 still has its 3: nothing is waiting until R1 asks again.
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 3)], 0, 0));
    assert_eq!(ask(&mut dispatcher, R1, 2), 2);
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 1)], 2, 2));
}

// Not a GenStage item: with a single consumer whose selector rejects an event, that event goes to
// no one and is counted as discarded (GenStage sends an empty list and counts nothing).
#[test]
fn an_event_no_selector_accepts_is_discarded() {
    let mut dispatcher = BroadcastDispatcher::new();
    let fives = DispatchOptions::selector(|n: &u32| n.is_multiple_of(5));
    assert_eq!(dispatcher.subscribe(R1, &fives), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 4), 4);
    let dispatched = dispatch(&mut dispatcher, &[3, 4, 5, 6, 7]);
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, vec![5])],
            leftover: vec![7],
            copies: 0,
            discarded: 3
        }
    );
    // The three rejected events are asked again: R1 still wants 3.
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 3, 3));
}

// Item 136, for a subscription id (GenStage: the same pid, with another reference): a second
// subscription with an id already registered is refused, and the state is unchanged.
#[test]
fn a_duplicate_subscription_is_refused_and_the_state_unchanged() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(subscribe(&mut dispatcher, R1), 0);
    assert_eq!(ask(&mut dispatcher, R1, 4), 4);
    let error = dispatcher
        .subscribe(R1, &DispatchOptions::none())
        .unwrap_err();
    assert_eq!(error.to_string(), "subscription 1 is already registered");
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], 4, 4));
    assert_eq!(dispatcher.consumers(), 1);
}

// Not a GenStage item: a partition is an option a broadcast does not use, and it is refused rather
// than ignored.
#[test]
fn a_partition_is_refused() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    let error = dispatcher
        .subscribe(R1, &DispatchOptions::partition(0))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "a broadcast dispatcher has no partitions: a subscription to it takes every event, or \
         those its selector accepts"
    );
    assert_eq!(dispatcher.consumers(), 0);
    assert!(Dispatcher::<char>::selects(&dispatcher));
    assert_eq!(Dispatcher::<char>::partitions(&dispatcher), None);
}

// §2 BroadcastDispatcher: the capacity is what every consumer can take now; an ask from a
// subscription the dispatcher does not hold changes nothing.
#[test]
fn capacity_is_the_demand_every_consumer_shares() {
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    assert_eq!(dispatcher.capacity(), 0);
    assert_eq!(ask(&mut dispatcher, R1, 5), 0);
    assert_eq!(dispatcher.capacity(), 0);
    subscribe(&mut dispatcher, R1);
    subscribe(&mut dispatcher, R2);
    ask(&mut dispatcher, R1, 7);
    ask(&mut dispatcher, R2, 4);
    assert_eq!(dispatcher.capacity(), 4);
    let dispatched = dispatch(&mut dispatcher, &chars("abcd"));
    assert_eq!(dispatched.leftover, vec![]);
    assert_eq!(dispatcher.capacity(), 0);
    assert_eq!(dispatcher.cancel(R2), 3);
    assert_eq!(dispatcher.capacity(), 3);
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(dispatcher.capacity(), 0);
}

// ---------------------------------------------------------------------------------------------
// Property: random subscribes, asks, cancels and dispatches.

/// What the property does, in order.
#[derive(Debug, Clone)]
enum Op {
    /// A new subscription, with a selector keeping the events `n % modulus == rest` when
    /// `Some((modulus, rest))`.
    Subscribe(Option<(u64, u64)>),
    /// The `n`th live subscription (modulo their number) asks for `demand`.
    Ask(usize, usize),
    /// The `n`th live subscription (modulo their number) leaves.
    Cancel(usize),
    /// The producer emits `count` new events.
    Emit(usize),
    /// The producer emits at most `capacity()` new events (`count` capped).
    EmitWithin(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => prop_oneof![
            Just(None),
            (2u64..4).prop_flat_map(|modulus| (Just(modulus), 0..modulus)).prop_map(Some),
        ]
        .prop_map(Op::Subscribe),
        5 => (0usize..8, 1usize..12).prop_map(|(n, demand)| Op::Ask(n, demand)),
        1 => (0usize..8).prop_map(Op::Cancel),
        4 => (1usize..15).prop_map(Op::Emit),
        2 => (1usize..15).prop_map(Op::EmitWithin),
    ]
}

/// One subscription, as the test sees it.
struct Consumer {
    selector: Option<(u64, u64)>,
    asked: usize,
    received: Vec<u64>,
}

impl Consumer {
    fn accepts(&self, event: u64) -> bool {
        self.selector
            .is_none_or(|(modulus, rest)| event % modulus == rest)
    }
}

/// A model of the producer's loop around the dispatcher (`EventPath`): leftover events wait in a
/// buffer, which is served first, up to `capacity()`, after every ask, cancel and emit.
struct Model {
    dispatcher: BroadcastDispatcher<u64>,
    /// Live subscriptions, by id.
    consumers: BTreeMap<SubscriptionId, Consumer>,
    /// The id of the next subscription.
    next_id: SubscriptionId,
    next_event: u64,
    buffer: Vec<u64>,
    discarded: usize,
    copies: usize,
    /// Events delivered (each counted once, whatever the number of consumers).
    delivered: usize,
}

impl Model {
    fn new() -> Self {
        Model {
            dispatcher: BroadcastDispatcher::new(),
            consumers: BTreeMap::new(),
            next_id: 1,
            next_event: 0,
            buffer: Vec::new(),
            discarded: 0,
            copies: 0,
            delivered: 0,
        }
    }

    fn nth(&self, n: usize) -> Option<SubscriptionId> {
        let len = self.consumers.len();
        (len > 0)
            .then(|| n % len)
            .and_then(|at| self.consumers.keys().nth(at).copied())
    }

    /// Hands `events` to the dispatcher and checks what it did with them; returns the leftover.
    fn dispatch(&mut self, events: Vec<u64>) -> Vec<u64> {
        let mut sent = Vec::new();
        let mut out = Outbox::new(&mut sent);
        let leftover = self
            .dispatcher
            .dispatch(events.clone(), &mut out)
            .expect("a broadcast dispatcher always dispatches");
        let (copies, discarded) = (out.copies(), out.discarded());
        // The leftover is the tail, in order; the head went to every consumer that accepts it.
        let taken = events.len() - leftover.len();
        assert_eq!(
            leftover,
            events[taken..],
            "leftover is the tail of the batch"
        );
        let head = &events[..taken];
        let mut expected_discarded = 0;
        let mut expected_copies = 0;
        for &event in head {
            let takers = self.consumers.values().filter(|c| c.accepts(event)).count();
            if takers == 0 {
                expected_discarded += 1;
            } else {
                expected_copies += takers - 1;
            }
        }
        assert_eq!(
            (copies, discarded),
            (expected_copies, expected_discarded),
            "copies and discards of {head:?}"
        );
        let mut seen = Vec::new();
        for (sub, batch) in sent {
            assert!(!batch.is_empty(), "an empty batch is never sent");
            assert!(!seen.contains(&sub), "one batch per consumer and dispatch");
            seen.push(sub);
            let consumer = self
                .consumers
                .get_mut(&sub)
                .expect("events go only to live subscriptions");
            let wanted: Vec<u64> = head
                .iter()
                .copied()
                .filter(|&e| consumer.accepts(e))
                .collect();
            assert_eq!(batch, wanted, "subscription {sub} gets what it accepts");
            consumer.received.extend(batch);
            assert!(
                consumer.received.len() <= consumer.asked,
                "subscription {sub} was sent more than it asked for"
            );
        }
        for (sub, consumer) in &self.consumers {
            if !seen.contains(sub) {
                assert!(
                    head.iter().all(|&e| !consumer.accepts(e)),
                    "subscription {sub} was left out"
                );
            }
        }
        self.delivered += taken - expected_discarded;
        self.discarded += discarded;
        self.copies += copies;
        leftover
    }

    /// Serves the buffer up to `capacity()`, as the loop does: at most `capacity()` events must
    /// all be taken.
    fn drain(&mut self) {
        loop {
            let capacity = self.dispatcher.capacity();
            if capacity == 0 || self.buffer.is_empty() {
                return;
            }
            let rest = self.buffer.split_off(capacity.min(self.buffer.len()));
            let taken = std::mem::replace(&mut self.buffer, rest);
            let leftover = self.dispatch(taken);
            assert_eq!(leftover, vec![], "capacity() events left some over");
        }
    }

    fn fresh(&mut self, count: usize) -> Vec<u64> {
        let events = (self.next_event..self.next_event + count as u64).collect();
        self.next_event += count as u64;
        events
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Subscribe(selector) => {
                let sub = self.next_id;
                self.next_id += 1;
                let options = match selector {
                    None => DispatchOptions::none(),
                    Some((modulus, rest)) => {
                        DispatchOptions::selector(move |n: &u64| n % modulus == rest)
                    }
                };
                assert_eq!(self.dispatcher.subscribe(sub, &options), Ok(0));
                self.consumers.insert(
                    sub,
                    Consumer {
                        selector,
                        asked: 0,
                        received: Vec::new(),
                    },
                );
            }
            Op::Ask(n, demand) => {
                let Some(sub) = self.nth(n) else {
                    return;
                };
                if let Some(consumer) = self.consumers.get_mut(&sub) {
                    consumer.asked += demand;
                }
                let mut sent = Vec::new();
                self.dispatcher
                    .ask(sub, demand, &mut Outbox::new(&mut sent));
                assert_eq!(sent, vec![]);
                self.drain();
            }
            Op::Cancel(n) => {
                let Some(sub) = self.nth(n) else {
                    return;
                };
                self.dispatcher.cancel(sub);
                self.consumers.remove(&sub);
                self.drain();
            }
            Op::Emit(count) => {
                let events = self.fresh(count);
                self.emit(events);
            }
            Op::EmitWithin(count) => {
                if !self.buffer.is_empty() {
                    return;
                }
                let count = count.min(self.dispatcher.capacity());
                let events = self.fresh(count);
                let leftover = self.dispatch(events);
                assert_eq!(leftover, vec![], "capacity() events left some over");
            }
        }
        self.check();
    }

    /// As `EventPath::emit`: behind the buffer if it holds anything, else dispatched at once.
    fn emit(&mut self, events: Vec<u64>) {
        if self.buffer.is_empty() {
            let leftover = self.dispatch(events);
            self.buffer.extend(leftover);
        } else {
            self.buffer.extend(events);
        }
        self.drain();
    }

    fn check(&self) {
        // Every event handed in is delivered (to one consumer or more), discarded, or buffered.
        assert_eq!(
            self.next_event as usize,
            self.delivered + self.discarded + self.buffer.len(),
            "an event is lost or counted twice"
        );
        assert_eq!(Dispatcher::<u64>::held(&self.dispatcher), 0);
        assert_eq!(Dispatcher::<u64>::stranded(&self.dispatcher), 0);
        assert_eq!(self.dispatcher.consumers(), self.consumers.len());
        // Each consumer's own demand plus what all can take is what it asked and was not sent:
        // the demand never drifts, and the capacity is the smallest of them.
        let demands: BTreeMap<_, _> = self.dispatcher.demands().into_iter().collect();
        for (sub, consumer) in &self.consumers {
            let unmet = consumer.asked - consumer.received.len();
            assert_eq!(
                demands[sub] + self.dispatcher.waiting(),
                unmet,
                "the demand of subscription {sub}"
            );
            // Per-consumer order: events are numbered in emission order.
            assert!(consumer.received.windows(2).all(|w| w[0] < w[1]));
        }
        let smallest = self
            .consumers
            .values()
            .map(|c| c.asked - c.received.len())
            .min()
            .unwrap_or(0);
        assert_eq!(self.dispatcher.capacity(), smallest, "capacity");
        // The buffer is served while any consumer can take something.
        assert!(self.buffer.is_empty() || self.dispatcher.capacity() == 0);
    }
}

/// A consumer may ask for any `usize`, however many times: every demand saturates at `usize::MAX`
/// (an overflow panicked in a debug build), and what `waiting` cannot take stays in the consumers'
/// own demands.
#[test]
fn asking_usize_max_twice_saturates() {
    const MAX: usize = usize::MAX;
    let mut dispatcher = BroadcastDispatcher::<char>::new();
    subscribe(&mut dispatcher, R1);
    assert_eq!(ask(&mut dispatcher, R1, MAX), MAX);
    assert_eq!(state(&dispatcher), (vec![(R1, 0)], MAX, MAX));
    assert_eq!(ask(&mut dispatcher, R1, MAX), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, MAX)], MAX, MAX));
    assert_eq!(dispatcher.capacity(), MAX);

    let dispatched = dispatch(&mut dispatcher, &chars("abc"));
    assert_eq!(dispatched.sent, vec![(R1, chars("abc"))]);
    assert!(dispatched.leftover.is_empty());
    assert_eq!(state(&dispatcher), (vec![(R1, MAX)], MAX - 3, MAX - 3));
    // The next ask moves what now fits from its own demand into `waiting`.
    assert_eq!(ask(&mut dispatcher, R1, 1), 3);
    assert_eq!(state(&dispatcher), (vec![(R1, MAX - 3)], MAX, MAX));

    // A newcomer: what everyone could take goes back to the consumers' own demands, saturating.
    subscribe(&mut dispatcher, R2);
    assert_eq!(state(&dispatcher), (vec![(R1, MAX), (R2, 0)], 0, MAX));
    assert_eq!(ask(&mut dispatcher, R2, MAX), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, 0)], MAX, MAX));
    assert_eq!(ask(&mut dispatcher, R2, MAX), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, 0), (R2, MAX)], MAX, MAX));
    assert_eq!(dispatcher.capacity(), MAX);
}

/// The demand a selector gives back for the events it rejects saturates too.
#[test]
fn a_selectors_rejected_events_saturate_its_demand() {
    const MAX: usize = usize::MAX;
    let mut dispatcher = BroadcastDispatcher::<u32>::new();
    let evens = DispatchOptions::selector(|n: &u32| n.is_multiple_of(2));
    assert_eq!(dispatcher.subscribe(R1, &evens), Ok(0));
    assert_eq!(dispatcher.subscribe(R2, &DispatchOptions::none()), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, MAX), 0);
    assert_eq!(ask(&mut dispatcher, R2, MAX), MAX);
    assert_eq!(ask(&mut dispatcher, R1, MAX), 0);
    assert_eq!(ask(&mut dispatcher, R2, MAX), 0);
    assert_eq!(state(&dispatcher), (vec![(R1, MAX), (R2, MAX)], MAX, MAX));

    let dispatched = dispatch(&mut dispatcher, &[1, 2, 3, 4]);
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, vec![2, 4]), (R2, vec![1, 2, 3, 4])],
            leftover: vec![],
            copies: 2,
            discarded: 0,
        }
    );
    assert_eq!(
        state(&dispatcher),
        (vec![(R1, MAX - 4), (R2, MAX - 4)], MAX, MAX)
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_event_reaches_every_consumer_that_accepts_it_once_in_order(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let mut model = Model::new();
        for op in &ops {
            model.apply(op);
        }
    }
}
