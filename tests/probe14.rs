//! Probe 14: the broadcast and partition dispatchers attacked as a hostile user would: panicking
//! selectors and partition functions, consumers that fail or leave while events for them keep
//! coming, every way a pipeline ends, and odd but valid `pipeline!` inputs. Each test asserts what a
//! GenStage user would expect (exact counts, order, a balanced report) and runs under a 10 s
//! timeout, so that a hang fails instead of blocking. A test marked `#[ignore = "DEFECT: …"]` shows
//! a defect still open.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_iter, Consumer, Dispatch, Emit, FromIter, Partition, Pipeline, PipelineError, Producer,
    ProducerConsumer, Report, StageResult, StageStatus, SubscribeOptions,
};
use tokio::sync::Semaphore;

mod dispatch_stages;
use dispatch_stages::*;

const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes more than 10 s (a hang).
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("hung: no result within 10 s")
}

fn report_of(error: PipelineError) -> Report {
    match error {
        PipelineError::StageFailed { report, .. } | PipelineError::StagePanicked { report, .. } => {
            *report
        }
        other => panic!("not a stage failure: {other:?}"),
    }
}

/// Counts from 0, forever, broadcasting.
struct EndlessBroadcast {
    next: u64,
    asked: Arc<AtomicUsize>,
}

impl Producer for EndlessBroadcast {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.asked.fetch_add(demand, Ordering::SeqCst);
        let start = self.next;
        self.next += demand as u64;
        Ok(Emit::more((start..self.next).collect()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// A producer_consumer passing its events on, broadcasting.
struct PassBroadcast;

impl ProducerConsumer for PassBroadcast {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// A producer_consumer passing its events on, partitioned by `route`.
struct PassSplit {
    partitions: usize,
    route: fn(u64) -> Option<usize>,
}

impl Partition<u64> for PassSplit {
    fn partition(&self, event: &u64) -> Option<usize> {
        (self.route)(*event)
    }
}

impl ProducerConsumer for PassSplit {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(self.partitions)
    }
}

fn demand(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

fn evens_odds(n: u64) -> Option<usize> {
    Some((n % 2) as usize)
}

// ---------------------------------------------------------------------------------------------
// Panicking user code inside the dispatcher.
// ---------------------------------------------------------------------------------------------

/// A selector runs in the producer's task: its panic must fail that stage (panicked, with the
/// message), never hang or abort the process, and the report must balance.
#[tokio::test]
async fn a_panicking_selector_fails_the_broadcasting_stage_and_the_report_balances() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Broadcast(from_iter(0..1000)));
    let (all, all_batches) = Collect::new();
    let (picky, _) = Collect::new();
    let all = pipeline.add_consumer_named("all", all);
    let picky = pipeline.add_consumer_named("picky", picky);
    pipeline.subscribe_with(&numbers, &all, demand(10, 5));
    pipeline.subscribe_selected(&numbers, &picky, demand(10, 5), |n: &u64| {
        assert!(*n != 55, "selector exploded on 55");
        true
    });
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "numbers", "{error:?}");
    assert!(
        error.to_string().contains("selector exploded on 55"),
        "{error}"
    );
    // `all` got what was dispatched before the batch with 55, in order.
    let got = flat(&all_batches);
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>());
    assert!(got.len() < 56, "{}", got.len());
    let report = report_of(error);
    assert!(
        matches!(&report.stage("numbers").unwrap().status, StageStatus::Panicked(m) if m.contains("exploded")),
        "{report:#?}"
    );
    balanced(&report);
}

/// The same with a partition function that panics.
#[tokio::test]
async fn a_panicking_partition_function_fails_the_stage_and_the_report_balances() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named(
        "split",
        Split::new(1000, 2, |n| {
            assert!(n != 55, "partition exploded on 55");
            Some((n % 2) as usize)
        }),
    );
    let (even, even_batches) = Collect::new();
    let (odd, _) = Collect::new();
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    pipeline.subscribe_with(&split, &even, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &odd, demand(10, 5).partition(1));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "split", "{error:?}");
    assert!(
        error.to_string().contains("partition exploded on 55"),
        "{error}"
    );
    let got = flat(&even_batches);
    assert_eq!(
        got,
        (0..got.len() as u64).map(|n| 2 * n).collect::<Vec<_>>()
    );
    balanced(&report_of(error));
}

/// A partition function that panics while the partitions hold backlogs (a hot partition): the
/// backlogs are counted with the stage.
#[tokio::test]
async fn a_panicking_partition_function_with_backlogs_balances() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named(
        "split",
        Split::new(10_000, 2, |n| {
            assert!(n != 500, "partition exploded on 500");
            Some(usize::from(n % 10 == 9))
        }),
    );
    let (hot, _) = Collect::new();
    let (cold, _) = Collect::new();
    let hot = pipeline.add_consumer_named("hot", hot);
    let cold = pipeline.add_consumer_named("cold", cold);
    pipeline.subscribe_with(&split, &hot, demand(5, 2).partition(0));
    pipeline.subscribe_with(&split, &cold, demand(5, 2).partition(1));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "split", "{error:?}");
    balanced(&report_of(error));
}

/// A panicking selector in a broadcasting producer_consumer.
#[tokio::test]
async fn a_panicking_selector_in_a_producer_consumer_balances() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..1000u64));
    let pass = pipeline.add_producer_consumer_named("pass", PassBroadcast);
    let (a, _) = Collect::new();
    let (b, _) = Collect::new();
    let a = pipeline.add_consumer_named("a", a);
    let b = pipeline.add_consumer_named("b", b);
    pipeline.subscribe_with(&numbers, &pass, demand(20, 10));
    pipeline.subscribe_with(&pass, &a, demand(10, 5));
    pipeline.subscribe_selected(&pass, &b, demand(10, 5), |n: &u64| {
        assert!(*n != 321, "selector exploded on 321");
        true
    });
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "pass", "{error:?}");
    balanced(&report_of(error));
}

// ---------------------------------------------------------------------------------------------
// Odd partition functions and counts.
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_partition_function_returning_none_for_everything_discards_all_and_ends() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(5000, 2, |_| None));
    let (a, a_batches) = Collect::new();
    let (b, b_batches) = Collect::new();
    let a = pipeline.add_consumer(a);
    let b = pipeline.add_consumer(b);
    pipeline.subscribe_with(&split, &a, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &b, demand(10, 5).partition(1));
    let report = within(pipeline.run()).await.unwrap();
    assert!(flat(&a_batches).is_empty());
    assert!(flat(&b_batches).is_empty());
    let split = report.stage("split").unwrap();
    assert_eq!(
        (split.emitted, split.discarded, split.lost, split.events_out),
        (5000, 5000, 0, 0)
    );
    balanced(&report);
}

#[tokio::test]
async fn a_single_partition_takes_everything_in_order() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(3000, 1, |_| Some(0)));
    let (only, batches) = Collect::new();
    let only = pipeline.add_consumer(only);
    pipeline.subscribe_with(&split, &only, demand(7, 3).partition(0));
    let report = within(pipeline.run()).await.unwrap();
    assert_eq!(flat(&batches), (0..3000).collect::<Vec<_>>());
    assert_eq!(report.stage("split").unwrap().discarded, 0);
    balanced(&report);
}

#[tokio::test]
async fn sixty_four_partitions_each_get_exactly_their_keys_in_order() {
    let mut pipeline = Pipeline::new();
    let split =
        pipeline.add_producer_named("split", Split::new(20_000, 64, |n| Some((n % 64) as usize)));
    let mut seen = Vec::new();
    for partition in 0..64 {
        let (collect, batches) = Collect::new();
        let consumer = pipeline.add_consumer(collect);
        pipeline.subscribe_with(&split, &consumer, demand(16, 8).partition(partition));
        seen.push(batches);
    }
    let report = within(pipeline.run()).await.unwrap();
    for (partition, batches) in seen.iter().enumerate() {
        let expected: Vec<u64> = (0..20_000).filter(|n| n % 64 == partition as u64).collect();
        assert_eq!(flat(batches), expected, "partition {partition}");
    }
    assert_eq!(report.totals().handled, 20_000);
    balanced(&report);
}

// ---------------------------------------------------------------------------------------------
// Failures and early ends in consumers.
// ---------------------------------------------------------------------------------------------

/// One broadcast consumer fails: the others must get every event, in order, to the end.
#[tokio::test]
async fn a_failing_broadcast_consumer_does_not_stall_the_others() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Broadcast(from_iter(0..5000)));
    let (a, a_batches) = Collect::new();
    let (bad, bad_batches) = Collect::failing_at(3);
    let (c, c_batches) = Collect::new();
    let a = pipeline.add_consumer_named("a", a);
    let bad = pipeline.add_consumer_named("bad", bad);
    let c = pipeline.add_consumer_named("c", c);
    pipeline.subscribe_with(&numbers, &a, demand(10, 5));
    pipeline.subscribe_with(&numbers, &bad, demand(10, 5));
    pipeline.subscribe_with(&numbers, &c, demand(10, 5));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "bad");
    assert_eq!(flat(&a_batches), (0..5000).collect::<Vec<_>>());
    assert_eq!(flat(&c_batches), (0..5000).collect::<Vec<_>>());
    assert_eq!(flat(&bad_batches).len(), 15);
    let report = report_of(error);
    let producer = report.stage("numbers").unwrap();
    assert_eq!(producer.emitted, 5000);
    balanced(&report);
}

/// A partition's consumer fails while events for its partition keep coming: no hang, the other
/// partition gets all of its events, and the failed partition's events are accounted for.
#[tokio::test]
async fn a_failing_partition_consumer_does_not_stall_the_other_partition() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(5000, 2, evens_odds));
    let (even, even_batches) = Collect::new();
    let (odd, odd_batches) = Collect::failing_at(2);
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    pipeline.subscribe_with(&split, &even, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &odd, demand(10, 5).partition(1));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "odd");
    assert_eq!(
        flat(&even_batches),
        (0..5000).filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    let odd_got = flat(&odd_batches);
    assert_eq!(
        odd_got,
        (0..odd_got.len() as u64)
            .map(|n| 2 * n + 1)
            .collect::<Vec<_>>()
    );
    let report = report_of(error);
    let split = report.stage("split").unwrap();
    assert_eq!(split.emitted, 5000);
    // Every odd event not handled by `odd` is discarded or lost somewhere.
    let totals = report.totals();
    assert_eq!(totals.handled, 2500 + odd_got.len() as u64);
    balanced(&report);
}

/// The same through a partitioned producer_consumer.
#[tokio::test]
async fn a_failing_consumer_of_a_partitioned_producer_consumer_balances() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..5000u64));
    let split = pipeline.add_producer_consumer_named(
        "split",
        PassSplit {
            partitions: 2,
            route: evens_odds,
        },
    );
    let (even, even_batches) = Collect::new();
    let (odd, _) = Collect::failing_at(2);
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    pipeline.subscribe_with(&numbers, &split, demand(20, 10));
    pipeline.subscribe_with(&split, &even, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &odd, demand(10, 5).partition(1));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "odd");
    assert_eq!(
        flat(&even_batches),
        (0..5000).filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    balanced(&report_of(error));
}

/// A failing consumer of a broadcasting producer_consumer.
#[tokio::test]
async fn a_failing_consumer_of_a_broadcasting_producer_consumer_balances() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..5000u64));
    let pass = pipeline.add_producer_consumer_named("pass", PassBroadcast);
    let (a, a_batches) = Collect::new();
    let (bad, _) = Collect::failing_at(4);
    let a = pipeline.add_consumer_named("a", a);
    let bad = pipeline.add_consumer_named("bad", bad);
    pipeline.subscribe_with(&numbers, &pass, demand(20, 10));
    pipeline.subscribe_with(&pass, &a, demand(10, 5));
    pipeline.subscribe_with(&pass, &bad, demand(10, 5));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "bad");
    assert_eq!(flat(&a_batches), (0..5000).collect::<Vec<_>>());
    let report = report_of(error);
    assert_eq!(report.stage("pass").unwrap().emitted, 5000);
    balanced(&report);
}

/// A partition function out of range while the partitions hold backlogs: the stage fails naming
/// the index and the count, and the backlogs are counted as lost.
#[tokio::test]
async fn an_out_of_range_partition_with_backlogs_fails_and_balances() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named(
        "split",
        Split::new(10_000, 2, |n| {
            if n == 777 {
                Some(9)
            } else {
                Some(usize::from(n % 10 == 9))
            }
        }),
    );
    let (hot, hot_batches) = Collect::new();
    let (cold, _) = Collect::new();
    let hot = pipeline.add_consumer_named("hot", hot);
    let cold = pipeline.add_consumer_named("cold", cold);
    pipeline.subscribe_with(&split, &hot, demand(5, 2).partition(0));
    pipeline.subscribe_with(&split, &cold, demand(5, 2).partition(1));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "stage `split` failed: its partition function returned partition 9, but it has 2 \
         partitions (0..2)"
    );
    let got = flat(&hot_batches);
    assert!(got.len() < 777);
    assert_eq!(
        got,
        (0..10_000)
            .filter(|n| n % 10 != 9)
            .take(got.len())
            .collect::<Vec<_>>()
    );
    balanced(&report_of(error));
}

/// The same in a producer_consumer (routes out of range in the middle of a pipeline).
#[tokio::test]
async fn an_out_of_range_partition_in_a_producer_consumer_fails_and_balances() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..5000u64));
    let split = pipeline.add_producer_consumer_named(
        "split",
        PassSplit {
            partitions: 2,
            route: |n| {
                if n == 1234 {
                    Some(2)
                } else {
                    Some((n % 2) as usize)
                }
            },
        },
    );
    let (even, _) = Collect::new();
    let (odd, _) = Collect::new();
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    pipeline.subscribe_with(&numbers, &split, demand(20, 10));
    pipeline.subscribe_with(&split, &even, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &odd, demand(10, 5).partition(1));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "split");
    assert!(
        error.to_string().contains("returned partition 2"),
        "{error}"
    );
    balanced(&report_of(error));
}

// ---------------------------------------------------------------------------------------------
// Shutdown, shutdown_within, abort.
// ---------------------------------------------------------------------------------------------

/// A broadcast with one consumer held at a gate: shutdown waits for it, abort does not; both balance.
async fn gated_broadcast(end: Ending) {
    let gate = Arc::new(Semaphore::new(0));
    let asked = Arc::new(AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named(
        "numbers",
        EndlessBroadcast {
            next: 0,
            asked: asked.clone(),
        },
    );
    let (fast, fast_batches) = Collect::new();
    let (slow, slow_batches) = Collect::gated(&gate);
    let fast = pipeline.add_consumer_named("fast", fast);
    let slow = pipeline.add_consumer_named("slow", slow);
    pipeline.subscribe_with(&numbers, &fast, demand(10, 5));
    pipeline.subscribe_with(&numbers, &slow, demand(10, 5));
    let running = pipeline.start();
    gate.add_permits(3);
    // Wait until the slow consumer has handled its 3 batches.
    within(async {
        while slow_batches.lock().unwrap().len() < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report = match end {
        Ending::Shutdown => {
            gate.add_permits(1000);
            within(running.shutdown()).await.unwrap()
        }
        Ending::ShutdownWithin => {
            match within(running.shutdown_within(Duration::from_millis(50))).await {
                Ok(report) => report,
                Err(PipelineError::ShutdownTimeout { report, .. }) => *report,
                Err(other) => panic!("{other:?}"),
            }
        }
        Ending::Abort => within(running.abort()).await.unwrap(),
    };
    // The fast consumer never runs ahead of the slow one by more than what both asked for.
    let fast = flat(&fast_batches);
    let slow = flat(&slow_batches);
    assert_eq!(fast, (0..fast.len() as u64).collect::<Vec<_>>());
    assert_eq!(slow, (0..slow.len() as u64).collect::<Vec<_>>());
    if end == Ending::Shutdown {
        assert_eq!(fast, slow, "a graceful shutdown delivers every copy");
        let producer = report.stage("numbers").unwrap();
        assert_eq!(producer.emitted as usize * 2, fast.len() + slow.len());
        assert_eq!(producer.lost, 0);
    }
    // The producer was never asked for more than the consumers took plus one demand window.
    assert!(
        asked.load(Ordering::SeqCst) <= slow.len() + 20,
        "{report:#?}"
    );
    balanced(&report);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Shutdown,
    ShutdownWithin,
    Abort,
}

#[tokio::test]
async fn a_broadcast_shut_down_gracefully_balances() {
    gated_broadcast(Ending::Shutdown).await;
}

#[tokio::test]
async fn a_broadcast_shut_down_within_a_deadline_balances() {
    gated_broadcast(Ending::ShutdownWithin).await;
}

#[tokio::test]
async fn an_aborted_broadcast_balances() {
    gated_broadcast(Ending::Abort).await;
}

/// Counts from 0, forever, partitioned by parity with 90 % to partition 0 (backlogs form).
struct EndlessSplit {
    next: u64,
}

impl Partition<u64> for EndlessSplit {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some(usize::from(event % 10 == 9))
    }
}

impl Producer for EndlessSplit {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let start = self.next;
        self.next += demand as u64;
        Ok(Emit::more((start..self.next).collect()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

async fn gated_partition(end: Ending) {
    let gate = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", EndlessSplit { next: 0 });
    let (hot, hot_batches) = Collect::gated(&gate);
    let (cold, cold_batches) = Collect::new();
    let hot = pipeline.add_consumer_named("hot", hot);
    let cold = pipeline.add_consumer_named("cold", cold);
    pipeline.subscribe_with(&split, &hot, demand(5, 2).partition(0));
    pipeline.subscribe_with(&split, &cold, demand(5, 2).partition(1));
    let running = pipeline.start();
    gate.add_permits(4);
    within(async {
        while hot_batches.lock().unwrap().len() < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report = match end {
        Ending::Shutdown => {
            gate.add_permits(100_000);
            within(running.shutdown()).await.unwrap()
        }
        Ending::ShutdownWithin => {
            match within(running.shutdown_within(Duration::from_millis(50))).await {
                Ok(report) => report,
                Err(PipelineError::ShutdownTimeout { report, .. }) => *report,
                Err(other) => panic!("{other:?}"),
            }
        }
        Ending::Abort => within(running.abort()).await.unwrap(),
    };
    let hot = flat(&hot_batches);
    let cold = flat(&cold_batches);
    assert_eq!(
        hot,
        (0..)
            .filter(|n| n % 10 != 9)
            .take(hot.len())
            .collect::<Vec<u64>>()
    );
    assert_eq!(
        cold,
        (0..)
            .filter(|n| n % 10 == 9)
            .take(cold.len())
            .collect::<Vec<u64>>()
    );
    if end == Ending::Shutdown {
        let producer = report.stage("split").unwrap();
        assert_eq!(producer.lost, 0, "{report:#?}");
        assert_eq!(
            producer.emitted as usize,
            hot.len() + cold.len(),
            "{report:#?}"
        );
    }
    balanced(&report);
}

#[tokio::test]
async fn a_partition_with_backlogs_shut_down_gracefully_delivers_them_and_balances() {
    gated_partition(Ending::Shutdown).await;
}

#[tokio::test]
async fn a_partition_with_backlogs_shut_down_within_a_deadline_balances() {
    gated_partition(Ending::ShutdownWithin).await;
}

#[tokio::test]
async fn an_aborted_partition_with_backlogs_balances() {
    gated_partition(Ending::Abort).await;
}

// ---------------------------------------------------------------------------------------------
// Cancelling through the handle, and dynamic subscriptions.
// ---------------------------------------------------------------------------------------------

/// Records its subscription's tag, and keeps every batch, waiting for a permit of `gate` first.
struct Tagged {
    tag: Arc<Mutex<Option<genstage::SubscriptionTag>>>,
    inner: Collect,
}

impl Consumer for Tagged {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.inner.handle_events(events).await
    }
    fn handle_subscribe(
        &mut self,
        subscription: &genstage::Subscription,
        _ctx: &mut genstage::Context<'_, Self>,
    ) -> genstage::Demand {
        *self.tag.lock().unwrap() = Some(subscription.tag());
        genstage::Demand::Automatic
    }
}

/// A broadcast consumer cancelled through the handle while it is held: the other goes on alone to
/// the end, in order, and the report balances.
#[tokio::test]
async fn a_broadcast_consumer_cancelled_through_the_handle_does_not_stall_the_other() {
    let gate = Arc::new(Semaphore::new(0));
    let tag = Arc::new(Mutex::new(None));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Broadcast(from_iter(0..3000)));
    let (stay, stay_batches) = Collect::new();
    let (inner, leave_batches) = Collect::gated(&gate);
    let stay = pipeline.add_consumer_named("stay", stay);
    let leave = pipeline.add_consumer_named(
        "leave",
        Tagged {
            tag: tag.clone(),
            inner,
        },
    );
    pipeline.subscribe_with(&numbers, &stay, demand(10, 5));
    pipeline.subscribe_with(&numbers, &leave, demand(10, 5));
    let running = pipeline.start();
    let tag = within(async {
        loop {
            if let Some(tag) = *tag.lock().unwrap() {
                return tag;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    within(running.cancel(tag)).await.unwrap();
    gate.add_permits(100_000);
    let report = within(running).await.unwrap();
    assert_eq!(flat(&stay_batches), (0..3000).collect::<Vec<_>>());
    let left = flat(&leave_batches);
    assert_eq!(left, (0..left.len() as u64).collect::<Vec<_>>());
    assert!(left.len() <= 10, "{}", left.len());
    balanced(&report);
}

// ---------------------------------------------------------------------------------------------
// Accumulated demand, buffered counts.
// ---------------------------------------------------------------------------------------------

/// A broadcast that starts accumulating demand, then forwards: every consumer gets every event.
#[tokio::test]
async fn an_accumulating_broadcast_forwards_to_every_consumer() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", AccBroadcast(from_iter(0..2000)));
    let (a, a_batches) = Collect::new();
    let (b, b_batches) = Collect::new();
    let a = pipeline.add_consumer(a);
    let b = pipeline.add_consumer(b);
    pipeline.subscribe_with(&numbers, &a, demand(10, 5));
    pipeline.subscribe_with(&numbers, &b, demand(30, 0));
    let running = pipeline.start();
    within(async {
        while numbers.demand_mode().await != Ok(genstage::DemandMode::Accumulate) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(flat(&a_batches).is_empty());
    numbers.demand(genstage::DemandMode::Forward).unwrap();
    let report = within(running).await.unwrap();
    assert_eq!(flat(&a_batches), (0..2000).collect::<Vec<_>>());
    assert_eq!(flat(&b_batches), (0..2000).collect::<Vec<_>>());
    let producer = report.stage("numbers").unwrap();
    assert_eq!((producer.emitted, producer.copies), (2000, 2000));
    balanced(&report);
}

/// `from_iter`, broadcasting, starting in accumulate mode.
struct AccBroadcast(FromIter<std::ops::Range<u64>>);

impl Producer for AccBroadcast {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.handle_demand(demand).await
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
    fn producer_options(&self) -> genstage::ProducerOptions {
        genstage::ProducerOptions::for_producer().demand(genstage::DemandMode::Accumulate)
    }
}

/// `Split`, starting in accumulate mode.
struct AccSplit(Split);

impl Partition<u64> for AccSplit {
    fn partition(&self, event: &u64) -> Option<usize> {
        self.0.partition(event)
    }
}

impl Producer for AccSplit {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.handle_demand(demand).await
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
    fn producer_options(&self) -> genstage::ProducerOptions {
        genstage::ProducerOptions::for_producer().demand(genstage::DemandMode::Accumulate)
    }
}

/// A partitioned producer that accumulates demand, then forwards, with a hot partition.
#[tokio::test]
async fn an_accumulating_partition_forwards_each_partition_in_order() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named(
        "split",
        AccSplit(Split::new(3000, 2, |n| Some(usize::from(n % 10 == 9)))),
    );
    let (hot, hot_batches) = Collect::new();
    let (cold, cold_batches) = Collect::new();
    let hot = pipeline.add_consumer(hot);
    let cold = pipeline.add_consumer(cold);
    pipeline.subscribe_with(&split, &hot, demand(5, 2).partition(0));
    pipeline.subscribe_with(&split, &cold, demand(5, 2).partition(1));
    let running = pipeline.start();
    split.demand(genstage::DemandMode::Forward).unwrap();
    let report = within(running).await.unwrap();
    assert_eq!(
        flat(&hot_batches),
        (0..3000).filter(|n| n % 10 != 9).collect::<Vec<_>>()
    );
    assert_eq!(
        flat(&cold_batches),
        (0..3000).filter(|n| n % 10 == 9).collect::<Vec<_>>()
    );
    balanced(&report);
}

/// `estimate_buffered_count` on a partitioned producer counts the partitions' backlogs.
#[tokio::test]
async fn estimate_buffered_count_counts_partition_backlogs() {
    let gate = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    // Everything to partition 0, whose consumer is held; partition 1's consumer asks for 10.
    let split = pipeline.add_producer_named("split", Split::new(100, 2, |_| Some(0)));
    let (zero, zero_batches) = Collect::gated(&gate);
    let (one, _) = Collect::new();
    let zero = pipeline.add_consumer(zero);
    let one = pipeline.add_consumer(one);
    pipeline.subscribe_with(&split, &zero, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &one, demand(10, 5).partition(1));
    let running = pipeline.start();
    // The producer was asked for 20 (10 + 10), all for partition 0: 10 sent, 10 kept.
    let buffered = within(async {
        loop {
            let buffered = split.estimate_buffered_count().await.unwrap();
            if buffered == 10 {
                return buffered;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(buffered, 10);
    gate.add_permits(1000);
    let report = within(running).await.unwrap();
    assert_eq!(flat(&zero_batches), (0..100).collect::<Vec<_>>());
    balanced(&report);
}

// ---------------------------------------------------------------------------------------------
// Dynamic subscriptions.
// ---------------------------------------------------------------------------------------------

/// A consumer added to a running broadcast with a selector that panics: the producer fails, with
/// a balanced report.
#[tokio::test]
async fn a_panicking_selector_added_at_run_time_balances() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named(
        "numbers",
        EndlessBroadcast {
            next: 0,
            asked: Arc::default(),
        },
    );
    let (a, _) = Collect::new();
    let a = pipeline.add_consumer_named("a", a);
    pipeline.subscribe_with(&numbers, &a, demand(10, 5));
    let running = pipeline.start();
    let (late, _) = Collect::new();
    let late = within(running.add_consumer_named("late", late))
        .await
        .unwrap();
    within(
        running.subscribe_selected(&numbers, &late, demand(10, 5), |n: &u64| {
            assert!(n % 1000 != 999, "late selector exploded");
            true
        }),
    )
    .await
    .unwrap();
    let error = within(running).await.unwrap_err();
    assert_eq!(error.stage(), "numbers", "{error:?}");
    balanced(&report_of(error));
}

/// A partition's consumer cancelled through the handle, its partition then taken by a new
/// consumer: the new one gets the rest of the partition, in order, after what the old one got.
#[tokio::test]
async fn a_free_partition_is_taken_by_a_new_consumer_and_nothing_is_lost_or_repeated() {
    let gate = Arc::new(Semaphore::new(0));
    let tag = Arc::new(Mutex::new(None));
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(4000, 2, evens_odds));
    let (even, even_batches) = Collect::new();
    let (inner, old_batches) = Collect::gated(&gate);
    let even = pipeline.add_consumer_named("even", even);
    let old = pipeline.add_consumer_named(
        "old",
        Tagged {
            tag: tag.clone(),
            inner,
        },
    );
    pipeline.subscribe_with(&split, &even, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &old, demand(10, 5).partition(1));
    let running = pipeline.start();
    gate.add_permits(2);
    within(async {
        while old_batches.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let tag = tag.lock().unwrap().expect("subscribed");
    within(running.cancel(tag)).await.unwrap();
    gate.add_permits(1000);
    let (new, new_batches) = Collect::new();
    let new = within(running.add_consumer_named("new", new))
        .await
        .unwrap();
    within(running.subscribe_with(&split, &new, demand(10, 5).partition(1)))
        .await
        .unwrap();
    let report = within(running).await.unwrap();
    assert_eq!(
        flat(&even_batches),
        (0..4000).filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    let mut odd = flat(&old_batches);
    odd.extend(flat(&new_batches));
    assert_eq!(odd, (0..4000).filter(|n| n % 2 == 1).collect::<Vec<_>>());
    assert_eq!(report.totals().lost, 0, "{report:#?}");
    balanced(&report);
}

// ---------------------------------------------------------------------------------------------
// The DSL: odd but valid inputs.
// ---------------------------------------------------------------------------------------------

mod dsl {
    use super::{count_up, flat, within, Batches};
    use genstage::prelude::*;

    /// `0..end`, by parity into the partitions, written with odd literal forms.
    pub struct Hexa {
        pub next: u64,
        pub end: u64,
    }

    #[stage(producer, dispatcher = partition(0x2))]
    impl Hexa {
        fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
            count_up(&mut self.next, self.end, demand)
        }
        fn partition(&self, event: &u64) -> std::option::Option<usize> {
            Some((event % 2) as usize)
        }
    }

    /// 64 partitions, by remainder.
    pub struct Wide {
        pub next: u64,
        pub end: u64,
    }

    #[stage(producer, dispatcher = partition(64))]
    impl Wide {
        fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
            count_up(&mut self.next, self.end, demand)
        }
        fn partition(&self, event: &u64) -> Option<usize> {
            Some((event % 64) as usize)
        }
    }

    /// A single partition.
    pub struct One {
        pub next: u64,
        pub end: u64,
    }

    #[stage(producer, dispatcher = partition(1))]
    impl One {
        fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
            count_up(&mut self.next, self.end, demand)
        }
        fn partition(&self, _event: &u64) -> Option<usize> {
            Some(0)
        }
    }

    /// `dispatcher = demand`, written.
    pub struct Plain {
        pub next: u64,
        pub end: u64,
    }

    #[stage(producer, dispatcher = demand)]
    impl Plain {
        fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
            count_up(&mut self.next, self.end, demand)
        }
    }

    /// A generic producer_consumer that partitions by a key it is given.
    pub struct Keyed<T, const N: usize> {
        key: fn(&T) -> usize,
    }

    #[stage(producer_consumer, dispatcher = partition(2))]
    impl<T: Send + 'static, const N: usize> Keyed<T, N> {
        fn handle_events(&mut self, events: Vec<T>) -> Vec<T> {
            events
        }
        fn partition(&self, event: &T) -> Option<usize> {
            Some((self.key)(event) % N)
        }
    }

    /// A broadcasting producer_consumer.
    pub struct Echo;

    #[stage(producer_consumer, dispatcher = broadcast)]
    impl Echo {
        fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
            events
        }
    }

    /// Keeps what it receives.
    pub struct Keep(pub Batches);

    impl Keep {
        pub fn new(all: &std::sync::Mutex<Vec<Batches>>) -> Self {
            let batches = Batches::default();
            all.lock().unwrap().push(batches.clone());
            Keep(batches)
        }
    }

    #[stage(consumer, max_demand = 8, min_demand = 4)]
    impl Keep {
        fn handle_events(&mut self, events: Vec<u64>) {
            self.0.lock().unwrap().push(events);
        }
    }

    fn keeps(all: &std::sync::Mutex<Vec<Batches>>) -> Vec<Vec<u64>> {
        all.lock().unwrap().iter().map(flat).collect()
    }

    #[tokio::test]
    async fn odd_literals_and_a_qualified_option_compile_and_route() {
        let all = std::sync::Mutex::new(Vec::new());
        let report =
            within(pipeline! { Hexa { next: 0, end: 100 } -> [Keep::new(&all); 0x2] }.run())
                .await
                .unwrap();
        let evens: Vec<u64> = (0..100).filter(|n| n % 2 == 0).collect();
        let odds: Vec<u64> = (0..100).filter(|n| n % 2 == 1).collect();
        assert_eq!(keeps(&all), [evens, odds]);
        assert!(report.balanced());
    }

    #[tokio::test]
    async fn a_partition_edge_with_a_suffixed_literal_and_demand_options() {
        let all = std::sync::Mutex::new(Vec::new());
        let report = within(
            pipeline! {
                split = Hexa { next: 0, end: 50 };
                split -[partition = 1usize, max_demand = 3, min_demand = 1]-> odd = Keep::new(&all);
                split -[max_demand = 5, partition = 0]-> even = Keep::new(&all);
            }
            .run(),
        )
        .await
        .unwrap();
        let odds: Vec<u64> = (0..50).filter(|n| n % 2 == 1).collect();
        let evens: Vec<u64> = (0..50).filter(|n| n % 2 == 0).collect();
        assert_eq!(keeps(&all), [odds, evens]);
        assert!(report.balanced());
    }

    #[tokio::test]
    async fn sixty_four_partitions_to_a_group_of_sixty_four() {
        let all = std::sync::Mutex::new(Vec::new());
        let report =
            within(pipeline! { Wide { next: 0, end: 6400 } -> [Keep::new(&all); 64] }.run())
                .await
                .unwrap();
        let got = keeps(&all);
        assert_eq!(got.len(), 64);
        for (i, events) in got.iter().enumerate() {
            let expected: Vec<u64> = (0..6400).filter(|n| n % 64 == i as u64).collect();
            assert_eq!(events, &expected, "partition {i}");
        }
        assert!(report.balanced());
    }

    #[tokio::test]
    async fn a_single_partition_to_a_group_of_one_and_by_an_edge() {
        let all = std::sync::Mutex::new(Vec::new());
        let report = within(pipeline! { One { next: 0, end: 30 } -> [Keep::new(&all); 1] }.run())
            .await
            .unwrap();
        assert_eq!(keeps(&all), [(0..30).collect::<Vec<u64>>()]);
        assert!(report.balanced());
        let all = std::sync::Mutex::new(Vec::new());
        let report =
            within(pipeline! { One { next: 0, end: 30 } -[partition = 0]-> Keep::new(&all) }.run())
                .await
                .unwrap();
        assert_eq!(keeps(&all), [(0..30).collect::<Vec<u64>>()]);
        assert!(report.balanced());
    }

    #[tokio::test]
    async fn an_explicit_demand_dispatcher_splits_as_the_default() {
        let all = std::sync::Mutex::new(Vec::new());
        let report =
            within(pipeline! { Plain { next: 0, end: 500 } -> [Keep::new(&all); 3] }.run())
                .await
                .unwrap();
        let mut got: Vec<u64> = keeps(&all).concat();
        got.sort_unstable();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
        assert_eq!(report.stage("Plain").unwrap().copies, 0);
        assert!(report.balanced());
    }

    #[tokio::test]
    async fn a_generic_partitioned_producer_consumer_feeds_a_group_of_non_literal_size() {
        let all = std::sync::Mutex::new(Vec::new());
        let n = 2;
        let report = within(
            pipeline! {
                from_iter(0..200u64)
                    -> Keyed::<u64, 2> { key: |e: &u64| (*e / 10) as usize }
                    -> [Keep::new(&all); n]
            }
            .run(),
        )
        .await
        .unwrap();
        let zero: Vec<u64> = (0..200).filter(|e| (e / 10) % 2 == 0).collect();
        let one: Vec<u64> = (0..200).filter(|e| (e / 10) % 2 == 1).collect();
        assert_eq!(keeps(&all), [zero, one]);
        assert!(report.balanced());
    }

    #[tokio::test]
    async fn selectors_capturing_variables_by_move_and_by_copy() {
        let all = std::sync::Mutex::new(Vec::new());
        let k = 3u64;
        let wanted = [1u64, 5, 7];
        let report = within(
            pipeline! {
                echo = Echo;
                from_iter(0..30u64) -> echo;
                echo -[selector = move |e: &u64| e.is_multiple_of(k)]-> Keep::new(&all);
                echo -[selector = move |e| wanted.contains(e), max_demand = 2, min_demand = 0]-> Keep::new(&all);
                echo -[selector = |_| false]-> Keep::new(&all);
            }
            .run(),
        )
        .await
        .unwrap();
        let threes: Vec<u64> = (0..30).filter(|e| e % 3 == 0).collect();
        assert_eq!(keeps(&all), [threes, vec![1, 5, 7], vec![]]);
        let echo = report.stage("echo").unwrap();
        // 30 events: 10 + 3 deliveries, 0, 3, 6, 9... taken by one each; the rest by none.
        assert_eq!((echo.emitted, echo.copies, echo.discarded), (30, 0, 17));
        assert!(report.balanced());
    }

    #[tokio::test]
    async fn a_broadcast_to_a_group_with_a_selector_and_a_non_literal_count() {
        let all = std::sync::Mutex::new(Vec::new());
        let n = 3;
        let report = within(
            pipeline! {
                from_iter(0..40u64) -> Echo -[selector = |e: &u64| *e >= 20]-> [Keep::new(&all); n]
            }
            .run(),
        )
        .await
        .unwrap();
        let high: Vec<u64> = (20..40).collect();
        assert_eq!(keeps(&all), [high.clone(), high.clone(), high]);
        let echo = report.stage("Echo").unwrap();
        assert_eq!((echo.emitted, echo.copies, echo.discarded), (40, 40, 20));
        assert!(report.balanced());
    }
}

// ---------------------------------------------------------------------------------------------
// `info_after_buffered` behind a broadcast's pace and a partition's backlog.
// ---------------------------------------------------------------------------------------------

/// Cast to a [`Bursts`]: emit `0..n` and send yourself [`Sent`] behind them.
struct Burst(u64);

/// The info a [`Bursts`] sends itself behind a burst.
struct Sent;

type Marks = Arc<Mutex<Vec<genstage::ConsumerRef<Marked>>>>;

/// Emits only bursts cast to it, broadcasting (`partitions == 0`) or all into partition 0 of
/// `partitions`; casts [`Mark`] to every consumer in `marks` once told [`Sent`].
struct Bursts {
    partitions: usize,
    marks: Marks,
}

impl Partition<u64> for Bursts {
    fn partition(&self, _: &u64) -> Option<usize> {
        Some(0)
    }
}

impl Producer for Bursts {
    type Output = u64;
    async fn handle_demand(&mut self, _: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        match self.partitions {
            0 => Dispatch::broadcast(),
            n => Dispatch::partition(n),
        }
    }
}

impl genstage::HandleCast<Burst> for Bursts {
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

impl genstage::HandleInfo<Sent> for Bursts {
    type Emitted = ();
    async fn handle_info(
        &mut self,
        _: Sent,
        _: &mut genstage::Context<'_, Self>,
    ) -> StageResult<()> {
        use genstage::StageRef;
        let marks = self.marks.lock().unwrap().clone();
        for consumer in marks {
            let _ = consumer.cast(Mark);
        }
        Ok(())
    }
}

/// A broadcast paced by a slow consumer: the info follows every event at both consumers.
#[tokio::test]
async fn an_info_after_buffered_follows_a_paced_broadcast_at_every_consumer() {
    let marks: Marks = Arc::default();
    let mut pipeline = Pipeline::new();
    let bursts = pipeline.add_producer(Bursts {
        partitions: 0,
        marks: marks.clone(),
    });
    let (slow, slow_log) = Marked::new(None);
    let (fast, fast_log) = Marked::new(None);
    let slow = pipeline.add_consumer(slow);
    let fast = pipeline.add_consumer(fast);
    pipeline.subscribe_with(&bursts, &slow, demand(2, 1));
    pipeline.subscribe_with(&bursts, &fast, demand(10, 0));
    marks.lock().unwrap().extend([slow.clone(), fast.clone()]);
    {
        use genstage::StageRef;
        bursts.cast(Burst(10)).unwrap();
    }
    let report = within(pipeline.run()).await.unwrap();
    let mut expected: Vec<u64> = (0..10).collect();
    expected.push(u64::MAX);
    assert_eq!(*slow_log.lock().unwrap(), expected);
    assert_eq!(*fast_log.lock().unwrap(), expected);
    balanced(&report);
}

/// The consumer of the partition with the backlog fails: the info behind that backlog is not
/// waited for, and reaches the other consumer; nothing hangs.
#[tokio::test]
async fn an_info_behind_the_backlog_of_a_failed_partition_consumer_is_released() {
    let marks: Marks = Arc::default();
    let mut pipeline = Pipeline::new();
    let bursts = pipeline.add_producer_named(
        "bursts",
        Bursts {
            partitions: 2,
            marks: marks.clone(),
        },
    );
    let (hot, hot_log) = Marked::new(Some(1));
    let (cold, cold_log) = Marked::new(None);
    let hot = pipeline.add_consumer_named("hot", hot);
    let cold = pipeline.add_consumer_named("cold", cold);
    pipeline.subscribe_with(&bursts, &hot, demand(2, 1).partition(0));
    pipeline.subscribe_with(&bursts, &cold, demand(2, 1).partition(1));
    marks.lock().unwrap().push(cold.clone());
    {
        use genstage::StageRef;
        bursts.cast(Burst(10)).unwrap();
    }
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "hot");
    let hot = hot_log.lock().unwrap().clone();
    assert_eq!(hot, (0..hot.len() as u64).collect::<Vec<_>>());
    assert!(hot.len() < 10, "{hot:?}");
    assert_eq!(
        *cold_log.lock().unwrap(),
        vec![u64::MAX],
        "the mark never came"
    );
    balanced(&report_of(error));
}

// ---------------------------------------------------------------------------------------------
// Partition counts that cannot be allocated.
// ---------------------------------------------------------------------------------------------

/// `Dispatch::partition(usize::MAX)` must not panic in the user's code: `run()` refuses it with an
/// error. (`#[stage]` refuses a literal above the limit at compile time.)
#[tokio::test]
async fn an_unallocatable_partition_count_is_an_error_not_a_panic() {
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(10, usize::MAX, |_| Some(0)));
    let consumer = pipeline.add_consumer(Collect::new().0);
    pipeline.subscribe_with(&split, &consumer, SubscribeOptions::new().partition(0));
    let error = within(pipeline.run()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the subscriptions to `split` do not fit its dispatcher: it has {} partitions: a \
             stage has at most 65536",
            usize::MAX
        )
    );
}

/// A partition left vacant (its consumer cancelled through the handle, and not replaced) while
/// the producer runs on: a graceful shutdown must not wait for the events kept for no one; they
/// are counted as lost, and the report balances.
#[tokio::test]
async fn a_shutdown_with_a_vacant_partition_ends_and_counts_its_events() {
    let tag = Arc::new(Mutex::new(None));
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", EndlessSplit { next: 0 });
    let (hot, hot_batches) = Collect::new();
    let (inner, cold_batches) = Collect::new();
    let hot = pipeline.add_consumer_named("hot", hot);
    let cold = pipeline.add_consumer_named(
        "cold",
        Tagged {
            tag: tag.clone(),
            inner,
        },
    );
    pipeline.subscribe_with(&split, &hot, demand(5, 2).partition(0));
    pipeline.subscribe_with(&split, &cold, demand(5, 2).partition(1));
    let running = pipeline.start();
    within(async {
        while cold_batches.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let tag = tag.lock().unwrap().expect("subscribed");
    within(running.cancel(tag)).await.unwrap();
    // Let the producer keep events for the vacant partition.
    within(async {
        while hot_batches.lock().unwrap().len() < 200 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report = within(running.shutdown()).await.unwrap();
    let hot = flat(&hot_batches);
    assert_eq!(
        hot,
        (0..)
            .filter(|n| n % 10 != 9)
            .take(hot.len())
            .collect::<Vec<u64>>()
    );
    let split = report.stage("split").unwrap();
    let cold = flat(&cold_batches).len() as u64;
    assert_eq!(
        split.emitted,
        hot.len() as u64 + cold + split.lost,
        "{report:#?}"
    );
    assert!(split.lost > 0, "{report:#?}");
    balanced(&report);
}

// ---------------------------------------------------------------------------------------------
// Seeded stress: random partition counts, routes (with `None`), demands, failing consumers and
// broadcast consumers, on a multi-threaded runtime.
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `0..end`, by a seeded hash into `0..partitions`, or `None` for the value `partitions`; emits
/// at most `cap` events per call.
struct Routed {
    next: u64,
    end: u64,
    cap: u64,
    partitions: usize,
    seed: u64,
}

fn route_of(seed: u64, partitions: usize, event: u64) -> Option<usize> {
    let key =
        Rng(seed ^ event.wrapping_mul(0x2545_f491_4f6c_dd1d)).next() % (partitions as u64 + 1);
    (key < partitions as u64).then_some(key as usize)
}

impl Partition<u64> for Routed {
    fn partition(&self, event: &u64) -> Option<usize> {
        route_of(self.seed, self.partitions, *event)
    }
}

impl Producer for Routed {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = self.end.min(self.next + (demand as u64).min(self.cap));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_partitions_with_failing_consumers_never_hang_and_balance() {
    for seed in 0..60u64 {
        let mut rng = Rng(seed);
        let partitions = 1 + rng.below(5) as usize;
        let end = 3000;
        let failing = rng.below(partitions as u64 + 1) as usize; // == partitions: none fails
        let mut pipeline = Pipeline::new();
        let split = pipeline.add_producer_named(
            "split",
            Routed {
                next: 0,
                end,
                cap: 1 + rng.below(40),
                partitions,
                seed,
            },
        );
        let mut seen = Vec::new();
        for partition in 0..partitions {
            let (collect, batches) = if partition == failing {
                Collect::failing_at(rng.below(20) as usize)
            } else {
                Collect::new()
            };
            let consumer = pipeline.add_consumer_named(format!("c{partition}"), collect);
            let max = 1 + rng.below(50) as usize;
            let min = rng.below(max as u64) as usize;
            pipeline.subscribe_with(&split, &consumer, demand(max, min).partition(partition));
            seen.push(batches);
        }
        let run = tokio::time::timeout(LIMIT, pipeline.run()).await;
        let Ok(result) = run else {
            panic!("seed {seed} hung ({partitions} partitions, c{failing} failing)");
        };
        let report = match result {
            Ok(report) => {
                assert_eq!(failing, partitions, "seed {seed}: no failure reported");
                report
            }
            Err(error) => {
                assert_eq!(error.stage(), format!("c{failing}"), "seed {seed}");
                report_of(error)
            }
        };
        for (partition, batches) in seen.iter().enumerate() {
            let expected: Vec<u64> = (0..end)
                .filter(|&n| route_of(seed, partitions, n) == Some(partition))
                .collect();
            let got = flat(batches);
            if partition == failing {
                assert_eq!(
                    got,
                    expected[..got.len()],
                    "seed {seed} partition {partition}"
                );
            } else {
                assert_eq!(got, expected, "seed {seed} partition {partition}");
            }
        }
        // The `None`s among the events emitted: all discarded once the producer has finished
        // (it stops early when its last consumer fails).
        let producer = report.stage("split").unwrap();
        let nones = (0..producer.emitted)
            .filter(|&n| route_of(seed, partitions, n).is_none())
            .count() as u64;
        if producer.status == StageStatus::Finished {
            assert_eq!(producer.discarded, nones, "seed {seed}: {producer:#?}");
        } else {
            assert!(producer.discarded <= nones, "seed {seed}: {producer:#?}");
        }
        let totals = report.totals();
        assert!(totals.balanced(), "seed {seed}: {totals:?} in {report:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_broadcasts_with_failing_consumers_and_selectors_never_hang_and_balance() {
    for seed in 0..60u64 {
        let mut rng = Rng(seed ^ 0xabcdef);
        let consumers = 1 + rng.below(4) as usize;
        let end = 2000u64;
        let failing = rng.below(consumers as u64 + 1) as usize;
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Broadcast(from_iter(0..end)));
        let mut seen = Vec::new();
        for i in 0..consumers {
            let (collect, batches) = if i == failing {
                Collect::failing_at(rng.below(20) as usize)
            } else {
                Collect::new()
            };
            let consumer = pipeline.add_consumer_named(format!("c{i}"), collect);
            let max = 1 + rng.below(50) as usize;
            let min = rng.below(max as u64) as usize;
            let modulus = 1 + rng.below(3);
            if modulus == 1 {
                pipeline.subscribe_with(&numbers, &consumer, demand(max, min));
            } else {
                pipeline.subscribe_selected(&numbers, &consumer, demand(max, min), move |n| {
                    n % modulus == 0
                });
            }
            seen.push((batches, modulus));
        }
        let Ok(result) = tokio::time::timeout(LIMIT, pipeline.run()).await else {
            panic!("seed {seed} hung ({consumers} consumers, c{failing} failing)");
        };
        let report = match result {
            Ok(report) => {
                assert_eq!(failing, consumers, "seed {seed}: no failure reported");
                report
            }
            Err(error) => {
                assert_eq!(error.stage(), format!("c{failing}"), "seed {seed}");
                report_of(error)
            }
        };
        for (i, (batches, modulus)) in seen.iter().enumerate() {
            let expected: Vec<u64> = (0..end).filter(|n| n % modulus == 0).collect();
            let got = flat(batches);
            if i == failing {
                assert_eq!(got, expected[..got.len()], "seed {seed} consumer {i}");
            } else {
                assert_eq!(got, expected, "seed {seed} consumer {i}");
            }
        }
        let totals = report.totals();
        assert!(totals.balanced(), "seed {seed}: {totals:?} in {report:#?}");
    }
}

/// A selector given at run time to a partitioned stage is refused with the setup error, and the
/// pipeline goes on to the end.
#[tokio::test]
async fn a_selector_on_a_running_partitioned_stage_is_refused_and_the_run_goes_on() {
    let gate = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named("split", Split::new(1000, 2, evens_odds));
    let (even, even_batches) = Collect::gated(&gate);
    let (odd, odd_batches) = Collect::new();
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    pipeline.subscribe_with(&split, &even, demand(10, 5).partition(0));
    pipeline.subscribe_with(&split, &odd, demand(10, 5).partition(1));
    let running = pipeline.start();
    let (late, late_batches) = Collect::new();
    let late = within(running.add_consumer_named("late", late))
        .await
        .unwrap();
    let refused =
        within(running.subscribe_selected(&split, &late, SubscribeOptions::new(), |_: &u64| true))
            .await
            .unwrap_err();
    match refused {
        PipelineError::InvalidDispatch { stage, error } => {
            assert_eq!(stage, "split");
            assert_eq!(
                error,
                genstage::DispatchSetupError::NotBroadcast {
                    consumer: "late".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
    gate.add_permits(10_000);
    let report = match within(running.shutdown()).await {
        Ok(report) => report,
        Err(other) => panic!("{other:?}"),
    };
    assert!(late_batches.lock().unwrap().is_empty());
    let evens = flat(&even_batches);
    let odds = flat(&odd_batches);
    assert_eq!(
        evens,
        (0..1000)
            .filter(|n| n % 2 == 0)
            .take(evens.len())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        odds,
        (0..1000)
            .filter(|n| n % 2 == 1)
            .take(odds.len())
            .collect::<Vec<_>>()
    );
    balanced(&report);
}
