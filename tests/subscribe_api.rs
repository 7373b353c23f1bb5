//! GenStage's `sync_subscribe`, `sync_resubscribe` and `async_resubscribe` tests (scenarios 43–55
//! of genstage-semantics.md §4) on the running pipeline's handle: `PipelineHandle::subscribe`,
//! `subscribe_with`, `resubscribe` and `cancel`. Each test names the scenarios it covers.
//!
//! Scenarios that do not apply as GenStage states them:
//! - 46 and 48 (subscribing to an unknown *name*, permanent or temporary): a subscription names its
//!   stages by typed references (`ProducerRef`, `ConsumerRef`, ...), which exist only for stages
//!   that were added, so there is no unknown name. The nearest mistake, a reference to a stage of
//!   another pipeline, is refused with `PipelineError::ForeignStage`
//!   (`a_stage_of_another_pipeline_is_refused_46_48`).
//! - 47 and 49 (subscribing to a producer that has ended, permanent or temporary): GenStage returns
//!   `{:ok, ref}` and then stops a permanent consumer (`:noproc`) or leaves a temporary one alone.
//!   Here the pipeline knows the producer has ended and says so: `PipelineError::StageEnded` naming
//!   it, whatever the cancel mode, and the consumer is left as it was (GenStage's temporary case).
//!   A producer still ending (its `terminate` running) takes the subscription, and the consumer sees
//!   it end when the producer does, never waiting for ever.
//! - 50 (subscribing the same consumer twice to a BroadcastDispatcher producer): needs the
//!   BroadcastDispatcher, issue 14.
//! - 54 and 55 (`async_resubscribe`): GenStage's asynchronous variant differs only in not waiting
//!   for the reply. `resubscribe` is a future either way, and its reply is the new tag; the
//!   behaviour the two scenarios check (a new tag, different from the old one, is subscribed; an
//!   unknown old tag still subscribes) is that of 51 and 52, tested together with them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_channel, from_iter, CallError, CancelMode, CancelReason, Consumer, Context, Demand,
    DemandError, Dispatch, Emit, HandleInfo, Partition, Pipeline, PipelineError, Producer,
    ProducerConsumer, StageRef, StageResult, StageStatus, SubscribeOptions, Subscription,
    SubscriptionTag,
};

/// Counts up from its start for ever, emitting exactly what it is asked.
struct Counter(u64);

impl Producer for Counter {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let events = (self.0..self.0 + demand as u64).collect::<Vec<_>>();
        self.0 += demand as u64;
        Ok(events.into())
    }
}

/// Passes its events on.
struct Relay;

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// What a [`Watch`] saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Subscribed {
        tag: SubscriptionTag,
        producer: String,
        max_demand: usize,
    },
    Events(Vec<u64>),
    Cancelled {
        tag: SubscriptionTag,
        reason: CancelReason,
    },
}

/// What a [`Watch`] saw, shared with the test.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<u64> {
        self.seen()
            .into_iter()
            .flat_map(|seen| match seen {
                Seen::Events(events) => events,
                _ => Vec::new(),
            })
            .collect()
    }

    fn subscribed(&self) -> Vec<SubscriptionTag> {
        self.seen()
            .into_iter()
            .filter_map(|seen| match seen {
                Seen::Subscribed { tag, .. } => Some(tag),
                _ => None,
            })
            .collect()
    }

    fn cancelled(&self) -> Vec<(SubscriptionTag, CancelReason)> {
        self.seen()
            .into_iter()
            .filter_map(|seen| match seen {
                Seen::Cancelled { tag, reason } => Some((tag, reason)),
                _ => None,
            })
            .collect()
    }
}

/// Records its subscriptions (with their tags), its batches, and the ends of its subscriptions.
struct Watch(Log);

impl Watch {
    fn new() -> (Self, Log) {
        let log = Log::default();
        (Watch(log.clone()), log)
    }
}

impl Consumer for Watch {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.0 .0.lock().unwrap().push(Seen::Subscribed {
            tag: subscription.tag(),
            producer: subscription.producer().to_owned(),
            max_demand: subscription.max_demand(),
        });
        Demand::Automatic
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0 .0.lock().unwrap().push(Seen::Events(events));
        tokio::task::yield_now().await;
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.0 .0.lock().unwrap().push(Seen::Cancelled {
            tag: subscription.tag(),
            reason: reason.clone(),
        });
        Ok(())
    }
}

/// A message a stage takes while it runs: refused with `CallError::Ended` once it has ended.
struct Ping;

impl HandleInfo<Ping> for Watch {
    type Emitted = ();
    async fn handle_info(&mut self, _: Ping, _: &mut Context<'_, Self>) -> StageResult<()> {
        Ok(())
    }
}

/// How a consumer's `handle_cancel` is told of a subscription cancelled through the handle
/// (`cancel`, or the old one of a `resubscribe`): GenStage's `{:cancel, reason}`.
const BY_HANDLE: CancelReason = CancelReason::Cancelled;

/// Events received beyond demand, over every stage.
fn excess(report: &genstage::Report) -> u64 {
    report.stages.iter().map(|stage| stage.excess).sum()
}

async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::task::yield_now().await;
    }
}

/// 43: `subscribe` returns the subscription's tag, one per subscription, and it is the tag the
/// consumer's `handle_subscribe` sees.
#[tokio::test]
async fn scenario_43_subscribe_returns_the_subscriptions_tag() {
    let (keeper, _) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let other = pipeline.add_producer_named("other", Counter(1_000_000));
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe(&counter, &keeper);
    pipeline.subscribe(&other, &keeper);
    let running = pipeline.start();

    let (watch, log) = Watch::new();
    let watch = running.add_consumer_named("watch", watch).await.unwrap();
    let first = running
        .subscribe_with(&counter, &watch, SubscribeOptions::new().max_demand(10))
        .await
        .unwrap();
    let second = running
        .subscribe_with(&other, &watch, SubscribeOptions::new().max_demand(20))
        .await
        .unwrap();
    // The same producer twice: a third subscription, with its own tag.
    let third = running
        .subscribe_with(&counter, &watch, SubscribeOptions::new().max_demand(30))
        .await
        .unwrap();
    assert_ne!(first, second);
    assert_ne!(first, third);
    assert_ne!(second, third);

    until(|| log.subscribed().len() == 3).await;
    let subscribed: Vec<(SubscriptionTag, String, usize)> = log
        .seen()
        .into_iter()
        .filter_map(|seen| match seen {
            Seen::Subscribed {
                tag,
                producer,
                max_demand,
            } => Some((tag, producer, max_demand)),
            _ => None,
        })
        .collect();
    assert_eq!(
        subscribed,
        [
            (first, "Counter".to_owned(), 10),
            (second, "other".to_owned(), 20),
            (third, "Counter".to_owned(), 30),
        ]
    );
    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// 43, the order GenStage guarantees with it: a consumer subscribed while the pipeline runs sees the
/// subscription (`handle_subscribe`) before any of its events, however quickly its producer
/// answers the initial ask, and gets exactly what its producer sent it. Many consumers on a
/// multi-threaded runtime, each against an idle producer that answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_43_handle_subscribe_comes_before_the_first_events() {
    const CONSUMERS: usize = 100;
    let (keeper, _) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe_with(&counter, &keeper, SubscribeOptions::new().max_demand(1));
    let running = pipeline.start();

    let mut logs = Vec::new();
    for index in 0..CONSUMERS {
        let (watch, log) = Watch::new();
        let watch = running
            .add_consumer_named(format!("watch{index}"), watch)
            .await
            .unwrap();
        // min 0: the consumer asks again only once it has had all 4 events it asked for; a
        // subscription whose first events were taken as another's would never ask again.
        let options = SubscribeOptions::new().max_demand(4).min_demand(0);
        running
            .subscribe_with(&counter, &watch, options)
            .await
            .unwrap();
        logs.push(log);
    }
    for (index, log) in logs.iter().enumerate() {
        // A consumer that lost track of its demand would wait for ever: fail instead.
        let asked_again =
            tokio::time::timeout(Duration::from_secs(30), until(|| log.events().len() >= 8));
        assert!(asked_again.await.is_ok(), "watch{index}: {:?}", log.seen());
        let seen = log.seen();
        assert!(
            matches!(seen.first(), Some(Seen::Subscribed { .. })),
            "watch{index}: {seen:?}"
        );
    }
    let report = running.shutdown().await.unwrap();
    for (index, log) in logs.iter().enumerate() {
        assert_eq!(
            report.stage(&format!("watch{index}")).unwrap().events_in,
            log.events().len() as u64
        );
    }
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
    assert_eq!(excess(&report), 0, "{report:?}");
}

/// 44: subscribing a consumer that has ended is refused with an error naming it, and disturbs
/// nothing: the producer and its other consumer go on, and every event emitted is handled.
#[tokio::test]
async fn scenario_44_subscribing_a_consumer_that_has_ended_names_it() {
    let (keeper, keeper_log) = Watch::new();
    let (gone, gone_log) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let few = pipeline.add_producer_named("few", from_iter(0..3u64));
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    let gone = pipeline.add_consumer_named("gone", gone);
    pipeline.subscribe_with(&counter, &keeper, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe(&few, &gone);
    let running = pipeline.start();

    // `gone` ends once it has `few`'s three events.
    while gone.info(Ping).is_ok() {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        gone.info(Ping),
        Err(CallError::Ended {
            stage: "gone".to_owned()
        })
    );
    // Refused by the stage as soon as it decides to end; by the pipeline once its end is in.
    let ended = running.stage_ended(&gone).await.unwrap();
    assert_eq!((ended.events_in, ended.status), (3, StageStatus::Finished));
    let error = running.subscribe(&counter, &gone).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::StageEnded { stage } if stage == "gone"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "stage `gone` has ended");
    assert_eq!(error.stage(), "gone");

    // Nothing else disturbed: the keeper goes on getting events.
    let before = keeper_log.events().len();
    until(|| keeper_log.events().len() > before + 20).await;
    let report = running.shutdown().await.unwrap();
    assert_eq!(gone_log.events(), [0, 1, 2]);
    assert_eq!(gone_log.subscribed().len(), 1);
    let keeper = report.stage("keeper").unwrap();
    assert_eq!(keeper.status, StageStatus::Finished);
    assert_eq!(keeper.events_in, keeper_log.events().len() as u64);
    assert_eq!(report.stage("Counter").unwrap().emitted, keeper.events_in);
    assert_eq!(
        keeper_log.events(),
        (0..keeper.events_in).collect::<Vec<_>>()
    );
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// The options GenStage's scenarios 45 and 53 give, and the exact error each gives here: the
/// message GenStage's `{:bad_opts, message}` carries, prefixed with the subscription it is about.
fn bad_options() -> [(SubscribeOptions, DemandError, &'static str); 3] {
    [
        (
            SubscribeOptions::new().max_demand(0),
            DemandError::MaxDemandZero,
            "invalid subscription of `watch` to `Counter`: expected max_demand to be equal to or greater than 1, got: 0",
        ),
        (
            // max_demand defaults to 1000.
            SubscribeOptions::new().min_demand(2000),
            DemandError::MinDemandTooLarge {
                min_demand: 2000,
                max_demand: 1000,
            },
            "invalid subscription of `watch` to `Counter`: expected min_demand to be equal to or less than 999, got: 2000",
        ),
        (
            SubscribeOptions::new().max_demand(10).min_demand(10),
            DemandError::MinDemandTooLarge {
                min_demand: 10,
                max_demand: 10,
            },
            "invalid subscription of `watch` to `Counter`: expected min_demand to be equal to or less than 9, got: 10",
        ),
    ]
}

fn assert_bad_options(
    result: Result<SubscriptionTag, PipelineError>,
    expected: &DemandError,
    message: &str,
) {
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), message);
    assert_eq!(error.stage(), "watch");
    match error {
        PipelineError::InvalidSubscription {
            producer,
            consumer,
            error,
        } => {
            assert_eq!((producer.as_str(), consumer.as_str()), ("Counter", "watch"));
            assert_eq!(&error, expected);
        }
        other => panic!("expected InvalidSubscription, got {other:?}"),
    }
}

/// 45: bad options are refused, naming both stages, with GenStage's messages; nothing is wired,
/// and the consumer may then subscribe with good ones.
#[tokio::test]
async fn scenario_45_bad_options_are_refused_with_genstages_messages() {
    let (keeper, _) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe(&counter, &keeper);
    let running = pipeline.start();
    let (watch, log) = Watch::new();
    let watch = running.add_consumer_named("watch", watch).await.unwrap();

    for (options, expected, message) in bad_options() {
        let result = running.subscribe_with(&counter, &watch, options).await;
        assert_bad_options(result, &expected, message);
    }
    let tag = running
        .subscribe_with(&counter, &watch, SubscribeOptions::new().max_demand(5))
        .await
        .unwrap();
    until(|| !log.events().is_empty()).await;
    // The refused subscriptions never reached the consumer.
    assert_eq!(log.subscribed(), [tag]);
    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// 46 and 48 have no unknown name to subscribe to (see the module docs); their nearest mistake, a
/// stage of another pipeline, is refused and disturbs nothing.
#[tokio::test]
async fn a_stage_of_another_pipeline_is_refused_46_48() {
    let (keeper, _) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe(&counter, &keeper);
    let running = pipeline.start();

    let mut elsewhere = Pipeline::new();
    let (stranger, log) = Watch::new();
    let stranger = elsewhere.add_consumer_named("stranger", stranger);
    let error = running.subscribe(&counter, &stranger).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::ForeignStage { stage } if stage == "stranger"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stage `stranger` belongs to another pipeline"
    );
    let report = running.shutdown().await.unwrap();
    assert!(log.seen().is_empty());
    assert_eq!(report.stages.len(), 2);
    assert!(report.balanced(), "{report:?}");
}

/// 47 and 49: subscribing to a producer that has ended is refused with an error naming it, whatever
/// the cancel mode (GenStage answers `{:ok, ref}`, then stops a permanent consumer); the consumer is
/// left as it was, and may subscribe elsewhere.
#[tokio::test]
async fn scenarios_47_49_subscribing_to_a_producer_that_has_ended_names_it() {
    let (done, _) = Watch::new();
    let (keeper, _) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let few = pipeline.add_producer_named("few", from_iter(0..3u64));
    let done = pipeline.add_consumer_named("done", done);
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe(&few, &done);
    pipeline.subscribe(&counter, &keeper);
    let running = pipeline.start();
    let (watch, log) = Watch::new();
    let watch = running.add_consumer_named("watch", watch).await.unwrap();

    // `few` ends once `done` has its three events.
    let ended = running.stage_ended(&few).await.unwrap();
    assert_eq!((ended.emitted, ended.status), (3, StageStatus::Finished));
    assert_eq!(
        few.estimate_buffered_count().await,
        Err(CallError::Ended {
            stage: "few".to_owned()
        })
    );
    for cancel in [
        CancelMode::Permanent,
        CancelMode::Transient,
        CancelMode::Temporary,
    ] {
        let options = SubscribeOptions::new().cancel(cancel);
        let error = running
            .subscribe_with(&few, &watch, options)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, PipelineError::StageEnded { stage } if stage == "few"),
            "{cancel:?}: {error:?}"
        );
        assert_eq!(error.to_string(), "stage `few` has ended");
    }
    // The consumer is untouched, and still takes a subscription.
    assert!(log.seen().is_empty());
    let tag = running.subscribe(&counter, &watch).await.unwrap();
    until(|| !log.events().is_empty()).await;
    assert_eq!(log.subscribed(), [tag]);
    let report = running.shutdown().await.unwrap();
    assert_eq!(report.stage("watch").unwrap().status, StageStatus::Finished);
    assert_eq!(report.stage("few").unwrap().status, StageStatus::Finished);
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// Emits three events and ends; its `terminate` says it has begun, then waits to be let go.
struct Ending {
    started: Option<tokio::sync::oneshot::Sender<()>>,
    release: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Producer for Ending {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last(vec![0, 1, 2]))
    }

    async fn terminate(&mut self, _: &StageStatus) {
        if let Some(started) = self.started.take() {
            let _ = started.send(());
        }
        if let Some(release) = self.release.take() {
            let _ = release.await;
        }
    }
}

/// 47 and 49, the producer still ending (its `terminate` running) when the subscription is made:
/// the subscription is accepted, as the producer has not ended yet, and the consumer sees it end
/// (`handle_cancel`, finished) when the producer does, rather than waiting for ever; with no other
/// producer, the consumer then finishes (GenStage's permanent consumer exits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_47_49_a_producer_ending_meanwhile_ends_the_subscription() {
    let (started, has_started) = tokio::sync::oneshot::channel();
    let (let_go, release) = tokio::sync::oneshot::channel();
    let (done, done_log) = Watch::new();
    let (keeper, _) = Watch::new();
    let mut pipeline = Pipeline::new();
    let ending = pipeline.add_producer_named(
        "ending",
        Ending {
            started: Some(started),
            release: Some(release),
        },
    );
    let counter = pipeline.add_producer(Counter(0));
    let done = pipeline.add_consumer_named("done", done);
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe(&ending, &done);
    pipeline.subscribe(&counter, &keeper);
    let running = pipeline.start();
    let (watch, log) = Watch::new();
    let watch = running.add_consumer_named("watch", watch).await.unwrap();

    has_started.await.unwrap();
    let tag = running.subscribe(&ending, &watch).await.unwrap();
    until(|| log.subscribed() == [tag]).await;
    let_go.send(()).unwrap();
    until(|| log.cancelled() == [(tag, CancelReason::Finished)]).await;
    let report = running.shutdown().await.unwrap();
    assert!(log.events().is_empty());
    assert_eq!(done_log.events(), [0, 1, 2]);
    assert_eq!(report.stage("watch").unwrap().status, StageStatus::Finished);
    assert_eq!(
        report.stage("ending").unwrap().status,
        StageStatus::Finished
    );
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// 51 and 54: `resubscribe` returns a new tag; `handle_subscribe` sees the old tag, then the new
/// one; `handle_cancel` sees the old one end normally, once; and no event is lost or handled twice
/// across the switch: the consumer, the producer's only one, handles exactly the events emitted,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_51_54_resubscribe_switches_subscriptions_without_losing_an_event() {
    let (watch, log) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let watch = pipeline.add_consumer_named("watch", watch);
    pipeline.subscribe_with(&counter, &watch, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();

    // The tag of a subscription made when the pipeline was built is the one its consumer saw.
    until(|| log.events().len() >= 25).await;
    let [old] = log.subscribed()[..] else {
        panic!("{:?}", log.seen());
    };
    let new = running
        .resubscribe(
            old,
            &counter,
            &watch,
            SubscribeOptions::new().max_demand(3).min_demand(0),
        )
        .await
        .unwrap();
    assert_ne!(new, old);
    until(|| !log.cancelled().is_empty()).await;
    let switched = log.events().len();
    until(|| log.events().len() >= switched + 25).await;
    assert_eq!(log.cancelled(), [(old, BY_HANDLE)]);
    let report = running.shutdown().await.unwrap();

    let seen = log.seen();
    assert_eq!(log.subscribed(), [old, new], "{seen:?}");
    // The new subscription ends with the shutdown.
    assert_eq!(
        log.cancelled(),
        [(old, BY_HANDLE), (new, CancelReason::Finished)]
    );
    // The new subscription has its options; after the old one's end, every batch is the new one's
    // (at most 3 events).
    assert!(seen.contains(&Seen::Subscribed {
        tag: new,
        producer: "Counter".to_owned(),
        max_demand: 3,
    }));
    let end = seen
        .iter()
        .position(|seen| matches!(seen, Seen::Cancelled { .. }))
        .unwrap();
    assert!(seen[end..].iter().all(|seen| match seen {
        Seen::Events(events) => events.len() <= 3,
        _ => true,
    }));
    // Exactly what was emitted, once each, in order.
    let emitted = report.stage("Counter").unwrap().emitted;
    assert_eq!(log.events(), (0..emitted).collect::<Vec<_>>());
    assert_eq!(report.stage("watch").unwrap().events_in, emitted);
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
    assert_eq!(excess(&report), 0, "{report:?}");
}

/// 51 with another producer: the consumer moves from one producer to another, its only one, and
/// does not finish in between; it handles everything the first sent it before its end, then the
/// second's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_51_resubscribe_to_another_producer() {
    let (keeper, keeper_log) = Watch::new();
    let (watch, log) = Watch::new();
    let mut pipeline = Pipeline::new();
    let first = pipeline.add_producer_named("first", Counter(0));
    let second = pipeline.add_producer_named("second", Counter(1_000_000));
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    let watch = pipeline.add_consumer_named("watch", watch);
    pipeline.subscribe_with(&first, &watch, SubscribeOptions::new().max_demand(10));
    // `first` keeps a consumer after the switch: it does not stop.
    pipeline.subscribe_with(&first, &keeper, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&second, &keeper, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();

    until(|| log.events().len() >= 20).await;
    let [old] = log.subscribed()[..] else {
        panic!("{:?}", log.seen());
    };
    let new = running
        .resubscribe(old, &second, &watch, SubscribeOptions::new().max_demand(10))
        .await
        .unwrap();
    // `first` tells of the old subscription's end on its own time, `second` sends on its own.
    until(|| {
        !log.cancelled().is_empty()
            && log.events().iter().filter(|&&e| e >= 1_000_000).count() >= 20
    })
    .await;
    assert_eq!(log.cancelled(), [(old, BY_HANDLE)]);
    let report = running.shutdown().await.unwrap();

    assert_eq!(log.subscribed(), [old, new]);
    assert_eq!(
        log.cancelled(),
        [(old, BY_HANDLE), (new, CancelReason::Finished)]
    );
    // Each producer's events in the order it sent them (the two may interleave at the switch:
    // what `first` sent before the cancel is handled, whenever `second`'s first events come).
    let events = log.events();
    for range in [0..1_000_000, 1_000_000..2_000_000] {
        let from: Vec<u64> = events
            .iter()
            .copied()
            .filter(|e| range.contains(e))
            .collect();
        assert!(from.windows(2).all(|w| w[0] < w[1]), "{from:?}");
    }
    let watch = report.stage("watch").unwrap();
    assert_eq!(watch.status, StageStatus::Finished);
    assert_eq!(watch.events_in, log.events().len() as u64);
    // Each producer's events reach its consumers once each, and none is left over.
    for (producer, start) in [("first", 0), ("second", 1_000_000)] {
        let emitted = report.stage(producer).unwrap().emitted;
        let handled: BTreeSet<u64> = log
            .events()
            .into_iter()
            .chain(keeper_log.events())
            .filter(|&e| (start..start + 1_000_000).contains(&e))
            .collect();
        assert_eq!(handled, (start..start + emitted).collect(), "{producer}");
    }
    assert_eq!(
        watch.events_in + report.stage("keeper").unwrap().events_in,
        report.stage("first").unwrap().emitted + report.stage("second").unwrap().emitted
    );
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// `0..END`, even numbers to partition 0 and odd ones to partition 1, emitted only below the
/// limit the test opens (`open`), so that it cannot finish before the test is done with it.
struct GatedSplit {
    next: u64,
    open: Arc<AtomicU64>,
}

/// What [`GatedSplit`] emits in all.
const END: u64 = 1_000;

impl Partition<u64> for GatedSplit {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

impl Producer for GatedSplit {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = (self.next + demand as u64).min(self.open.load(Ordering::Acquire));
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == END {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

/// 51 on a partitioned producer, to change the options (the use `resubscribe` documents): the
/// consumer of partition 1 resubscribes to the same partition with a new `max_demand` and
/// `min_demand` while events flow. As GenStage cancels the old reference first, the partition is
/// free for the new subscription: the switch succeeds, and every event of the partition is handled
/// once, in order, the ones the old subscription was sent before its end, then those it had not
/// taken (kept by the dispatcher for the partition) and the rest, on the new one. Found by a probe:
/// the new subscription was made while the old one still held the partition, and refused with
/// `PartitionTaken { consumer: "odd", partition: 1, taken_by: "odd" }`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_51_resubscribe_to_the_same_partition_with_new_demand() {
    let open = Arc::new(AtomicU64::new(200));
    let (even, even_log) = Watch::new();
    let (odd, log) = Watch::new();
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer_named(
        "Split",
        GatedSplit {
            next: 0,
            open: open.clone(),
        },
    );
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    let options = SubscribeOptions::new().max_demand(10).min_demand(5);
    pipeline.subscribe_with(&split, &even, options.partition(0));
    pipeline.subscribe_with(&split, &odd, options.partition(1));
    let running = pipeline.start();

    // Half of the 100 odd events below 200 handled: the rest are on their way, or kept for the
    // partition, or not yet emitted.
    until(|| log.events().len() >= 50).await;
    let [old] = log.subscribed()[..] else {
        panic!("{:?}", log.seen());
    };
    let options = SubscribeOptions::new()
        .partition(1)
        .max_demand(4)
        .min_demand(2);
    let new = running
        .resubscribe(old, &split, &odd, options)
        .await
        .expect("the partition is free once the old subscription is cancelled");
    assert_ne!(new, old);
    open.store(END, Ordering::Release);
    let report = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the pipeline ends once its events are handled")
        .unwrap();

    // Every event of each partition, once each, in order.
    let odds: Vec<u64> = (0..END).filter(|n| n % 2 == 1).collect();
    let evens: Vec<u64> = (0..END).filter(|n| n % 2 == 0).collect();
    assert_eq!(log.events(), odds);
    assert_eq!(even_log.events(), evens);
    assert_eq!(log.subscribed(), [old, new]);
    assert_eq!(
        log.cancelled(),
        [(old, BY_HANDLE), (new, CancelReason::Finished)]
    );
    let seen = log.seen();
    assert!(seen.contains(&Seen::Subscribed {
        tag: new,
        producer: "Split".to_owned(),
        max_demand: 4,
    }));
    // After the old subscription's end, every batch is the new one's (at most 4 events).
    let end = seen
        .iter()
        .position(|seen| matches!(seen, Seen::Cancelled { .. }))
        .unwrap();
    assert!(seen[end..].iter().all(|seen| match seen {
        Seen::Events(events) => events.len() <= 4,
        _ => true,
    }));
    assert_eq!(report.stage("Split").unwrap().emitted, END);
    assert_eq!(report.stage("odd").unwrap().events_in, END / 2);
    assert_eq!(report.stage("even").unwrap().events_in, END / 2);
    for name in ["odd", "even"] {
        assert_eq!(report.stage(name).unwrap().status, StageStatus::Finished);
    }
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
    assert_eq!(excess(&report), 0, "{report:?}");
}

/// 52 and 55: `resubscribe` with an old tag that is not a running subscription of the consumer
/// still subscribes: a tag already cancelled, and another consumer's tag (that subscription is left
/// alone).
#[tokio::test]
async fn scenarios_52_55_resubscribe_with_an_unknown_old_tag_still_subscribes() {
    let (watch, log) = Watch::new();
    let (other, other_log) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    // `idle` never sends: it keeps `watch` running while it has no other producer.
    let (idle_sender, idle) = from_channel::<u64>(1);
    let idle = pipeline.add_producer_named("idle", idle);
    let watch = pipeline.add_consumer_named("watch", watch);
    let other = pipeline.add_consumer_named("other", other);
    pipeline.subscribe(&idle, &watch);
    pipeline.subscribe_with(&counter, &other, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    until(|| log.subscribed().len() == 1 && other_log.subscribed().len() == 1).await;
    let [idle_tag] = log.subscribed()[..] else {
        panic!("{:?}", log.seen());
    };
    let [other_tag] = other_log.subscribed()[..] else {
        panic!("{:?}", other_log.seen());
    };

    // A tag already cancelled.
    let cancelled = running.subscribe(&counter, &watch).await.unwrap();
    until(|| !log.events().is_empty()).await;
    running.cancel(cancelled).await.unwrap();
    until(|| log.cancelled().len() == 1).await;
    let renewed = running
        .resubscribe(
            cancelled,
            &counter,
            &watch,
            SubscribeOptions::new().max_demand(10),
        )
        .await
        .unwrap();
    assert_ne!(renewed, cancelled);
    // Another consumer's running subscription.
    let added = running
        .resubscribe(
            other_tag,
            &counter,
            &watch,
            SubscribeOptions::new().max_demand(10),
        )
        .await
        .unwrap();
    assert_ne!(added, other_tag);
    assert_ne!(added, renewed);
    until(|| log.subscribed().len() == 4).await;
    let before = other_log.events().len();
    until(|| other_log.events().len() > before + 20).await;

    assert_eq!(log.subscribed(), [idle_tag, cancelled, renewed, added]);
    assert_eq!(log.cancelled(), [(cancelled, BY_HANDLE)]);
    assert!(other_log.cancelled().is_empty(), "{:?}", other_log.seen());
    // Both new subscriptions run: the cancelled tag stays cancelled.
    assert!(matches!(
        running.cancel(cancelled).await,
        Err(PipelineError::UnknownSubscription { .. })
    ));
    running.cancel(renewed).await.unwrap();
    running.cancel(added).await.unwrap();
    running.cancel(other_tag).await.unwrap();
    drop(idle_sender);
    let report = running.await.unwrap();
    assert_eq!(report.stage("watch").unwrap().status, StageStatus::Finished);
    assert_eq!(log.cancelled().len(), 4);
    let handled: BTreeSet<u64> = log.events().into_iter().chain(other_log.events()).collect();
    let emitted = report.stage("Counter").unwrap().emitted;
    assert_eq!(handled, (0..emitted).collect());
    assert_eq!(
        (log.events().len() + other_log.events().len()) as u64,
        emitted
    );
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// 53: `resubscribe` with bad options gives 45's errors, and leaves the old subscription running.
#[tokio::test]
async fn scenario_53_resubscribe_with_bad_options_changes_nothing() {
    let (watch, log) = Watch::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let watch = pipeline.add_consumer_named("watch", watch);
    pipeline.subscribe_with(&counter, &watch, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    until(|| !log.events().is_empty()).await;
    let [old] = log.subscribed()[..] else {
        panic!("{:?}", log.seen());
    };

    for (options, expected, message) in bad_options() {
        let result = running.resubscribe(old, &counter, &watch, options).await;
        assert_bad_options(result, &expected, message);
    }
    let before = log.events().len();
    until(|| log.events().len() > before + 20).await;
    assert_eq!(log.subscribed(), [old]);
    assert!(log.cancelled().is_empty());
    // Still running: it cancels.
    running.cancel(old).await.unwrap();
    let report = running.await.unwrap();
    assert_eq!(log.cancelled(), [(old, BY_HANDLE)]);
    let emitted = report.stage("Counter").unwrap().emitted;
    assert_eq!(log.events(), (0..emitted).collect::<Vec<_>>());
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// The cycle check of a subscription made while the pipeline runs follows only the subscriptions
/// that still carry events: once `a -> b` is cancelled, `b -> a` closes no cycle and is accepted;
/// `a -> b` again then would, and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_subscription_closes_no_cycle() {
    let (d, d_log) = Watch::new();
    let (c, _) = Watch::new();
    let mut pipeline = Pipeline::new();
    let p1 = pipeline.add_producer_named("p1", Counter(0));
    let p2 = pipeline.add_producer_named("p2", Counter(1_000_000));
    let a = pipeline.add_producer_consumer_named("a", Relay);
    let b = pipeline.add_producer_consumer_named("b", Relay);
    let d = pipeline.add_consumer_named("d", d);
    let c = pipeline.add_consumer_named("c", c);
    // p1 -> a -> d and p2 -> b -> c, so that `a` keeps a consumer and `b` a producer when a -> b
    // is cancelled.
    pipeline.subscribe_with(&p1, &a, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&a, &d, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&p2, &b, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&b, &c, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();

    let a_to_b = running.subscribe(&a, &b).await.unwrap();
    let error = running.subscribe(&b, &a).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "the subscriptions form a cycle: b -> a -> b"
    );
    running.cancel(a_to_b).await.unwrap();
    // The cycle it closed is gone.
    running
        .subscribe_with(&b, &a, SubscribeOptions::new().max_demand(10))
        .await
        .unwrap();
    let error = running.subscribe(&a, &b).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::Cycle { stages } if stages == &["a", "b", "a"]),
        "{error:?}"
    );
    // p2's events now reach d through b and a.
    until(|| d_log.events().iter().any(|&e| e >= 1_000_000)).await;
    let report = running.shutdown().await.unwrap();
    for stage in ["a", "b", "c", "d"] {
        assert_eq!(
            report.stage(stage).unwrap().status,
            StageStatus::Finished,
            "{stage}"
        );
    }
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}
