//! How pipelines end: finite producers, failing and panicking stages, cancel modes, wiring mistakes
//! caught before anything runs, ordering, and buffer overflow.
//!
//! Every run is wrapped in a 30 s timeout. That is a guard against hangs, not a timing assertion:
//! each of these pipelines ends on its own in milliseconds, or never if the runtime is wrong.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_iter, BufferKeep, CancelMode, Consumer, DemandError, Discard, DiscardReason, Emit,
    Pipeline, PipelineError, Producer, ProducerConsumer, ProducerOptions, Report, StageResult,
    StageStatus, SubscribeOptions,
};
use tokio::sync::oneshot;

/// An event: the index of the producer that emitted it, and its sequence number there.
type Event = (usize, u64);

type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap().clone()
}

/// Fails the test if `future` has not finished within 30 s.
async fn guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("the pipeline hung (no end within 30 s)")
}

fn demand(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

/// The events of producer `tag` in `events`, in order.
fn of(tag: usize, events: &[Event]) -> Vec<u64> {
    events.iter().filter(|e| e.0 == tag).map(|e| e.1).collect()
}

fn tagged(tag: usize, range: std::ops::Range<u64>) -> Vec<Event> {
    range.map(|seq| (tag, seq)).collect()
}

/// Sends on its channel when dropped: a stage holding one tells the test its task has ended.
struct OnDrop(Option<oneshot::Sender<()>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Emits `(tag, next..end)`, at most `chunk` events per call, ending with `Emit::last`. When `wait`
/// is set, its first call waits for that signal first.
struct Finite {
    tag: usize,
    next: u64,
    end: u64,
    chunk: usize,
    wait: Option<oneshot::Receiver<()>>,
    _dropped: OnDrop,
}

impl Finite {
    fn new(tag: usize, end: u64) -> Self {
        Finite {
            tag,
            next: 0,
            end,
            chunk: usize::MAX,
            wait: None,
            _dropped: OnDrop(None),
        }
    }
}

impl Producer for Finite {
    type Output = Event;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<Event>> {
        if let Some(wait) = self.wait.take() {
            wait.await?;
        }
        let stop = self.end.min(self.next + demand.min(self.chunk) as u64);
        let events = tagged(self.tag, self.next..stop);
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
}

/// Emits `(tag, 0..)` for ever.
struct Endless {
    tag: usize,
    next: u64,
}

impl Producer for Endless {
    type Output = Event;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<Event>> {
        let events = tagged(self.tag, self.next..self.next + demand as u64);
        self.next += demand as u64;
        Ok(Emit::more(events))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Error,
    Panic,
}

impl Fault {
    fn strike<T>(self, what: &str) -> StageResult<T> {
        match self {
            Fault::Error => Err(format!("{what} failed").into()),
            Fault::Panic => panic!("{what} panicked"),
        }
    }
}

/// Emits `(tag, 0..before)` (fewer than asked, so it is asked again), then fails.
struct Faulty {
    tag: usize,
    next: u64,
    before: u64,
    fault: Fault,
}

impl Faulty {
    fn new(tag: usize, before: u64, fault: Fault) -> Self {
        Faulty {
            tag,
            next: 0,
            before,
            fault,
        }
    }
}

impl Producer for Faulty {
    type Output = Event;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<Event>> {
        if self.next < self.before {
            let stop = self.before.min(self.next + demand as u64);
            let events = tagged(self.tag, self.next..stop);
            self.next = stop;
            return Ok(Emit::more(events));
        }
        self.fault.strike("the producer")
    }
}

/// Passes its first `batches` batches on, then fails.
struct FaultyMiddle {
    batches: usize,
    fault: Fault,
}

impl ProducerConsumer for FaultyMiddle {
    type Input = Event;
    type Output = Event;
    async fn handle_events(&mut self, events: Vec<Event>) -> StageResult<Vec<Event>> {
        if self.batches == 0 {
            return self.fault.strike("the producer_consumer");
        }
        self.batches -= 1;
        Ok(events)
    }
}

/// Records events; fails on batch number `fail_after + 1` when `fail_after` is set. Its subscriptions
/// default to `defaults`.
struct Collect {
    log: Log<Event>,
    fail_after: Option<(usize, Fault)>,
    defaults: SubscribeOptions,
    _dropped: OnDrop,
}

impl Collect {
    fn new(log: &Log<Event>) -> Self {
        Collect {
            log: log.clone(),
            fail_after: None,
            defaults: SubscribeOptions::default(),
            _dropped: OnDrop(None),
        }
    }

    fn failing(log: &Log<Event>, after: usize, fault: Fault) -> Self {
        Collect {
            fail_after: Some((after, fault)),
            ..Collect::new(log)
        }
    }
}

impl Consumer for Collect {
    type Input = Event;
    async fn handle_events(&mut self, events: Vec<Event>) -> StageResult<()> {
        if let Some((after, fault)) = &mut self.fail_after {
            if *after == 0 {
                return fault.strike("the consumer");
            }
            *after -= 1;
        }
        self.log.lock().unwrap().extend(events);
        Ok(())
    }

    fn subscribe_options(&self) -> SubscribeOptions {
        self.defaults
    }
}

fn status<'a>(report: &'a Report, name: &str) -> &'a StageStatus {
    &report
        .stage(name)
        .unwrap_or_else(|| panic!("no stage `{name}` in {report:?}"))
        .status
}

// ---------------------------------------------------------------------------------------------
// Finite pipelines

/// A consumer fed by two producers goes on after the first one ends, and finishes once the second
/// has ended too.
///
/// The order is forced: `second` emits only once `bystander`, another consumer of `first`, has ended,
/// which it does when told that `first` ended; the pipeline tells `sink` before `bystander` (edges are
/// notified in the order they were subscribed). So `sink` has the end of `first` in its mailbox before
/// any event of `second`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_finishes_only_when_all_its_producers_have_ended() {
    let (bystander_dropped, bystander_gone) = oneshot::channel();
    let events = log();
    let seen_by_bystander = log();
    let mut pipeline = Pipeline::new();
    let first = pipeline.add_producer_named("first", Finite::new(0, 10));
    let second = pipeline.add_producer_named(
        "second",
        Finite {
            wait: Some(bystander_gone),
            ..Finite::new(1, 5)
        },
    );
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    let bystander = pipeline.add_consumer_named(
        "bystander",
        Collect {
            _dropped: OnDrop(Some(bystander_dropped)),
            ..Collect::new(&seen_by_bystander)
        },
    );
    pipeline.subscribe(&first, &consumer);
    pipeline.subscribe(&first, &bystander);
    pipeline.subscribe(&second, &consumer);

    let report = guard(pipeline.run()).await.unwrap();

    let events = taken(&events);
    let seen_by_bystander = taken(&seen_by_bystander);
    assert_eq!(of(1, &events), (0..5).collect::<Vec<_>>());
    // The DemandDispatcher shares `first`'s 10 events between its two consumers.
    let mut firsts = [of(0, &events), of(0, &seen_by_bystander)].concat();
    firsts.sort_unstable();
    assert_eq!(firsts, (0..10).collect::<Vec<_>>());
    let sink = report.stage("sink").unwrap();
    assert_eq!(sink.events_in, events.len() as u64);
    assert_eq!(
        sink.events_in + report.stage("bystander").unwrap().events_in,
        15
    );
    assert_eq!(report.stage("first").unwrap().events_out, 10);
    assert_eq!(report.stage("second").unwrap().events_out, 5);
    for name in ["first", "second", "sink", "bystander"] {
        assert_eq!(status(&report, name), &StageStatus::Finished, "{name}");
    }
}

/// Emits the given batches in turn, the last one with `Emit::last`, and counts calls made after it.
struct Script {
    batches: Vec<Vec<u64>>,
    calls_after_last: Arc<AtomicUsize>,
}

impl Producer for Script {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        if self.batches.is_empty() {
            self.calls_after_last.fetch_add(1, Ordering::SeqCst);
            return Ok(Emit::more(Vec::new()));
        }
        let events = self.batches.remove(0);
        Ok(if self.batches.is_empty() {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
}

/// Records plain events.
struct Numbers(Log<u64>);

impl Consumer for Numbers {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
}

/// `Emit::last` ends a producer: its events (even beyond the demand, from the buffer) are delivered,
/// `handle_demand` is not called again, and the pipeline finishes.
#[tokio::test]
async fn producer_ends_with_emit_last() {
    let scripts: [(&str, Vec<Vec<u64>>); 3] = [
        ("last with events", vec![vec![0, 1, 2], vec![3], vec![4, 5]]),
        ("empty last", vec![vec![0, 1, 2], vec![3, 4, 5], vec![]]),
        // 50 events against a demand of 4: 46 wait in the buffer after the producer is done.
        ("last beyond demand", vec![(0..50).collect()]),
    ];
    for (what, batches) in scripts {
        let expected: Vec<u64> = batches.concat();
        let calls_after_last = Arc::new(AtomicUsize::new(0));
        let events = log();
        let mut pipeline = Pipeline::new();
        let producer = pipeline.add_producer_named(
            "script",
            Script {
                batches,
                calls_after_last: calls_after_last.clone(),
            },
        );
        let consumer = pipeline.add_consumer_named("numbers", Numbers(events.clone()));
        pipeline.subscribe_with(&producer, &consumer, demand(4, 1));

        let report = guard(pipeline.run()).await.unwrap();

        assert_eq!(taken(&events), expected, "{what}");
        assert_eq!(calls_after_last.load(Ordering::SeqCst), 0, "{what}");
        let script = report.stage("script").unwrap();
        assert_eq!(
            (script.events_out, script.discarded, &script.status),
            (expected.len() as u64, 0, &StageStatus::Finished),
            "{what}"
        );
        assert_eq!(status(&report, "numbers"), &StageStatus::Finished, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Failures are reported by stage name

/// The pipeline endless -> middle -> sink, plus source -> middle when `which` is "source"; the stage
/// named `which` faults. `endless` ends only when the failure has reached it.
async fn fail_one(which: &str, fault: Fault) -> PipelineError {
    let events = log();
    let mut pipeline = Pipeline::new();
    let endless = pipeline.add_producer_named("endless", Endless { tag: 0, next: 0 });
    let batches = if which == "middle" { 2 } else { usize::MAX };
    let middle = pipeline.add_producer_consumer_named("middle", FaultyMiddle { batches, fault });
    let sink = if which == "sink" {
        Collect::failing(&events, 2, fault)
    } else {
        Collect::new(&events)
    };
    let sink = pipeline.add_consumer_named("sink", sink);
    pipeline.subscribe_with(&endless, &middle, demand(10, 5));
    if which == "source" {
        let source = pipeline.add_producer_named("source", Faulty::new(1, 5, fault));
        pipeline.subscribe_with(&source, &middle, demand(10, 5));
    }
    pipeline.subscribe(&middle, &sink);
    guard(pipeline.run())
        .await
        .expect_err("a stage failed, yet run() returned Ok")
}

/// A stage returning `Err` makes `run()` return `StageFailed` naming it, with its error, whatever its
/// role; the failure stops the rest of the pipeline, endless producer included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_stage_is_reported_by_name() {
    for (stage, what) in [
        ("source", "the producer"),
        ("middle", "the producer_consumer"),
        ("sink", "the consumer"),
    ] {
        let error = fail_one(stage, Fault::Error).await;
        assert_eq!(error.stage(), stage);
        match &error {
            PipelineError::StageFailed {
                stage: name, error, ..
            } => {
                assert_eq!(name, stage);
                assert_eq!(error.to_string(), format!("{what} failed"));
            }
            other => panic!("expected StageFailed for `{stage}`, got {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            format!("stage `{stage}` failed: {what} failed")
        );
    }
}

/// A stage that panics makes `run()` return `StagePanicked` naming it, with the panic message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_stage_is_reported_by_name() {
    for (stage, what) in [
        ("source", "the producer"),
        ("middle", "the producer_consumer"),
        ("sink", "the consumer"),
    ] {
        let error = fail_one(stage, Fault::Panic).await;
        assert_eq!(error.stage(), stage);
        match &error {
            PipelineError::StagePanicked {
                stage: name,
                message,
                ..
            } => {
                assert_eq!(name, stage);
                assert_eq!(message, &format!("{what} panicked"));
            }
            other => panic!("expected StagePanicked for `{stage}`, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cancel modes

/// A consumer subscribed with `cancel` to a producer that fails after 5 events and to an endless
/// one. The run can only end if the consumer stops.
async fn stop_on_failure(cancel: CancelMode) -> (PipelineError, Vec<Event>) {
    let events = log();
    let mut pipeline = Pipeline::new();
    let faulty = pipeline.add_producer_named("faulty", Faulty::new(0, 5, Fault::Error));
    let endless = pipeline.add_producer_named("endless", Endless { tag: 1, next: 0 });
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    let options = demand(10, 5).cancel(cancel);
    pipeline.subscribe_with(&faulty, &consumer, options);
    pipeline.subscribe_with(&endless, &consumer, options);
    let error = guard(pipeline.run()).await.unwrap_err();
    (error, taken(&events))
}

/// Permanent (the default): the consumer stops when its producer fails, after handling the events
/// that producer sent before failing; the endless producer, left without consumers, stops too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_consumer_stops_when_its_producer_fails() {
    let (error, events) = stop_on_failure(CancelMode::Permanent).await;
    assert!(
        matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "faulty"),
        "{error:?}"
    );
    assert_eq!(of(0, &events), (0..5).collect::<Vec<_>>());
}

/// Transient behaves as permanent when the producer fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_consumer_stops_when_its_producer_fails() {
    let (error, events) = stop_on_failure(CancelMode::Transient).await;
    assert!(
        matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "faulty"),
        "{error:?}"
    );
    assert_eq!(of(0, &events), (0..5).collect::<Vec<_>>());
}

/// Temporary (here as the consumer's default, merged with the edge's demand options): the consumer
/// goes on with its other producer and handles every one of its 200 events, in order, although the
/// notice that `faulty` failed reaches it before any of them. `run()` still reports the failure.
///
/// The order is forced: `healthy` emits only once `source` has ended, and `source` ends when `faulty`
/// (a producer_consumer) failing leaves it without consumers, which the pipeline tells it after it has
/// told `sink` (edges are notified in the order they were subscribed). `faulty` fails on its first
/// batch, before asking `source` for more, so `source` cannot find out earlier by a failed send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_consumer_goes_on_with_its_other_producer() {
    let (source_dropped, source_gone) = oneshot::channel();
    let events = log();
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer_named(
        "source",
        Finite {
            _dropped: OnDrop(Some(source_dropped)),
            ..Finite::new(0, u64::MAX)
        },
    );
    let faulty = pipeline.add_producer_consumer_named(
        "faulty",
        FaultyMiddle {
            batches: 0,
            fault: Fault::Error,
        },
    );
    let healthy = pipeline.add_producer_named(
        "healthy",
        Finite {
            wait: Some(source_gone),
            ..Finite::new(1, 200)
        },
    );
    let consumer = pipeline.add_consumer_named(
        "sink",
        Collect {
            defaults: SubscribeOptions::new().cancel(CancelMode::Temporary),
            ..Collect::new(&events)
        },
    );
    pipeline.subscribe_with(&faulty, &consumer, demand(10, 5));
    pipeline.subscribe_with(&source, &faulty, demand(10, 5));
    pipeline.subscribe_with(&healthy, &consumer, demand(10, 5));

    let error = guard(pipeline.run()).await.unwrap_err();

    assert!(
        matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "faulty"),
        "{error:?}"
    );
    let events = taken(&events);
    assert_eq!(of(0, &events), Vec::<u64>::new());
    assert_eq!(of(1, &events), (0..200).collect::<Vec<_>>());
}

/// A producer that ends normally stops no consumer, whatever its cancel mode: the consumer goes on
/// with its other producer (fan-in) and handles every event of both. (GenStage's `permanent` would
/// stop it at the first producer's `:normal` exit; see `CancelMode`'s docs for why genstage differs.)
/// The second producer emits only once the first has ended and been dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_end_stops_no_consumer_in_any_cancel_mode() {
    for cancel in [
        CancelMode::Permanent,
        CancelMode::Transient,
        CancelMode::Temporary,
    ] {
        let (first_dropped, first_gone) = oneshot::channel();
        let events = log();
        let mut pipeline = Pipeline::new();
        let first = pipeline.add_producer_named(
            "first",
            Finite {
                _dropped: OnDrop(Some(first_dropped)),
                ..Finite::new(0, 10)
            },
        );
        let second = pipeline.add_producer_named(
            "second",
            Finite {
                wait: Some(first_gone),
                ..Finite::new(1, 200)
            },
        );
        let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
        let options = demand(10, 5).cancel(cancel);
        pipeline.subscribe_with(&first, &consumer, options);
        pipeline.subscribe_with(&second, &consumer, options);
        let report = guard(pipeline.run()).await.unwrap();
        let events = taken(&events);
        assert_eq!(of(0, &events), (0..10).collect::<Vec<_>>(), "{cancel:?}");
        assert_eq!(of(1, &events), (0..200).collect::<Vec<_>>(), "{cancel:?}");
        assert_eq!(
            status(&report, "sink"),
            &StageStatus::Finished,
            "{cancel:?}"
        );
    }
}

/// A failing consumer leaves its producer without consumers, so the producer stops; through a
/// producer_consumer the stop travels up two hops. (The producers are endless: `run()` returns only
/// if they stop.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_consumer_stops_its_producers() {
    // Direct.
    let events = log();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("endless", Endless { tag: 0, next: 0 });
    let consumer = pipeline.add_consumer_named("sink", Collect::failing(&events, 3, Fault::Error));
    pipeline.subscribe_with(&producer, &consumer, demand(4, 2));
    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "sink"),
        "{error:?}"
    );
    // Three batches of 2 were handled before the fourth failed.
    assert_eq!(taken(&events), tagged(0, 0..6));

    // Through a producer_consumer.
    let events = log();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("endless", Endless { tag: 0, next: 0 });
    let middle = pipeline.add_producer_consumer_named(
        "middle",
        FaultyMiddle {
            batches: usize::MAX,
            fault: Fault::Error,
        },
    );
    let consumer = pipeline.add_consumer_named("sink", Collect::failing(&events, 1, Fault::Panic));
    pipeline.subscribe(&producer, &middle);
    pipeline.subscribe_with(&middle, &consumer, demand(4, 2));
    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::StagePanicked { stage, .. } if stage == "sink"),
        "{error:?}"
    );
    assert_eq!(taken(&events), tagged(0, 0..2));
}

// ---------------------------------------------------------------------------------------------
// Wiring mistakes, reported before any stage runs

/// A producer that records whether it was ever asked for events.
struct Watched(Arc<AtomicUsize>);

impl Producer for Watched {
    type Output = Event;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<Event>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Emit::last(tagged(0, 0..demand as u64)))
    }
}

fn forward() -> FaultyMiddle {
    FaultyMiddle {
        batches: usize::MAX,
        fault: Fault::Error,
    }
}

#[tokio::test]
async fn producer_without_consumer_is_rejected() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = log();
    let mut pipeline = Pipeline::new();
    let used = pipeline.add_producer_named("used", Watched(calls.clone()));
    pipeline.add_producer_named("lonely", Watched(calls.clone()));
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe(&used, &consumer);

    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::NoConsumer { stage } if stage == "lonely"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stage `lonely` has no consumer: its events would go nowhere"
    );
    // A mistake found before anything ran carries no report.
    assert_eq!(
        format!("{error:?}"),
        "NoConsumer: stage `lonely` has no consumer: its events would go nowhere"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a stage ran");
    assert!(taken(&events).is_empty());
}

#[tokio::test]
async fn producer_consumer_without_consumer_is_rejected() {
    let events = log();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("numbers", Endless { tag: 0, next: 0 });
    let middle = pipeline.add_producer_consumer_named("dead-end", forward());
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe(&producer, &middle);
    pipeline.subscribe(&producer, &consumer);

    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::NoConsumer { stage } if stage == "dead-end"),
        "{error:?}"
    );
}

#[tokio::test]
async fn consumer_without_producer_is_rejected() {
    let events = log();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("numbers", Endless { tag: 0, next: 0 });
    let fed = pipeline.add_consumer_named("fed", Collect::new(&events));
    pipeline.add_consumer_named("unfed", Collect::new(&events));
    pipeline.subscribe(&producer, &fed);

    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::NoProducer { stage } if stage == "unfed"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stage `unfed` has no producer: nothing would ever feed it"
    );
}

#[tokio::test]
async fn producer_consumer_without_producer_is_rejected() {
    let events = log();
    let mut pipeline = Pipeline::new();
    let middle = pipeline.add_producer_consumer_named("unfed", forward());
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe(&middle, &consumer);

    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::NoProducer { stage } if stage == "unfed"),
        "{error:?}"
    );
}

/// numbers -> a -> b -> a, b -> sink: the cycle a -> b -> a is reported, and nothing runs.
#[tokio::test]
async fn cycle_of_producer_consumers_is_rejected() {
    let calls = Arc::new(AtomicUsize::new(0));
    let events = log();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("numbers", Watched(calls.clone()));
    let a = pipeline.add_producer_consumer_named("a", forward());
    let b = pipeline.add_producer_consumer_named("b", forward());
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe(&producer, &a);
    pipeline.subscribe(&a, &b);
    pipeline.subscribe(&b, &a);
    pipeline.subscribe(&b, &consumer);

    let error = guard(pipeline.run()).await.unwrap_err();
    match &error {
        PipelineError::Cycle { stages } => assert_eq!(stages, &["a", "b", "a"]),
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert_eq!(error.stage(), "a");
    assert_eq!(
        error.to_string(),
        "the subscriptions form a cycle: a -> b -> a"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a stage ran");
}

/// A producer_consumer subscribed to itself is a cycle too.
#[tokio::test]
async fn producer_consumer_subscribed_to_itself_is_rejected() {
    let events = log();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("numbers", Endless { tag: 0, next: 0 });
    let a = pipeline.add_producer_consumer_named("a", forward());
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe(&producer, &a);
    pipeline.subscribe(&a, &a);
    pipeline.subscribe(&a, &consumer);

    let error = guard(pipeline.run()).await.unwrap_err();
    match &error {
        PipelineError::Cycle { stages } => assert_eq!(stages, &["a", "a"]),
        other => panic!("expected a cycle, got {other:?}"),
    }
}

/// Invalid demand options, on the edge or in the consumer's defaults, are reported with GenStage's
/// messages, naming both ends of the subscription; nothing runs.
#[tokio::test]
async fn invalid_subscription_options_are_rejected() {
    let cases: [(SubscribeOptions, SubscribeOptions, DemandError, &str); 4] = [
        (
            SubscribeOptions::new().max_demand(0),
            SubscribeOptions::new(),
            DemandError::MaxDemandZero,
            "expected max_demand to be equal to or greater than 1, got: 0",
        ),
        (
            // max_demand defaults to 1000.
            SubscribeOptions::new().min_demand(2000),
            SubscribeOptions::new(),
            DemandError::MinDemandTooLarge {
                min_demand: 2000,
                max_demand: 1000,
            },
            "expected min_demand to be equal to or less than 999, got: 2000",
        ),
        (
            demand(10, 10),
            SubscribeOptions::new(),
            DemandError::MinDemandTooLarge {
                min_demand: 10,
                max_demand: 10,
            },
            "expected min_demand to be equal to or less than 9, got: 10",
        ),
        (
            // The edge sets nothing; the consumer's own defaults are invalid.
            SubscribeOptions::new(),
            SubscribeOptions::new().max_demand(0),
            DemandError::MaxDemandZero,
            "expected max_demand to be equal to or greater than 1, got: 0",
        ),
    ];
    for (edge, defaults, expected, message) in cases {
        let calls = Arc::new(AtomicUsize::new(0));
        let events = log();
        let mut pipeline = Pipeline::new();
        let producer = pipeline.add_producer_named("numbers", Watched(calls.clone()));
        let consumer = pipeline.add_consumer_named(
            "sink",
            Collect {
                defaults,
                ..Collect::new(&events)
            },
        );
        pipeline.subscribe_with(&producer, &consumer, edge);

        let error = guard(pipeline.run()).await.unwrap_err();
        match &error {
            PipelineError::InvalidSubscription {
                producer,
                consumer,
                error,
            } => {
                assert_eq!((producer.as_str(), consumer.as_str()), ("numbers", "sink"));
                assert_eq!(error, &expected);
                assert_eq!(error.to_string(), message);
            }
            other => panic!("expected InvalidSubscription, got {other:?}"),
        }
        assert_eq!(
            error.to_string(),
            format!("invalid subscription of `sink` to `numbers`: {message}")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "a stage ran");
    }
}

/// `max_demand = usize::MAX` on two consumers of a producer_consumer used to overflow the demand
/// summed over them (a panic in debug builds, blamed on the user's stage; a wrap in release). Demand
/// above `MAX_DEMAND_LIMIT` is refused at subscribe time, naming both stages.
#[tokio::test]
async fn demand_that_could_overflow_is_rejected() {
    /// A producer_consumer feeding two consumers subscribed with `max_demand`.
    fn fan_out(max_demand: usize, events: &Log<Event>) -> Pipeline {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", from_iter(tagged(0, 0..10)));
        let middle = pipeline.add_producer_consumer_named("middle", forward());
        pipeline.subscribe(&numbers, &middle);
        for name in ["a", "b"] {
            let sink = pipeline.add_consumer_named(name, Collect::new(events));
            pipeline.subscribe_with(
                &middle,
                &sink,
                SubscribeOptions::new().max_demand(max_demand),
            );
        }
        pipeline
    }
    let events = log();
    let error = guard(fan_out(usize::MAX, &events).run()).await.unwrap_err();
    match &error {
        PipelineError::InvalidSubscription {
            producer,
            consumer,
            error,
        } => {
            assert_eq!((producer.as_str(), consumer.as_str()), ("middle", "a"));
            assert_eq!(
                error,
                &DemandError::MaxDemandTooLarge {
                    max_demand: usize::MAX
                }
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "expected max_demand to be equal to or less than 1073741824, got: {}",
                    usize::MAX
                )
            );
        }
        other => panic!("expected InvalidSubscription, got {other:?}"),
    }
    // The limit itself is accepted.
    guard(fan_out(genstage::MAX_DEMAND_LIMIT, &events).run())
        .await
        .unwrap();
    assert_eq!(taken(&events).len(), 10);
}

/// A handle from another pipeline is refused.
#[tokio::test]
async fn stage_of_another_pipeline_is_rejected() {
    let events = log();
    let mut other = Pipeline::new();
    let foreign = other.add_producer_named("foreign", Endless { tag: 0, next: 0 });
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("numbers", Endless { tag: 0, next: 0 });
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe(&producer, &consumer);
    pipeline.subscribe(&foreign, &consumer);

    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(error, PipelineError::ForeignStage { ref stage } if stage == "foreign"),
        "{error:?}"
    );

    // A restart policy set on it: the same, naming it.
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("numbers", Endless { tag: 0, next: 0 });
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe(&producer, &consumer);
    pipeline.set_restart(&foreign, genstage::RestartPolicy::transient());
    let error = guard(pipeline.run()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "stage `foreign` belongs to another pipeline"
    );
}

// ---------------------------------------------------------------------------------------------
// Ordering

/// Events from one producer reach one consumer in emission order, whatever the batch sizes on
/// either side; with two producers, the order of each is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_emission_order() {
    let events = log();
    let mut pipeline = Pipeline::new();
    let a = pipeline.add_producer_named(
        "a",
        Finite {
            chunk: 3,
            ..Finite::new(0, 500)
        },
    );
    let b = pipeline.add_producer_named(
        "b",
        Finite {
            chunk: 11,
            ..Finite::new(1, 700)
        },
    );
    let consumer = pipeline.add_consumer_named("sink", Collect::new(&events));
    pipeline.subscribe_with(&a, &consumer, demand(7, 3));
    pipeline.subscribe_with(&b, &consumer, demand(50, 0));

    let report = guard(pipeline.run()).await.unwrap();

    let events = taken(&events);
    assert_eq!(of(0, &events), (0..500).collect::<Vec<_>>());
    assert_eq!(of(1, &events), (0..700).collect::<Vec<_>>());
    assert_eq!(report.stage("sink").unwrap().events_in, 1200);
}

// ---------------------------------------------------------------------------------------------
// Buffer overflow

/// Emits 30 events for the first demand (10 go out, 20 meet a full buffer), then exactly what it is
/// asked, up to 40.
struct Burst {
    next: u64,
    options: ProducerOptions,
}

impl Producer for Burst {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let count = if self.next == 0 { 30 } else { demand as u64 };
        let stop = 40.min(self.next + count);
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == 40 {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }
}

/// GenStage's tests 25–27: with `buffer_size` 5, keeping the first drops the newest 15 of the 20
/// unasked-for events, keeping the last drops the oldest 15; an unbounded buffer drops none. The
/// report counts them as `discarded`.
#[tokio::test]
async fn buffer_overflow_is_reported_as_discarded() {
    let cases: [(&str, ProducerOptions, Vec<u64>, u64); 3] = [
        (
            "keep first",
            ProducerOptions::for_producer()
                .buffer_size(5)
                .buffer_keep(BufferKeep::First),
            (0..15).chain(30..40).collect(),
            15,
        ),
        (
            "keep last",
            ProducerOptions::for_producer()
                .buffer_size(5)
                .buffer_keep(BufferKeep::Last),
            (0..10).chain(25..40).collect(),
            15,
        ),
        (
            "unbounded",
            ProducerOptions::for_producer().unbounded(),
            (0..40).collect(),
            0,
        ),
    ];
    for (what, options, expected, discarded) in cases {
        let events = log();
        let mut pipeline = Pipeline::new();
        let producer = pipeline.add_producer_named("burst", Burst { next: 0, options });
        let consumer = pipeline.add_consumer_named("numbers", Numbers(events.clone()));
        pipeline.subscribe_with(&producer, &consumer, demand(10, 5));

        let report = guard(pipeline.run()).await.unwrap();

        assert_eq!(taken(&events), expected, "{what}");
        let burst = report.stage("burst").unwrap();
        assert_eq!(burst.discarded, discarded, "{what}");
        // The reason: the buffer.
        let discards: Vec<Discard> = (discarded > 0)
            .then_some(Discard {
                count: discarded,
                reason: DiscardReason::BufferFull,
            })
            .into_iter()
            .collect();
        assert_eq!(burst.discards, discards, "{what}");
        assert_eq!(burst.events_out, 40 - discarded, "{what}");
        assert_eq!(burst.status, StageStatus::Finished, "{what}");
        assert_eq!(
            report.stage("numbers").unwrap().events_in,
            40 - discarded,
            "{what}"
        );
    }
}

/// `from_iter` in the typed builder: all of its items, in order, then the pipeline ends.
#[tokio::test]
async fn from_iter_delivers_every_item_then_ends() {
    let events = log();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("items", from_iter(0..1234u64));
    let consumer = pipeline.add_consumer_named("numbers", Numbers(events.clone()));
    pipeline.subscribe_with(&producer, &consumer, demand(100, 0));
    let report = guard(pipeline.run()).await.unwrap();
    assert_eq!(taken(&events), (0..1234).collect::<Vec<_>>());
    assert_eq!(report.stage("items").unwrap().events_out, 1234);
    assert_eq!(status(&report, "items"), &StageStatus::Finished);
}

/// `run()` outside a tokio runtime, or in one without timers, is a clear error rather than tokio's
/// panic.
#[test]
fn run_needs_a_tokio_runtime_with_timers() {
    let pipeline = || {
        let events = log();
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", from_iter(tagged(0, 0..10)));
        let sink = pipeline.add_consumer_named("sink", Collect::new(&events));
        pipeline.subscribe(&numbers, &sink);
        pipeline
    };
    let error = futures::executor::block_on(pipeline().run()).unwrap_err();
    assert!(matches!(error, PipelineError::NoRuntime), "{error:?}");
    assert!(
        error.to_string().contains("within a tokio runtime"),
        "{error}"
    );
    let without_timers = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let error = without_timers.block_on(pipeline().run()).unwrap_err();
    assert!(matches!(error, PipelineError::NoRuntime), "{error:?}");
    let with_timers = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let report = with_timers.block_on(pipeline().run()).unwrap();
    assert_eq!(report.stage("sink").unwrap().events_in, 10);
}
