//! Probe 15: the fault-tolerance change (restart policies, redelivery, the poison event,
//! ConsumerSupervisor restarted as a stage) attacked as a user would: manual demand, buffered
//! output, accumulate mode, partition dispatch, `abort()` and graceful `shutdown()` during a
//! redelivery, `terminate` across restarts. Each test asserts what a GenStage user would expect
//! (exact counts, a balanced report) under a 30 s timeout, so that a hang fails.
//!
//! The six defects it found are fixed, each with its test where its subject lives: a failing
//! `handle_cancel` that restarted a consumer its permanent subscription stopped (a hang), the
//! failed value's timers reaching its replacement, the loss reason of an abort during a failed
//! value's `terminate`, a `from_stream` whose panic lost the items it had yielded
//! (`tests/restarts.rs`); a restarted ConsumerSupervisor running more than `max_demand` children
//! (`tests/consumer_supervisor.rs`); a stage made by a local closure that no longer compiled
//! (`tests/restart_macro.rs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_iter, Consumer, Context, Demand, DemandMode, Dispatch, Emit, HandleInfo, LossReason,
    NoInput, Partition, Pipeline, PipelineError, Producer, ProducerConsumer, ProducerOptions,
    RestartPolicy, StageResult, StageStatus, SubscribeOptions, Subscriber, Subscription,
    SubscriptionTag,
};

mod faults;
mod run_reports;

use faults::{count_on, Faults};
use run_reports::{guard, lost, report_of, stage};

fn sorted(mut events: Vec<u64>) -> Vec<u64> {
    events.sort_unstable();
    events
}

/// Records what it handles.
struct Collect(Arc<Mutex<Vec<u64>>>);

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Manual demand.

/// A manual consumer that asks 10 when subscribed, and then, on each `Tick`, as many as it got
/// since; fails on its faults.
struct ManualFlaky {
    tag: Option<SubscriptionTag>,
    since: usize,
    faults: Faults,
    seen: Arc<Mutex<Vec<u64>>>,
    subscribed: Arc<AtomicUsize>,
}

struct Tick;

impl Consumer for ManualFlaky {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.subscribed.fetch_add(1, Ordering::Relaxed);
        self.tag = Some(subscription.tag());
        let _ = ctx.ask(subscription.tag(), 10);
        ctx.info_after(Duration::from_millis(1), Tick);
        Demand::Manual
    }
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for &event in &events {
            if self.faults.strikes(event) {
                return Err(format!("ManualFlaky failed on {event}").into());
            }
            self.seen.lock().unwrap().push(event);
        }
        self.since += events.len();
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(10).min_demand(0)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

impl HandleInfo<Tick> for ManualFlaky {
    type Emitted = ();
    async fn handle_info(&mut self, _: Tick, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        if let (Some(tag), n) = (self.tag, self.since) {
            if n > 0 {
                let _ = ctx.ask(tag, n);
            }
        }
        self.since = 0;
        ctx.info_after(Duration::from_millis(1), Tick);
        Ok(())
    }
}

/// A manual consumer that fails is told of its subscription again, asks again, and goes on:
/// every event but the batch it failed on is handled, and the run ends.
#[tokio::test(start_paused = true)]
async fn a_restarted_manual_consumer_asks_again_and_finishes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let (s, sub) = (seen.clone(), subscribed.clone());
    let faults = Faults::on(&[(13, 1)]);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let manual = pipeline.add_consumer_with(move || ManualFlaky {
        tag: None,
        since: 0,
        faults: faults.clone(),
        seen: s.clone(),
        subscribed: sub.clone(),
    });
    pipeline.subscribe(&numbers, &manual);
    let report = guard(pipeline.run()).await.expect("one restart");
    let flaky = stage(&report, "ManualFlaky");
    assert_eq!(
        (flaky.restarts, flaky.events_in, flaky.lost),
        (1, 90, 10),
        "{report}"
    );
    assert_eq!(subscribed.load(Ordering::Relaxed), 2);
    let expected: Vec<u64> = (0..13).chain(20..100).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A producer_consumer whose output is buffered when it fails.

/// Doubles; fails on its faults (the whole batch returns nothing).
struct Doubler {
    faults: Faults,
    redeliver: bool,
}

impl ProducerConsumer for Doubler {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        if events.iter().any(|&event| self.faults.strikes(event)) {
            return Err("Doubler failed".into());
        }
        Ok(events.into_iter().map(|n| 2 * n).collect())
    }
    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer_consumer().buffer_size(1000)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        if self.redeliver {
            RestartPolicy::transient().redeliver()
        } else {
            RestartPolicy::transient()
        }
    }
}

/// A consumer that takes one event at a time, slowly (it yields between events).
struct Slow(Arc<Mutex<Vec<u64>>>);

impl Consumer for Slow {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(1).min_demand(0)
    }
}

fn doubler_run(redeliver: bool, faults: &[(u64, u32)]) -> (Pipeline, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let faults = Faults::on(faults);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let doubler = pipeline.add_producer_consumer_with(move || Doubler {
        faults: faults.clone(),
        redeliver,
    });
    let slow = pipeline.add_consumer(Slow(seen.clone()));
    pipeline
        .subscribe_with(
            &numbers,
            &doubler,
            SubscribeOptions::new().max_demand(10).min_demand(5),
        )
        .subscribe(&doubler, &slow);
    (pipeline, seen)
}

#[tokio::test]
async fn a_producer_consumer_restarted_with_output_buffered_keeps_it() {
    let (pipeline, seen) = doubler_run(false, &[(33, 1)]);
    let report = guard(pipeline.run()).await.expect("one restart");
    let doubler = stage(&report, "Doubler");
    assert_eq!(
        (
            doubler.restarts,
            doubler.events_in,
            doubler.lost,
            doubler.events_out
        ),
        (1, 95, 5, 95),
        "{report}"
    );
    let expected: Vec<u64> = (0..30).chain(35..100).map(|n| 2 * n).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_redelivering_producer_consumer_with_output_buffered_emits_every_event_once() {
    let (pipeline, seen) = doubler_run(true, &[(33, 1), (34, 1), (80, 1)]);
    let report = guard(pipeline.run()).await.expect("three restarts");
    let doubler = stage(&report, "Doubler");
    assert_eq!(
        (
            doubler.restarts,
            doubler.events_in,
            doubler.lost,
            doubler.redelivered
        ),
        (3, 100, 0, 5 + 1 + 5),
        "{report}"
    );
    assert_eq!(doubler.status, StageStatus::Finished);
    let expected: Vec<u64> = (0..100).map(|n| 2 * n).collect();
    assert_eq!(sorted(seen.lock().unwrap().clone()), expected);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// `terminate` across restarts, up to the limit.

struct AlwaysFails {
    statuses: Arc<Mutex<Vec<StageStatus>>>,
}

impl Consumer for AlwaysFails {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.contains(&3) {
            return Err("fails on 3".into());
        }
        Ok(())
    }
    async fn terminate(&mut self, status: &StageStatus) {
        self.statuses.lock().unwrap().push(status.clone());
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(2).min_demand(0)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient().redeliver()
    }
}

/// Each value that returned an error is told so once, the last one too; the poison event is 3,
/// the second of its batch `[2, 3]`.
#[tokio::test]
async fn terminate_is_called_once_per_failed_value_up_to_the_limit_and_the_poison_is_named() {
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let s = statuses.clone();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let failing = pipeline.add_consumer_with(move || AlwaysFails {
        statuses: s.clone(),
    });
    pipeline.subscribe(&numbers, &failing);
    let (report, error) = report_of(guard(pipeline.run()).await);
    match &error {
        Some(PipelineError::RestartLimit { stage, poison, .. }) => {
            assert_eq!(stage, "AlwaysFails");
            assert_eq!(*poison, Some(1), "{error:?}");
        }
        other => panic!("expected the restart limit, got {other:?}"),
    }
    let failing = stage(&report, "AlwaysFails");
    assert_eq!(failing.restarts, 3);
    let failed = StageStatus::Failed("fails on 3".into());
    assert_eq!(*statuses.lock().unwrap(), vec![failed; 4]);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Accumulate demand mode.

/// Counts from a shared counter up to 20; its first value fails when told of a consumer.
struct Accumulating {
    next: Arc<AtomicU64>,
    told: Arc<AtomicUsize>,
}

impl Producer for Accumulating {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_on(&self.next, demand, 20))
    }
    fn handle_consumer_subscribe(&mut self, _: &Subscriber, _: &mut Context<'_, Self>) {
        if self.told.fetch_add(1, Ordering::Relaxed) == 0 {
            panic!("Accumulating panicked when told of its consumer");
        }
    }
    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer().demand(DemandMode::Accumulate)
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient()
    }
}

/// A producer restarted while it accumulates keeps the asks recorded: switched to forward, it
/// serves them, and its consumer gets every event.
#[tokio::test]
async fn an_accumulating_producer_restarted_keeps_its_recorded_asks() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (next, told) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
    let t = told.clone();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_with(move || Accumulating {
        next: next.clone(),
        told: t.clone(),
    });
    let collect = pipeline.add_consumer(Collect(seen.clone()));
    pipeline.subscribe_with(
        &producer,
        &collect,
        SubscribeOptions::new().max_demand(4).min_demand(0),
    );
    let running = pipeline.start();
    // Told twice: the first value, which panicked, and the rebuilt one.
    guard(async {
        while told.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(producer.demand_mode().await, Ok(DemandMode::Accumulate));
    producer.demand(DemandMode::Forward).unwrap();
    let report = guard(running).await.expect("one restart");
    assert_eq!(stage(&report, "Accumulating").restarts, 1);
    assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Partition dispatcher with a restarting producer and a restarting consumer.

/// Counts on a shared counter to 100, by parity into 2 partitions; fails on its 3rd call, once.
struct Parity {
    next: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
}

impl Producer for Parity {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        if self.calls.fetch_add(1, Ordering::Relaxed) == 2 {
            return Err("Parity failed".into());
        }
        Ok(count_on(&self.next, demand, 100))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient()
    }
}

impl Partition<u64> for Parity {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// Records; fails on its faults; redelivers.
struct Redelivering {
    faults: Faults,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Consumer for Redelivering {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for &event in &events {
            if self.faults.strikes(event) {
                return Err(format!("failed on {event}").into());
            }
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient().redeliver()
    }
}

#[tokio::test]
async fn a_partitioning_producer_and_a_redelivering_partition_consumer_restart() {
    let (even, odd) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let (next, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut pipeline = Pipeline::new();
    let parity = pipeline.add_producer_with(move || Parity {
        next: next.clone(),
        calls: calls.clone(),
    });
    let e = pipeline.add_consumer_as(Some("even".into()), Collect(even.clone()));
    let (faults, o) = (Faults::on(&[(41, 1)]), odd.clone());
    let o = pipeline.add_consumer_with_as(Some("odd".into()), move || Redelivering {
        faults: faults.clone(),
        seen: o.clone(),
    });
    let options = SubscribeOptions::new().max_demand(6).min_demand(3);
    pipeline
        .subscribe_with(&parity, &e, options.partition(0))
        .subscribe_with(&parity, &o, options.partition(1));
    let report = guard(pipeline.run()).await.expect("two restarts");
    assert_eq!(stage(&report, "Parity").restarts, 1);
    assert_eq!(stage(&report, "odd").restarts, 1);
    assert_eq!(
        *even.lock().unwrap(),
        (0..100).step_by(2).collect::<Vec<_>>()
    );
    let odd = sorted(odd.lock().unwrap().clone());
    assert_eq!(odd, (1..100).step_by(2).collect::<Vec<_>>());
    assert_eq!(stage(&report, "odd").events_in, 50);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// `abort()` and graceful `shutdown()` while a restarted stage redelivers.

/// Fails on 7 once; while redelivering, blocks on event 5 until `gate` opens (telling `blocked`).
struct Gated {
    failed: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Notify>,
    blocked: tokio::sync::mpsc::UnboundedSender<()>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl Consumer for Gated {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for &event in &events {
            if event == 7 && self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                return Err("Gated failed on 7".into());
            }
            if event == 5 && self.failed.load(Ordering::Relaxed) == 1 && events.len() == 1 {
                let _ = self.blocked.send(());
                self.gate.notified().await;
            }
            self.seen.lock().unwrap().push(event);
        }
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(10).min_demand(5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient().redeliver()
    }
}

struct GatedRun {
    running: genstage::PipelineHandle,
    gate: Arc<tokio::sync::Notify>,
    blocked: tokio::sync::mpsc::UnboundedReceiver<()>,
    seen: Arc<Mutex<Vec<u64>>>,
}

fn gated_run() -> GatedRun {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Notify::new());
    let (tx, blocked) = tokio::sync::mpsc::unbounded_channel();
    let failed = Arc::new(AtomicUsize::new(0));
    let (g, s) = (gate.clone(), seen.clone());
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let gated = pipeline.add_consumer_with(move || Gated {
        failed: failed.clone(),
        gate: g.clone(),
        blocked: tx.clone(),
        seen: s.clone(),
    });
    pipeline.subscribe(&numbers, &gated);
    GatedRun {
        running: pipeline.start(),
        gate,
        blocked,
        seen,
    }
}

#[tokio::test]
async fn an_abort_during_a_redelivery_accounts_for_every_event() {
    let mut run = gated_run();
    guard(run.blocked.recv()).await.expect("blocked on 5");
    let (report, _) = report_of(guard(run.running.abort()).await);
    let gated = stage(&report, "Gated");
    assert_eq!((gated.restarts, gated.redelivered), (1, 5), "{report}");
    // Handled: 0..5 (the batch before). 5 is in hand, 6..10 wait to be handed again.
    assert_eq!(gated.events_in, 5, "{report}");
    assert_eq!(*run.seen.lock().unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_graceful_shutdown_during_a_redelivery_hands_everything_again() {
    let mut run = gated_run();
    guard(run.blocked.recv()).await.expect("blocked on 5");
    let gate = run.gate.clone();
    let shutdown = tokio::spawn(run.running.shutdown());
    // Most likely lets the shutdown reach the stages before the redelivery goes on; what is
    // asserted holds in either order.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    let report = guard(shutdown).await.unwrap().expect("a graceful end");
    let gated = stage(&report, "Gated");
    let emitted = stage(&report, "from_iter").emitted;
    assert_eq!(
        (gated.restarts, gated.redelivered, gated.lost),
        (1, 5, 0),
        "{report}"
    );
    assert_eq!(gated.events_in, emitted, "{report}");
    let expected: Vec<u64> = sorted((0..emitted).chain([5, 6]).collect());
    assert_eq!(sorted(run.seen.lock().unwrap().clone()), expected);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A permanent consumer whose input ends is not restarted.

#[tokio::test]
async fn a_permanent_consumer_whose_input_ends_finishes_without_a_restart() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let collect = pipeline.add_consumer_with(move || Collect(s.clone()));
    pipeline.subscribe(&numbers, &collect);
    pipeline.set_restart(&collect, RestartPolicy::permanent());
    let report = guard(pipeline.run()).await.expect("finishes");
    let collect = stage(&report, "Collect");
    assert_eq!((collect.restarts, collect.events_in), (0, 10));
    assert_eq!(collect.status, StageStatus::Finished);
    assert_eq!(lost(stage(&report, "Collect"), LossReason::FailedBatch), 0);
}

// ---------------------------------------------------------------------------------------------
// A ConsumerSupervisor restarted as a stage, under load.

/// A job: records its event once it succeeds; fails on its faults.
fn job(
    faults: Faults,
    done: Arc<Mutex<Vec<u64>>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |n: u64| {
        let (faults, done) = (faults.clone(), done.clone());
        Box::pin(async move {
            tokio::task::yield_now().await;
            if faults.strikes(n) {
                return Err(format!("job {n} failed"));
            }
            done.lock().unwrap().push(n);
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_supervisor_restarted_as_a_stage_under_load_accounts_for_every_event() {
    let done = Arc::new(Mutex::new(Vec::new()));
    let child = job(Faults::on(&[(5, 1), (30, 1)]), done.clone());
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer(from_iter(0..50u64));
    let jobs = pipeline.add_consumer_with_as(Some("jobs".to_owned()), move || {
        genstage::ConsumerSupervisor::new(child.clone())
            .transient()
            .max_restarts(0)
            .max_demand(4)
    });
    pipeline.subscribe(&queue, &jobs);
    pipeline.set_restart(&jobs, RestartPolicy::transient());
    let report = guard(pipeline.run()).await.expect("two restarts");
    let jobs = stage(&report, "jobs");
    let done = sorted(done.lock().unwrap().clone());
    let mut unique = done.clone();
    unique.dedup();
    assert_eq!(unique, done, "no job handled twice");
    assert_eq!(jobs.restarts, 2, "{report}");
    assert_eq!(jobs.events_in, done.len() as u64, "{report}");
    assert_eq!(jobs.events_in + jobs.lost, 50, "{report}");
    assert_eq!(jobs.status, StageStatus::Finished);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Two producers, one of which has ended when the batch it sent fails.

struct FailsOn(u64, Arc<AtomicUsize>);

impl Consumer for FailsOn {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.contains(&self.0) && self.1.fetch_add(1, Ordering::Relaxed) == 0 {
            return Err(format!("failed on {}", self.0).into());
        }
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(10).min_demand(5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

#[tokio::test]
async fn the_lost_batch_is_charged_to_its_own_edge() {
    let failed = Arc::new(AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let a = pipeline.add_producer_as(Some("a".into()), from_iter(0..10u64));
    let b = pipeline.add_producer_as(Some("b".into()), from_iter(100..200u64));
    let consumer = pipeline.add_consumer_with(move || FailsOn(7, failed.clone()));
    pipeline.subscribe(&a, &consumer).subscribe(&b, &consumer);
    let report = guard(pipeline.run()).await.expect("one restart");
    let row = stage(&report, "FailsOn");
    assert_eq!(
        (row.restarts, row.events_in, row.lost),
        (1, 105, 5),
        "{report}"
    );
    let edge = |name: &str| {
        let edge = report
            .edges
            .iter()
            .find(|edge| edge.producer == name)
            .expect("an edge");
        (edge.sent, edge.handled, edge.lost)
    };
    assert_eq!(edge("a"), (10, 5, 5), "{report}");
    assert_eq!(edge("b"), (100, 100, 0), "{report}");
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A failure in `handle_cancel` restarts a transient consumer like any other.

struct CancelFails {
    failed: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<u64>>>,
    subscribed: Arc<AtomicUsize>,
}

impl Consumer for CancelFails {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn handle_subscribe(&mut self, _: &Subscription, _: &mut Context<'_, Self>) -> Demand {
        self.subscribed.fetch_add(1, Ordering::Relaxed);
        Demand::Automatic
    }
    async fn handle_cancel(
        &mut self,
        _: &Subscription,
        _: &genstage::CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
            return Err("handle_cancel failed".into());
        }
        Ok(())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

#[tokio::test]
async fn a_consumer_whose_handle_cancel_fails_restarts_and_finishes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (s, sub) = (seen.clone(), subscribed.clone());
    let (tx, rx) = genstage::from_channel::<u64>(10);
    let mut pipeline = Pipeline::new();
    let a = pipeline.add_producer_as(Some("a".into()), from_iter(0..10u64));
    let b = pipeline.add_producer_as(Some("b".into()), rx);
    let consumer = pipeline.add_consumer_with(move || CancelFails {
        failed: failed.clone(),
        seen: s.clone(),
        subscribed: sub.clone(),
    });
    pipeline.subscribe(&a, &consumer).subscribe(&b, &consumer);
    let running = pipeline.start();
    // `a` ends; the consumer fails in handle_cancel and is rebuilt, told of `b` only.
    guard(async {
        while subscribed.load(Ordering::Relaxed) < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    for n in 100..110 {
        tx.send(n).await.expect("b runs");
    }
    drop(tx);
    let report = guard(running).await.expect("one restart");
    let consumer = stage(&report, "CancelFails");
    assert_eq!(
        (consumer.restarts, consumer.events_in, consumer.lost),
        (1, 20, 0),
        "{report}"
    );
    assert_eq!(consumer.status, StageStatus::Finished);
    assert_eq!(
        sorted(seen.lock().unwrap().clone()),
        (0..10).chain(100..110).collect::<Vec<_>>()
    );
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A graceful shutdown while a permanent producer keeps being restarted.

struct Counting(Arc<AtomicU64>);

impl Consumer for Counting {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
        tokio::task::yield_now().await;
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(4).min_demand(2)
    }
}

#[tokio::test]
async fn a_graceful_shutdown_stops_a_permanent_producer_without_one_more_restart() {
    let counted = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_with(|| from_iter(0..10u64));
    pipeline.set_restart(
        &numbers,
        RestartPolicy::permanent().max_restarts(1_000_000, Duration::from_secs(5)),
    );
    let counting = pipeline.add_consumer(Counting(counted.clone()));
    pipeline.subscribe(&numbers, &counting);
    let running = pipeline.start();
    guard(async {
        while counted.load(Ordering::Relaxed) < 35 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report = guard(running.shutdown()).await.expect("a graceful end");
    let producer = stage(&report, "from_iter");
    let consumer = stage(&report, "Counting");
    assert!(producer.restarts >= 3, "{report}");
    // Every value but the last emitted its 10 events: the last one was stopped by the shutdown.
    assert!(producer.emitted > producer.restarts * 10 - 1, "{report}");
    assert_eq!(consumer.events_in, producer.emitted, "{report}");
    assert_eq!(consumer.events_in, counted.load(Ordering::Relaxed));
    assert_eq!(producer.lost + consumer.lost, 0, "{report}");
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Limits and constructors.

#[tokio::test]
async fn max_restarts_zero_fails_at_the_first_failure_without_a_restart() {
    let failed = Arc::new(AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..20u64));
    let consumer = pipeline.add_consumer_with(move || FailsOn(7, failed.clone()));
    pipeline.subscribe(&numbers, &consumer);
    pipeline.set_restart(
        &consumer,
        RestartPolicy::transient().max_restarts(0, Duration::from_secs(5)),
    );
    let (report, error) = report_of(guard(pipeline.run()).await);
    assert!(
        matches!(error, Some(PipelineError::RestartLimit { ref stage, max_restarts: 0, ref failures, .. })
            if stage == "FailsOn" && failures.len() == 1),
        "{error:?}"
    );
    let row = stage(&report, "FailsOn");
    assert_eq!((row.restarts, row.events_in), (0, 5), "{report}");
    assert!(report.balanced(), "{report}");
}

struct Built(Arc<Mutex<Vec<u64>>>);

impl Consumer for Built {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.contains(&7) {
            return Err("Built failed on 7".into());
        }
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(10).min_demand(5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

/// A constructor that panics when called again ends the stage as panicked, with its message, and
/// the run ends with a balanced report.
#[tokio::test]
async fn a_constructor_that_panics_on_restart_ends_the_stage_with_its_message() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..20u64));
    let built = pipeline.add_consumer_with(move || {
        if calls.fetch_add(1, Ordering::Relaxed) == 1 {
            panic!("no second value");
        }
        Built(s.clone())
    });
    pipeline.subscribe(&numbers, &built);
    let (report, error) = report_of(guard(pipeline.run()).await);
    assert!(
        matches!(error, Some(PipelineError::StagePanicked { ref stage, .. }) if stage == "Built"),
        "{error:?}"
    );
    let row = stage(&report, "Built");
    assert_eq!(row.restarts, 0, "{report}");
    match &row.status {
        StageStatus::Panicked(message) => assert!(message.contains("no second value"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(*seen.lock().unwrap(), (0..5).collect::<Vec<_>>());
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A ConsumerSupervisor that fails while one of its children waits for a delayed restart.

#[tokio::test(start_paused = true)]
async fn a_supervisor_failing_with_a_child_waiting_to_restart_accounts_for_it() {
    let done = Arc::new(Mutex::new(Vec::new()));
    let child = job(Faults::on(&[(3, 1), (6, 1)]), done.clone());
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer(from_iter(0..10u64));
    let jobs = pipeline.add_consumer_with_as(Some("jobs".to_owned()), move || {
        genstage::ConsumerSupervisor::new(child.clone())
            .transient()
            .max_restarts(1)
            .restart_delay(Duration::from_secs(1))
            .max_demand(10)
    });
    pipeline.subscribe(&queue, &jobs);
    pipeline.set_restart(&jobs, RestartPolicy::transient());
    let report = guard(pipeline.run())
        .await
        .expect("one restart of the supervisor");
    let jobs = stage(&report, "jobs");
    let done = sorted(done.lock().unwrap().clone());
    assert_eq!(done, vec![0, 1, 2, 4, 5, 7, 8, 9], "{report}");
    assert_eq!(
        (jobs.restarts, jobs.events_in, jobs.lost),
        (1, 8, 2),
        "{report}"
    );
    assert!(report.balanced(), "{report}");
}

/// Stage expressions `pipeline!` now wraps in a closure still have their types inferred from the
/// rest of the pipeline (untyped integer literals).
#[test]
fn pipeline_macro_still_infers_the_types_of_rebuilt_stage_expressions() {
    trybuild::TestCases::new().pass("probe15/inference.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_with_two_producers_restarted_as_a_stage_accounts_per_edge() {
    let done = Arc::new(Mutex::new(Vec::new()));
    let child = job(Faults::on(&[(10, 1), (120, 1)]), done.clone());
    let mut pipeline = Pipeline::new();
    let a = pipeline.add_producer_as(Some("a".into()), from_iter(0..50u64));
    let b = pipeline.add_producer_as(Some("b".into()), from_iter(100..150u64));
    let jobs = pipeline.add_consumer_with_as(Some("jobs".to_owned()), move || {
        genstage::ConsumerSupervisor::new(child.clone())
            .transient()
            .max_restarts(0)
            .max_demand(3)
    });
    pipeline.subscribe(&a, &jobs).subscribe(&b, &jobs);
    pipeline.set_restart(&jobs, RestartPolicy::transient());
    let report = guard(pipeline.run()).await.expect("one or two restarts");
    let jobs = stage(&report, "jobs");
    let done = sorted(done.lock().unwrap().clone());
    let mut unique = done.clone();
    unique.dedup();
    assert_eq!(unique, done, "no job handled twice");
    // Each failing job stops the supervisor's value it runs in, so two values fail, unless the
    // second job (from the other producer, which may run ahead) starts before the first value has
    // taken in its child's failure: then both fail in one value, which is restarted once (seen
    // once in CI, under load). What this test is about, the accounting, holds either way.
    assert!((1..=2).contains(&jobs.restarts), "{report}");
    assert!(!done.contains(&10) && !done.contains(&120), "{report}");
    assert_eq!(jobs.events_in, done.len() as u64, "{report}");
    assert_eq!(jobs.events_in + jobs.lost, 100, "{report}");
    for edge in &report.edges {
        assert_eq!(edge.sent, 50, "{report}");
    }
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Calls across a restart.

struct Keeper {
    value: usize,
}

struct Ping {
    fail: bool,
}

impl Consumer for Keeper {
    type Input = u64;
    async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

impl genstage::HandleCall<Ping> for Keeper {
    type Reply = usize;
    type Emitted = ();
    async fn handle_call(
        &mut self,
        ping: Ping,
        reply: genstage::ReplyTo<usize>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        if ping.fail {
            return Err("Keeper failed on a call".into());
        }
        reply.reply(self.value);
        Ok(())
    }
}

/// The call a value fails on gets `NoReply`; the next one is answered by the new value.
#[tokio::test]
async fn a_call_the_stage_fails_on_gets_no_reply_and_the_next_is_answered_by_the_new_value() {
    use genstage::StageRef;
    let values = Arc::new(AtomicUsize::new(0));
    let (sender, rx) = genstage::from_channel::<u64>(10);
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(rx);
    let keeper = pipeline.add_consumer_with(move || Keeper {
        value: values.fetch_add(1, Ordering::Relaxed),
    });
    pipeline.subscribe(&source, &keeper);
    let running = pipeline.start();
    assert_eq!(guard(keeper.call(Ping { fail: false })).await, Ok(0));
    assert!(matches!(
        guard(keeper.call(Ping { fail: true })).await,
        Err(genstage::CallError::NoReply { .. })
    ));
    assert_eq!(guard(keeper.call(Ping { fail: false })).await, Ok(1));
    sender.send(1).await.expect("running");
    drop(sender);
    let report = guard(running).await.expect("one restart");
    let keeper = stage(&report, "Keeper");
    assert_eq!((keeper.restarts, keeper.events_in), (1, 1), "{report}");
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_to_stream_sink_given_a_restart_policy_is_refused_by_run() {
    let (sink, _stream) = genstage::to_stream::<u64>();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let sink = pipeline.add_consumer(sink);
    pipeline.subscribe(&numbers, &sink);
    pipeline.set_restart(&sink, RestartPolicy::transient());
    let error = guard(pipeline.run()).await.expect_err("not rebuildable");
    assert!(
        matches!(error, PipelineError::NotRebuildable { ref stage, .. } if stage == "to_stream"),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Two failures: a redelivering producer_consumer, and its consumer, which is not restarted.

/// Records; fails (for good: temporary) on the event `on`.
struct DiesOn(u64, Arc<Mutex<Vec<u64>>>);

impl Consumer for DiesOn {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.contains(&self.0) {
            return Err(format!("DiesOn failed on {}", self.0).into());
        }
        self.1.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(3).min_demand(0)
    }
}

#[tokio::test]
async fn a_redelivering_middle_whose_consumer_dies_accounts_for_every_event() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let faults = Faults::on(&[(33, 1), (40, 1)]);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let doubler = pipeline.add_producer_consumer_with(move || Doubler {
        faults: faults.clone(),
        redeliver: true,
    });
    let dies = pipeline.add_consumer(DiesOn(2 * 60, seen.clone()));
    pipeline
        .subscribe_with(
            &numbers,
            &doubler,
            SubscribeOptions::new().max_demand(10).min_demand(5),
        )
        .subscribe(&doubler, &dies);
    let (report, error) = report_of(guard(pipeline.run()).await);
    assert!(
        matches!(error, Some(PipelineError::StageFailed { ref stage, .. }) if stage == "DiesOn"),
        "{error:?}"
    );
    let doubler = stage(&report, "Doubler");
    assert_eq!(doubler.restarts, 2, "{report}");
    // What the consumer handled: every event below the batch it died on, once each.
    let seen = seen.lock().unwrap().clone();
    let handled = stage(&report, "DiesOn").events_in;
    assert_eq!(seen.len() as u64, handled, "{report}");
    assert_eq!(
        sorted(seen),
        (0..handled).map(|n| 2 * n).collect::<Vec<_>>()
    );
    assert!(report.balanced(), "{report}");
}
