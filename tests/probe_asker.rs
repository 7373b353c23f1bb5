//! Probes of `Asker` from a user's side: the `#[stage]` form, an automatic subscription, asks
//! after `cancel` and across `resubscribe`, a manual producer_consumer whose consumer has no demand,
//! asks queued at an abort and at a graceful shutdown, asks once the stage has ended (also while
//! the pipeline still runs), `ask(usize::MAX)`, clones asking from many tasks, and restarts with
//! redelivery. Every wait is bounded by a timeout: a hang fails the test, it does not stall it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    stage, Asker, CallError, Consumer, Context, Demand, Emit, Pipeline, Producer, ProducerConsumer,
    RestartPolicy, StageResult, SubscribeOptions, Subscription,
};
use tokio::sync::{watch, Semaphore};

mod manual_stages;
use manual_stages::{Batches, Demands, FailsOnce, Numbers};

/// How long any wait may take before the probe calls it a hang.
const HANG: Duration = Duration::from_secs(20);

/// Bounds `future` by [`HANG`], failing with `what` if it runs past it.
async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(HANG, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// Every `Asker` a stage made, in order.
type Askers = Arc<Mutex<Vec<Asker>>>;

/// A consumer that answers `demand` in `handle_subscribe`, makes an `Asker` there (kept, and
/// shared with the test), and asks through its latest one for `per_batch(len)` after each batch;
/// it publishes how many events it has handled.
struct Asking {
    demand: Demand,
    per_batch: fn(usize) -> usize,
    asker: Option<Asker>,
    askers: Askers,
    batches: Batches,
    handled: watch::Sender<u64>,
}

impl Asking {
    fn new(demand: Demand, per_batch: fn(usize) -> usize) -> (Self, Askers, Batches, Handled) {
        let (askers, batches) = (Askers::default(), Batches::default());
        let (handled, seen) = watch::channel(0);
        let stage = Asking {
            demand,
            per_batch,
            asker: None,
            askers: Arc::clone(&askers),
            batches: Arc::clone(&batches),
            handled,
        };
        (stage, askers, batches, Handled(seen))
    }
}

impl Consumer for Asking {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let asker = ctx.asker(subscription.tag()).unwrap();
        self.askers.lock().unwrap().push(asker.clone());
        self.asker = Some(asker);
        self.demand
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let asked = (self.per_batch)(events.len());
        let count = events.len() as u64;
        self.batches.lock().unwrap().push(events);
        self.handled.send_modify(|n| *n += count);
        if let Some(asker) = &self.asker {
            asker.ask(asked)?;
        }
        Ok(())
    }
}

/// How many events a stage has handled, awaited.
struct Handled(watch::Receiver<u64>);

impl Handled {
    async fn reach(&mut self, count: u64) {
        within(
            &format!("handling {count} events"),
            self.0.wait_for(|&n| n >= count),
        )
        .await
        .unwrap();
    }

    fn now(&self) -> u64 {
        *self.0.borrow()
    }
}

fn one_each(len: usize) -> usize {
    len
}

fn none(_len: usize) -> usize {
    0
}

fn a_hundred(_len: usize) -> usize {
    100
}

fn singles(range: std::ops::Range<u64>) -> Vec<Vec<u64>> {
    range.map(|n| vec![n]).collect()
}

fn one_at_a_time() -> SubscribeOptions {
    SubscribeOptions::new().max_demand(1).min_demand(0)
}

// ---------------------------------------------------------------------------------------------
// The `#[stage]` form.

/// A `#[stage]` consumer, with the form the brief names (`Context<Self>`, no lifetime), that asks
/// for one event at a time from a synchronous `handle_events`.
struct MacroOneByOne {
    asker: Option<Asker>,
    batches: Batches,
}

#[stage(consumer)]
impl MacroOneByOne {
    fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    fn handle_events(&mut self, events: Vec<u64>) -> Result<(), CallError> {
        let asked = events.len();
        self.batches.lock().unwrap().push(events);
        if let Some(asker) = &self.asker {
            asker.ask(asked)?;
        }
        Ok(())
    }
}

/// A `#[stage]` producer_consumer in manual demand that doubles each event and asks for the next
/// from `handle_events`.
struct MacroDoubler {
    asker: Option<Asker>,
}

#[stage(producer_consumer)]
impl MacroDoubler {
    fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        if let Some(asker) = &self.asker {
            asker.ask(events.len())?;
        }
        Ok(events.into_iter().map(|n| n * 2).collect())
    }
}

#[tokio::test]
async fn a_stage_macro_consumer_and_producer_consumer_ask_through_their_askers() {
    let (numbers, demands) = Numbers::new(Some(10));
    let batches = Batches::default();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let doubler = pipeline.add_producer_consumer(MacroDoubler { asker: None });
    let one_by_one = pipeline.add_consumer(MacroOneByOne {
        asker: None,
        batches: Arc::clone(&batches),
    });
    pipeline.subscribe_with(&numbers, &doubler, one_at_a_time());
    pipeline.subscribe_with(&doubler, &one_by_one, one_at_a_time());
    let report = within("the run", pipeline.run()).await.unwrap();

    let expected: Vec<Vec<u64>> = (0..10).map(|n| vec![n * 2]).collect();
    assert_eq!(*batches.lock().unwrap(), expected);
    assert_eq!(*demands.lock().unwrap(), vec![1; 10]);
    assert_eq!(report.stage("MacroOneByOne").unwrap().events_in, 10);
    assert_eq!(report.stage("MacroDoubler").unwrap().events_in, 10);
    assert_eq!(report.totals().lost, 0);
    assert!(report.stages.iter().all(|s| s.excess == 0), "{report:?}");
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// An automatic subscription.

/// Log lines, captured.
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

/// An `Asker` on a subscription its stage takes in automatic demand asks nothing: the producer is
/// asked only the automatic refills (`max_demand` 4, `min_demand` 2: 4, then 2 at a time), never
/// the 100 the stage asks after each batch; those asks are dropped, with one warning.
#[test]
fn an_asker_on_an_automatic_subscription_never_asks() {
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
    let (numbers, demands) = Numbers::new(Some(20));
    let (asking, askers, batches, _) = Asking::new(Demand::Automatic, a_hundred);
    let report = runtime.block_on(async {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer(numbers);
        let asking = pipeline.add_consumer_named("auto", asking);
        pipeline.subscribe_with(
            &numbers,
            &asking,
            SubscribeOptions::new().max_demand(4).min_demand(2),
        );
        within("the run", pipeline.run()).await.unwrap()
    });

    let batches = batches.lock().unwrap().clone();
    assert_eq!(batches.concat(), (0..20).collect::<Vec<u64>>());
    let demands = demands.lock().unwrap().clone();
    assert_eq!(demands[0], 4, "{demands:?}");
    assert!(demands[1..].iter().all(|&d| d == 2), "{demands:?}");
    // 4 + 2 * 8 = 20: the producer ends at its last refill.
    assert_eq!(demands.iter().sum::<usize>(), 20, "{demands:?}");
    assert_eq!(askers.lock().unwrap().len(), 1);
    assert_eq!(report.stage("auto").unwrap().excess, 0);
    assert!(report.balanced(), "{report:?}");
    // One warning for the first ask, naming the stage and why; the same mistake at every later
    // ask is not repeated.
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("an Asker's ask for 100 events was dropped"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "{} batches, warnings: {warnings:#?}",
        batches.len()
    );
    assert!(
        warnings.iter().all(|line| line.contains("WARN")
            && line.contains("stage=\"auto\"")
            && line.contains("of stage `auto` is automatic: the runtime asks for its events")),
        "{warnings:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Asks inside `handle_subscribe`.

/// An ask made through the `Asker` inside `handle_subscribe` itself, before it has returned
/// `Demand::Manual`, is made once it has (the ask is opened in a later turn): with `max_demand` 1,
/// the initial ask and that ask of 5 bring all 6 events, and the run ends without other asks.
struct AsksAtOnce;

impl Consumer for AsksAtOnce {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let asker = ctx.asker(subscription.tag()).unwrap();
        asker.ask(5).unwrap();
        Demand::Manual
    }

    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_ask_made_in_handle_subscribe_is_made_once_it_has_returned_manual() {
    let (numbers, demands) = Numbers::new(Some(6));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let asks = pipeline.add_consumer(AsksAtOnce);
    pipeline.subscribe_with(&numbers, &asks, one_at_a_time());
    let report = within("the run", pipeline.run()).await.unwrap();

    assert_eq!(*demands.lock().unwrap(), vec![1, 5]);
    assert_eq!(report.stage("AsksAtOnce").unwrap().events_in, 6);
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// `cancel` and `resubscribe` through the running handle.

/// Once its subscription is cancelled through the running handle, the `Asker` asks nothing (the
/// subscription has ended; its ask is dropped) and the stage, left without producers, ends: then an
/// ask is `CallError::Ended` by the stage's name.
#[tokio::test]
async fn an_asker_after_its_subscription_was_cancelled() {
    let (numbers, demands) = Numbers::new(None);
    let (asking, askers, batches, mut handled) = Asking::new(Demand::Manual, one_each);
    // A second, automatic consumer keeps the producer, and the pipeline, going.
    let (other, _, _, _) = Asking::new(Demand::Automatic, none);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let asking = pipeline.add_consumer_named("asking", asking);
    let other = pipeline.add_consumer_named("other", other);
    pipeline.subscribe_with(&numbers, &asking, one_at_a_time());
    pipeline.subscribe_with(&numbers, &other, one_at_a_time());
    let running = pipeline.start();
    handled.reach(5).await;

    let asker = askers.lock().unwrap()[0].clone();
    within("cancel", running.cancel(asker.subscription()))
        .await
        .unwrap();
    // The consumer ends with its last producer; until it has, its asks are dropped.
    let ended = within("the consumer's end", async {
        loop {
            match asker.ask(1000) {
                Ok(()) => tokio::task::yield_now().await,
                Err(error) => break error,
            }
        }
    })
    .await;
    assert_eq!(
        ended,
        CallError::Ended {
            stage: "asking".to_owned()
        }
    );
    let report = within("the shutdown", running.shutdown()).await.unwrap();

    let in_asking = report.stage("asking").unwrap().events_in;
    assert_eq!(batches.lock().unwrap().concat().len() as u64, in_asking);
    assert_eq!(handled.now(), in_asking);
    // No ask of 1000 reached the producer: every demand is one event's (both consumers take them
    // one at a time).
    let demands = demands.lock().unwrap().clone();
    assert!(demands.iter().all(|&d| d <= 2), "{demands:?}");
    assert!(report.stages.iter().all(|s| s.excess == 0), "{report:?}");
    assert!(report.balanced(), "{report:?}");
}

/// A one-at-a-time consumer resubscribed mid-run to the same (endless) producer:
/// `handle_subscribe` gives it a new `Asker`, which it asks through from then on; the old one's
/// asks (1000 at a time) are dropped. Every event is handled once, in order, one at a time, and
/// the shutdown ends.
#[tokio::test]
async fn a_one_at_a_time_consumer_resubscribed_mid_run() {
    let (numbers, demands) = Numbers::new(None);
    let (asking, askers, batches, mut handled) = Asking::new(Demand::Manual, one_each);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let asking = pipeline.add_consumer(asking);
    pipeline.subscribe_with(&numbers, &asking, one_at_a_time());
    let running = pipeline.start();
    handled.reach(5).await;

    let old = askers.lock().unwrap()[0].clone();
    let new = within(
        "resubscribe",
        running.resubscribe(old.subscription(), &numbers, &asking, one_at_a_time()),
    )
    .await
    .unwrap();
    handled.reach(10).await;
    assert_eq!(askers.lock().unwrap().len(), 2);
    assert_eq!(askers.lock().unwrap()[1].subscription(), new);
    // The old subscription has ended: its asks go nowhere.
    for _ in 0..10 {
        old.ask(1000).unwrap();
    }
    let at = handled.now();
    handled.reach(at + 10).await;
    let report = within("the shutdown", running.shutdown()).await.unwrap();

    let in_asking = report.stage("Asking").unwrap().events_in;
    assert_eq!(*batches.lock().unwrap(), singles(0..in_asking));
    let demands = demands.lock().unwrap().clone();
    assert!(demands.iter().all(|&d| d == 1), "{demands:?}");
    assert_eq!(report.stage("Asking").unwrap().excess, 0);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// A manual producer_consumer whose consumer has no demand.

/// A manual producer_consumer that passes events on and asks through its `Asker` only when told
/// to, by a task.
struct Relay {
    askers: Askers,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.askers
            .lock()
            .unwrap()
            .push(ctx.asker(subscription.tag()).unwrap());
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// A consumer that waits at a gate before each batch.
struct GatedSink {
    gate: Arc<Semaphore>,
    handled: watch::Sender<u64>,
}

impl Consumer for GatedSink {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.gate.acquire().await?.forget();
        self.handled.send_modify(|n| *n += events.len() as u64);
        Ok(())
    }
}

/// A task asks 300 events, one ask at a time, through a manual producer_consumer's `Asker` while
/// the consumer downstream is stuck (no demand): nothing hangs, and once the consumer goes on, the
/// 301 events asked (the initial ask's one, and 300) reach it, and no more.
#[tokio::test]
async fn a_manual_producer_consumer_asks_while_its_consumer_has_no_demand() {
    let (numbers, demands) = Numbers::new(Some(301));
    let askers = Askers::default();
    let gate = Arc::new(Semaphore::new(0));
    let (handled, mut seen) = watch::channel(0);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let relay = pipeline.add_producer_consumer(Relay {
        askers: Arc::clone(&askers),
    });
    let sink = pipeline.add_consumer(GatedSink {
        gate: Arc::clone(&gate),
        handled,
    });
    pipeline.subscribe_with(&numbers, &relay, one_at_a_time());
    pipeline.subscribe_with(&relay, &sink, SubscribeOptions::new().max_demand(2));
    let running = pipeline.start();

    let asker = within("the subscription", async {
        loop {
            if let Some(asker) = askers.lock().unwrap().first().cloned() {
                break asker;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let task = tokio::spawn(async move {
        for _ in 0..300 {
            asker.ask(1).unwrap();
            tokio::task::yield_now().await;
        }
    });
    within("the asking task", task).await.unwrap();
    gate.add_permits(usize::MAX >> 4);
    within("301 events", seen.wait_for(|&n| n >= 301))
        .await
        .unwrap();
    let report = within("the run", running).await.unwrap();

    assert_eq!(demands.lock().unwrap().iter().sum::<usize>(), 301);
    assert_eq!(report.stage("GatedSink").unwrap().events_in, 301);
    assert_eq!(report.stage("Relay").unwrap().events_in, 301);
    assert!(report.stages.iter().all(|s| s.excess == 0), "{report:?}");
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// Shutdowns and aborts with asks queued.

/// A manual producer_consumer that hands the count of each batch to a worker task, which asks for
/// as many through a clone of the `Asker` (the stage's `handle_events` never asks).
struct HandsOffRelay {
    asker: Option<Asker>,
    work: tokio::sync::mpsc::UnboundedSender<(usize, Asker)>,
}

impl ProducerConsumer for HandsOffRelay {
    type Input = u64;
    type Output = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        let asker = self.asker.clone().ok_or("no asker")?;
        self.work.send((events.len(), asker))?;
        Ok(events)
    }
}

/// Emits 50 events at its first ask, whatever it asks for, recording the demand.
struct FiftyAtOnce(Demands);

impl Producer for FiftyAtOnce {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.lock().unwrap().push(demand);
        Ok(Emit::last((0..50).collect()))
    }
}

/// A graceful shutdown of a manual producer_consumer whose asks come from another task through
/// its `Asker`: they are its own, so the 45 events its producer still buffers when the shutdown
/// begins are asked for and delivered, and the shutdown ends.
#[tokio::test]
async fn a_graceful_shutdown_takes_the_asks_of_a_worker_task() {
    let (work, mut to_do) = tokio::sync::mpsc::unbounded_channel::<(usize, Asker)>();
    let (go, received) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let (worker_go, worker_received) = (Arc::clone(&go), Arc::clone(&received));
    let worker = tokio::spawn(async move {
        let mut asks = 0;
        while let Some((count, asker)) = to_do.recv().await {
            // The first batch's ask waits until the shutdown has begun.
            if asks == 0 {
                worker_received.add_permits(1);
                worker_go.acquire().await.unwrap().forget();
            }
            asks += 1;
            let _ = asker.ask(count);
        }
        asks
    });
    let demands = Demands::default();
    let numbers = FiftyAtOnce(Arc::clone(&demands));
    let (sink, _, _, _) = Asking::new(Demand::Automatic, none);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let relay = pipeline.add_producer_consumer(HandsOffRelay { asker: None, work });
    let sink = pipeline.add_consumer(sink);
    pipeline.subscribe_with(
        &numbers,
        &relay,
        SubscribeOptions::new().max_demand(5).min_demand(0),
    );
    pipeline.subscribe(&relay, &sink);
    let running = pipeline.start();
    // The first batch handled, the shutdown begins before its ask is made.
    within("the first batch", received.acquire())
        .await
        .unwrap()
        .forget();
    running.shutdown_handle().shutdown().unwrap();
    go.add_permits(1);
    let report = within("the shutdown", running).await.unwrap();
    let asks = within("the worker", worker).await.unwrap();

    assert_eq!(asks, 10);
    assert_eq!(*demands.lock().unwrap(), vec![5]);
    assert_eq!(report.stage("FiftyAtOnce").unwrap().emitted, 50);
    assert_eq!(report.stage("Asking").unwrap().events_in, 50);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report:?}");
}

/// A consumer stuck in `handle_events` while 100 asks wait in its mailbox, and the pipeline is
/// aborted: the report balances (`emitted = handled + discarded + lost`), and every later ask is
/// `Ended`.
#[tokio::test]
async fn an_abort_with_asks_queued_balances() {
    let (numbers, _demands) = Numbers::new(None);
    let gate = Arc::new(Semaphore::new(0));
    let (handled, _seen) = watch::channel(0);
    let askers = Askers::default();
    struct Stuck {
        askers: Askers,
        inner: GatedSink,
    }
    impl Consumer for Stuck {
        type Input = u64;
        fn handle_subscribe(
            &mut self,
            subscription: &Subscription,
            ctx: &mut Context<'_, Self>,
        ) -> Demand {
            self.askers
                .lock()
                .unwrap()
                .push(ctx.asker(subscription.tag()).unwrap());
            Demand::Manual
        }
        async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
            self.inner.handle_events(events).await
        }
    }
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let stuck = pipeline.add_consumer(Stuck {
        askers: Arc::clone(&askers),
        inner: GatedSink {
            gate: Arc::clone(&gate),
            handled,
        },
    });
    pipeline.subscribe_with(&numbers, &stuck, SubscribeOptions::new().max_demand(3));
    let running = pipeline.start();
    let asker = within("the subscription", async {
        loop {
            if let Some(asker) = askers.lock().unwrap().first().cloned() {
                break asker;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    for _ in 0..100 {
        asker.ask(7).unwrap();
    }
    let report = within("the abort", running.abort()).await.unwrap();

    assert!(report.balanced(), "{report:?}");
    let totals = report.totals();
    assert_eq!(
        totals.emitted,
        totals.handled + totals.discarded + totals.lost
    );
    assert_eq!(report.stage("Stuck").unwrap().excess, 0);
    assert_eq!(
        asker.ask(1),
        Err(CallError::Ended {
            stage: "Stuck".to_owned()
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Asks once the stage has ended.

/// A consumer that has ended while the rest of the pipeline runs answers a task's asks with
/// `CallError::Ended` naming it, and so does it once the pipeline has ended; none panics.
#[tokio::test]
async fn asks_after_the_stage_ended_are_ended_errors() {
    let (short, _) = Numbers::new(Some(10));
    let (long, _) = Numbers::new(None);
    let (done_early, askers, batches, _) = Asking::new(Demand::Manual, one_each);
    let (other, _, _, mut other_handled) = Asking::new(Demand::Automatic, none);
    let mut pipeline = Pipeline::new();
    let short = pipeline.add_producer_named("short", short);
    let long = pipeline.add_producer_named("long", long);
    let done_early = pipeline.add_consumer_named("done early", done_early);
    let other = pipeline.add_consumer_named("other", other);
    pipeline.subscribe_with(&short, &done_early, one_at_a_time());
    pipeline.subscribe(&long, &other);
    let running = pipeline.start();
    other_handled.reach(1).await;

    let asker = within("the asker", async {
        loop {
            if let Some(asker) = askers.lock().unwrap().first().cloned() {
                break asker;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let ended = tokio::spawn(async move {
        loop {
            match asker.ask(usize::MAX) {
                Ok(()) => tokio::task::yield_now().await,
                Err(error) => break (error, asker),
            }
        }
    });
    let (error, asker) = within("the early consumer's end", ended).await.unwrap();
    let expected = CallError::Ended {
        stage: "done early".to_owned(),
    };
    assert_eq!(error, expected);
    assert_eq!(*batches.lock().unwrap(), singles(0..10));

    let report = within("the shutdown", running.shutdown()).await.unwrap();
    assert_eq!(report.stage("done early").unwrap().events_in, 10);
    let after = tokio::spawn(async move { (asker.ask(1), asker.ask(0)) });
    assert_eq!(after.await.unwrap(), (Err(expected), Ok(())));
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// Huge asks.

/// `ask(usize::MAX)`, twice, from `handle_subscribe` and from `handle_events`: demand saturates,
/// nothing overflows or panics, and the producer's 25_000 events all arrive (in batches of at most
/// 10_000, as it emits them).
#[tokio::test]
async fn asks_of_usize_max_saturate() {
    fn max(_len: usize) -> usize {
        usize::MAX
    }
    let (numbers, demands) = Numbers::new(Some(25_000));
    let (asking, askers, batches, _) = Asking::new(Demand::Manual, max);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let asking = pipeline.add_consumer(asking);
    pipeline.subscribe_with(&numbers, &asking, SubscribeOptions::new().max_demand(3));
    let running = pipeline.start();
    let report = within("the run", running).await.unwrap();

    let handled: Vec<u64> = batches.lock().unwrap().concat();
    assert_eq!(handled, (0..25_000).collect::<Vec<u64>>());
    let demands = demands.lock().unwrap().clone();
    assert_eq!(demands[0], 3, "{demands:?}");
    assert!(demands[1..].iter().all(|&d| d >= 10_000), "{demands:?}");
    assert_eq!(askers.lock().unwrap().len(), 1);
    assert_eq!(report.stage("Asking").unwrap().excess, 0);
    assert!(report.balanced(), "{report:?}");
}

/// `ask(usize::MAX)` through the `Asker` of a consumer downstream of an automatic
/// producer_consumer, and of a broadcast: nothing overflows, every event arrives.
#[tokio::test]
async fn asks_of_usize_max_through_a_producer_consumer_and_a_broadcast() {
    fn max(_len: usize) -> usize {
        usize::MAX
    }
    struct Pass;
    impl ProducerConsumer for Pass {
        type Input = u64;
        type Output = u64;
        async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
            Ok(events)
        }
        fn dispatcher(&self) -> genstage::Dispatch<Self, u64> {
            genstage::Dispatch::broadcast()
        }
    }
    let (numbers, _) = Numbers::new(Some(5_000));
    let (first, _, first_batches, _) = Asking::new(Demand::Manual, max);
    let (second, _, second_batches, _) = Asking::new(Demand::Manual, max);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let pass = pipeline.add_producer_consumer(Pass);
    let first = pipeline.add_consumer_named("first", first);
    let second = pipeline.add_consumer_named("second", second);
    pipeline.subscribe(&numbers, &pass);
    pipeline.subscribe_with(&pass, &first, SubscribeOptions::new().max_demand(2));
    pipeline.subscribe_with(&pass, &second, SubscribeOptions::new().max_demand(2));
    let report = within("the run", pipeline.run()).await.unwrap();

    let all: Vec<u64> = (0..5_000).collect();
    assert_eq!(first_batches.lock().unwrap().concat(), all);
    assert_eq!(second_batches.lock().unwrap().concat(), all);
    assert!(report.stages.iter().all(|s| s.excess == 0), "{report:?}");
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// Clones asking from many tasks.

/// 8 tasks on 4 threads each ask 50 times for 1 event through their clones of a consumer's
/// `Asker`, which never asks itself: the endless producer is asked exactly 1 + 400 events, the consumer gets
/// exactly those and no more, with no excess.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clones_asking_from_many_tasks_get_exactly_what_they_asked() {
    let (numbers, demands) = Numbers::new(None);
    let (asking, askers, batches, mut handled) = Asking::new(Demand::Manual, none);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let asking = pipeline.add_consumer(asking);
    pipeline.subscribe_with(&numbers, &asking, one_at_a_time());
    let running = pipeline.start();
    handled.reach(1).await;

    let asker = askers.lock().unwrap()[0].clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let asker = asker.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    asker.ask(1).unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        within("an asking task", task).await.unwrap();
    }
    handled.reach(401).await;
    let report = within("the shutdown", running.shutdown()).await.unwrap();

    assert_eq!(
        batches.lock().unwrap().concat(),
        (0..401).collect::<Vec<u64>>()
    );
    assert_eq!(demands.lock().unwrap().iter().sum::<usize>(), 401);
    let stage = report.stage("Asking").unwrap();
    assert_eq!((stage.events_in, stage.excess, stage.lost), (401, 0, 0));
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// Restarts.

/// With redelivery, event 4 is handled again by the new value, which asks again for it: the ask the
/// failed value made outlived it, so the subscription has been asked one event more than the
/// consumer has handled, for good (`Asker`'s docs: with redelivery, ask once the work is done).
#[tokio::test]
async fn a_redelivered_batch_asks_again() {
    let (numbers, demands) = Numbers::new(Some(8));
    let batches = Batches::default();
    let failed = Arc::new(AtomicBool::new(false));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let (seen, once) = (Arc::clone(&batches), Arc::clone(&failed));
    let fails_once = pipeline.add_consumer_with(move || FailsOnce {
        asker: None,
        batches: Arc::clone(&seen),
        failed: Arc::clone(&once),
    });
    pipeline.set_restart(&fails_once, RestartPolicy::transient().redeliver());
    pipeline.subscribe_with(&numbers, &fails_once, one_at_a_time());
    let report = within("the run", pipeline.run()).await.unwrap();

    assert_eq!(
        batches.lock().unwrap().concat(),
        vec![0, 1, 2, 3, 4, 4, 5, 6, 7]
    );
    assert_eq!(*demands.lock().unwrap(), vec![1; 8]);
    let stage = report.stage("FailsOnce").unwrap();
    assert_eq!((stage.restarts, stage.redelivered, stage.lost), (1, 1, 0));
    assert_eq!(stage.excess, 0);
    assert!(report.balanced(), "{report:?}");
}

/// The stage an `Ended` names is the one the report names: of two stages of one type added
/// without names, the second is `Asking#2`.
#[tokio::test]
async fn an_ended_error_names_the_stage_as_the_report_does() {
    let (first_numbers, _) = Numbers::new(Some(3));
    let (second_numbers, _) = Numbers::new(Some(3));
    let (first, first_askers, _, _) = Asking::new(Demand::Manual, one_each);
    let (second, second_askers, _, _) = Asking::new(Demand::Manual, one_each);
    let mut pipeline = Pipeline::new();
    let first_numbers = pipeline.add_producer(first_numbers);
    let second_numbers = pipeline.add_producer(second_numbers);
    let first = pipeline.add_consumer(first);
    let second = pipeline.add_consumer(second);
    pipeline.subscribe_with(&first_numbers, &first, one_at_a_time());
    pipeline.subscribe_with(&second_numbers, &second, one_at_a_time());
    let report = within("the run", pipeline.run()).await.unwrap();

    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Numbers", "Numbers#2", "Asking", "Asking#2"]);
    let ended = |askers: &Askers| askers.lock().unwrap()[0].ask(1).unwrap_err();
    assert_eq!(
        ended(&first_askers),
        CallError::Ended {
            stage: "Asking".to_owned()
        }
    );
    assert_eq!(
        ended(&second_askers),
        CallError::Ended {
            stage: "Asking#2".to_owned()
        }
    );
}

/// A consumer that records what `ctx.asker` gives for the subscription `handle_cancel` is told of.
struct AsksInCancel {
    made: Arc<Mutex<Vec<Result<genstage::SubscriptionTag, genstage::AskError>>>>,
}

impl Consumer for AsksInCancel {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let made = ctx.asker(subscription.tag()).map(|a| a.subscription());
        self.made.lock().unwrap().push(made);
        Demand::Manual
    }

    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        _reason: &genstage::CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let made = ctx.asker(subscription.tag()).map(|a| a.subscription());
        self.made.lock().unwrap().push(made);
        Ok(())
    }
}

/// `ctx.asker` for a subscription that has ended, in `handle_cancel`, is `AskError::Unknown`
/// naming the stage, as `Context::asker`'s docs say; in `handle_subscribe` it is made.
#[tokio::test]
async fn an_asker_for_an_ended_subscription_is_unknown() {
    let (numbers, _) = Numbers::new(Some(2));
    let made = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let asks = pipeline.add_consumer(AsksInCancel {
        made: Arc::clone(&made),
    });
    pipeline.subscribe_with(&numbers, &asks, SubscribeOptions::new().max_demand(5));
    let report = within("the run", pipeline.run()).await.unwrap();

    let made = made.lock().unwrap().clone();
    assert_eq!(made.len(), 2, "{made:?}");
    let tag = made[0].clone().unwrap();
    let unknown = genstage::AskError::Unknown {
        stage: "AsksInCancel".to_owned(),
        subscription: tag,
    };
    assert_eq!(made[1], Err(unknown.clone()));
    assert_eq!(unknown.stage(), "AsksInCancel");
    let message = unknown.to_string();
    assert!(
        message.starts_with("stage `AsksInCancel` has no subscription ")
            && message.ends_with(": it is another stage's, or has ended"),
        "{message}"
    );
    assert!(report.balanced(), "{report:?}");
}

/// A graceful shutdown while a manual producer_consumer (asking from `handle_events` through its
/// `Asker`) has a consumer downstream with no demand (stuck at its gate) and its producer still
/// buffers 49 events: once the consumer goes on, every event is asked for, handled, and the
/// shutdown ends with nothing lost.
#[tokio::test]
async fn a_shutdown_while_the_consumer_below_a_manual_producer_consumer_has_no_demand() {
    let demands = Demands::default();
    let gate = Arc::new(Semaphore::new(0));
    let (handled, mut seen) = watch::channel(0);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(FiftyAtOnce(Arc::clone(&demands)));
    let doubler = pipeline.add_producer_consumer(MacroDoubler { asker: None });
    let sink = pipeline.add_consumer(GatedSink {
        gate: Arc::clone(&gate),
        handled,
    });
    pipeline.subscribe_with(&numbers, &doubler, one_at_a_time());
    pipeline.subscribe_with(&doubler, &sink, SubscribeOptions::new().max_demand(2));
    let running = pipeline.start();
    // The sink takes its first event and waits at the gate: its one more event of demand is
    // met by the next, and then the producer_consumer below has no demand.
    gate.add_permits(1);
    within("the first event", seen.wait_for(|&n| n >= 1))
        .await
        .unwrap();
    running.shutdown_handle().shutdown().unwrap();
    gate.add_permits(usize::MAX >> 4);
    let report = within("the shutdown", running).await.unwrap();

    assert_eq!(*demands.lock().unwrap(), vec![1]);
    assert_eq!(report.stage("GatedSink").unwrap().events_in, 50);
    assert_eq!(report.stage("MacroDoubler").unwrap().events_in, 50);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report:?}");
}

/// An abort while a manual producer_consumer's asks, from a task through its `Asker`, wait in its
/// mailbox and its consumer has no demand: the report balances and the `Asker` says `Ended`.
#[tokio::test]
async fn an_abort_while_a_manual_producer_consumer_has_asks_queued_balances() {
    let demands = Demands::default();
    let askers = Askers::default();
    let gate = Arc::new(Semaphore::new(0));
    let (handled, mut seen) = watch::channel(0);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(FiftyAtOnce(Arc::clone(&demands)));
    let relay = pipeline.add_producer_consumer(Relay {
        askers: Arc::clone(&askers),
    });
    let sink = pipeline.add_consumer(GatedSink {
        gate: Arc::clone(&gate),
        handled,
    });
    pipeline.subscribe_with(&numbers, &relay, one_at_a_time());
    pipeline.subscribe_with(&relay, &sink, SubscribeOptions::new().max_demand(1));
    let running = pipeline.start();
    gate.add_permits(1);
    within("the first event", seen.wait_for(|&n| n >= 1))
        .await
        .unwrap();
    let asker = askers.lock().unwrap()[0].clone();
    for _ in 0..20 {
        asker.ask(2).unwrap();
    }
    let report = within("the abort", running.abort()).await.unwrap();

    assert!(report.balanced(), "{report:?}");
    let totals = report.totals();
    assert_eq!(report.stage("FiftyAtOnce").unwrap().emitted, 50);
    assert_eq!(
        totals.emitted,
        totals.handled + totals.discarded + totals.lost
    );
    assert!(report.stages.iter().all(|s| s.excess == 0), "{report:?}");
    assert_eq!(
        asker.ask(1),
        Err(CallError::Ended {
            stage: "Relay".to_owned()
        })
    );
}

// ---------------------------------------------------------------------------------------------
// A failure during a graceful shutdown.

/// A manual producer_consumer, one event at a time, that asks for the next through its `Asker`
/// and then fails once on event 4; its first batch waits at a gate.
struct GatedFailsOnce {
    asker: Option<Asker>,
    gate: Arc<Semaphore>,
    at_gate: Arc<Semaphore>,
    failed: Arc<AtomicBool>,
}

impl ProducerConsumer for GatedFailsOnce {
    type Input = u64;
    type Output = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        if events.contains(&0) {
            self.at_gate.add_permits(1);
            self.gate.acquire().await?.forget();
        }
        if let Some(asker) = &self.asker {
            asker.ask(events.len())?;
        }
        if events.contains(&4) && !self.failed.swap(true, Ordering::SeqCst) {
            return Err("event 4 fails once".into());
        }
        Ok(events)
    }
}

/// The shutdown begins while the producer_consumer holds event 0 and its producer buffers 49;
/// it fails on event 4 after asking, and is restarted (with and without redelivery): the ask its
/// failed value made is made for the new value, every other event is asked for and delivered,
/// and the shutdown ends.
async fn a_failure_during_a_shutdown(redeliver: bool) {
    let demands = Demands::default();
    let (gate, at_gate) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let (sink, _, batches, _) = Asking::new(Demand::Automatic, none);
    let failed = Arc::new(AtomicBool::new(false));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(FiftyAtOnce(Arc::clone(&demands)));
    let (g, a, f) = (Arc::clone(&gate), Arc::clone(&at_gate), Arc::clone(&failed));
    let relay = pipeline.add_producer_consumer_with(move || GatedFailsOnce {
        asker: None,
        gate: Arc::clone(&g),
        at_gate: Arc::clone(&a),
        failed: Arc::clone(&f),
    });
    let policy = RestartPolicy::transient();
    let policy = if redeliver {
        policy.redeliver()
    } else {
        policy
    };
    pipeline.set_restart(&relay, policy);
    let sink = pipeline.add_consumer(sink);
    pipeline.subscribe_with(&numbers, &relay, one_at_a_time());
    pipeline.subscribe(&relay, &sink);
    let running = pipeline.start();
    within("the gate", at_gate.acquire())
        .await
        .unwrap()
        .forget();
    running.shutdown_handle().shutdown().unwrap();
    gate.add_permits(usize::MAX >> 4);
    let report = within("the shutdown", running).await.unwrap();

    let expected: Vec<u64> = (0..50).filter(|&n| redeliver || n != 4).collect();
    assert_eq!(batches.lock().unwrap().concat(), expected);
    let relay = report.stage("GatedFailsOnce").unwrap();
    assert_eq!(relay.restarts, 1);
    assert_eq!(relay.lost, u64::from(!redeliver));
    assert_eq!(relay.redelivered, u64::from(redeliver));
    assert_eq!(*demands.lock().unwrap(), vec![1]);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn a_failure_during_a_shutdown_without_redelivery() {
    a_failure_during_a_shutdown(false).await;
}

#[tokio::test]
async fn a_failure_during_a_shutdown_with_redelivery() {
    a_failure_during_a_shutdown(true).await;
}

/// A consumer that fails (no restart) ends, and with it the run: a task asking through its
/// `Asker` meanwhile gets `Ended` naming it, never a panic or an endless `Ok`.
#[tokio::test]
async fn an_asker_of_a_failed_stage_is_ended() {
    struct FailsAt3 {
        askers: Askers,
    }
    impl Consumer for FailsAt3 {
        type Input = u64;
        fn handle_subscribe(
            &mut self,
            subscription: &Subscription,
            ctx: &mut Context<'_, Self>,
        ) -> Demand {
            self.askers
                .lock()
                .unwrap()
                .push(ctx.asker(subscription.tag()).unwrap());
            Demand::Manual
        }
        async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
            if events.contains(&3) {
                return Err("fails at 3".into());
            }
            Ok(())
        }
    }
    let (numbers, _) = Numbers::new(None);
    let askers = Askers::default();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let fails = pipeline.add_consumer_named(
        "fails",
        FailsAt3 {
            askers: Arc::clone(&askers),
        },
    );
    pipeline.subscribe_with(&numbers, &fails, one_at_a_time());
    let running = pipeline.start();
    let asker = within("the subscription", async {
        loop {
            if let Some(asker) = askers.lock().unwrap().first().cloned() {
                break asker;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let task = tokio::spawn(async move {
        let mut oks = 0u64;
        loop {
            match asker.ask(1) {
                Ok(()) => oks += 1,
                Err(error) => break (error, oks),
            }
            tokio::task::yield_now().await;
        }
    });
    let error = within("the run", running).await.unwrap_err();
    let (ended, oks) = within("the asking task", task).await.unwrap();
    assert_eq!(
        ended,
        CallError::Ended {
            stage: "fails".to_owned()
        }
    );
    assert!(oks >= 3, "{oks}");
    let report = error.report().expect("a run-time error carries its report");
    assert!(report.stage("fails").unwrap().failed(), "{report:?}");
    assert!(report.balanced(), "{report:?}");
}

// ---------------------------------------------------------------------------------------------
// A partition resubscribed.

/// Counts up forever, exactly as asked, evens to partition 0 and odds to partition 1.
struct EvenOdd(u64);

impl Producer for EvenOdd {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let start = self.0;
        self.0 += demand as u64;
        Ok(Emit::more((start..self.0).collect()))
    }
    fn dispatcher(&self) -> genstage::Dispatch<Self, u64> {
        genstage::Dispatch::partition(2)
    }
}

impl genstage::Partition<u64> for EvenOdd {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((*event % 2) as usize)
    }
}

/// A one-at-a-time consumer of partition 0, asking through its `Asker`, resubscribed mid-run to
/// the same partition while its old `Asker` keeps asking: it gets every even number once, in
/// order, one at a time, with no excess, and the shutdown ends with nothing lost.
#[tokio::test]
async fn a_one_at_a_time_consumer_of_a_partition_resubscribed_mid_run() {
    let (evens, askers, batches, mut handled) = Asking::new(Demand::Manual, one_each);
    let (odds, _, _, _) = Asking::new(Demand::Automatic, none);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(EvenOdd(0));
    let evens = pipeline.add_consumer_named("evens", evens);
    let odds = pipeline.add_consumer_named("odds", odds);
    pipeline.subscribe_with(&numbers, &evens, one_at_a_time().partition(0));
    pipeline.subscribe_with(
        &numbers,
        &odds,
        SubscribeOptions::new().partition(1).max_demand(4),
    );
    let running = pipeline.start();
    handled.reach(5).await;

    let old = askers.lock().unwrap()[0].clone();
    within(
        "resubscribe",
        running.resubscribe(
            old.subscription(),
            &numbers,
            &evens,
            one_at_a_time().partition(0),
        ),
    )
    .await
    .unwrap();
    for _ in 0..10 {
        old.ask(1000).unwrap();
    }
    let at = handled.now();
    handled.reach(at + 10).await;
    let report = within("the shutdown", running.shutdown()).await.unwrap();

    let in_evens = report.stage("evens").unwrap().events_in;
    let expected: Vec<Vec<u64>> = (0..in_evens).map(|n| vec![2 * n]).collect();
    assert_eq!(*batches.lock().unwrap(), expected);
    assert!(report.stages.iter().all(|s| s.excess == 0), "{report:?}");
    assert!(report.balanced(), "{report:?}");
}
