//! Producers and producer_consumers added to a running pipeline through its handle (GenStage's
//! `start_link` of a stage, then `sync_subscribe` to or from the running ones): a new source for
//! running consumers, a new step between a running producer and a new consumer, and every way
//! such a stage ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_iter, CancelMode, CancelReason, Consumer, Context, Demand, DemandMode, Emit, HandleCast,
    LossReason, NoInput, Pipeline, PipelineError, Producer, ProducerConsumer, Restart,
    RestartPolicy, StageRef, StageResult, StageStatus, SubscribeOptions, Subscription,
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

/// Collects what it handles, with the name of the producer each batch came from, and the ends
/// of its subscriptions.
#[derive(Default)]
struct Collect {
    events: Arc<Mutex<Vec<(String, u64)>>>,
    cancelled: Arc<Mutex<Vec<(String, CancelReason)>>>,
    producers: HashMap<SubscriptionTag, String>,
    from: String,
}

type Collected = Arc<Mutex<Vec<(String, u64)>>>;

impl Collect {
    fn events(&self) -> Collected {
        self.events.clone()
    }
}

/// What `events` holds from `producer`, in the order it was handled.
fn from(events: &Collected, producer: &str) -> Vec<u64> {
    let events = events.lock().unwrap();
    let from = events.iter().filter(|(from, _)| from == producer);
    from.map(|&(_, event)| event).collect()
}

impl Consumer for Collect {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        let producer = subscription.producer().to_owned();
        self.producers.insert(subscription.tag(), producer);
        Demand::Automatic
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.from = self.producers[&subscription].clone();
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let from = &self.from;
        let batch = events.into_iter().map(|event| (from.clone(), event));
        self.events.lock().unwrap().extend(batch);
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

/// Doubles each event.
struct Double;

impl ProducerConsumer for Double {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events.into_iter().map(|n| n * 2).collect())
    }
}

/// A producer that fails (or panics) when first asked.
struct Broken {
    panics: bool,
}

impl Producer for Broken {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        if self.panics {
            panic!("broken on purpose");
        }
        Err("broken on purpose".into())
    }
}

/// A producer whose policy restarts it.
struct Restarting;

impl Producer for Restarting {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last(Vec::new()))
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient()
    }
}

/// A producer_consumer whose policy restarts it.
struct RestartingStep;

impl ProducerConsumer for RestartingStep {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::task::yield_now().await;
    }
}

/// Waits for the stage to end: a message to it then says so.
async fn until_ended<P: Producer>(stage: &genstage::ProducerRef<P>) {
    while stage.estimate_buffered_count().await.is_ok() {
        tokio::task::yield_now().await;
    }
}

/// A guard against a hang, far longer than any of these tests take: never reached when they pass.
const HANG: Duration = Duration::from_secs(30);

/// A pipeline of an endless `old` producer and a `sink` consumer, running.
fn running_old_and_sink(
    sink: Collect,
) -> (
    genstage::PipelineHandle,
    genstage::ProducerRef<Counter>,
    genstage::ConsumerRef<Collect>,
) {
    let mut pipeline = Pipeline::new();
    let old = pipeline.add_producer_named("old", Counter(0));
    let sink = pipeline.add_consumer_named("sink", sink);
    pipeline.subscribe_with(&old, &sink, SubscribeOptions::new().max_demand(10));
    (pipeline.start(), old, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_added_to_a_running_pipeline_feeds_a_running_consumer() {
    let sink = Collect::default();
    let events = sink.events();
    let (running, _old, sink) = running_old_and_sink(sink);
    until(|| !from(&events, "old").is_empty()).await;

    let new = running
        .add_producer_named("new", Counter(1_000_000))
        .await
        .unwrap();
    assert_eq!(new.name(), "new");
    let options = SubscribeOptions::new().max_demand(10);
    running.subscribe_with(&new, &sink, options).await.unwrap();
    until(|| from(&events, "new").len() >= 100).await;

    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0);
    // Every event of each producer once, in the order it emitted them.
    let (old_emitted, new_emitted) = (
        report.stage("old").unwrap().emitted,
        report.stage("new").unwrap().emitted,
    );
    assert_eq!(from(&events, "old"), (0..old_emitted).collect::<Vec<_>>());
    let new_events: Vec<u64> = (1_000_000..1_000_000 + new_emitted).collect();
    assert_eq!(from(&events, "new"), new_events);
    assert_eq!(
        report.stage("sink").unwrap().events_in,
        old_emitted + new_emitted
    );
    assert_eq!(
        events.lock().unwrap().len() as u64,
        old_emitted + new_emitted
    );
    for producer in ["old", "new"] {
        assert_eq!(
            report.stage(producer).unwrap().status,
            StageStatus::ShutDown
        );
        let edge = report
            .edges
            .iter()
            .find(|edge| edge.producer == producer)
            .unwrap();
        assert_eq!(edge.consumer, "sink");
        assert_eq!(edge.sent, report.stage(producer).unwrap().emitted);
        assert_eq!(edge.handled, edge.sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finite_added_producer_ends_and_its_consumer_goes_on_whatever_the_cancel_mode() {
    for cancel in [
        CancelMode::Permanent,
        CancelMode::Transient,
        CancelMode::Temporary,
    ] {
        let sink = Collect::default();
        let (events, cancelled) = (sink.events(), sink.cancelled.clone());
        let (running, _old, sink) = running_old_and_sink(sink);

        let batch = running
            .add_producer_named("batch", from_iter(1000..1050u64))
            .await
            .unwrap();
        let options = SubscribeOptions::new().max_demand(10).cancel(cancel);
        running
            .subscribe_with(&batch, &sink, options)
            .await
            .unwrap();
        until_ended(&batch).await;
        until(|| cancelled.lock().unwrap().len() == 1).await;
        // The sink goes on with `old`.
        let before = from(&events, "old").len();
        until(|| from(&events, "old").len() > before + 20).await;

        let report = running.shutdown().await.unwrap();
        assert!(report.balanced(), "{cancel:?}: {report:?}");
        assert_eq!(report.totals().lost, 0, "{cancel:?}");
        assert_eq!(from(&events, "batch"), (1000..1050).collect::<Vec<_>>());
        let batch = report.stage("batch").unwrap();
        assert_eq!((batch.emitted, &batch.status), (50, &StageStatus::Finished));
        // `batch` ended first; `old`'s subscription, at the shutdown.
        let ends = [
            ("batch".to_owned(), CancelReason::Finished),
            ("old".to_owned(), CancelReason::Finished),
        ];
        assert_eq!(*cancelled.lock().unwrap(), ends, "{cancel:?}");
        let sink = report.stage("sink").unwrap();
        assert_eq!(sink.status, StageStatus::Finished, "{cancel:?}");
        assert_eq!(sink.events_in, 50 + report.stage("old").unwrap().emitted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_producer_that_fails_or_panics_ends_as_a_built_one_does() {
    for (panics, cancel) in [
        (false, CancelMode::Temporary),
        (true, CancelMode::Temporary),
        (false, CancelMode::Permanent),
        (true, CancelMode::Transient),
    ] {
        let sink = Collect::default();
        let (events, cancelled) = (sink.events(), sink.cancelled.clone());
        let (mut running, _old, sink) = running_old_and_sink(sink);
        let broken = running
            .add_producer_named("broken", Broken { panics })
            .await
            .unwrap();
        let options = SubscribeOptions::new().cancel(cancel);
        running
            .subscribe_with(&broken, &sink, options)
            .await
            .unwrap();
        until(|| cancelled.lock().unwrap().len() == 1).await;
        let failed = CancelReason::Failed {
            cause: "broken".to_owned(),
        };
        assert_eq!(
            *cancelled.lock().unwrap(),
            [("broken".to_owned(), failed)],
            "{panics} {cancel:?}"
        );
        let error = if cancel == CancelMode::Temporary {
            // The sink goes on with `old`.
            let before = from(&events, "old").len();
            until(|| from(&events, "old").len() > before + 20).await;
            running.shutdown().await.unwrap_err()
        } else {
            // The sink stops, and `old`, its only consumer gone, after it.
            tokio::time::timeout(HANG, &mut running)
                .await
                .unwrap()
                .unwrap_err()
        };
        let broken_status = if panics {
            assert!(
                matches!(&error, PipelineError::StagePanicked { stage, .. } if stage == "broken")
            );
            StageStatus::Panicked("broken on purpose".to_owned())
        } else {
            assert!(
                matches!(&error, PipelineError::StageFailed { stage, .. } if stage == "broken")
            );
            StageStatus::Failed("broken on purpose".to_owned())
        };
        let report = error.report().unwrap();
        assert!(report.balanced(), "{panics} {cancel:?}: {report:?}");
        assert_eq!(report.stage("broken").unwrap().status, broken_status);
        assert_eq!(report.stage("broken").unwrap().emitted, 0);
        let (sink, old) = (report.stage("sink").unwrap(), report.stage("old").unwrap());
        if cancel == CancelMode::Temporary {
            assert_eq!(sink.status, StageStatus::Finished);
            assert_eq!(old.status, StageStatus::ShutDown);
            assert_eq!(report.totals().lost, 0);
        } else {
            let cause = Some("broken".to_owned());
            assert_eq!(sink.status, StageStatus::Cancelled { cause });
            assert_eq!(old.status, StageStatus::Cancelled { cause: None });
        }
        assert_eq!(from(&events, "old").len() as u64, sink.events_in);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_producer_consumer_joins_a_running_producer_to_an_added_consumer() {
    let first = Collect::default();
    let first_events = first.events();
    let (running, old, _first) = running_old_and_sink(first);
    until(|| !from(&first_events, "old").is_empty()).await;

    // Wired from its consumer's side first: it waits for its producer meanwhile.
    let double = running
        .add_producer_consumer_named("double", Double)
        .await
        .unwrap();
    let tail = Collect::default();
    let tail_events = tail.events();
    let tail = running.add_consumer_named("tail", tail).await.unwrap();
    let options = SubscribeOptions::new().max_demand(10);
    running
        .subscribe_with(&double, &tail, options)
        .await
        .unwrap();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(double.estimate_buffered_count().await, Ok(0));
    running
        .subscribe_with(&old, &double, options)
        .await
        .unwrap();
    until(|| from(&tail_events, "double").len() >= 100).await;

    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0);
    // Each of `old`'s events once: to `sink`, or doubled to `tail`, each in order.
    let to_sink = from(&first_events, "old");
    let to_tail = from(&tail_events, "double");
    assert!(to_tail.iter().all(|n| n % 2 == 0));
    let mut all: Vec<u64> = to_sink.to_vec();
    all.extend(to_tail.iter().map(|n| n / 2));
    all.sort_unstable();
    assert_eq!(
        all,
        (0..report.stage("old").unwrap().emitted).collect::<Vec<_>>()
    );
    assert!(to_sink.windows(2).all(|w| w[0] < w[1]));
    assert!(to_tail.windows(2).all(|w| w[0] < w[1]));
    let double = report.stage("double").unwrap();
    assert_eq!(double.events_in, to_tail.len() as u64);
    assert_eq!(double.emitted, to_tail.len() as u64);
    assert_eq!(double.status, StageStatus::Finished);
    assert_eq!(
        report.stage("tail").unwrap().events_in,
        to_tail.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_producers_reference_reaches_it_at_once() {
    let sink = Collect::default();
    let events = sink.events();
    let (running, _old, sink) = running_old_and_sink(sink);
    let new = running
        .add_producer_named("new", Counter(1_000_000))
        .await
        .unwrap();
    // Set to accumulate before it has a consumer, it holds its consumer's asks.
    new.demand(DemandMode::Accumulate).unwrap();
    assert_eq!(new.demand_mode().await, Ok(DemandMode::Accumulate));
    assert_eq!(new.estimate_buffered_count().await, Ok(0));
    running.subscribe(&new, &sink).await.unwrap();
    assert_eq!(new.demand_mode().await, Ok(DemandMode::Accumulate));
    new.demand(DemandMode::Forward).unwrap();
    until(|| !from(&events, "new").is_empty()).await;
    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    let new_emitted = report.stage("new").unwrap().emitted;
    assert_eq!(
        from(&events, "new"),
        (1_000_000..1_000_000 + new_emitted).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_pipeline_refuses_a_producer_it_cannot_add_and_says_why() {
    let (mut running, _old, _sink) = running_old_and_sink(Collect::default());

    // Names: `old` and `sink` are taken; a type's name is made unique.
    assert!(matches!(
        running.add_producer_named("old", Counter(0)).await,
        Err(PipelineError::DuplicateName { name, .. }) if name == "old"
    ));
    assert!(matches!(
        running.add_producer_consumer_named("sink", Double).await,
        Err(PipelineError::DuplicateName { name, .. }) if name == "sink"
    ));
    assert!(matches!(
        running.add_producer_with_as(Some("old".to_owned()), || Counter(0)).await,
        Err(PipelineError::DuplicateName { name, .. }) if name == "old"
    ));
    assert!(matches!(
        running.add_producer_consumer_with_as(Some("old".to_owned()), || Double).await,
        Err(PipelineError::DuplicateName { name, .. }) if name == "old"
    ));
    let counter = running.add_producer(Counter(0)).await.unwrap();
    assert_eq!(counter.name(), "Counter");
    let again = running.add_producer(Counter(0)).await.unwrap();
    assert_eq!(again.name(), "Counter#2");
    let double = running.add_producer_consumer(Double).await.unwrap();
    assert_eq!(double.name(), "Double");

    // A value its policy restarts cannot be made again.
    assert!(matches!(
        running.add_producer(Restarting).await,
        Err(PipelineError::NotRebuildable {
            stage,
            restart: Restart::Transient,
            constructor: "add_producer_with",
        }) if stage == "Restarting"
    ));
    assert!(matches!(
        running.add_producer_consumer_named("step", RestartingStep).await,
        Err(PipelineError::NotRebuildable {
            stage,
            restart: Restart::Transient,
            constructor: "add_producer_consumer_with",
        }) if stage == "step"
    ));
    // Added as the error says, under the name it was refused: a refused stage takes no name.
    let restarting = running.add_producer_with(|| Restarting).await.unwrap();
    assert_eq!(restarting.name(), "Restarting");
    let step = running
        .add_producer_consumer_with_as(Some("step".to_owned()), || RestartingStep)
        .await
        .unwrap();
    assert_eq!(step.name(), "step");

    // Once the pipeline has ended.
    running.shutdown_handle().shutdown().unwrap();
    let report = tokio::time::timeout(HANG, &mut running)
        .await
        .unwrap()
        .unwrap();
    assert!(report.balanced(), "{report:?}");
    assert!(matches!(
        running.add_producer(Counter(0)).await,
        Err(PipelineError::NotRunning)
    ));
    assert!(matches!(
        running.add_producer_named("late", Counter(0)).await,
        Err(PipelineError::NotRunning)
    ));
    assert!(matches!(
        running.add_producer_consumer(Double).await,
        Err(PipelineError::NotRunning)
    ));
    assert!(matches!(
        running.add_producer_consumer_with(|| Double).await,
        Err(PipelineError::NotRunning)
    ));
}

/// Emits only what it is cast.
struct Told;

/// Emit these now.
struct Say(Vec<u64>);

impl Producer for Told {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
}

impl HandleCast<Say> for Told {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Say(events): Say,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_producer_keeps_what_it_emits_for_its_first_consumer() {
    let sink = Collect::default();
    let events = sink.events();
    let (running, _old, sink) = running_old_and_sink(sink);
    let told = running.add_producer_named("told", Told).await.unwrap();
    told.cast(Say(vec![1, 2, 3])).unwrap();
    assert_eq!(told.estimate_buffered_count().await, Ok(3));
    running.subscribe(&told, &sink).await.unwrap();
    until(|| from(&events, "told").len() == 3).await;
    told.cast(Say(vec![4])).unwrap();
    until(|| from(&events, "told").len() == 4).await;
    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0);
    assert_eq!(from(&events, "told"), [1, 2, 3, 4]);
    let told = report.stage("told").unwrap();
    assert_eq!((told.emitted, &told.status), (4, &StageStatus::ShutDown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_added_stages_that_never_had_a_consumer() {
    let sink = Collect::default();
    let events = sink.events();
    let (running, old, _sink) = running_old_and_sink(sink);
    let idle = running
        .add_producer_named("idle", Counter(0))
        .await
        .unwrap();
    let lone = running
        .add_producer_consumer_named("lone", Double)
        .await
        .unwrap();
    // `fed` has a producer, and nowhere to deliver what it is sent.
    let fed = running
        .add_producer_consumer_named("fed", Double)
        .await
        .unwrap();
    running.subscribe(&old, &fed).await.unwrap();
    // `told` holds three events, and no consumer to give them to.
    let told = running.add_producer_named("told", Told).await.unwrap();
    told.cast(Say(vec![1, 2, 3])).unwrap();
    assert_eq!(told.estimate_buffered_count().await, Ok(3));
    // `queue` has five events in its channel, accepted by `send`.
    let (sender, queue) = genstage::from_channel::<u64>(10);
    let queue = running.add_producer_named("queue", queue).await.unwrap();
    for n in 0..5 {
        sender.send(n).await.unwrap();
    }
    // A consumer of `lone`'s that never has a producer.
    let waiting = running
        .add_consumer_named("waiting", Collect::default())
        .await
        .unwrap();
    running.subscribe(&lone, &waiting).await.unwrap();
    until(|| !from(&events, "old").is_empty()).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    // Each waits for a consumer: none has ended.
    for stage in [
        idle.name(),
        lone.name(),
        fed.name(),
        told.name(),
        queue.name(),
        waiting.name(),
    ] {
        assert!(!running.is_finished(), "{stage}");
    }

    let report = tokio::time::timeout(HANG, running.shutdown())
        .await
        .expect("the shutdown ends")
        .unwrap();
    assert!(report.balanced(), "{report:?}");
    let idle = report.stage("idle").unwrap();
    assert_eq!((idle.emitted, &idle.status), (0, &StageStatus::ShutDown));
    let lone = report.stage("lone").unwrap();
    assert_eq!(
        (lone.events_in, lone.emitted, &lone.status),
        (0, 0, &StageStatus::Finished)
    );
    let waiting = report.stage("waiting").unwrap();
    assert_eq!(
        (waiting.events_in, &waiting.status),
        (0, &StageStatus::Finished)
    );
    // What `fed` was sent and `told` emitted, they could deliver nowhere: lost, and said so.
    let fed = report.stage("fed").unwrap();
    let no_consumer = StageStatus::ShutDown;
    assert_eq!((fed.emitted, &fed.status), (0, &no_consumer));
    let to_fed = report
        .edges
        .iter()
        .find(|edge| edge.consumer == "fed")
        .unwrap();
    assert!(to_fed.sent > 0);
    assert_eq!((to_fed.handled, to_fed.lost), (0, to_fed.sent));
    let told = report.stage("told").unwrap();
    assert_eq!(
        (told.emitted, told.lost, &told.status),
        (3, 3, &no_consumer)
    );
    // `queue` stops as `told` does, and counts what its channel held, never emitted.
    let queue = report.stage("queue").unwrap();
    assert_eq!(
        (queue.emitted, queue.lost, &queue.status),
        (5, 5, &no_consumer)
    );
    assert_eq!(queue.losses[0].reason, LossReason::NotEmitted);
    assert_eq!(report.totals().lost, to_fed.sent + 3 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_stops_added_producers_with_the_rest() {
    let sink = Collect::default();
    let events = sink.events();
    let (running, _old, sink) = running_old_and_sink(sink);
    let _idle = running
        .add_producer_named("idle", Counter(0))
        .await
        .unwrap();
    let new = running
        .add_producer_named("new", Counter(1_000_000))
        .await
        .unwrap();
    running.subscribe(&new, &sink).await.unwrap();
    until(|| !from(&events, "new").is_empty()).await;
    let report = tokio::time::timeout(HANG, running.abort())
        .await
        .unwrap()
        .unwrap();
    assert!(report.balanced(), "{report:?}");
    for stage in ["old", "new", "idle"] {
        assert_eq!(
            report.stage(stage).unwrap().status,
            StageStatus::Aborted,
            "{stage}"
        );
    }
    assert!(report.stage("new").unwrap().emitted > 0);
}

/// An added producer_consumer whose producer ends before it has a consumer keeps what it was sent
/// for its first consumer, delivers it, and then ends, as its input has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_producer_consumer_keeps_its_input_for_its_first_consumer() {
    let (running, _old, _sink) = running_old_and_sink(Collect::default());
    let batch = running
        .add_producer_named("batch", from_iter(0..30u64))
        .await
        .unwrap();
    let double = running
        .add_producer_consumer_named("double", Double)
        .await
        .unwrap();
    running.subscribe(&batch, &double).await.unwrap();
    until_ended(&batch).await;
    assert_eq!(double.estimate_buffered_count().await, Ok(0));

    let tail = Collect::default();
    let (events, cancelled) = (tail.events(), tail.cancelled.clone());
    let tail = running.add_consumer_named("tail", tail).await.unwrap();
    running.subscribe(&double, &tail).await.unwrap();
    // `double` ends once it has delivered the thirty, and `tail` with it.
    until(|| cancelled.lock().unwrap().len() == 1).await;
    let expected: Vec<u64> = (0..30).map(|n| n * 2).collect();
    assert_eq!(from(&events, "double"), expected);
    assert_eq!(
        *cancelled.lock().unwrap(),
        [("double".to_owned(), CancelReason::Finished)]
    );

    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0);
    for stage in ["batch", "double", "tail"] {
        let stage = report.stage(stage).unwrap();
        assert_eq!(stage.status, StageStatus::Finished, "{}", stage.name);
    }
    let double = report.stage("double").unwrap();
    assert_eq!((double.events_in, double.emitted), (30, 30));
    assert_eq!(report.stage("tail").unwrap().events_in, 30);
}
