//! Which partition a subscription takes, as both sides are told of it (GenStage gives it to
//! `handle_subscribe` in the subscription's options): `Subscription::partition` for the consumer,
//! `Subscriber::partition` for the partitioned producer, also after the consumer or the producer
//! restarts and after a resubscribe to another partition.

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

/// Who was told which partition, as `(told, partition)`: `Halves` pushes `"producer of t0"`, a
/// `Mark` its own name.
static TOLD: Mutex<Vec<(String, Option<usize>)>> = Mutex::new(Vec::new());
/// Whether `Halves` has failed already: it fails once, on its first demand.
static HALVES_FAILED: AtomicBool = AtomicBool::new(false);
/// Events `t0` handled, and odd ones among them.
static T0_HANDLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static T0_ODD: AtomicBool = AtomicBool::new(false);

/// Endless numbers, the even ones to partition 0 and the odd ones to 1.
struct Halves {
    next: u64,
}

#[stage(producer, dispatcher = partition(2), restart = transient)]
impl Halves {
    fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        if !HALVES_FAILED.swap(true, Ordering::SeqCst) {
            return Err("fails once, on its first demand".into());
        }
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        Ok(Emit::more(events))
    }
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber) {
        let told = format!("producer of {}", subscriber.consumer());
        TOLD.lock().unwrap().push((told, subscriber.partition()));
    }
}

/// Says which partition each of its subscriptions takes, under its name.
struct Mark(&'static str);

#[stage(consumer, max_demand = 4)]
impl Mark {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        TOLD.lock()
            .unwrap()
            .push((self.0.to_owned(), subscription.partition()));
    }
    fn handle_events(&mut self, events: Vec<u64>) {
        if self.0 == "t0" {
            T0_HANDLED.fetch_add(events.len() as u64, Ordering::SeqCst);
            if events.iter().any(|n| n % 2 == 1) {
                T0_ODD.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Waits until `done`, but not more than 10 s.
async fn until(done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_producer_and_a_resubscribed_consumer_are_told_the_partition() {
    let mut pipeline = Pipeline::new();
    let halves = pipeline.add_producer_with_as(Some("halves".into()), || Halves { next: 0 });
    let t0 = pipeline.add_consumer_named("t0", Mark("t0"));
    let t1 = pipeline.add_consumer_named("t1", Mark("t1"));
    pipeline.subscribe_with(&halves, &t0, SubscribeOptions::new().partition(0));
    pipeline.subscribe_with(&halves, &t1, SubscribeOptions::new().partition(1));
    let running = pipeline.start();
    // Events flow once the producer has restarted.
    until(|| T0_HANDLED.load(Ordering::SeqCst) > 0).await;
    // t0 moves from partition 0 to partition 1, which t1 leaves.
    let [of_t1] = running.subscriptions(&halves, &t1).await.unwrap()[..] else {
        panic!("t1 has one subscription");
    };
    running.cancel(of_t1).await.unwrap();
    let [of_t0] = running.subscriptions(&halves, &t0).await.unwrap()[..] else {
        panic!("t0 has one subscription");
    };
    let options = SubscribeOptions::new().partition(1);
    running
        .resubscribe(of_t0, &halves, &t0, options)
        .await
        .unwrap();
    // Only partition 1 has odd events.
    until(|| T0_ODD.load(Ordering::SeqCst)).await;
    let report = running.shutdown().await.expect("the run ends well");
    assert_eq!(report.stage("halves").map(|h| h.restarts), Some(1));

    let told = TOLD.lock().unwrap().clone();
    let of = |who: &str| -> Vec<Option<usize>> {
        told.iter()
            .filter(|(told, _)| told == who)
            .map(|&(_, partition)| partition)
            .collect()
    };
    // The consumers, once per subscription: t0's second takes partition 1.
    assert_eq!(of("t0"), [Some(0), Some(1)]);
    assert_eq!(of("t1"), [Some(1)]);
    // The producer, once per subscription in each of its two values, the new one included.
    assert_eq!(of("producer of t0"), [Some(0), Some(0), Some(1)]);
    assert_eq!(of("producer of t1"), [Some(1), Some(1)]);
}
