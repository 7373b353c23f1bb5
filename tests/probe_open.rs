//! Probe: the open (running) pipeline's endings racing what a service does meanwhile: consumers
//! added and subscriptions made or cancelled through the handle while a graceful shutdown runs,
//! `to_stream` readers that stop reading or drop their stream mid-shutdown, `from_stream` and
//! `from_channel` sources pending for ever, a ConsumerSupervisor with children still running, a
//! stage restarting (with `redeliver`) at that moment, calls to stages that restart or end, a
//! manual consumer that never asks, and partition and broadcast consumers that come and go while
//! events wait in the dispatcher. Every wait is bounded by a generous timeout, a hang detector
//! only; events are ordered with channels, never with sleeps. Each report is checked for exact
//! counts, its losses' reasons and its balance.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{from_iter, Consumer, Pipeline, Report, StageResult, StageStatus};
use tokio::sync::mpsc;

/// Fails the test, naming `what`, if `future` has not finished after 20 s: a hang detector.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(20), future).await {
        Ok(output) => output,
        Err(_) => panic!("hang: {what} did not finish within 20 s"),
    }
}

/// Checks `emitted = handled + discarded + lost`, in total and on every edge.
fn balanced(report: &Report) {
    assert!(report.totals().balanced(), "{report}");
    assert!(report.balanced(), "{report}");
}

type Seen = Arc<Mutex<Vec<u64>>>;

/// Records what it gets, telling the test of each batch.
struct Record {
    seen: Seen,
    batches: Option<mpsc::UnboundedSender<usize>>,
}

impl Record {
    fn new() -> (Self, Seen) {
        let seen = Seen::default();
        (
            Record {
                seen: seen.clone(),
                batches: None,
            },
            seen,
        )
    }
}

impl Consumer for Record {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let len = events.len();
        self.seen.lock().unwrap().extend(events);
        if let Some(batches) = &self.batches {
            let _ = batches.send(len);
        }
        Ok(())
    }
}

/// A consumer added through the handle after a graceful shutdown was asked for, with no producer
/// to end its input: it must end with the pipeline, not hold the shutdown open for ever.
#[tokio::test]
async fn a_consumer_added_after_a_shutdown_was_asked_for_ends_with_it() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0u64..));
    let (record, _seen) = Record::new();
    let sink = pipeline.add_consumer(record);
    pipeline.subscribe(&numbers, &sink);
    let mut running = pipeline.start();
    running.shutdown_handle().shutdown().unwrap();
    let (late, late_seen) = Record::new();
    // Taken in after the shutdown: the pipeline still runs, so the consumer is added.
    within(
        "adding a consumer",
        running.add_consumer_named("late", late),
    )
    .await
    .expect("added while the pipeline shuts down");
    let report = within("the shutdown", &mut running)
        .await
        .expect("a clean shutdown");
    balanced(&report);
    assert_eq!(report.totals().lost, 0, "{report}");
    let late = report.stage("late").unwrap();
    assert_eq!(late.status, StageStatus::Finished, "{report}");
    assert_eq!(late.events_in, 0, "{report}");
    assert!(late_seen.lock().unwrap().is_empty());
}
