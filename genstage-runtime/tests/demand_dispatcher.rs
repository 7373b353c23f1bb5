//! `DemandDispatcher` driven directly, without tokio, asserting exact states as GenStage's
//! `demand_dispatcher_test.exs` does.
//!
//! Ports GenStage's test items (numbers from `genstage-semantics.md` §4): 117, 118, 119, 120, 121,
//! 122 and 125, plus the port's fix of GenStage #311 (§1.13): after a consumer leaves with unmet
//! demand, a new consumer's ask is partly absorbed upstream, but `capacity()` still reports its full
//! demand so the producer drains its buffer.
//!
//! Not ported: item 123 (`shuffle_demands_on_first_dispatch`), which this port does not implement;
//! item 124 (`info` is sent at once), since the port's dispatcher has no `info` callback (the buffer
//! orders info markers, see `tests/buffer.rs`).

use std::fmt;
use std::sync::{Arc, Mutex};

use genstage_runtime::dispatcher::{
    Deliveries, DemandDispatcher, DispatchOptions, Dispatcher, Outbox, SubscriptionId,
};

/// The trait's `capacity`, which is generic over the event type; these tests use `char` events.
fn capacity(dispatcher: &DemandDispatcher) -> usize {
    Dispatcher::<char>::capacity(dispatcher)
}

fn consumers(dispatcher: &DemandDispatcher) -> usize {
    Dispatcher::<char>::consumers(dispatcher)
}

/// Dispatches `events`; returns the deliveries and the leftover.
fn dispatch(dispatcher: &mut DemandDispatcher, events: &str) -> (Deliveries<char>, Vec<char>) {
    let mut deliveries = Vec::new();
    let leftover = Dispatcher::dispatch(
        dispatcher,
        events.chars().collect(),
        &mut Outbox::new(&mut deliveries),
    );
    (
        deliveries,
        leftover.expect("a demand dispatcher always dispatches"),
    )
}

fn chars(events: &str) -> Vec<char> {
    events.chars().collect()
}

const R1: SubscriptionId = 1;
const R2: SubscriptionId = 2;
const R3: SubscriptionId = 3;

// Item 117.
#[test]
fn subscribe_adds_zero_demand_and_cancel_removes_it() {
    let mut dispatcher = DemandDispatcher::new();
    assert_eq!(dispatcher.subscribe(R1), Ok(0));
    assert_eq!(dispatcher.demands(), &[(0, R1)]);
    assert_eq!(dispatcher.pending(), 0);
    assert_eq!(consumers(&dispatcher), 1);

    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(dispatcher.demands(), &[]);
    assert_eq!(dispatcher.pending(), 0);
    assert_eq!(consumers(&dispatcher), 0);
}

// Not a GenStage item: the port's dispatcher refuses a duplicate subscription id itself.
#[test]
fn duplicate_subscription_is_refused_and_state_unchanged() {
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(R1).unwrap();
    assert_eq!(dispatcher.ask(R1, 4), 4);
    let error = dispatcher.subscribe(R1).unwrap_err();
    assert_eq!(error.to_string(), "subscription 1 is already registered");
    assert_eq!(dispatcher.demands(), &[(4, R1)]);
    assert_eq!(consumers(&dispatcher), 1);
}

// Item 118.
#[test]
fn cancel_with_unmet_demand_moves_it_to_pending() {
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(R1).unwrap();
    assert_eq!(dispatcher.ask(R1, 10), 10);
    assert_eq!(dispatcher.demands(), &[(10, R1)]);
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(dispatcher.demands(), &[]);
    assert_eq!(dispatcher.pending(), 10);

    // Resubscribe: the ask of 5 is covered by pending, so nothing goes upstream.
    assert_eq!(dispatcher.subscribe(R1), Ok(0));
    assert_eq!(dispatcher.demands(), &[(0, R1)]);
    assert_eq!(dispatcher.pending(), 10);
    assert_eq!(dispatcher.ask(R1, 5), 0);
    assert_eq!(dispatcher.demands(), &[(5, R1)]);
    assert_eq!(dispatcher.pending(), 5);
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(dispatcher.pending(), 10);

    // With no consumers everything is leftover, and each leftover event settles pending demand.
    let (deliveries, leftover) = dispatch(&mut dispatcher, "abc");
    assert_eq!(deliveries, vec![]);
    assert_eq!(leftover, chars("abc"));
    assert_eq!(dispatcher.pending(), 7);
    let (deliveries, leftover) = dispatch(&mut dispatcher, "defghijklm");
    assert_eq!(deliveries, vec![]);
    assert_eq!(leftover, chars("defghijklm"));
    assert_eq!(dispatcher.pending(), 0);
}

// Item 119.
#[test]
fn pending_of_a_cancelled_consumer_is_settled_by_leftover() {
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(R1).unwrap();
    dispatcher.subscribe(R2).unwrap();
    assert_eq!(dispatcher.ask(R1, 3), 3);
    assert_eq!(dispatcher.ask(R2, 3), 3);
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(dispatcher.pending(), 3);

    let (deliveries, leftover) = dispatch(&mut dispatcher, "abcde");
    assert_eq!(deliveries, vec![(R2, chars("abc"))]);
    assert_eq!(leftover, chars("de"));
    assert_eq!(dispatcher.pending(), 1);
    assert_eq!(dispatcher.demands(), &[(0, R2)]);
}

// Item 120.
#[test]
fn dispatch_sends_up_to_demand_and_returns_the_rest() {
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(R1).unwrap();
    assert_eq!(dispatcher.ask(R1, 3), 3);
    assert_eq!(dispatcher.demands(), &[(3, R1)]);

    let (deliveries, leftover) = dispatch(&mut dispatcher, "a");
    assert_eq!(deliveries, vec![(R1, chars("a"))]);
    assert_eq!(leftover, vec![]);
    assert_eq!(dispatcher.demands(), &[(2, R1)]);

    assert_eq!(dispatcher.ask(R1, 3), 3);
    assert_eq!(dispatcher.demands(), &[(5, R1)]);

    let (deliveries, leftover) = dispatch(&mut dispatcher, "bcdefgh");
    assert_eq!(deliveries, vec![(R1, chars("bcdef"))]);
    assert_eq!(leftover, chars("gh"));
    assert_eq!(dispatcher.demands(), &[(0, R1)]);

    let (deliveries, leftover) = dispatch(&mut dispatcher, "ij");
    assert_eq!(deliveries, vec![]);
    assert_eq!(leftover, chars("ij"));
    assert_eq!(dispatcher.demands(), &[(0, R1)]);
    assert_eq!(dispatcher.pending(), 0);
}

// Item 121.
#[test]
fn demands_stay_sorted_largest_first() {
    let mut dispatcher = DemandDispatcher::new();
    for sub in [R1, R2, R3] {
        dispatcher.subscribe(sub).unwrap();
    }
    assert_eq!(dispatcher.ask(R1, 4), 4);
    assert_eq!(dispatcher.ask(R2, 2), 2);
    assert_eq!(dispatcher.ask(R3, 3), 3);
    assert_eq!(dispatcher.demands(), &[(4, R1), (3, R3), (2, R2)]);

    assert_eq!(dispatcher.ask(R3, 2), 2);
    assert_eq!(dispatcher.demands(), &[(5, R3), (4, R1), (2, R2)]);

    assert_eq!(dispatcher.ask(R2, 4), 4);
    assert_eq!(dispatcher.demands(), &[(6, R2), (5, R3), (4, R1)]);
    assert_eq!(capacity(&dispatcher), 15);
}

// Item 122.
#[test]
fn dispatch_splits_across_consumers_largest_demand_first() {
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(R1).unwrap();
    dispatcher.subscribe(R2).unwrap();
    assert_eq!(dispatcher.ask(R1, 3), 3);
    assert_eq!(dispatcher.ask(R2, 2), 2);
    assert_eq!(dispatcher.demands(), &[(3, R1), (2, R2)]);

    // One batch fits all.
    let (deliveries, leftover) = dispatch(&mut dispatcher, "abcde");
    assert_eq!(deliveries, vec![(R1, chars("abc")), (R2, chars("de"))]);
    assert_eq!(leftover, vec![]);

    let (deliveries, leftover) = dispatch(&mut dispatcher, "abc");
    assert_eq!(deliveries, vec![]);
    assert_eq!(leftover, chars("abc"));
    assert_eq!(dispatcher.demands(), &[(0, R1), (0, R2)]);

    // Two batches with leftover; among equal demands the one that waited longest goes first.
    assert_eq!(dispatcher.ask(R1, 3), 3);
    assert_eq!(dispatcher.ask(R2, 3), 3);
    assert_eq!(dispatcher.demands(), &[(3, R1), (3, R2)]);

    let (deliveries, leftover) = dispatch(&mut dispatcher, "ab");
    assert_eq!(deliveries, vec![(R1, chars("ab"))]);
    assert_eq!(leftover, vec![]);
    assert_eq!(dispatcher.demands(), &[(3, R2), (1, R1)]);

    let (deliveries, leftover) = dispatch(&mut dispatcher, "cd");
    assert_eq!(deliveries, vec![(R2, chars("cd"))]);
    assert_eq!(leftover, vec![]);
    assert_eq!(dispatcher.demands(), &[(1, R1), (1, R2)]);

    // Eliminate the leftover.
    let (deliveries, leftover) = dispatch(&mut dispatcher, "efg");
    assert_eq!(deliveries, vec![(R1, chars("e")), (R2, chars("f"))]);
    assert_eq!(leftover, chars("g"));
    assert_eq!(dispatcher.demands(), &[(0, R1), (0, R2)]);
    assert_eq!(capacity(&dispatcher), 0);
}

/// `dispatch_whole(len)` on one dispatcher, `dispatch` of `len` events on a copy: the shortcut
/// must name the consumer `dispatch` sends everything to, and leave the same state; or decline and
/// change nothing when `dispatch` would split the batch or leave some over.
fn assert_whole_agrees(dispatcher: &mut DemandDispatcher, events: &str) -> Option<SubscriptionId> {
    let before = dispatcher.clone();
    let mut reference = dispatcher.clone();
    let (deliveries, leftover) = dispatch(&mut reference, events);
    let whole = Dispatcher::<char>::dispatch_whole(dispatcher, events.len());
    match whole {
        Some(sub) => {
            assert_eq!(deliveries, vec![(sub, chars(events))]);
            assert_eq!(leftover, vec![]);
            assert_eq!(dispatcher.demands(), reference.demands());
            assert_eq!(capacity(dispatcher), capacity(&reference));
            assert_eq!(dispatcher.pending(), reference.pending());
        }
        None => {
            assert!(deliveries.len() != 1 || !leftover.is_empty());
            assert_eq!(dispatcher.demands(), before.demands());
            assert_eq!(capacity(dispatcher), capacity(&before));
        }
    }
    whole
}

#[test]
fn dispatch_whole_is_dispatch_when_one_consumer_takes_everything() {
    let mut dispatcher = DemandDispatcher::new();
    for sub in [R1, R2, R3] {
        dispatcher.subscribe(sub).unwrap();
    }
    // No demand at all, then no empty batch.
    assert_eq!(assert_whole_agrees(&mut dispatcher, "a"), None);
    assert_eq!(assert_whole_agrees(&mut dispatcher, ""), None);

    dispatcher.ask(R1, 4);
    dispatcher.ask(R2, 2);
    dispatcher.ask(R3, 3);
    // The largest demand takes it and moves down behind those with at least its new demand.
    assert_eq!(assert_whole_agrees(&mut dispatcher, "ab"), Some(R1));
    assert_eq!(dispatcher.demands(), &[(3, R3), (2, R2), (2, R1)]);
    // Exactly the first consumer's demand.
    assert_eq!(assert_whole_agrees(&mut dispatcher, "cde"), Some(R3));
    assert_eq!(dispatcher.demands(), &[(2, R2), (2, R1), (0, R3)]);
    // More than any one demand: `dispatch` would split it.
    assert_eq!(assert_whole_agrees(&mut dispatcher, "fgh"), None);
    assert_eq!(capacity(&dispatcher), 4);

    // Demand absorbed by pending is still the consumer's to receive.
    dispatcher.cancel(R2);
    assert_eq!(dispatcher.pending(), 2);
    assert_eq!(assert_whole_agrees(&mut dispatcher, "ij"), Some(R1));
    assert_eq!(dispatcher.pending(), 2);
}

// §2 DemandDispatcher: capacity is the sum of the consumers' demands, through asks, dispatches
// and cancels.
#[test]
fn capacity_is_the_sum_of_consumer_demands() {
    let mut dispatcher = DemandDispatcher::new();
    assert_eq!(capacity(&dispatcher), 0);
    dispatcher.subscribe(R1).unwrap();
    dispatcher.subscribe(R2).unwrap();
    dispatcher.ask(R1, 3);
    dispatcher.ask(R2, 5);
    assert_eq!(capacity(&dispatcher), 8);
    let (deliveries, _) = dispatch(&mut dispatcher, "abcdef");
    assert_eq!(deliveries, vec![(R2, chars("abcde")), (R1, chars("f"))]);
    assert_eq!(dispatcher.demands(), &[(2, R1), (0, R2)]);
    assert_eq!(capacity(&dispatcher), 2);
    // A cancelled consumer's unmet demand leaves the capacity and becomes pending.
    dispatcher.cancel(R1);
    assert_eq!(dispatcher.pending(), 2);
    assert_eq!(capacity(&dispatcher), 0);
    // An ask from a subscription the dispatcher does not know changes nothing.
    assert_eq!(dispatcher.ask(R3, 4), 0);
    assert_eq!(capacity(&dispatcher), 0);
    assert_eq!(dispatcher.pending(), 2);
}

// GenStage #311 (§1.13), fixed in the port: the new consumer's ask is absorbed by pending demand
// upstream, yet `capacity()` reports its whole demand, so the producer loop drains its buffer.
#[test]
fn capacity_reports_full_demand_while_pending_absorbs_the_upstream_ask() {
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(R1).unwrap();
    assert_eq!(dispatcher.ask(R1, 10), 10);
    dispatcher.cancel(R1);
    assert_eq!(dispatcher.pending(), 10);
    assert_eq!(capacity(&dispatcher), 0);

    dispatcher.subscribe(R2).unwrap();
    assert_eq!(dispatcher.ask(R2, 5), 0, "covered by pending upstream");
    assert_eq!(dispatcher.pending(), 5);
    assert_eq!(capacity(&dispatcher), 5, "but the consumer can take 5 now");

    // The loop drains 5 buffered events by capacity: all reach the consumer.
    let (deliveries, leftover) = dispatch(&mut dispatcher, "vwxyz");
    assert_eq!(deliveries, vec![(R2, chars("vwxyz"))]);
    assert_eq!(leftover, vec![]);
    assert_eq!(capacity(&dispatcher), 0);

    // The next ask uses up the rest of pending, then goes upstream in full.
    assert_eq!(dispatcher.ask(R2, 8), 3);
    assert_eq!(dispatcher.pending(), 0);
    assert_eq!(capacity(&dispatcher), 8);
    assert_eq!(dispatcher.ask(R2, 2), 2);
    assert_eq!(capacity(&dispatcher), 10);
}

/// A `tracing` subscriber that records every event's level and message, for item 125.
#[derive(Clone, Default)]
struct CaptureLogs(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl CaptureLogs {
    fn take(&self) -> Vec<(tracing::Level, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for CaptureLogs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut visitor = MessageVisitor(String::new());
        event.record(&mut visitor);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), visitor.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

fn asks_logged(
    mut dispatcher: DemandDispatcher,
    asks: &[(SubscriptionId, usize)],
) -> (Vec<usize>, Vec<(tracing::Level, String)>) {
    let logs = CaptureLogs::default();
    let upstream = tracing::subscriber::with_default(logs.clone(), || {
        asks.iter()
            .map(|&(sub, n)| {
                dispatcher.subscribe(sub).ok();
                dispatcher.ask(sub, n)
            })
            .collect()
    });
    (upstream, logs.take())
}

// Item 125: an ask above the expected maximum is served in full and logs a warning.
#[test]
fn ask_above_configured_max_demand_warns_and_is_served() {
    let (upstream, logs) = asks_logged(DemandDispatcher::with_max_demand(3), &[(R1, 3), (R2, 4)]);
    assert_eq!(upstream, vec![3, 4], "nothing is enforced");
    assert_eq!(logs.len(), 1, "only the ask of 4 warns: {logs:?}");
    assert_eq!(logs[0].0, tracing::Level::WARN);
    assert!(
        logs[0]
            .1
            .contains("GenStage producer DemandDispatcher expects a maximum demand of 3"),
        "{logs:?}"
    );
}

// Item 125, as GenStage's own test runs it: with no option, the first ask sets the maximum.
#[test]
fn first_ask_sets_the_expected_max_demand() {
    let (upstream, logs) = asks_logged(DemandDispatcher::new(), &[(R1, 3), (R2, 3), (R3, 4)]);
    assert_eq!(upstream, vec![3, 3, 4]);
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0]
        .1
        .contains("GenStage producer DemandDispatcher expects a maximum demand of 3"));

    // Asks at or below the maximum never warn.
    let (upstream, logs) = asks_logged(DemandDispatcher::new(), &[(R1, 10), (R2, 1), (R3, 10)]);
    assert_eq!(upstream, vec![10, 1, 10]);
    assert_eq!(logs, vec![]);
}

/// The dispatcher takes any `usize` demand: its sums saturate instead of overflowing (a debug panic,
/// a wrap in release).
#[test]
fn demand_sums_saturate() {
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(1).unwrap();
    dispatcher.subscribe(2).unwrap();
    dispatcher.ask(1, usize::MAX);
    dispatcher.ask(2, usize::MAX);
    dispatcher.ask(1, 1);
    assert_eq!(capacity(&dispatcher), usize::MAX);
    let (deliveries, leftover) = dispatch(&mut dispatcher, "abc");
    assert!(leftover.is_empty());
    assert_eq!(deliveries, vec![(1, chars("abc"))]);
    dispatcher.cancel(1);
    dispatcher.cancel(2);
    assert_eq!(capacity(&dispatcher), 0);
}

// Not a GenStage item: options the demand dispatcher does not use are refused, not ignored.
#[test]
fn a_partition_or_a_selector_is_refused() {
    let mut dispatcher = DemandDispatcher::new();
    let partition =
        Dispatcher::<char>::subscribe(&mut dispatcher, R1, &DispatchOptions::partition(0));
    let selector = Dispatcher::subscribe(
        &mut dispatcher,
        R2,
        &DispatchOptions::selector(|c: &char| *c == 'a'),
    );
    for refused in [partition, selector] {
        assert_eq!(
            refused.unwrap_err().to_string(),
            "a demand dispatcher takes neither a partition nor a selector: partitions need \
             `Dispatch::partition`, selectors `Dispatch::broadcast`"
        );
    }
    assert_eq!(consumers(&dispatcher), 0);
}
