//! Broadcast and partition dispatchers end to end, through the builder: who receives which events,
//! in which order, the report's accounting (copies, discards), and the wiring errors `run()` returns.
//! GenStage's scenario numbers (genstage-semantics.md §4) where a test ports one.

use std::sync::{Arc, Mutex};

use genstage::dispatcher::PartitionDispatcher;
use genstage::{
    from_iter, Consumer, Dispatch, DispatchSetupError, Emit, FromIter, Partition, Pipeline,
    PipelineError, Producer, ProducerConsumer, Report, StageResult, SubscribeOptions,
};

/// Keeps every batch it receives.
struct Collect {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl Collect {
    fn new() -> (Self, Arc<Mutex<Vec<Vec<u64>>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        (
            Collect {
                batches: batches.clone(),
            },
            batches,
        )
    }
}

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches.lock().unwrap().push(events);
        Ok(())
    }
}

fn flat(batches: &Arc<Mutex<Vec<Vec<u64>>>>) -> Vec<u64> {
    batches.lock().unwrap().concat()
}

/// `from_iter`, broadcasting.
struct Broadcast(FromIter<std::ops::Range<u64>>);

impl Producer for Broadcast {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.handle_demand(demand).await
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// `0..end`, partitioned by `route`.
struct Split {
    next: u64,
    end: u64,
    partitions: usize,
    route: fn(u64) -> Option<usize>,
}

impl Split {
    fn new(end: u64, partitions: usize, route: fn(u64) -> Option<usize>) -> Self {
        Split {
            next: 0,
            end,
            partitions,
            route,
        }
    }
}

impl Partition<u64> for Split {
    fn partition(&self, event: &u64) -> Option<usize> {
        (self.route)(*event)
    }
}

impl Producer for Split {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = self.end.min(self.next + demand as u64);
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(self.partitions)
    }
}

fn balanced(report: &Report) {
    let totals = report.totals();
    assert!(totals.balanced(), "{totals:?} in {report:#?}");
}

#[tokio::test]
async fn a_broadcast_sends_every_event_to_every_consumer_in_order() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Broadcast(from_iter(0..1000)));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (collect, batches) = Collect::new();
        let consumer = pipeline.add_consumer(collect);
        pipeline.subscribe_with(&numbers, &consumer, SubscribeOptions::new().max_demand(7));
        seen.push(batches);
    }
    let report = pipeline.run().await.unwrap();
    for batches in &seen {
        assert_eq!(flat(batches), (0..1000).collect::<Vec<_>>());
    }
    let producer = report.stage("Broadcast").unwrap();
    assert_eq!((producer.emitted, producer.copies), (1000, 2000));
    assert_eq!(producer.events_out, 3000);
    assert_eq!(report.totals().handled, 3000);
    balanced(&report);
}

// Scenario 6: consumers with max 10 and max 20 receive the same batches, of the smaller size.
#[tokio::test]
async fn broadcast_batches_are_as_large_as_the_smallest_demand() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Broadcast(from_iter(0..40)));
    let (small, small_batches) = Collect::new();
    let (large, large_batches) = Collect::new();
    let small = pipeline.add_consumer(small);
    let large = pipeline.add_consumer(large);
    pipeline.subscribe_with(
        &numbers,
        &small,
        SubscribeOptions::new().max_demand(10).min_demand(0),
    );
    pipeline.subscribe_with(
        &numbers,
        &large,
        SubscribeOptions::new().max_demand(20).min_demand(0),
    );
    pipeline.run().await.unwrap();
    let first = small_batches.lock().unwrap()[0].clone();
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    assert_eq!(large_batches.lock().unwrap()[0], first);
    assert_eq!(flat(&large_batches), (0..40).collect::<Vec<_>>());
}

#[tokio::test]
async fn selectors_split_a_broadcast_without_using_up_demand() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Broadcast(from_iter(0..100)));
    let (evens, even_batches) = Collect::new();
    let (odds, odd_batches) = Collect::new();
    let (threes, three_batches) = Collect::new();
    let evens = pipeline.add_consumer_named("evens", evens);
    let odds = pipeline.add_consumer_named("odds", odds);
    let threes = pipeline.add_consumer_named("threes", threes);
    // Small demand: a selector that used up demand on rejected events would stall here.
    let options = SubscribeOptions::new().max_demand(4).min_demand(1);
    pipeline.subscribe_selected(&numbers, &evens, options, |n| n % 2 == 0);
    pipeline.subscribe_selected(&numbers, &odds, options, |n| n % 2 == 1);
    pipeline.subscribe_selected(&numbers, &threes, options, |n| n % 3 == 0);
    let report = pipeline.run().await.unwrap();
    assert_eq!(
        flat(&even_batches),
        (0..100).filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    assert_eq!(
        flat(&odd_batches),
        (0..100).filter(|n| n % 2 == 1).collect::<Vec<_>>()
    );
    assert_eq!(
        flat(&three_batches),
        (0..100).filter(|n| n % 3 == 0).collect::<Vec<_>>()
    );
    // 100 events, 134 deliveries: 34 copies, none discarded.
    let producer = report.stage("Broadcast").unwrap();
    assert_eq!(
        (producer.emitted, producer.copies, producer.discarded),
        (100, 34, 0)
    );
    balanced(&report);
}

#[tokio::test]
async fn an_event_every_selector_rejects_is_discarded() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Broadcast(from_iter(0..30)));
    let (fives, batches) = Collect::new();
    let fives = pipeline.add_consumer(fives);
    pipeline.subscribe_selected(&numbers, &fives, SubscribeOptions::new(), |n| n % 5 == 0);
    let report = pipeline.run().await.unwrap();
    assert_eq!(flat(&batches), vec![0, 5, 10, 15, 20, 25]);
    let producer = report.stage("Broadcast").unwrap();
    assert_eq!(
        (producer.emitted, producer.copies, producer.discarded),
        (30, 0, 24)
    );
    balanced(&report);
}

#[tokio::test]
async fn a_partitioned_producer_sends_each_consumer_its_partition_in_order() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer(Split::new(1000, 3, |n| Some((n % 3) as usize)));
    let mut seen = Vec::new();
    for partition in 0..3 {
        let (collect, batches) = Collect::new();
        let consumer = pipeline.add_consumer(collect);
        let options = SubscribeOptions::new().partition(partition).max_demand(10);
        pipeline.subscribe_with(&split, &consumer, options);
        seen.push(batches);
    }
    let report = pipeline.run().await.unwrap();
    for (partition, batches) in seen.iter().enumerate() {
        let expected: Vec<u64> = (0..1000).filter(|n| n % 3 == partition as u64).collect();
        assert_eq!(flat(batches), expected, "partition {partition}");
    }
    balanced(&report);
}

#[tokio::test]
async fn a_none_partition_discards_the_event_and_is_counted() {
    let mut pipeline = Pipeline::new();
    // Multiples of 3 go nowhere (scenario 140's hash).
    let split = pipeline.add_producer(Split::new(13, 2, |n| {
        (n % 3 != 0).then_some((n % 2) as usize)
    }));
    let (even, even_batches) = Collect::new();
    let (odd, odd_batches) = Collect::new();
    let even = pipeline.add_consumer(even);
    let odd = pipeline.add_consumer(odd);
    pipeline.subscribe_with(&split, &even, SubscribeOptions::new().partition(0));
    pipeline.subscribe_with(&split, &odd, SubscribeOptions::new().partition(1));
    let report = pipeline.run().await.unwrap();
    assert_eq!(flat(&even_batches), vec![2, 4, 8, 10]);
    assert_eq!(flat(&odd_batches), vec![1, 5, 7, 11]);
    let producer = report.stage("Split").unwrap();
    assert_eq!((producer.emitted, producer.discarded), (13, 5));
    balanced(&report);
}

#[tokio::test]
async fn a_hot_partition_is_served_from_its_backlog_and_nothing_stalls() {
    let mut pipeline = Pipeline::new();
    // 90% of the events go to partition 0.
    let split = pipeline.add_producer(Split::new(2000, 2, |n| Some(usize::from(n % 10 == 9))));
    let (hot, hot_batches) = Collect::new();
    let (cold, cold_batches) = Collect::new();
    let hot = pipeline.add_consumer(hot);
    let cold = pipeline.add_consumer(cold);
    let options = SubscribeOptions::new().max_demand(5).min_demand(2);
    pipeline.subscribe_with(&split, &hot, options.partition(0));
    pipeline.subscribe_with(&split, &cold, options.partition(1));
    let report = pipeline.run().await.unwrap();
    assert_eq!(
        flat(&hot_batches),
        (0..2000).filter(|n| n % 10 != 9).collect::<Vec<_>>()
    );
    assert_eq!(
        flat(&cold_batches),
        (0..2000).filter(|n| n % 10 == 9).collect::<Vec<_>>()
    );
    // Never more than a consumer asked for at once.
    assert!(hot_batches
        .lock()
        .unwrap()
        .iter()
        .all(|batch| batch.len() <= 5));
    balanced(&report);
}

#[tokio::test]
async fn a_partition_out_of_range_fails_the_stage_naming_index_and_count() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(10, 2, |n| Some(n as usize)));
    let (a, a_batches) = Collect::new();
    let (b, _) = Collect::new();
    let a = pipeline.add_consumer(a);
    let b = pipeline.add_consumer(b);
    pipeline.subscribe_with(&split, &a, SubscribeOptions::new().partition(0));
    pipeline.subscribe_with(&split, &b, SubscribeOptions::new().partition(1));
    let error = pipeline.run().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "stage `split` failed: its partition function returned partition 2, but it has 2 \
         partitions (0..2)"
    );
    assert_eq!(error.stage(), "split");
    // The batch with the bad event is not dispatched at all: nothing of it reaches a consumer,
    // and the report counts it as lost with the stage.
    assert!(a_batches.lock().unwrap().is_empty());
    let report = match error {
        PipelineError::StageFailed { report, .. } => report,
        other => panic!("{other:?}"),
    };
    let split = report.stage("split").unwrap();
    assert_eq!((split.emitted, split.events_out, split.lost), (10, 0, 10));
    balanced(&report);
}

/// The error `run()` gives for `split` (2 partitions) wired to consumers taking `partitions`.
async fn wiring_error(partitions: &[Option<usize>]) -> PipelineError {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(10, 2, |n| Some((n % 2) as usize)));
    for (i, &partition) in partitions.iter().enumerate() {
        let consumer = pipeline.add_consumer_named(format!("c{i}"), Collect::new().0);
        let mut options = SubscribeOptions::new();
        if let Some(partition) = partition {
            options = options.partition(partition);
        }
        pipeline.subscribe_with(&split, &consumer, options);
    }
    pipeline.run().await.unwrap_err()
}

fn setup_error(error: PipelineError) -> DispatchSetupError {
    match error {
        PipelineError::InvalidDispatch { stage, error } => {
            assert_eq!(stage, "split");
            error
        }
        other => panic!("not a dispatch error: {other:?}"),
    }
}

#[tokio::test]
async fn run_refuses_partitions_missing_out_of_range_taken_or_vacant() {
    let missing = setup_error(wiring_error(&[Some(0), None]).await);
    assert_eq!(
        missing,
        DispatchSetupError::PartitionMissing {
            consumer: "c1".into()
        }
    );
    let out_of_range = wiring_error(&[Some(0), Some(2)]).await;
    assert_eq!(
        out_of_range.to_string(),
        "the subscriptions to `split` do not fit its dispatcher: `c1` takes partition 2, but \
         there are 2 (0..2)"
    );
    let taken = setup_error(wiring_error(&[Some(1), Some(1)]).await);
    assert_eq!(
        taken,
        DispatchSetupError::PartitionTaken {
            consumer: "c1".into(),
            partition: 1,
            taken_by: "c0".into()
        }
    );
    let vacant = setup_error(wiring_error(&[Some(1)]).await);
    assert_eq!(
        vacant,
        DispatchSetupError::PartitionVacant {
            partition: 0,
            partitions: 2
        }
    );
}

#[tokio::test]
async fn run_refuses_zero_partitions() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(10, 0, |_| Some(0)));
    let consumer = pipeline.add_consumer(Collect::new().0);
    pipeline.subscribe_with(&split, &consumer, SubscribeOptions::new().partition(0));
    let error = setup_error(pipeline.run().await.unwrap_err());
    assert_eq!(error, DispatchSetupError::NoPartitions);
}

#[tokio::test]
async fn run_refuses_a_partition_or_a_selector_the_dispatcher_does_not_take() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("split", from_iter(0..10u64));
    let consumer = pipeline.add_consumer_named("c", Collect::new().0);
    pipeline.subscribe_with(&numbers, &consumer, SubscribeOptions::new().partition(0));
    let error = setup_error(pipeline.run().await.unwrap_err());
    assert_eq!(
        error,
        DispatchSetupError::NotPartitioned {
            consumer: "c".into()
        }
    );

    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("split", from_iter(0..10u64));
    let consumer = pipeline.add_consumer_named("c", Collect::new().0);
    pipeline.subscribe_selected(&numbers, &consumer, SubscribeOptions::new(), |_| true);
    let error = setup_error(pipeline.run().await.unwrap_err());
    assert_eq!(
        error,
        DispatchSetupError::NotBroadcast {
            consumer: "c".into()
        }
    );
}

/// Counts up forever, broadcasting.
struct Endless(u64);

impl Producer for Endless {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let start = self.0;
        self.0 += demand as u64;
        Ok(Emit::more((start..self.0).collect()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

#[tokio::test]
async fn a_consumer_added_to_a_running_broadcast_gets_what_its_selector_accepts() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Endless(0));
    let (all, _) = Collect::new();
    let all = pipeline.add_consumer(all);
    pipeline.subscribe_with(&numbers, &all, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    let (evens, even_batches) = Collect::new();
    let evens = running.add_consumer(evens).await.unwrap();
    running
        .subscribe_selected(
            &numbers,
            &evens,
            SubscribeOptions::new().max_demand(10),
            |n| n % 2 == 0,
        )
        .await
        .unwrap();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while flat(&even_batches).len() < 100 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the added consumer got no events in 10 s");
    let report = running.shutdown().await.unwrap();
    let seen = flat(&even_batches);
    let first = seen[0];
    let expected: Vec<u64> = (0..seen.len() as u64).map(|i| first + 2 * i).collect();
    assert_eq!(seen, expected, "every even number from its first, in order");
    balanced(&report);
}

#[tokio::test]
async fn a_running_partitioned_stage_refuses_a_taken_missing_or_wrong_partition() {
    let mut pipeline = Pipeline::new();
    let split =
        pipeline.add_producer_named("split", Split::new(u64::MAX, 2, |n| Some((n % 2) as usize)));
    for partition in 0..2 {
        let consumer = pipeline.add_consumer_named(format!("c{partition}"), Collect::new().0);
        pipeline.subscribe_with(
            &split,
            &consumer,
            SubscribeOptions::new().partition(partition),
        );
    }
    let running = pipeline.start();
    let late = running
        .add_consumer_named("late", Collect::new().0)
        .await
        .unwrap();
    let refused = |options| running.subscribe_with(&split, &late, options);
    let taken = refused(SubscribeOptions::new().partition(1))
        .await
        .unwrap_err();
    assert_eq!(
        setup_error(taken),
        DispatchSetupError::PartitionTaken {
            consumer: "late".into(),
            partition: 1,
            taken_by: "c1".into()
        }
    );
    let missing = refused(SubscribeOptions::new()).await.unwrap_err();
    assert_eq!(
        setup_error(missing),
        DispatchSetupError::PartitionMissing {
            consumer: "late".into()
        }
    );
    let wrong = refused(SubscribeOptions::new().partition(2))
        .await
        .unwrap_err();
    assert_eq!(
        setup_error(wrong),
        DispatchSetupError::PartitionOutOfRange {
            consumer: "late".into(),
            partition: 2,
            partitions: 2
        }
    );
    let report = running.shutdown().await.unwrap();
    assert_eq!(report.stage("late").unwrap().events_in, 0);
    balanced(&report);
}

/// A producer whose dispatcher partitions but that gives it no partition function.
struct Unrouted;

impl Producer for Unrouted {
    type Output = u64;
    async fn handle_demand(&mut self, _: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last(vec![1]))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(PartitionDispatcher::new(1))
    }
}

#[tokio::test]
async fn run_refuses_a_partitioning_dispatcher_without_a_partition_function() {
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("split", Unrouted);
    let consumer = pipeline.add_consumer(Collect::new().0);
    pipeline.subscribe_with(&producer, &consumer, SubscribeOptions::new().partition(0));
    let error = setup_error(pipeline.run().await.unwrap_err());
    assert_eq!(error, DispatchSetupError::NoPartitionFunction);
}

/// Doubles, and partitions by parity of the result's tens.
struct Tens;

impl Partition<u64> for Tens {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some(((event / 10) % 2) as usize)
    }
}

impl ProducerConsumer for Tens {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events.into_iter().map(|n| 2 * n).collect())
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

#[tokio::test]
async fn a_producer_consumer_partitions_its_output() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..500u64));
    let tens = pipeline.add_producer_consumer(Tens);
    pipeline.subscribe_with(&numbers, &tens, SubscribeOptions::new().max_demand(10));
    let mut seen = Vec::new();
    for partition in 0..2 {
        let (collect, batches) = Collect::new();
        let consumer = pipeline.add_consumer(collect);
        let options = SubscribeOptions::new().partition(partition).max_demand(3);
        pipeline.subscribe_with(&tens, &consumer, options);
        seen.push(batches);
    }
    let report = pipeline.run().await.unwrap();
    for (partition, batches) in seen.iter().enumerate() {
        let expected: Vec<u64> = (0..500)
            .map(|n| 2 * n)
            .filter(|n| (n / 10) % 2 == partition as u64)
            .collect();
        assert_eq!(flat(batches), expected);
    }
    balanced(&report);
}
