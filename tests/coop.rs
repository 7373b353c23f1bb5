//! Cooperative scheduling: a stage in steady flow lets the other tasks of its worker run.
//!
//! tokio grants a task a budget of 128 units each time it schedules it, and its channels spend one
//! per receive; a stage spends one per 8 messages it takes or rounds of its producer loop, and yields
//! to the runtime once the budget is spent. Each test runs on a current-thread runtime, where nothing
//! else runs while a stage is being polled: the stage spawns a task that sets a flag, and counts how
//! much work it does before it sees the flag set. Without the budget, the stage would do all the work
//! it has (100,000 calls, 3,000 batches) before the task could run. An abort may stop a stage where
//! it yielded for its budget: its report still counts in only what its callback handled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use genstage::{
    from_iter, Consumer, Emit, Pipeline, Producer, ProducerConsumer, StageResult, SubscribeOptions,
};

/// How much work a stage may do before another task runs: tokio's budget of 128 units per poll, a
/// unit per 8 messages, with a margin, and far below what the stages below would do in one poll
/// without a budget.
const WITHIN: u64 = 2_000;

/// A flag set by a task of its own, spawned the first time the flag is looked at.
#[derive(Default)]
struct Flag {
    spawned: bool,
    set: Arc<AtomicBool>,
}

impl Flag {
    /// Whether the task has run; spawns it on the first look.
    fn is_set(&mut self) -> bool {
        if !self.spawned {
            self.spawned = true;
            let set = self.set.clone();
            tokio::spawn(async move { set.store(true, Ordering::SeqCst) });
        }
        self.set.load(Ordering::SeqCst)
    }
}

/// Emits one event per call, however many are asked, until it sees its flag set; then ends.
struct Trickle {
    flag: Flag,
    calls: Arc<AtomicU64>,
}

impl Producer for Trickle {
    type Output = u64;

    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(if self.flag.is_set() {
            Emit::last(vec![calls])
        } else {
            Emit::more(vec![calls])
        })
    }
}

/// Counts its events.
struct Count(Arc<AtomicU64>);

impl Consumer for Count {
    type Input = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_producer_asked_for_more_than_it_emits_per_call_lets_other_tasks_run() {
    let calls = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer(Trickle {
        flag: Flag::default(),
        calls: calls.clone(),
    });
    let consumer = pipeline.add_consumer(Count(received.clone()));
    // Asked for 100,000 events at once and emitting one per call, the producer has 100,000 calls to
    // make before its demand runs out.
    pipeline.subscribe_with(
        &producer,
        &consumer,
        SubscribeOptions::new().max_demand(100_000),
    );
    pipeline.run().await.expect("the pipeline runs");
    let calls = calls.load(Ordering::SeqCst);
    assert!(
        calls <= WITHIN,
        "the producer made {calls} calls before another task could run"
    );
    assert_eq!(received.load(Ordering::SeqCst), calls);
}

/// Counts its batches, and notes the first in which it sees its flag set.
struct Tally {
    flag: Flag,
    batches: u64,
    seen_at: Arc<AtomicU64>,
}

impl Consumer for Tally {
    type Input = u64;

    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        self.batches += 1;
        if self.flag.is_set() {
            self.seen_at.fetch_min(self.batches, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_consumer_whose_mailbox_is_full_lets_other_tasks_run() {
    const PRODUCERS: u64 = 3_000;
    let seen_at = Arc::new(AtomicU64::new(u64::MAX));
    let mut pipeline = Pipeline::new();
    let consumer = pipeline.add_consumer(Tally {
        flag: Flag::default(),
        batches: 0,
        seen_at: seen_at.clone(),
    });
    // Each producer runs once, sending its one event before the consumer is next scheduled, so the
    // consumer finds 3,000 batches in its mailbox.
    for n in 0..PRODUCERS {
        let producer = pipeline.add_producer(from_iter([n]));
        pipeline.subscribe(&producer, &consumer);
    }
    let report = pipeline.run().await.expect("the pipeline runs");
    assert_eq!(report.stage("Tally").map(|s| s.events_in), Some(PRODUCERS));
    let seen_at = seen_at.load(Ordering::SeqCst);
    assert!(
        seen_at <= WITHIN,
        "the consumer handled {} batches before another task could run",
        if seen_at == u64::MAX {
            PRODUCERS
        } else {
            seen_at
        }
    );
}

/// Counts the events it handles, and wakes the test at its first batch.
struct Wakes {
    handled: Arc<AtomicU64>,
    first: Arc<tokio::sync::Notify>,
}

impl Wakes {
    /// Counts a batch of `len` events handled; wakes the test if it is the first.
    fn count(&self, len: usize) {
        if self.handled.fetch_add(len as u64, Ordering::SeqCst) == 0 {
            self.first.notify_one();
        }
    }
}

impl Consumer for Wakes {
    type Input = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.count(events.len());
        Ok(())
    }
}

/// A consumer handed 10,000 events one at a time spends its budget and yields to the runtime between
/// taking a batch from its input and handing it to its callback; the abort, asked for as soon as
/// it handled its first batch, stops it there. The batch it had taken is lost, not handled: its
/// report counts in exactly what its callback handled (found by the chaos test, seed 21499: the
/// batch was counted in, and not lost).
#[tokio::test(flavor = "current_thread")]
async fn an_abort_while_a_consumer_yields_for_its_budget_counts_in_only_what_it_handled() {
    let handled = Arc::new(AtomicU64::new(0));
    let first = Arc::new(tokio::sync::Notify::new());
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer(from_iter(0..10_000u64));
    let consumer = pipeline.add_consumer(Wakes {
        handled: handled.clone(),
        first: first.clone(),
    });
    pipeline.subscribe_with(
        &producer,
        &consumer,
        SubscribeOptions::new().max_demand(10_000).min_demand(9_999),
    );
    let running = pipeline.start();
    first.notified().await;
    let report = running.abort().await.expect("an abort is not a failure");
    let handled = handled.load(Ordering::SeqCst);
    let stage = report.stage("Wakes").expect("in the report");
    assert!((1..10_000).contains(&handled), "stopped midway: {handled}");
    assert_eq!(stage.status, genstage::StageStatus::Aborted);
    assert_eq!(stage.events_in, handled, "{report:?}");
    assert!(report.balanced(), "{report:?}");
}

/// Passes its events on, counting them as [`Wakes`] does.
struct PassWakes(Wakes);

impl ProducerConsumer for PassWakes {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        self.0.count(events.len());
        Ok(events)
    }
}

/// The same for a producer_consumer.
#[tokio::test(flavor = "current_thread")]
async fn an_abort_while_a_producer_consumer_yields_for_its_budget_counts_in_only_what_it_handled() {
    let handled = Arc::new(AtomicU64::new(0));
    let first = Arc::new(tokio::sync::Notify::new());
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer(from_iter(0..10_000u64));
    let middle = pipeline.add_producer_consumer(PassWakes(Wakes {
        handled: handled.clone(),
        first: first.clone(),
    }));
    let consumer = pipeline.add_consumer(Count(Arc::default()));
    pipeline.subscribe_with(
        &producer,
        &middle,
        SubscribeOptions::new().max_demand(10_000).min_demand(9_999),
    );
    pipeline.subscribe_with(
        &middle,
        &consumer,
        SubscribeOptions::new().max_demand(10_000),
    );
    let running = pipeline.start();
    first.notified().await;
    let report = running.abort().await.expect("an abort is not a failure");
    let handled = handled.load(Ordering::SeqCst);
    let stage = report.stage("PassWakes").expect("in the report");
    assert!((1..10_000).contains(&handled), "stopped midway: {handled}");
    assert_eq!(stage.status, genstage::StageStatus::Aborted);
    assert_eq!(stage.events_in, handled, "{report:?}");
    assert!(report.balanced(), "{report:?}");
}
