//! A consumer cancelling its own subscriptions from its callbacks (GenStage's `cancel/2` called by
//! the consumer): `Context::cancel` from a message callback, `Asker::cancel` from `handle_events`.
//! The consumer handles what was sent, sees the subscription end as `Cancelled`, goes on with its
//! other producers, and finishes normally once it has none; the pipeline's supervisor learns of the
//! cancel, so a partition the subscription held is free for another consumer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use genstage::{
    AskError, Asker, CancelReason, Consumer, Context, Demand, Dispatch, Emit, HandleCall,
    HandleCast, Partition, Pipeline, Producer, ReplyTo, StageRef, StageResult, StageStatus,
    SubscribeOptions, Subscription, SubscriptionTag,
};

/// Counts up from `next` for ever, emitting exactly what it is asked, by parity when partitioned.
struct Counter {
    next: u64,
    partitioned: bool,
}

impl Counter {
    fn new(next: u64) -> Self {
        Counter {
            next,
            partitioned: false,
        }
    }
}

impl Producer for Counter {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let events = (self.next..self.next + demand as u64).collect::<Vec<_>>();
        self.next += demand as u64;
        Ok(events.into())
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        if self.partitioned {
            Dispatch::partition(2)
        } else {
            Dispatch::demand()
        }
    }
}

impl Partition<u64> for Counter {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// Asks its producer to cancel `subscription` from a producer's callback, which cannot.
struct TryCancel(SubscriptionTag);

impl HandleCall<TryCancel> for Counter {
    type Reply = Result<(), AskError>;
    type Emitted = Vec<u64>;

    async fn handle_call(
        &mut self,
        TryCancel(tag): TryCancel,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(ctx.cancel(tag));
        Ok(Vec::new())
    }
}

/// What a [`Quitter`] saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// The events handled, by producer.
    events: BTreeMap<String, Vec<u64>>,
    /// Its subscriptions, by producer.
    tags: BTreeMap<String, SubscriptionTag>,
    /// The ends of its subscriptions, by producer, in order.
    ends: Vec<(String, CancelReason)>,
}

type Shared = Arc<Mutex<Seen>>;

/// Collects its events by producer, and cancels a subscription when told to, or by itself after
/// `quit_after` events in manual demand (through an `Asker`, from `handle_events`).
#[derive(Default)]
struct Quitter {
    seen: Shared,
    /// In manual demand, asking one event at a time: the number of events after which it cancels.
    quit_after: Option<usize>,
    asker: Option<Asker>,
    producer: Option<String>,
}

impl Quitter {
    fn new() -> (Self, Shared) {
        let quitter = Quitter::default();
        let seen = quitter.seen.clone();
        (quitter, seen)
    }
}

impl Consumer for Quitter {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let producer = subscription.producer().to_owned();
        self.seen
            .lock()
            .unwrap()
            .tags
            .insert(producer.clone(), subscription.tag());
        if self.quit_after.is_some() {
            self.asker = ctx.asker(subscription.tag()).ok();
            self.producer = Some(producer);
            Demand::Manual
        } else {
            Demand::Automatic
        }
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        let seen = self.seen.lock().unwrap();
        self.producer = seen
            .tags
            .iter()
            .find(|(_, tag)| **tag == subscription)
            .map(|(producer, _)| producer.clone());
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let producer = self.producer.clone().unwrap_or_default();
        let handled = {
            let mut seen = self.seen.lock().unwrap();
            let handled = seen.events.entry(producer).or_default();
            handled.extend(events);
            handled.len()
        };
        if let (Some(quit_after), Some(asker)) = (self.quit_after, &self.asker) {
            if handled < quit_after {
                asker.ask(1)?;
            } else {
                asker.cancel()?;
            }
        }
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.seen
            .lock()
            .unwrap()
            .ends
            .push((subscription.producer().to_owned(), reason.clone()));
        Ok(())
    }
}

/// Tells a [`Quitter`] to cancel `tag`, whatever it is.
struct QuitTag(SubscriptionTag);

impl HandleCast<QuitTag> for Quitter {
    type Emitted = ();

    async fn handle_cast(
        &mut self,
        QuitTag(tag): QuitTag,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        // The second of two queued back to back finds the subscription still the stage's (or, if
        // its end overtook it, ended): either way it cancels nothing more.
        let _ = ctx.cancel(tag);
        Ok(())
    }
}

/// Holds a [`Quitter`] in its callback until the sender is dropped or sends: what is cast to it
/// meanwhile queues behind.
struct Hold(tokio::sync::oneshot::Receiver<()>);

impl HandleCast<Hold> for Quitter {
    type Emitted = ();

    async fn handle_cast(
        &mut self,
        Hold(release): Hold,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let _ = release.await;
        Ok(())
    }
}

/// Tells a [`Quitter`] to cancel `tag`; the reply is what `Context::cancel` returned.
struct CancelTag(SubscriptionTag);

impl HandleCall<CancelTag> for Quitter {
    type Reply = Result<(), AskError>;
    type Emitted = ();

    async fn handle_call(
        &mut self,
        CancelTag(tag): CancelTag,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(ctx.cancel(tag));
        Ok(())
    }
}

/// The tag of the subscription to `producer` that a [`Quitter`] was told of.
fn tag_of(seen: &Shared, producer: &str) -> SubscriptionTag {
    seen.lock().unwrap().tags[producer]
}

async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::task::yield_now().await;
    }
}

/// The events 0, 1, … n - 1, for comparing.
fn first(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cancels_its_only_subscription_finishes_and_the_run_ends_with_nothing_lost()
{
    let (quitter, seen) = Quitter::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::new(0));
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    pipeline.subscribe_with(&counter, &quitter, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    until(|| {
        seen.lock()
            .unwrap()
            .events
            .values()
            .any(|events| events.len() >= 30)
    })
    .await;

    assert_eq!(
        quitter.call(CancelTag(tag_of(&seen, "counter"))).await,
        Ok(Ok(()))
    );
    let report = running.await.expect("the run ends normally");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.ends, [("counter".to_owned(), CancelReason::Cancelled)]);
    let handled = &seen.events["counter"];
    // Everything the counter sent was handled, in order, up to where the cancel reached it.
    assert_eq!(*handled, first(handled.len()));
    let quitter = report.stage("quitter").unwrap();
    assert_eq!(quitter.status, StageStatus::Finished);
    assert_eq!(quitter.events_in, handled.len() as u64);
    let totals = report.totals();
    assert_eq!(totals.emitted, handled.len() as u64);
    assert_eq!((totals.handled, totals.lost), (handled.len() as u64, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stops_itself_from_handle_events_through_its_asker() {
    let (mut quitter, seen) = Quitter::new();
    quitter.quit_after = Some(7);
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::new(0));
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    // A manual subscription starts with its first ask made: one event; then one per event.
    let options = SubscribeOptions::new().max_demand(1).min_demand(0);
    pipeline.subscribe_with(&counter, &quitter, options);
    let report = pipeline.run().await.expect("the run ends normally");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.events["counter"], first(7));
    assert_eq!(seen.ends, [("counter".to_owned(), CancelReason::Cancelled)]);
    assert_eq!(
        report.stage("quitter").unwrap().status,
        StageStatus::Finished
    );
    let totals = report.totals();
    assert_eq!((totals.emitted, totals.handled, totals.lost), (7, 7, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cancels_one_of_two_subscriptions_goes_on_with_the_other() {
    let (quitter, seen) = Quitter::new();
    let mut pipeline = Pipeline::new();
    let low = pipeline.add_producer_named("low", Counter::new(0));
    let high = pipeline.add_producer_named("high", Counter::new(1_000_000));
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    for producer in [&low, &high] {
        pipeline.subscribe_with(producer, &quitter, SubscribeOptions::new().max_demand(10));
    }
    let running = pipeline.start();
    until(|| {
        seen.lock()
            .unwrap()
            .events
            .get("low")
            .is_some_and(|e| e.len() >= 20)
    })
    .await;

    assert_eq!(
        quitter.call(CancelTag(tag_of(&seen, "low"))).await,
        Ok(Ok(()))
    );
    until(|| !seen.lock().unwrap().ends.is_empty()).await;
    let high_at_cancel = seen.lock().unwrap().events.get("high").map_or(0, Vec::len);
    // The other subscription goes on: `high` keeps sending.
    until(|| seen.lock().unwrap().events["high"].len() >= high_at_cancel + 100).await;
    let report = running.shutdown().await.expect("a graceful shutdown");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.ends[0], ("low".to_owned(), CancelReason::Cancelled));
    let low_events = &seen.events["low"];
    assert_eq!(*low_events, first(low_events.len()));
    assert_eq!(
        report.stage("low").unwrap().events_out,
        low_events.len() as u64
    );
    let totals = report.totals();
    assert_eq!(totals.emitted, totals.handled);
    assert_eq!(totals.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_a_consumer_cancels_is_free_for_another_consumer() {
    let (quitter, seen) = Quitter::new();
    let (second, second_seen) = Quitter::new();
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named(
        "split",
        Counter {
            next: 0,
            partitioned: true,
        },
    );
    let other = pipeline.add_producer_named("other", Counter::new(1_000_000));
    let (odd, _odd_seen) = Quitter::new();
    let odd = pipeline.add_consumer_named("odd", odd);
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    let options = SubscribeOptions::new().max_demand(10);
    pipeline.subscribe_with(&split, &quitter, options.partition(0));
    pipeline.subscribe_with(&split, &odd, options.partition(1));
    // So that the quitter goes on running once it has left the split.
    pipeline.subscribe_with(&other, &quitter, options);
    let running = pipeline.start();
    until(|| {
        seen.lock()
            .unwrap()
            .events
            .get("split")
            .is_some_and(|e| e.len() >= 10)
    })
    .await;

    assert_eq!(
        quitter.call(CancelTag(tag_of(&seen, "split"))).await,
        Ok(Ok(()))
    );
    until(|| !seen.lock().unwrap().ends.is_empty()).await;
    // The quitter still runs, on `other`: partition 0 is free only because the cancel is known.
    let second = running.add_consumer_named("second", second).await.unwrap();
    running
        .subscribe_with(&split, &second, options.partition(0))
        .await
        .expect("partition 0 is free");
    until(|| {
        second_seen
            .lock()
            .unwrap()
            .events
            .get("split")
            .is_some_and(|e| e.len() >= 10)
    })
    .await;
    let report = running.shutdown().await.expect("a graceful shutdown");

    let seen = seen.lock().unwrap();
    let left = seen.events["split"].clone();
    let second_events = second_seen.lock().unwrap().events["split"].clone();
    // Partition 0 is the even numbers: the quitter's, then the second's, in order, none twice.
    assert!(left.iter().chain(&second_events).all(|n| n % 2 == 0));
    let mut all = left.clone();
    all.extend(&second_events);
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "{left:?} then {second_events:?}"
    );
    assert_eq!(seen.ends[0], ("split".to_owned(), CancelReason::Cancelled));
    assert_eq!(report.totals().lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_twice_ends_the_subscription_once_and_bad_cancels_are_errors() {
    let (quitter, seen) = Quitter::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::new(0));
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    pipeline.subscribe_with(&counter, &quitter, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    until(|| !seen.lock().unwrap().events.is_empty()).await;
    let tag = seen.lock().unwrap().tags["counter"];

    // A producer has no subscriptions to producers; the error names it.
    let not_a_consumer = counter.call(TryCancel(tag)).await.unwrap().unwrap_err();
    assert_eq!(
        not_a_consumer,
        AskError::NotAConsumer {
            stage: "counter".to_owned()
        }
    );
    assert_eq!(
        not_a_consumer.to_string(),
        "stage `counter` is a producer: only a consumer's or producer_consumer's callbacks can \
         ask or cancel, and a producer has no subscriptions to producers"
    );
    // Two cancels queued back to back, while the stage is held in a callback (else it may take the
    // first, end, and refuse the second): both are taken, the subscription ends once.
    let (release, held) = tokio::sync::oneshot::channel();
    quitter.cast(Hold(held)).unwrap();
    quitter.cast(QuitTag(tag)).unwrap();
    quitter.cast(QuitTag(tag)).unwrap();
    release.send(()).unwrap();
    let report = running.await.expect("the run ends normally");
    assert_eq!(
        seen.lock().unwrap().ends,
        [("counter".to_owned(), CancelReason::Cancelled)]
    );
    assert_eq!(
        report.stage("quitter").unwrap().status,
        StageStatus::Finished
    );
    assert_eq!(report.totals().lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_a_subscription_that_is_not_the_stages_is_an_error() {
    let (quitter, seen) = Quitter::new();
    let (other, other_seen) = Quitter::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::new(0));
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    let other = pipeline.add_consumer_named("other", other);
    pipeline.subscribe(&counter, &quitter);
    pipeline.subscribe(&counter, &other);
    let running = pipeline.start();
    until(|| !other_seen.lock().unwrap().tags.is_empty()).await;
    let others = other_seen.lock().unwrap().tags["counter"];

    // The error names the stage that cancelled, not the subscription's own consumer.
    let unknown = quitter.call(CancelTag(others)).await.unwrap().unwrap_err();
    assert_eq!(
        unknown,
        AskError::Unknown {
            stage: "quitter".to_owned(),
            subscription: others
        }
    );
    assert_eq!(unknown.stage(), "quitter");
    let message = unknown.to_string();
    assert!(
        message.starts_with("stage `quitter` has no subscription ")
            && message.ends_with(": it is another stage's, or has ended"),
        "{message}"
    );
    let report = running.shutdown().await.expect("a graceful shutdown");
    for seen in [&seen, &other_seen] {
        let ends = &seen.lock().unwrap().ends;
        assert!(
            ends.iter()
                .all(|(_, reason)| *reason != CancelReason::Cancelled),
            "{ends:?}"
        );
    }
    assert_eq!(report.totals().lost, 0);
    drop(other);
}
