//! Broadcast and partition dispatchers end to end, through the builder: who receives which events,
//! in which order, the report's accounting (copies, discards), and the wiring errors `run()` returns.
//! GenStage's scenario numbers (genstage-semantics.md §4) where a test ports one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::dispatcher::PartitionDispatcher;
use genstage::{
    from_iter, Consumer, Context, Demand, DemandMode, Discard, DiscardReason, Dispatch,
    DispatchSetupError, Emit, HandleCast, Partition, Pipeline, PipelineError, Producer,
    ProducerConsumer, ProducerOptions, ProducerRef, RestartPolicy, StageRef, StageResult,
    SubscribeOptions, Subscription, SubscriptionTag,
};
use tokio::sync::Semaphore;

mod dispatch_stages;
use dispatch_stages::*;

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
    assert_eq!(
        producer.discards,
        vec![Discard {
            count: 5,
            reason: DiscardReason::Unrouted
        }]
    );
    assert!(report
        .to_string()
        .contains("discarded by Split: 5, its dispatcher sent them to no consumer\n"));
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

/// Passes its events on, partitioned in 2 by its route function.
struct Router(fn(u64) -> Option<usize>);

impl ProducerConsumer for Router {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

impl Partition<u64> for Router {
    fn partition(&self, event: &u64) -> Option<usize> {
        (self.0)(*event)
    }
}

/// `numbers (0..10) -> route -> [Collect; 2]`, `route` built by `build` and restarted after a
/// failure, up to 10 times: the run's result, and what the consumers got.
async fn routed_with_restarts(
    build: fn() -> Router,
) -> (Result<genstage::Report, PipelineError>, Vec<u64>) {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let route = pipeline.add_producer_consumer_with_as(Some("route".to_owned()), build);
    pipeline.set_restart(
        &route,
        RestartPolicy::transient().max_restarts(10, Duration::from_secs(5)),
    );
    let (a, a_batches) = Collect::new();
    let (b, b_batches) = Collect::new();
    let a = pipeline.add_consumer(a);
    let b = pipeline.add_consumer(b);
    let options = SubscribeOptions::new().max_demand(2).min_demand(1);
    pipeline.subscribe_with(&numbers, &route, options);
    pipeline.subscribe_with(&route, &a, SubscribeOptions::new().partition(0));
    pipeline.subscribe_with(&route, &b, SubscribeOptions::new().partition(1));
    let result = pipeline.run().await;
    let mut got = flat(&a_batches);
    got.extend(flat(&b_batches));
    got.sort_unstable();
    (result, got)
}

#[tokio::test]
async fn a_partition_out_of_range_is_not_restarted_whatever_the_policy_but_a_panic_is() {
    // Out of range at 0: the dispatcher, which a restart would keep, cannot dispatch it, so the
    // stage fails for good although its policy restarts it.
    let (result, got) = routed_with_restarts(|| Router(|n| Some(if n == 0 { 2 } else { 0 }))).await;
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "stage `route` failed: its partition function returned partition 2, but it has 2 \
         partitions (0..2)"
    );
    let report = error.report().unwrap();
    assert_eq!(report.stage("route").unwrap().restarts, 0);
    // The batch with the bad event, the first, is not dispatched at all.
    assert_eq!(got, []);
    balanced(report);

    // A panic in the partition function at 3 is a failure of the stage: restarted once, the batch
    // it was handling (3 alone: batches of max - min = 1) lost, the rest delivered. The batch is
    // handled only once its output is dispatched: the 3 it took in is lost with the failed batch,
    // and the 3 it emitted for it is taken back, not counted twice.
    let (result, got) = routed_with_restarts(|| {
        Router(|n| {
            assert_ne!(n, 3, "no route for 3");
            Some(0)
        })
    })
    .await;
    let report = result.unwrap();
    let route = report.stage("route").unwrap();
    assert_eq!((route.restarts, route.events_in, route.emitted), (1, 9, 9));
    assert_eq!(
        route.losses,
        [genstage::Loss {
            count: 1,
            reason: genstage::LossReason::FailedBatch
        }]
    );
    assert_eq!(got, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
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

// A user's selector that panics runs in the producer's task: the producer panics, naming the
// message, its consumers stop, and the batch it was dispatching is counted as lost with it.
#[tokio::test]
async fn a_panicking_selector_fails_its_producer_and_the_report_balances() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Broadcast(from_iter(0..1000)));
    let (all, _) = Collect::new();
    let (picky, _) = Collect::new();
    let all = pipeline.add_consumer(all);
    let picky = pipeline.add_consumer(picky);
    let options = SubscribeOptions::new().max_demand(10);
    pipeline.subscribe_with(&numbers, &all, options);
    pipeline.subscribe_selected(&numbers, &picky, options, |n| {
        assert!(*n < 25, "no number of 25 or more");
        true
    });
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), pipeline.run())
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(error.stage(), "numbers");
    assert!(
        error.to_string().contains("no number of 25 or more"),
        "{error}"
    );
    balanced(error.report().expect("a run-time error carries the report"));
}

// A partition function that panics, the same.
#[tokio::test]
async fn a_panicking_partition_function_fails_its_producer_and_the_report_balances() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named(
        "split",
        Split::new(1000, 2, |n| {
            assert!(n < 500, "no number of 500 or more");
            Some((n % 2) as usize)
        }),
    );
    for partition in 0..2 {
        let consumer = pipeline.add_consumer(Collect::new().0);
        pipeline.subscribe_with(
            &split,
            &consumer,
            SubscribeOptions::new().partition(partition),
        );
    }
    let error = tokio::time::timeout(std::time::Duration::from_secs(10), pipeline.run())
        .await
        .expect("no hang")
        .unwrap_err();
    assert_eq!(error.stage(), "split");
    assert!(
        error.to_string().contains("no number of 500 or more"),
        "{error}"
    );
    let report = error.report().expect("a run-time error carries the report");
    assert_eq!(report.stage("split").map(|s| s.emitted), Some(1000));
    balanced(report);
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

/// Waits until `batches` hold `count` events; fails the test after 10 s.
async fn until_received(batches: &Arc<Mutex<Vec<Vec<u64>>>>, count: usize) {
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while flat(batches).len() < count {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "fewer than {count} events in 10 s");
}

#[tokio::test]
async fn a_broadcast_consumer_resubscribes_with_another_selector() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Endless(0));
    let all = pipeline.add_consumer(Collect::new().0);
    pipeline.subscribe_with(&numbers, &all, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    let (picky, batches) = Collect::new();
    let picky = running.add_consumer(picky).await.unwrap();
    let options = SubscribeOptions::new().max_demand(10);
    let evens = running
        .subscribe_selected(&numbers, &picky, options, |n| n % 2 == 0)
        .await
        .unwrap();
    until_received(&batches, 50).await;
    running
        .resubscribe_selected(evens, &numbers, &picky, options, |n| n % 3 == 0)
        .await
        .unwrap();
    let before = flat(&batches).len();
    until_received(&batches, before + 50).await;
    let report = running.shutdown().await.unwrap();
    let seen = flat(&batches);
    // In order, each once: the old selector's events up to the switch (consecutive evens), then
    // the new one's (consecutive multiples of 3).
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let switch = (1..seen.len())
        .find(|&at| seen[at] != seen[at - 1] + 2)
        .unwrap_or(seen.len());
    let (old, new) = seen.split_at(switch);
    assert!(old.iter().all(|n| n % 2 == 0) && old.len() >= 50, "{old:?}");
    assert!(new.iter().all(|n| n % 3 == 0) && new.len() >= 40, "{new:?}");
    assert!(new.windows(2).all(|w| w[1] == w[0] + 3), "{new:?}");
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

// ---------------------------------------------------------------------------------------------
// GenStage's broadcast scenarios 7, 8, 15, 16 and 19, and a slow broadcast consumer.

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// `future`'s output; fails the test if it takes more than 10 s.
async fn no_hang<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), future).await {
        Ok(output) => output,
        Err(_) => panic!("waited 10 s for {what}"),
    }
}

/// Waits until `condition` holds; fails the test if it does not within 10 s.
async fn until(what: &str, condition: impl Fn() -> bool) {
    no_hang(what, async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Returns once the producer has taken in what was sent to it before: two calls, as
/// `tests/demand_modes.rs` does (the first may be answered before the pipeline wired it).
async fn settled<S: Producer>(producer: &ProducerRef<S>) {
    for _ in 0..2 {
        no_hang("the producer", producer.estimate_buffered_count())
            .await
            .unwrap();
    }
}

/// Counts from `next` to `end`, emitting exactly what it is asked, broadcasting, and records every
/// `handle_demand` call (GenStage's `Counter`).
struct Counted {
    next: u64,
    end: u64,
    calls: Shared<usize>,
}

impl Counted {
    fn new(start: u64, end: u64) -> (Self, Shared<usize>) {
        let calls = Shared::default();
        let counted = Counted {
            next: start,
            end,
            calls: calls.clone(),
        };
        (counted, calls)
    }
}

impl Producer for Counted {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.calls.lock().unwrap().push(demand);
        Ok(count_up(&mut self.next, self.end, demand))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// Where a consumer keeps the tag of its subscription.
type Tag = Arc<Mutex<Option<SubscriptionTag>>>;

/// GenStage's "synchronizer": a subscription that asks for nothing itself. Its demand is manual, so
/// it never asks after the initial ask the pipeline makes for it (`max_demand`, here 1: the port
/// has no subscription without an initial ask). Keeps its tag, for the test to cancel it.
struct Synchronizer {
    tag: Tag,
    batches: Shared<Vec<u64>>,
}

impl Synchronizer {
    fn new() -> (Self, Tag, Shared<Vec<u64>>) {
        let tag = Arc::new(Mutex::new(None));
        let batches = Shared::default();
        let synchronizer = Synchronizer {
            tag: tag.clone(),
            batches: batches.clone(),
        };
        (synchronizer, tag, batches)
    }
}

impl Consumer for Synchronizer {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        *self.tag.lock().unwrap() = Some(subscription.tag());
        Demand::Manual
    }
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches.lock().unwrap().push(events);
        Ok(())
    }
}

/// The synchronizer's options: its initial ask is 1.
fn synchronizer_options() -> SubscribeOptions {
    SubscribeOptions::new().max_demand(1).min_demand(0)
}

/// Keeps every batch it receives, then waits for a permit of `gate` before it counts the batch as
/// handled (and so before it asks again). A closed gate lets every batch through.
struct Gated {
    batches: Shared<Vec<u64>>,
    handled: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Gated {
    fn new(gate: &Arc<Semaphore>) -> (Self, Shared<Vec<u64>>, Arc<AtomicUsize>) {
        let batches = Shared::default();
        let handled = Arc::new(AtomicUsize::new(0));
        let gated = Gated {
            batches: batches.clone(),
            handled: handled.clone(),
            gate: gate.clone(),
        };
        (gated, batches, handled)
    }
}

impl Consumer for Gated {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let len = events.len();
        self.batches.lock().unwrap().push(events);
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        self.handled.fetch_add(len, Ordering::SeqCst);
        Ok(())
    }
}

fn max_min(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

fn batches_of(batches: &Shared<Vec<u64>>) -> Vec<Vec<u64>> {
    batches.lock().unwrap().clone()
}

fn calls_of(calls: &Shared<usize>) -> Vec<usize> {
    calls.lock().unwrap().clone()
}

// Scenario 7: a subscriber that does not ask stalls a broadcast, until it is cancelled; then both
// consumers receive the same events. Here the synchronizer's initial ask of 1 lets the first event,
// 1000, through to all three (GenStage's raw subscriber asks nothing, and both consumers then
// receive 1000..=1009 in one batch; here 1001..=1009, the rest of their first ask).
#[tokio::test]
async fn scenario_7_a_broadcast_subscriber_that_never_asks_stalls_the_others_until_cancelled() {
    let (counted, calls) = Counted::new(1000, 1100);
    let (synchronizer, tag, synchronizer_batches) = Synchronizer::new();
    let (small, small_batches) = Collect::new();
    let (large, large_batches) = Collect::new();
    let mut pipeline = Pipeline::new();
    let counted = pipeline.add_producer(counted);
    let synchronizer = pipeline.add_consumer_named("synchronizer", synchronizer);
    let small = pipeline.add_consumer_named("small", small);
    let large = pipeline.add_consumer_named("large", large);
    pipeline.subscribe_with(&counted, &synchronizer, synchronizer_options());
    pipeline.subscribe_with(&counted, &small, max_min(10, 0));
    pipeline.subscribe_with(&counted, &large, max_min(20, 0));
    let running = pipeline.start();

    until("the first event, to all three", || {
        [&synchronizer_batches, &small_batches, &large_batches]
            .iter()
            .all(|batches| !batches.lock().unwrap().is_empty())
    })
    .await;
    settled(&counted).await;
    // Stalled: the producer was asked for the one event all three wanted, and nothing since.
    assert_eq!(calls_of(&calls), [1]);
    assert_eq!(batches_of(&synchronizer_batches), [vec![1000]]);
    assert_eq!(batches_of(&small_batches), [vec![1000]]);
    assert_eq!(batches_of(&large_batches), [vec![1000]]);

    let tag = tag.lock().unwrap().expect("subscribed");
    no_hang("the cancel", running.cancel(tag)).await.unwrap();
    let report = no_hang("the end", running).await.unwrap();
    assert_eq!(calls_of(&calls)[..2], [1, 9]);
    let released: Vec<u64> = (1001..1010).collect();
    assert_eq!(
        batches_of(&small_batches)[..2],
        [vec![1000], released.clone()]
    );
    assert_eq!(batches_of(&large_batches)[..2], [vec![1000], released]);
    let all: Vec<u64> = (1000..1100).collect();
    assert_eq!(flat(&small_batches), all);
    assert_eq!(flat(&large_batches), all);
    assert_eq!(batches_of(&synchronizer_batches), [vec![1000]]);
    assert_eq!(report.stage("synchronizer").unwrap().events_in, 1);
    balanced(&report);
}

// Scenario 8: no duplicated upstream demand (GenStage #318). Two consumers (max 10 and max 20, min
// 0) that never ask again, holding their first batch: the producer is asked exactly once, for the
// 10 both want.
#[tokio::test]
async fn scenario_8_a_broadcast_asks_its_producer_once_for_the_shared_demand() {
    let (counted, calls) = Counted::new(0, 100);
    let gate = Arc::new(Semaphore::new(0));
    let (small, small_batches, _) = Gated::new(&gate);
    let (large, large_batches, _) = Gated::new(&gate);
    let mut pipeline = Pipeline::new();
    let counted = pipeline.add_producer(counted);
    let small = pipeline.add_consumer_named("small", small);
    let large = pipeline.add_consumer_named("large", large);
    pipeline.subscribe_with(&counted, &small, max_min(10, 0));
    pipeline.subscribe_with(&counted, &large, max_min(20, 0));
    let running = pipeline.start();

    until("the first batch, to both", || {
        !small_batches.lock().unwrap().is_empty() && !large_batches.lock().unwrap().is_empty()
    })
    .await;
    settled(&counted).await;
    assert_eq!(calls_of(&calls), [10]);
    let first: Vec<u64> = (0..10).collect();
    assert_eq!(batches_of(&small_batches), std::slice::from_ref(&first));
    assert_eq!(batches_of(&large_batches), std::slice::from_ref(&first));
    assert_eq!(counted.estimate_buffered_count().await, Ok(0));

    gate.close();
    let report = no_hang("the end", running).await.unwrap();
    let all: Vec<u64> = (0..100).collect();
    assert_eq!(flat(&small_batches), all);
    assert_eq!(flat(&large_batches), all);
    balanced(&report);
}

/// Emits each event twice, broadcasting (GenStage's `Doubler`).
struct Doubler;

impl ProducerConsumer for Doubler {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events.into_iter().flat_map(|n| [n, n]).collect())
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

fn doubled(events: std::ops::Range<u64>) -> Vec<u64> {
    events.flat_map(|n| [n, n]).collect()
}

// Scenario 15: a broadcast on a producer_consumer (its upstream max 10: batches of 5) with
// consumers of max 10 and max 20: both receive the first 5 events doubled. (GenStage's test sees
// 200..=204, its producer_consumer having run ahead before the consumers subscribed, a race it
// mentions; here every subscription is made before the first event.)
#[tokio::test]
async fn scenario_15_a_producer_consumer_broadcasts() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..50u64));
    let doubler = pipeline.add_producer_consumer(Doubler);
    let (small, small_batches) = Collect::new();
    let (large, large_batches) = Collect::new();
    let small = pipeline.add_consumer_named("small", small);
    let large = pipeline.add_consumer_named("large", large);
    pipeline.subscribe_with(&numbers, &doubler, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&doubler, &small, max_min(10, 0));
    pipeline.subscribe_with(&doubler, &large, max_min(20, 0));
    let report = no_hang("the end", pipeline.run()).await.unwrap();
    assert_eq!(batches_of(&small_batches)[0], doubled(0..5));
    assert_eq!(batches_of(&large_batches)[0], doubled(0..5));
    assert_eq!(flat(&small_batches), doubled(0..50));
    assert_eq!(flat(&large_batches), doubled(0..50));
    let doubler = report.stage("Doubler").unwrap();
    assert_eq!((doubler.emitted, doubler.copies), (100, 100));
    balanced(&report);
}

// Scenario 16: the same with a synchronizer on the producer_consumer. Its initial ask of 1 lets one
// event of the first doubled batch through to all three; the other 9 wait in the
// producer_consumer's buffer until the synchronizer is cancelled, then go to both consumers.
#[tokio::test]
async fn scenario_16_a_producer_consumer_broadcast_waits_for_a_synchronizer() {
    let (synchronizer, tag, synchronizer_batches) = Synchronizer::new();
    let (small, small_batches) = Collect::new();
    let (large, large_batches) = Collect::new();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..50u64));
    let doubler = pipeline.add_producer_consumer(Doubler);
    let synchronizer = pipeline.add_consumer_named("synchronizer", synchronizer);
    let small = pipeline.add_consumer_named("small", small);
    let large = pipeline.add_consumer_named("large", large);
    pipeline.subscribe_with(&numbers, &doubler, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&doubler, &synchronizer, synchronizer_options());
    pipeline.subscribe_with(&doubler, &small, max_min(10, 0));
    pipeline.subscribe_with(&doubler, &large, max_min(20, 0));
    let running = pipeline.start();

    until("the first event, to all three", || {
        [&synchronizer_batches, &small_batches, &large_batches]
            .iter()
            .all(|batches| !batches.lock().unwrap().is_empty())
    })
    .await;
    let buffered = no_hang("the doubler", doubler.estimate_buffered_count()).await;
    assert_eq!(buffered, Ok(9));
    assert_eq!(batches_of(&small_batches), [vec![0]]);
    assert_eq!(batches_of(&large_batches), [vec![0]]);

    let tag = tag.lock().unwrap().expect("subscribed");
    no_hang("the cancel", running.cancel(tag)).await.unwrap();
    let report = no_hang("the end", running).await.unwrap();
    let rest = doubled(0..5)[1..].to_vec();
    assert_eq!(batches_of(&small_batches)[..2], [vec![0], rest.clone()]);
    assert_eq!(batches_of(&large_batches)[..2], [vec![0], rest]);
    assert_eq!(flat(&small_batches), doubled(0..50));
    assert_eq!(flat(&large_batches), doubled(0..50));
    assert_eq!(batches_of(&synchronizer_batches), [vec![0]]);
    balanced(&report);
}

/// Emits only what it is cast, broadcasting; starts accumulating demand; `handle_demand` records
/// its demand and ends the producer.
struct Fed {
    calls: Shared<usize>,
}

/// Emit these now.
struct Say(Vec<u64>);

impl Producer for Fed {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.calls.lock().unwrap().push(demand);
        Ok(Emit::last(Vec::new()))
    }
    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer().demand(DemandMode::Accumulate)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

impl HandleCast<Say> for Fed {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Say(events): Say,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

// Scenario 19: accumulating with a broadcast. Events cast while the producer accumulates wait in its
// buffer, and a consumer subscribing meanwhile sees nothing flow; on forward, the buffer empties and
// every consumer receives the four events. GenStage stops its first consumers before casting (here a
// producer left without consumers stops, so one stays), and its consumers receive `[1]`, `[2]`, `[3]`,
// `[4]` as four messages; here the buffer is served in one dispatch, so one batch `[1, 2, 3, 4]`.
#[tokio::test]
async fn scenario_19_accumulated_broadcast_events_go_to_every_consumer_on_forward() {
    let calls = Shared::default();
    let (first, first_batches) = Collect::new();
    let (late, late_batches) = Collect::new();
    let mut pipeline = Pipeline::new();
    let fed = pipeline.add_producer(Fed {
        calls: calls.clone(),
    });
    let first = pipeline.add_consumer_named("first", first);
    pipeline.subscribe_with(&fed, &first, max_min(10, 0));
    let running = pipeline.start();
    settled(&fed).await;

    for n in 1..=4 {
        fed.cast(Say(vec![n])).unwrap();
    }
    let late = no_hang("a consumer", running.add_consumer_named("late", late))
        .await
        .unwrap();
    no_hang(
        "a subscription",
        running.subscribe_with(&fed, &late, max_min(10, 0)),
    )
    .await
    .unwrap();
    // Answered after the casts and the subscription: nothing went out.
    assert_eq!(fed.estimate_buffered_count().await, Ok(4));
    assert_eq!(fed.demand_mode().await, Ok(DemandMode::Accumulate));
    assert_eq!(calls_of(&calls), [] as [usize; 0]);
    assert!(first_batches.lock().unwrap().is_empty());
    assert!(late_batches.lock().unwrap().is_empty());

    fed.demand(DemandMode::Forward).unwrap();
    let report = no_hang("the end", running).await.unwrap();
    assert_eq!(batches_of(&first_batches), [vec![1, 2, 3, 4]]);
    assert_eq!(batches_of(&late_batches), [vec![1, 2, 3, 4]]);
    // GenStage calls `handle_demand(6)`: the 10 both asked, less the 4 the buffer served; so does
    // the port, with the second consumer's replayed ask (the first's, alone, is what the broadcast
    // cannot take yet).
    assert_eq!(calls_of(&calls), [6]);
    let fed = report.stage("Fed").unwrap();
    assert_eq!((fed.emitted, fed.copies), (4, 4));
    balanced(&report);
}

/// Receives events and records, at each batch, how far ahead of the slow consumer's handled events
/// it is.
struct Fast {
    received: usize,
    slow_handled: Arc<AtomicUsize>,
    lead: Arc<AtomicUsize>,
    batches: Shared<Vec<u64>>,
}

impl Consumer for Fast {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.received += events.len();
        self.batches.lock().unwrap().push(events);
        // Read after its own count: a lead never larger than the true one.
        let lead = self
            .received
            .saturating_sub(self.slow_handled.load(Ordering::SeqCst));
        self.lead.fetch_max(lead, Ordering::SeqCst);
        Ok(())
    }
}

// A slow broadcast consumer paces the others, and memory stays bounded: the slow consumer handles a
// batch only when the test lets it, one at a time. At every step the producer's buffer holds at most
// `max_demand` events (none, in fact: it emits exactly what the consumers can take), and the fast
// consumer is never more than `max_demand` events ahead of what the slow one has handled.
#[tokio::test]
async fn a_slow_broadcast_consumer_paces_the_fast_one_and_nothing_piles_up() {
    const EVENTS: u64 = 200;
    const MAX_DEMAND: usize = 10;
    let gate = Arc::new(Semaphore::new(0));
    let (slow, slow_batches, slow_handled) = Gated::new(&gate);
    let lead = Arc::new(AtomicUsize::new(0));
    let fast_batches = Shared::default();
    let fast = Fast {
        received: 0,
        slow_handled: slow_handled.clone(),
        lead: lead.clone(),
        batches: fast_batches.clone(),
    };
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Broadcast(from_iter(0..EVENTS)));
    let slow = pipeline.add_consumer_named("slow", slow);
    let fast = pipeline.add_consumer_named("fast", fast);
    let options = max_min(MAX_DEMAND, MAX_DEMAND / 2);
    pipeline.subscribe_with(&numbers, &slow, options);
    pipeline.subscribe_with(&numbers, &fast, options);
    let running = pipeline.start();

    let mut steps = 0;
    let mut buffered = Vec::new();
    while slow_handled.load(Ordering::SeqCst) < EVENTS as usize {
        // The slow consumer holds a batch (or will): let it finish that one.
        steps += 1;
        gate.add_permits(1);
        until("the slow consumer's next batch", || {
            slow_batches.lock().unwrap().len() >= steps
                && slow_handled.load(Ordering::SeqCst)
                    == slow_batches.lock().unwrap()[..steps]
                        .iter()
                        .map(Vec::len)
                        .sum::<usize>()
        })
        .await;
        // The producer answers until it has ended (after its last events went out).
        if let Ok(count) = numbers.estimate_buffered_count().await {
            buffered.push(count);
        }
        assert!(
            lead.load(Ordering::SeqCst) <= MAX_DEMAND,
            "the fast consumer ran {} events ahead",
            lead.load(Ordering::SeqCst)
        );
    }
    let report = no_hang("the end", running).await.unwrap();

    let all: Vec<u64> = (0..EVENTS).collect();
    assert_eq!(flat(&slow_batches), all);
    assert_eq!(flat(&fast_batches), all);
    // Batches of at most max_demand - min_demand, in the same cuts for both.
    assert!(batches_of(&slow_batches)
        .iter()
        .all(|b| b.len() <= MAX_DEMAND / 2));
    assert!(lead.load(Ordering::SeqCst) <= MAX_DEMAND);
    // Most steps saw the producer still running, and its buffer never held anything.
    assert!(buffered.len() >= steps / 2, "{} of {steps}", buffered.len());
    assert!(buffered.iter().all(|&count| count == 0), "{buffered:?}");
    let producer = report.stage("Broadcast").unwrap();
    assert_eq!((producer.emitted, producer.copies), (EVENTS, EVENTS));
    balanced(&report);
}

// Scenario 8 for a producer that accumulated demand: on forward, three broadcast consumers'
// recorded asks (10 each, and none after: they hold their first batch) must ask the producer once
// for the 10 they share, as GenStage does (it records the dispatcher's upstream demand, not the
// consumers' asks), and leave nothing in its buffer.
#[tokio::test]
async fn replayed_broadcast_asks_ask_the_producer_once_for_the_shared_demand() {
    let (counted, calls) = Counted::new(0, 1000);
    let gate = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    let counted = pipeline.add_producer(counted);
    let mut seen = Vec::new();
    for name in ["a", "b", "c"] {
        let (gated, batches, _) = Gated::new(&gate);
        let consumer = pipeline.add_consumer_named(name, gated);
        pipeline.subscribe_with(&counted, &consumer, max_min(10, 0));
        seen.push(batches);
    }
    counted.demand(DemandMode::Accumulate).unwrap();
    let running = pipeline.start();
    settled(&counted).await;
    assert_eq!(calls_of(&calls), [] as [usize; 0]);

    counted.demand(DemandMode::Forward).unwrap();
    until("the first batch, to all three", || {
        seen.iter()
            .all(|batches| !batches.lock().unwrap().is_empty())
    })
    .await;
    settled(&counted).await;
    for batches in &seen {
        assert_eq!(batches_of(batches), [(0..10).collect::<Vec<u64>>()]);
    }
    let buffered = counted.estimate_buffered_count().await;
    let calls = calls_of(&calls);
    gate.close();
    no_hang("the shutdown", running.shutdown()).await.unwrap();
    assert_eq!((calls, buffered), (vec![10], Ok(0)));
}

// A partition whose consumer leaves: its events are kept for a next consumer, which never comes,
// so they are lost when the producer ends, and the report counts them; the other partition's
// consumer gets all of its own. (GenStage drops a cancelled partition's backlog, and keeps the
// events that come for it after, uncounted.)
#[tokio::test]
async fn a_partition_left_by_its_consumer_keeps_its_events_and_counts_them_lost_at_the_end() {
    let (odd, odd_tag, odd_batches) = Synchronizer::new();
    let (even, even_batches) = Collect::new();
    let mut pipeline = Pipeline::new();
    let split =
        pipeline.add_producer_named("split", Split::new(100, 2, |n| Some((n % 2) as usize)));
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    pipeline.subscribe_with(&split, &even, max_min(10, 5).partition(0));
    // Manual: its initial ask of 5, and nothing after.
    pipeline.subscribe_with(&split, &odd, max_min(5, 0).partition(1));
    let running = pipeline.start();
    until("odd's first five", || flat(&odd_batches).len() == 5).await;
    let tag = odd_tag.lock().unwrap().expect("subscribed");
    no_hang("the cancel", running.cancel(tag)).await.unwrap();
    let report = no_hang("the end", running).await.unwrap();
    assert_eq!(flat(&odd_batches), vec![1, 3, 5, 7, 9]);
    assert_eq!(
        flat(&even_batches),
        (0..100).step_by(2).collect::<Vec<u64>>()
    );
    let split = report.stage("split").unwrap();
    assert_eq!(
        (split.emitted, split.events_out, split.discarded, split.lost),
        (100, 55, 0, 45),
        "{report:#?}"
    );
    balanced(&report);
}

/// Cast to [`Backlog`]: emit `0..n`, all into partition 0, and send yourself an info behind them.
struct Burst(u64);

/// The info [`Backlog`] sends itself behind a burst.
struct Sent;

/// A producer of two partitions whose events all go to partition 0, emitted from casts.
struct Backlog {
    mark: Arc<Mutex<Option<genstage::ConsumerRef<Marked>>>>,
}

impl Partition<u64> for Backlog {
    fn partition(&self, _: &u64) -> Option<usize> {
        Some(0)
    }
}

impl Producer for Backlog {
    type Output = u64;
    async fn handle_demand(&mut self, _: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

impl genstage::HandleCast<Burst> for Backlog {
    type Emitted = Emit<u64>;
    async fn handle_cast(
        &mut self,
        Burst(n): Burst,
        ctx: &mut genstage::Context<'_, Self>,
    ) -> StageResult<Emit<u64>> {
        ctx.info_after_buffered(Sent);
        Ok(Emit::last((0..n).collect()))
    }
}

impl genstage::HandleInfo<Sent> for Backlog {
    type Emitted = ();
    async fn handle_info(
        &mut self,
        _: Sent,
        _: &mut genstage::Context<'_, Self>,
    ) -> StageResult<()> {
        let consumer = self.mark.lock().unwrap().clone();
        if let Some(consumer) = consumer {
            use genstage::StageRef;
            let _ = consumer.cast(Mark);
        }
        Ok(())
    }
}

// Scenario 146 (genstage-semantics.md §2, Partition `info`), end to end: an info is held while a
// partition has a backlog in front of it, and released once that partition has been sent its
// backlog; the consumer finds the mark cast then behind all 10 events. The chaos test found this
// broken before `Dispatcher::mark`/`passed` (a partitioned producer's mark overtook its backlog in
// 62 of 20 000 seeds; seed 16 shrank to this pipeline).
#[tokio::test]
async fn an_info_waits_for_the_partition_backlog_in_front_of_it() {
    let mut pipeline = Pipeline::new();
    let mark = Arc::new(Mutex::new(None));
    let backlog = pipeline.add_producer(Backlog { mark: mark.clone() });
    let (hot, log) = Marked::new(None);
    let hot = pipeline.add_consumer(hot);
    let (cold, _) = Collect::new();
    let cold = pipeline.add_consumer(cold);
    // Partition 0 takes 2 events at a time: most of the burst waits in its backlog.
    let options = SubscribeOptions::new().max_demand(2).min_demand(1);
    pipeline.subscribe_with(&backlog, &hot, options.partition(0));
    pipeline.subscribe_with(&backlog, &cold, options.partition(1));
    *mark.lock().unwrap() = Some(hot.clone());
    {
        use genstage::StageRef;
        backlog.cast(Burst(10)).unwrap();
    }
    let report = pipeline.run().await.unwrap();
    let mut expected: Vec<u64> = (0..10).collect();
    expected.push(u64::MAX);
    assert_eq!(*log.lock().unwrap(), expected);
    balanced(&report);
}

/// Endless numbers, split by parity, that keep the tags of their subscriptions by consumer.
struct Tagged {
    next: u64,
    tags: Arc<Mutex<Vec<(String, genstage::SubscriptionTag)>>>,
}

impl Partition<u64> for Tagged {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

impl Producer for Tagged {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let start = self.next;
        self.next += demand as u64;
        Ok(Emit::more((start..self.next).collect()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        // Partition 0's consumer is slower (it also takes `keep`'s events): its backlog grows,
        // and beyond the default limit the events kept for no one while it is vacant would be
        // discarded, which is not what this test is about.
        Dispatch::custom_partitioned(PartitionDispatcher::new(2).with_stranded_limit(usize::MAX))
    }
    fn handle_consumer_subscribe(
        &mut self,
        subscriber: &genstage::Subscriber,
        _: &mut genstage::Context<'_, Self>,
    ) {
        let consumer = subscriber.consumer().to_owned();
        self.tags.lock().unwrap().push((consumer, subscriber.tag()));
    }
}

// The chaos test takes a partition again after a cancel through the handle, a handful of times in
// its runs; here 100 times in one run, while the producer runs free: the events kept for no one
// meanwhile go to the new subscription, in order, and nothing is lost, repeated or discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_cancelled_and_taken_again_loses_and_repeats_nothing() {
    let mut pipeline = Pipeline::new();
    let tags = Arc::new(Mutex::new(Vec::new()));
    let split = pipeline.add_producer(Tagged {
        next: 0,
        tags: tags.clone(),
    });
    // Keeps `hot` subscribed while its partition changes hands.
    let keep = pipeline.add_producer(from_iter(1_000_000_000u64..));
    let (hot, hot_batches) = Collect::new();
    let (cold, cold_batches) = Collect::new();
    let hot = pipeline.add_consumer_named("hot", hot);
    let cold = pipeline.add_consumer_named("cold", cold);
    let options = SubscribeOptions::new().max_demand(3).min_demand(1);
    pipeline.subscribe_with(&split, &hot, options.partition(0));
    pipeline.subscribe_with(&split, &cold, options.partition(1));
    pipeline.subscribe_with(&keep, &hot, SubscribeOptions::new().max_demand(1));
    let running = pipeline.start();
    for round in 0..100 {
        let tag = loop {
            let known = tags
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(c, _)| c == "hot")
                .map(|t| t.1);
            match known {
                Some(tag) => break tag,
                None => tokio::task::yield_now().await,
            }
        };
        running.cancel(tag).await.unwrap();
        for _ in 0..round % 5 {
            tokio::task::yield_now().await;
        }
        let new = running
            .subscribe_with(&split, &hot, options.partition(0))
            .await
            .unwrap();
        assert_ne!(new, tag);
        while !tags.lock().unwrap().iter().any(|&(_, t)| t == new) {
            tokio::task::yield_now().await;
        }
    }
    let report = running.shutdown().await.unwrap();
    let evens: Vec<u64> = flat(&hot_batches)
        .into_iter()
        .filter(|&n| n < 1_000_000_000)
        .collect();
    let odds = flat(&cold_batches);
    let first_gap = |events: &[u64], start: u64| {
        let at = events
            .iter()
            .zip((start..).step_by(2))
            .position(|(&n, m)| n != m)?;
        Some((
            at,
            events[at.saturating_sub(3)..(at + 3).min(events.len())].to_vec(),
        ))
    };
    assert_eq!(first_gap(&evens, 0), None, "{} evens", evens.len());
    assert_eq!(first_gap(&odds, 1), None, "{} odds", odds.len());
    let tagged = report.stage("Tagged").unwrap();
    assert_eq!((tagged.discarded, tagged.lost), (0, 0), "{tagged:?}");
    assert_eq!(tagged.events_out, tagged.emitted);
    assert_eq!(report.totals().lost, 0, "{report:#?}");
    balanced(&report);
}

/// Broadcasts what it is cast, `0..n` for a [`Burst`]`(n)`, and ends with it.
struct Announcer;

impl Producer for Announcer {
    type Output = u64;
    async fn handle_demand(&mut self, _: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

impl genstage::HandleCast<Burst> for Announcer {
    type Emitted = Emit<u64>;
    async fn handle_cast(
        &mut self,
        Burst(n): Burst,
        _: &mut genstage::Context<'_, Self>,
    ) -> StageResult<Emit<u64>> {
        Ok(Emit::last((0..n).collect()))
    }
}

// A broadcast starts with every consumer the pipeline wired, even when the producer is cast to
// before it runs (the cast is in its mailbox in front of the wiring). Found by the chaos test once
// main's 8891deb made the producer stop taking in its wiring at the first message that is not a
// consumer's: the cast's events went to the consumers taken in by then, and the others never got
// them (seeds 213, 280, 283, 287, 417 of the first 2 000).
#[tokio::test]
async fn a_broadcast_cast_to_before_it_runs_starts_with_every_consumer() {
    let mut pipeline = Pipeline::new();
    let announcer = pipeline.add_producer(Announcer);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (collect, batches) = Collect::new();
        let consumer = pipeline.add_consumer(collect);
        pipeline.subscribe_with(&announcer, &consumer, SubscribeOptions::new().max_demand(4));
        seen.push(batches);
    }
    {
        use genstage::StageRef;
        announcer.cast(Burst(10)).unwrap();
    }
    let report = pipeline.run().await.unwrap();
    for batches in &seen {
        assert_eq!(flat(batches), (0..10).collect::<Vec<_>>());
    }
    let announcer = report.stage("Announcer").unwrap();
    assert_eq!((announcer.emitted, announcer.copies), (10, 20));
    balanced(&report);
}

/// Emits the events it is called with, partitioned by parity, and replies once they are
/// dispatched; asked for more, it has none.
struct Routed;

/// Emit these.
struct Route(Vec<u64>);

impl Producer for Routed {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

impl Partition<u64> for Routed {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

impl genstage::HandleCall<Route> for Routed {
    type Reply = ();
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        Route(events): Route,
        reply: genstage::ReplyTo<()>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(());
        Ok(events)
    }
}

// Events kept for a partition whose consumer left count in `estimate_buffered_count`: they are held
// by the producer (sent to the partition's next consumer, or lost with the stage if it stops
// first, as the report says), though they do not keep it from ending.
#[tokio::test]
async fn events_kept_for_a_partition_without_consumer_count_as_buffered() {
    let (even, even_batches) = Collect::new();
    let (odd, odd_tag, _) = Synchronizer::new();
    let mut pipeline = Pipeline::new();
    let routed = pipeline.add_producer(Routed);
    let even = pipeline.add_consumer(even);
    let odd = pipeline.add_consumer(odd);
    pipeline.subscribe_with(&routed, &even, SubscribeOptions::new().partition(0));
    pipeline.subscribe_with(&routed, &odd, synchronizer_options().partition(1));
    let running = pipeline.start();
    settled(&routed).await;
    // Its `handle_subscribe` runs in its own task, which nothing here has waited for.
    until("odd's handle_subscribe", || {
        odd_tag.lock().unwrap().is_some()
    })
    .await;
    let tag = odd_tag.lock().unwrap().expect("subscribed");
    no_hang("the cancel", running.cancel(tag)).await.unwrap();
    no_hang("the call", routed.call(Route((0..10).collect())))
        .await
        .unwrap();
    // Partition 0's five went out; partition 1's five are kept for a consumer that may come.
    assert_eq!(routed.estimate_buffered_count().await, Ok(5));
    assert_eq!(batches_of(&even_batches), [vec![0, 2, 4, 6, 8]]);
    let report = no_hang("the shutdown", running.shutdown()).await.unwrap();
    let routed = report.stage("Routed").unwrap();
    assert_eq!((routed.emitted, routed.lost), (10, 5));
    balanced(&report);
}
