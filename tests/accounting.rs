//! Every ending accounts for every event: the report a failed run carries, the losses and their
//! reasons, and the sibling consumer that must never stall when another one leaves.
//!
//! Runs are wrapped in a timeout that guards against hangs; it is not a timing assertion.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use genstage::{
    from_iter, Consumer, Emit, LossReason, Pipeline, PipelineError, Producer, ProducerConsumer,
    Report, StageResult, StageStatus, SubscribeOptions,
};

mod run_reports;

use run_reports::{guard, lost, report_of, stage};

type Seen = Arc<Mutex<Vec<u64>>>;

fn demand(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

/// Emits `0..end`, between 1 and `cap` events per call (at random): fewer than asked, which the
/// protocol allows.
struct Stingy {
    next: u64,
    end: u64,
    cap: usize,
    rng: Rng,
}

impl Producer for Stingy {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let n = 1 + self.rng.below(demand.min(self.cap) as u64);
        let stop = self.end.min(self.next + n);
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
}

/// Records what it handles; returns `Err` (or panics) on batch number `fail_at` (from 1).
struct Sink {
    seen: Seen,
    fail_at: Option<usize>,
    panic: bool,
    batches: usize,
    /// Given a permit just before it fails.
    failing: Option<Arc<Semaphore>>,
    /// Its first batch waits until this semaphore has this many permits.
    waits_for: Option<(Arc<Semaphore>, u32)>,
}

impl Sink {
    fn new(seen: &Seen) -> Self {
        Sink {
            seen: seen.clone(),
            fail_at: None,
            panic: false,
            batches: 0,
            failing: None,
            waits_for: None,
        }
    }

    fn failing_at(seen: &Seen, batch: usize) -> Self {
        Sink {
            fail_at: Some(batch),
            ..Sink::new(seen)
        }
    }
}

impl Consumer for Sink {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches += 1;
        if let Some((gate, permits)) = self.waits_for.take() {
            // Given back at once: every sink waiting on the gate passes once it is open.
            drop(gate.acquire_many(permits).await?);
        }
        if Some(self.batches) == self.fail_at {
            if let Some(failing) = &self.failing {
                failing.add_permits(1);
            }
            if self.panic {
                panic!("sink panicked at batch {}", self.batches);
            }
            return Err(format!("sink failed at batch {}", self.batches).into());
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
}

/// Checks what every run must satisfy: the totals balance, no event was handled twice, and each
/// consumer's count in the report is what it recorded.
fn assert_accounted(report: &Report, consumers: &[(&str, &Seen)]) {
    let totals = report.totals();
    assert!(totals.balanced(), "unbalanced {totals:?} in {report:#?}");
    // Every subscription too: what its producer sent is handled or lost by its consumer.
    assert!(!report.edges.is_empty());
    assert_eq!(report.unbalanced_edges().count(), 0, "{report}");
    let mut all = HashSet::new();
    for &(name, seen) in consumers {
        let seen = seen.lock().unwrap();
        for &event in seen.iter() {
            assert!(all.insert(event), "event {event} handled twice");
        }
        assert_eq!(
            seen.len() as u64,
            stage(report, name).events_in,
            "{name}: handled events vs the report"
        );
    }
}

/// A tiny deterministic generator, so that a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One producer emitting fewer events than asked feeds consumers with the given demands; consumer 1
/// fails at batch `fail_at`. Consumer 0 must handle everything that did not go to consumer 1, and
/// the run must end.
async fn sibling_run(
    events: u64,
    cap: usize,
    demands: &[(usize, usize)],
    fail_at: usize,
    seed: u64,
) {
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named(
        "producer",
        Stingy {
            next: 0,
            end: events,
            cap,
            rng: Rng(seed | 1),
        },
    );
    let seen: Vec<Seen> = demands.iter().map(|_| Seen::default()).collect();
    for (i, &(max, min)) in demands.iter().enumerate() {
        let sink = if i == 1 {
            Sink::failing_at(&seen[i], fail_at)
        } else {
            Sink::new(&seen[i])
        };
        let consumer = pipeline.add_consumer_named(format!("c{i}"), sink);
        pipeline.subscribe_with(&producer, &consumer, demand(max, min));
    }
    let (report, error) = report_of(guard(pipeline.run()).await);
    // c1 may end before its failing batch when the others take every event.
    if let Some(error) = error {
        assert_eq!(error.stage(), "c1");
    }
    assert_eq!(stage(&report, "producer").status, StageStatus::Finished);
    assert_eq!(stage(&report, "producer").emitted, events);
    let names: Vec<String> = (0..demands.len()).map(|i| format!("c{i}")).collect();
    let consumers: Vec<(&str, &Seen)> = names.iter().map(String::as_str).zip(&seen).collect();
    assert_accounted(&report, &consumers);
    // Only what was in c1's hands is lost; everyone else's events were handled.
    let c1 = stage(&report, "c1");
    assert_eq!(
        report.totals().lost,
        c1.lost + stage(&report, "producer").lost
    );
    assert_eq!(
        report.totals().handled + report.totals().lost,
        events,
        "{report:#?}"
    );
}

/// The stall of the issue, with its numbers: C0 (242/5) and C1 (286/105), a producer emitting 1 to
/// 30 events per call, C1 failing at its 25th batch; then max_demand 1000 / min_demand 0. Before
/// the fix, C0 stopped for good in some of every 20 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_consumer_never_stalls_its_sibling() {
    for seed in 0..20 {
        sibling_run(200_000, 30, &[(242, 5), (286, 105)], 25, seed).await;
    }
    for seed in 0..20 {
        sibling_run(200_000, 30, &[(1000, 0), (1000, 0)], 25, seed).await;
    }
}

/// The same with random consumer counts, demands, producer shortfalls and failure points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_leaving_while_producers_emit_fewer_than_asked() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..60 {
        let seed = rng.next();
        let mut r = Rng(seed | 1);
        let consumers = 2 + r.below(3) as usize;
        let demands: Vec<(usize, usize)> = (0..consumers)
            .map(|_| {
                let max = 1 + r.below(400) as usize;
                (max, r.below(max as u64) as usize)
            })
            .collect();
        let cap = 1 + r.below(60) as usize;
        let fail_at = 1 + r.below(40) as usize;
        let run = sibling_run(20_000, cap, &demands, fail_at, seed);
        if tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .is_err()
        {
            panic!("seed {seed:#x} hung: demands {demands:?}, cap {cap}, fail_at {fail_at}");
        }
    }
}

/// `[C; 3]` where C0 fails: the error carries every stage's counts, C0's losses with their reasons,
/// and the survivors handle the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_reports_every_stage_and_every_lost_event() {
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    // C1 and C2 hold their first batch until C0 has failed, so that they cannot take every event
    // before C0 gets its third batch, however the three are scheduled (C0 once finished with two
    // batches handled in CI, under load).
    let failed = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..20_000u64));
    for (i, seen) in seen.iter().enumerate() {
        let sink = if i == 0 {
            Sink {
                failing: Some(failed.clone()),
                ..Sink::failing_at(seen, 3)
            }
        } else {
            Sink {
                waits_for: Some((failed.clone(), 1)),
                ..Sink::new(seen)
            }
        };
        let consumer = pipeline.add_consumer_named(format!("C[{i}]"), sink);
        pipeline.subscribe_with(&numbers, &consumer, demand(100, 50));
    }
    let (report, error) = report_of(guard(pipeline.run()).await);
    let error = error.expect("C[0] failed");
    assert!(
        matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "C[0]"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stage `C[0]` failed: sink failed at batch 3"
    );
    // What a `main` returning the error prints: the variant, the message and the report's table,
    // not every field of every stage on one line.
    assert_eq!(
        format!("{error:?}"),
        format!("StageFailed: stage `C[0]` failed: sink failed at batch 3\n\n{report}")
    );
    let failures: Vec<&str> = report.failures().map(|s| s.name.as_str()).collect();
    assert_eq!(failures, ["C[0]"]);
    let c0 = stage(&report, "C[0]");
    assert_eq!(c0.events_in, 100, "two batches of 50 handled");
    assert_eq!(lost(c0, LossReason::FailedBatch), 50);
    assert_eq!(
        c0.status,
        StageStatus::Failed("sink failed at batch 3".into())
    );
    for survivor in ["C[1]", "C[2]"] {
        assert_eq!(stage(&report, survivor).status, StageStatus::Finished);
    }
    assert_eq!(stage(&report, "numbers").status, StageStatus::Finished);
    assert_accounted(
        &report,
        &[("C[0]", &seen[0]), ("C[1]", &seen[1]), ("C[2]", &seen[2])],
    );
    let totals = report.totals();
    assert_eq!(totals.emitted, 20_000);
    assert_eq!(totals.handled + totals.lost, 20_000);
    assert_eq!(totals.lost, c0.lost + stage(&report, "numbers").lost);
}

/// A panicking stage keeps its counts in the report; so does every stage when two fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicked_stages_keep_their_counts_and_every_failure_is_reported() {
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    // c2 holds its first batch until c0 and c1 have failed, so that they, not c2, take the events
    // they fail on, however the three are scheduled.
    let failed = Arc::new(Semaphore::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..10_000u64));
    for (i, seen) in seen.iter().enumerate() {
        let sink = match i {
            0 => Sink {
                panic: true,
                failing: Some(failed.clone()),
                ..Sink::failing_at(seen, 4)
            },
            1 => Sink {
                failing: Some(failed.clone()),
                ..Sink::failing_at(seen, 2)
            },
            _ => Sink {
                waits_for: Some((failed.clone(), 2)),
                ..Sink::new(seen)
            },
        };
        let consumer = pipeline.add_consumer_named(format!("c{i}"), sink);
        pipeline.subscribe_with(&numbers, &consumer, demand(10, 0));
    }
    let (report, error) = report_of(guard(pipeline.run()).await);
    assert!(error.is_some());
    let c0 = stage(&report, "c0");
    assert_eq!(
        c0.status,
        StageStatus::Panicked("sink panicked at batch 4".into())
    );
    assert_eq!((c0.events_in, lost(c0, LossReason::FailedBatch)), (30, 10));
    let c1 = stage(&report, "c1");
    assert_eq!((c1.events_in, lost(c1, LossReason::FailedBatch)), (10, 10));
    let mut failures: Vec<&str> = report.failures().map(|s| s.name.as_str()).collect();
    failures.sort_unstable();
    assert_eq!(failures, ["c0", "c1"]);
    assert_accounted(
        &report,
        &[("c0", &seen[0]), ("c1", &seen[1]), ("c2", &seen[2])],
    );
}

/// Passes events on; fails at batch `fail_at`.
struct Middle {
    batches: usize,
    fail_at: usize,
}

impl ProducerConsumer for Middle {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        self.batches += 1;
        if self.batches == self.fail_at {
            return Err("middle failed".into());
        }
        Ok(events)
    }
}

/// A branch fails while the other runs on: the events in flight in the failed branch (in the
/// middle stage's mailbox, sent to it after it stopped, in its buffer) are counted as lost, and the
/// identity holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_flight_in_a_failed_branch_are_counted() {
    let (healthy, behind) = (Seen::default(), Seen::default());
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..100_000u64));
    let middle = pipeline.add_producer_consumer_named(
        "middle",
        // At its second batch: the dispatcher splits the numbers by demand, and under load the
        // healthy branch may take all but the 1000 of the middle stage's first ask (two batches
        // of 500), which it is sure to get since both first asks are in before any event flows.
        Middle {
            batches: 0,
            fail_at: 1,
        },
    );
    let behind_sink = pipeline.add_consumer_named("behind", Sink::new(&behind));
    let healthy_sink = pipeline.add_consumer_named("healthy", Sink::new(&healthy));
    pipeline.subscribe(&numbers, &middle);
    pipeline.subscribe(&middle, &behind_sink);
    pipeline.subscribe(&numbers, &healthy_sink);
    let (report, error) = report_of(guard(pipeline.run()).await);
    assert_eq!(error.expect("middle failed").stage(), "middle");
    let middle = stage(&report, "middle");
    assert_eq!(lost(middle, LossReason::FailedBatch), 500);
    assert_eq!(
        stage(&report, "behind").status,
        StageStatus::Cancelled {
            cause: Some("middle".into())
        }
    );
    assert_accounted(&report, &[("healthy", &healthy), ("behind", &behind)]);
    // Every number went to the healthy branch or into the middle stage's hands (handled, failed
    // on, or not handled when it stopped), or was sent to it after it had stopped.
    let middle_input_lost =
        lost(middle, LossReason::FailedBatch) + lost(middle, LossReason::Unhandled);
    assert_eq!(
        stage(&report, "healthy").events_in
            + middle.events_in
            + middle_input_lost
            + stage(&report, "numbers").lost,
        100_000
    );
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

/// Log lines, written by a `tracing` subscriber.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn contains(&self, text: &str) -> bool {
        String::from_utf8_lossy(&self.0.lock().unwrap()).contains(text)
    }
}

/// A stage that fails in one branch while the others run on is visible at once: a `tracing` error
/// names it while the run goes on (here it never ends: the producer is endless).
#[test]
fn a_failure_is_logged_while_the_run_goes_on() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    // One thread, so that the stages' tasks log through the subscriber set on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Endless(0));
        for i in 0..3 {
            let seen = Seen::default();
            let sink = if i == 0 {
                Sink::failing_at(&seen, 2)
            } else {
                Sink::new(&seen)
            };
            let consumer = pipeline.add_consumer_named(format!("C[{i}]"), sink);
            pipeline.subscribe(&numbers, &consumer);
        }
        let run = tokio::spawn(pipeline.run());
        guard(async {
            while !logs.contains("stage C[0] failed: sink failed at batch 2") {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(!run.is_finished(), "the other branches run on");
        run.abort();
    });
}

/// Panics when dropped: a guard held across an `.await` in a callback.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("guard dropped");
        }
    }
}

/// Emits `0..10` on its first call, then waits for ever holding a [`PanicOnDrop`].
struct GuardedWait {
    calls: usize,
}

impl Producer for GuardedWait {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        self.calls += 1;
        if self.calls == 1 {
            return Ok(Emit::more((0..10).collect()));
        }
        let _guard = PanicOnDrop;
        std::future::pending::<()>().await;
        Ok(Emit::more(Vec::new()))
    }
}

/// A callback dropped because its stage must stop (its consumer failed) panics as it is dropped:
/// the stage is reported as panicked with its counts, and the report still balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_a_callback_is_dropped_keeps_the_stage_counts() {
    let seen = Seen::default();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("p", GuardedWait { calls: 0 });
    let sink = pipeline.add_consumer_named("c", Sink::failing_at(&seen, 2));
    pipeline.subscribe_with(&producer, &sink, demand(10, 5));
    let (report, error) = report_of(guard(pipeline.run()).await);
    assert_eq!(error.expect("c failed").stage(), "c");
    let p = stage(&report, "p");
    assert_eq!(p.status, StageStatus::Panicked("guard dropped".into()));
    assert_eq!((p.emitted, p.events_out), (10, 10));
    let c = stage(&report, "c");
    assert_eq!((c.events_in, lost(c, LossReason::FailedBatch)), (5, 5));
    assert_accounted(&report, &[("c", &seen)]);
}
