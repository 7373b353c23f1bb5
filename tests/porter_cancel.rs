//! GenStage's cancel modes ported (`genstage-semantics.md` §1.3, §1.9, scenarios 72–78): a consumer
//! fed by two producers is subscribed `permanent`, `transient` or `temporary` to one of them, which
//! ends normally or fails; the other goes on. What the consumer handles, what its `handle_cancel`
//! is told, whether it stops, and what the report says.
//!
//! Where GenStage and genstage differ, they differ as `CancelMode`'s documentation says: a producer
//! that ends normally stops no consumer here (GenStage stops a `permanent` one with `:normal`), so
//! `transient` and `permanent` act alike.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use genstage::ProducerRef;

/// Emits `[1, 2, 3]`, then ends, or fails on its next call.
struct Source {
    fails: bool,
    calls: u32,
}

#[stage(producer)]
impl Source {
    fn handle_demand(&mut self, _demand: usize) -> Result<Emit<u64>, String> {
        self.calls += 1;
        match (self.calls, self.fails) {
            (1, false) => Ok(Emit::last(vec![1, 2, 3])),
            (1, true) => Ok(Emit::more(vec![1, 2, 3])),
            _ => Err("source broke".to_owned()),
        }
    }
}

/// Events to push through `Other`.
struct Push(Vec<u64>);

/// Emits only what it is cast.
struct Other;

#[stage(producer)]
impl Other {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        // Nothing of its own (GenStage's `{:noreply, [], state}`): asked again after a back-off.
        Vec::new()
    }

    fn handle_cast(&mut self, push: Push) -> Vec<u64> {
        push.0
    }
}

/// What the sink saw: its events, and its subscriptions' ends as `(producer, reason)`.
#[derive(Default, Clone)]
struct Seen {
    events: Arc<Mutex<Vec<u64>>>,
    cancels: Arc<Mutex<Vec<(String, CancelReason)>>>,
}

struct Sink {
    seen: Seen,
}

#[stage(consumer)]
impl Sink {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.events.lock().unwrap().extend(events);
    }

    fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason) {
        self.seen
            .cancels
            .lock()
            .unwrap()
            .push((subscription.producer().to_owned(), reason.clone()));
    }
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// `source -[cancel = mode]-> sink` and `other -> sink`, started; returns once the sink has seen
/// the source's subscription end.
async fn run(fails: bool, mode: CancelMode) -> (PipelineHandle, ProducerRef<Other>, Seen) {
    let seen = Seen::default();
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer_named("source", Source { fails, calls: 0 });
    let other = pipeline.add_producer_named("other", Other);
    let sink = pipeline.add_consumer_named("sink", Sink { seen: seen.clone() });
    pipeline.subscribe_with(&source, &sink, SubscribeOptions::new().cancel(mode));
    pipeline.subscribe(&other, &sink);
    let running = pipeline.start();
    until("the source's subscription to end", || {
        !seen.cancels.lock().unwrap().is_empty()
    })
    .await;
    (running, other, seen)
}

fn failed() -> CancelReason {
    CancelReason::Failed {
        cause: "source".to_owned(),
    }
}

/// A producer that ends normally stops no consumer, whatever its mode: the sink goes on with the
/// other producer, and finishes at the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_ends_stops_no_consumer() {
    for mode in [
        CancelMode::Permanent,
        CancelMode::Transient,
        CancelMode::Temporary,
    ] {
        let (running, other, seen) = run(false, mode).await;
        assert_eq!(
            seen.cancels.lock().unwrap().clone(),
            [("source".to_owned(), CancelReason::Finished)],
            "{mode:?}"
        );
        other.cast(Push(vec![10, 11])).unwrap();
        until("the other producer's events", || {
            seen.events.lock().unwrap().len() == 5
        })
        .await;
        let report = running.shutdown().await.unwrap();
        assert_eq!(seen.events.lock().unwrap().clone(), [1, 2, 3, 10, 11]);
        let sink = report.stage("sink").unwrap();
        assert_eq!(sink.status, StageStatus::Finished, "{mode:?}");
        assert_eq!(sink.events_in, 5);
        assert_eq!(
            report.stage("source").unwrap().status,
            StageStatus::Finished
        );
        assert_eq!(report.stage("other").unwrap().status, StageStatus::ShutDown);
        assert!(report.balanced(), "{report}");
    }
}

/// A producer that fails stops a `permanent` or `transient` consumer after its `handle_cancel`,
/// and the other producer, left without consumers, stops too; the run fails naming the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_producer_stops_permanent_and_transient_consumers() {
    for mode in [CancelMode::Permanent, CancelMode::Transient] {
        let (running, _other, seen) = run(true, mode).await;
        let error = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the pipeline ends")
            .unwrap_err();
        assert_eq!(
            seen.cancels.lock().unwrap().clone(),
            [("source".to_owned(), failed())],
            "{mode:?}"
        );
        assert_eq!(seen.events.lock().unwrap().clone(), [1, 2, 3], "{mode:?}");
        assert!(matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "source"));
        let report = error.report().unwrap();
        assert_eq!(
            report.stage("source").unwrap().status,
            StageStatus::Failed("source broke".to_owned())
        );
        assert_eq!(
            report.stage("sink").unwrap().status,
            StageStatus::Cancelled {
                cause: Some("source".to_owned())
            },
            "{mode:?}"
        );
        assert_eq!(
            report.stage("other").unwrap().status,
            StageStatus::Cancelled { cause: None },
            "{mode:?}"
        );
        assert!(report.balanced(), "{report}");
    }
}

/// A `temporary` consumer outlives a failing producer: it is told, and goes on with the other.
/// The run still fails, naming the source, and the sink finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_consumer_outlives_a_failing_producer() {
    let (running, other, seen) = run(true, CancelMode::Temporary).await;
    assert_eq!(
        seen.cancels.lock().unwrap().clone(),
        [("source".to_owned(), failed())]
    );
    other.cast(Push(vec![10, 11])).unwrap();
    until("the other producer's events", || {
        seen.events.lock().unwrap().len() == 5
    })
    .await;
    let error = running.shutdown().await.unwrap_err();
    assert!(matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "source"));
    let report = error.report().unwrap();
    assert_eq!(seen.events.lock().unwrap().clone(), [1, 2, 3, 10, 11]);
    assert_eq!(report.stage("sink").unwrap().status, StageStatus::Finished);
    assert_eq!(report.stage("other").unwrap().status, StageStatus::ShutDown);
    assert!(report.balanced(), "{report}");
}

/// Emits `[1, 2, 3]`, then fails.
struct Breaks {
    calls: u32,
}

#[stage(producer)]
impl Breaks {
    fn handle_demand(&mut self, _demand: usize) -> Result<Vec<u64>, String> {
        self.calls += 1;
        if self.calls == 1 {
            Ok(vec![1, 2, 3])
        } else {
            Err("source broke".to_owned())
        }
    }
}

/// Passes its events on; when its producer's subscription ends, emits `99` for its consumer
/// (GenStage's `handle_cancel` returning `{:noreply, [99], state}`).
struct Pass;

#[stage(producer_consumer)]
impl Pass {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }

    fn handle_cancel(&mut self, _: &Subscription, _: &CancelReason) -> Vec<u64> {
        vec![99]
    }
}

/// A producer_consumer subscribed `permanent` to a producer that fails: its `handle_cancel` runs
/// after the events the producer sent, and what it emits reaches the consumer before both stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_producer_consumers_handle_cancel_emits_reaches_its_consumer() {
    let seen = Seen::default();
    let run = pipeline! {
        source = Breaks { calls: 0 } -> pass = Pass -> sink = Sink { seen: seen.clone() }
    }
    .run();
    let error = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the pipeline ends")
        .unwrap_err();
    assert_eq!(seen.events.lock().unwrap().clone(), [1, 2, 3, 99]);
    assert_eq!(
        seen.cancels.lock().unwrap().clone(),
        [("pass".to_owned(), failed())]
    );
    let report = error.report().unwrap();
    let cancelled = StageStatus::Cancelled {
        cause: Some("source".to_owned()),
    };
    assert_eq!(report.stage("pass").unwrap().status, cancelled);
    assert_eq!(report.stage("pass").unwrap().emitted, 4);
    assert_eq!(report.stage("sink").unwrap().status, cancelled);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
}
