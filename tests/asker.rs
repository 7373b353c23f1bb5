//! `Asker`: a manual subscription asked on from where no `Context` is at hand (GenStage's `from`,
//! kept for `ask/2`): a stage's `handle_events`, a task the stage hands work to, a shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    AskError, Asker, CallError, Consumer, ConsumerRef, Context, Demand, Emit, Pipeline, Producer,
    ProducerConsumer, Report, RestartPolicy, StageResult, SubscribeOptions, Subscriber,
    Subscription,
};
use tokio::sync::{mpsc, Semaphore};

mod manual_stages;
use manual_stages::{Batches, FailsOnce};

/// Emits `next..end` as asked, recording each demand it is asked for; a producer's context
/// cannot make an `Asker`, and it records what making one for its consumer gave.
struct Numbers {
    next: u64,
    end: u64,
    demands: Arc<Mutex<Vec<usize>>>,
    asker_made: Arc<Mutex<Option<Result<(), AskError>>>>,
}

impl Numbers {
    fn new(end: u64) -> (Self, Arc<Mutex<Vec<usize>>>) {
        let demands = Arc::new(Mutex::new(Vec::new()));
        let numbers = Numbers {
            next: 0,
            end,
            demands: demands.clone(),
            asker_made: Arc::default(),
        };
        (numbers, demands)
    }
}

impl Producer for Numbers {
    type Output = u64;

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, ctx: &mut Context<'_, Self>) {
        *self.asker_made.lock().unwrap() = Some(ctx.asker(subscriber.tag()).map(drop));
    }

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.demands.lock().unwrap().push(demand);
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
}

/// A manual consumer that asks, from `handle_events`, for as many events as each batch brought;
/// it keeps a clone of its `Asker` where the test can reach it.
struct OneByOne {
    asker: Option<Asker>,
    batches: Batches,
    kept: Arc<Mutex<Option<Asker>>>,
}

impl OneByOne {
    fn new() -> (Self, Batches, Arc<Mutex<Option<Asker>>>) {
        let (batches, kept) = (Arc::default(), Arc::default());
        let stage = OneByOne {
            asker: None,
            batches: Arc::clone(&batches),
            kept: Arc::clone(&kept),
        };
        (stage, batches, kept)
    }
}

impl Consumer for OneByOne {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let asker = ctx.asker(subscription.tag()).unwrap();
        assert_eq!(asker.subscription(), subscription.tag());
        *self.kept.lock().unwrap() = Some(asker.clone());
        self.asker = Some(asker);
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let asked = events.len();
        self.batches.lock().unwrap().push(events);
        if let Some(asker) = &self.asker {
            asker.ask(asked)?;
        }
        Ok(())
    }
}

/// Runs `numbers` into the manual consumer `add` adds, subscribed with `max_demand` (and
/// `min_demand` 0); fails if the run does not end within 30 s.
async fn run_into<C: Consumer<Input = u64>>(
    numbers: Numbers,
    max_demand: usize,
    add: impl FnOnce(&mut Pipeline) -> ConsumerRef<C>,
) -> Report {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let consumer = add(&mut pipeline);
    pipeline.subscribe_with(
        &numbers,
        &consumer,
        SubscribeOptions::new().max_demand(max_demand).min_demand(0),
    );
    tokio::time::timeout(Duration::from_secs(30), pipeline.run())
        .await
        .expect("the run hung")
        .unwrap()
}

/// One event per subscription's `max_demand` of 1: without asks from `handle_events`, the
/// consumer would get the first event only (the initial ask), and the run would never end.
#[tokio::test]
async fn a_manual_consumer_asks_from_handle_events_through_its_asker() {
    let (numbers, demands) = Numbers::new(10);
    let asker_made = Arc::clone(&numbers.asker_made);
    let (one_by_one, batches, kept) = OneByOne::new();
    let report = run_into(numbers, 1, |pipeline| pipeline.add_consumer(one_by_one)).await;

    let expected: Vec<Vec<u64>> = (0..10).map(|n| vec![n]).collect();
    assert_eq!(*batches.lock().unwrap(), expected);
    // The initial ask, then one ask of 1 per event handled but the last.
    assert_eq!(*demands.lock().unwrap(), vec![1; 10]);
    assert_eq!(report.stage("OneByOne").unwrap().events_in, 10);
    assert!(report.balanced(), "{report:?}");

    // A producer's callbacks have no subscriptions to ask on; the error names the producer.
    let not_a_consumer = asker_made.lock().unwrap().clone().unwrap().unwrap_err();
    assert_eq!(
        not_a_consumer,
        AskError::NotAConsumer {
            stage: "Numbers".to_owned()
        }
    );
    assert!(
        not_a_consumer
            .to_string()
            .starts_with("stage `Numbers` is a producer"),
        "{not_a_consumer}"
    );

    // Once the stage has ended, an ask says so, by the stage's name; an ask of 0 asks nothing.
    let asker = kept.lock().unwrap().clone().unwrap();
    let ended = asker.ask(1).unwrap_err();
    assert_eq!(
        ended,
        CallError::Ended {
            stage: "OneByOne".to_owned()
        }
    );
    assert_eq!(ended.to_string(), "stage `OneByOne` has ended");
    assert_eq!(asker.ask(0), Ok(()));
}

/// Hands each batch, with a clone of its `Asker`, to a worker task, which asks for as many events
/// once it has handled them: the consumer's own `handle_events` never asks.
struct HandsOff {
    asker: Option<Asker>,
    work: mpsc::UnboundedSender<(Vec<u64>, Asker)>,
}

impl Consumer for HandsOff {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let asker = self.asker.clone().ok_or("subscribed without an asker")?;
        self.work.send((events, asker))?;
        Ok(())
    }
}

#[tokio::test]
async fn a_task_the_consumer_hands_work_to_asks_once_it_is_done() {
    let (work, mut to_do) = mpsc::unbounded_channel::<(Vec<u64>, Asker)>();
    let worker = tokio::spawn(async move {
        let mut done = Vec::new();
        while let Some((events, asker)) = to_do.recv().await {
            let asked = events.len();
            done.extend(events);
            // The last ask may find the consumer ended: its input ended with the producer.
            let _ = asker.ask(asked);
        }
        done
    });
    let (numbers, demands) = Numbers::new(30);
    let report = run_into(numbers, 3, |pipeline| {
        pipeline.add_consumer(HandsOff { asker: None, work })
    })
    .await;
    let done = tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the worker hung")
        .unwrap();

    assert_eq!(done, (0..30).collect::<Vec<u64>>());
    assert_eq!(*demands.lock().unwrap(), vec![3; 10]);
    assert_eq!(report.stage("HandsOff").unwrap().events_in, 30);
    assert!(report.balanced(), "{report:?}");
}

/// Emits 10 events at its first ask, whatever it asks for.
struct AllAtOnce;

impl Producer for AllAtOnce {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last((0..10).collect()))
    }
}

/// A manual producer_consumer that asks through its `Asker` after each batch. Its first batch
/// waits for the gate to open.
struct Gated {
    asker: Option<Asker>,
    gate: Arc<Semaphore>,
    at_gate: Arc<Semaphore>,
}

impl ProducerConsumer for Gated {
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
        self.at_gate.add_permits(1);
        self.gate.acquire().await?.forget();
        if let Some(asker) = &self.asker {
            asker.ask(events.len())?;
        }
        Ok(events)
    }
}

/// Counts what it handles.
struct Count(Arc<Mutex<u64>>);

impl Consumer for Count {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        *self.0.lock().unwrap() += events.len() as u64;
        Ok(())
    }
}

/// A producer_consumer shutting down takes no messages from outside, but an `Asker`'s asks are
/// its own: the 8 events its producer still buffers when the shutdown begins are asked for, and
/// delivered, and the shutdown ends.
#[tokio::test]
async fn a_manual_producer_consumer_asks_through_its_asker_while_shutting_down() {
    let (gate, at_gate) = (Arc::new(Semaphore::new(0)), Arc::new(Semaphore::new(0)));
    let handled = Arc::new(Mutex::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(AllAtOnce);
    let gated = pipeline.add_producer_consumer(Gated {
        asker: None,
        gate: Arc::clone(&gate),
        at_gate: Arc::clone(&at_gate),
    });
    let count = pipeline.add_consumer(Count(Arc::clone(&handled)));
    pipeline.subscribe_with(&numbers, &gated, SubscribeOptions::new().max_demand(2));
    pipeline.subscribe(&gated, &count);
    let running = pipeline.start();

    // The first batch (the initial ask's 2 events) waits at the gate while the shutdown begins.
    at_gate.acquire().await.unwrap().forget();
    running.shutdown_handle().shutdown().unwrap();
    gate.add_permits(usize::MAX >> 4);
    let report = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the shutdown hung")
        .unwrap();

    assert_eq!(*handled.lock().unwrap(), 10);
    assert_eq!(report.stage("AllAtOnce").unwrap().emitted, 10);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report:?}");
}

/// The ask a value made before it failed is made for the value a restart puts in its place: the
/// subscription outlives the value (in GenStage the ask goes to the producer at once). The failed
/// batch is not handed again (no redelivery), so without that ask nothing would ask for event 5.
#[tokio::test]
async fn an_ask_made_before_a_failure_is_made_after_the_restart() {
    let (numbers, demands) = Numbers::new(6);
    let batches = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&batches);
    let report = run_into(numbers, 1, |pipeline| {
        let fails_once = pipeline.add_consumer_with(move || FailsOnce {
            asker: None,
            batches: Arc::clone(&seen),
            failed: Arc::clone(&failed),
        });
        pipeline.set_restart(&fails_once, RestartPolicy::transient());
        fails_once
    })
    .await;

    let expected: Vec<Vec<u64>> = (0..6).map(|n| vec![n]).collect();
    assert_eq!(*batches.lock().unwrap(), expected);
    assert_eq!(*demands.lock().unwrap(), vec![1; 6]);
    let stage = report.stage("FailsOnce").unwrap();
    assert_eq!((stage.restarts, stage.lost), (1, 1));
    assert!(report.balanced(), "{report:?}");
}

/// A manual consumer that fails once, on event 4, before it asks: without redelivery, the new
/// value asks for what the failed batch took, as `handle_subscribe` is told it again.
struct TopsUp {
    asker: Option<Asker>,
    outstanding: Arc<Mutex<Vec<usize>>>,
    batches: Batches,
    failed: Arc<AtomicBool>,
}

impl Consumer for TopsUp {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.outstanding
            .lock()
            .unwrap()
            .push(subscription.outstanding());
        let asker = ctx.asker(subscription.tag()).unwrap();
        asker
            .ask(
                subscription
                    .max_demand()
                    .saturating_sub(subscription.outstanding()),
            )
            .unwrap();
        self.asker = Some(asker);
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let asked = events.len();
        let fails = events.contains(&4) && !self.failed.swap(true, Ordering::SeqCst);
        self.batches.lock().unwrap().push(events);
        if fails {
            return Err("event 4 fails once".into());
        }
        if let Some(asker) = &self.asker {
            asker.ask(asked)?;
        }
        Ok(())
    }
}

/// `handle_subscribe` sees the initial ask outstanding (1), then, told again after the failure,
/// nothing: it asks for the failed batch's event again. Without that ask nothing would ask for
/// event 5 (the run would hang).
#[tokio::test]
async fn a_restarted_manual_consumer_asks_again_for_what_its_failed_batch_took() {
    let (numbers, demands) = Numbers::new(6);
    let (outstanding, batches) = (Arc::new(Mutex::new(Vec::new())), Batches::default());
    let failed = Arc::new(AtomicBool::new(false));
    let (seen, told) = (Arc::clone(&batches), Arc::clone(&outstanding));
    let report = run_into(numbers, 1, |pipeline| {
        let tops_up = pipeline.add_consumer_with(move || TopsUp {
            asker: None,
            outstanding: Arc::clone(&told),
            batches: Arc::clone(&seen),
            failed: Arc::clone(&failed),
        });
        pipeline.set_restart(&tops_up, RestartPolicy::transient());
        tops_up
    })
    .await;

    assert_eq!(*outstanding.lock().unwrap(), [1, 0]);
    let expected: Vec<Vec<u64>> = (0..6).map(|n| vec![n]).collect();
    assert_eq!(*batches.lock().unwrap(), expected);
    assert_eq!(*demands.lock().unwrap(), vec![1; 6]);
    let stage = report.stage("TopsUp").unwrap();
    assert_eq!((stage.restarts, stage.lost, stage.excess), (1, 1, 0));
    assert!(report.balanced(), "{report:?}");
}

/// A GenStage port asks in `handle_subscribe`, as GenStage's RateLimiter does, before the
/// subscription is manual: the ask is made once `handle_subscribe` has returned `Demand::Manual`.
struct AsksOnSubscribe {
    handled: Arc<Mutex<u64>>,
}

impl Consumer for AsksOnSubscribe {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        ctx.ask(subscription.tag(), 5).unwrap();
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        *self.handled.lock().unwrap() += events.len() as u64;
        Ok(())
    }
}

/// The initial ask (2) and the ask of 5 made in `handle_subscribe`, and no other: 7 events. (It
/// was refused: "subscription 0 is automatic".)
#[tokio::test]
async fn an_ask_in_handle_subscribe_is_made_once_it_returns_manual() {
    let (numbers, demands) = Numbers::new(100);
    let handled = Arc::new(Mutex::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let asks = pipeline.add_consumer(AsksOnSubscribe {
        handled: Arc::clone(&handled),
    });
    pipeline.subscribe_with(&numbers, &asks, SubscribeOptions::new().max_demand(2));
    let running = pipeline.start();
    tokio::time::timeout(Duration::from_secs(30), async {
        while *handled.lock().unwrap() < 7 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("7 events never came");
    let report = tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .expect("the shutdown hung")
        .unwrap();

    // Two asks, 2 and 5; a producer that starts after both reached it may be asked the 7 at once.
    let demands = demands.lock().unwrap().clone();
    assert!(demands == [2, 5] || demands == [7], "{demands:?}");
    assert_eq!(report.stage("AsksOnSubscribe").unwrap().events_in, 7);
    assert!(report.balanced(), "{report:?}");
}

/// Emits one event at its first ask, and nothing after: what is asked beyond it stays outstanding.
struct OneEvent {
    emitted: bool,
}

impl Producer for OneEvent {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        let events = if self.emitted { Vec::new() } else { vec![0] };
        self.emitted = true;
        Ok(Emit::more(events))
    }
}

/// Asks for 5 in its first `handle_subscribe`, and fails on its first batch; tells the test what
/// `handle_subscribe` sees outstanding each time.
struct AsksThenFails {
    told: mpsc::UnboundedSender<usize>,
    failed: Arc<AtomicBool>,
}

impl Consumer for AsksThenFails {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let _ = self.told.send(subscription.outstanding());
        if !self.failed.load(Ordering::SeqCst) {
            ctx.ask(subscription.tag(), 5).unwrap();
        }
        Demand::Manual
    }

    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        if !self.failed.swap(true, Ordering::SeqCst) {
            return Err("the first batch fails".into());
        }
        Ok(())
    }
}

/// The ask of 5 made in `handle_subscribe` is made as it returns `Demand::Manual`, before the
/// subscription's first batch is handled: the value restarted after that batch failed sees the
/// initial ask (1) and the 5 outstanding, less the 1 event handed. (Made later, in the stage's
/// turn, it came after the batch, and the new value was told 0: the top-up rule then asked again
/// for what was still asked.)
#[tokio::test]
async fn an_ask_in_handle_subscribe_is_made_before_the_first_batch() {
    let (told, mut outstanding) = mpsc::unbounded_channel();
    let failed = Arc::new(AtomicBool::new(false));
    let mut pipeline = Pipeline::new();
    let one = pipeline.add_producer(OneEvent { emitted: false });
    let asks = pipeline.add_consumer_with(move || AsksThenFails {
        told: told.clone(),
        failed: Arc::clone(&failed),
    });
    pipeline.set_restart(&asks, RestartPolicy::transient());
    pipeline.subscribe_with(
        &one,
        &asks,
        SubscribeOptions::new().max_demand(1).min_demand(0),
    );
    let running = pipeline.start();

    let first = outstanding.recv().await.expect("told");
    let after_restart = outstanding.recv().await.expect("told again");
    assert_eq!((first, after_restart), (1, 5));
    let report = tokio::time::timeout(Duration::from_secs(30), running.abort())
        .await
        .expect("the abort hung")
        .unwrap();
    let stage = report.stage("AsksThenFails").unwrap();
    assert_eq!((stage.restarts, stage.lost, stage.events_in), (1, 1, 0));
    assert!(report.balanced(), "{report:?}");
}

/// A manual consumer that asks through its `Asker` after each event below 9, fails once on event
/// 4 after asking, and tops up in `handle_subscribe` by the documented rule.
struct AsksBeforeFailing {
    asker: Option<Asker>,
    outstanding: Arc<Mutex<Vec<usize>>>,
    batches: Batches,
    failed: Arc<AtomicBool>,
}

impl Consumer for AsksBeforeFailing {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.outstanding
            .lock()
            .unwrap()
            .push(subscription.outstanding());
        let asker = ctx.asker(subscription.tag()).unwrap();
        let top_up = subscription
            .max_demand()
            .saturating_sub(subscription.outstanding());
        asker.ask(top_up).unwrap();
        self.asker = Some(asker);
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let asked = events.len();
        let asks = events.iter().all(|&n| n < 9);
        let fails = events.contains(&4) && !self.failed.swap(true, Ordering::SeqCst);
        self.batches.lock().unwrap().push(events);
        if let (Some(asker), true) = (&self.asker, asks) {
            asker.ask(asked)?;
        }
        if fails {
            return Err("event 4 fails once, after asking".into());
        }
        Ok(())
    }
}

/// The ask the failed value made through its `Asker`, still in the stage's mailbox as the new
/// value is told of the subscription, counts as outstanding (1, not 0): the top-up asks nothing,
/// and the consumer gets events 0 to 9, one at a time, and no 10th ask. (Without that count it
/// was told 0 and asked twice for event 5.)
#[tokio::test]
async fn an_askers_ask_on_its_way_at_a_restart_counts_as_outstanding() {
    let (numbers, demands) = Numbers::new(100);
    let (outstanding, batches) = (Arc::new(Mutex::new(Vec::new())), Batches::default());
    let failed = Arc::new(AtomicBool::new(false));
    let (seen, told) = (Arc::clone(&batches), Arc::clone(&outstanding));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(numbers);
    let consumer = pipeline.add_consumer_with(move || AsksBeforeFailing {
        asker: None,
        outstanding: Arc::clone(&told),
        batches: Arc::clone(&seen),
        failed: Arc::clone(&failed),
    });
    pipeline.set_restart(&consumer, RestartPolicy::transient());
    pipeline.subscribe_with(
        &numbers,
        &consumer,
        SubscribeOptions::new().max_demand(1).min_demand(0),
    );
    let running = pipeline.start();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !batches.lock().unwrap().concat().contains(&9) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("event 9 never came");
    let report = tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .expect("the shutdown hung")
        .unwrap();

    assert_eq!(*outstanding.lock().unwrap(), [1, 1]);
    let expected: Vec<Vec<u64>> = (0..10).map(|n| vec![n]).collect();
    assert_eq!(*batches.lock().unwrap(), expected);
    assert_eq!(*demands.lock().unwrap(), vec![1; 10]);
    let stage = report.stage("AsksBeforeFailing").unwrap();
    assert_eq!((stage.restarts, stage.lost, stage.excess), (1, 1, 0));
    assert!(report.balanced(), "{report:?}");
}
