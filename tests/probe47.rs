//! Probes of two changes: a partitioned producer that hands its consumers its own wake-up (it must
//! never wait forever for one, whatever ends the run), and a subscription a custom dispatcher
//! refuses (its consumer is told `CancelReason::Refused` and, unless the subscription is
//! temporary, fails with `SubscriptionRefused`; the report still balances).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::dispatcher::{
    DemandDispatcher, DispatchError, DispatchOptions, Dispatcher, Outbox, PartitionDispatcher,
    SubscriptionId,
};
use genstage::{
    CancelMode, CancelReason, Consumer, ConsumerSupervisor, Context, Demand, DemandMode, Dispatch,
    Emit, HandleInfo, Partition, Pipeline, PipelineError, Producer, ProducerConsumer,
    ProducerOptions, Report, RestartPolicy, StageRef, StageResult, SubscribeOptions, Subscription,
    SubscriptionRefused, WithoutConsumers,
};
use tokio::sync::mpsc;

/// The longest any one wait of these tests may take.
const BOUND: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it takes longer than [`BOUND`].
async fn bounded<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// Checks the report's balance: `emitted + copies = handled + discarded + lost`, edge by edge.
fn balanced(report: &Report) {
    let totals = report.totals();
    assert_eq!(
        totals.emitted,
        totals.handled + totals.discarded + totals.lost,
        "{report:#?}"
    );
    assert!(report.balanced(), "{report:#?}");
    assert_eq!(report.unbalanced_edges().count(), 0, "{report:#?}");
}

// ---------------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------------

/// Emits `0, 1, …` as asked, up to `end` (`None`: never ends), split by parity into two partitions
/// (`parts = 2`), or shared by demand (`parts = 0`). With `discard_threes`, the multiples of 3
/// are discarded (`None`). The partition function panics on `panic_at`; with `accumulate`, the
/// producer starts accumulating demand.
struct Numbers {
    next: u64,
    end: Option<u64>,
    parts: usize,
    discard_threes: bool,
    panic_at: Option<u64>,
    accumulate: bool,
    /// Waits for consumers ([`WithoutConsumers::Wait`]).
    wait: bool,
    /// Partitions through `Dispatch::custom_partitioned`, the way a dispatcher of the user's would.
    custom: bool,
}

impl Numbers {
    fn split(end: Option<u64>) -> Self {
        Numbers {
            next: 0,
            end,
            parts: 2,
            discard_threes: false,
            panic_at: None,
            accumulate: false,
            wait: false,
            custom: false,
        }
    }
    fn shared(end: Option<u64>) -> Self {
        Numbers {
            parts: 0,
            ..Numbers::split(end)
        }
    }
}

impl Partition<u64> for Numbers {
    fn partition(&self, event: &u64) -> Option<usize> {
        if Some(*event) == self.panic_at {
            panic!("no partition for {event}");
        }
        if self.discard_threes && event.is_multiple_of(3) {
            return None;
        }
        Some((event % 2) as usize)
    }
}

impl Producer for Numbers {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = self.next + demand as u64;
        let stop = self.end.map_or(stop, |end| stop.min(end));
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if Some(stop) == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        if self.parts == 0 {
            Dispatch::demand()
        } else if self.custom {
            Dispatch::custom_partitioned(PartitionDispatcher::new(self.parts))
        } else {
            Dispatch::partition(self.parts)
        }
    }
    fn producer_options(&self) -> ProducerOptions {
        let mut options = ProducerOptions::for_producer();
        if self.wait {
            options = options.without_consumers(WithoutConsumers::Wait);
        }
        if self.accumulate {
            options.demand(DemandMode::Accumulate)
        } else {
            options
        }
    }
}

/// Records what it handles and tells `told` how many it has so far; fails on its batch `fail_on`
/// (counted from 1), and spends `pause` on each batch.
struct Record {
    seen: Arc<Mutex<Vec<u64>>>,
    told: Option<mpsc::UnboundedSender<usize>>,
    fail_on: Option<usize>,
    /// Whether it panics on batch `fail_on`, rather than return an error.
    panics: bool,
    batches: usize,
    pause: Option<Duration>,
}

impl Record {
    fn new() -> (Self, Arc<Mutex<Vec<u64>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Record {
            seen: seen.clone(),
            told: None,
            fail_on: None,
            panics: false,
            batches: 0,
            pause: None,
        };
        (record, seen)
    }
}

impl Consumer for Record {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches += 1;
        if Some(self.batches) == self.fail_on {
            if self.panics {
                panic!("panics on batch {}", self.batches);
            }
            return Err(format!("fails on batch {}", self.batches).into());
        }
        if let Some(pause) = self.pause {
            std::thread::sleep(pause);
        }
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.extend(events);
        if let Some(told) = &self.told {
            let _ = told.send(seen.len());
        }
        Ok(())
    }
}

fn seen(seen: &Mutex<Vec<u64>>) -> Vec<u64> {
    seen.lock().expect("not poisoned").clone()
}

// ---------------------------------------------------------------------------------------------
// Change 1: a partitioned producer's hand-off of its own wake-up
// ---------------------------------------------------------------------------------------------

/// `numbers` split between `even` and `odd`, each a [`Record`] made by `consumer`.
fn split_pipeline(
    numbers: Numbers,
    mut consumer: impl FnMut(usize) -> Record,
) -> (
    Pipeline,
    genstage::ProducerRef<Numbers>,
    [genstage::ConsumerRef<Record>; 2],
) {
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("numbers", numbers);
    let even = pipeline.add_consumer_named("even", consumer(0));
    let odd = pipeline.add_consumer_named("odd", consumer(1));
    pipeline.subscribe_with(&producer, &even, SubscribeOptions::new().partition(0));
    pipeline.subscribe_with(&producer, &odd, SubscribeOptions::new().partition(1));
    (pipeline, producer, [even, odd])
}

async fn runs_to_its_end_every_time(rounds: u64) {
    for round in 0..rounds {
        let end = 1_000 + round;
        let mut numbers = Numbers::split(Some(end));
        numbers.custom = round % 2 == 1;
        let logs = [Record::new(), Record::new()];
        let seen_by: Vec<_> = logs.iter().map(|(_, seen)| seen.clone()).collect();
        let mut records: Vec<_> = logs.into_iter().map(|(record, _)| Some(record)).collect();
        let (pipeline, _, _) = split_pipeline(numbers, |i| records[i].take().expect("one each"));
        let report = bounded("a partitioned run", pipeline.run())
            .await
            .expect("it runs");
        balanced(&report);
        let evens: Vec<u64> = (0..end).filter(|n| n % 2 == 0).collect();
        let odds: Vec<u64> = (0..end).filter(|n| n % 2 == 1).collect();
        assert_eq!(seen(&seen_by[0]), evens, "round {round}");
        assert_eq!(seen(&seen_by[1]), odds, "round {round}");
        assert_eq!(report.totals().lost, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_runs_to_its_end_every_time_on_two_workers() {
    runs_to_its_end_every_time(200).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_partitioned_producer_runs_to_its_end_every_time_on_one_thread() {
    runs_to_its_end_every_time(200).await;
}

/// An endless split, each consumer telling the test its count; how it ends is `end`'s.
async fn endless_split_ended_by<F, Fut>(rounds: usize, slow_odd: bool, end: F)
where
    F: Fn(
        genstage::PipelineHandle,
        genstage::ProducerRef<Numbers>,
        genstage::ConsumerRef<Record>,
    ) -> Fut,
    Fut: std::future::Future<Output = Result<Report, PipelineError>>,
{
    for round in 0..rounds {
        let (told, mut counts) = mpsc::unbounded_channel();
        let logs = [Record::new(), Record::new()];
        let seen_by: Vec<_> = logs.iter().map(|(_, seen)| seen.clone()).collect();
        let mut records: Vec<_> = logs
            .into_iter()
            .enumerate()
            .map(|(i, (mut record, _))| {
                if i == 0 {
                    record.told = Some(told.clone());
                }
                if i == 1 && slow_odd {
                    record.pause = Some(Duration::from_micros(200));
                }
                Some(record)
            })
            .collect();
        let (pipeline, producer, [_, odd]) =
            split_pipeline(Numbers::split(None), |i| records[i].take().expect("one"));
        let running = pipeline.start();
        // Ends it once the even consumer has had some events: the producer is then in full flow.
        loop {
            let count = bounded("events", counts.recv()).await.expect("told");
            if count >= 500 + round % 7 * 100 {
                break;
            }
        }
        let report = bounded("the ending", end(running, producer, odd)).await;
        let report = match report {
            Ok(report) => report,
            Err(error) => panic!("round {round}: {error:?}"),
        };
        balanced(&report);
        for (name, seen_by) in [("even", &seen_by[0]), ("odd", &seen_by[1])] {
            assert_eq!(
                report.stage(name).unwrap().events_in,
                seen(seen_by).len() as u64,
                "round {round}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_in_full_flow_shuts_down() {
    endless_split_ended_by(100, false, |running, _, _| running.shutdown()).await;
    endless_split_ended_by(20, true, |running, _, _| running.shutdown()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_partitioned_producer_in_full_flow_shuts_down_on_one_thread() {
    endless_split_ended_by(100, false, |running, _, _| running.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_in_full_flow_answers_calls_and_aborts() {
    endless_split_ended_by(100, false, |running, producer, _| async move {
        for _ in 0..20 {
            bounded("a call", producer.estimate_buffered_count())
                .await
                .expect("answered");
        }
        running.abort().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_goes_on_when_one_consumer_is_cancelled_through_the_handle() {
    endless_split_ended_by(50, false, |running, producer, odd| async move {
        let subs = bounded("subscriptions", running.subscriptions(&producer, &odd))
            .await
            .expect("listed");
        assert_eq!(subs.len(), 1);
        bounded("the cancel", running.cancel(subs[0]))
            .await
            .expect("cancelled");
        // The producer goes on for `even`, and answers.
        bounded("a call", producer.estimate_buffered_count())
            .await
            .expect("answered");
        running.shutdown().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_whose_consumer_fails_after_its_first_batch_ends_the_run() {
    consumer_fails_after_its_first_batches(100).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_partitioned_producer_whose_consumer_fails_after_its_first_batch_ends_the_run_on_one_thread(
) {
    consumer_fails_after_its_first_batches(100).await;
}

/// One of the two consumers fails (an error, or a panic) on one of its first three batches.
async fn consumer_fails_after_its_first_batches(rounds: usize) {
    for round in 0..rounds {
        let mut made = 0;
        let (pipeline, _, _) = split_pipeline(Numbers::split(Some(10_000)), |i| {
            made += 1;
            let (mut record, _) = Record::new();
            if i == round % 2 {
                record.fail_on = Some(1 + round / 2 % 3);
                record.panics = round % 4 >= 2;
            }
            record
        });
        assert_eq!(made, 2);
        let error = bounded("a failing run", pipeline.run())
            .await
            .expect_err("a consumer fails");
        let (stage, report) = match error {
            PipelineError::StageFailed { stage, report, .. } if round % 4 < 2 => (stage, report),
            PipelineError::StagePanicked { stage, report, .. } if round % 4 >= 2 => (stage, report),
            error => panic!("round {round}: {error:?}"),
        };
        assert_eq!(stage, ["even", "odd"][round % 2]);
        balanced(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_whose_consumer_restarts_delivers_every_event_once() {
    for round in 0..50 {
        let logs = [Record::new(), Record::new()];
        let seen_by: Vec<_> = logs.iter().map(|(_, seen)| seen.clone()).collect();
        let mut records: Vec<_> = logs.into_iter().map(|(record, _)| Some(record)).collect();
        let mut pipeline = Pipeline::new();
        let producer = pipeline.add_producer_named("numbers", Numbers::split(Some(2_000)));
        let even = pipeline.add_consumer_named("even", records[0].take().expect("one"));
        // The odd consumer fails on its second batch, once: its restart takes the rest.
        let failed = Arc::new(AtomicUsize::new(0));
        let odd_seen = seen_by[1].clone();
        let odd = pipeline.add_consumer_with_as(Some("odd".into()), move || {
            let mut record = Record {
                seen: odd_seen.clone(),
                told: None,
                fail_on: None,
                panics: false,
                batches: 0,
                pause: None,
            };
            if failed.fetch_add(1, Ordering::SeqCst) == 0 {
                record.fail_on = Some(2);
            }
            record
        });
        drop(records);
        pipeline.subscribe_with(&producer, &even, SubscribeOptions::new().partition(0));
        pipeline.subscribe_with(&producer, &odd, SubscribeOptions::new().partition(1));
        pipeline.set_restart(&odd, RestartPolicy::permanent());
        let report = bounded("a run with a restart", pipeline.run())
            .await
            .expect("it runs");
        balanced(&report);
        assert_eq!(report.stage("odd").unwrap().restarts, 1, "round {round}");
        let evens: Vec<u64> = (0..2_000).filter(|n| n % 2 == 0).collect();
        assert_eq!(seen(&seen_by[0]), evens);
        // The failed batch is lost (no redeliver); every other odd event arrives once, in order.
        let lost = report.stage("odd").unwrap().lost + report.stage("numbers").unwrap().lost;
        let odds = seen(&seen_by[1]);
        assert_eq!(
            odds.len() as u64 + lost,
            1_000,
            "round {round}: {report:#?}"
        );
        assert!(odds.windows(2).all(|w| w[0] < w[1]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_function_that_panics_fails_its_producer_without_a_hang() {
    for round in 0..100u64 {
        let mut numbers = Numbers::split(Some(5_000));
        numbers.panic_at = Some(100 + round * 37);
        let (pipeline, _, _) = split_pipeline(numbers, |_| Record::new().0);
        let error = bounded("a run whose partition panics", pipeline.run())
            .await
            .expect_err("the producer panics");
        let report = match error {
            PipelineError::StagePanicked { stage, report, .. } => {
                assert_eq!(stage, "numbers");
                report
            }
            other => panic!("{other:?}"),
        };
        balanced(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_that_discards_some_events_balances() {
    for _ in 0..100 {
        let logs = [Record::new(), Record::new()];
        let seen_by: Vec<_> = logs.iter().map(|(_, seen)| seen.clone()).collect();
        let mut records: Vec<_> = logs.into_iter().map(|(record, _)| Some(record)).collect();
        let mut numbers = Numbers::split(Some(3_000));
        numbers.discard_threes = true;
        let (pipeline, _, _) = split_pipeline(numbers, |i| records[i].take().expect("one"));
        let report = bounded("a run", pipeline.run()).await.expect("it runs");
        balanced(&report);
        assert_eq!(report.stage("numbers").unwrap().discarded, 1_000);
        let evens: Vec<u64> = (0..3_000).filter(|n| n % 2 == 0 && n % 3 != 0).collect();
        let odds: Vec<u64> = (0..3_000).filter(|n| n % 2 == 1 && n % 3 != 0).collect();
        assert_eq!(seen(&seen_by[0]), evens);
        assert_eq!(seen(&seen_by[1]), odds);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_switched_from_accumulate_to_forward_delivers_everything() {
    for _ in 0..100 {
        let logs = [Record::new(), Record::new()];
        let seen_by: Vec<_> = logs.iter().map(|(_, seen)| seen.clone()).collect();
        let mut records: Vec<_> = logs.into_iter().map(|(record, _)| Some(record)).collect();
        let mut numbers = Numbers::split(Some(3_000));
        numbers.accumulate = true;
        let (pipeline, producer, _) = split_pipeline(numbers, |i| records[i].take().expect("one"));
        let running = pipeline.start();
        assert_eq!(
            bounded("a call", producer.demand_mode()).await.unwrap(),
            DemandMode::Accumulate
        );
        producer.demand(DemandMode::Forward).expect("taken");
        let report = bounded("the run", running).await.expect("it runs");
        balanced(&report);
        assert_eq!(seen(&seen_by[0]).len(), 1_500);
        assert_eq!(seen(&seen_by[1]).len(), 1_500);
    }
}

/// Splits its input by parity (a partitioned producer_consumer: not the producer's path).
struct SplitRelay;

impl Partition<u64> for SplitRelay {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

impl ProducerConsumer for SplitRelay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_partitioned_producer_consumer_behind_a_partitioned_producer_delivers_everything() {
    for _ in 0..100 {
        let logs = [Record::new(), Record::new()];
        let seen_by: Vec<_> = logs.iter().map(|(_, seen)| seen.clone()).collect();
        let mut records: Vec<_> = logs.into_iter().map(|(record, _)| Some(record)).collect();
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Numbers::split(Some(4_000)));
        let relays = [
            pipeline.add_producer_consumer_named("relay0", SplitRelay),
            pipeline.add_producer_consumer_named("relay1", SplitRelay),
        ];
        let even = pipeline.add_consumer_named("even", records[0].take().expect("one"));
        let odd = pipeline.add_consumer_named("odd", records[1].take().expect("one"));
        for (i, relay) in relays.iter().enumerate() {
            pipeline.subscribe_with(&numbers, relay, SubscribeOptions::new().partition(i));
        }
        // relay0 has only even numbers: its odd partition waits for nothing but must be taken.
        pipeline.subscribe_with(&relays[0], &even, SubscribeOptions::new().partition(0));
        pipeline.subscribe_with(&relays[1], &odd, SubscribeOptions::new().partition(1));
        let (sink0, _) = Record::new();
        let (sink1, _) = Record::new();
        let sink0 = pipeline.add_consumer_named("sink0", sink0);
        let sink1 = pipeline.add_consumer_named("sink1", sink1);
        pipeline.subscribe_with(&relays[0], &sink0, SubscribeOptions::new().partition(1));
        pipeline.subscribe_with(&relays[1], &sink1, SubscribeOptions::new().partition(0));
        let report = bounded("the run", pipeline.run()).await.expect("it runs");
        balanced(&report);
        assert_eq!(seen(&seen_by[0]).len(), 2_000);
        assert_eq!(seen(&seen_by[1]).len(), 2_000);
        assert_eq!(report.stage("sink0").unwrap().events_in, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Change 2: a subscription a dispatcher refused
// ---------------------------------------------------------------------------------------------

/// A demand dispatcher that takes the first `quota` subscriptions and refuses the rest.
struct Quota {
    inner: DemandDispatcher,
    quota: Arc<AtomicUsize>,
}

impl Dispatcher<u64> for Quota {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<u64>,
    ) -> Result<usize, DispatchError> {
        let left = self.quota.load(Ordering::SeqCst);
        if left == 0 {
            return Err(DispatchError("quota spent".into()));
        }
        self.quota.store(left - 1, Ordering::SeqCst);
        Dispatcher::<u64>::subscribe(&mut self.inner, sub, options)
    }
    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        Dispatcher::<u64>::cancel(&mut self.inner, sub)
    }
    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, u64>) -> usize {
        Dispatcher::<u64>::ask(&mut self.inner, sub, demand, out)
    }
    fn dispatch(
        &mut self,
        events: Vec<u64>,
        out: &mut Outbox<'_, u64>,
    ) -> Result<Vec<u64>, DispatchError> {
        Dispatcher::<u64>::dispatch(&mut self.inner, events, out)
    }
    fn capacity(&self) -> usize {
        Dispatcher::<u64>::capacity(&self.inner)
    }
    fn consumers(&self) -> usize {
        Dispatcher::<u64>::consumers(&self.inner)
    }
}

/// [`Numbers`] shared through a [`Quota`] dispatcher.
struct QuotaNumbers(Numbers, Arc<AtomicUsize>);

impl QuotaNumbers {
    fn new(end: Option<u64>, quota: usize) -> (Self, Arc<AtomicUsize>) {
        let quota = Arc::new(AtomicUsize::new(quota));
        (QuotaNumbers(Numbers::shared(end), quota.clone()), quota)
    }
}

impl Producer for QuotaNumbers {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.handle_demand(demand).await
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(Quota {
            inner: DemandDispatcher::new(),
            quota: self.1.clone(),
        })
    }
}

/// What a [`Tell`] consumer saw of its subscriptions.
#[derive(Debug, Clone, PartialEq)]
enum Told {
    Subscribed(String),
    Cancelled(String, CancelReason),
}

/// A consumer that records its events and tells the test of its subscriptions.
struct Tell {
    seen: Arc<Mutex<Vec<u64>>>,
    told: mpsc::UnboundedSender<Told>,
}

impl Consumer for Tell {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let _ = self
            .told
            .send(Told::Subscribed(subscription.producer().to_owned()));
        Demand::Automatic
    }
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.lock().expect("not poisoned").extend(events);
        Ok(())
    }
    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let _ = self.told.send(Told::Cancelled(
            subscription.producer().to_owned(),
            reason.clone(),
        ));
        Ok(())
    }
}

fn tell() -> (Tell, Arc<Mutex<Vec<u64>>>, mpsc::UnboundedReceiver<Told>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (told, told_rx) = mpsc::unbounded_channel();
    (
        Tell {
            seen: seen.clone(),
            told,
        },
        seen,
        told_rx,
    )
}

fn refused() -> CancelReason {
    CancelReason::Refused {
        reason: "quota spent".to_owned(),
    }
}

fn failed_with_refusal(error: PipelineError, consumer: &str) -> Report {
    let PipelineError::StageFailed {
        stage,
        error,
        report,
    } = error
    else {
        panic!("the refused consumer fails: {error:?}");
    };
    assert_eq!(stage, consumer);
    let refusal = error
        .downcast_ref::<SubscriptionRefused>()
        .expect("the refusal");
    assert_eq!(refusal.producer, "picky");
    assert_eq!(refusal.reason, "quota spent");
    *report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_one_of_two_subscriptions_refused_stops_and_the_report_balances() {
    for round in 0..100 {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Numbers::shared(Some(100_000)));
        let (picky, _) = QuotaNumbers::new(Some(10), 1);
        let picky = pipeline.add_producer_named("picky", picky);
        let (first, first_seen) = Record::new();
        let first = pipeline.add_consumer_named("first", first);
        let (c, c_seen, _told) = tell();
        let c = pipeline.add_consumer_named("c", c);
        pipeline.subscribe(&numbers, &c);
        pipeline.subscribe(&picky, &first);
        pipeline.subscribe(&picky, &c);
        let error = bounded("a refused run", pipeline.run())
            .await
            .expect_err("c fails");
        let report = failed_with_refusal(error, "c");
        balanced(&report);
        assert_eq!(seen(&first_seen), (0..10).collect::<Vec<_>>(), "{round}");
        assert_eq!(
            report.stage("c").unwrap().events_in,
            seen(&c_seen).len() as u64
        );
    }
}

/// Doubles nothing: passes its input on.
struct Relay;

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_refused_fails_its_consumers_input_and_the_report_balances() {
    for _ in 0..100 {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Numbers::shared(Some(100_000)));
        let (picky, _) = QuotaNumbers::new(Some(10), 1);
        let picky = pipeline.add_producer_named("picky", picky);
        let (first, _) = Record::new();
        let first = pipeline.add_consumer_named("first", first);
        let relay = pipeline.add_producer_consumer_named("relay", Relay);
        let (sink, sink_seen, mut told) = tell();
        let sink = pipeline.add_consumer_named("sink", sink);
        pipeline.subscribe(&numbers, &relay);
        pipeline.subscribe(&relay, &sink);
        pipeline.subscribe(&picky, &first);
        pipeline.subscribe(&picky, &relay);
        let error = bounded("a refused run", pipeline.run())
            .await
            .expect_err("relay fails");
        let report = failed_with_refusal(error, "relay");
        balanced(&report);
        assert_eq!(
            report.stage("sink").unwrap().events_in,
            seen(&sink_seen).len() as u64
        );
        assert_eq!(told.try_recv().ok(), Some(Told::Subscribed("relay".into())));
        let cancelled = told.try_recv().ok();
        assert!(
            matches!(&cancelled, Some(Told::Cancelled(p, CancelReason::Failed { .. })) if p == "relay"),
            "{cancelled:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_supervisor_refused_stops_and_the_report_balances() {
    for _ in 0..50 {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Numbers::shared(Some(100_000)));
        let (picky, _) = QuotaNumbers::new(Some(10), 1);
        let picky = pipeline.add_producer_named("picky", picky);
        let (first, _) = Record::new();
        let first = pipeline.add_consumer_named("first", first);
        let jobs = pipeline.add_consumer_named(
            "jobs",
            ConsumerSupervisor::new(|_: u64| async {
                tokio::time::sleep(Duration::from_millis(1)).await;
            })
            .max_demand(8),
        );
        pipeline.subscribe(&numbers, &jobs);
        pipeline.subscribe(&picky, &first);
        pipeline.subscribe(&picky, &jobs);
        let error = bounded("a refused run", pipeline.run())
            .await
            .expect_err("jobs fails");
        let report = failed_with_refusal(error, "jobs");
        balanced(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_the_handle_makes_and_a_dispatcher_refuses() {
    for mode in [
        CancelMode::Permanent,
        CancelMode::Transient,
        CancelMode::Temporary,
    ] {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Numbers::shared(None));
        let (picky, _) = QuotaNumbers::new(None, 1);
        let picky = pipeline.add_producer_named("picky", picky);
        let (c, _, mut told) = tell();
        let c = pipeline.add_consumer_named("c", c);
        pipeline.subscribe(&numbers, &c);
        pipeline.subscribe(&picky, &c);
        let running = pipeline.start();
        let first = bounded("subscriptions", running.subscriptions(&picky, &c))
            .await
            .expect("listed");
        assert_eq!(first.len(), 1);
        // A resubscribe whose new subscription the dispatcher refuses: the old one is over.
        let options = SubscribeOptions::new().cancel(mode).max_demand(50);
        let second = bounded(
            "resubscribe",
            running.resubscribe(first[0], &picky, &c, options),
        )
        .await
        .expect("made");
        assert_ne!(second, first[0]);
        let mut ends = Vec::new();
        while ends.len() < 2 {
            match bounded("told", told.recv()).await.expect("told") {
                Told::Subscribed(_) => {}
                Told::Cancelled(producer, reason) => ends.push((producer, reason)),
            }
        }
        assert_eq!(
            ends,
            [
                ("picky".to_owned(), CancelReason::Cancelled),
                ("picky".to_owned(), refused())
            ],
            "{mode:?}"
        );
        // Not listed; or, c stopped by the refusal and both producers left without a consumer,
        // the pipeline has ended.
        let listed = bounded("subscriptions", running.subscriptions(&picky, &c)).await;
        assert!(
            matches!(&listed, Ok(listed) if listed.is_empty())
                || (mode != CancelMode::Temporary
                    && matches!(listed, Err(PipelineError::NotRunning))),
            "{mode:?}: {listed:?}"
        );
        if mode == CancelMode::Temporary {
            assert_eq!(
                bounded("subscriptions", running.subscriptions(&picky, &c))
                    .await
                    .expect("listed"),
                []
            );
            let report = bounded("shutdown", running.shutdown())
                .await
                .expect("nothing failed");
            balanced(&report);
        } else {
            let error = bounded("shutdown", running.shutdown())
                .await
                .expect_err("c failed");
            let report = failed_with_refusal(error, "c");
            balanced(&report);
        }
    }
}

/// Passes its input on, after a yield (its callback waits once).
struct Yielding;

impl ProducerConsumer for Yielding {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        tokio::task::yield_now().await;
        Ok(events)
    }
}

/// Asks the producer how much it holds, and tells the test it has the answer.
struct AskProducer(genstage::ProducerRef<Numbers>, mpsc::UnboundedSender<usize>);

impl HandleInfo<AskProducer> for Yielding {
    type Emitted = ();
    async fn handle_info(
        &mut self,
        info: AskProducer,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let buffered = info.0.estimate_buffered_count().await?;
        let _ = info.1.send(buffered);
        Ok(())
    }
}

/// A partition's stage calls its producer from a callback: the producer answers, as it does
/// without hand-offs, rather than wait for that stage to give back the wake-up it took.
async fn a_partition_calling_its_producer_gets_an_answer(rounds: usize) {
    for round in 0..rounds {
        let mut numbers = Numbers::split(None);
        numbers.custom = round % 2 == 1;
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", numbers);
        let calling = pipeline.add_producer_consumer_named("calling", Yielding);
        let (sink, _) = Record::new();
        let sink = pipeline.add_consumer_named("sink", sink);
        let (other, _) = Record::new();
        let other = pipeline.add_consumer_named("other", other);
        pipeline.subscribe_with(&numbers, &calling, SubscribeOptions::new().partition(0));
        pipeline.subscribe_with(&numbers, &other, SubscribeOptions::new().partition(1));
        pipeline.subscribe(&calling, &sink);
        let running = pipeline.start();
        let (answer, mut answers) = mpsc::unbounded_channel();
        for call in 0..50 {
            calling
                .info(AskProducer(numbers.clone(), answer.clone()))
                .expect("taken");
            // Well within the call's own timeout of 5 s.
            tokio::time::timeout(Duration::from_secs(2), answers.recv())
                .await
                .unwrap_or_else(|_| panic!("round {round}, call {call}: no answer"))
                .expect("answered");
        }
        let report = bounded("shutdown", running.shutdown())
            .await
            .expect("it shuts down");
        balanced(&report);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_calling_its_producer_gets_an_answer_on_two_workers() {
    a_partition_calling_its_producer_gets_an_answer(100).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_partition_calling_its_producer_gets_an_answer_on_one_thread() {
    a_partition_calling_its_producer_gets_an_answer(100).await;
}

impl genstage::Stage for QuotaNumbers {
    type Ref = genstage::ProducerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_producer_named(name.unwrap_or_else(|| "QuotaNumbers".into()), self)
    }
}

impl genstage::Stage for Record {
    type Ref = genstage::ConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_named(name.unwrap_or_else(|| "Record".into()), self)
    }
}

impl genstage::Stage for Tell {
    type Ref = genstage::ConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_named(name.unwrap_or_else(|| "Tell".into()), self)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_macro_consumer_that_a_dispatcher_refuses_fails_unless_temporary() {
    let (quota_numbers, _) = QuotaNumbers::new(Some(10), 1);
    let (first, first_seen) = Record::new();
    let (c, _, mut told) = tell();
    let pipeline = genstage::pipeline! {
        picky = quota_numbers;
        picky -> first = first;
        picky -> c = c;
    };
    let error = bounded("a refused run", pipeline.run())
        .await
        .expect_err("c fails");
    let report = failed_with_refusal(error, "c");
    balanced(&report);
    assert_eq!(seen(&first_seen), (0..10).collect::<Vec<_>>());
    assert_eq!(told.try_recv().ok(), Some(Told::Subscribed("picky".into())));
    assert_eq!(
        told.try_recv().ok(),
        Some(Told::Cancelled("picky".into(), refused()))
    );

    let (quota_numbers, _) = QuotaNumbers::new(Some(10), 1);
    let (first, first_seen) = Record::new();
    let (c, _, mut told) = tell();
    let pipeline = genstage::pipeline! {
        picky = quota_numbers;
        picky -> first = first;
        picky -[cancel = temporary]-> c = c;
    };
    let report = bounded("a run", pipeline.run())
        .await
        .expect("a temporary refusal fails nothing");
    balanced(&report);
    assert_eq!(seen(&first_seen), (0..10).collect::<Vec<_>>());
    assert_eq!(report.stage("c").unwrap().events_in, 0);
    assert_eq!(told.try_recv().ok(), Some(Told::Subscribed("picky".into())));
    assert_eq!(
        told.try_recv().ok(),
        Some(Told::Cancelled("picky".into(), refused()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_producer_restarted_each_time_it_finishes_never_stalls() {
    for round in 0..50 {
        let logs = [Record::new(), Record::new()];
        let seen_by: Vec<_> = logs.iter().map(|(_, seen)| seen.clone()).collect();
        let mut records: Vec<_> = logs.into_iter().map(|(record, _)| Some(record)).collect();
        let mut pipeline = Pipeline::new();
        let numbers =
            pipeline.add_producer_with_as(Some("numbers".into()), || Numbers::split(Some(3_000)));
        let even = pipeline.add_consumer_named("even", records[0].take().expect("one"));
        let odd = pipeline.add_consumer_named("odd", records[1].take().expect("one"));
        pipeline.subscribe_with(&numbers, &even, SubscribeOptions::new().partition(0));
        pipeline.subscribe_with(&numbers, &odd, SubscribeOptions::new().partition(1));
        pipeline.set_restart(
            &numbers,
            RestartPolicy::permanent().max_restarts(3, Duration::from_secs(60)),
        );
        // Restarted each time it finishes, it ends after its fourth run, past its limit.
        let error = bounded("a restarting run", pipeline.run())
            .await
            .expect_err("past its restart limit");
        assert!(
            matches!(&error, PipelineError::RestartLimit { stage, .. } if stage == "numbers"),
            "round {round}: {error:?}"
        );
        let report = error.report().expect("a report");
        balanced(report);
        assert_eq!(report.stage("numbers").unwrap().restarts, 3);
        let evens: Vec<u64> = (0..3_000).filter(|n| n % 2 == 0).collect();
        assert_eq!(seen(&seen_by[0]), evens.repeat(4), "round {round}");
        assert_eq!(seen(&seen_by[1]).len(), 6_000);
    }
}

/// Passes its input on; told of a refusal, emits `REFUSAL_MARK`.
struct MarkRefusal;

const REFUSAL_MARK: u64 = 1_000_000;

impl ProducerConsumer for MarkRefusal {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    async fn handle_cancel(
        &mut self,
        _subscription: &Subscription,
        reason: &CancelReason,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(match reason {
            CancelReason::Refused { .. } => vec![REFUSAL_MARK],
            _ => Vec::new(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_producer_consumer_whose_handle_cancel_emits_balances() {
    for round in 0..100 {
        let mut pipeline = Pipeline::new();
        let (picky, _) = QuotaNumbers::new(Some(10), 1);
        let picky = pipeline.add_producer_named("picky", picky);
        let (first, _) = Record::new();
        let first = pipeline.add_consumer_named("first", first);
        let relay = pipeline.add_producer_consumer_named("relay", MarkRefusal);
        let (sink, sink_seen) = Record::new();
        let sink = pipeline.add_consumer_named("sink", sink);
        let numbers = pipeline.add_producer_named("numbers", Numbers::shared(Some(100)));
        pipeline.subscribe(&numbers, &relay);
        pipeline.subscribe(&relay, &sink);
        pipeline.subscribe(&picky, &first);
        pipeline.subscribe(&picky, &relay);
        let error = bounded("a refused run", pipeline.run())
            .await
            .expect_err("relay fails");
        let report = failed_with_refusal(error, "relay");
        balanced(&report);
        let sink_seen = seen(&sink_seen);
        assert_eq!(
            report.stage("sink").unwrap().events_in,
            sink_seen.len() as u64,
            "round {round}"
        );
        let relay_report = report.stage("relay").unwrap();
        assert_eq!(relay_report.emitted, relay_report.events_in + 1, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_freed_by_a_failed_consumer_takes_a_new_one_through_the_handle() {
    for round in 0..100 {
        let mut numbers = Numbers::split(None);
        numbers.wait = true;
        let mut made = 0;
        let (pipeline, producer, [even, _odd]) = split_pipeline(numbers, |i| {
            made += 1;
            let (mut record, _) = Record::new();
            if i == 0 {
                record.fail_on = Some(1);
            }
            record
        });
        assert_eq!(made, 2);
        let running = pipeline.start();
        let ended = bounded("the even consumer's end", running.stage_ended(&even))
            .await
            .expect("it ended");
        assert!(ended.failed(), "{ended:?}");
        let (mut again, again_seen) = Record::new();
        let (told, mut counts) = mpsc::unbounded_channel();
        again.told = Some(told);
        let again = bounded("add", running.add_consumer_named("again", again))
            .await
            .expect("added");
        let options = SubscribeOptions::new().partition(0);
        bounded(
            "subscribe",
            running.subscribe_with(&producer, &again, options),
        )
        .await
        .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
        loop {
            let count = bounded("events for the new consumer", counts.recv())
                .await
                .unwrap_or_else(|| panic!("round {round}: the new consumer stopped"));
            if count >= 100 {
                break;
            }
        }
        let error = bounded("shutdown", running.shutdown())
            .await
            .expect_err("even failed");
        let report = error.report().expect("a report");
        balanced(report);
        assert_eq!(
            report.stage("again").unwrap().events_in,
            seen(&again_seen).len() as u64
        );
        assert!(seen(&again_seen).iter().all(|n| n % 2 == 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_supervisor_refused_through_the_handle_loses_its_running_children() {
    for round in 0..20 {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Numbers::shared(None));
        // Takes `first`, refuses `jobs`.
        let (picky, _) = QuotaNumbers::new(None, 1);
        let picky = pipeline.add_producer_named("picky", picky);
        let (started, mut starts) = mpsc::unbounded_channel();
        let jobs = pipeline.add_consumer_named(
            "jobs",
            ConsumerSupervisor::new(move |n: u64| {
                let _ = started.send(n);
                // Runs until it is aborted.
                std::future::pending::<()>()
            })
            .max_demand(4),
        );
        pipeline.subscribe(&numbers, &jobs);
        let (first, _) = Record::new();
        let first = pipeline.add_consumer_named("first", first);
        pipeline.subscribe(&picky, &first);
        let running = pipeline.start();
        for _ in 0..4 {
            bounded("a child", starts.recv()).await.expect("started");
        }
        bounded("subscribe", running.subscribe(&picky, &jobs))
            .await
            .expect("made, then refused");
        let ended = bounded("jobs' end", running.stage_ended(&jobs))
            .await
            .expect("it ended");
        assert!(ended.failed(), "round {round}: {ended:?}");
        assert_eq!(ended.events_in, 0);
        assert_eq!(ended.lost, 4, "round {round}: its four children");
        let error = bounded("shutdown", running.shutdown())
            .await
            .expect_err("jobs failed");
        let report = failed_with_refusal(error, "jobs");
        balanced(&report);
    }
}
