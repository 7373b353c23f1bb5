//! What a running pipeline's handle does once a shutdown or an abort has begun: it adds and
//! subscribes nothing more (`PipelineError::ShuttingDown`), nor resubscribes in place of a
//! subscription that is not running, still cancels, and serves what reached the pipeline before
//! the shutdown; once the pipeline has ended, everything is `NotRunning`. (A resubscribe that
//! replaces a running subscription during a shutdown is served: `probe_open.rs`'s
//! `held_shutdown`.)

use std::sync::Arc;

use genstage::{
    from_iter, Consumer, Pipeline, PipelineError, Producer, ProducerConsumer, StageResult,
    StageStatus, SubscribeOptions,
};
use tokio::sync::{mpsc, Semaphore};

/// A consumer that, on its first batch, tells the test and waits for a permit of `gate`: a
/// graceful shutdown stays open while it holds the batch.
struct Gated {
    gate: Arc<Semaphore>,
    entered: Option<mpsc::UnboundedSender<()>>,
}

impl Gated {
    fn new(gate: &Arc<Semaphore>) -> (Self, mpsc::UnboundedReceiver<()>) {
        let (entered, inside) = mpsc::unbounded_channel();
        let gated = Gated {
            gate: gate.clone(),
            entered: Some(entered),
        };
        (gated, inside)
    }
}

impl Consumer for Gated {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        if let Some(entered) = self.entered.take() {
            let _ = entered.send(());
            self.gate.acquire().await?.forget();
        }
        Ok(())
    }
}

/// A consumer that handles everything at once.
struct Sink;

impl Consumer for Sink {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

/// A producer that never emits.
struct Idle;

impl Producer for Idle {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<genstage::Emit<u64>> {
        Ok(genstage::Emit::more(Vec::new()))
    }
}

/// Emits 0..100 when first asked, then nothing: what its consumers have not asked for stays in
/// its buffer, which a graceful shutdown delivers, so it runs on while they are held.
struct Hundred {
    done: bool,
}

impl Producer for Hundred {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<genstage::Emit<u64>> {
        let events = if std::mem::replace(&mut self.done, true) {
            Vec::new()
        } else {
            (0..100).collect()
        };
        Ok(genstage::Emit::more(events))
    }
}

/// A step that passes events on.
struct Step;

impl ProducerConsumer for Step {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// Asserts that `answer` is a refusal for the shutdown.
fn refused<T>(answer: Result<T, PipelineError>, what: &str) {
    match answer {
        Err(PipelineError::ShuttingDown) => {}
        Err(error) => panic!("{what}: {error:?}"),
        Ok(_) => panic!("{what}: accepted during a shutdown"),
    }
}

/// Asserts that `answer` is a refusal for the pipeline's end.
fn ended<T>(answer: Result<T, PipelineError>, what: &str) {
    match answer {
        Err(PipelineError::NotRunning) => {}
        Err(error) => panic!("{what}: {error:?}"),
        Ok(_) => panic!("{what}: accepted after the end"),
    }
}

fn ten() -> SubscribeOptions {
    SubscribeOptions::new().max_demand(10).min_demand(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_shutdown_the_handle_adds_subscribes_and_resubscribes_nothing_but_cancels() {
    let gate = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Hundred { done: false });
    let (gated, mut gated_inside) = Gated::new(&gate);
    let gated = pipeline.add_consumer_named("gated", gated);
    pipeline.subscribe_with(&numbers, &gated, ten());
    let mut running = pipeline.start();
    // A subscription made through the handle, to resubscribe and cancel during the shutdown.
    let (extra, mut extra_inside) = Gated::new(&gate);
    let extra = running.add_consumer_named("extra", extra).await.unwrap();
    let tag = running
        .subscribe_with(&numbers, &extra, ten())
        .await
        .unwrap();
    gated_inside.recv().await.unwrap();
    extra_inside.recv().await.unwrap();

    // Both consumers hold their first batch of 10, and `numbers` the 80 others: the shutdown
    // stays open until the gate opens.
    running.shutdown_handle().shutdown().unwrap();
    refused(
        running.add_consumer_named("late", Sink).await,
        "add_consumer_named",
    );
    refused(running.add_consumer(Sink).await, "add_consumer");
    refused(
        running.add_consumer_with(|| Sink).await,
        "add_consumer_with",
    );
    refused(
        running.add_producer_named("room2", Idle).await,
        "add_producer_named",
    );
    refused(
        running.add_producer_with(|| Idle).await,
        "add_producer_with",
    );
    refused(
        running.add_producer_consumer(Step).await,
        "add_producer_consumer",
    );
    refused(
        running.add_producer_consumer_with(|| Step).await.map(drop),
        "add_producer_consumer_with",
    );
    refused(running.subscribe(&numbers, &gated).await, "subscribe");
    refused(
        running.subscribe_with(&numbers, &extra, ten()).await,
        "subscribe_with",
    );
    // Still pending, the first batches held: refused because of the shutdown, not of an end.
    assert!(!running.is_finished());
    // A consumer may leave at any time.
    running.cancel(tag).await.unwrap();
    assert!(matches!(
        running.cancel(tag).await,
        Err(PipelineError::UnknownSubscription { .. })
    ));
    // A resubscribe replacing nothing running would only add a subscription.
    refused(
        running.resubscribe(tag, &numbers, &extra, ten()).await,
        "resubscribe",
    );

    gate.add_permits(2);
    let report = (&mut running).await.unwrap();
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{report}");
    for name in ["numbers", "gated", "extra"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert_eq!(report.edges.len(), 2, "{report}");
    assert_eq!(
        report.stage("numbers").unwrap().status,
        StageStatus::ShutDown
    );
    // `extra`, cancelled, handled its first batch only; `gated` the rest.
    assert_eq!(report.stage("numbers").unwrap().emitted, 100);
    assert_eq!(report.stage("gated").unwrap().events_in, 90);
    assert_eq!(report.stage("extra").unwrap().events_in, 10);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");

    // Once it has ended: `NotRunning`, as before.
    ended(
        running.add_consumer_named("later", Sink).await,
        "add_consumer_named",
    );
    ended(running.add_producer(Idle).await, "add_producer");
    ended(running.subscribe(&numbers, &gated).await, "subscribe");
    ended(
        running.resubscribe(tag, &numbers, &extra, ten()).await,
        "resubscribe",
    );
    ended(running.cancel(tag).await, "cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_reached_the_pipeline_before_the_shutdown_is_served() {
    let gate = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..1000u64));
    let (gated, mut inside) = Gated::new(&gate);
    let gated = pipeline.add_consumer_named("gated", gated);
    pipeline.subscribe_with(&numbers, &gated, ten());
    let mut running = pipeline.start();
    inside.recv().await.unwrap();

    // Polled once, the add is sent (and may be answered already); the shutdown is sent after it,
    // on the same channel.
    let mut adding = Box::pin(running.add_consumer_named("early", Sink));
    let polled = futures::poll!(adding.as_mut());
    running.shutdown_handle().shutdown().unwrap();
    let early = match polled {
        std::task::Poll::Ready(early) => early,
        std::task::Poll::Pending => adding.as_mut().await,
    }
    .unwrap();
    drop(adding);
    refused(running.subscribe(&numbers, &early).await, "subscribe");

    gate.add_permits(1);
    let report = (&mut running).await.unwrap();
    // Added before the shutdown, and ended by it (it never had a producer).
    assert_eq!(report.stages.len(), 3, "{report}");
    assert_eq!(report.stage("early").unwrap().events_in, 0);
    assert_eq!(report.stage("numbers").unwrap().emitted, 10);
    assert_eq!(report.stage("gated").unwrap().events_in, 10);
    assert_eq!(report.edges.len(), 1, "{report}");
    assert!(report.balanced(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_abort_the_handle_adds_nothing() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0u64..));
    let sink = pipeline.add_consumer_named("sink", Sink);
    pipeline.subscribe(&numbers, &sink);
    let mut running = pipeline.start();
    running.shutdown_handle().abort().unwrap();
    // Taken after the abort: refused, or, the pipeline having ended by then, not running.
    let added = running.add_consumer_named("late", Sink).await;
    assert!(
        matches!(
            added,
            Err(PipelineError::ShuttingDown | PipelineError::NotRunning)
        ),
        "{added:?}"
    );
    let report = (&mut running).await.unwrap();
    assert!(report.stage("late").is_none(), "{report}");
    assert!(report.balanced(), "{report}");
}

#[test]
fn the_error_says_what_happened() {
    let error = PipelineError::ShuttingDown;
    assert_eq!(
        error.to_string(),
        "the pipeline is shutting down: it adds and wires nothing more"
    );
    assert_eq!(error.stage(), "");
    assert!(format!("{error:?}").starts_with("ShuttingDown"));
}
