//! Which partition a subscription takes, as both sides are told of it (GenStage gives it to
//! `handle_subscribe` in the subscription's options): `Subscription::partition` for the consumer,
//! `Subscriber::partition` for the partitioned producer, also after the consumer restarts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use genstage::prelude::*;
use genstage::{Subscriber, Subscription};

/// The partitions the producer's consumers said they take, in the order they subscribed.
static SUBSCRIBERS: Mutex<Vec<Option<usize>>> = Mutex::new(Vec::new());
/// Each event `Tap` handled, with the partition its value was told it takes.
static HANDLED: Mutex<Vec<(Option<usize>, u64)>> = Mutex::new(Vec::new());
/// Whether a `Tap` has failed already: it fails once, on event 16.
static FAILED: AtomicBool = AtomicBool::new(false);

/// `0..end`, each to partition `n % 3`.
struct Mod3 {
    next: u64,
    end: u64,
}

#[stage(producer, dispatcher = partition(3))]
impl Mod3 {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 3) as usize)
    }
    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber) {
        SUBSCRIBERS.lock().unwrap().push(subscriber.partition());
    }
}

/// Records what it handles under the partition its `handle_subscribe` was told; fails once.
#[derive(Default)]
struct Tap {
    partition: Option<usize>,
}

#[stage(consumer, max_demand = 4, restart = transient, redeliver)]
impl Tap {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        self.partition = subscription.partition();
    }
    fn handle_events(&mut self, events: Vec<u64>) {
        if events.contains(&16) && !FAILED.swap(true, Ordering::SeqCst) {
            panic!("fails once on 16");
        }
        let mut handled = HANDLED.lock().unwrap();
        handled.extend(events.into_iter().map(|n| (self.partition, n)));
    }
}

/// The partitions `Plain`'s subscriptions take.
static PLAIN: Mutex<Vec<Option<usize>>> = Mutex::new(Vec::new());

/// Records the partition its subscription takes.
struct Plain;

#[stage(consumer)]
impl Plain {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        PLAIN.lock().unwrap().push(subscription.partition());
    }
    fn handle_events(&mut self, _events: Vec<u64>) {}
}

#[tokio::test]
async fn each_side_is_told_the_partition_a_subscription_takes() {
    let report = pipeline! { Mod3 { next: 0, end: 30 } -> [Tap::default(); 3] }
        .run()
        .await
        .expect("the run ends well");
    assert!(report.balanced());
    assert_eq!(
        report.instances("Tap").map(|tap| tap.restarts).sum::<u64>(),
        1
    );

    let mut subscribers = SUBSCRIBERS.lock().unwrap().clone();
    subscribers.sort();
    // The consumer's restart is not a new subscription: the producer is told once of each.
    assert_eq!(subscribers, [Some(0), Some(1), Some(2)]);

    let mut handled = HANDLED.lock().unwrap().clone();
    handled.sort_by_key(|&(_, n)| n);
    let expected: Vec<_> = (0..30u64).map(|n| (Some((n % 3) as usize), n)).collect();
    assert_eq!(
        handled, expected,
        "every event once, by the value told its partition"
    );

    // Not partitioned: none.
    let report = pipeline! { from_iter(0..5u64) -> Plain }
        .run()
        .await
        .expect("the run ends well");
    assert_eq!(report.stage("Plain").map(|plain| plain.events_in), Some(5));
    assert_eq!(*PLAIN.lock().unwrap(), [None]);
}
