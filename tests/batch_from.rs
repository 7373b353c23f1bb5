//! `batch_from`: a consumer or producer_consumer told, right before each `handle_events`, which
//! subscription the batch came on (GenStage's `from` in `handle_events(events, from, state)`), so
//! that a stage in manual demand on several producers asks each through its own `Asker`: on two
//! producers, as a builder's consumer, a producer_consumer and a `#[stage]` consumer, and when a
//! restarted stage is handed its failed batch again.
//!
//! Each stage asks for its next event on the `Asker` of the subscription `batch_from` named, and
//! only there: told no tag, or not one of its own, it fails; told the wrong one, it asks the wrong
//! producer, whose demands then differ from those asserted. Runs are wrapped in a timeout that
//! guards against hangs; it is not a timing assertion.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    stage, Asker, Consumer, Context, Demand, Pipeline, PipelineError, ProducerConsumer, Report,
    RestartPolicy, StageResult, SubscribeOptions, Subscription, SubscriptionTag,
};

mod manual_stages;
use manual_stages::Numbers;

/// The first event of the low producer, and of the high one: each emits ten.
const LOW: u64 = 0;
const HIGH: u64 = 100;
const COUNT: u64 = 10;

/// What a stage on the two producers was told, over all its values: the tag of each subscription
/// by producer name (`handle_subscribe`), and each batch with the tag `batch_from` gave it.
#[derive(Default)]
struct Told {
    subscribed: Vec<(String, SubscriptionTag)>,
    batches: Vec<(Option<SubscriptionTag>, Vec<u64>)>,
}

type Shared = Arc<Mutex<Told>>;

/// The manual demand of a stage on several producers: an `Asker` per subscription, and the
/// subscription of the batch about to be handled.
struct Manual {
    askers: HashMap<SubscriptionTag, Asker>,
    from: Option<SubscriptionTag>,
    told: Shared,
}

impl Manual {
    fn new(told: &Shared) -> Self {
        Manual {
            askers: HashMap::new(),
            from: None,
            told: Arc::clone(told),
        }
    }

    /// `handle_subscribe`: keeps an `Asker` for the subscription, which stays manual. It asks
    /// nothing: a new subscription's initial ask is in place, and a stage that redelivers asks
    /// again as it handles its failed batch again.
    fn subscribe<S: Send + 'static>(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, S>,
    ) -> Demand {
        let tag = subscription.tag();
        let asker = ctx
            .asker(tag)
            .expect("a consumer's subscription has an Asker");
        self.askers.insert(tag, asker);
        let producer = subscription.producer().to_owned();
        self.told.lock().unwrap().subscribed.push((producer, tag));
        Demand::Manual
    }

    /// `batch_from`.
    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.from = Some(subscription);
    }

    /// Records the batch (before it may fail on it), with the tag it was told; taken, so that
    /// each batch must be told its own.
    fn record(&mut self, events: &[u64]) -> Option<SubscriptionTag> {
        let from = self.from.take();
        let mut told = self.told.lock().unwrap();
        told.batches.push((from, events.to_vec()));
        from
    }

    /// Asks the subscription `from` for as many events as the batch brought.
    fn ask_again(&self, from: Option<SubscriptionTag>, events: &[u64]) -> StageResult<()> {
        let asker = from
            .and_then(|tag| self.askers.get(&tag))
            .ok_or("handle_events was not told a subscription of this stage")?;
        asker.ask(events.len())?;
        Ok(())
    }
}

/// A consumer on the two producers, in manual demand, asking for one event at a time on the
/// subscription each came on.
struct Merge {
    manual: Manual,
    handled: Arc<Mutex<Vec<u64>>>,
}

impl Consumer for Merge {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.manual.subscribe(subscription, ctx)
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.manual.batch_from(subscription);
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let from = self.manual.record(&events);
        self.handled.lock().unwrap().extend(&events);
        self.manual.ask_again(from, &events)
    }
}

/// [`Merge`] as a producer_consumer: it passes its events on.
struct Relay {
    manual: Manual,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.manual.subscribe(subscription, ctx)
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.manual.batch_from(subscription);
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        let from = self.manual.record(&events);
        self.manual.ask_again(from, &events)?;
        Ok(events)
    }
}

/// Collects what it handles.
struct Collect(Arc<Mutex<Vec<u64>>>);

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
}

/// [`Merge`] written with `#[stage]`.
struct StageMerge {
    manual: Manual,
    handled: Arc<Mutex<Vec<u64>>>,
}

#[stage(consumer)]
impl StageMerge {
    fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand {
        self.manual.subscribe(subscription, ctx)
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.manual.batch_from(subscription);
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let from = self.manual.record(&events);
        self.handled.lock().unwrap().extend(&events);
        self.manual.ask_again(from, &events)
    }
}

/// The demands each producer was asked for.
struct Demands {
    low: Arc<Mutex<Vec<usize>>>,
    high: Arc<Mutex<Vec<usize>>>,
}

/// Adds the producers `Low` (emitting `LOW..LOW + COUNT`) and `High` (`HIGH..HIGH + COUNT`), and
/// subscribes the stage that `subscribe` is given their references for, with `max_demand` 1 and
/// `min_demand` 0: each batch is one event, and without the stage's asks each producer would send
/// its first event only (the initial ask).
fn two_producers(
    pipeline: &mut Pipeline,
    subscribe: impl Fn(&mut Pipeline, &genstage::ProducerRef<Numbers>, SubscribeOptions),
) -> Demands {
    let demands = Demands {
        low: Arc::default(),
        high: Arc::default(),
    };
    let options = SubscribeOptions::new().max_demand(1).min_demand(0);
    for (name, start, recorded) in [("Low", LOW, &demands.low), ("High", HIGH, &demands.high)] {
        let numbers = Numbers::recording(start, Some(start + COUNT), Arc::clone(recorded));
        let producer = pipeline.add_producer_as(Some(name.to_owned()), numbers);
        subscribe(pipeline, &producer, options);
    }
    demands
}

async fn run(pipeline: Pipeline) -> Result<Report, PipelineError> {
    tokio::time::timeout(Duration::from_secs(30), pipeline.run())
        .await
        .expect("the run hung")
}

/// Checks what a stage on the two producers was told: subscribed to each once per value, with one
/// tag per producer (`values`: how many values were told of each; a value made after a producer
/// has ended is not told of it); each batch told the tag of the producer its event came from; every event of both handled, in each producer's order (a redelivered event twice, as
/// `redelivered` lists); and each producer asked for exactly one event at a time, ten times (the
/// initial ask, then one per event handled but its last).
#[track_caller]
fn check(told: &Shared, demands: &Demands, values: RangeInclusive<usize>, redelivered: &[u64]) {
    let told = told.lock().unwrap();
    let tag_of = |producer: &str| -> SubscriptionTag {
        let tags: Vec<SubscriptionTag> = told
            .subscribed
            .iter()
            .filter(|(name, _)| name == producer)
            .map(|&(_, tag)| tag)
            .collect();
        assert!(
            values.contains(&tags.len()),
            "{producer}: {:?}",
            told.subscribed
        );
        // A restarted value is told of the same subscription again.
        assert!(tags.iter().all(|&tag| tag == tags[0]), "{tags:?}");
        tags[0]
    };
    let (low, high) = (tag_of("Low"), tag_of("High"));
    assert_ne!(low, high);

    let mut from_low = Vec::new();
    let mut from_high = Vec::new();
    for (from, batch) in &told.batches {
        // One event a batch: max_demand 1.
        assert_eq!(batch.len(), 1, "{:?}", told.batches);
        let event = batch[0];
        let (expected, events) = if event < HIGH {
            (low, &mut from_low)
        } else {
            (high, &mut from_high)
        };
        assert_eq!(*from, Some(expected), "the batch {batch:?}");
        events.push(event);
    }
    let expected = |start: u64| -> Vec<u64> {
        let mut events = Vec::new();
        for event in start..start + COUNT {
            events.push(event);
            // Handed once to the value that failed on it, then again to the next.
            if redelivered.contains(&event) {
                events.push(event);
            }
        }
        events
    };
    assert_eq!(from_low, expected(LOW));
    assert_eq!(from_high, expected(HIGH));

    assert_eq!(*demands.low.lock().unwrap(), vec![1; COUNT as usize]);
    assert_eq!(*demands.high.lock().unwrap(), vec![1; COUNT as usize]);
}

/// Every event of both producers, sorted.
fn every_event() -> Vec<u64> {
    (LOW..LOW + COUNT).chain(HIGH..HIGH + COUNT).collect()
}

fn sorted(events: &Arc<Mutex<Vec<u64>>>) -> Vec<u64> {
    let mut events = events.lock().unwrap().clone();
    events.sort_unstable();
    events
}

#[tokio::test]
async fn a_consumer_on_two_producers_asks_on_the_subscription_each_batch_came_on() {
    let told = Shared::default();
    let handled = Arc::default();
    let mut pipeline = Pipeline::new();
    let merge = pipeline.add_consumer(Merge {
        manual: Manual::new(&told),
        handled: Arc::clone(&handled),
    });
    let demands = two_producers(&mut pipeline, |pipeline, producer, options| {
        pipeline.subscribe_with(producer, &merge, options);
    });
    let report = run(pipeline).await.unwrap();

    check(&told, &demands, 1..=1, &[]);
    assert_eq!(sorted(&handled), every_event());
    assert_eq!(report.stage("Merge").unwrap().events_in, 2 * COUNT);
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_producer_consumer_on_two_producers_asks_on_the_subscription_each_batch_came_on() {
    let told = Shared::default();
    let collected = Arc::default();
    let mut pipeline = Pipeline::new();
    let relay = pipeline.add_producer_consumer(Relay {
        manual: Manual::new(&told),
    });
    let collect = pipeline.add_consumer(Collect(Arc::clone(&collected)));
    pipeline.subscribe(&relay, &collect);
    let demands = two_producers(&mut pipeline, |pipeline, producer, options| {
        pipeline.subscribe_with(producer, &relay, options);
    });
    let report = run(pipeline).await.unwrap();

    check(&told, &demands, 1..=1, &[]);
    assert_eq!(sorted(&collected), every_event());
    let relay = report.stage("Relay").unwrap();
    assert_eq!((relay.events_in, relay.events_out), (2 * COUNT, 2 * COUNT));
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_stage_macro_consumer_is_told_its_batches_subscriptions() {
    let told = Shared::default();
    let handled = Arc::default();
    let mut pipeline = Pipeline::new();
    let merge = pipeline.add_consumer(StageMerge {
        manual: Manual::new(&told),
        handled: Arc::clone(&handled),
    });
    let demands = two_producers(&mut pipeline, |pipeline, producer, options| {
        pipeline.subscribe_with(producer, &merge, options);
    });
    let report = run(pipeline).await.unwrap();

    check(&told, &demands, 1..=1, &[]);
    assert_eq!(sorted(&handled), every_event());
    assert_eq!(report.stage("StageMerge").unwrap().events_in, 2 * COUNT);
    assert!(report.balanced(), "{report}");
}

/// [`Merge`] that fails, once each, on the events of `fail_on`, before it asks again: restarted
/// with redelivery, the failed batch is handed again to the next value.
struct FlakyMerge {
    manual: Manual,
    fail_on: Arc<Mutex<Vec<u64>>>,
}

impl Consumer for FlakyMerge {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.manual.subscribe(subscription, ctx)
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.manual.batch_from(subscription);
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let from = self.manual.record(&events);
        let mut fail_on = self.fail_on.lock().unwrap();
        if let Some(at) = fail_on.iter().position(|event| events.contains(event)) {
            let event = fail_on.remove(at);
            return Err(format!("FlakyMerge failed on {event}").into());
        }
        drop(fail_on);
        self.manual.ask_again(from, &events)
    }

    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient().redeliver()
    }
}

/// Fails on the last event of `Low` (whose producer has ended by then, or soon after: its
/// subscription ends once that batch is handled) and on one in the middle of `High`'s.
#[tokio::test]
async fn a_batch_handed_again_after_a_restart_is_told_its_subscription_again() {
    let failing = [LOW + COUNT - 1, HIGH + 3];
    for producer_consumer in [false, true] {
        let told = Shared::default();
        let fail_on_ = Arc::new(Mutex::new(failing.to_vec()));
        let mut pipeline = Pipeline::new();
        let (told_, fail_on) = (Arc::clone(&told), Arc::clone(&fail_on_));
        let build = move || FlakyMerge {
            manual: Manual::new(&told_),
            fail_on: Arc::clone(&fail_on),
        };
        let demands = if producer_consumer {
            let relay = pipeline.add_producer_consumer_with(move || FlakyRelay(build()));
            let collect = pipeline.add_consumer(Collect(Arc::default()));
            pipeline.subscribe(&relay, &collect);
            two_producers(&mut pipeline, |pipeline, producer, options| {
                pipeline.subscribe_with(producer, &relay, options);
            })
        } else {
            let merge = pipeline.add_consumer_with(build);
            two_producers(&mut pipeline, |pipeline, producer, options| {
                pipeline.subscribe_with(producer, &merge, options);
            })
        };
        let report = run(pipeline).await.unwrap();

        // Two restarts: three values, each told of the subscriptions that had not ended.
        check(&told, &demands, 1..=3, &failing);
        assert!(fail_on_.lock().unwrap().is_empty());
        let name = if producer_consumer {
            "FlakyRelay"
        } else {
            "FlakyMerge"
        };
        let stage = report.stage(name).unwrap();
        assert_eq!(
            (
                stage.restarts,
                stage.redelivered,
                stage.events_in,
                stage.lost
            ),
            (2, 2, 2 * COUNT, 0),
            "{producer_consumer}"
        );
        assert!(report.balanced(), "{report}");
    }
}

/// [`FlakyMerge`] as a producer_consumer: it passes its events on.
struct FlakyRelay(FlakyMerge);

impl ProducerConsumer for FlakyRelay {
    type Input = u64;
    type Output = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.0.manual.subscribe(subscription, ctx)
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.0.manual.batch_from(subscription);
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Consumer::handle_events(&mut self.0, events.clone()).await?;
        Ok(events)
    }

    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient().redeliver()
    }
}
