//! A consumer subscribes to a broadcasting stage at most once: a second subscription would hand it
//! every event twice, and GenStage's `BroadcastDispatcher` refuses it (`:already_subscribed`).
//! genstage refuses it where the wiring is checked: `run()` for the builder's subscriptions, the
//! handle's `subscribe` for a running pipeline's, each with an error naming the producer and the
//! consumer. A demand dispatcher, which shares events between subscriptions, takes a consumer
//! twice, as GenStage's does, and so does a dispatcher of a user's own that does not say it
//! broadcasts.
//!
//! What is not a second subscription is not refused: a resubscribe that replaces the first (a
//! restarted consumer keeps its subscription, and replaces it so), a subscription made once the
//! first was cancelled (by the handle or by the consumer itself) or refused by its producer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::dispatcher::{
    BroadcastDispatcher, DemandDispatcher, DispatchError, DispatchOptions, Dispatcher, Outbox,
    SubscriptionId,
};
use genstage::{
    Asker, CancelMode, CancelReason, Consumer, Context, Demand, Dispatch, DispatchSetupError, Emit,
    Pipeline, PipelineError, PipelineHandle, Producer, ProducerConsumer, ProducerOptions, Report,
    RestartPolicy, StageResult, StageStatus, SubscribeOptions, Subscription, SubscriptionRefused,
    SubscriptionTag, WithoutConsumers,
};
use tokio::sync::mpsc;

/// Emits `next, next + 1, …` as asked, to every consumer (or shared, with `broadcast` off), up
/// to `end` (`None`: never ends).
struct Numbers {
    next: u64,
    end: Option<u64>,
    broadcast: bool,
}

impl Numbers {
    fn broadcast(end: Option<u64>) -> Self {
        Numbers {
            next: 0,
            end,
            broadcast: true,
        }
    }
}

impl Producer for Numbers {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = self.next + demand as u64;
        let stop = self.end.map_or(stop, |end| stop.min(end));
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if Some(stop) == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        if self.broadcast {
            Dispatch::broadcast()
        } else {
            Dispatch::demand()
        }
    }
}

/// Emits nothing, and never ends.
struct Idle;

impl Producer for Idle {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
}

/// Records what it handles.
struct Record(Arc<Mutex<Vec<u64>>>);

impl Record {
    fn new() -> (Self, Arc<Mutex<Vec<u64>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        (Record(seen.clone()), seen)
    }
}

impl Consumer for Record {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.lock().expect("not poisoned").extend(events);
        Ok(())
    }
}

fn already_subscribed(error: PipelineError, consumer: &str) {
    already_subscribed_to(error, "numbers", consumer);
}

fn already_subscribed_to(error: PipelineError, producer: &str, consumer: &str) {
    match error {
        PipelineError::InvalidDispatch { stage, error } => {
            assert_eq!(stage, producer);
            assert_eq!(
                error,
                DispatchSetupError::AlreadySubscribed {
                    consumer: consumer.into()
                }
            );
        }
        other => panic!("not a dispatch error: {other:?}"),
    }
}

/// Shuts the pipeline down, within a bound against hangs, and checks that its report balances.
async fn shut_down(running: PipelineHandle) -> Report {
    let report = tokio::time::timeout(Duration::from_secs(30), running.shutdown())
        .await
        .expect("no hang")
        .expect("the pipeline shuts down");
    assert!(report.totals().balanced());
    report
}

/// Checks that `0..n` were seen, each once, in any order (shared between two subscriptions).
fn each_once(seen: &Mutex<Vec<u64>>, n: u64) {
    let mut seen = seen.lock().expect("not poisoned").clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<u64>>(), "each event once");
}

/// How many events were seen, checking that none was seen twice and that they came in order.
fn each_once_in_order(seen: &Mutex<Vec<u64>>) -> u64 {
    let seen = seen.lock().expect("not poisoned");
    if let Some(pair) = seen.windows(2).find(|pair| pair[0] >= pair[1]) {
        panic!(
            "{} came after {}: an event twice, or out of order",
            pair[1], pair[0]
        );
    }
    seen.len() as u64
}

#[tokio::test]
async fn run_refuses_a_consumer_subscribed_twice_to_a_broadcast_with_or_without_a_selector() {
    for selected in [false, true] {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(Some(10)));
        let all = pipeline.add_consumer_named("all", Record::new().0);
        let twice = pipeline.add_consumer_named("twice", Record::new().0);
        pipeline.subscribe(&numbers, &all);
        pipeline.subscribe(&numbers, &twice);
        if selected {
            pipeline.subscribe_selected(&numbers, &twice, SubscribeOptions::new(), |n| n % 2 == 0);
        } else {
            pipeline.subscribe(&numbers, &twice);
        }
        already_subscribed(pipeline.run().await.unwrap_err(), "twice");
    }
}

#[tokio::test]
async fn the_refusal_names_both_stages_and_says_what_to_do() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(Some(10)));
    let twice = pipeline.add_consumer_named("twice", Record::new().0);
    pipeline.subscribe(&numbers, &twice);
    pipeline.subscribe(&numbers, &twice);
    assert_eq!(
        pipeline.run().await.unwrap_err().to_string(),
        "the subscriptions to `numbers` do not fit its dispatcher: `twice` is already subscribed \
         to it: the stage broadcasts, so a second subscription would hand it every event twice; \
         subscribe it once (one selector can accept what two would), and replace a running \
         subscription with `PipelineHandle::resubscribe`"
    );
}

#[tokio::test]
async fn a_consumer_subscribed_twice_to_a_demand_dispatcher_shares_the_events_between_both() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named(
        "numbers",
        Numbers {
            next: 0,
            end: Some(1000),
            broadcast: false,
        },
    );
    let (record, seen) = Record::new();
    let twice = pipeline.add_consumer_named("twice", record);
    let options = SubscribeOptions::new().max_demand(10);
    pipeline.subscribe_with(&numbers, &twice, options);
    pipeline.subscribe_with(&numbers, &twice, options);
    let report = pipeline.run().await.expect("the pipeline runs");
    assert_eq!(report.totals().handled, 1000);
    each_once(&seen, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_refuses_a_second_subscription_to_a_broadcast_until_the_first_is_cancelled() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(None));
    let (record, seen) = Record::new();
    let consumer = pipeline.add_consumer_named("consumer", record);
    pipeline.subscribe_with(&numbers, &consumer, SubscribeOptions::new().max_demand(5));
    // Keeps the consumer running while it has no subscription to `numbers`: a consumer left
    // without producers finishes, and a subscription to it then fails with `StageEnded`.
    let idle = pipeline.add_producer_named("idle", Idle);
    pipeline.subscribe(&idle, &consumer);
    let running = pipeline.start();
    let built = running.subscriptions(&numbers, &consumer).await.unwrap();
    assert_eq!(built.len(), 1);

    already_subscribed(
        running.subscribe(&numbers, &consumer).await.unwrap_err(),
        "consumer",
    );
    already_subscribed(
        running
            .subscribe_selected(&numbers, &consumer, SubscribeOptions::new(), |_| true)
            .await
            .unwrap_err(),
        "consumer",
    );
    // A consumer added while running, subscribed once: refused the second time too.
    let late = running
        .add_consumer_named("late", Record::new().0)
        .await
        .unwrap();
    running.subscribe(&numbers, &late).await.unwrap();
    already_subscribed(
        running.subscribe(&numbers, &late).await.unwrap_err(),
        "late",
    );

    // Replacing the subscription is not a second one; nor is one made once the first is cancelled.
    let options = SubscribeOptions::new().max_demand(7);
    let replaced = running
        .resubscribe(built[0], &numbers, &consumer, options)
        .await
        .unwrap();
    running.cancel(replaced).await.unwrap();
    let again = running.subscribe(&numbers, &consumer).await.unwrap();
    assert_eq!(
        running.subscriptions(&numbers, &consumer).await.unwrap(),
        [again]
    );

    let report = shut_down(running).await;
    assert_eq!(report.totals().lost, 0);
    let handled = each_once_in_order(&seen);
    assert_eq!(report.stage("consumer").unwrap().events_in, handled);
}

/// Passes on every event, to every consumer.
struct Relay;

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

#[tokio::test]
async fn run_refuses_an_instance_of_a_group_subscribed_twice_to_a_broadcasting_producer_consumer() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(Some(10)));
    let relay = pipeline.add_producer_consumer_named("relay", Relay);
    pipeline.subscribe(&numbers, &relay);
    for record in pipeline.add_consumers(2, |_| Record::new().0) {
        pipeline.subscribe(&relay, &record);
        pipeline.subscribe(&relay, &record);
    }
    let error = pipeline.run().await.unwrap_err();
    already_subscribed_to(error, "relay", "Record[0]");
}

#[tokio::test]
async fn consumers_subscribed_once_to_each_of_two_broadcasts_get_every_event_of_each_once() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(Some(100)));
    let relay = pipeline.add_producer_consumer_named("relay", Relay);
    pipeline.subscribe(&numbers, &relay);
    let mut seen = Vec::new();
    for name in ["a", "b"] {
        let (record, events) = Record::new();
        let record = pipeline.add_consumer_named(name, record);
        pipeline.subscribe(&numbers, &record);
        pipeline.subscribe(&relay, &record);
        seen.push(events);
    }
    let report = pipeline.run().await.expect("the pipeline runs");
    assert!(report.totals().balanced());
    for events in seen {
        let mut events = events.lock().expect("not poisoned").clone();
        events.sort_unstable();
        let twice_each: Vec<u64> = (0..100).flat_map(|n| [n, n]).collect();
        assert_eq!(events, twice_each, "each event once from each producer");
    }
}

/// Shares events between its subscriptions as a [`DemandDispatcher`] does, written by a user who
/// does not say whether it broadcasts.
struct Shared(DemandDispatcher);

impl Dispatcher<u64> for Shared {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<u64>,
    ) -> Result<usize, DispatchError> {
        Dispatcher::<u64>::subscribe(&mut self.0, sub, options)
    }
    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        Dispatcher::<u64>::cancel(&mut self.0, sub)
    }
    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, u64>) -> usize {
        Dispatcher::<u64>::ask(&mut self.0, sub, demand, out)
    }
    fn dispatch(
        &mut self,
        events: Vec<u64>,
        out: &mut Outbox<'_, u64>,
    ) -> Result<Vec<u64>, DispatchError> {
        self.0.dispatch(events, out)
    }
    fn capacity(&self) -> usize {
        Dispatcher::<u64>::capacity(&self.0)
    }
    fn consumers(&self) -> usize {
        Dispatcher::<u64>::consumers(&self.0)
    }
}

/// Emits `0..1000` through a [`Shared`] dispatcher.
struct SharedNumbers(Numbers);

impl Producer for SharedNumbers {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.handle_demand(demand).await
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(Shared(DemandDispatcher::new()))
    }
}

#[tokio::test]
async fn a_custom_dispatcher_that_does_not_say_it_broadcasts_takes_a_consumer_twice() {
    let mut pipeline = Pipeline::new();
    let numbers = Numbers {
        next: 0,
        end: Some(1000),
        broadcast: false,
    };
    let numbers = pipeline.add_producer_named("numbers", SharedNumbers(numbers));
    let (record, seen) = Record::new();
    let twice = pipeline.add_consumer_named("twice", record);
    let options = SubscribeOptions::new().max_demand(10);
    pipeline.subscribe_with(&numbers, &twice, options);
    pipeline.subscribe_with(&numbers, &twice, options);
    let report = pipeline.run().await.expect("the pipeline runs");
    assert_eq!(report.totals().handled, 1000);
    assert_eq!(report.edges.len(), 2);
    each_once(&seen, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscribe_is_refused_when_it_would_leave_the_consumer_subscribed_twice() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(None));
    let more = pipeline.add_producer_named("more", Numbers::broadcast(None));
    let (record, seen) = Record::new();
    let consumer = pipeline.add_consumer_named("consumer", record);
    let (other, _) = Record::new();
    let other = pipeline.add_consumer_named("other", other);
    pipeline.subscribe(&numbers, &consumer);
    pipeline.subscribe(&more, &other);
    let running = pipeline.start();
    let first = running.subscriptions(&numbers, &consumer).await.unwrap()[0];

    // `first`, cancelled, replaces nothing: the resubscribe would be a second subscription.
    let options = SubscribeOptions::new().max_demand(5);
    let live = running
        .resubscribe(first, &numbers, &consumer, options)
        .await
        .unwrap();
    already_subscribed(
        running
            .resubscribe(first, &numbers, &consumer, options)
            .await
            .unwrap_err(),
        "consumer",
    );
    // Nor does a subscription to another producer: `consumer` is on `more` already.
    let on_more = running.subscribe(&more, &consumer).await.unwrap();
    already_subscribed_to(
        running
            .resubscribe(live, &more, &consumer, options)
            .await
            .unwrap_err(),
        "more",
        "consumer",
    );
    // A refused resubscribe leaves the subscription it was to replace as it was.
    assert_eq!(
        running.subscriptions(&numbers, &consumer).await.unwrap(),
        [live]
    );
    assert_eq!(
        running.subscriptions(&more, &consumer).await.unwrap(),
        [on_more]
    );
    // What replaces a running subscription is allowed, with a selector or to another producer.
    let selected = running
        .resubscribe_selected(live, &numbers, &consumer, options, |_| true)
        .await
        .unwrap();
    let moved = running
        .resubscribe(on_more, &numbers, &other, options)
        .await
        .unwrap();
    assert_eq!(
        running.subscriptions(&numbers, &consumer).await.unwrap(),
        [selected]
    );
    assert_eq!(
        running.subscriptions(&numbers, &other).await.unwrap(),
        [moved]
    );

    let report = shut_down(running).await;
    assert_eq!(report.totals().lost, 0);
    let handled = seen.lock().expect("not poisoned").len() as u64;
    assert_eq!(report.stage("consumer").unwrap().events_in, handled);
}

/// What a [`Probe`] tells the test.
#[derive(Debug, PartialEq)]
enum Seen {
    Subscribed(SubscriptionTag),
    Cancelled(SubscriptionTag, CancelReason),
    /// It cancelled this subscription itself.
    CancelledItself(SubscriptionTag),
}

/// A consumer that tells the test of its subscriptions. On its first batch from `numbers`, it
/// cancels that subscription (`cancel_first`); on its first batch, it fails (`fail`, shared by the
/// values its restarts make).
struct Probe {
    seen: mpsc::UnboundedSender<Seen>,
    fail: Arc<AtomicBool>,
    cancel_first: bool,
    /// Its subscriptions to `numbers`.
    askers: Vec<(SubscriptionTag, Asker)>,
    batch_from: Option<SubscriptionTag>,
}

impl Probe {
    fn new(seen: mpsc::UnboundedSender<Seen>) -> Self {
        Probe {
            seen,
            fail: Arc::new(AtomicBool::new(false)),
            cancel_first: false,
            askers: Vec::new(),
            batch_from: None,
        }
    }
}

impl Consumer for Probe {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        if let ("numbers", Ok(asker)) = (subscription.producer(), ctx.asker(subscription.tag())) {
            self.askers.push((subscription.tag(), asker));
        }
        let _ = self.seen.send(Seen::Subscribed(subscription.tag()));
        Demand::Automatic
    }
    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.batch_from = Some(subscription);
    }
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        if self.fail.swap(false, Ordering::SeqCst) {
            return Err("fails once".into());
        }
        let from = self.batch_from;
        let asker = self.askers.iter().find(|(tag, _)| Some(*tag) == from);
        if let (true, Some((tag, asker))) = (self.cancel_first, asker) {
            self.cancel_first = false;
            asker.cancel()?;
            let _ = self.seen.send(Seen::CancelledItself(*tag));
        }
        Ok(())
    }
    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let _ = self
            .seen
            .send(Seen::Cancelled(subscription.tag(), reason.clone()));
        Ok(())
    }
}

/// What the probe tells next.
async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("no hang")
        .expect("the probe runs")
}

/// An endless producer that shares its events: what keeps a probe running whatever its
/// subscriptions to `numbers` do.
fn keep_alive() -> Numbers {
    Numbers {
        next: 0,
        end: None,
        broadcast: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cancelled_its_subscription_itself_subscribes_again() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(None));
    let keep = pipeline.add_producer_named("keep", keep_alive());
    let (seen, mut told) = mpsc::unbounded_channel();
    let mut probe = Probe::new(seen);
    probe.cancel_first = true;
    let probe = pipeline.add_consumer_named("probe", probe);
    // Keeps `numbers` running once the probe has left it.
    let (other, _) = Record::new();
    let other = pipeline.add_consumer_named("other", other);
    pipeline.subscribe(&numbers, &probe);
    pipeline.subscribe(&numbers, &other);
    pipeline.subscribe(&keep, &probe);
    let running = pipeline.start();
    let first = loop {
        if let Seen::CancelledItself(tag) = next(&mut told).await {
            break tag;
        }
    };
    // The cancel reached the pipeline before the subscribe: nothing holds the probe's place.
    let again = running.subscribe(&numbers, &probe).await.unwrap();
    assert_ne!(again, first);
    assert_eq!(
        running.subscriptions(&numbers, &probe).await.unwrap(),
        [again]
    );
    let report = shut_down(running).await;
    assert_eq!(report.totals().lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_keeps_its_broadcast_subscription_which_a_resubscribe_replaces() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(None));
    let (seen, mut told) = mpsc::unbounded_channel();
    let fail = Arc::new(AtomicBool::new(true));
    let probe = pipeline.add_consumer_with_as(Some("probe".into()), move || Probe {
        fail: fail.clone(),
        ..Probe::new(seen.clone())
    });
    pipeline.subscribe(&numbers, &probe);
    pipeline.set_restart(&probe, RestartPolicy::transient());
    let running = pipeline.start();
    let Seen::Subscribed(first) = next(&mut told).await else {
        panic!("the probe is told of its subscription first");
    };
    // The restarted value is told of the subscription again: it is still the probe's.
    assert_eq!(next(&mut told).await, Seen::Subscribed(first));
    assert_eq!(
        running.subscriptions(&numbers, &probe).await.unwrap(),
        [first]
    );
    already_subscribed(
        running.subscribe(&numbers, &probe).await.unwrap_err(),
        "probe",
    );
    let options = SubscribeOptions::new().max_demand(10);
    let replaced = running
        .resubscribe(first, &numbers, &probe, options)
        .await
        .unwrap();
    assert_eq!(
        running.subscriptions(&numbers, &probe).await.unwrap(),
        [replaced]
    );
    let report = shut_down(running).await;
    assert_eq!(report.stage("probe").unwrap().restarts, 1);
}

/// A broadcast of a user's own that takes one consumer at a time, and refuses the others as they
/// subscribe (the refusal [`Dispatcher::subscribe`] documents).
struct OneAtATime(BroadcastDispatcher<u64>);

impl Dispatcher<u64> for OneAtATime {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<u64>,
    ) -> Result<usize, DispatchError> {
        if self.0.consumers() > 0 {
            return Err(DispatchError("one consumer at a time".into()));
        }
        self.0.subscribe(sub, options)
    }
    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        self.0.cancel(sub)
    }
    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, u64>) -> usize {
        self.0.ask(sub, demand, out)
    }
    fn dispatch(
        &mut self,
        events: Vec<u64>,
        out: &mut Outbox<'_, u64>,
    ) -> Result<Vec<u64>, DispatchError> {
        self.0.dispatch(events, out)
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
    fn consumers(&self) -> usize {
        self.0.consumers()
    }
    fn broadcasts(&self) -> bool {
        true
    }
}

/// Endless, through a [`OneAtATime`] dispatcher; waits for consumers.
struct OneAtATimeNumbers(Numbers);

impl Producer for OneAtATimeNumbers {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.handle_demand(demand).await
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(OneAtATime(BroadcastDispatcher::new()))
    }
    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer().without_consumers(WithoutConsumers::Wait)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_producer_refused_does_not_hold_the_consumers_place() {
    let mut pipeline = Pipeline::new();
    let numbers = Numbers::broadcast(None);
    let numbers = pipeline.add_producer_named("numbers", OneAtATimeNumbers(numbers));
    let keep = pipeline.add_producer_named("keep", keep_alive());
    let (first, _) = Record::new();
    let first = pipeline.add_consumer_named("first", first);
    let (seen, mut told) = mpsc::unbounded_channel();
    let probe = pipeline.add_consumer_named("probe", Probe::new(seen));
    pipeline.subscribe(&numbers, &first);
    pipeline.subscribe(&keep, &probe);
    let running = pipeline.start();
    // Temporary, so that the refusal leaves the probe running.
    let temporary = SubscribeOptions::new().cancel(CancelMode::Temporary);
    let refused = running
        .subscribe_with(&numbers, &probe, temporary)
        .await
        .unwrap();
    let cancelled = loop {
        if let Seen::Cancelled(tag, reason) = next(&mut told).await {
            break (tag, reason);
        }
    };
    let reason = "one consumer at a time".to_owned();
    assert_eq!(cancelled, (refused, CancelReason::Refused { reason }));
    // Refused, it is over: not listed, not cancelled again, not in the way of the next one.
    assert_eq!(running.subscriptions(&numbers, &probe).await.unwrap(), []);
    assert!(matches!(
        running.cancel(refused).await,
        Err(PipelineError::UnknownSubscription { .. })
    ));
    let taken = running.subscriptions(&numbers, &first).await.unwrap();
    running.cancel(taken[0]).await.unwrap();
    let again = running.subscribe(&numbers, &probe).await.unwrap();
    assert_eq!(
        running.subscriptions(&numbers, &probe).await.unwrap(),
        [again]
    );
    let report = shut_down(running).await;
    assert_eq!(report.totals().lost, 0);
}

/// `numbers`, through a [`OneAtATime`] dispatcher, wired by the builder to `first`, which it takes,
/// and to `second`, which it refuses, with `second_options` and `second_restarts`.
fn one_consumer_too_many(
    second_options: SubscribeOptions,
    second_restarts: RestartPolicy<u64>,
) -> (Pipeline, mpsc::UnboundedReceiver<Seen>) {
    let mut pipeline = Pipeline::new();
    let numbers = OneAtATimeNumbers(Numbers::broadcast(Some(20)));
    let numbers = pipeline.add_producer_named("numbers", numbers);
    let (first, _) = Record::new();
    let first = pipeline.add_consumer_named("first", first);
    let (seen, told) = mpsc::unbounded_channel();
    let second =
        pipeline.add_consumer_with_as(Some("second".into()), move || Probe::new(seen.clone()));
    pipeline.subscribe(&numbers, &first);
    pipeline.subscribe_with(&numbers, &second, second_options);
    pipeline.set_restart(&second, second_restarts);
    (pipeline, told)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_subscription_a_dispatcher_refused_fails_with_the_refusal() {
    let (pipeline, mut told) =
        one_consumer_too_many(SubscribeOptions::new(), RestartPolicy::temporary());
    let error = tokio::time::timeout(Duration::from_secs(30), pipeline.run())
        .await
        .expect("no hang")
        .unwrap_err();
    let PipelineError::StageFailed {
        stage,
        error,
        report,
    } = error
    else {
        panic!("the refused consumer fails: {error:?}");
    };
    assert_eq!(stage, "second");
    let refused = error.downcast_ref::<SubscriptionRefused>().unwrap();
    assert_eq!(refused.producer, "numbers");
    assert_eq!(refused.reason, "one consumer at a time");
    assert_eq!(
        error.to_string(),
        "its subscription to `numbers` was refused by that stage's dispatcher: one consumer at a \
         time"
    );
    // It was told first, with the dispatcher's words, and never got an event.
    assert!(matches!(next(&mut told).await, Seen::Subscribed(_)));
    assert!(matches!(
        next(&mut told).await,
        Seen::Cancelled(_, CancelReason::Refused { reason }) if reason == "one consumer at a time"
    ));
    assert_eq!(report.stage("second").unwrap().events_in, 0);
    assert_eq!(report.stage("first").unwrap().events_in, 20);
    let totals = report.totals();
    assert_eq!(
        totals.emitted,
        totals.handled + totals.discarded + totals.lost
    );
    assert_eq!(totals.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_failed_by_a_refusal_is_not_restarted_whatever_its_policy() {
    let permanent = RestartPolicy::permanent();
    let (pipeline, _told) = one_consumer_too_many(SubscribeOptions::new(), permanent);
    let error = tokio::time::timeout(Duration::from_secs(30), pipeline.run())
        .await
        .expect("no hang")
        .unwrap_err();
    let PipelineError::StageFailed { stage, report, .. } = error else {
        panic!("the refused consumer fails once: {error:?}");
    };
    assert_eq!(stage, "second");
    assert_eq!(report.stage("second").unwrap().restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_subscription_a_dispatcher_refused_leaves_its_consumer_running() {
    let temporary = SubscribeOptions::new().cancel(CancelMode::Temporary);
    let (pipeline, mut told) = one_consumer_too_many(temporary, RestartPolicy::temporary());
    let report = tokio::time::timeout(Duration::from_secs(30), pipeline.run())
        .await
        .expect("no hang")
        .expect("a refused temporary subscription fails nothing");
    assert!(matches!(next(&mut told).await, Seen::Subscribed(_)));
    assert!(matches!(
        next(&mut told).await,
        Seen::Cancelled(_, CancelReason::Refused { reason }) if reason == "one consumer at a time"
    ));
    let second = report.stage("second").unwrap();
    assert_eq!(second.events_in, 0);
    assert!(
        !matches!(second.status, StageStatus::Failed(_)),
        "{:?}",
        second.status
    );
    assert_eq!(report.stage("first").unwrap().events_in, 20);
}

async fn job(_n: u64) -> Result<(), String> {
    Ok(())
}

#[tokio::test]
async fn a_consumer_supervisor_subscribes_to_a_broadcast_once() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(Some(20)));
    let jobs = pipeline.add_consumer_named("jobs", genstage::ConsumerSupervisor::new(job));
    pipeline.subscribe(&numbers, &jobs);
    pipeline.subscribe(&numbers, &jobs);
    already_subscribed(pipeline.run().await.unwrap_err(), "jobs");

    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Numbers::broadcast(Some(20)));
    let jobs = pipeline.add_consumer_named("jobs", genstage::ConsumerSupervisor::new(job));
    let (record, _) = Record::new();
    let record = pipeline.add_consumer_named("record", record);
    pipeline.subscribe(&numbers, &jobs);
    pipeline.subscribe(&numbers, &record);
    let report = pipeline.run().await.expect("the pipeline runs");
    assert_eq!(report.stage("jobs").unwrap().events_in, 20);
    assert_eq!(report.stage("record").unwrap().events_in, 20);
}
