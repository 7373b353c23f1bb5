//! Back-pressure end to end: a slow consumer bounds what its producers emit.
//!
//! No test waits for time to pass. The consumer is gated by a semaphore that the test opens one batch
//! at a time, and the bounds are checked where they must hold at every instant: inside the producer's
//! `handle_demand`, inside the consumer's `handle_events`, and by the test between batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    Consumer, Emit, Pipeline, PipelineError, Producer, ProducerConsumer, ProducerOptions, Report,
    StageResult, StageStatus, SubscribeOptions,
};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Counts shared by the stages of one test.
struct Meter {
    /// Events emitted by the producer (counted before they leave it).
    produced: AtomicU64,
    /// Events the consumer has finished handling (counted before its next ask is sent).
    consumed: AtomicU64,
    /// How far production may run ahead of consumption: the demand and buffers in between.
    slack: u64,
    /// Every `handle_demand` argument, in order.
    demands: Mutex<Vec<usize>>,
}

impl Meter {
    fn new(slack: u64) -> Arc<Self> {
        Arc::new(Meter {
            produced: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            slack,
            demands: Mutex::new(Vec::new()),
        })
    }

    /// The back-pressure bound: produced <= consumed + slack.
    fn check(&self, at: &str) -> Result<(), String> {
        let consumed = self.consumed.load(Ordering::SeqCst);
        let produced = self.produced.load(Ordering::SeqCst);
        if produced > consumed + self.slack {
            return Err(format!(
                "{at}: produced {produced} events with {consumed} consumed and slack {}",
                self.slack
            ));
        }
        Ok(())
    }

    fn demands(&self) -> Vec<usize> {
        self.demands.lock().unwrap().clone()
    }
}

/// Emits `next..` in order, `extra` events more than asked each time, up to `end`.
struct Counter {
    next: u64,
    end: u64,
    extra: usize,
    meter: Arc<Meter>,
    options: ProducerOptions,
}

impl Producer for Counter {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.meter.demands.lock().unwrap().push(demand);
        let stop = self.end.min(self.next + (demand + self.extra) as u64);
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        self.meter
            .produced
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        self.meter.check("producer")?;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }
}

/// Passes events through unchanged.
struct Forward;

impl ProducerConsumer for Forward {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// Handles one batch per permit of `gate`, checking order and the bound, and acknowledges each batch.
struct Gated {
    gate: Arc<Semaphore>,
    meter: Arc<Meter>,
    next: u64,
    batches: Vec<usize>,
    acks: mpsc::UnboundedSender<Vec<usize>>,
}

impl Consumer for Gated {
    type Input = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.gate.acquire().await?.forget();
        self.meter.check("consumer")?;
        for event in events.iter().copied() {
            if event != self.next {
                return Err(format!("expected event {}, got {event}", self.next).into());
            }
            self.next += 1;
        }
        self.meter
            .consumed
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        self.batches.push(events.len());
        let _ = self.acks.send(self.batches.clone());
        Ok(())
    }
}

/// Runs `pipeline`, opening the consumer's gate one batch at a time and checking the bound between
/// batches. Returns the report and the consumer's batch sizes.
async fn run_gated(
    pipeline: Pipeline,
    gate: Arc<Semaphore>,
    mut acks: mpsc::UnboundedReceiver<Vec<usize>>,
    meter: Arc<Meter>,
) -> (Report, Vec<usize>) {
    let run = tokio::spawn(pipeline.run());
    let driven = async {
        let mut batches = Vec::new();
        loop {
            gate.add_permits(1);
            // `None` once the consumer has ended and dropped its sender.
            let Some(seen) = acks.recv().await else {
                break;
            };
            meter.check("test").unwrap();
            batches = seen;
        }
        let report = run.await.expect("run task panicked");
        (report, batches)
    };
    let (report, batches) = tokio::time::timeout(Duration::from_secs(30), driven)
        .await
        .expect("pipeline did not finish within 30 s");
    (report.unwrap_or_else(|error| panic!("{error}")), batches)
}

fn gated_consumer(
    meter: &Arc<Meter>,
) -> (Gated, Arc<Semaphore>, mpsc::UnboundedReceiver<Vec<usize>>) {
    let gate = Arc::new(Semaphore::new(0));
    let (acks, rx) = mpsc::unbounded_channel();
    let consumer = Gated {
        gate: gate.clone(),
        meter: meter.clone(),
        next: 0,
        batches: Vec::new(),
        acks,
    };
    (consumer, gate, rx)
}

fn counter(meter: &Arc<Meter>, end: u64, extra: usize, buffer: usize) -> Counter {
    Counter {
        next: 0,
        end,
        extra,
        meter: meter.clone(),
        options: ProducerOptions::for_producer().buffer_size(buffer),
    }
}

fn demand(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

/// A producer that emits exactly what it is asked never runs more than `max_demand` ahead of a slow
/// consumer, and is asked for exactly `max_demand`, then `max_demand - min_demand` per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_bounds_an_exact_producer() {
    // max 10 / min 5: batches of 5; produced <= consumed + 10.
    let meter = Meter::new(10);
    let (consumer, gate, acks) = gated_consumer(&meter);
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("counter", counter(&meter, 100, 0, 0));
    let consumer = pipeline.add_consumer_named("gated", consumer);
    pipeline.subscribe_with(&producer, &consumer, demand(10, 5));

    let (report, batches) = run_gated(pipeline, gate, acks, meter.clone()).await;

    assert_eq!(batches, vec![5; 20]);
    // 10 up front, then 5 per batch until 100 have been asked for.
    let mut expected = vec![10];
    expected.extend([5; 18]);
    assert_eq!(meter.demands(), expected);
    assert_eq!(meter.produced.load(Ordering::SeqCst), 100);
    assert_eq!(meter.consumed.load(Ordering::SeqCst), 100);
    let counter = report.stage("counter").unwrap();
    assert_eq!((counter.events_out, counter.discarded), (100, 0));
    let gated = report.stage("gated").unwrap();
    assert_eq!((gated.events_in, gated.excess), (100, 0));
    assert!(report
        .stages
        .iter()
        .all(|s| s.status == StageStatus::Finished));
}

/// A producer that emits 3 more than asked keeps the excess in its buffer (size 3) and serves demand
/// from it first, so it runs at most `max_demand + 3` ahead and is asked only for the shortfall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_bounds_an_over_emitting_producer() {
    let meter = Meter::new(10 + 3);
    let (consumer, gate, acks) = gated_consumer(&meter);
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("counter", counter(&meter, 100, 3, 3));
    let consumer = pipeline.add_consumer_named("gated", consumer);
    pipeline.subscribe_with(&producer, &consumer, demand(10, 5));

    let (report, batches) = run_gated(pipeline, gate, acks, meter.clone()).await;

    assert_eq!(batches.iter().sum::<usize>(), 100);
    assert!(batches.iter().all(|&b| (1..=5).contains(&b)), "{batches:?}");
    // The first ask of 10 gets 13 events; every later ask of 5 is served 3 from the buffer and asks
    // the producer for the other 2, which again emits 3 more.
    let demands = meter.demands();
    assert_eq!(demands[0], 10);
    assert!(demands[1..].iter().all(|&d| d == 2), "{demands:?}");
    assert_eq!(meter.produced.load(Ordering::SeqCst), 100);
    let counter = report.stage("counter").unwrap();
    assert_eq!((counter.events_out, counter.discarded), (100, 0));
    assert_eq!(report.stage("gated").unwrap().excess, 0);
}

/// Through a producer_consumer the bound adds up the demand of both hops and the part of one
/// producer_consumer batch that may wait in its buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_bounds_production_through_a_producer_consumer() {
    // consumer max 10, producer_consumer max 20 / min 10 (batches of 10, at most 9 left over).
    let meter = Meter::new(10 + 20 + 9);
    let (consumer, gate, acks) = gated_consumer(&meter);
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("counter", counter(&meter, 200, 0, 0));
    let middle = pipeline.add_producer_consumer_named("forward", Forward);
    let consumer = pipeline.add_consumer_named("gated", consumer);
    pipeline.subscribe_with(&producer, &middle, demand(20, 10));
    pipeline.subscribe_with(&middle, &consumer, demand(10, 7));

    let (report, batches) = run_gated(pipeline, gate, acks, meter.clone()).await;

    assert_eq!(batches.iter().sum::<usize>(), 200);
    assert!(batches.iter().all(|&b| (1..=3).contains(&b)), "{batches:?}");
    assert_eq!(meter.produced.load(Ordering::SeqCst), 200);
    let forward = report.stage("forward").unwrap();
    assert_eq!(
        (forward.events_in, forward.events_out, forward.excess),
        (200, 200, 0)
    );
    assert_eq!(report.stage("gated").unwrap().excess, 0);
}

/// An endless producer that reports each `handle_demand` to the test.
struct Endless {
    next: u64,
    demands: mpsc::UnboundedSender<usize>,
}

impl Producer for Endless {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let _ = self.demands.send(demand);
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        Ok(Emit::more(events))
    }
}

/// Records the batches it handles and passes them on.
struct Postpone(Arc<Mutex<Vec<Vec<u64>>>>);

impl ProducerConsumer for Postpone {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        self.0.lock().unwrap().push(events.clone());
        Ok(events)
    }
}

/// Records its first batch, tells the test, and stays in `handle_events` until the test wakes it;
/// then fails, so the pipeline ends.
struct Sleeper {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    asleep: Option<oneshot::Sender<()>>,
    wake: Option<oneshot::Receiver<()>>,
}

impl Consumer for Sleeper {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches.lock().unwrap().push(events);
        if let Some(asleep) = self.asleep.take() {
            let _ = asleep.send(());
        }
        if let Some(wake) = self.wake.take() {
            let _ = wake.await;
        }
        Err("stopped by the test".into())
    }
}

/// GenStage's test 13: a producer_consumer (max 10 / min 8) whose consumer (max 10 / min 5) stops
/// asking handles exactly the 10 events its consumer asked for, in batches of 2, and then nothing: it
/// asked its producer for 2 more after each batch, and never again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_consumer_stops_when_its_consumer_stops_asking() {
    let (demands_tx, mut demands) = mpsc::unbounded_channel();
    let (asleep_tx, asleep) = oneshot::channel();
    let (wake, wake_rx) = oneshot::channel();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let slept = Arc::new(Mutex::new(Vec::new()));

    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named(
        "endless",
        Endless {
            next: 0,
            demands: demands_tx,
        },
    );
    let middle = pipeline.add_producer_consumer_named("postpone", Postpone(handled.clone()));
    let consumer = pipeline.add_consumer_named(
        "sleeper",
        Sleeper {
            batches: slept.clone(),
            asleep: Some(asleep_tx),
            wake: Some(wake_rx),
        },
    );
    pipeline.subscribe_with(&producer, &middle, demand(10, 8));
    pipeline.subscribe_with(&middle, &consumer, demand(10, 5));

    let test = async {
        let run = tokio::spawn(pipeline.run());
        // The producer_consumer asks for 10, then for 2 after each of its 5 batches.
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(demands.recv().await.expect("producer ended early"));
        }
        assert_eq!(seen, vec![10, 2, 2, 2, 2, 2]);
        asleep.await.expect("the consumer never handled a batch");
        let _ = wake.send(());
        let result = run.await.expect("run task panicked");
        match result {
            Err(PipelineError::StageFailed { stage, error, .. }) => {
                assert_eq!(stage, "sleeper");
                assert_eq!(error.to_string(), "stopped by the test");
            }
            other => panic!("expected the sleeper to fail, got {other:?}"),
        }
        // The producer task has ended: every demand it ever saw is in the channel.
        let mut later = Vec::new();
        while let Ok(demand) = demands.try_recv() {
            later.push(demand);
        }
        assert_eq!(later, Vec::<usize>::new(), "asked for more after stalling");
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("pipeline did not finish within 30 s");

    let expected: Vec<Vec<u64>> = (0..5).map(|i| vec![2 * i, 2 * i + 1]).collect();
    assert_eq!(*handled.lock().unwrap(), expected);
    assert_eq!(*slept.lock().unwrap(), vec![vec![0, 1]]);
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

/// Waits for `go`, then ends without emitting anything.
struct EndsOnSignal(Option<oneshot::Receiver<()>>);

impl Producer for EndsOnSignal {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        if let Some(go) = self.0.take() {
            go.await?;
        }
        Ok(Emit::last(Vec::new()))
    }
}

/// Emits exactly what it is asked, `0..`; its second call first waits for `go`, then reports to the
/// test that its events are on their way.
struct SecondCallWaits {
    next: u64,
    calls: usize,
    go: Option<oneshot::Receiver<()>>,
    sent: Option<oneshot::Sender<()>>,
}

impl Producer for SecondCallWaits {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.calls += 1;
        if self.calls == 2 {
            if let Some(go) = self.go.take() {
                go.await?;
            }
            if let Some(sent) = self.sent.take() {
                // On a current_thread runtime the events leave before the test runs again.
                let _ = sent.send(());
            }
        }
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        Ok(Emit::more(events))
    }
}

/// A consumer that ends when its only producer ends, telling the test by being dropped.
struct Bystander(#[allow(dead_code)] OnDrop);

impl Consumer for Bystander {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

/// Records its batches; on each of its first two batches it tells the test and waits to be woken.
/// The second wake-up makes it fail, ending the pipeline.
struct Napper {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    naps: Vec<(oneshot::Sender<()>, oneshot::Receiver<()>)>,
}

impl Consumer for Napper {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches.lock().unwrap().push(events);
        if self.naps.is_empty() {
            return Ok(());
        }
        let (asleep, wake) = self.naps.remove(0);
        let _ = asleep.send(());
        let _ = wake.await;
        if self.naps.is_empty() {
            return Err("stopped by the test".into());
        }
        Ok(())
    }
}

/// A producer_consumer with no downstream demand handles no input, even when the notice that one of
/// its producers ended sits in its queue between input events (input queued behind an end notice
/// must wait for demand like any other).
///
/// Runs on a current_thread runtime, so that each signal below orders the messages exactly:
/// 1. `numbers` emits 0..10 to `middle` (max 10 / min 5); `middle` handles 0..4 for `napper`'s demand
///    of 4: 0..3 go out, 4 waits in its buffer, 5..9 wait in its queue. `napper` naps on 0..3.
/// 2. `ender` then ends; the pipeline tells `middle` and `bystander`, which ends too, and only then
///    `numbers` emits 10..14: `middle`'s queue is 5..9, end of `ender`, 10..14.
/// 3. `napper` wakes and asks for 4: `middle` sends 4, handles 5..9 (5..7 go out, 8 and 9 wait), and
///    must stop there: no demand is left for 10..14.
#[tokio::test]
async fn producer_consumer_waits_for_demand_after_an_end_notice() {
    let (ender_go, ender_wait) = oneshot::channel();
    let (bystander_dropped, bystander_gone) = oneshot::channel();
    let (numbers_sent, second_emit) = oneshot::channel();
    let (asleep1, nap1) = oneshot::channel();
    let (wake1, wake1_rx) = oneshot::channel();
    let (asleep2, nap2) = oneshot::channel();
    let (wake2, wake2_rx) = oneshot::channel();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let napped = Arc::new(Mutex::new(Vec::new()));

    let mut pipeline = Pipeline::new();
    let ender = pipeline.add_producer_named("ender", EndsOnSignal(Some(ender_wait)));
    let numbers = pipeline.add_producer_named(
        "numbers",
        SecondCallWaits {
            next: 0,
            calls: 0,
            go: Some(bystander_gone),
            sent: Some(numbers_sent),
        },
    );
    let middle = pipeline.add_producer_consumer_named("middle", Postpone(handled.clone()));
    let bystander =
        pipeline.add_consumer_named("bystander", Bystander(OnDrop(Some(bystander_dropped))));
    let napper = pipeline.add_consumer_named(
        "napper",
        Napper {
            batches: napped.clone(),
            naps: vec![(asleep1, wake1_rx), (asleep2, wake2_rx)],
        },
    );
    pipeline.subscribe_with(&numbers, &middle, demand(10, 5));
    pipeline.subscribe_with(&ender, &middle, demand(10, 5));
    pipeline.subscribe(&ender, &bystander);
    pipeline.subscribe_with(&middle, &napper, demand(4, 0));

    let test = async {
        let run = tokio::spawn(pipeline.run());
        nap1.await.expect("napper never handled a batch");
        let _ = ender_go.send(());
        second_emit.await.expect("numbers was not asked again");
        let _ = wake1.send(());
        nap2.await.expect("napper never handled a second batch");
        let _ = wake2.send(());
        match run.await.expect("run task panicked") {
            Err(PipelineError::StageFailed { stage, .. }) => assert_eq!(stage, "napper"),
            other => panic!("expected napper to fail, got {other:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("pipeline did not finish within 30 s");

    assert_eq!(
        *handled.lock().unwrap(),
        vec![(0..5).collect::<Vec<u64>>(), (5..10).collect()],
        "middle handled input without downstream demand"
    );
    assert_eq!(
        *napped.lock().unwrap(),
        vec![(0..4).collect::<Vec<u64>>(), vec![4]]
    );
}

/// Records every batch it handles.
struct Record(Arc<Mutex<Vec<Vec<u64>>>>);

impl Consumer for Record {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.lock().unwrap().push(events);
        Ok(())
    }
}

/// With max_demand 1 every event waits for an ask at every hop, so each of the 2,000 events travels
/// only if each ask reaches its stage: also an ask to a producer_consumer that waits with nothing to
/// send, which takes it in when its next events arrive (see `mailbox`'s lazy messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_per_ask_through_a_chain_of_producer_consumers() {
    const EVENTS: u64 = 2_000;
    let meter = Meter::new(EVENTS);
    let batches = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("counter", counter(&meter, EVENTS, 0, 0));
    let first = pipeline.add_producer_consumer_named("first", Forward);
    let second = pipeline.add_producer_consumer_named("second", Forward);
    let consumer = pipeline.add_consumer_named("record", Record(batches.clone()));
    pipeline.subscribe_with(&producer, &first, demand(1, 0));
    pipeline.subscribe_with(&first, &second, demand(1, 0));
    pipeline.subscribe_with(&second, &consumer, demand(1, 0));

    // The timeout only turns a lost ask, which would stall the pipeline, into a failure.
    let report = tokio::time::timeout(Duration::from_secs(30), pipeline.run())
        .await
        .expect("a lost ask stalled the pipeline")
        .unwrap();

    let batches = batches.lock().unwrap().clone();
    let expected: Vec<Vec<u64>> = (0..EVENTS).map(|event| vec![event]).collect();
    assert_eq!(batches, expected);
    assert_eq!(meter.demands(), vec![1; EVENTS as usize]);
    for stage in ["first", "second"] {
        let stage = report.stage(stage).unwrap();
        assert_eq!(
            (stage.events_in, stage.events_out, stage.excess),
            (EVENTS, EVENTS, 0)
        );
    }
}
