//! Dispatchers through the DSL: `#[stage(…, dispatcher = broadcast | partition(n))]` and the
//! `pipeline!` edges that take a `selector` or a `partition`, run end to end with exact counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use genstage::prelude::*;
use genstage::{DispatchSetupError, ProducerRef};

/// Emits `0..end`, then ends.
struct Numbers {
    next: u64,
    end: u64,
}

impl Numbers {
    fn upto(end: u64) -> Self {
        Numbers { next: 0, end }
    }
}

/// `Numbers`, to every consumer.
struct Broadcast(Numbers);

#[stage(producer, dispatcher = broadcast)]
impl Broadcast {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        count(&mut self.0, demand)
    }
}

/// `Numbers`, each to the consumer of its partition: evens to 0, odds to 1.
struct Parity(Numbers);

#[stage(producer, dispatcher = partition(2))]
impl Parity {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        count(&mut self.0, demand)
    }

    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// `Numbers` by remainder modulo 3 into partitions 0 and 1; the multiples of 3 are discarded.
struct Thirds(Numbers);

#[stage(producer, dispatcher = partition(2))]
impl Thirds {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        count(&mut self.0, demand)
    }

    fn partition(&self, event: &u64) -> Option<usize> {
        match event % 3 {
            0 => None,
            rest => Some(rest as usize - 1),
        }
    }
}

/// Passes events on, to every consumer.
struct Repeat;

#[stage(producer_consumer, dispatcher = broadcast)]
impl Repeat {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }
}

/// Passes events of any type on, to every consumer, or into two partitions by a key function.
struct Fan<T> {
    key: fn(&T) -> Option<usize>,
}

impl<T> Fan<T> {
    fn by(key: fn(&T) -> Option<usize>) -> Self {
        Fan { key }
    }
}

#[stage(producer_consumer, dispatcher = partition(2))]
impl<T: Send + 'static> Fan<T> {
    fn handle_events(&mut self, events: Vec<T>) -> Vec<T> {
        events
    }

    fn partition(&self, event: &T) -> Option<usize> {
        (self.key)(event)
    }
}

/// Passes events of any cloneable type on, to every consumer.
struct Copies<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Copies<T> {
    fn new() -> Self {
        Copies(std::marker::PhantomData)
    }
}

#[stage(producer_consumer, dispatcher = broadcast)]
impl<T: Clone + Send + 'static> Copies<T> {
    fn handle_events(&mut self, events: Vec<T>) -> Vec<T> {
        events
    }
}

fn count(numbers: &mut Numbers, demand: usize) -> Emit<u64> {
    let stop = numbers.end.min(numbers.next + demand as u64);
    let events = (numbers.next..stop).collect();
    numbers.next = stop;
    if stop == numbers.end {
        Emit::last(events)
    } else {
        Emit::more(events)
    }
}

/// What each collector received, by collector, in order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Vec<u64>>>>);

impl Received {
    /// A new collector, the next in order: `[Collect::next(&received); n]` makes collectors 0..n
    /// in the order of the group's instances.
    fn collector(&self) -> Collect {
        let mut all = self.0.lock().expect("not poisoned");
        all.push(Vec::new());
        Collect {
            index: all.len() - 1,
            received: self.clone(),
        }
    }

    fn take(&self) -> Vec<Vec<u64>> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

/// Records what it receives.
struct Collect {
    index: usize,
    received: Received,
}

#[stage(consumer, max_demand = 7, min_demand = 3)]
impl Collect {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.received.0.lock().expect("not poisoned")[self.index].extend(events);
    }
}

#[tokio::test]
async fn broadcast_sends_every_event_to_every_instance_in_order() {
    let received = Received::default();
    let report = pipeline! { Broadcast(Numbers::upto(1000)) -> [received.collector(); 3] }
        .run()
        .await
        .expect("the pipeline runs");
    let all: Vec<u64> = (0..1000).collect();
    assert_eq!(received.take(), [all.clone(), all.clone(), all]);
    let producer = report.stage("Broadcast").expect("reported");
    assert_eq!(producer.emitted, 1000);
    let handled: Vec<u64> = report.instances("Collect").map(|c| c.events_in).collect();
    assert_eq!(handled, [1000, 1000, 1000]);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn a_broadcasting_producer_consumer_copies_what_it_emits() {
    let received = Received::default();
    let report = pipeline! { from_iter(0..500u64) -> Repeat -> [received.collector(); 2] }
        .run()
        .await
        .expect("the pipeline runs");
    let all: Vec<u64> = (0..500).collect();
    assert_eq!(received.take(), [all.clone(), all]);
    assert_eq!(report.stage("Repeat").map(|s| s.events_in), Some(500));
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn selectors_split_a_broadcast_into_evens_and_odds() {
    let received = Received::default();
    let report = pipeline! {
        numbers = Broadcast(Numbers::upto(1000));
        numbers -[selector = |n: &u64| n.is_multiple_of(2)]-> evens = received.collector();
        // The closure's argument type is the producer's event type: no annotation needed.
        numbers -[selector = |n| n % 2 == 1, max_demand = 5]-> odds = received.collector();
    }
    .run()
    .await
    .expect("the pipeline runs");
    let evens: Vec<u64> = (0..1000).filter(|n| n % 2 == 0).collect();
    let odds: Vec<u64> = (0..1000).filter(|n| n % 2 == 1).collect();
    assert_eq!(received.take(), [evens, odds]);
    assert_eq!(report.stage("evens").map(|s| s.events_in), Some(500));
    assert_eq!(report.stage("odds").map(|s| s.events_in), Some(500));
    assert!(report.balanced(), "{report:?}");
}

// A selector kept for the whole run may capture locals without `move`: `pipeline!` moves them in,
// as a selector cannot borrow (before, rustc refused the borrow, E0597, with no word of `move`).
#[tokio::test]
async fn a_selector_captures_locals_without_move() {
    let received = Received::default();
    let wanted = std::collections::HashSet::from([3u64, 30, 300]);
    let below = 200u64;
    let report = pipeline! {
        numbers = Broadcast(Numbers::upto(1000));
        numbers -[selector = |n| wanted.contains(n)]-> picked = received.collector();
        numbers -[selector = |n: &u64| *n >= below]-> high = received.collector();
    }
    .run()
    .await
    .expect("the pipeline runs");
    let high: Vec<u64> = (200..1000).collect();
    assert_eq!(received.take(), [vec![3, 30, 300], high]);
    // `below` was copied in, and is still there.
    assert_eq!(below, 200);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn a_selector_on_an_edge_to_a_group_applies_to_every_instance() {
    let received = Received::default();
    let report = pipeline! {
        Broadcast(Numbers::upto(300)) -[selector = |n: &u64| n.is_multiple_of(3)]-> [received.collector(); 2]
    }
    .run()
    .await
    .expect("the pipeline runs");
    let threes: Vec<u64> = (0..300).filter(|n| n % 3 == 0).collect();
    assert_eq!(received.take(), [threes.clone(), threes]);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn a_partitioned_stage_gives_instance_i_of_a_group_partition_i() {
    let received = Received::default();
    let report = pipeline! { split = Parity(Numbers::upto(1000)) -> [received.collector(); 2] }
        .run()
        .await
        .expect("the pipeline runs");
    let evens: Vec<u64> = (0..1000).filter(|n| n % 2 == 0).collect();
    let odds: Vec<u64> = (0..1000).filter(|n| n % 2 == 1).collect();
    assert_eq!(received.take(), [evens, odds]);
    assert_eq!(report.stage("split").map(|s| s.emitted), Some(1000));
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn a_group_of_a_constant_size_takes_the_partitions_of_the_stage_before_it() {
    // Checked at compile time against the number of partitions, as a literal size is.
    const HALVES: usize = 2;
    let received = Received::default();
    let report = pipeline! { split = Parity(Numbers::upto(10)) -> [received.collector(); HALVES] }
        .run()
        .await
        .expect("the pipeline runs");
    assert_eq!(received.take(), [vec![0, 2, 4, 6, 8], vec![1, 3, 5, 7, 9]]);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn an_edge_takes_one_partition_for_a_single_consumer() {
    let received = Received::default();
    let report = pipeline! {
        split = Parity(Numbers::upto(100));
        split -[partition = 1]-> odd = received.collector();
        split -[partition = 0, max_demand = 4]-> even = received.collector();
    }
    .run()
    .await
    .expect("the pipeline runs");
    let evens: Vec<u64> = (0..100).filter(|n| n % 2 == 0).collect();
    let odds: Vec<u64> = (0..100).filter(|n| n % 2 == 1).collect();
    assert_eq!(received.take(), [odds, evens]);
    assert_eq!(report.stage("odd").map(|s| s.events_in), Some(50));
    assert_eq!(report.stage("even").map(|s| s.events_in), Some(50));
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn events_partitioned_to_none_are_discarded_and_counted() {
    let received = Received::default();
    let report = pipeline! { thirds = Thirds(Numbers::upto(300)) -> [received.collector(); 2] }
        .run()
        .await
        .expect("the pipeline runs");
    let ones: Vec<u64> = (0..300).filter(|n| n % 3 == 1).collect();
    let twos: Vec<u64> = (0..300).filter(|n| n % 3 == 2).collect();
    assert_eq!(received.take(), [ones, twos]);
    let thirds = report.stage("thirds").expect("reported");
    assert_eq!(thirds.emitted, 300);
    assert_eq!(thirds.discarded, 100);
    let handled: u64 = report.instances("Collect").map(|c| c.events_in).sum();
    assert_eq!(handled, 200);
    assert!(report.balanced(), "{report:?}");
}

/// A partitioned producer written by hand: `pipeline!` cannot see its partitions, so its wiring is
/// checked by `run()`.
struct HandSplit(Numbers);

impl Producer for HandSplit {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count(&mut self.0, demand))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

impl Partition<u64> for HandSplit {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

impl Stage for HandSplit {
    type Ref = ProducerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_producer_as(name, self)
    }
}

#[tokio::test]
async fn a_stage_written_by_hand_is_wired_by_partition_too() {
    let received = Received::default();
    let report = pipeline! {
        split = HandSplit(Numbers::upto(100));
        split -[partition = 0]-> even = received.collector();
        split -[partition = 1]-> odd = received.collector();
    }
    .run()
    .await
    .expect("the pipeline runs");
    let evens: Vec<u64> = (0..100).filter(|n| n % 2 == 0).collect();
    let odds: Vec<u64> = (0..100).filter(|n| n % 2 == 1).collect();
    assert_eq!(received.take(), [evens, odds]);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn sizes_and_indexes_that_are_not_literals_are_checked_by_run() {
    static CREATED: AtomicUsize = AtomicUsize::new(0);
    let received = Received::default();
    let three = 3;
    let error = pipeline! { split = Parity(Numbers::upto(10)) -> [{ CREATED.fetch_add(1, Ordering::Relaxed); received.collector() }; three] }
        .run()
        .await
        .expect_err("a third instance has no partition");
    assert_eq!(CREATED.load(Ordering::Relaxed), 3);
    match error {
        PipelineError::InvalidDispatch {
            stage,
            error:
                DispatchSetupError::PartitionOutOfRange {
                    consumer,
                    partition,
                    partitions,
                },
        } => {
            assert_eq!(
                (stage.as_str(), consumer.as_str(), partition, partitions),
                ("split", "Collect[2]", 2, 2)
            );
        }
        other => panic!("{other}"),
    }

    let index = 2;
    let error =
        pipeline! { split = Parity(Numbers::upto(10)) -[partition = index]-> received.collector() }
            .run()
            .await
            .expect_err("partition 2 of 2 does not exist");
    match error {
        PipelineError::InvalidDispatch {
            stage,
            error:
                DispatchSetupError::PartitionOutOfRange {
                    partition,
                    partitions,
                    ..
                },
        } => assert_eq!((stage.as_str(), partition, partitions), ("split", 2, 2)),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn generic_stages_broadcast_and_partition_once_their_events_are_inferred() {
    let received = Received::default();
    let report = pipeline! {
        copies = Copies::new();
        from_iter(0..100u64) -> copies;
        // The selector's argument is `&u64`, inferred through `Copies<T>`.
        copies -[selector = |n| *n < 10]-> low = received.collector();
        copies -> Fan::by(|n: &u64| Some((n % 2) as usize)) -> [received.collector(); 2];
    }
    .run()
    .await
    .expect("the pipeline runs");
    let low: Vec<u64> = (0..10).collect();
    let evens: Vec<u64> = (0..100).filter(|n| n % 2 == 0).collect();
    let odds: Vec<u64> = (0..100).filter(|n| n % 2 == 1).collect();
    assert_eq!(received.take(), [low, evens, odds]);
    assert!(report.balanced(), "{report:?}");
}

/// `Numbers` to every consumer, through a dispatcher given by the impl block's own `dispatcher`
/// method (a custom one would be given the same way).
struct OwnDispatcher(Numbers);

#[stage(producer)]
impl OwnDispatcher {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        count(&mut self.0, demand)
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(genstage::dispatcher::BroadcastDispatcher::new())
    }
}

#[tokio::test]
async fn a_stage_may_give_its_dispatcher_by_a_method_and_run_checks_its_edges() {
    let received = Received::default();
    let report = pipeline! {
        numbers = OwnDispatcher(Numbers::upto(50));
        numbers -> all = received.collector();
        numbers -[selector = |n: &u64| *n >= 40]-> high = received.collector();
    }
    .run()
    .await
    .expect("the pipeline runs");
    assert_eq!(
        received.take(),
        [(0..50).collect::<Vec<u64>>(), (40..50).collect()]
    );
    assert!(report.balanced(), "{report:?}");

    // `pipeline!` cannot see this dispatcher: a partition on an edge from it is `run()`'s to refuse.
    let error = pipeline! { numbers = OwnDispatcher(Numbers::upto(5)) -[partition = 0]-> received.collector() }
        .run()
        .await
        .expect_err("the stage is not partitioned");
    match error {
        PipelineError::InvalidDispatch {
            stage,
            error: DispatchSetupError::NotPartitioned { consumer },
        } => assert_eq!((stage.as_str(), consumer.as_str()), ("numbers", "Collect")),
        other => panic!("{other}"),
    }
}
