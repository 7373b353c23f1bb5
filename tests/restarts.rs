//! Restart policies (OTP's permanent, transient, temporary), the restart intensity limit,
//! redelivery and the poison event, through the builder: which stages restart, which stop, which
//! go on, and the report's exact counts.
//!
//! Runs are wrapped in a timeout that guards against hangs; it is not a timing assertion.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::StageRef as _;
use genstage::{
    from_iter, CancelReason, Consumer, Context, Demand, EdgeReport, Emit, LossReason, NoInput,
    Pipeline, PipelineError, Producer, ProducerConsumer, RestartPolicy, StageResult, StageStatus,
    SubscribeOptions, Subscriber, Subscription, SubscriptionTag,
};

mod faults;
mod run_reports;

use faults::{count_on, fail, Fault, Faults};
use run_reports::{guard, lost, report_of, stage};

fn edge(producer: &str, consumer: &str, sent: u64, handled: u64, lost: u64) -> EdgeReport {
    EdgeReport {
        producer: producer.into(),
        consumer: consumer.into(),
        sent,
        handled,
        lost,
    }
}

/// Records every event it handles, in order; fails on the events of `faults`, after recording
/// the events of the batch before it.
struct Flaky {
    faults: Faults,
    fault: Fault,
    seen: Arc<Mutex<Vec<u64>>>,
    policy: RestartPolicy<u64>,
    /// `handle_subscribe` calls, over every value.
    subscribed: Arc<AtomicUsize>,
}

impl Consumer for Flaky {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for event in events {
            if self.faults.strikes(event) {
                return fail(self.fault, "Flaky", event);
            }
            self.seen.lock().unwrap().push(event);
        }
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(10).min_demand(5)
    }
    fn handle_subscribe(&mut self, _: &Subscription, _: &mut Context<'_, Self>) -> Demand {
        self.subscribed.fetch_add(1, Ordering::Relaxed);
        Demand::Automatic
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

/// A `Flaky` consumer of `0..count`, built by a constructor; what it saw, and its
/// `handle_subscribe` calls.
struct FlakyRun {
    pipeline: Pipeline,
    seen: Arc<Mutex<Vec<u64>>>,
    subscribed: Arc<AtomicUsize>,
}

fn flaky_run(count: u64, faults: Faults, fault: Fault, policy: RestartPolicy<u64>) -> FlakyRun {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..count));
    let (s, sub) = (seen.clone(), subscribed.clone());
    let flaky = pipeline.add_consumer_with(move || Flaky {
        faults: faults.clone(),
        fault,
        seen: s.clone(),
        policy,
        subscribed: sub.clone(),
    });
    pipeline.subscribe(&numbers, &flaky);
    FlakyRun {
        pipeline,
        seen,
        subscribed,
    }
}

#[tokio::test]
async fn a_transient_consumer_restarts_and_loses_the_batch_it_failed_on() {
    for fault in [Fault::Error, Fault::Panic] {
        let run = flaky_run(
            100,
            Faults::on(&[(7, 1)]),
            fault,
            RestartPolicy::transient(),
        );
        let report = guard(run.pipeline.run())
            .await
            .expect("one restart is allowed");
        let flaky = stage(&report, "Flaky");
        // Batches of 5 (max 10, min 5): 5..10 held 7; 5 and 6 were handled before it failed, but
        // the batch is counted as lost, as the stage did not return it.
        assert_eq!(flaky.restarts, 1, "{fault:?}");
        assert_eq!(flaky.events_in, 95);
        assert_eq!(lost(flaky, LossReason::FailedBatch), 5);
        assert_eq!(flaky.lost, 5);
        assert_eq!(flaky.redelivered, 0);
        assert_eq!(flaky.status, StageStatus::Finished);
        assert_eq!(flaky.failures.len(), 1);
        assert!(flaky.failures[0].contains("on 7"), "{:?}", flaky.failures);
        let expected: Vec<u64> = (0..7).chain(10..100).collect();
        assert_eq!(*run.seen.lock().unwrap(), expected);
        // The new value was told of its subscription, as the first one was.
        assert_eq!(run.subscribed.load(Ordering::Relaxed), 2);
        assert_eq!(report.edges, vec![edge("from_iter", "Flaky", 100, 95, 5)]);
        assert!(report.balanced(), "{report}");
        assert_eq!(stage(&report, "from_iter").status, StageStatus::Finished);
    }
}

#[tokio::test]
async fn a_temporary_consumer_is_not_restarted() {
    let run = flaky_run(
        100,
        Faults::on(&[(7, 1)]),
        Fault::Error,
        RestartPolicy::temporary(),
    );
    let (report, error) = report_of(guard(run.pipeline.run()).await);
    assert!(
        matches!(error, Some(PipelineError::StageFailed { ref stage, .. }) if stage == "Flaky")
    );
    let flaky = stage(&report, "Flaky");
    assert_eq!(flaky.restarts, 0);
    assert_eq!(
        flaky.status,
        StageStatus::Failed("Flaky failed on 7".into())
    );
    assert_eq!(flaky.failures, Vec::<String>::new());
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn redelivery_hands_the_failed_batch_again_so_every_event_is_handled() {
    for fault in [Fault::Error, Fault::Panic] {
        let run = flaky_run(
            100,
            Faults::on(&[(7, 1), (42, 1)]),
            fault,
            RestartPolicy::transient().redeliver(),
        );
        let report = guard(run.pipeline.run())
            .await
            .expect("two restarts are allowed");
        let flaky = stage(&report, "Flaky");
        assert_eq!(flaky.restarts, 2, "{fault:?}");
        // Every event handled, counted once.
        assert_eq!(flaky.events_in, 100);
        assert_eq!(flaky.lost, 0);
        // The batches 5..10 and 40..45, handed again.
        assert_eq!(flaky.redelivered, 10);
        // At least once: 5, 6, 40 and 41 were handled by the failed values too.
        let mut seen = run.seen.lock().unwrap().clone();
        let mut expected: Vec<u64> = (0..100).chain([5, 6, 40, 41]).collect();
        seen.sort_unstable();
        expected.sort_unstable();
        assert_eq!(seen, expected);
        assert_eq!(report.edges, vec![edge("from_iter", "Flaky", 100, 100, 0)]);
        assert!(report.balanced(), "{report}");
    }
}

#[tokio::test]
async fn an_event_that_fails_every_time_is_reported_as_the_poison_event() {
    let run = flaky_run(
        100,
        Faults::on(&[(7, u32::MAX)]),
        Fault::Error,
        RestartPolicy::transient().redeliver(),
    );
    let (report, error) = report_of(guard(run.pipeline.run()).await);
    stopped_on_poison_7(&report, error, Duration::from_secs(5));
    assert_eq!(
        error_text(&run_poison_message()),
        "stage `Flaky` failed more often than its restart policy allows (3 restarts in 5s), and was stopped; the event at index 2 of its batch failed it each time; last failure: failed: Flaky failed on 7"
    );
}

/// Checks how `Flaky`, failing on 7 each time, redelivered, with 3 restarts allowed `within`, was
/// stopped: the restart limit, with 7 (the third event of its batch 5..10) as the poison event.
#[track_caller]
fn stopped_on_poison_7(report: &genstage::Report, error: Option<PipelineError>, window: Duration) {
    let Some(PipelineError::RestartLimit {
        stage: name,
        max_restarts,
        within,
        failures,
        poison,
        ..
    }) = error
    else {
        panic!("the restart limit is reached: {error:?}");
    };
    assert_eq!(name, "Flaky");
    assert_eq!((max_restarts, within, poison), (3, window, Some(2)));
    assert_eq!(failures, vec!["failed: Flaky failed on 7".to_owned(); 4]);
    let flaky = stage(report, "Flaky");
    assert_eq!(flaky.restarts, 3);
    // The batch after the first failure, then 7 alone after the second and the third.
    assert_eq!(flaky.redelivered, 5 + 2);
    assert_eq!(
        flaky.status,
        StageStatus::Failed("Flaky failed on 7".into())
    );
    // 0..7 handled; 7 lost as the batch it failed on; 8 and 9 waited for redelivery.
    assert_eq!(flaky.events_in, 7);
    assert_eq!(lost(flaky, LossReason::FailedBatch), 1);
    assert!(lost(flaky, LossReason::Unhandled) >= 2);
    assert!(report.balanced(), "{report}");
}

fn run_poison_message() -> PipelineError {
    PipelineError::RestartLimit {
        stage: "Flaky".into(),
        max_restarts: 3,
        within: Duration::from_secs(5),
        failures: vec!["failed: Flaky failed on 7".into()],
        poison: Some(2),
        report: Box::default(),
    }
}

fn error_text(error: &PipelineError) -> String {
    error.to_string()
}

/// A window of zero (`RestartPolicy::max_restarts(3, Duration::ZERO)`, set through the builder;
/// `#[stage]` refuses `max_seconds = 0`) holds the restarts less than a second old, as GenStage's
/// `max_seconds: 0` holds those of the same second: a poison event redelivered at once each time
/// reaches the limit, as with the default window. It used to hold no earlier restart, so the stage
/// was restarted on the poison event for ever, and the run never ended. Not on the paused clock,
/// on which every restart would be at the same instant, and the old rule would have counted them
/// too; on the real clock, the test assumes four restarts of a stage that fails at once take less
/// than a second (they take microseconds).
///
/// The loop of restarts never yielded to its runtime, so no timer of that runtime fired: the run is
/// on a runtime and a thread of its own, and the test waits for it at most 10 s, so that a
/// regression fails instead of hanging (leaving that thread to spin until the tests end).
#[test]
fn a_zero_window_counts_the_restarts_of_the_last_second_and_stops_a_poison_loop() {
    let run = flaky_run(
        100,
        Faults::on(&[(7, u32::MAX)]),
        Fault::Error,
        RestartPolicy::transient()
            .max_restarts(3, Duration::ZERO)
            .redeliver(),
    );
    let (done, ended) = std::sync::mpsc::channel();
    let pipeline = run.pipeline;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _ = done.send(runtime.block_on(pipeline.run()));
    });
    let ended = ended
        .recv_timeout(Duration::from_secs(10))
        .expect("the stage was restarted on its poison event for ever");
    let (report, error) = report_of(ended);
    assert_eq!(
        error.as_ref().map(ToString::to_string).as_deref(),
        Some("stage `Flaky` failed more often than its restart policy allows (3 restarts within a second: a window of 0), and was stopped; the event at index 2 of its batch failed it each time; last failure: failed: Flaky failed on 7")
    );
    stopped_on_poison_7(&report, error, Duration::ZERO);
}

/// Fails on every batch, recording each time how far the ticker task has counted.
struct Poisoned {
    ticks: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Consumer for Poisoned {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        self.seen
            .lock()
            .unwrap()
            .push(self.ticks.load(Ordering::SeqCst));
        Err("poisoned".into())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
            .max_restarts(100, Duration::from_secs(3600))
            .redeliver()
    }
}

/// A stage restarted on its poison event, which fails at once each time, yields to the runtime
/// between restarts: on this current-thread runtime, the ticker task counts at least once every
/// two of its 101 failures (tokio runs the tasks that yielded in turns). Without the yield, the
/// restarts ran back to back, the ticker never ran until the limit, and every failure saw the
/// same count.
#[tokio::test]
async fn a_poison_loop_lets_the_other_tasks_run_between_restarts() {
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..1u64));
    let poisoned = pipeline.add_consumer_with({
        let (ticks, seen) = (ticks.clone(), seen.clone());
        move || Poisoned {
            ticks: ticks.clone(),
            seen: seen.clone(),
        }
    });
    pipeline.subscribe(&numbers, &poisoned);
    let error = guard(pipeline.run()).await.unwrap_err();
    ticker.abort();
    assert!(
        matches!(
            error,
            PipelineError::RestartLimit {
                poison: Some(0),
                ..
            }
        ),
        "{error:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 101);
    assert!(
        seen.windows(3).all(|three| three[2] > three[0]),
        "the ticker did not run between restarts: {seen:?}"
    );
}

#[tokio::test]
async fn without_redelivery_a_failing_event_is_lost_once_and_never_loops() {
    let run = flaky_run(
        100,
        Faults::on(&[(7, u32::MAX)]),
        Fault::Panic,
        RestartPolicy::transient(),
    );
    let report = guard(run.pipeline.run()).await.expect("one restart");
    let flaky = stage(&report, "Flaky");
    assert_eq!((flaky.restarts, flaky.events_in, flaky.lost), (1, 95, 5));
}

#[tokio::test(start_paused = true)]
async fn restarts_spread_wider_than_the_window_never_reach_the_limit() {
    // One batch a second; failures on the batches of 10, 30, 50 and 70: 2 s apart, so never more
    // than 3 in a window of 5 s.
    let faults = Faults::on(&[(10, 1), (30, 1), (50, 1), (70, 1)]);
    let slow = |policy: RestartPolicy<u64>| {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer(from_iter(0..100u64));
        let faults = faults.clone();
        let slow = pipeline.add_consumer_with(move || Slow {
            faults: faults.clone(),
            policy,
        });
        pipeline.subscribe_with(
            &numbers,
            &slow,
            SubscribeOptions::new().max_demand(20).min_demand(10),
        );
        pipeline
    };
    let report = guard(slow(RestartPolicy::transient()).run())
        .await
        .expect("never 4 restarts within 5 s");
    assert_eq!(stage(&report, "Slow").restarts, 4);
    assert_eq!(stage(&report, "Slow").events_in, 60);

    // The same with a window of 10 s: the fourth failure is one too many.
    let faults = Faults::on(&[(10, 1), (30, 1), (50, 1), (70, 1)]);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let slow = pipeline.add_consumer_with(move || Slow {
        faults: faults.clone(),
        policy: RestartPolicy::transient().max_restarts(3, Duration::from_secs(10)),
    });
    pipeline.subscribe_with(
        &numbers,
        &slow,
        SubscribeOptions::new().max_demand(20).min_demand(10),
    );
    let (report, error) = report_of(guard(pipeline.run()).await);
    assert!(matches!(
        error,
        Some(PipelineError::RestartLimit { poison: None, .. })
    ));
    assert_eq!(stage(&report, "Slow").restarts, 3);
    assert!(report.balanced(), "{report}");
}

/// Takes a second per batch; fails on the events of `faults`.
struct Slow {
    faults: Faults,
    policy: RestartPolicy<u64>,
}

impl Consumer for Slow {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match events.iter().find(|&&event| self.faults.strikes(event)) {
            Some(&event) => fail(Fault::Error, "Slow", event),
            None => Ok(()),
        }
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

/// Doubles; panics on the events of `faults`.
struct Doubler {
    faults: Faults,
}

impl ProducerConsumer for Doubler {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        if let Some(&event) = events.iter().find(|&&event| self.faults.strikes(event)) {
            panic!("Doubler panicked on {event}");
        }
        Ok(events.into_iter().map(|n| 2 * n).collect())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

/// Collects what it receives, and how its subscriptions ended.
struct Collect {
    seen: Arc<Mutex<Vec<u64>>>,
    cancels: Arc<Mutex<Vec<CancelReason>>>,
}

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    async fn handle_cancel(
        &mut self,
        _: &Subscription,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.cancels.lock().unwrap().push(reason.clone());
        Ok(())
    }
}

#[tokio::test]
async fn a_restarted_producer_consumer_keeps_its_consumers_who_see_no_cancellation() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cancels = Arc::new(Mutex::new(Vec::new()));
    let faults = Faults::on(&[(33, 1)]);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let doubler = pipeline.add_producer_consumer_with(move || Doubler {
        faults: faults.clone(),
    });
    let collect = pipeline.add_consumer(Collect {
        seen: seen.clone(),
        cancels: cancels.clone(),
    });
    pipeline
        .subscribe_with(
            &numbers,
            &doubler,
            SubscribeOptions::new().max_demand(10).min_demand(5),
        )
        .subscribe(&doubler, &collect);
    let report = guard(pipeline.run()).await.expect("one restart");
    let doubler = stage(&report, "Doubler");
    assert_eq!(
        (doubler.restarts, doubler.events_in, doubler.lost),
        (1, 95, 5)
    );
    assert!(matches!(doubler.status, StageStatus::Finished));
    // Everything but the batch 30..35, doubled, in order.
    let expected: Vec<u64> = (0..30).chain(35..100).map(|n| 2 * n).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    // Its consumer saw its subscription end once, when it finished: not at the restart.
    assert_eq!(*cancels.lock().unwrap(), vec![CancelReason::Finished]);
    assert!(report.balanced(), "{report}");
}

/// A group built by `add_producer_consumers_with_as` is restarted instance by instance: the one that
/// failed is made again by `make` with its own index, under its own name, and the others go on.
#[tokio::test]
async fn a_group_built_with_a_constructor_restarts_the_instance_that_failed() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let made = Arc::new(Mutex::new(Vec::new()));
    let faults = Faults::on(&[(33, 1)]);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let doublers = pipeline.add_producer_consumers_with_as(Some("doublers".into()), 2, {
        let made = made.clone();
        move |i| {
            made.lock().unwrap().push(i);
            Doubler {
                faults: faults.clone(),
            }
        }
    });
    let collect = pipeline.add_consumer(Collect {
        seen: seen.clone(),
        cancels: Arc::default(),
    });
    for doubler in &doublers {
        let options = SubscribeOptions::new().max_demand(10).min_demand(5);
        pipeline
            .subscribe_with(&numbers, doubler, options)
            .subscribe(doubler, &collect);
    }
    let report = guard(pipeline.run()).await.expect("one restart");
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["from_iter", "doublers[0]", "doublers[1]", "Collect"]
    );
    // Both made once, then the one that met 33 again.
    let made = made.lock().unwrap().clone();
    let (failed, other) = match made[..] {
        [0, 1, failed] if failed < 2 => (failed, 1 - failed),
        _ => panic!("made {made:?}"),
    };
    let failed = stage(&report, &format!("doublers[{failed}]"));
    assert_eq!((failed.restarts, failed.lost), (1, 5), "{report}");
    assert!(matches!(failed.status, StageStatus::Finished));
    let other = stage(&report, &format!("doublers[{other}]"));
    assert_eq!((other.restarts, other.lost), (0, 0), "{report}");
    // Every event but the failed batch of 5, 33 among them, doubled.
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen.len(), 95);
    assert!(!seen.contains(&66));
    assert!(report.balanced(), "{report}");
}

/// Counts on from a shared counter, so that a rebuilt value goes on where the failed one was;
/// fails on its `fail_on`-th call, once; ends at `end`.
struct Counter {
    next: Arc<AtomicU64>,
    end: u64,
    calls: Arc<AtomicU64>,
    fail_on: u64,
    policy: RestartPolicy<NoInput>,
    told: Arc<AtomicUsize>,
}

impl Producer for Counter {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        if self.calls.fetch_add(1, Ordering::Relaxed) + 1 == self.fail_on {
            return Err("Counter failed".into());
        }
        Ok(count_on(&self.next, demand, self.end))
    }
    fn handle_consumer_subscribe(&mut self, _: &Subscriber, _: &mut Context<'_, Self>) {
        self.told.fetch_add(1, Ordering::Relaxed);
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        self.policy
    }
}

struct CounterRun {
    pipeline: Pipeline,
    seen: Arc<Mutex<Vec<u64>>>,
    cancels: Arc<Mutex<Vec<CancelReason>>>,
    told: Arc<AtomicUsize>,
}

fn counter_run(end: u64, fail_on: u64, policy: RestartPolicy<NoInput>, shared: bool) -> CounterRun {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cancels = Arc::new(Mutex::new(Vec::new()));
    let told = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let t = told.clone();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_with(move || Counter {
        // A value that does not share the counter starts again from 0.
        next: if shared {
            next.clone()
        } else {
            Arc::new(AtomicU64::new(0))
        },
        end,
        calls: calls.clone(),
        fail_on,
        policy,
        told: t.clone(),
    });
    let collect = pipeline.add_consumer(Collect {
        seen: seen.clone(),
        cancels: cancels.clone(),
    });
    pipeline.subscribe_with(
        &counter,
        &collect,
        SubscribeOptions::new().max_demand(10).min_demand(5),
    );
    CounterRun {
        pipeline,
        seen,
        cancels,
        told,
    }
}

#[tokio::test]
async fn a_transient_producer_restarts_with_its_consumers_demand_and_buffer_kept() {
    let run = counter_run(100, 3, RestartPolicy::transient(), true);
    let report = guard(run.pipeline.run()).await.expect("one restart");
    let counter = stage(&report, "Counter");
    assert_eq!(
        (counter.restarts, counter.emitted, counter.lost),
        (1, 100, 0)
    );
    assert_eq!(*run.seen.lock().unwrap(), (0..100).collect::<Vec<_>>());
    assert_eq!(*run.cancels.lock().unwrap(), vec![CancelReason::Finished]);
    // The new value was told of its consumer, as the first one was.
    assert_eq!(run.told.load(Ordering::Relaxed), 2);
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_permanent_producer_is_restarted_when_it_finishes_until_the_limit() {
    // Each value emits 0..10 and ends: restarted three times, the fourth end is one too many.
    let run = counter_run(10, 0, RestartPolicy::permanent(), false);
    let (report, error) = report_of(guard(run.pipeline.run()).await);
    assert!(
        matches!(error, Some(PipelineError::RestartLimit { ref stage, poison: None, .. }) if stage == "Counter"),
        "{error:?}"
    );
    let counter = stage(&report, "Counter");
    assert_eq!((counter.restarts, counter.emitted), (3, 40));
    assert_eq!(counter.failures, vec!["finished".to_owned(); 4]);
    // Four ends for three restarts: the line does not say that each came before a restart.
    assert!(
        report.to_string().lines().any(|line| line
            == "restarted Counter 3 times; the last ends its restart policy acted on, oldest \
                first: finished; finished; finished; finished"),
        "{report}"
    );
    let expected: Vec<u64> = (0..4).flat_map(|_| 0..10).collect();
    assert_eq!(*run.seen.lock().unwrap(), expected);
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_transient_producer_that_finishes_is_not_restarted() {
    let run = counter_run(10, 0, RestartPolicy::transient(), false);
    let report = guard(run.pipeline.run()).await.expect("it finishes");
    assert_eq!(stage(&report, "Counter").restarts, 0);
    assert_eq!(*run.seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stage_restarted_but_added_as_a_value_is_refused_by_run() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let collect = pipeline.add_consumer(Collect {
        seen: Arc::default(),
        cancels: Arc::default(),
    });
    pipeline.subscribe(&numbers, &collect);
    pipeline.set_restart(&collect, RestartPolicy::transient());
    let error = guard(pipeline.run())
        .await
        .expect_err("it cannot be built again");
    assert!(matches!(error, PipelineError::NotRebuildable { ref stage, .. } if stage == "Collect"));
    assert_eq!(
        error.to_string(),
        "stage `Collect` is restarted (transient), but it was added as a value, which cannot be made again: add it with a constructor (`add_consumer_with(|| …)`), or, in `pipeline!`, write it as an expression that stands on its own (no local variable, no call by a bare name)"
    );
}

#[tokio::test]
async fn the_refusal_names_the_constructor_of_the_stages_role() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let doubler = pipeline.add_producer_consumer(Doubler {
        faults: Faults::on(&[]),
    });
    let collect = pipeline.add_consumer_with(|| Collect {
        seen: Arc::default(),
        cancels: Arc::default(),
    });
    pipeline.subscribe(&numbers, &doubler);
    pipeline.subscribe(&doubler, &collect);
    let error = guard(pipeline.run())
        .await
        .expect_err("its type's policy restarts it");
    assert!(
        matches!(
            error,
            PipelineError::NotRebuildable { ref stage, constructor: "add_producer_consumer_with", .. }
                if stage == "Doubler"
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("add it with a constructor (`add_producer_consumer_with(|| …)`)"),
        "{error}"
    );

    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let collect = pipeline.add_consumer_with(|| Collect {
        seen: Arc::default(),
        cancels: Arc::default(),
    });
    pipeline.subscribe(&numbers, &collect);
    pipeline.set_restart(&numbers, RestartPolicy::permanent());
    let error = guard(pipeline.run())
        .await
        .expect_err("its policy restarts it");
    assert!(
        matches!(
            error,
            PipelineError::NotRebuildable {
                constructor: "add_producer_with",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn set_restart_overrides_the_policy_the_type_declares() {
    // Flaky declares temporary; the builder makes it transient with redelivery.
    let faults = Faults::on(&[(7, 1)]);
    let seen2 = Arc::new(Mutex::new(Vec::new()));
    let s = seen2.clone();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..50u64));
    let flaky = pipeline.add_consumer_with(move || Flaky {
        faults: faults.clone(),
        fault: Fault::Error,
        seen: s.clone(),
        policy: RestartPolicy::temporary(),
        subscribed: Arc::default(),
    });
    pipeline.subscribe(&numbers, &flaky);
    pipeline.set_restart(&flaky, RestartPolicy::transient().redeliver());
    let report = guard(pipeline.run())
        .await
        .expect("restarted by the builder's policy");
    let flaky = stage(&report, "Flaky");
    assert_eq!(
        (flaky.restarts, flaky.events_in, flaky.redelivered),
        (1, 50, 5)
    );
    assert_eq!(seen2.lock().unwrap().len(), 52);
}

/// Where the fault of [`fault_matrix`] strikes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Failing {
    Producer,
    Middle,
    Consumer,
}

/// Emits `0..60` from a counter its rebuilt values share, broadcast; fails on its second call if
/// `fault`, once.
struct Source {
    next: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    fault: Option<Fault>,
    policy: RestartPolicy<NoInput>,
}

impl Producer for Source {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        if self.calls.fetch_add(1, Ordering::Relaxed) == 1 {
            if let Some(fault) = self.fault {
                fail(fault, "P", 0)?;
            }
        }
        Ok(count_on(&self.next, demand, 60))
    }
    fn dispatcher(&self) -> genstage::Dispatch<Self, u64> {
        genstage::Dispatch::broadcast()
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        self.policy
    }
}

/// Passes events on; fails on 23 if `fault`, once.
struct Middle {
    faults: Faults,
    fault: Fault,
    policy: RestartPolicy<u64>,
}

impl ProducerConsumer for Middle {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        if events.iter().any(|&event| self.faults.strikes(event)) {
            fail(self.fault, "M", 23)?;
        }
        Ok(events)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

/// Records what it handles; fails on 37 if `fault`, once.
struct Recorder {
    faults: Faults,
    fault: Fault,
    seen: Arc<Mutex<Vec<u64>>>,
    policy: RestartPolicy<u64>,
}

impl Consumer for Recorder {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.iter().any(|&event| self.faults.strikes(event)) {
            fail(self.fault, "C1", 37)?;
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

/// Every role, every fault, every restart policy, every cancel mode: `P` broadcasts `0..60` to
/// `M -> C1` and to `C2`, every edge with the cancel mode; one stage fails once, under the policy.
/// Asserts which stages restart, which stop and how, which go on, what each consumer got, and that
/// every total and every edge balances.
#[tokio::test]
async fn fault_matrix() {
    use genstage::{CancelMode, Restart};
    for failing in [Failing::Producer, Failing::Middle, Failing::Consumer] {
        for fault in [Fault::Error, Fault::Panic] {
            for restart in [Restart::Temporary, Restart::Transient, Restart::Permanent] {
                for cancel in [
                    CancelMode::Permanent,
                    CancelMode::Transient,
                    CancelMode::Temporary,
                ] {
                    let case = format!("{failing:?} {fault:?} {restart} cancel {cancel:?}");
                    let c1 = Arc::new(Mutex::new(Vec::new()));
                    let c2 = Arc::new(Mutex::new(Vec::new()));
                    let mut pipeline = Pipeline::new();
                    let (next, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
                    let p_fault = (failing == Failing::Producer).then_some(fault);
                    let p_policy = if failing == Failing::Producer {
                        RestartPolicy::new(restart)
                    } else {
                        RestartPolicy::temporary()
                    };
                    let p = pipeline.add_producer_with_as(Some("P".into()), move || Source {
                        next: next.clone(),
                        calls: calls.clone(),
                        fault: p_fault,
                        policy: p_policy,
                    });
                    let policy = |role| {
                        if failing == role {
                            RestartPolicy::new(restart)
                        } else {
                            RestartPolicy::temporary()
                        }
                    };
                    let faults = |role, event| Faults::on(&[(event, u32::from(failing == role))]);
                    let (m_faults, m_policy) =
                        (faults(Failing::Middle, 23), policy(Failing::Middle));
                    let m =
                        pipeline.add_producer_consumer_with_as(Some("M".into()), move || Middle {
                            faults: m_faults.clone(),
                            fault,
                            policy: m_policy,
                        });
                    let (c1_faults, c1_policy, seen) = (
                        faults(Failing::Consumer, 37),
                        policy(Failing::Consumer),
                        c1.clone(),
                    );
                    let consumer1 =
                        pipeline.add_consumer_with_as(Some("C1".into()), move || Recorder {
                            faults: c1_faults.clone(),
                            fault,
                            seen: seen.clone(),
                            policy: c1_policy,
                        });
                    let seen = c2.clone();
                    let consumer2 =
                        pipeline.add_consumer_with_as(Some("C2".into()), move || Recorder {
                            faults: Faults::default(),
                            fault,
                            seen: seen.clone(),
                            policy: RestartPolicy::temporary(),
                        });
                    let options = SubscribeOptions::new()
                        .max_demand(10)
                        .min_demand(5)
                        .cancel(cancel);
                    pipeline
                        .subscribe_with(&p, &m, options)
                        .subscribe_with(&m, &consumer1, options)
                        .subscribe_with(&p, &consumer2, options);
                    let (report, error) = report_of(guard(pipeline.run()).await);
                    assert!(report.balanced(), "{case}\n{report}");
                    assert_eq!(report.edges.len(), 3, "{case}");
                    let name = match failing {
                        Failing::Producer => "P",
                        Failing::Middle => "M",
                        Failing::Consumer => "C1",
                    };
                    let status = |stage_name: &str| stage(&report, stage_name).status.clone();
                    let all: Vec<u64> = (0..60).collect();
                    if restart == Restart::Temporary {
                        // It stops; the run fails naming it.
                        assert_eq!(
                            error.as_ref().map(PipelineError::stage),
                            Some(name),
                            "{case}"
                        );
                        assert_eq!(stage(&report, name).restarts, 0, "{case}");
                        assert!(stage(&report, name).failed(), "{case}");
                        // Downstream of it, consumers stop unless subscribed temporary.
                        let downstream: &[&str] = match failing {
                            Failing::Producer => &["M", "C1", "C2"],
                            Failing::Middle => &["C1"],
                            Failing::Consumer => &[],
                        };
                        for &below in downstream {
                            let expected = if cancel == CancelMode::Temporary {
                                StageStatus::Finished
                            } else {
                                StageStatus::Cancelled {
                                    cause: Some(name.into()),
                                }
                            };
                            assert_eq!(status(below), expected, "{case}: {below}");
                        }
                        // Upstream: `M` left without its consumer stops; `P` keeps `C2`.
                        if failing == Failing::Consumer {
                            assert_eq!(
                                status("M"),
                                StageStatus::Cancelled { cause: None },
                                "{case}"
                            );
                        }
                        if failing != Failing::Producer {
                            assert_eq!(status("P"), StageStatus::Finished, "{case}");
                            assert_eq!(*c2.lock().unwrap(), all, "{case}");
                        }
                        continue;
                    }
                    // Restarted: nobody else notices; the batch it held is lost (a producer holds
                    // none).
                    for other in ["P", "M", "C1", "C2"] {
                        assert_eq!(status(other), StageStatus::Finished, "{case}: {other}");
                    }
                    assert_eq!(*c2.lock().unwrap(), all, "{case}");
                    let c1_expected: Vec<u64> = match failing {
                        Failing::Producer => all.clone(),
                        Failing::Middle => (0..20).chain(25..60).collect(),
                        Failing::Consumer => (0..35).chain(40..60).collect(),
                    };
                    assert_eq!(*c1.lock().unwrap(), c1_expected, "{case}");
                    assert_eq!(
                        stage(&report, name).lost,
                        5 * u64::from(failing != Failing::Producer),
                        "{case}"
                    );
                    if failing == Failing::Producer && restart == Restart::Permanent {
                        // A permanent producer is restarted when it ends, too: restarted after its
                        // failure, then after each end, until one end too many.
                        assert!(
                            matches!(error, Some(PipelineError::RestartLimit { ref stage, .. }) if stage == "P"),
                            "{case}: {error:?}"
                        );
                        let p = stage(&report, "P");
                        assert_eq!(p.restarts, 3, "{case}");
                        assert_eq!(
                            p.failures[1..],
                            ["finished", "finished", "finished"],
                            "{case}"
                        );
                    } else {
                        assert!(error.is_none(), "{case}: {error:?}");
                        assert_eq!(stage(&report, name).restarts, 1, "{case}");
                    }
                }
            }
        }
    }
}

/// Fails on 7, once; records the statuses its values' `terminate` is told.
struct Closing {
    faults: Faults,
    fault: Fault,
    closed: Arc<Mutex<Vec<StageStatus>>>,
}

impl Consumer for Closing {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        match events.iter().find(|&&event| self.faults.strikes(event)) {
            Some(&event) => fail(self.fault, "Closing", event),
            None => Ok(()),
        }
    }
    async fn terminate(&mut self, status: &StageStatus) {
        self.closed.lock().unwrap().push(status.clone());
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

#[tokio::test]
async fn a_value_that_returned_an_error_terminates_before_it_is_replaced() {
    for (fault, expected) in [
        (
            Fault::Error,
            vec![
                StageStatus::Failed("Closing failed on 7".into()),
                StageStatus::Finished,
            ],
        ),
        // A value that panicked is not told, as a stage that panics never is.
        (Fault::Panic, vec![StageStatus::Finished]),
    ] {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let (faults, c) = (Faults::on(&[(7, 1)]), closed.clone());
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer(from_iter(0..20u64));
        let closing = pipeline.add_consumer_with(move || Closing {
            faults: faults.clone(),
            fault,
            closed: c.clone(),
        });
        pipeline.subscribe(&numbers, &closing);
        let report = guard(pipeline.run()).await.expect("one restart");
        assert_eq!(stage(&report, "Closing").restarts, 1);
        assert_eq!(*closed.lock().unwrap(), expected, "{fault:?}");
    }
}

/// Tells its subscription's tag, to be cancelled.
struct Idle(tokio::sync::mpsc::UnboundedSender<SubscriptionTag>);

impl Consumer for Idle {
    type Input = u64;
    async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        let _ = self.0.send(subscription.tag());
        Demand::Automatic
    }
}

#[tokio::test]
async fn a_consumer_added_to_a_running_pipeline_restarts_when_built_by_a_constructor() {
    let (sender, source) = genstage::from_channel::<u64>(100);
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(source);
    let (tags, mut tag) = tokio::sync::mpsc::unbounded_channel();
    let idle = pipeline.add_consumer(Idle(tags));
    pipeline.subscribe(&source, &idle);
    let running = pipeline.start();

    // Added as a value, a stage its type restarts cannot be made again: refused.
    let refused = running
        .add_consumer(Flaky {
            faults: Faults::default(),
            fault: Fault::Error,
            seen: Arc::default(),
            policy: RestartPolicy::transient(),
            subscribed: Arc::default(),
        })
        .await
        .expect_err("not rebuildable");
    assert!(
        matches!(refused, PipelineError::NotRebuildable { ref stage, .. } if stage == "Flaky"),
        "{refused:?}"
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let (faults, s) = (Faults::on(&[(7, 1)]), seen.clone());
    let flaky = running
        .add_consumer_with(move || Flaky {
            faults: faults.clone(),
            fault: Fault::Panic,
            seen: s.clone(),
            policy: RestartPolicy::transient().redeliver(),
            subscribed: Arc::default(),
        })
        .await
        .expect("added");
    running
        .subscribe(&source, &flaky)
        .await
        .expect("subscribed");
    // Every event to the new consumer: the first one's subscription ends before any is sent.
    let idle_tag = tag.recv().await.expect("told");
    running.cancel(idle_tag).await.expect("cancelled");
    for n in 0..200 {
        sender.send(n).await.expect("running");
    }
    drop(sender);
    let report = guard(running).await.expect("one restart");
    // The refused stage took no name: this one is `Flaky`.
    let flaky = stage(&report, "Flaky");
    assert_eq!(
        (
            flaky.restarts,
            flaky.events_in,
            flaky.redelivered,
            flaky.lost
        ),
        (1, 200, 5, 0)
    );
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    let mut expected: Vec<u64> = (0..200).chain([5, 6]).collect();
    expected.sort_unstable();
    assert_eq!(seen, expected);
    assert!(report.balanced(), "{report}");
}

/// Added with a constructor under a name, through the running handle: the report uses the name,
/// and a second stage under it is refused.
#[tokio::test]
async fn a_consumer_added_to_a_running_pipeline_with_a_constructor_takes_its_name() {
    let (sender, source) = genstage::from_channel::<u64>(100);
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(source);
    let (tags, mut tag) = tokio::sync::mpsc::unbounded_channel();
    let idle = pipeline.add_consumer(Idle(tags));
    pipeline.subscribe(&source, &idle);
    let running = pipeline.start();

    let make = || Flaky {
        faults: Faults::default(),
        fault: Fault::Error,
        seen: Arc::default(),
        policy: RestartPolicy::transient(),
        subscribed: Arc::default(),
    };
    let named = running
        .add_consumer_with_as(Some("retried".to_owned()), make)
        .await
        .expect("added");
    let taken = running
        .add_consumer_with_as(Some("retried".to_owned()), make)
        .await
        .expect_err("a name taken");
    assert!(
        matches!(taken, PipelineError::DuplicateName { ref name, .. } if name == "retried"),
        "{taken:?}"
    );
    running
        .subscribe(&source, &named)
        .await
        .expect("subscribed");
    let idle_tag = tag.recv().await.expect("told");
    running.cancel(idle_tag).await.expect("cancelled");
    for n in 0..10 {
        sender.send(n).await.expect("running");
    }
    drop(sender);
    let report = guard(running).await.expect("no fault");
    assert_eq!(stage(&report, "retried").events_in, 10);
    assert!(report.balanced(), "{report}");
}

/// Passes events on; fails once on the batch that holds 9.
struct FailsOnce(Arc<Mutex<bool>>);

impl ProducerConsumer for FailsOnce {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        if events.contains(&9) && !std::mem::replace(&mut *self.0.lock().unwrap(), true) {
            return Err("fails once, on the last batch".into());
        }
        Ok(events)
    }
}

/// Found by the chaos test (seed 1536): a producer_consumer hands a failed batch again only while
/// its consumers have demand, and ended as soon as its input had, with events still waiting to be
/// handed again (counted as unhandled, never handled). Here the last batch (5..10) fails once, and
/// the consumer takes one event at a time.
#[tokio::test]
async fn a_redelivering_producer_consumer_hands_everything_again_before_it_finishes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let failed = Arc::new(Mutex::new(false));
    let middle = pipeline.add_producer_consumer_with(move || FailsOnce(failed.clone()));
    pipeline.set_restart(&middle, RestartPolicy::transient().redeliver());
    let collect = pipeline.add_consumer(Collect {
        seen: seen.clone(),
        cancels: Arc::default(),
    });
    pipeline
        .subscribe_with(&numbers, &middle, SubscribeOptions::new().max_demand(10))
        .subscribe_with(
            &middle,
            &collect,
            SubscribeOptions::new().max_demand(1).min_demand(0),
        );
    let report = guard(pipeline.run()).await.expect("one restart is allowed");
    let middle = stage(&report, "FailsOnce");
    assert_eq!(
        (
            middle.restarts,
            middle.redelivered,
            middle.events_in,
            middle.lost
        ),
        (1, 5, 10, 0),
        "{report}"
    );
    assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>());
    assert!(report.balanced(), "{report}");
}

/// Emits 0..5, then fails.
struct FailsAfterFive(bool);

impl Producer for FailsAfterFive {
    type Output = u64;
    async fn handle_demand(&mut self, _: usize) -> StageResult<Emit<u64>> {
        if std::mem::replace(&mut self.0, true) {
            return Err("a failed".into());
        }
        Ok(Emit::more((0..5).collect()))
    }
}

/// Transient; its `handle_cancel` fails the first `fails` times.
struct CancelFails(Arc<AtomicUsize>);

impl Consumer for CancelFails {
    type Input = u64;
    async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
    async fn handle_cancel(
        &mut self,
        _: &Subscription,
        _: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        match self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        {
            Ok(_) => Err("handle_cancel failed".into()),
            Err(_) => Ok(()),
        }
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

/// Found by a probe: a transient consumer subscribed permanently to `a` and `b` must stop when `a`
/// fails, also when its `handle_cancel` fails on being told: it was restarted instead, and went on
/// with `b`, which never ends, so the run never did.
#[tokio::test]
async fn a_failing_handle_cancel_does_not_rescue_a_consumer_from_its_permanent_subscription() {
    for cancel_fails in [0, 1] {
        // `b` stays open: the test holds its sender to the end.
        let (_sender, b) = genstage::from_channel::<u64>(10);
        let mut pipeline = Pipeline::new();
        let a = pipeline.add_producer_as(Some("a".into()), FailsAfterFive(false));
        let b = pipeline.add_producer_as(Some("b".into()), b);
        let fails = Arc::new(AtomicUsize::new(cancel_fails));
        let consumer = pipeline.add_consumer_with(move || CancelFails(fails.clone()));
        let permanent = SubscribeOptions::new().cancel(genstage::CancelMode::Permanent);
        pipeline
            .subscribe_with(&a, &consumer, permanent)
            .subscribe_with(&b, &consumer, permanent);
        let (report, error) = report_of(guard(pipeline.run()).await);
        assert!(
            matches!(error, Some(PipelineError::StageFailed { ref stage, .. }) if stage == "a"),
            "{error:?}"
        );
        let consumer = stage(&report, "CancelFails");
        assert_eq!(consumer.restarts, 0, "{report}");
        let expected = if cancel_fails == 0 {
            StageStatus::Cancelled {
                cause: Some("a".into()),
            }
        } else {
            StageStatus::Failed("handle_cancel failed".into())
        };
        assert_eq!(consumer.status, expected, "{report}");
        assert!(report.balanced(), "{report}");
    }
}

/// Fails on 7; its `terminate` after that failure waits until aborted (telling `closing`).
struct SlowFarewell(tokio::sync::mpsc::UnboundedSender<()>);

impl Consumer for SlowFarewell {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.contains(&7) {
            return Err("SlowFarewell failed on 7".into());
        }
        Ok(())
    }
    async fn terminate(&mut self, status: &StageStatus) {
        if matches!(status, StageStatus::Failed(_)) {
            let _ = self.0.send(());
            std::future::pending::<()>().await;
        }
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(10).min_demand(5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

/// Found by a probe: aborted while its failed value's `terminate` runs, a stage lost the batch that
/// value failed on to its failure (`FailedBatch`), not to the abort.
#[tokio::test]
async fn an_abort_during_the_failed_values_terminate_reports_the_failed_batch_as_failed() {
    let (tx, mut closing) = tokio::sync::mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let consumer = pipeline.add_consumer_with(move || SlowFarewell(tx.clone()));
    pipeline.subscribe(&numbers, &consumer);
    let running = pipeline.start();
    guard(closing.recv()).await.expect("terminating");
    let (report, _) = report_of(guard(running.abort()).await);
    let farewell = stage(&report, "SlowFarewell");
    assert_eq!((farewell.restarts, farewell.events_in), (0, 5), "{report}");
    assert_eq!(farewell.status, StageStatus::Aborted);
    assert_eq!(lost(farewell, LossReason::FailedBatch), 5, "{report}");
    assert!(report.balanced(), "{report}");
}

/// A GenStage RateLimiter: manual, asks `ALLOWANCE` per tick; each tick carries the value that
/// set it. Its first value fails on 3.
struct Limiter {
    value: usize,
    tag: Option<SubscriptionTag>,
    foreign: Arc<AtomicUsize>,
}

/// A tick, set by the value it names.
struct Allow(usize);

const ALLOWANCE: usize = 2;

impl Consumer for Limiter {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.tag = Some(subscription.tag());
        let _ = ctx.ask(subscription.tag(), ALLOWANCE);
        ctx.info_after(Duration::from_millis(10), Allow(self.value));
        Demand::Manual
    }
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if self.value == 0 && events.contains(&3) {
            return Err("Limiter failed on 3".into());
        }
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(ALLOWANCE).min_demand(0)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

impl genstage::HandleInfo<Allow> for Limiter {
    type Emitted = ();
    async fn handle_info(
        &mut self,
        Allow(set_by): Allow,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        if set_by != self.value {
            self.foreign.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(tag) = self.tag {
            let _ = ctx.ask(tag, ALLOWANCE);
        }
        ctx.info_after(Duration::from_millis(10), Allow(self.value));
        Ok(())
    }
}

/// Found by a probe: in GenStage a restarted stage is a new process, and the timers of the old one
/// die with it. Here the failed value's tick went on in the new value, which then had two tick
/// chains and asked its allowance twice per interval.
#[tokio::test(start_paused = true)]
async fn a_restarted_value_gets_nothing_its_failed_value_sent_itself() {
    let foreign = Arc::new(AtomicUsize::new(0));
    let values = Arc::new(AtomicUsize::new(0));
    let f = foreign.clone();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..40u64));
    let limiter = pipeline.add_consumer_with(move || Limiter {
        value: values.fetch_add(1, Ordering::Relaxed),
        tag: None,
        foreign: f.clone(),
    });
    pipeline.subscribe(&numbers, &limiter);
    let report = guard(pipeline.run()).await.expect("one restart");
    assert_eq!(stage(&report, "Limiter").restarts, 1);
    assert_eq!(
        foreign.load(Ordering::Relaxed),
        0,
        "ticks set by the failed value"
    );
    assert!(report.balanced(), "{report}");
}

/// Yields from a counter its rebuilt streams share, up to 10; panics once, at 5.
fn shared_stream(
    next: Arc<AtomicU64>,
    panicked: Arc<AtomicUsize>,
) -> impl futures::Stream<Item = u64> + Send + 'static {
    futures::stream::iter(std::iter::from_fn(move || {
        let n = next.load(Ordering::Relaxed);
        if n == 5 && panicked.fetch_add(1, Ordering::Relaxed) == 0 {
            panic!("the stream panicked at 5");
        }
        if n == 10 {
            return None;
        }
        next.store(n + 1, Ordering::Relaxed);
        Some(n)
    }))
}

/// Found by a probe: a stream that panics after yielding 0..5 within one `handle_demand` lost
/// those items with the failed value (neither emitted nor reported lost); they are emitted, and
/// the panic goes on at the next call, which the restart policy restarts.
#[tokio::test]
async fn a_from_stream_producer_whose_stream_panics_emits_what_it_yielded_first() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (next, panicked) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer_with(move || {
        genstage::from_stream(shared_stream(next.clone(), panicked.clone()))
    });
    pipeline.set_restart(&source, RestartPolicy::transient());
    let collect = pipeline.add_consumer(Collect {
        seen: seen.clone(),
        cancels: Arc::default(),
    });
    pipeline.subscribe(&source, &collect);
    let report = guard(pipeline.run()).await.expect("one restart");
    let source = stage(&report, "from_stream");
    assert_eq!((source.restarts, source.emitted), (1, 10), "{report}");
    assert_eq!(
        source.failures,
        vec!["panicked: the stream panicked at 5".to_owned()]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        (0..10).collect::<Vec<_>>(),
        "{report}"
    );
    assert!(report.balanced(), "{report}");
}

// ------------------------------------------------------------------------------------------------
// A producer that decided to end is not made again for finishing later.

/// What the second value of an [`EndsTwice`] tells the test, and waits for.
struct Cues {
    /// It is finishing, and waits for `release` to finish.
    finishing: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
    /// It is busy with a cast it accepted before it decided to end.
    busy: tokio::sync::oneshot::Sender<()>,
}

/// The first value finishes at once and is made again. The second, over its restart limit,
/// finishes with a cast from outside queued, decides to end, takes the cast in and spends two
/// minutes on it (the clock is paused), long enough for the limit's window to pass; then it
/// finishes again.
struct EndsTwice {
    cues: Option<Cues>,
    busy: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Sent by each value to itself: finish.
struct Finish;

/// Cast by the test: what the second value spends two minutes on.
struct Linger;

impl Producer for EndsTwice {
    type Output = u64;
    fn init(&mut self, ctx: &mut Context<'_, Self>) {
        ctx.info(Finish);
    }
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
    fn producer_options(&self) -> genstage::ProducerOptions {
        // Asks are only recorded: the producer is driven by its messages alone.
        genstage::ProducerOptions::for_producer().demand(genstage::DemandMode::Accumulate)
    }
}

impl genstage::HandleInfo<Finish> for EndsTwice {
    type Emitted = Emit<u64>;
    async fn handle_info(
        &mut self,
        _: Finish,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Emit<u64>> {
        if let Some(cues) = self.cues.take() {
            let _ = cues.finishing.send(());
            let _ = cues.release.await;
            self.busy = Some(cues.busy);
        }
        Ok(Emit::last(Vec::new()))
    }
}

impl genstage::HandleCast<Linger> for EndsTwice {
    type Emitted = Emit<u64>;
    async fn handle_cast(
        &mut self,
        _: Linger,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Emit<u64>> {
        if let Some(busy) = self.busy.take() {
            let _ = busy.send(());
        }
        tokio::time::sleep(Duration::from_secs(120)).await;
        Ok(Emit::last(Vec::new()))
    }
}

impl genstage::HandleCast<u64> for EndsTwice {
    type Emitted = ();
    async fn handle_cast(&mut self, _: u64, _: &mut Context<'_, Self>) -> StageResult<()> {
        Ok(())
    }
}

/// Takes what comes.
struct Drain;

impl Consumer for Drain {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

/// Found by the chaos test (seed 7 645 777): a permanent producer whose restart limit did not
/// allow a restart when it finished decided to end, refused a message as `Ended`, took in what it
/// had accepted before, and when it finished again, the limit's window having passed, was made
/// again, though it had told a sender it had ended.
#[tokio::test(start_paused = true)]
async fn a_producer_that_refused_a_message_as_ended_is_not_made_again_for_finishing() {
    use tokio::sync::oneshot::channel;
    let ((finishing_tx, finishing), (release, release_rx), (busy_tx, busy)) =
        (channel(), channel(), channel());
    let cues = Arc::new(Mutex::new(Some(Cues {
        finishing: finishing_tx,
        release: release_rx,
        busy: busy_tx,
    })));
    let made = Arc::new(AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let producer = {
        let made = made.clone();
        pipeline.add_producer_with(move || {
            let second = made.fetch_add(1, Ordering::SeqCst) == 1;
            EndsTwice {
                cues: second.then(|| cues.lock().unwrap().take()).flatten(),
                busy: None,
            }
        })
    };
    let drain = pipeline.add_consumer(Drain);
    pipeline.subscribe(&producer, &drain);
    pipeline.set_restart(
        &producer,
        RestartPolicy::permanent().max_restarts(1, Duration::from_secs(60)),
    );
    let running = pipeline.start();
    finishing.await.expect("the second value finishes");
    // Queued before the second value decides to end: it is taken in.
    producer.cast(Linger).expect("accepted");
    release.send(()).expect("the second value waits");
    busy.await.expect("the second value takes the cast in");
    // It has decided to end: a message from outside is refused.
    let refused = producer.cast(7u64);
    assert!(
        matches!(refused, Err(genstage::CallError::Ended { .. })),
        "{refused:?}"
    );
    let result = tokio::time::timeout(Duration::from_secs(600), running)
        .await
        .expect("no hang");
    assert_eq!(made.load(Ordering::SeqCst), 2, "not made a third time");
    // As when it decides to end with nothing queued: over its limit, the run says so.
    let Err(PipelineError::RestartLimit { stage, report, .. }) = result else {
        panic!("the restart limit: {result:?}");
    };
    assert_eq!(stage, "EndsTwice");
    assert_eq!(report.stage("EndsTwice").unwrap().restarts, 1);
}
