//! Consumer-side demand accounting (`genstage_runtime::demand`), without tokio.
//!
//! Ports GenStage's test items (numbers from `genstage-semantics.md` §4):
//! - 2, 3, 4, 5: producer→consumer demand with max/min 1000/500, 100/80, 100/20 and 1/0;
//! - 45: the `bad_opts` validation messages;
//! - §1.3's worked numbers: the ⚠ 1000/750 moduledoc example (the code asks 300, not 250) and the
//!   clamping of events received in excess.
//!
//! The scenarios are driven as the consumer loop drives them: every producer message goes through
//! `Batches::next_batch(limits.batch_size())`, every batch through `ConsumerDemand::on_batch`, and
//! each non-zero ask goes back to the producer, which answers it with new messages.

use std::collections::VecDeque;
use std::ops::Range;

use genstage_runtime::demand::{
    BatchDemand, Batches, ConsumerDemand, DemandLimits, DEFAULT_MAX_DEMAND,
};
use genstage_runtime::{DemandError, SubscribeOptions};

/// One subscription to GenStage's test `Counter` producer, which answers an ask of `n` with the
/// next `n` integers. With `chunk`, it sends them in messages of at most `chunk` events (a producer
/// "emitting 100 at a time"); otherwise as one message.
struct CounterSubscription {
    limits: DemandLimits,
    demand: ConsumerDemand,
    counter: u64,
    chunk: Option<usize>,
    /// Messages sent by the producer and not yet handled by the consumer, oldest first.
    mailbox: VecDeque<Vec<u64>>,
    /// Every batch handed to `handle_events`, with the ask sent after it.
    handled: Vec<(Vec<u64>, usize)>,
}

impl CounterSubscription {
    /// Subscribes: the consumer sends its initial ask of `max_demand`.
    fn subscribe(limits: DemandLimits, chunk: Option<usize>) -> Self {
        let mut demand = ConsumerDemand::new(limits);
        let initial = demand.initial_ask();
        assert_eq!(initial, limits.max(), "the initial ask is max_demand");
        let mut subscription = CounterSubscription {
            limits,
            demand,
            counter: 0,
            chunk,
            mailbox: VecDeque::new(),
            handled: Vec::new(),
        };
        subscription.producer_asked(initial);
        subscription
    }

    /// The producer's side: emit `n` events, in one message or in chunks.
    fn producer_asked(&mut self, n: usize) {
        let mut left = n as u64;
        while left > 0 {
            let len = self.chunk.map_or(left, |chunk| left.min(chunk as u64));
            self.mailbox
                .push_back((self.counter..self.counter + len).collect());
            self.counter += len;
            left -= len;
        }
    }

    /// The consumer's side: handles one message, batch by batch, asking after each batch.
    fn handle_message(&mut self) {
        let message = self.mailbox.pop_front().expect("a message is waiting");
        let mut batches = Batches::new(message);
        while let Some(batch) = batches.next_batch(self.limits.batch_size()) {
            let BatchDemand { excess, ask } = self.demand.on_batch(batch.len());
            assert_eq!(excess, 0, "Counter never sends more than asked");
            self.handled.push((batch, ask));
            if ask > 0 {
                self.producer_asked(ask);
            }
        }
    }

    /// Runs until at least `batches` batches have been handled.
    fn run(&mut self, batches: usize) -> &[(Vec<u64>, usize)] {
        while self.handled.len() < batches {
            self.handle_message();
        }
        &self.handled[..batches]
    }
}

/// `(events, ask)` pairs from ranges, for comparing with [`CounterSubscription::handled`].
fn expected(batches: &[(Range<u64>, usize)]) -> Vec<(Vec<u64>, usize)> {
    batches
        .iter()
        .map(|(range, ask)| (range.clone().collect(), *ask))
        .collect()
}

fn limits(max: usize, min: usize) -> DemandLimits {
    DemandLimits::new(max, min).unwrap()
}

// Item 2.
#[test]
fn default_demand_gives_batches_of_500_each_asking_500() {
    let limits = DemandLimits::from_options(&SubscribeOptions::new()).unwrap();
    assert_eq!((limits.max(), limits.min()), (1000, 500));
    let mut subscription = CounterSubscription::subscribe(limits, None);
    assert_eq!(
        subscription.run(4),
        expected(&[
            (0..500, 500),
            (500..1000, 500),
            (1000..1500, 500),
            (1500..2000, 500),
        ])
    );
}

// Item 3.
#[test]
fn min_demand_80_percent_gives_batches_of_20_each_asking_20() {
    let mut subscription = CounterSubscription::subscribe(limits(100, 80), None);
    // 0..19, 20..39, ..., 1000..1019: 51 batches, every one refilling the 20 it used.
    let want: Vec<(Range<u64>, usize)> = (0..51u64).map(|i| (i * 20..i * 20 + 20, 20)).collect();
    assert_eq!(subscription.run(51), expected(&want));
    assert_eq!(subscription.handled[50].0, (1000..1020).collect::<Vec<_>>());
}

// Item 4.
#[test]
fn min_demand_20_percent_gives_the_80_20_80_80_20_sequence() {
    let mut subscription = CounterSubscription::subscribe(limits(100, 20), None);
    assert_eq!(
        subscription.run(8),
        expected(&[
            (0..80, 80),     // outstanding 20 <= 20: refill 80
            (80..100, 0),    // outstanding 80: no ask
            (100..180, 100), // outstanding 0: refill 100
            (180..260, 80),  // outstanding 20: refill 80
            (260..280, 0),   // outstanding 80
            (280..360, 100), // the cycle repeats
            (360..440, 80),
            (440..460, 0),
        ])
    );
}

// Item 5.
#[test]
fn max_demand_1_gives_one_event_per_batch_each_asking_1() {
    let mut subscription = CounterSubscription::subscribe(limits(1, 0), None);
    assert_eq!(
        subscription.run(3),
        expected(&[(0..1, 1), (1..2, 1), (2..3, 1)])
    );
}

// §1.3 ⚠: the moduledoc says 1000/750 with 100-event messages "asks 250 and then consumes the 50
// remaining"; the code handles the whole third message and asks 300.
#[test]
fn max_1000_min_750_with_messages_of_100_asks_300_after_the_third() {
    let mut subscription = CounterSubscription::subscribe(limits(1000, 750), Some(100));
    assert_eq!(
        subscription.mailbox.len(),
        10,
        "the ask of 1000 came as 10 messages"
    );
    assert_eq!(
        subscription.run(6),
        expected(&[
            (0..100, 0),     // outstanding 900
            (100..200, 0),   // outstanding 800
            (200..300, 300), // outstanding 700 <= 750: refill to 1000
            (300..400, 0),
            (400..500, 0),
            (500..600, 300),
        ])
    );
    assert_eq!(subscription.demand.outstanding(), 1000);
}

// §1.3 step 2: a batch larger than the outstanding demand is clamped, and the refill is computed
// from zero (the excess is not asked for again).
#[test]
fn events_in_excess_are_counted_and_clamped() {
    let mut demand = ConsumerDemand::new(limits(10, 2));
    assert_eq!(demand.initial_ask(), 10);
    assert_eq!(demand.on_batch(5), BatchDemand { excess: 0, ask: 0 });
    assert_eq!(demand.outstanding(), 5);
    assert_eq!(demand.on_batch(8), BatchDemand { excess: 3, ask: 10 });
    assert_eq!(demand.outstanding(), 10);
}

// §1.3 step 2: events before any ask are all in excess.
#[test]
fn events_before_the_initial_ask_are_all_excess() {
    let mut demand = ConsumerDemand::new(limits(10, 5));
    assert_eq!(demand.outstanding(), 0);
    assert_eq!(demand.on_batch(4), BatchDemand { excess: 4, ask: 10 });
    assert_eq!(demand.outstanding(), 10);
}

// §1.3 step 3: the ask happens exactly when outstanding demand reaches min_demand, not before.
#[test]
fn ask_happens_when_outstanding_reaches_min_demand() {
    let mut demand = ConsumerDemand::new(limits(10, 4));
    demand.initial_ask();
    assert_eq!(demand.on_batch(5), BatchDemand { excess: 0, ask: 0 }); // 5 > 4
    assert_eq!(demand.on_batch(1), BatchDemand { excess: 0, ask: 6 }); // 4 <= 4
    assert_eq!(demand.outstanding(), 10);
}

// Item 45.
#[test]
fn max_demand_zero_is_rejected_with_genstage_message() {
    let error = DemandLimits::from_options(&SubscribeOptions::new().max_demand(0)).unwrap_err();
    assert_eq!(error, DemandError::MaxDemandZero);
    assert_eq!(
        error.to_string(),
        "expected max_demand to be equal to or greater than 1, got: 0"
    );
    // max_demand is checked first, as in GenStage.
    let error = DemandLimits::new(0, 5).unwrap_err();
    assert_eq!(error, DemandError::MaxDemandZero);
}

// Item 45.
#[test]
fn min_demand_above_max_is_rejected_with_genstage_message() {
    let error = DemandLimits::from_options(&SubscribeOptions::new().min_demand(2000)).unwrap_err();
    assert_eq!(
        error,
        DemandError::MinDemandTooLarge {
            min_demand: 2000,
            max_demand: 1000
        }
    );
    assert_eq!(
        error.to_string(),
        "expected min_demand to be equal to or less than 999, got: 2000"
    );
    // min_demand equal to max_demand is rejected too: it must be at most max - 1.
    assert_eq!(
        DemandLimits::new(10, 10).unwrap_err().to_string(),
        "expected min_demand to be equal to or less than 9, got: 10"
    );
    assert!(DemandLimits::new(10, 9).is_ok());
}

// §1.3: max_demand defaults to 1000, min_demand to div(max, 2).
#[test]
fn defaults_are_1000_and_half_of_max_demand() {
    assert_eq!(DEFAULT_MAX_DEMAND, 1000);
    assert_eq!(DemandLimits::default(), limits(1000, 500));
    let from = |options: SubscribeOptions| DemandLimits::from_options(&options).unwrap();
    assert_eq!(from(SubscribeOptions::new()), limits(1000, 500));
    assert_eq!(
        from(SubscribeOptions::new().max_demand(100)),
        limits(100, 50)
    );
    assert_eq!(from(SubscribeOptions::new().max_demand(1)), limits(1, 0));
    assert_eq!(from(SubscribeOptions::new().min_demand(0)), limits(1000, 0));
    assert_eq!(limits(1000, 500).batch_size(), 500);
    assert_eq!(limits(100, 80).batch_size(), 20);
    assert_eq!(limits(100, 20).batch_size(), 80);
    assert_eq!(limits(1, 0).batch_size(), 1);
}

// §1.3 step 1: a message is cut into batches of at most max - min, in order.
#[test]
fn batches_cut_a_message_in_order() {
    let mut batches = Batches::new((0..7).collect::<Vec<u32>>());
    assert_eq!(batches.len(), 7);
    assert_eq!(batches.next_batch(3), Some(vec![0, 1, 2]));
    assert_eq!(batches.len(), 4);
    // The size may change between batches (several subscriptions share one consumer loop).
    assert_eq!(batches.next_batch(1), Some(vec![3]));
    assert_eq!(batches.next_batch(10), Some(vec![4, 5, 6]));
    assert!(batches.is_empty());
    assert_eq!(batches.next_batch(10), None);

    let mut empty = Batches::new(Vec::<u32>::new());
    assert!(empty.is_empty());
    assert_eq!(empty.next_batch(5), None);

    let mut rest = Batches::new(vec!['a', 'b', 'c']);
    assert_eq!(rest.next_batch(1), Some(vec!['a']));
    assert_eq!(rest.into_rest(), vec!['b', 'c']);
    assert_eq!(Batches::new(vec!['d', 'e']).into_rest(), vec!['d', 'e']);
}

// A message that fits one batch is handed on as it came: the same allocation, not a copy.
#[test]
fn a_message_that_fits_one_batch_is_not_copied() {
    let message: Vec<u64> = (0..500).collect();
    let address = message.as_ptr();
    let mut batches = Batches::new(message);
    let batch = batches.next_batch(500).expect("one batch");
    assert_eq!(batch.as_ptr(), address);
    assert_eq!(batch, (0..500).collect::<Vec<u64>>());
    assert!(batches.is_empty());
    assert_eq!(batches.next_batch(500), None);
}

/// `DemandError` has public fields: formatting any value of it must not panic.
#[test]
fn every_demand_error_formats() {
    let error = DemandError::MinDemandTooLarge {
        min_demand: 0,
        max_demand: 0,
    };
    assert_eq!(
        error.to_string(),
        "expected min_demand to be equal to or less than 0, got: 0"
    );
}
