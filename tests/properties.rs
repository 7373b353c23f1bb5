//! Properties of the runtime over random configurations: demand limits, buffer sizes, producers that
//! emit fewer or more events than asked, 1 or 2 producers, an optional producer_consumer in the
//! middle, and 1 to 4 consumers.
//!
//! For every configuration: each event is handled exactly once, the events of one producer reach each
//! consumer in emission order, no stage receives more than it asked for (checked by each stage against
//! its own model of GenStage's demand algorithm, and by the report's `excess`), every batch holds
//! 1 to `max_demand - min_demand` events, and nothing is discarded unless a producer's buffer is
//! deliberately too small.
//!
//! A batch never mixes producers either, behind the producer_consumer too: it passes each input batch
//! on whole and handles one only while its consumers have demand, so its buffer never holds the
//! leftovers of two batches at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    BufferKeep, Consumer, Emit, Pipeline, PipelineError, Producer, ProducerConsumer,
    ProducerOptions, Report, StageResult, StageStatus, SubscribeOptions,
};
use proptest::prelude::*;

/// Buffer options: `size` events (`None`: unbounded), keeping `keep` on overflow.
fn buffer(size: Option<usize>, keep: BufferKeep) -> ProducerOptions {
    let options = ProducerOptions::for_producer().buffer_keep(keep);
    match size {
        Some(size) => options.buffer_size(size),
        None => options.unbounded(),
    }
}

/// An event: the index of the producer that emitted it, and its sequence number there.
type Event = (usize, u64);

/// The largest number of events a producer emits beyond what it was asked for, in one call.
const MAX_EXTRA: usize = 40;

/// How many events a [`Shaped`] producer emits for one `handle_demand(demand)`.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Exactly `demand`.
    Exact,
    /// `max(1, demand / d)`: the runtime must ask again for the rest.
    Fewer(usize),
    /// `demand + extra`: the excess is buffered.
    More(usize),
    /// A single event.
    One,
    /// Yields to the scheduler first, then exactly `demand`.
    Yield,
}

/// A finite producer of `(tag, 0..end)` whose batch sizes follow `shapes`, cyclically.
struct Shaped {
    tag: usize,
    next: u64,
    end: u64,
    shapes: Vec<Shape>,
    calls: usize,
    /// Emit the final events with `Emit::more`, and an empty `Emit::last` on the next call.
    last_separately: bool,
    options: ProducerOptions,
}

impl Producer for Shaped {
    type Output = Event;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<Event>> {
        let shape = self.shapes[self.calls % self.shapes.len()];
        self.calls += 1;
        let count = match shape {
            Shape::Exact => demand,
            Shape::Fewer(d) => (demand / d).max(1),
            Shape::More(extra) => demand + extra,
            Shape::One => 1,
            Shape::Yield => {
                tokio::task::yield_now().await;
                demand
            }
        };
        let stop = self.end.min(self.next + count as u64);
        let events: Vec<Event> = (self.next..stop).map(|seq| (self.tag, seq)).collect();
        self.next = stop;
        let last = stop == self.end && (!self.last_separately || events.is_empty());
        Ok(Emit { events, last })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }
}

/// A stage's own model of one subscription's demand (GenStage's algorithm): what it has asked for and
/// not yet received.
struct Model {
    max: usize,
    min: usize,
    outstanding: usize,
}

impl Model {
    fn new((max, min): (usize, usize)) -> Self {
        Model {
            max,
            min,
            outstanding: max,
        }
    }

    /// Accounts one batch; an error when the batch breaks the protocol.
    fn on_batch(&mut self, len: usize) -> Result<(), String> {
        if len == 0 || len > self.max - self.min {
            return Err(format!(
                "batch of {len} events; batches hold 1 to max_demand - min_demand = {} events",
                self.max - self.min
            ));
        }
        if len > self.outstanding {
            return Err(format!(
                "received {len} events with only {} asked for",
                self.outstanding
            ));
        }
        self.outstanding -= len;
        if self.outstanding <= self.min {
            self.outstanding = self.max;
        }
        Ok(())
    }
}

/// Checks each batch against the demand models of the stage's subscriptions, keyed by the producer
/// the batch comes from (or a single key when the stage has one subscription).
struct Checker {
    models: HashMap<usize, Model>,
    by_tag: bool,
}

impl Checker {
    fn check(&mut self, events: &[Event]) -> StageResult<()> {
        let tag = events.first().map_or(0, |e| e.0);
        if events.iter().any(|e| e.0 != tag) {
            return Err("one batch mixes events of two producers".into());
        }
        let key = if self.by_tag { tag } else { 0 };
        let model = self
            .models
            .get_mut(&key)
            .ok_or_else(|| format!("events from unknown subscription {key}"))?;
        model.on_batch(events.len())?;
        Ok(())
    }
}

/// Passes events through, checking its input.
struct Forward {
    checker: Checker,
    options: ProducerOptions,
}

impl ProducerConsumer for Forward {
    type Input = Event;
    type Output = Event;
    async fn handle_events(&mut self, events: Vec<Event>) -> StageResult<Vec<Event>> {
        self.checker.check(&events)?;
        Ok(events)
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }
}

/// Records every event, checking each batch.
struct Collect {
    checker: Checker,
    log: Arc<Mutex<Vec<Event>>>,
}

impl Consumer for Collect {
    type Input = Event;
    async fn handle_events(&mut self, events: Vec<Event>) -> StageResult<()> {
        self.checker.check(&events)?;
        self.log.lock().unwrap().extend_from_slice(&events);
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct ProducerCase {
    events: u64,
    shapes: Vec<Shape>,
    last_separately: bool,
    /// `None` is unbounded.
    buffer_size: Option<usize>,
    keep: BufferKeep,
}

#[derive(Debug, Clone)]
struct Case {
    producers: Vec<ProducerCase>,
    /// The producer_consumer's upstream `(max_demand, min_demand)` and its buffer size.
    middle: Option<((usize, usize), Option<usize>)>,
    /// Each consumer's `(max_demand, min_demand)`.
    consumers: Vec<(usize, usize)>,
    multi_thread: bool,
}

fn limits() -> impl Strategy<Value = (usize, usize)> {
    (1usize..=48).prop_flat_map(|max| (Just(max), 0..max))
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Exact),
        (2usize..=4).prop_map(Shape::Fewer),
        (1usize..=MAX_EXTRA).prop_map(Shape::More),
        Just(Shape::One),
        Just(Shape::Yield),
    ]
}

fn keep() -> impl Strategy<Value = BufferKeep> {
    prop_oneof![Just(BufferKeep::First), Just(BufferKeep::Last)]
}

/// A producer whose buffer is `buffer` (a strategy for its size).
fn producer_case(
    buffer: impl Strategy<Value = Option<usize>>,
) -> impl Strategy<Value = ProducerCase> {
    (
        0u64..=1500,
        prop::collection::vec(shape(), 1..6),
        any::<bool>(),
        buffer,
        keep(),
    )
        .prop_map(
            |(events, shapes, last_separately, buffer_size, keep)| ProducerCase {
                events,
                shapes,
                last_separately,
                buffer_size,
                keep,
            },
        )
}

fn case(buffer: impl Strategy<Value = Option<usize>>) -> impl Strategy<Value = Case> {
    let middle = prop::option::of(limits().prop_flat_map(|(max, min)| {
        // It handles a batch only while its consumers have demand, so at most `batch - 1` of its
        // output wait in its buffer: a buffer of `batch` or more never overflows.
        let batch = max - min;
        (Just((max, min)), prop::option::of(batch..batch + 20))
    }));
    (
        prop::collection::vec(producer_case(buffer), 1..=2),
        middle,
        prop::collection::vec(limits(), 1..=4),
        any::<bool>(),
    )
        .prop_map(|(producers, middle, consumers, multi_thread)| Case {
            producers,
            middle,
            consumers,
            multi_thread,
        })
}

/// Buffers that hold any one call's excess, so nothing may be discarded.
fn roomy_buffer() -> impl Strategy<Value = Option<usize>> {
    prop::option::of(MAX_EXTRA..MAX_EXTRA + 100)
}

/// Buffers that may be too small for an over-emitting producer.
fn small_buffer() -> impl Strategy<Value = Option<usize>> {
    (0usize..MAX_EXTRA).prop_map(Some)
}

/// What one run gave.
struct Outcome {
    report: Report,
    /// Per consumer, the events in the order handled.
    logs: Vec<Vec<Event>>,
}

fn run_case(case: &Case) -> Result<Outcome, PipelineError> {
    let logs: Vec<Arc<Mutex<Vec<Event>>>> = case
        .consumers
        .iter()
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();

    let mut pipeline = Pipeline::new();
    let producers: Vec<_> = case
        .producers
        .iter()
        .enumerate()
        .map(|(tag, p)| {
            let options = buffer(p.buffer_size, p.keep);
            pipeline.add_producer_named(
                format!("producer{tag}"),
                Shaped {
                    tag,
                    next: 0,
                    end: p.events,
                    shapes: p.shapes.clone(),
                    calls: 0,
                    last_separately: p.last_separately,
                    options,
                },
            )
        })
        .collect();
    let consumers: Vec<_> = case
        .consumers
        .iter()
        .enumerate()
        .map(|(i, &lim)| {
            // Behind a producer_consumer a consumer has one subscription; otherwise one per producer.
            let keys = if case.middle.is_some() {
                1
            } else {
                case.producers.len()
            };
            let checker = Checker {
                models: (0..keys).map(|k| (k, Model::new(lim))).collect(),
                by_tag: case.middle.is_none(),
            };
            pipeline.add_consumer_named(
                format!("consumer{i}"),
                Collect {
                    checker,
                    log: logs[i].clone(),
                },
            )
        })
        .collect();
    let demand =
        |(max, min): (usize, usize)| SubscribeOptions::new().max_demand(max).min_demand(min);

    match case.middle {
        Some((lim, buffer_size)) => {
            let checker = Checker {
                models: (0..case.producers.len())
                    .map(|k| (k, Model::new(lim)))
                    .collect(),
                by_tag: true,
            };
            let options = buffer(buffer_size, BufferKeep::Last);
            let middle =
                pipeline.add_producer_consumer_named("middle", Forward { checker, options });
            for producer in &producers {
                pipeline.subscribe_with(producer, &middle, demand(lim));
            }
            for (consumer, &lim) in consumers.iter().zip(&case.consumers) {
                pipeline.subscribe_with(&middle, consumer, demand(lim));
            }
        }
        None => {
            for producer in &producers {
                for (consumer, &lim) in consumers.iter().zip(&case.consumers) {
                    pipeline.subscribe_with(producer, consumer, demand(lim));
                }
            }
        }
    }

    let runtime = if case.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .unwrap();
    let report = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), pipeline.run()).await })
        .expect("pipeline did not finish within 20 s")?;
    let logs = logs
        .iter()
        .map(|log| std::mem::take(&mut *log.lock().unwrap()))
        .collect();
    Ok(Outcome { report, logs })
}

/// Checks what holds whatever the buffers: order per producer/consumer pair, no duplicates, no
/// excess, every stage finished. Returns every event handled, sorted.
fn check_common(case: &Case, outcome: &Outcome) -> Vec<Event> {
    for (i, log) in outcome.logs.iter().enumerate() {
        let mut last: HashMap<usize, u64> = HashMap::new();
        for &(tag, seq) in log {
            if let Some(&prev) = last.get(&tag) {
                assert!(
                    seq > prev,
                    "consumer{i} received ({tag}, {seq}) after ({tag}, {prev})"
                );
            }
            last.insert(tag, seq);
        }
        let stage = outcome.report.stage(&format!("consumer{i}")).unwrap();
        assert_eq!(stage.events_in, log.len() as u64, "consumer{i} events_in");
    }
    for stage in &outcome.report.stages {
        assert_eq!(stage.excess, 0, "{} received events in excess", stage.name);
        assert_eq!(stage.status, StageStatus::Finished, "{}", stage.name);
    }
    let mut all: Vec<Event> = outcome.logs.concat();
    all.sort_unstable();
    let unique = all.len();
    let mut deduped = all.clone();
    deduped.dedup();
    assert_eq!(deduped.len(), unique, "some event was handled twice");
    if case.middle.is_some() {
        let middle = outcome.report.stage("middle").unwrap();
        assert_eq!(middle.discarded, 0, "the middle stage discarded events");
        assert_eq!(middle.events_in, middle.events_out);
        assert_eq!(middle.events_out, all.len() as u64);
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Buffers big enough for any one call's excess: every event is handled exactly once.
    #[test]
    fn every_event_handled_exactly_once_in_order(case in case(roomy_buffer())) {
        let outcome = run_case(&case).unwrap_or_else(|error| panic!("{error}"));
        let all = check_common(&case, &outcome);
        let expected: Vec<Event> = case
            .producers
            .iter()
            .enumerate()
            .flat_map(|(tag, p)| (0..p.events).map(move |seq| (tag, seq)))
            .collect();
        prop_assert_eq!(all, expected);
        for (tag, p) in case.producers.iter().enumerate() {
            let stage = outcome.report.stage(&format!("producer{tag}")).unwrap();
            prop_assert_eq!((stage.events_out, stage.discarded), (p.events, 0));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Buffers that may overflow: what is handled plus what is discarded is what was emitted, and the
    /// rest of the guarantees hold.
    #[test]
    fn overflow_is_counted_as_discarded(case in case(small_buffer())) {
        let outcome = run_case(&case).unwrap_or_else(|error| panic!("{error}"));
        let all = check_common(&case, &outcome);
        for (tag, p) in case.producers.iter().enumerate() {
            let stage = outcome.report.stage(&format!("producer{tag}")).unwrap();
            let handled = all.iter().filter(|e| e.0 == tag).count() as u64;
            prop_assert_eq!(stage.events_out, handled, "producer{} events_out", tag);
            prop_assert_eq!(stage.events_out + stage.discarded, p.events, "producer{}", tag);
            prop_assert!(all.iter().filter(|e| e.0 == tag).all(|e| e.1 < p.events));
        }
    }
}
