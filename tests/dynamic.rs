//! Stages and subscriptions added to a running pipeline through its handle, and subscriptions
//! cancelled (GenStage's `sync_subscribe` to a running producer and `cancel/2`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use genstage::{
    from_iter, CancelMode, CancelReason, Consumer, Context, Emit, Pipeline, PipelineError,
    Producer, StageResult, StageStatus, SubscribeOptions, Subscription,
};

/// Counts up from 0 for ever, emitting exactly what it is asked.
struct Counter(u64);

impl Producer for Counter {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let events = (self.0..self.0 + demand as u64).collect::<Vec<_>>();
        self.0 += demand as u64;
        Ok(events.into())
    }
}

/// Collects what it handles, and the ends of its subscriptions.
#[derive(Default)]
struct Collect {
    events: Arc<Mutex<Vec<u64>>>,
    cancelled: Arc<Mutex<Vec<(String, CancelReason)>>>,
}

impl Collect {
    fn events(&self) -> Arc<Mutex<Vec<u64>>> {
        self.events.clone()
    }
}

impl Consumer for Collect {
    type Input = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.events.lock().unwrap().extend(events);
        tokio::task::yield_now().await;
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.cancelled
            .lock()
            .unwrap()
            .push((subscription.producer().to_owned(), reason.clone()));
        Ok(())
    }
}

async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_added_to_a_running_pipeline_shares_a_running_producer() {
    let first = Collect::default();
    let first_events = first.events();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let first = pipeline.add_consumer_named("first", first);
    pipeline.subscribe_with(&counter, &first, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    until(|| !first_events.lock().unwrap().is_empty()).await;

    let second = Collect::default();
    let second_events = second.events();
    let second = running.add_consumer_named("second", second).await.unwrap();
    running
        .subscribe_with(&counter, &second, SubscribeOptions::new().max_demand(10))
        .await
        .unwrap();
    until(|| !second_events.lock().unwrap().is_empty()).await;

    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0);
    let emitted = report.stage("Counter").unwrap().emitted;
    let first: Vec<u64> = first_events.lock().unwrap().clone();
    let second: Vec<u64> = second_events.lock().unwrap().clone();
    // Every event once, to one of the two; each sees its share in order.
    let all: BTreeSet<u64> = first.iter().chain(&second).copied().collect();
    assert_eq!(all.len() as u64, emitted);
    assert_eq!(all, (0..emitted).collect());
    assert!(first.windows(2).all(|w| w[0] < w[1]));
    assert!(second.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        report.stage("second").unwrap().events_in,
        second.len() as u64
    );
    assert_eq!(
        report.stage("second").unwrap().status,
        StageStatus::Finished
    );
}

#[tokio::test]
async fn a_cancelled_subscription_ends_normally_whatever_the_cancel_mode() {
    for cancel in [
        CancelMode::Temporary,
        CancelMode::Transient,
        CancelMode::Permanent,
    ] {
        let watcher = Collect::default();
        let events = watcher.events();
        let cancelled = watcher.cancelled.clone();
        let keeper = Collect::default();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer(Counter(0));
        // `few` ends when the test drops its sender, after the cancel: the watcher has a producer
        // until then.
        let (few_sender, few) = genstage::from_channel::<u64>(8);
        let few = pipeline.add_producer_named("few", few);
        let keeper = pipeline.add_consumer_named("keeper", keeper);
        pipeline.subscribe_with(&counter, &keeper, SubscribeOptions::new().max_demand(4));
        let watcher = pipeline.add_consumer_named("watcher", watcher);
        pipeline.subscribe(&few, &watcher);
        let running = pipeline.start();

        let options = SubscribeOptions::new().max_demand(4).cancel(cancel);
        let tag = running
            .subscribe_with(&counter, &watcher, options)
            .await
            .unwrap();
        until(|| events.lock().unwrap().iter().any(|&e| e < 100)).await;
        running.cancel(tag).await.unwrap();
        until(|| cancelled.lock().unwrap().len() == 1).await;
        for event in 100..105 {
            few_sender.send(event).await.unwrap();
        }
        drop(few_sender);
        // A subscription is cancelled once; the error names it and its consumer.
        match running.cancel(tag).await {
            Err(error @ PipelineError::UnknownSubscription { subscription, .. }) => {
                assert_eq!(subscription, tag, "{cancel:?}");
                assert_eq!(error.stage(), "watcher", "{cancel:?}");
                let message = error.to_string();
                assert!(
                    message.ends_with(" of stage `watcher` has ended"),
                    "{cancel:?}: {message}"
                );
            }
            other => panic!("{cancel:?}: a second cancel gave {other:?}"),
        }
        until(|| cancelled.lock().unwrap().len() == 2).await;

        let report = running.shutdown().await.unwrap();
        let ends = cancelled.lock().unwrap().clone();
        assert!(
            ends.contains(&("Counter".to_owned(), CancelReason::Cancelled)),
            "{cancel:?}: {ends:?}"
        );
        assert!(ends.contains(&("few".to_owned(), CancelReason::Finished)));
        // The watcher went on with `few`, then finished; the counter kept its other consumer.
        let watcher = report.stage("watcher").unwrap();
        assert_eq!(watcher.status, StageStatus::Finished, "{cancel:?}");
        let seen = events.lock().unwrap().clone();
        assert_eq!(
            seen.iter()
                .filter(|&&e| e >= 100)
                .copied()
                .collect::<Vec<_>>(),
            [100, 101, 102, 103, 104]
        );
        assert_eq!(watcher.events_in, seen.len() as u64);
        assert_eq!(
            report.stage("Counter").unwrap().status,
            StageStatus::ShutDown
        );
        assert!(report.balanced(), "{cancel:?}: {report:?}");
        assert_eq!(report.totals().lost, 0, "{cancel:?}: {report:?}");
    }
}

/// `Counter -> first` and `few -> other` (`few` emits 0, 1, 2 and ends), started.
struct Started {
    running: genstage::PipelineHandle,
    counter: genstage::ProducerRef<Counter>,
    few: genstage::ProducerRef<genstage::FromIter<std::ops::Range<u64>>>,
    first: genstage::ConsumerRef<Collect>,
    other: genstage::ConsumerRef<Collect>,
}

fn counter_and_few() -> Started {
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let few = pipeline.add_producer_named("few", from_iter(0..3u64));
    let first = pipeline.add_consumer_named("first", Collect::default());
    let other = pipeline.add_consumer_named("other", Collect::default());
    pipeline.subscribe(&counter, &first);
    pipeline.subscribe(&few, &other);
    Started {
        running: pipeline.start(),
        counter,
        few,
        first,
        other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pipeline_refuses_what_it_cannot_do_and_says_why() {
    let Started {
        running,
        counter,
        few,
        ..
    } = counter_and_few();

    let late = running.add_consumer(Collect::default()).await.unwrap();
    // Named after its type, made unique.
    assert_eq!(genstage::StageRef::name(&late), "Collect");
    assert!(matches!(
        running.add_consumer_named("first", Collect::default()).await,
        Err(PipelineError::DuplicateName { name, .. }) if name == "first"
    ));
    // A stage added after a refused one is wired by its own reference.
    let later = Collect::default();
    let later_events = later.events();
    let later = running.add_consumer_named("later", later).await.unwrap();
    running.subscribe(&counter, &later).await.unwrap();
    until(|| !later_events.lock().unwrap().is_empty()).await;
    assert!(matches!(
        running
            .subscribe_with(&counter, &late, SubscribeOptions::new().max_demand(0))
            .await,
        Err(PipelineError::InvalidSubscription { producer, consumer, .. })
            if producer == "Counter" && consumer == "Collect"
    ));
    // `few` ends once `other` has its three events.
    let ended = running.stage_ended(&few).await.unwrap();
    assert_eq!((ended.name.as_str(), ended.emitted), ("few", 3));
    assert!(matches!(
        running.subscribe(&few, &late).await,
        Err(PipelineError::StageEnded { stage }) if stage == "few"
    ));
    // A subscription of another pipeline is not this one's to cancel, and its own stays.
    let mut elsewhere = Pipeline::new();
    let numbers = elsewhere.add_producer(Counter(0));
    let kept = elsewhere.add_consumer_named("kept", Collect::default());
    elsewhere.subscribe(&numbers, &kept);
    let elsewhere = elsewhere.start();
    let stranger = elsewhere.add_consumer(Collect::default()).await.unwrap();
    let foreign = elsewhere.subscribe(&numbers, &stranger).await.unwrap();
    match running.cancel(foreign).await {
        Err(error @ PipelineError::UnknownSubscription { consumer: None, .. }) => {
            assert_eq!(error.stage(), "");
            assert!(
                error.to_string().ends_with(
                    " is not one of the pipeline's: it is another \
                 pipeline's, or was never made"
                ),
                "{error}"
            );
        }
        other => panic!("a foreign subscription's cancel gave {other:?}"),
    }
    elsewhere.cancel(foreign).await.unwrap();

    running.shutdown().await.unwrap();
    elsewhere.shutdown().await.unwrap();
}

/// A consumer whose policy restarts it.
struct Restarting;

impl Consumer for Restarting {
    type Input = u64;
    async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
    fn restart_policy(&self) -> genstage::RestartPolicy<u64> {
        genstage::RestartPolicy::transient()
    }
}

/// A stage refused for its restart policy is added again as the error says, with a constructor,
/// under the same name: the refused one took no name (it took `store`, then `Restarting`, so
/// that the second was `DuplicateName`, the third `Restarting#2`).
#[tokio::test]
async fn a_refused_stage_leaves_its_name_free() {
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let first = pipeline.add_consumer_named("first", Collect::default());
    pipeline.subscribe(&counter, &first);
    let running = pipeline.start();
    for name in [Some("store"), None] {
        let name = name.map(str::to_owned);
        let refused = match name.clone() {
            Some(name) => running.add_consumer_named(name, Restarting).await,
            None => running.add_consumer(Restarting).await,
        };
        assert!(matches!(
            refused,
            Err(PipelineError::NotRebuildable {
                constructor: "add_consumer_with",
                ..
            })
        ));
        let added = running
            .add_consumer_with_as(name.clone(), || Restarting)
            .await
            .unwrap();
        let expected = name.unwrap_or_else(|| "Restarting".to_owned());
        assert_eq!(genstage::StageRef::name(&added), expected);
    }
    running.shutdown().await.unwrap();
}

/// `stage_ended` waits for a stage's end and gives its report, the one the pipeline's report
/// holds; from then on the pipeline counts the stage ended, so a subscription to it is refused at
/// once, with no race against its task's last steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_stage_to_end_gives_its_report_and_the_pipeline_counts_it_ended() {
    let Started {
        mut running,
        counter,
        few,
        first,
        other,
    } = counter_and_few();
    let late = running.add_consumer(Collect::default()).await.unwrap();

    // Waited for together, before either has ended: `other` ends as `few`'s end reaches it.
    let (few_end, other_end) = tokio::join!(running.stage_ended(&few), running.stage_ended(&other));
    let (few_end, other_end) = (few_end.unwrap(), other_end.unwrap());
    assert_eq!(
        (few_end.name.as_str(), few_end.emitted, &few_end.status),
        ("few", 3, &StageStatus::Finished)
    );
    assert_eq!(
        (
            other_end.name.as_str(),
            other_end.events_in,
            &other_end.status
        ),
        ("other", 3, &StageStatus::Finished)
    );
    // Asked again, at once, the same report.
    assert_eq!(running.stage_ended(&few).await.unwrap(), few_end);
    assert!(matches!(
        running.subscribe(&few, &late).await,
        Err(PipelineError::StageEnded { stage }) if stage == "few"
    ));
    assert!(matches!(
        running.subscribe(&counter, &other).await,
        Err(PipelineError::StageEnded { stage }) if stage == "other"
    ));

    // A stage still running is not waited for by a future polled once and dropped; a stage of
    // another pipeline is refused.
    use futures::FutureExt;
    assert!(running.stage_ended(&first).now_or_never().is_none());
    let mut elsewhere = Pipeline::new();
    let stranger = elsewhere.add_producer(Counter(0));
    assert!(matches!(
        running.stage_ended(&stranger).await,
        Err(PipelineError::ForeignStage { stage }) if stage == "Counter"
    ));

    // A stage that ends with a shutdown: its report is the pipeline's.
    let stop = running.shutdown_handle();
    let (first_end, asked) = tokio::join!(running.stage_ended(&first), async { stop.shutdown() });
    asked.unwrap();
    let first_end = first_end.unwrap();
    let report = (&mut running).await.unwrap();
    assert_eq!(report.stage("first"), Some(&first_end));
    assert_eq!(report.stage("few"), Some(&few_end));
    assert_eq!(first_end.status, StageStatus::Finished);
    assert!(first_end.events_in > 0);
    assert!(report.balanced(), "{report:?}");
    // Asked again once the pipeline has ended: the same report.
    assert_eq!(running.stage_ended(&first).await.unwrap(), first_end);
}
