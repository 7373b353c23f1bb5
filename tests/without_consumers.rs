//! Producers and producer_consumers that wait for consumers (`WithoutConsumers::Wait`): GenStage's
//! broadcaster, which starts with no consumer, has consumers subscribe and leave through the
//! running pipeline's handle, and stays up when the last one leaves, keeping what it buffers for
//! the next. And the default (`Stop`), asserted as it was.
//!
//! Events are pushed with `call`s, answered once the events are dispatched (to a consumer, or to
//! the buffer); consumers hand what they handle to the test through a channel, which the test
//! awaits. Runs are wrapped in a timeout that guards against hangs; it is not a timing assertion.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{stage, CancelReason, Demand, PipelineHandle, Subscriber};
use genstage::{
    CallError, Consumer, Context, Dispatch, DispatchSetupError, Emit, HandleCall, Loss, LossReason,
    Partition, Pipeline, PipelineError, Producer, ProducerConsumer, ProducerOptions, ProducerRef,
    ReplyTo, Report, StageRef, StageResult, StageStatus, SubscribeOptions, Subscription,
    SubscriptionTag, WithoutConsumers,
};
use tokio::sync::mpsc;

async fn guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("the pipeline hung (no end within 30 s)")
}

/// How a [`Feed`] dispatches.
#[derive(Clone, Copy)]
enum Kind {
    Broadcast,
    Demand,
    /// Two partitions, by parity (even numbers to partition 0).
    Parity,
}

/// Emits what it is pushed; never ends by itself.
struct Feed {
    without: WithoutConsumers,
    kind: Kind,
    buffer_size: Option<usize>,
    /// Where it tells how it ended (its `terminate`).
    ended: Option<mpsc::UnboundedSender<StageStatus>>,
    /// Where it tells why its consumers left (its `handle_consumer_cancel`).
    cancels: Option<mpsc::UnboundedSender<CancelReason>>,
}

impl Feed {
    fn new(without: WithoutConsumers, kind: Kind) -> Self {
        Feed {
            without,
            kind,
            buffer_size: None,
            ended: None,
            cancels: None,
        }
    }
}

impl Producer for Feed {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        match self.kind {
            Kind::Broadcast => Dispatch::broadcast(),
            Kind::Demand => Dispatch::demand(),
            Kind::Parity => Dispatch::partition(2),
        }
    }
    fn producer_options(&self) -> ProducerOptions {
        let options = ProducerOptions::for_producer().without_consumers(self.without);
        match self.buffer_size {
            Some(size) => options.buffer_size(size),
            None => options,
        }
    }
    async fn terminate(&mut self, status: &StageStatus) {
        if let Some(ended) = &self.ended {
            let _ = ended.send(status.clone());
        }
    }
    async fn handle_consumer_cancel(
        &mut self,
        _: &Subscriber,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        if let Some(cancels) = &self.cancels {
            let _ = cancels.send(reason.clone());
        }
        Ok(Vec::new())
    }
}

impl Partition<u64> for Feed {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// Events to emit; answered once they are dispatched.
struct Push(Vec<u64>);

impl HandleCall<Push> for Feed {
    type Reply = ();
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        Push(events): Push,
        reply: ReplyTo<()>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(());
        Ok(events)
    }
}

/// The last events to emit (`Emit::last`); answered once they are dispatched.
struct Last(Vec<u64>);

impl HandleCall<Last> for Feed {
    type Reply = ();
    type Emitted = Emit<u64>;
    async fn handle_call(
        &mut self,
        Last(events): Last,
        reply: ReplyTo<()>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Emit<u64>> {
        reply.reply(());
        Ok(Emit::last(events))
    }
}

/// Hands every event it handles to the test; keeps the tag of its subscriptions.
struct Listener {
    heard: mpsc::UnboundedSender<u64>,
    tags: Arc<Mutex<Vec<SubscriptionTag>>>,
}

impl Listener {
    fn new() -> (Self, mpsc::UnboundedReceiver<u64>) {
        let (heard, events) = mpsc::unbounded_channel();
        let listener = Listener {
            heard,
            tags: Arc::default(),
        };
        (listener, events)
    }
}

impl Consumer for Listener {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for event in events {
            let _ = self.heard.send(event);
        }
        Ok(())
    }
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.tags.lock().unwrap().push(subscription.tag());
        Demand::Automatic
    }
}

/// Multiplies by ten.
struct Tens;

impl ProducerConsumer for Tens {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events.into_iter().map(|n| n * 10).collect())
    }
    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer_consumer().without_consumers(WithoutConsumers::Wait)
    }
}

/// The next `n` events a listener handles.
async fn next(events: &mut mpsc::UnboundedReceiver<u64>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        match guard(events.recv()).await {
            Some(event) => got.push(event),
            None => panic!("the listener ended after {got:?}"),
        }
    }
    got
}

async fn push(feed: &ProducerRef<Feed>, events: &[u64]) {
    guard(feed.call(Push(events.to_vec())))
        .await
        .expect("the feed takes the push");
}

async fn add_listener(
    running: &PipelineHandle,
    name: &str,
) -> (
    genstage::ConsumerRef<Listener>,
    mpsc::UnboundedReceiver<u64>,
) {
    let (listener, events) = Listener::new();
    let listener = guard(running.add_consumer_named(name, listener))
        .await
        .expect("the listener is added");
    (listener, events)
}

fn stage<'a>(report: &'a Report, name: &str) -> &'a genstage::StageReport {
    report
        .stage(name)
        .unwrap_or_else(|| panic!("no stage `{name}` in {report:?}"))
}

/// The broadcaster starts alone; a listener added and subscribed gets what is pushed after; once
/// it is cancelled, what is pushed waits in the buffer, and the next listener gets it first, in
/// order, then what is pushed after. A graceful shutdown balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_broadcaster_starts_alone_and_outlives_its_listeners() {
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named(
        "broadcaster",
        Feed::new(WithoutConsumers::Wait, Kind::Broadcast),
    );
    let running = pipeline.start();

    let (first, mut first_heard) = add_listener(&running, "first").await;
    let first_tag = guard(running.subscribe(&feed, &first)).await.unwrap();
    push(&feed, &[1, 2, 3]).await;
    assert_eq!(next(&mut first_heard, 3).await, [1, 2, 3]);

    guard(running.cancel(first_tag)).await.unwrap();
    // The cancel reached the broadcaster before the push (one mailbox, in order): both wait.
    push(&feed, &[4, 5]).await;
    assert_eq!(guard(feed.estimate_buffered_count()).await.unwrap(), 2);
    // The first listener finished with its only subscription, and heard nothing more.
    assert_eq!(guard(first_heard.recv()).await, None);

    let (second, mut second_heard) = add_listener(&running, "second").await;
    guard(running.subscribe(&feed, &second)).await.unwrap();
    assert_eq!(next(&mut second_heard, 2).await, [4, 5]);
    push(&feed, &[6]).await;
    assert_eq!(next(&mut second_heard, 1).await, [6]);

    let report = guard(running.shutdown()).await.unwrap();
    let broadcaster = stage(&report, "broadcaster");
    assert_eq!(broadcaster.status, StageStatus::ShutDown);
    assert_eq!(
        (
            broadcaster.emitted,
            broadcaster.events_out,
            broadcaster.lost
        ),
        (6, 6, 0)
    );
    let first = stage(&report, "first");
    assert_eq!(
        (first.events_in, &first.status),
        (3, &StageStatus::Finished)
    );
    let second = stage(&report, "second");
    assert_eq!(
        (second.events_in, &second.status),
        (3, &StageStatus::Finished)
    );
    assert!(report.balanced(), "{report:?}");
}

/// The default: the same broadcaster stops when its last listener is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcaster_that_does_not_wait_stops_with_its_last_listener() {
    let (ended, mut end) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named(
        "broadcaster",
        Feed {
            ended: Some(ended),
            ..Feed::new(WithoutConsumers::Stop, Kind::Broadcast)
        },
    );
    let (listener, mut heard) = Listener::new();
    let tags = listener.tags.clone();
    let listener = pipeline.add_consumer_named("only", listener);
    pipeline.subscribe(&feed, &listener);
    let running = pipeline.start();

    push(&feed, &[1, 2, 3]).await;
    assert_eq!(next(&mut heard, 3).await, [1, 2, 3]);
    let tag = tags.lock().unwrap()[0];
    guard(running.cancel(tag)).await.unwrap();
    assert_eq!(
        guard(end.recv()).await,
        Some(StageStatus::Cancelled { cause: None })
    );

    // Every stage has ended: the run ends by itself.
    let report = guard(running).await.unwrap();
    let broadcaster = stage(&report, "broadcaster");
    assert_eq!(broadcaster.status, StageStatus::Cancelled { cause: None });
    assert_eq!((broadcaster.emitted, broadcaster.events_out), (3, 3));
    assert_eq!(stage(&report, "only").events_in, 3);
    assert!(report.balanced(), "{report:?}");
    assert!(matches!(
        feed.call(Push(vec![4])).await,
        Err(CallError::Ended { .. })
    ));
}

/// Fails on its first batch.
struct Fragile;

impl Consumer for Fragile {
    type Input = u64;
    async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
        Err("fragile".into())
    }
}

/// A waiting producer whose only consumer fails stays up, and the next consumer gets what it
/// emitted meanwhile; the run's failure names the consumer, and its report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_producer_outlives_a_failed_consumer() {
    let (cancels, mut cancelled) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named(
        "feed",
        Feed {
            cancels: Some(cancels),
            ..Feed::new(WithoutConsumers::Wait, Kind::Demand)
        },
    );
    let running = pipeline.start();
    let fragile = guard(running.add_consumer_named("fragile", Fragile))
        .await
        .unwrap();
    guard(running.subscribe(&feed, &fragile)).await.unwrap();
    push(&feed, &[1, 2]).await;
    assert_eq!(
        guard(cancelled.recv()).await,
        Some(CancelReason::Failed {
            cause: "fragile".to_owned()
        })
    );
    push(&feed, &[3, 4]).await;
    assert_eq!(guard(feed.estimate_buffered_count()).await.unwrap(), 2);
    let (listener, mut heard) = add_listener(&running, "next").await;
    guard(running.subscribe(&feed, &listener)).await.unwrap();
    assert_eq!(next(&mut heard, 2).await, [3, 4]);

    let error = guard(running.shutdown()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "fragile"),
        "{error:?}"
    );
    let report = error.report().expect("a failed run has its report");
    let feed = stage(report, "feed");
    assert_eq!(feed.status, StageStatus::ShutDown);
    assert_eq!((feed.emitted, feed.events_out, feed.lost), (4, 4, 0));
    let fragile = stage(report, "fragile");
    assert_eq!(
        fragile.losses,
        [Loss {
            count: 2,
            reason: LossReason::FailedBatch
        }]
    );
    assert_eq!(stage(report, "next").events_in, 2);
    assert!(report.balanced(), "{report:?}");
}

/// A waiting producer still ends by its own end: alone, at once; with events buffered, once a
/// consumer has taken them. Either way the run then ends by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_producer_ends_by_its_own_end() {
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named("feed", Feed::new(WithoutConsumers::Wait, Kind::Demand));
    let running = pipeline.start();
    guard(feed.call(Last(Vec::new()))).await.unwrap();
    let report = guard(running).await.unwrap();
    assert_eq!(stage(&report, "feed").status, StageStatus::Finished);

    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named("feed", Feed::new(WithoutConsumers::Wait, Kind::Demand));
    let mut running = pipeline.start();
    guard(feed.call(Last(vec![1, 2]))).await.unwrap();
    // Its last events wait for a consumer: it has not ended.
    assert_eq!(guard(feed.estimate_buffered_count()).await.unwrap(), 2);
    assert!(!running.is_finished());
    let (listener, mut heard) = add_listener(&running, "late").await;
    guard(running.subscribe(&feed, &listener)).await.unwrap();
    assert_eq!(next(&mut heard, 2).await, [1, 2]);
    let report = guard(&mut running).await.unwrap();
    assert_eq!(stage(&report, "feed").status, StageStatus::Finished);
    assert_eq!(stage(&report, "late").status, StageStatus::Finished);
    assert_eq!(stage(&report, "late").events_in, 2);
    assert!(report.balanced(), "{report:?}");
}

/// A graceful shutdown of a waiting producer that has no consumer and holds events ends it at
/// once: the events are lost with its buffer, and the report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_counts_what_a_waiting_producer_holds_alone_as_lost() {
    for listened_before in [false, true] {
        let mut pipeline = Pipeline::new();
        let feed =
            pipeline.add_producer_named("feed", Feed::new(WithoutConsumers::Wait, Kind::Demand));
        let running = pipeline.start();
        if listened_before {
            let (listener, mut heard) = add_listener(&running, "gone").await;
            let tag = guard(running.subscribe(&feed, &listener)).await.unwrap();
            push(&feed, &[1, 2]).await;
            assert_eq!(next(&mut heard, 2).await, [1, 2]);
            guard(running.cancel(tag)).await.unwrap();
        }
        push(&feed, &[10, 11, 12, 13, 14]).await;
        assert_eq!(guard(feed.estimate_buffered_count()).await.unwrap(), 5);

        let report = guard(running.shutdown()).await.unwrap();
        let feed = stage(&report, "feed");
        assert_eq!(feed.status, StageStatus::ShutDown, "{listened_before}");
        let sent = if listened_before { 2 } else { 0 };
        assert_eq!(
            (feed.emitted, feed.events_out, feed.lost),
            (5 + sent, sent, 5)
        );
        assert_eq!(
            feed.losses,
            [Loss {
                count: 5,
                reason: LossReason::Buffered
            }]
        );
        assert!(report.balanced(), "{report:?}");
    }
}

/// While a waiting producer has no consumer, its buffer keeps its size: an overflow is discarded
/// and counted as always (the newest kept, by default), and the next consumer gets the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_producer_keeps_its_buffer_size() {
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named(
        "feed",
        Feed {
            buffer_size: Some(3),
            ..Feed::new(WithoutConsumers::Wait, Kind::Demand)
        },
    );
    let running = pipeline.start();
    push(&feed, &[1, 2, 3, 4, 5]).await;
    assert_eq!(guard(feed.estimate_buffered_count()).await.unwrap(), 3);
    let (listener, mut heard) = add_listener(&running, "late").await;
    guard(running.subscribe(&feed, &listener)).await.unwrap();
    assert_eq!(next(&mut heard, 3).await, [3, 4, 5]);

    let report = guard(running.shutdown()).await.unwrap();
    let feed = stage(&report, "feed");
    assert_eq!(
        (feed.emitted, feed.discarded, feed.events_out, feed.lost),
        (5, 2, 3, 0)
    );
    assert_eq!(stage(&report, "late").events_in, 3);
    assert!(report.balanced(), "{report:?}");
}

/// A producer_consumer that waits: it starts with no consumer, keeps its subscription to its
/// producer when its consumer leaves, holds its input meanwhile, and hands it to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_producer_consumer_keeps_its_input_for_the_next_consumer() {
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named("feed", Feed::new(WithoutConsumers::Stop, Kind::Demand));
    let tens = pipeline.add_producer_consumer_named("tens", Tens);
    pipeline.subscribe(&feed, &tens);
    let running = pipeline.start();

    let (first, mut first_heard) = add_listener(&running, "first").await;
    let first_tag = guard(running.subscribe(&tens, &first)).await.unwrap();
    push(&feed, &[1, 2, 3]).await;
    assert_eq!(next(&mut first_heard, 3).await, [10, 20, 30]);
    guard(running.cancel(first_tag)).await.unwrap();
    assert_eq!(guard(first_heard.recv()).await, None);

    // Nobody downstream: `tens` holds them unhandled, and its producer stays up with it.
    push(&feed, &[4, 5]).await;
    let (second, mut second_heard) = add_listener(&running, "second").await;
    guard(running.subscribe(&tens, &second)).await.unwrap();
    assert_eq!(next(&mut second_heard, 2).await, [40, 50]);
    push(&feed, &[6]).await;
    assert_eq!(next(&mut second_heard, 1).await, [60]);

    let report = guard(running.shutdown()).await.unwrap();
    assert_eq!(stage(&report, "feed").status, StageStatus::ShutDown);
    assert_eq!(stage(&report, "feed").events_out, 6);
    let tens = stage(&report, "tens");
    assert_eq!(tens.status, StageStatus::Finished);
    assert_eq!(
        (tens.events_in, tens.emitted, tens.events_out, tens.lost),
        (6, 6, 6, 0)
    );
    assert_eq!(stage(&report, "first").events_in, 3);
    assert_eq!(stage(&report, "second").events_in, 3);
    assert!(report.balanced(), "{report:?}");
}

/// A graceful shutdown of a waiting producer_consumer with no consumer and input it could not
/// handle ends it at once: that input is lost, unhandled, and the report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_a_waiting_producer_consumer_left_alone() {
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named("feed", Feed::new(WithoutConsumers::Stop, Kind::Demand));
    let tens = pipeline.add_producer_consumer_named("tens", Tens);
    pipeline.subscribe(&feed, &tens);
    let running = pipeline.start();
    push(&feed, &[1, 2, 3]).await;

    let report = guard(running.shutdown()).await.unwrap();
    let tens = stage(&report, "tens");
    assert_eq!(tens.status, StageStatus::ShutDown);
    assert_eq!((tens.events_in, tens.emitted, tens.lost), (0, 0, 3));
    assert_eq!(
        tens.losses,
        [Loss {
            count: 3,
            reason: LossReason::Unhandled
        }]
    );
    assert_eq!(stage(&report, "feed").events_out, 3);
    assert!(report.balanced(), "{report:?}");
}

/// A partitioned producer that waits may start with no consumer: it buffers its events until
/// consumers ask, then keeps those of a partition with no consumer for the one that takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_partitioned_producer_keeps_each_partitions_events() {
    let mut pipeline = Pipeline::new();
    let feed =
        pipeline.add_producer_named("split", Feed::new(WithoutConsumers::Wait, Kind::Parity));
    let running = pipeline.start();
    push(&feed, &[1, 2, 3, 4]).await;
    assert_eq!(guard(feed.estimate_buffered_count()).await.unwrap(), 4);

    let (evens, mut evens_heard) = add_listener(&running, "evens").await;
    let options = SubscribeOptions::new().partition(0);
    guard(running.subscribe_with(&feed, &evens, options))
        .await
        .unwrap();
    assert_eq!(next(&mut evens_heard, 2).await, [2, 4]);
    // The odd ones, kept for partition 1.
    assert_eq!(guard(feed.estimate_buffered_count()).await.unwrap(), 2);
    let (odds, mut odds_heard) = add_listener(&running, "odds").await;
    let options = SubscribeOptions::new().partition(1);
    guard(running.subscribe_with(&feed, &odds, options))
        .await
        .unwrap();
    assert_eq!(next(&mut odds_heard, 2).await, [1, 3]);

    let report = guard(running.shutdown()).await.unwrap();
    assert_eq!(stage(&report, "split").events_out, 4);
    assert!(report.balanced(), "{report:?}");
}

/// With consumers at the start, a partitioned producer that waits must have every partition
/// taken, as any partitioned stage.
#[tokio::test]
async fn a_waiting_partitioned_producer_with_consumers_needs_them_all() {
    let mut pipeline = Pipeline::new();
    let feed =
        pipeline.add_producer_named("split", Feed::new(WithoutConsumers::Wait, Kind::Parity));
    let (evens, _heard) = Listener::new();
    let evens = pipeline.add_consumer_named("evens", evens);
    pipeline.subscribe_with(&feed, &evens, SubscribeOptions::new().partition(0));
    let error = guard(pipeline.run()).await.unwrap_err();
    assert!(
        matches!(
            &error,
            PipelineError::InvalidDispatch {
                stage,
                error: DispatchSetupError::PartitionVacant {
                    partition: 1,
                    partitions: 2
                },
            } if stage == "split"
        ),
        "{error:?}"
    );
}

/// A producer that does not wait still needs a consumer to start.
#[tokio::test]
async fn a_producer_that_does_not_wait_needs_a_consumer_to_start() {
    let mut pipeline = Pipeline::new();
    pipeline.add_producer_named("lonely", Feed::new(WithoutConsumers::Stop, Kind::Broadcast));
    let error = guard(pipeline.start()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::NoConsumer { stage } if stage == "lonely"),
        "{error:?}"
    );
}

/// Broadcasts what it is told, keeping at most 2 events while nobody listens; written with
/// `#[stage]`.
struct Announcer;

/// A number to announce; answered once it is dispatched.
struct Announce(u64);

#[stage(producer, dispatcher = broadcast, buffer_size = 2, without_consumers = wait)]
impl Announcer {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_call(&mut self, Announce(n): Announce, reply: ReplyTo<()>) -> Vec<u64> {
        reply.reply(());
        vec![n]
    }
}

/// Halves what it gets; written with `#[stage]`.
struct Halves;

#[stage(producer_consumer, without_consumers = wait)]
impl Halves {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().map(|n| n / 2).collect()
    }
}

/// `#[stage(…, without_consumers = wait)]` sets the option, on a producer and a producer_consumer:
/// both start with no consumer, and keep their events for the one that comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_attribute_sets_without_consumers() {
    let mut pipeline = Pipeline::new();
    let announcer = pipeline.add_producer_named("announcer", Announcer);
    let feed = pipeline.add_producer_named("feed", Feed::new(WithoutConsumers::Stop, Kind::Demand));
    let halves = pipeline.add_producer_consumer_named("halves", Halves);
    pipeline.subscribe(&feed, &halves);
    let running = pipeline.start();

    for n in 1..=3 {
        guard(announcer.call(Announce(n))).await.unwrap();
    }
    assert_eq!(guard(announcer.estimate_buffered_count()).await.unwrap(), 2);
    push(&feed, &[2, 4, 6]).await;

    let (listener, mut heard) = add_listener(&running, "listener").await;
    guard(running.subscribe(&announcer, &listener))
        .await
        .unwrap();
    assert_eq!(next(&mut heard, 2).await, [2, 3]);
    guard(running.subscribe(&halves, &listener)).await.unwrap();
    assert_eq!(next(&mut heard, 3).await, [1, 2, 3]);

    let report = guard(running.shutdown()).await.unwrap();
    let announcer = stage(&report, "announcer");
    assert_eq!(
        (announcer.emitted, announcer.discarded, announcer.events_out),
        (3, 1, 2)
    );
    assert_eq!(stage(&report, "halves").events_out, 3);
    assert_eq!(stage(&report, "listener").events_in, 5);
    assert!(report.balanced(), "{report:?}");
}
