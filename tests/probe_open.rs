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

use genstage::{
    from_iter, Consumer, Context, Demand, Dispatch, Emit, LossReason, Partition, Pipeline,
    PipelineError, Producer, Report, StageResult, StageStatus, SubscribeOptions, Subscription,
    SubscriptionTag,
};
use tokio::sync::mpsc;

// Its `guard` goes unused: `within` here names what hung.
#[allow(dead_code)]
mod run_reports;

use run_reports::{lost, report_of, stage};

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

fn options(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

/// Counts up from 0, emitting 1000 more than it is asked for the first time, so that its
/// dispatcher holds events; broadcasts, or partitions by parity.
struct Greedy {
    next: u64,
    partitioned: bool,
}

impl Producer for Greedy {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let extra = if self.next == 0 { 1000 } else { 0 };
        let end = self.next + demand as u64 + extra;
        let events = (self.next..end).collect::<Vec<_>>();
        self.next = end;
        Ok(events.into())
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        if self.partitioned {
            Dispatch::partition(2)
        } else {
            Dispatch::broadcast()
        }
    }
}

impl Partition<u64> for Greedy {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// Records what it gets, telling the test of each batch; its first subscription is manual and
/// never asks beyond the initial `max_demand`, the later ones automatic. Keeps its tags.
struct Stingy {
    seen: Seen,
    batches: mpsc::UnboundedSender<usize>,
    tags: Arc<Mutex<Vec<SubscriptionTag>>>,
}

impl Consumer for Stingy {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let len = events.len();
        self.seen.lock().unwrap().extend(events);
        let _ = self.batches.send(len);
        Ok(())
    }
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        let mut tags = self.tags.lock().unwrap();
        tags.push(subscription.tag());
        if tags.len() == 1 {
            Demand::Manual
        } else {
            Demand::Automatic
        }
    }
}

/// How a graceful shutdown held by a consumer that never asks is released.
#[derive(Clone, Copy, Debug)]
enum Release {
    /// Its subscription is cancelled through the handle.
    Cancel,
    /// It is resubscribed, in automatic demand, through the handle.
    Resubscribe,
    /// The shutdown's time limit runs out.
    Deadline,
}

/// `g` (Greedy) broadcasts to, or partitions by parity between, `a` (automatic) and `m` (Stingy:
/// manual, never asks). Once both have their first batch, `g` holds 1000 events that `m`'s lack
/// of demand keeps (a broadcast waits for every consumer; `m`'s partition keeps its backlog). A
/// graceful shutdown then waits for `m`; it is released as `release` says. `a` asks for more than
/// `m` from the start: a broadcast holds its excess, ready to go to `a` the moment `m` leaves.
async fn held_shutdown(partitioned: bool, release: Release) {
    let case = format!("partitioned {partitioned}, {release:?}");
    let (a, a_seen) = Record::new();
    let m_seen = Seen::default();
    let (m_batches, mut m_told) = mpsc::unbounded_channel();
    let tags = Arc::new(Mutex::new(Vec::new()));
    let m = Stingy {
        seen: m_seen.clone(),
        batches: m_batches,
        tags: tags.clone(),
    };
    let mut pipeline = Pipeline::new();
    let g = pipeline.add_producer_named(
        "g",
        Greedy {
            next: 0,
            partitioned,
        },
    );
    let a = pipeline.add_consumer_named("a", a);
    let m = pipeline.add_consumer_named("m", m);
    let (to_a, to_m) = if partitioned {
        (options(20, 10).partition(0), options(10, 5).partition(1))
    } else {
        (options(20, 10), options(10, 5))
    };
    pipeline.subscribe_with(&g, &a, to_a);
    pipeline.subscribe_with(&g, &m, to_m);
    let mut running = pipeline.start();
    // `m`'s initial ask is its only one: its first batch is all it gets until released.
    assert_eq!(
        within("m's first batch", m_told.recv()).await,
        Some(10),
        "{case}"
    );
    let shutdown = running.shutdown_handle();
    match release {
        Release::Deadline => shutdown
            .shutdown_within(Duration::from_millis(200))
            .unwrap(),
        _ => shutdown.shutdown().unwrap(),
    }
    let old = tags.lock().unwrap()[0];
    match release {
        // Taken in after the shutdown: `g` still runs, held by what it keeps for `m`.
        Release::Cancel => within("the cancel", running.cancel(old))
            .await
            .unwrap_or_else(|error| panic!("{case}: {error}")),
        Release::Resubscribe => {
            within("the resubscribe", running.resubscribe(old, &g, &m, to_m))
                .await
                .unwrap_or_else(|error| panic!("{case}: {error}"));
        }
        Release::Deadline => {}
    }
    let (report, error) = report_of(within("the shutdown", &mut running).await);
    balanced(&report);
    let g_row = stage(&report, "g");
    // Asked once, with 1000 extra: for the demand both consumers share (a broadcast's 10), or
    // for what they asked together (the partitions', 30).
    let emitted = if partitioned { 1030 } else { 1010 };
    assert_eq!(g_row.emitted, emitted, "{case}\n{report}");
    let a_seen = a_seen.lock().unwrap().clone();
    let m_seen = m_seen.lock().unwrap().clone();
    let (evens, odds): (Vec<u64>, Vec<u64>) = (0..emitted).partition(|n| n % 2 == 0);
    let everything: Vec<u64> = (0..emitted).collect();
    match (release, partitioned) {
        (Release::Deadline, _) => {
            let Some(PipelineError::ShutdownTimeout { busy, .. }) = &error else {
                panic!("{case}: {error:?}\n{report}");
            };
            // `a` waits for what `g` keeps, as `m` does.
            assert_eq!(busy, &["g", "a", "m"], "{case}\n{report}");
            assert_eq!(g_row.status, StageStatus::Aborted, "{case}\n{report}");
            assert_eq!(stage(&report, "m").status, StageStatus::Aborted, "{case}");
            assert_eq!(m_seen.len(), 10, "{case}");
            if partitioned {
                // `m`'s backlog takes the demand the partitions share, as GenStage's does (see
                // `PartitionDispatcher`): `a` gets only some of its evens.
                assert!(a_seen.len() < evens.len(), "{case}\n{report}");
                assert_eq!(a_seen, &evens[..a_seen.len()], "{case}");
            } else {
                // Both got the first 10; the broadcast kept the other 1000.
                assert_eq!(a_seen, &everything[..10], "{case}");
            }
            // What was not sent: a broadcast sent both the same 10.
            let sent = if partitioned { 10 + a_seen.len() } else { 10 };
            let kept = emitted - sent as u64;
            assert_eq!(lost(g_row, LossReason::Buffered), kept, "{case}\n{report}");
            assert_eq!(report.totals().lost, kept, "{case}\n{report}");
        }
        (Release::Cancel, true) => {
            assert_eq!(g_row.status, StageStatus::ShutDown, "{case}\n{report}");
            assert!(error.is_none(), "{case}: {error:?}\n{report}");
            assert_eq!(a_seen, evens, "{case}");
            assert_eq!(m_seen, &odds[..10], "{case}");
            // The vacant partition's backlog is lost with the producer's buffer (as
            // probe14.rs's a_shutdown_with_a_vacant_partition_ends_and_counts_its_events has it).
            let vacant = odds.len() as u64 - 10;
            assert_eq!(
                lost(g_row, LossReason::Buffered),
                vacant,
                "{case}\n{report}"
            );
            assert_eq!(report.totals().lost, vacant, "{case}\n{report}");
        }
        (Release::Cancel, false) => {
            assert_eq!(g_row.status, StageStatus::ShutDown, "{case}\n{report}");
            assert!(error.is_none(), "{case}: {error:?}\n{report}");
            assert_eq!(a_seen, everything, "{case}");
            assert_eq!(m_seen, &everything[..10], "{case}");
            assert_eq!(report.totals().lost, 0, "{case}\n{report}");
        }
        (Release::Resubscribe, _) => {
            assert_eq!(g_row.status, StageStatus::ShutDown, "{case}\n{report}");
            assert!(error.is_none(), "{case}: {error:?}\n{report}");
            let (to_a, to_m) = if partitioned {
                (evens, odds)
            } else {
                (everything.clone(), everything)
            };
            assert_eq!(a_seen, to_a, "{case}");
            assert_eq!(m_seen, to_m, "{case}");
            assert_eq!(report.totals().lost, 0, "{case}\n{report}");
            assert_eq!(report.totals().discarded, 0, "{case}\n{report}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_held_by_a_consumer_that_never_asks_is_released_by_the_handle() {
    for partitioned in [true, false] {
        for release in [Release::Cancel, Release::Resubscribe, Release::Deadline] {
            held_shutdown(partitioned, release).await;
        }
    }
}
