//! Producers that have nothing to emit: one that awaits inside its callback still notices its
//! consumers leaving, and one that returns an empty batch is asked again, so neither hangs a run.
//!
//! Runs are wrapped in a timeout that guards against hangs; it is not a timing assertion.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use genstage::{
    Consumer, Emit, LossReason, Pipeline, PipelineError, Producer, ProducerConsumer, Report,
    StageResult, StageStatus, SubscribeOptions,
};
use tokio::sync::mpsc;

async fn guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("the pipeline hung (no end within 30 s)")
}

fn report_of(error: &PipelineError) -> &Report {
    error
        .report()
        .expect("a run-time failure carries its report")
}

/// Emits `first` events on its first call, then waits for a channel that nobody feeds.
struct Quiet {
    first: u64,
    called: bool,
    source: mpsc::Receiver<u64>,
}

impl Producer for Quiet {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        if !self.called {
            self.called = true;
            return Ok(Emit::more((0..self.first).collect()));
        }
        match self.source.recv().await {
            Some(event) => Ok(Emit::more(vec![event])),
            None => Ok(Emit::last(Vec::new())),
        }
    }
}

/// Counts what it handles; fails on its first batch when `fail`.
struct Sink {
    handled: Arc<AtomicUsize>,
    fail: bool,
}

impl Consumer for Sink {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if self.fail {
            return Err("sink failed".into());
        }
        self.handled.fetch_add(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

/// A producer awaiting a quiet source inside `handle_demand` stops when its only consumer fails:
/// the callback is dropped, and `run()` returns the failure with the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_producer_stops_when_its_consumer_fails() {
    let (_feed, source) = mpsc::channel(1);
    let mut pipeline = Pipeline::new();
    let quiet = pipeline.add_producer_named(
        "quiet",
        Quiet {
            first: 10,
            called: false,
            source,
        },
    );
    let sink = pipeline.add_consumer_named(
        "sink",
        Sink {
            handled: Arc::default(),
            fail: true,
        },
    );
    pipeline.subscribe(&quiet, &sink);
    let error = guard(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "sink");
    let report = report_of(&error);
    let quiet = report.stage("quiet").unwrap();
    assert_eq!(quiet.status, StageStatus::Cancelled { cause: None });
    assert_eq!((quiet.emitted, quiet.events_out), (10, 10));
    let sink = report.stage("sink").unwrap();
    assert_eq!(sink.losses.len(), 1);
    assert_eq!(
        (sink.losses[0].reason, sink.losses[0].count),
        (LossReason::FailedBatch, 10)
    );
    assert!(report.balanced());
}

/// Passes events on, except that it waits for ever on its second batch.
struct Stuck {
    batches: usize,
}

impl ProducerConsumer for Stuck {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        self.batches += 1;
        if self.batches == 2 {
            std::future::pending::<()>().await;
        }
        Ok(events)
    }
}

/// Emits 0, 1, 2, … for ever.
struct Endless(u64);

impl Producer for Endless {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let events = (self.0..self.0 + demand as u64).collect();
        self.0 += demand as u64;
        Ok(Emit::more(events))
    }
}

/// A producer_consumer stuck in its callback stops when its consumer fails; the batch it held is
/// counted as lost, and the endless producer above it, left without consumers, stops too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_producer_consumer_stops_when_its_consumer_fails() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Endless(0));
    let stuck = pipeline.add_producer_consumer_named("stuck", Stuck { batches: 0 });
    let sink = pipeline.add_consumer_named(
        "sink",
        Sink {
            handled: Arc::default(),
            fail: true,
        },
    );
    let options = SubscribeOptions::new().max_demand(10).min_demand(5);
    pipeline.subscribe_with(&numbers, &stuck, options);
    pipeline.subscribe_with(&stuck, &sink, options);
    let error = guard(pipeline.run()).await.unwrap_err();
    assert_eq!(error.stage(), "sink");
    let report = report_of(&error);
    let stuck = report.stage("stuck").unwrap();
    assert_eq!(stuck.status, StageStatus::Cancelled { cause: None });
    assert_eq!(stuck.events_in, 5, "its first batch");
    assert!(stuck
        .losses
        .iter()
        .any(|loss| loss.reason == LossReason::Unhandled && loss.count >= 5));
    assert_eq!(
        report.stage("numbers").unwrap().status,
        StageStatus::Cancelled { cause: None }
    );
    assert!(report.balanced(), "{report:#?}");
}

/// Returns an empty batch on its first `empty` calls, then `0..n` and ends.
struct LateStarter {
    empty: usize,
    calls: Arc<AtomicUsize>,
    n: u64,
}

impl Producer for LateStarter {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.empty {
            return Ok(Emit::more(Vec::new()));
        }
        Ok(Emit::last((0..self.n).collect()))
    }
}

/// An empty batch with no other demand in flight used to stop the pipeline for good: now the
/// shortfall is asked for again after a back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_batch_is_asked_for_again() {
    let handled = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named(
        "late",
        LateStarter {
            empty: 3,
            calls: calls.clone(),
            n: 100,
        },
    );
    let sink = pipeline.add_consumer_named(
        "sink",
        Sink {
            handled: handled.clone(),
            fail: false,
        },
    );
    pipeline.subscribe(&producer, &sink);
    let report = guard(pipeline.run()).await.unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 100);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "three empty calls, then the events"
    );
    assert_eq!(report.stage("sink").unwrap().events_in, 100);
}

/// Polls a flag that another task sets later; emits once it is set.
struct Poller {
    ready: Arc<AtomicBool>,
    polls: Arc<AtomicUsize>,
}

impl Producer for Poller {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.ready.load(Ordering::SeqCst) {
            Ok(Emit::last((0..demand as u64).collect()))
        } else {
            Ok(Emit::more(Vec::new()))
        }
    }
}

/// A producer that polls its source by returning empty batches works: it is polled with a growing
/// back-off, not in a busy loop, and emits once its source is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_producer_works() {
    let ready = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named(
        "poller",
        Poller {
            ready: ready.clone(),
            polls: polls.clone(),
        },
    );
    let sink = pipeline.add_consumer_named(
        "sink",
        Sink {
            handled: handled.clone(),
            fail: false,
        },
    );
    pipeline.subscribe(&producer, &sink);
    let run = tokio::spawn(pipeline.run());
    // Set the flag once the producer has been polled a few times and 50 ms have passed.
    let start = tokio::time::Instant::now();
    guard(async {
        while polls.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    tokio::time::sleep_until(start + Duration::from_millis(50)).await;
    ready.store(true, Ordering::SeqCst);
    let waited = start.elapsed();
    let report = guard(run).await.unwrap().unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 1000);
    assert_eq!(report.stage("poller").unwrap().emitted, 1000);
    // Back-off waits of 1, 2, 4, … ms: within `waited` at most log2(waited in ms) + 2 polls, and
    // one more for the events. A busy loop would have polled thousands of times.
    let bound = (waited.as_millis() as f64).log2().ceil() as usize + 4;
    assert!(
        polls.load(Ordering::SeqCst) <= bound,
        "{} polls in {waited:?}",
        polls.load(Ordering::SeqCst)
    );
}
