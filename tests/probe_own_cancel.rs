//! Probes of a consumer cancelling its own subscriptions (`Context::cancel`, `Asker::cancel`) from
//! every place it can: `handle_subscribe` of that very subscription, `init` of a restarted value,
//! `handle_cancel` of another subscription, `terminate`, a `#[stage]` message callback, a
//! producer_consumer's call; under restart policies; racing a graceful shutdown, an abort, its
//! producer ending or failing, and a resubscribe; on partitioned, broadcast and selected
//! subscriptions. Each run must end, with the report balanced and the ends and statuses the docs
//! promise.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    AskError, Asker, CallError, CancelReason, Consumer, Context, Demand, Dispatch, Emit,
    HandleCall, HandleCast, Partition, Pipeline, PipelineError, Producer, ProducerConsumer,
    ReplyTo, Report, RestartPolicy, StageRef, StageResult, StageStatus, SubscribeOptions,
    Subscription, SubscriptionTag,
};

/// A bound no run here comes near: it only turns a hang into a failure.
const HANG: Duration = Duration::from_secs(30);

/// Counts up from `next`, up to `end` (excluded) if any, emitting what it is asked; by parity when
/// partitioned, to every consumer when broadcasting.
struct Counter {
    next: u64,
    end: Option<u64>,
    dispatch: Fan,
    /// Fails at the demand call that would emit this number.
    fail_at: Option<u64>,
    /// How its consumers' subscriptions ended, as its `handle_consumer_cancel` is told.
    consumer_ends: Arc<Mutex<Vec<(String, CancelReason)>>>,
    /// Accumulates demand until told to forward it.
    accumulate: bool,
}

#[derive(Clone, Copy)]
enum Fan {
    Demand,
    Partition,
    Broadcast,
}

impl Counter {
    fn endless(next: u64) -> Self {
        Counter {
            next,
            end: None,
            dispatch: Fan::Demand,
            fail_at: None,
            consumer_ends: Arc::default(),
            accumulate: false,
        }
    }

    fn upto(end: u64, dispatch: Fan) -> Self {
        Counter {
            next: 0,
            end: Some(end),
            dispatch,
            fail_at: None,
            consumer_ends: Arc::default(),
            accumulate: false,
        }
    }
}

impl Producer for Counter {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let mut to = self.next + demand as u64;
        if let Some(end) = self.end {
            to = to.min(end);
        }
        if let Some(fail_at) = self.fail_at {
            if (self.next..to).contains(&fail_at) {
                return Err(format!("counter fails at {fail_at}").into());
            }
        }
        let events = (self.next..to).collect::<Vec<_>>();
        self.next = to;
        if self.end == Some(to) {
            Ok(Emit::last(events))
        } else {
            Ok(events.into())
        }
    }

    async fn handle_consumer_cancel(
        &mut self,
        subscriber: &genstage::Subscriber,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.consumer_ends
            .lock()
            .unwrap()
            .push((subscriber.consumer().to_owned(), reason.clone()));
        Ok(Vec::new())
    }

    fn producer_options(&self) -> genstage::ProducerOptions {
        let options = genstage::ProducerOptions::for_producer();
        if self.accumulate {
            options.demand(genstage::DemandMode::Accumulate)
        } else {
            options
        }
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        match self.dispatch {
            Fan::Demand => Dispatch::demand(),
            Fan::Partition => Dispatch::partition(2),
            Fan::Broadcast => Dispatch::broadcast(),
        }
    }
}

impl Partition<u64> for Counter {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// What a [`Probe`] saw, shared with the test (and with the values a restart makes).
#[derive(Default)]
struct Seen {
    /// The events handled, by producer, in order.
    events: BTreeMap<String, Vec<u64>>,
    /// Its subscriptions, by producer (the latest).
    tags: BTreeMap<String, SubscriptionTag>,
    /// The ends of its subscriptions, by producer, in order.
    ends: Vec<(String, CancelReason)>,
    /// What each `Context::cancel` returned.
    cancels: Vec<Result<(), AskError>>,
    /// What each `Asker::cancel` returned.
    asker_cancels: Vec<Result<(), CallError>>,
    /// How many values ran `init`.
    inits: usize,
    /// How `terminate` was told the stage ended.
    terminated: Vec<StageStatus>,
    /// An asker kept outside the stage's value, as a task would.
    kept: Option<Asker>,
    /// Whether the first failure has struck (only the first value fails).
    failed: bool,
}

type Shared = Arc<Mutex<Seen>>;

/// A consumer that cancels its subscriptions where it is set to.
#[derive(Default, Clone)]
struct Probe {
    seen: Shared,
    /// Cancels the subscription to this producer in its `handle_subscribe`.
    cancel_on_subscribe: Option<String>,
    /// When its subscription to the first producer ends, cancels the one to the second.
    cancel_on_end: Option<(String, String)>,
    /// In manual demand, one event at a time: cancels (through its `Asker`) the subscription
    /// whose events reach this count.
    quit_after: Option<usize>,
    /// Fails once, right after that cancel (the first value only).
    fail_after_quit: bool,
    /// Asks for one more event right before that cancel, so that the ask and the cancel race.
    ask_before_quit: bool,
    /// Fails once (the first value only) on the event that reaches this count.
    fail_at: Option<usize>,
    /// Fails for good on the event that reaches this count.
    fail_for_good_at: Option<usize>,
    /// Cancels in `init` every subscription seen so far (by a value before it).
    cancel_in_init: bool,
    /// Cancels every subscription through its `Asker` in `terminate`.
    cancel_in_terminate: bool,
    /// Fails once (the first value only) in `handle_cancel` of a `Cancelled` subscription.
    fail_in_handle_cancel: bool,
    /// Right after its cancel through the `Asker`, waits on this for ever (a callback that never
    /// returns), having said so on `stuck`.
    hang_after_quit: Option<(Arc<tokio::sync::Notify>, Arc<AtomicBool>)>,
    restart: Option<RestartPolicy<u64>>,
    askers: HashMap<SubscriptionTag, Asker>,
    from: Option<SubscriptionTag>,
}

impl Probe {
    fn new() -> (Self, Shared) {
        let probe = Probe::default();
        let seen = probe.seen.clone();
        (probe, seen)
    }

    fn producer_of(&self, tag: SubscriptionTag) -> String {
        let seen = self.seen.lock().unwrap();
        seen.tags
            .iter()
            .find(|(_, t)| **t == tag)
            .map(|(producer, _)| producer.clone())
            .unwrap_or_default()
    }
}

impl Probe {
    /// Handles a batch; what to wait on for ever, if anything.
    fn take(&mut self, events: Vec<u64>) -> StageResult<Option<Arc<tokio::sync::Notify>>> {
        let from = self.from.expect("told before each batch");
        let producer = self.producer_of(from);
        let mut seen = self.seen.lock().unwrap();
        let count = seen.events.get(&producer).map_or(0, Vec::len) + events.len();
        if let Some(fail_at) = self.fail_for_good_at {
            if count >= fail_at {
                return Err(format!("probe fails at {count}").into());
            }
        }
        if self.fail_at.is_some_and(|at| count >= at) && !seen.failed {
            seen.failed = true;
            return Err(format!("probe fails once at {count}").into());
        }
        if let Some(quit_after) = self.quit_after {
            let asker = &self.askers[&from];
            if count < quit_after {
                asker.ask(1)?;
            } else {
                if self.ask_before_quit {
                    asker.ask(1)?;
                }
                let result = asker.cancel();
                seen.asker_cancels.push(result);
                if let Some((never, stuck)) = &self.hang_after_quit {
                    stuck.store(true, Ordering::SeqCst);
                    return Ok(Some(never.clone()));
                }
                if self.fail_after_quit && !seen.failed {
                    seen.failed = true;
                    return Err(format!("probe fails after cancelling at {count}").into());
                }
            }
        }
        seen.events.entry(producer).or_default().extend(events);
        Ok(None)
    }
}

impl Consumer for Probe {
    type Input = u64;

    fn init(&mut self, ctx: &mut Context<'_, Self>) {
        let mut seen = self.seen.lock().unwrap();
        seen.inits += 1;
        if self.cancel_in_init {
            let tags: Vec<_> = seen.tags.values().copied().collect();
            for tag in tags {
                let result = ctx.cancel(tag);
                seen.cancels.push(result);
            }
        }
    }

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let producer = subscription.producer().to_owned();
        let tag = subscription.tag();
        let asker = ctx.asker(tag).expect("its own subscription");
        self.askers.insert(tag, asker.clone());
        let mut seen = self.seen.lock().unwrap();
        seen.tags.insert(producer.clone(), tag);
        seen.kept = Some(asker);
        if self.cancel_on_subscribe.as_deref() == Some(producer.as_str()) {
            let result = ctx.cancel(tag);
            seen.cancels.push(result);
        }
        if self.quit_after.is_some() {
            Demand::Manual
        } else {
            Demand::Automatic
        }
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.from = Some(subscription);
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if let Some(never) = self.take(events)? {
            never.notified().await;
        }
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let producer = subscription.producer().to_owned();
        let mut seen = self.seen.lock().unwrap();
        seen.ends.push((producer.clone(), reason.clone()));
        if self.fail_in_handle_cancel && *reason == CancelReason::Cancelled && !seen.failed {
            seen.failed = true;
            return Err("probe fails in handle_cancel".into());
        }
        if let Some((ended, other)) = &self.cancel_on_end {
            if *ended == producer {
                if let Some(tag) = seen.tags.get(other).copied() {
                    let result = ctx.cancel(tag);
                    seen.cancels.push(result);
                }
            }
        }
        Ok(())
    }

    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.restart.unwrap_or_default()
    }

    async fn terminate(&mut self, status: &StageStatus) {
        let mut seen = self.seen.lock().unwrap();
        seen.terminated.push(status.clone());
        if self.cancel_in_terminate {
            for asker in self.askers.values() {
                let result = asker.cancel();
                seen.asker_cancels.push(result);
            }
        }
    }
}

/// Tells a [`Probe`] to cancel its subscription to the named producer (`Context::cancel`).
struct Quit(&'static str);

impl HandleCast<Quit> for Probe {
    type Emitted = ();

    async fn handle_cast(
        &mut self,
        Quit(producer): Quit,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let mut seen = self.seen.lock().unwrap();
        let tag = seen.tags[producer];
        let result = ctx.cancel(tag);
        seen.cancels.push(result);
        Ok(())
    }
}

impl HandleCall<Quit> for Probe {
    type Reply = Result<(), AskError>;
    type Emitted = ();

    async fn handle_call(
        &mut self,
        Quit(producer): Quit,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let mut seen = self.seen.lock().unwrap();
        let tag = seen.tags[producer];
        let result = ctx.cancel(tag);
        seen.cancels.push(result.clone());
        reply.reply(result);
        Ok(())
    }
}

/// Waits until `condition` holds (yielding, never sleeping), or fails the test after [`HANG`].
async fn until(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(HANG, async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "hang: waiting for {what}");
}

/// A run's end, or a failure of the test after [`HANG`].
async fn ended<T>(what: &str, run: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, run)
        .await
        .unwrap_or_else(|_| panic!("hang: {what}"))
}

/// The events 0, 1, … n - 1.
fn first(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

fn events_of(seen: &Shared, producer: &str) -> Vec<u64> {
    seen.lock()
        .unwrap()
        .events
        .get(producer)
        .cloned()
        .unwrap_or_default()
}

fn assert_balanced(report: &Report) {
    let totals = report.totals();
    assert!(
        totals.balanced(),
        "emitted {} != handled {} + discarded {} + lost {}\n{report:?}",
        totals.emitted,
        totals.handled,
        totals.discarded,
        totals.lost
    );
}

fn one_at_a_time() -> SubscribeOptions {
    SubscribeOptions::new().max_demand(1).min_demand(0)
}

// ---- where the cancel is made ----------------------------------------------------------------

/// `handle_subscribe` cancels the very subscription it is told of: of the wiring, and of one made
/// while the pipeline runs. Each ends `Cancelled`, after what the producer sent, and the stage
/// finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_handle_subscribe_of_that_subscription() {
    let (mut quitter, seen) = Probe::new();
    quitter.cancel_on_subscribe = Some("counter".into());
    let (keeper, keeper_seen) = Probe::new();
    let (mut late, late_seen) = Probe::new();
    late.cancel_on_subscribe = Some("counter".into());
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    let options = SubscribeOptions::new().max_demand(10);
    pipeline.subscribe_with(&counter, &quitter, options);
    pipeline.subscribe_with(&counter, &keeper, options);
    let running = pipeline.start();
    until("the quitter's end", || {
        !seen.lock().unwrap().ends.is_empty()
    })
    .await;
    let late = running.add_consumer_named("late", late).await.unwrap();
    running
        .subscribe_with(&counter, &late, options)
        .await
        .expect("subscribed");
    until("the late one's end", || {
        !late_seen.lock().unwrap().ends.is_empty()
    })
    .await;
    until("the keeper's events", || {
        !keeper_seen.lock().unwrap().events.is_empty()
    })
    .await;
    keeper.call(Quit("counter")).await.unwrap().unwrap();
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");

    for (name, seen) in [
        ("quitter", &seen),
        ("late", &late_seen),
        ("keeper", &keeper_seen),
    ] {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.cancels, [Ok(())], "{name}");
        assert_eq!(
            seen.ends,
            [("counter".to_owned(), CancelReason::Cancelled)],
            "{name}"
        );
        assert_eq!(
            report.stage(name).unwrap().status,
            StageStatus::Finished,
            "{name}"
        );
        assert_eq!(seen.terminated, [StageStatus::Finished], "{name}");
    }
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
    drop(late);
}

/// `handle_cancel` of a subscription that finished cancels the stage's other one: the stage
/// finishes, having handled all of the first producer's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_handle_cancel_of_another_subscription() {
    let (mut probe, seen) = Probe::new();
    probe.cancel_on_end = Some(("finite".into(), "endless".into()));
    let mut pipeline = Pipeline::new();
    let finite = pipeline.add_producer_named("finite", Counter::upto(25, Fan::Demand));
    let endless = pipeline.add_producer_named("endless", Counter::endless(1_000_000));
    let probe = pipeline.add_consumer_named("probe", probe);
    let options = SubscribeOptions::new().max_demand(4);
    pipeline.subscribe_with(&finite, &probe, options);
    pipeline.subscribe_with(&endless, &probe, options);
    let report = ended("the run", pipeline.run())
        .await
        .expect("the run ends normally");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.events["finite"], first(25));
    assert_eq!(seen.cancels, [Ok(())]);
    assert_eq!(
        seen.ends,
        [
            ("finite".to_owned(), CancelReason::Finished),
            ("endless".to_owned(), CancelReason::Cancelled)
        ]
    );
    assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

/// The value a restart makes cancels, in `init`, the subscription its failed value had: the stage
/// finishes, restarted once, and the batch the failure took is the only loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_init_of_a_restarted_value() {
    let (mut probe, seen) = Probe::new();
    probe.fail_at = Some(3);
    probe.cancel_in_init = true;
    probe.restart = Some(RestartPolicy::transient());
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let probe = pipeline.add_consumer_with_as(Some("probe".into()), move || probe.clone());
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    let report = ended("the run", pipeline.run())
        .await
        .expect("the run ends normally");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.inits, 2);
    assert_eq!(seen.cancels, [Ok(())]);
    assert_eq!(seen.ends, [("counter".to_owned(), CancelReason::Cancelled)]);
    let probe = report.stage("probe").unwrap();
    assert_eq!(probe.status, StageStatus::Finished);
    assert_eq!(probe.restarts, 1);
    assert_eq!(probe.lost, 1, "the event the failure took");
    let handled = &seen.events["counter"];
    // 0, 1 before the failure on 2; then what the counter sent before the cancel reached it.
    assert_eq!(handled[..2], [0, 1]);
    assert!(handled[2..]
        .iter()
        .copied()
        .eq(3..3 + handled.len() as u64 - 2));
    assert_balanced(&report);
}

/// A stage that fails for good cancels its other subscription in `terminate`, through its
/// `Asker`: the cancel is taken (or finds the stage gone) and the run fails naming the stage, with
/// a balanced report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_terminate_through_an_asker() {
    let (mut probe, seen) = Probe::new();
    probe.fail_for_good_at = Some(5);
    probe.cancel_in_terminate = true;
    let mut pipeline = Pipeline::new();
    let a = pipeline.add_producer_named("a", Counter::endless(0));
    let probe = pipeline.add_consumer_named("probe", probe);
    pipeline.subscribe_with(&a, &probe, SubscribeOptions::new().max_demand(2));
    let error = ended("the run", pipeline.run())
        .await
        .expect_err("the probe fails");
    let PipelineError::StageFailed { stage, report, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(stage, "probe");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.asker_cancels, [Ok(())]);
    assert!(matches!(seen.terminated[..], [StageStatus::Failed(_)]));
    assert_balanced(report);
}

/// A producer_consumer cancels its only subscription from a call: everything it emitted reaches
/// its consumer, which handles it all; then it finishes, then its consumer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_that_cancels_its_input_passes_everything_on_then_finishes() {
    let passed = Arc::new(Mutex::new(Vec::new()));
    let (sink, sink_seen) = Probe::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let doubler = pipeline.add_producer_consumer_named(
        "doubler",
        Doubler {
            tag: None,
            passed: passed.clone(),
        },
    );
    let sink = pipeline.add_consumer_named("sink", sink);
    pipeline.subscribe_with(&counter, &doubler, SubscribeOptions::new().max_demand(50));
    // A slow taker: the doubler holds a backlog for it.
    pipeline.subscribe_with(&doubler, &sink, one_at_a_time().min_demand(0));
    let running = pipeline.start();
    until("events through", || {
        sink_seen
            .lock()
            .unwrap()
            .events
            .get("doubler")
            .is_some_and(|e| e.len() >= 5)
    })
    .await;
    assert_eq!(doubler.call(Leave).await, Ok(Ok(())));
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");

    let passed = passed.lock().unwrap().clone();
    assert_eq!(events_of(&sink_seen, "doubler"), passed);
    assert!(passed
        .iter()
        .copied()
        .eq((0..passed.len() as u64).map(|n| n * 2)));
    // The counter, left without consumers, stops.
    assert_eq!(
        report.stage("counter").unwrap().status,
        StageStatus::Cancelled { cause: None }
    );
    for name in ["doubler", "sink"] {
        assert_eq!(
            report.stage(name).unwrap().status,
            StageStatus::Finished,
            "{name}"
        );
    }
    assert_eq!(
        sink_seen.lock().unwrap().ends,
        [("doubler".to_owned(), CancelReason::Finished)]
    );
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

/// Doubles what it takes, and leaves its producer when told to.
struct Doubler {
    tag: Option<SubscriptionTag>,
    passed: Arc<Mutex<Vec<u64>>>,
}

impl ProducerConsumer for Doubler {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        let doubled: Vec<u64> = events.iter().map(|n| n * 2).collect();
        self.passed.lock().unwrap().extend(&doubled);
        Ok(doubled)
    }

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.tag = Some(subscription.tag());
        Demand::Automatic
    }
}

/// Tells a [`Doubler`] to leave its producer.
struct Leave;

impl HandleCall<Leave> for Doubler {
    type Reply = Result<(), AskError>;
    type Emitted = Vec<u64>;

    async fn handle_call(
        &mut self,
        _: Leave,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(ctx.cancel(self.tag.expect("subscribed")));
        Ok(Vec::new())
    }
}

// ---- under restart policies ------------------------------------------------------------------

/// A stage that cancels through its `Asker` and then fails is restarted; the batch is handed again,
/// cancels again (a no-op), and the stage finishes: every event handled once, none lost, the
/// subscription ended once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_then_fail_under_a_redelivering_restart() {
    let (mut probe, seen) = Probe::new();
    probe.quit_after = Some(5);
    probe.fail_after_quit = true;
    probe.restart = Some(RestartPolicy::transient().redeliver());
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let probe = pipeline.add_consumer_with_as(Some("probe".into()), move || probe.clone());
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    let report = ended("the run", pipeline.run())
        .await
        .expect("the run ends normally");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.events["counter"], first(5));
    assert_eq!(seen.asker_cancels, [Ok(()), Ok(())]);
    assert_eq!(seen.ends, [("counter".to_owned(), CancelReason::Cancelled)]);
    let probe = report.stage("probe").unwrap();
    assert_eq!(probe.status, StageStatus::Finished);
    assert_eq!((probe.restarts, probe.redelivered), (1, 1));
    let totals = report.totals();
    assert_eq!((totals.emitted, totals.handled, totals.lost), (5, 5, 0));
}

/// An `Asker` kept outside the stage (as a task keeps it) after the value that made it failed and
/// was replaced: the subscription outlives the value, so its cancel ends the subscription of the
/// new value, which finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asker_kept_across_a_restart_cancels_the_subscription() {
    let (mut probe, seen) = Probe::new();
    probe.fail_at = Some(3);
    probe.restart = Some(RestartPolicy::transient());
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let probe = pipeline.add_consumer_with_as(Some("probe".into()), move || probe.clone());
    pipeline.subscribe_with(&counter, &probe, SubscribeOptions::new().max_demand(1));
    let running = pipeline.start();
    until("the restarted value's events", || {
        let seen = seen.lock().unwrap();
        seen.inits == 2 && seen.events.get("counter").is_some_and(|e| e.len() >= 5)
    })
    .await;
    let kept = seen.lock().unwrap().kept.clone().unwrap();
    assert_eq!(kept.cancel(), Ok(()));
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");
    assert_eq!(
        seen.lock().unwrap().ends,
        [("counter".to_owned(), CancelReason::Cancelled)]
    );
    assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
    assert_balanced(&report);
    drop(probe);
}

// ---- racing other ends -----------------------------------------------------------------------

/// How many times each race is run: each round is a small pipeline.
const ROUNDS: usize = 40;

/// A self-cancel made as a graceful shutdown begins: the subscription ends once, as `Cancelled`
/// or as the shutdown ends it, the stage finishes, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_graceful_shutdown() {
    for round in 0..ROUNDS {
        let (probe, seen) = Probe::new();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named("counter", Counter::endless(0));
        let probe = pipeline.add_consumer_named("probe", probe);
        pipeline.subscribe_with(&counter, &probe, SubscribeOptions::new().max_demand(10));
        let running = pipeline.start();
        until("events", || !seen.lock().unwrap().events.is_empty()).await;
        probe.cast(Quit("counter")).unwrap();
        if round % 2 == 1 {
            tokio::task::yield_now().await;
        }
        let report = ended("the shutdown", running.shutdown())
            .await
            .expect("a graceful shutdown");

        let seen = seen.lock().unwrap();
        assert_eq!(seen.ends.len(), 1, "round {round}: {:?}", seen.ends);
        assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
        let handled = &seen.events["counter"];
        assert_eq!(*handled, first(handled.len()), "round {round}");
        assert_balanced(&report);
        assert_eq!(report.totals().lost, 0, "round {round}");
    }
}

/// A self-cancel made as the pipeline is aborted: the report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_an_abort() {
    for round in 0..ROUNDS {
        let (probe, seen) = Probe::new();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named("counter", Counter::endless(0));
        let probe = pipeline.add_consumer_named("probe", probe);
        pipeline.subscribe_with(&counter, &probe, SubscribeOptions::new().max_demand(10));
        let running = pipeline.start();
        until("events", || !seen.lock().unwrap().events.is_empty()).await;
        probe.cast(Quit("counter")).unwrap();
        if round % 2 == 1 {
            tokio::task::yield_now().await;
        }
        let report = ended("the abort", running.abort())
            .await
            .expect("an abort's report");
        assert!(seen.lock().unwrap().ends.len() <= 1, "round {round}");
        assert_balanced(&report);
    }
}

/// A self-cancel made as the producer emits its last events: the subscription ends once,
/// `Cancelled` or `Finished`, every event is handled, the stage finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_producer_finishing() {
    for round in 0..ROUNDS {
        let (mut probe, seen) = Probe::new();
        probe.quit_after = Some(10);
        probe.ask_before_quit = true;
        let end = 10 + (round % 2) as u64;
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named("counter", Counter::upto(end, Fan::Demand));
        let probe = pipeline.add_consumer_named("probe", probe);
        pipeline.subscribe_with(&counter, &probe, one_at_a_time());
        let report = ended("the run", pipeline.run())
            .await
            .expect("the run ends normally");

        let seen = seen.lock().unwrap();
        assert_eq!(seen.ends.len(), 1, "round {round}: {:?}", seen.ends);
        assert!(
            matches!(
                seen.ends[0].1,
                CancelReason::Cancelled | CancelReason::Finished
            ),
            "round {round}: {:?}",
            seen.ends
        );
        let handled = &seen.events["counter"];
        assert!(handled.len() >= 10, "round {round}: {handled:?}");
        assert_eq!(*handled, first(handled.len()), "round {round}");
        assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
        assert_balanced(&report);
        assert_eq!(report.totals().lost, 0, "round {round}");
    }
}

/// A self-cancel racing the producer's failure (the ask made with it makes the producer fail):
/// the subscription ends once, and the stage's status agrees with how it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_producer_failing() {
    for round in 0..ROUNDS {
        let (mut probe, seen) = Probe::new();
        probe.quit_after = Some(6);
        probe.ask_before_quit = true;
        let mut counter = Counter::endless(0);
        counter.fail_at = Some(6);
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named("counter", counter);
        let probe = pipeline.add_consumer_named("probe", probe);
        pipeline.subscribe_with(&counter, &probe, one_at_a_time());
        let result = ended("the run", pipeline.run()).await;

        let seen = seen.lock().unwrap();
        assert_eq!(seen.events["counter"], first(6), "round {round}");
        assert_eq!(seen.ends.len(), 1, "round {round}: {:?}", seen.ends);
        let report = match &result {
            Ok(report) => {
                assert_eq!(seen.ends[0].1, CancelReason::Cancelled, "round {round}");
                assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
                report
            }
            Err(PipelineError::StageFailed { stage, report, .. }) => {
                assert_eq!(stage, "counter");
                assert!(
                    matches!(seen.ends[0].1, CancelReason::Failed { .. }),
                    "round {round}: {:?}",
                    seen.ends
                );
                assert_eq!(
                    report.stage("probe").unwrap().status,
                    StageStatus::Cancelled {
                        cause: Some("counter".into())
                    },
                    "round {round}"
                );
                report
            }
            Err(error) => panic!("round {round}: {error:?}"),
        };
        assert_balanced(report);
        assert_eq!(report.totals().lost, 0, "round {round}");
    }
}

/// A self-cancel racing a resubscribe of the same subscription through the handle. The resubscribe
/// is answered `Ok` and the new subscription reaches the stage; or the stage, its only
/// subscription cancelled, finished first: the resubscribe is refused (`StageEnded`), or, the
/// stage still ending, answered `Ok` with a subscription that ends with the stage (as
/// `PipelineHandle::subscribe_with` documents). Either way the run ends with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_resubscribe_of_the_same_subscription() {
    let mut outcomes = BTreeMap::new();
    for round in 0..ROUNDS {
        let (probe, seen) = Probe::new();
        let (keeper, _keeper_seen) = Probe::new();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named("counter", Counter::endless(0));
        let probe = pipeline.add_consumer_named("probe", probe);
        let keeper = pipeline.add_consumer_named("keeper", keeper);
        let options = SubscribeOptions::new().max_demand(10);
        pipeline.subscribe_with(&counter, &probe, options);
        pipeline.subscribe_with(&counter, &keeper, options);
        let running = pipeline.start();
        until("events", || !seen.lock().unwrap().events.is_empty()).await;
        let old = seen.lock().unwrap().tags["counter"];
        probe.cast(Quit("counter")).unwrap();
        if round % 2 == 1 {
            tokio::task::yield_now().await;
        }
        let resubscribed = running.resubscribe(old, &counter, &probe, options).await;
        let outcome = match resubscribed {
            Ok(new) => {
                until(
                    "the new subscription to reach the stage, or the stage to end",
                    || {
                        let seen = seen.lock().unwrap();
                        seen.tags["counter"] == new || !seen.terminated.is_empty()
                    },
                )
                .await;
                // A call refused (`Ended`) as the stage decides to end is not its end: taking the
                // new subscription in, it may go on, and take a later call.
                let ended = running.stage_ended(&probe);
                tokio::pin!(ended);
                loop {
                    if probe.call(Quit("counter")).await.is_ok() {
                        break "resubscribed";
                    }
                    tokio::select! {
                        biased;
                        end = &mut ended => {
                            end.unwrap();
                            break "resubscribed as the stage ended";
                        }
                        () = tokio::task::yield_now() => {}
                    }
                }
            }
            Err(PipelineError::StageEnded { stage }) => {
                assert_eq!(stage, "probe");
                "ended first"
            }
            Err(error) => panic!("round {round}: {error:?}"),
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
        keeper.call(Quit("counter")).await.unwrap().unwrap();
        let report = ended("the run", running)
            .await
            .expect("the run ends normally");
        assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
        assert_balanced(&report);
        assert_eq!(report.totals().lost, 0, "round {round}");
    }
    eprintln!("outcomes: {outcomes:?}");
}

// ---- dispatchers -----------------------------------------------------------------------------

/// A consumer of one partition leaves it after 4 events while the other partition's consumer
/// takes everything: the run ends, the report balances, and the events emitted for the left
/// partition are accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_left_with_events_still_coming_for_it() {
    let (mut even, even_seen) = Probe::new();
    even.quit_after = Some(4);
    let (odd, odd_seen) = Probe::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::upto(200, Fan::Partition));
    let even = pipeline.add_consumer_named("even", even);
    let odd = pipeline.add_consumer_named("odd", odd);
    pipeline.subscribe_with(&counter, &even, one_at_a_time().partition(0));
    pipeline.subscribe_with(
        &counter,
        &odd,
        SubscribeOptions::new().max_demand(5).partition(1),
    );
    let result = ended("the run", pipeline.run()).await;
    let report = match &result {
        Ok(report) => report,
        Err(error) => error.report().expect("a report"),
    };
    eprintln!("{report:?}");
    assert_eq!(events_of(&even_seen, "counter"), [0, 2, 4, 6]);
    assert!(events_of(&odd_seen, "counter")
        .iter()
        .copied()
        .eq((0..100).map(|n| n * 2 + 1)));
    assert_eq!(
        even_seen.lock().unwrap().ends,
        [("counter".to_owned(), CancelReason::Cancelled)]
    );
    assert_balanced(report);
    assert!(result.is_ok(), "{result:?}");
}

/// A slow and a quick consumer of a broadcast, and one that leaves after 3 events: the others get
/// everything, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_consumer_leaves_and_the_others_get_everything() {
    let (mut quitter, quitter_seen) = Probe::new();
    quitter.quit_after = Some(3);
    let (slow, slow_seen) = Probe::new();
    let (quick, quick_seen) = Probe::new();
    let (mut picky, picky_seen) = Probe::new();
    picky.quit_after = Some(3);
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::upto(100, Fan::Broadcast));
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    let slow = pipeline.add_consumer_named("slow", slow);
    let quick = pipeline.add_consumer_named("quick", quick);
    let picky = pipeline.add_consumer_named("picky", picky);
    pipeline.subscribe_with(&counter, &quitter, one_at_a_time());
    pipeline.subscribe_with(&counter, &slow, SubscribeOptions::new().max_demand(1));
    pipeline.subscribe_with(&counter, &quick, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_selected(&counter, &picky, one_at_a_time(), |n: &u64| {
        n.is_multiple_of(3)
    });
    let report = ended("the run", pipeline.run())
        .await
        .expect("the run ends normally");

    assert_eq!(events_of(&quitter_seen, "counter"), first(3));
    assert_eq!(events_of(&picky_seen, "counter"), [0, 3, 6]);
    assert_eq!(events_of(&slow_seen, "counter"), first(100));
    assert_eq!(events_of(&quick_seen, "counter"), first(100));
    for seen in [&quitter_seen, &picky_seen] {
        assert_eq!(
            seen.lock().unwrap().ends,
            [("counter".to_owned(), CancelReason::Cancelled)]
        );
    }
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

// ---- cancel modes (GenStage's scenarios 72–75) -----------------------------------------------

/// Whatever its cancel mode, a stage that cancels one of two subscriptions goes on with the other
/// (GenStage stops a `permanent` consumer on any cancel, `:normal` included), and finishes
/// normally once it cancels the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_cancel_stops_no_consumer_whatever_its_cancel_mode() {
    for mode in [
        genstage::CancelMode::Temporary,
        genstage::CancelMode::Transient,
        genstage::CancelMode::Permanent,
    ] {
        let (probe, seen) = Probe::new();
        let mut pipeline = Pipeline::new();
        let low = pipeline.add_producer_named("low", Counter::endless(0));
        let high = pipeline.add_producer_named("high", Counter::endless(1_000_000));
        let probe = pipeline.add_consumer_named("probe", probe);
        let options = SubscribeOptions::new().max_demand(10).cancel(mode);
        pipeline.subscribe_with(&low, &probe, options);
        pipeline.subscribe_with(&high, &probe, options);
        let running = pipeline.start();
        until("events of both", || seen.lock().unwrap().events.len() == 2).await;
        assert_eq!(probe.call(Quit("low")).await, Ok(Ok(())));
        until("low's end", || !seen.lock().unwrap().ends.is_empty()).await;
        let high_then = events_of(&seen, "high").len();
        until("more of high", || {
            events_of(&seen, "high").len() > high_then + 20
        })
        .await;
        assert_eq!(probe.call(Quit("high")).await, Ok(Ok(())));
        let report = ended("the run", running)
            .await
            .expect("the run ends normally");

        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.ends,
            [
                ("low".to_owned(), CancelReason::Cancelled),
                ("high".to_owned(), CancelReason::Cancelled)
            ],
            "{mode:?}"
        );
        assert_eq!(
            report.stage("probe").unwrap().status,
            StageStatus::Finished,
            "{mode:?}"
        );
        assert_balanced(&report);
        assert_eq!(report.totals().lost, 0);
    }
}

// ---- the #[stage] path -----------------------------------------------------------------------

/// A `#[stage]` consumer that cancels from `handle_info`, with `ctx: &mut Context<Self>`.
struct Leaver {
    tag: Option<SubscriptionTag>,
    handled: Arc<Mutex<Vec<u64>>>,
    ends: Arc<Mutex<Vec<CancelReason>>>,
}

/// Tells a [`Leaver`] to leave.
struct Go;

#[genstage::stage(consumer)]
impl Leaver {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.handled.lock().unwrap().extend(events);
    }

    fn handle_subscribe(&mut self, subscription: &Subscription) {
        self.tag = Some(subscription.tag());
    }

    fn handle_info(&mut self, _: Go, ctx: &mut Context<Self>) -> Result<(), AskError> {
        ctx.cancel(self.tag.expect("subscribed"))
    }

    fn handle_cancel(&mut self, _: &Subscription, reason: &CancelReason) {
        self.ends.lock().unwrap().push(reason.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_macro_consumer_cancels_from_handle_info() {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let ends = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let leaver = pipeline.add_consumer_named(
        "leaver",
        Leaver {
            tag: None,
            handled: handled.clone(),
            ends: ends.clone(),
        },
    );
    pipeline.subscribe_with(&counter, &leaver, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    until("events", || handled.lock().unwrap().len() >= 10).await;
    leaver.info(Go).unwrap();
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");
    assert_eq!(*ends.lock().unwrap(), [CancelReason::Cancelled]);
    let handled = handled.lock().unwrap();
    assert_eq!(*handled, first(handled.len()));
    assert_eq!(
        report.stage("leaver").unwrap().status,
        StageStatus::Finished
    );
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

// ---- what the producer is told, and the ends around the stage ---------------------------------

/// The producer's `handle_consumer_cancel` is told `Cancelled` for a self-cancel, and the other
/// consumer's subscription is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_is_told_cancelled() {
    let (quitter, seen) = Probe::new();
    let (keeper, _) = Probe::new();
    let counter = Counter::endless(0);
    let consumer_ends = counter.consumer_ends.clone();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", counter);
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe(&counter, &quitter);
    pipeline.subscribe(&counter, &keeper);
    let running = pipeline.start();
    until("events", || !seen.lock().unwrap().events.is_empty()).await;
    assert_eq!(quitter.call(Quit("counter")).await, Ok(Ok(())));
    until("the producer told", || {
        !consumer_ends.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *consumer_ends.lock().unwrap(),
        [("quitter".to_owned(), CancelReason::Cancelled)]
    );
    keeper.call(Quit("counter")).await.unwrap().unwrap();
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");
    assert_eq!(
        *consumer_ends.lock().unwrap(),
        [
            ("quitter".to_owned(), CancelReason::Cancelled),
            ("keeper".to_owned(), CancelReason::Cancelled)
        ]
    );
    assert_eq!(
        report.stage("counter").unwrap().status,
        StageStatus::Cancelled { cause: None }
    );
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

/// An `Asker` whose pipeline has ended: its cancel is an error naming the stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asker_cancel_after_the_run_is_an_error_naming_the_stage() {
    let (mut probe, seen) = Probe::new();
    probe.quit_after = Some(3);
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let probe = pipeline.add_consumer_named("probe", probe);
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    let report = ended("the run", pipeline.run()).await.unwrap();
    assert_eq!(report.totals().handled, 3);
    let kept = seen.lock().unwrap().kept.clone().unwrap();
    let error = kept.cancel().expect_err("the pipeline has ended");
    assert_eq!(
        error,
        CallError::Ended {
            stage: "probe".into()
        }
    );
    assert!(error.to_string().contains("probe"), "{error}");
}

/// An `Asker` whose stage has ended while the rest of its pipeline runs: its cancel is the error
/// its ask gives, `CallError::Ended` naming the stage (it answered `Ok` for a cancel that cancelled
/// nothing), before and after the pipeline's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asker_cancel_after_its_stage_ended_is_the_error_its_ask_gives() {
    let (mut probe, seen) = Probe::new();
    probe.quit_after = Some(3);
    let (keeper, keeper_seen) = Probe::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let other = pipeline.add_producer_named("other", Counter::endless(0));
    let probe = pipeline.add_consumer_named("probe", probe);
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    pipeline.subscribe(&other, &keeper);
    let running = pipeline.start();
    until("the probe's asker", || seen.lock().unwrap().kept.is_some()).await;
    let kept = seen.lock().unwrap().kept.clone().unwrap();
    // The probe cancels its only subscription at its third event, and finishes; once it has seen
    // the subscription end, an ask asks nothing more, and says when the stage has ended.
    until("the probe's terminate", || {
        !seen.lock().unwrap().terminated.is_empty()
    })
    .await;
    let asked = ended("the probe's end", async {
        loop {
            match kept.ask(1) {
                Ok(()) => tokio::task::yield_now().await,
                Err(error) => break error,
            }
        }
    })
    .await;
    let expected = CallError::Ended {
        stage: "probe".into(),
    };
    assert_eq!(asked, expected);
    assert_eq!(kept.cancel(), Err(expected.clone()));
    // The pipeline still runs: the keeper takes events.
    let at = events_of(&keeper_seen, "other").len();
    until("more events for the keeper", || {
        events_of(&keeper_seen, "other").len() > at
    })
    .await;

    let report = ended("the shutdown", running.shutdown()).await.unwrap();
    assert_eq!(kept.cancel(), Err(expected));
    assert_eq!(events_of(&seen, "counter"), first(3));
    assert_eq!(seen.lock().unwrap().asker_cancels, [Ok(())]);
    assert_eq!(
        seen.lock().unwrap().ends,
        [("counter".to_owned(), CancelReason::Cancelled)]
    );
    assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

/// An `Asker` of a subscription that has ended while its stage runs on another: its ask and its
/// cancel are `Ok` and do nothing, as GenStage's `ask/3` and `cancel/2` of a dead subscription are.
/// The stage sees the subscription end once, goes on with its other one, asking through that
/// one's `Asker`, and the producer of the ended one sends nothing more to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asker_of_an_ended_subscription_asks_and_cancels_nothing() {
    let (mut probe, seen) = Probe::new();
    // One event at a time on both subscriptions; it never quits by count.
    probe.quit_after = Some(usize::MAX);
    let (keeper, keeper_seen) = Probe::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let other = pipeline.add_producer_named("other", Counter::endless(0));
    let probe = pipeline.add_consumer_named("probe", probe);
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    // `other` first: the `Asker` the probe keeps last is the one of `counter`.
    pipeline.subscribe_with(&other, &probe, one_at_a_time());
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    // Keeps `counter` running once the probe has left it.
    pipeline.subscribe(&counter, &keeper);
    let running = pipeline.start();
    until("events on both subscriptions", || {
        let seen = seen.lock().unwrap();
        seen.events.len() == 2
    })
    .await;
    let kept = seen.lock().unwrap().kept.clone().unwrap();
    assert_eq!(kept.subscription(), seen.lock().unwrap().tags["counter"]);

    probe.call(Quit("counter")).await.unwrap().unwrap();
    until("the subscription's end", || {
        !seen.lock().unwrap().ends.is_empty()
    })
    .await;
    let from_counter = events_of(&seen, "counter");
    assert_eq!(kept.ask(5), Ok(()));
    assert_eq!(kept.cancel(), Ok(()));
    // The stage goes on with `other`, and so does `counter` with the keeper.
    let (at, keeper_at) = (
        events_of(&seen, "other").len(),
        events_of(&keeper_seen, "counter").len(),
    );
    until("more events on the other subscription", || {
        events_of(&seen, "other").len() >= at + 5
    })
    .await;
    until("more events for the keeper", || {
        events_of(&keeper_seen, "counter").len() > keeper_at
    })
    .await;

    let report = ended("the shutdown", running.shutdown()).await.unwrap();
    assert_eq!(events_of(&seen, "counter"), from_counter);
    let ends = seen.lock().unwrap().ends.clone();
    assert_eq!(ends[0], ("counter".to_owned(), CancelReason::Cancelled));
    assert_eq!(
        ends.iter()
            .filter(|(producer, _)| producer == "counter")
            .count(),
        1,
        "{ends:?}"
    );
    assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
    assert_eq!(report.stage("probe").unwrap().excess, 0);
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

/// A restarted stage whose `handle_cancel` failed on the subscription it cancelled: the new value
/// has no producer left, and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_handle_cancel_of_the_cancelled_subscription_under_restart() {
    let (mut probe, seen) = Probe::new();
    probe.quit_after = Some(3);
    probe.fail_in_handle_cancel = true;
    probe.restart = Some(RestartPolicy::transient());
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let probe = pipeline.add_consumer_with_as(Some("probe".into()), move || probe.clone());
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    let report = ended("the run", pipeline.run())
        .await
        .expect("the run ends normally");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.events["counter"], first(3));
    assert_eq!(seen.ends, [("counter".to_owned(), CancelReason::Cancelled)]);
    assert_eq!(seen.inits, 2);
    let probe = report.stage("probe").unwrap();
    assert_eq!(
        (probe.status.clone(), probe.restarts),
        (StageStatus::Finished, 1)
    );
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

/// The consumer of a producer_consumer leaves it: the producer_consumer, left without consumers,
/// stops, and so does its producer; what the producer_consumer held is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_producer_consumer_stops_it_and_its_producer() {
    let passed = Arc::new(Mutex::new(Vec::new()));
    let (mut sink, sink_seen) = Probe::new();
    sink.quit_after = Some(7);
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let doubler = pipeline.add_producer_consumer_named(
        "doubler",
        Doubler {
            tag: None,
            passed: passed.clone(),
        },
    );
    let sink = pipeline.add_consumer_named("sink", sink);
    pipeline.subscribe_with(&counter, &doubler, SubscribeOptions::new().max_demand(50));
    pipeline.subscribe_with(&doubler, &sink, one_at_a_time());
    let report = ended("the run", pipeline.run())
        .await
        .expect("the run ends normally");
    assert!(events_of(&sink_seen, "doubler")
        .iter()
        .copied()
        .eq((0..7).map(|n| n * 2)));
    assert_eq!(report.stage("sink").unwrap().status, StageStatus::Finished);
    for name in ["counter", "doubler"] {
        assert_eq!(
            report.stage(name).unwrap().status,
            StageStatus::Cancelled { cause: None },
            "{name}"
        );
    }
    assert_balanced(&report);
    drop(sink);
}

/// A `ConsumerSupervisor` has no callback of the user's with a context; a message callback the
/// user writes for it has one, and cancels its subscription: the children of the events it took
/// run to their end, then it finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_supervisor_cancelled_from_a_callback_of_the_users() {
    let ran = Arc::new(Mutex::new(Vec::new()));
    let job = Job(ran.clone());
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let (keeper, _) = Probe::new();
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    pipeline.subscribe(&counter, &keeper);
    let running = pipeline.start();
    let jobs = running
        .add_consumer_named("jobs", genstage::ConsumerSupervisor::new(job).max_demand(4))
        .await
        .unwrap();
    let tag = running.subscribe(&counter, &jobs).await.unwrap();
    until("children run", || ran.lock().unwrap().len() >= 8).await;
    assert_eq!(jobs.call(LeaveJobs(tag)).await, Ok(Ok(())));
    keeper.call(Quit("counter")).await.unwrap().unwrap();
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");
    let jobs = report.stage("jobs").unwrap();
    assert_eq!(jobs.status, StageStatus::Finished);
    assert_eq!(jobs.events_in, ran.lock().unwrap().len() as u64);
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
}

/// A child that records its event.
struct Job(Arc<Mutex<Vec<u64>>>);

impl genstage::Child<u64> for Job {
    type Output = ();

    async fn run(&self, event: u64) {
        self.0.lock().unwrap().push(event);
    }
}

/// Tells a `ConsumerSupervisor` of [`Job`]s to cancel its subscription.
struct LeaveJobs(SubscriptionTag);

impl HandleCall<LeaveJobs> for genstage::ConsumerSupervisor<u64, Job> {
    type Reply = Result<(), AskError>;
    type Emitted = ();

    async fn handle_call(
        &mut self,
        LeaveJobs(tag): LeaveJobs,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(ctx.cancel(tag));
        Ok(())
    }
}

/// A producer that accumulates demand: a consumer leaves it before any event flows, the other
/// gets its events once the producer forwards, and the run ends with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_producer_that_accumulates_demand() {
    let (mut quitter, quitter_seen) = Probe::new();
    quitter.cancel_on_subscribe = Some("counter".into());
    let (keeper, keeper_seen) = Probe::new();
    let mut counter = Counter::endless(0);
    counter.accumulate = true;
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", counter);
    let quitter = pipeline.add_consumer_named("quitter", quitter);
    let keeper = pipeline.add_consumer_named("keeper", keeper);
    let options = SubscribeOptions::new().max_demand(10);
    pipeline.subscribe_with(&counter, &quitter, options);
    pipeline.subscribe_with(&counter, &keeper, options);
    let running = pipeline.start();
    until("the quitter's end", || {
        !quitter_seen.lock().unwrap().ends.is_empty()
    })
    .await;
    counter.demand(genstage::DemandMode::Forward).unwrap();
    until("the keeper's events", || {
        events_of(&keeper_seen, "counter").len() >= 30
    })
    .await;
    keeper.call(Quit("counter")).await.unwrap().unwrap();
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");
    assert_eq!(events_of(&quitter_seen, "counter"), Vec::<u64>::new());
    assert_eq!(
        quitter_seen.lock().unwrap().ends,
        [("counter".to_owned(), CancelReason::Cancelled)]
    );
    let kept = events_of(&keeper_seen, "counter");
    assert_eq!(kept, first(kept.len()));
    assert_balanced(&report);
    assert_eq!(report.totals().lost, 0);
    drop(quitter);
}

/// A stage that cancels and then fails past its restart limit fails for good: the run fails
/// naming it, the subscription ends once, and the report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_then_fail_past_the_restart_limit() {
    let (mut probe, seen) = Probe::new();
    probe.quit_after = Some(4);
    probe.fail_after_quit = true;
    probe.restart = Some(RestartPolicy::transient().max_restarts(0, Duration::from_secs(5)));
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let probe = pipeline.add_consumer_with_as(Some("probe".into()), move || probe.clone());
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    let error = ended("the run", pipeline.run())
        .await
        .expect_err("the probe fails for good");
    assert!(error.to_string().contains("probe"), "{error}");
    let report = error.report().expect("a report");
    assert!(matches!(
        report.stage("probe").unwrap().status,
        StageStatus::Failed(_)
    ));
    assert_eq!(events_of(&seen, "counter"), first(3));
    assert_balanced(report);
    assert_eq!(report.totals().lost, 1, "the batch the failure took");
}

/// A producer_consumer that leaves its producer when its own consumer leaves it, from
/// `handle_consumer_cancel`: the cancel is taken, and the chain stops from the bottom up (a stage
/// left without consumers stops, what it held counted lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_leaves_upstream_when_its_consumer_leaves() {
    let (mut sink, sink_seen) = Probe::new();
    sink.quit_after = Some(5);
    let ends = Arc::new(Mutex::new(Vec::new()));
    let left = Arc::new(Mutex::new(None));
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let relay = pipeline.add_producer_consumer_named(
        "relay",
        Relay {
            tag: None,
            left: left.clone(),
            ends: ends.clone(),
        },
    );
    let sink = pipeline.add_consumer_named("sink", sink);
    pipeline.subscribe_with(&counter, &relay, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&relay, &sink, one_at_a_time());
    let report = ended("the run", pipeline.run())
        .await
        .expect("the run ends normally");
    assert_eq!(events_of(&sink_seen, "relay"), first(5));
    assert_eq!(report.stage("sink").unwrap().status, StageStatus::Finished);
    // Its cancel is taken, but the relay, left without consumers, stops before the end of its
    // subscription reaches it, and so does the counter.
    assert_eq!(*left.lock().unwrap(), Some(Ok(())));
    assert_eq!(*ends.lock().unwrap(), []);
    for name in ["counter", "relay"] {
        assert_eq!(
            report.stage(name).unwrap().status,
            StageStatus::Cancelled { cause: None },
            "{name}"
        );
    }
    assert_balanced(&report);
    drop(sink);
}

/// Passes events on; leaves its producer when its consumer leaves.
struct Relay {
    tag: Option<SubscriptionTag>,
    left: Arc<Mutex<Option<Result<(), AskError>>>>,
    ends: Arc<Mutex<Vec<CancelReason>>>,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.tag = Some(subscription.tag());
        Demand::Automatic
    }

    async fn handle_cancel(
        &mut self,
        _: &Subscription,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.ends.lock().unwrap().push(reason.clone());
        Ok(Vec::new())
    }

    async fn handle_consumer_cancel(
        &mut self,
        _: &genstage::Subscriber,
        _: &CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        *self.left.lock().unwrap() = Some(ctx.cancel(self.tag.expect("subscribed")));
        Ok(Vec::new())
    }
}

// ---- ordering with the handle's requests -----------------------------------------------------

/// A cancel the stage made before the handle's next request is known when that request is
/// taken: the partition a consumer left, its `Context::cancel` answered, is free for a
/// subscription made right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_left_is_free_for_a_subscription_made_right_after() {
    for round in 0..ROUNDS * 5 {
        let (quitter, _) = Probe::new();
        let (odd, _) = Probe::new();
        let (second, second_seen) = Probe::new();
        let mut pipeline = Pipeline::new();
        let mut split = Counter::endless(0);
        split.dispatch = Fan::Partition;
        let split = pipeline.add_producer_named("split", split);
        let other = pipeline.add_producer_named("other", Counter::endless(1_000_000));
        let quitter = pipeline.add_consumer_named("quitter", quitter);
        let odd = pipeline.add_consumer_named("odd", odd);
        let options = SubscribeOptions::new().max_demand(10);
        pipeline.subscribe_with(&split, &quitter, options.partition(0));
        pipeline.subscribe_with(&split, &odd, options.partition(1));
        // So that the quitter runs on once it has left the split.
        pipeline.subscribe_with(&other, &quitter, options);
        let running = pipeline.start();
        let second = running.add_consumer_named("second", second).await.unwrap();
        assert_eq!(quitter.call(Quit("split")).await, Ok(Ok(())));
        let subscribed = running
            .subscribe_with(&split, &second, options.partition(0))
            .await;
        assert!(subscribed.is_ok(), "round {round}: {subscribed:?}");
        until("the second's events", || {
            !events_of(&second_seen, "split").is_empty()
        })
        .await;
        let report = ended("the shutdown", running.shutdown())
            .await
            .expect("a graceful shutdown");
        assert_balanced(&report);
        drop(odd);
    }
}

/// A cancel the stage made before the handle's next request is known when that request is
/// taken: once `y` has left `x` (its `Context::cancel` answered), `y` may feed `x` without a
/// cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_cut_by_a_cancel_is_no_cycle_for_a_subscription_made_right_after() {
    for round in 0..ROUNDS * 5 {
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named("counter", Counter::endless(0));
        let other = pipeline.add_producer_named("other", Counter::endless(1_000_000));
        let x = pipeline.add_producer_consumer_named("x", Joiner::default());
        let joiner = Joiner::default();
        let tags = joiner.tags.clone();
        let y = pipeline.add_producer_consumer_named("y", joiner);
        let (x_sink, _) = Probe::new();
        let (y_sink, _) = Probe::new();
        let x_sink = pipeline.add_consumer_named("x_sink", x_sink);
        let y_sink = pipeline.add_consumer_named("y_sink", y_sink);
        pipeline.subscribe(&counter, &x);
        pipeline.subscribe(&x, &x_sink);
        pipeline.subscribe(&x, &y);
        pipeline.subscribe(&other, &y);
        pipeline.subscribe(&y, &y_sink);
        let running = pipeline.start();
        until("y subscribed to both", || tags.lock().unwrap().len() == 2).await;
        assert_eq!(y.call(Quit("x")).await, Ok(Ok(())));
        let subscribed = running.subscribe(&y, &x).await;
        assert!(subscribed.is_ok(), "round {round}: {subscribed:?}");
        let report = ended("the shutdown", running.shutdown())
            .await
            .expect("a graceful shutdown");
        assert_balanced(&report);
        drop((x_sink, y_sink));
    }
}

/// Passes events on, keeping its subscriptions by producer; leaves one when told to.
#[derive(Default)]
struct Joiner {
    tags: Arc<Mutex<BTreeMap<String, SubscriptionTag>>>,
}

impl ProducerConsumer for Joiner {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.tags
            .lock()
            .unwrap()
            .insert(subscription.producer().to_owned(), subscription.tag());
        Demand::Automatic
    }
}

impl HandleCall<Quit> for Joiner {
    type Reply = Result<(), AskError>;
    type Emitted = Vec<u64>;

    async fn handle_call(
        &mut self,
        Quit(producer): Quit,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        let tag = self.tags.lock().unwrap()[producer];
        reply.reply(ctx.cancel(tag));
        Ok(Vec::new())
    }
}

/// A detached pipeline (its handle dropped) still takes a stage's own cancel: the consumer stops
/// itself, and its producer, left without consumers, stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_pipeline_takes_a_stages_own_cancel() {
    let (mut probe, seen) = Probe::new();
    probe.quit_after = Some(5);
    let counter = Counter::endless(0);
    let consumer_ends = counter.consumer_ends.clone();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", counter);
    let probe = pipeline.add_consumer_named("probe", probe);
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    drop(pipeline.start());
    until("the probe's end", || {
        !seen.lock().unwrap().terminated.is_empty()
    })
    .await;
    until("the counter told", || {
        !consumer_ends.lock().unwrap().is_empty()
    })
    .await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.terminated, [StageStatus::Finished]);
    assert_eq!(seen.events["counter"], first(5));
    assert_eq!(seen.ends, [("counter".to_owned(), CancelReason::Cancelled)]);
    assert_eq!(
        *consumer_ends.lock().unwrap(),
        [("probe".to_owned(), CancelReason::Cancelled)]
    );
}

/// A stage that cancels and then never returns from its callback, as a graceful shutdown with a
/// time limit begins: the limit aborts it, the error names it, and the report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_then_a_callback_that_never_returns_under_shutdown_within() {
    let never = Arc::new(tokio::sync::Notify::new());
    let stuck = Arc::new(AtomicBool::new(false));
    let (mut probe, seen) = Probe::new();
    probe.quit_after = Some(4);
    probe.hang_after_quit = Some((never.clone(), stuck.clone()));
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let probe = pipeline.add_consumer_named("probe", probe);
    pipeline.subscribe_with(&counter, &probe, one_at_a_time());
    let running = pipeline.start();
    until("the probe stuck", || stuck.load(Ordering::SeqCst)).await;
    let error = ended(
        "the shutdown",
        running.shutdown_within(Duration::from_secs(1)),
    )
    .await
    .expect_err("the probe is still busy at the limit");
    let PipelineError::ShutdownTimeout { busy, report } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*busy, ["probe"]);
    assert_eq!(report.stage("probe").unwrap().status, StageStatus::Aborted);
    assert_eq!(seen.lock().unwrap().asker_cancels, [Ok(())]);
    assert_balanced(report);
    drop(probe);
}

/// A stage that cancels its subscription and then fails, in the same `handle_events`: its cancel
/// was made first, so its producer is told `Cancelled` (as GenStage's producer takes the cancel
/// before the consumer's exit), every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_then_a_failure_tells_the_producer_cancelled() {
    let mut told = BTreeMap::new();
    for round in 0..ROUNDS * 5 {
        let (mut probe, seen) = Probe::new();
        probe.quit_after = Some(3);
        probe.fail_after_quit = true;
        let (keeper, _) = Probe::new();
        let counter = Counter::endless(0);
        let consumer_ends = counter.consumer_ends.clone();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named("counter", counter);
        let probe = pipeline.add_consumer_named("probe", probe);
        let keeper = pipeline.add_consumer_named("keeper", keeper);
        pipeline.subscribe_with(&counter, &probe, one_at_a_time());
        pipeline.subscribe_with(&counter, &keeper, SubscribeOptions::new().max_demand(5));
        let running = pipeline.start();
        until("the counter told", || {
            !consumer_ends.lock().unwrap().is_empty()
        })
        .await;
        let (consumer, reason) = consumer_ends.lock().unwrap()[0].clone();
        assert_eq!(consumer, "probe", "round {round}");
        *told.entry(format!("{reason:?}")).or_insert(0) += 1;
        keeper.call(Quit("counter")).await.unwrap().unwrap();
        let error = ended("the run", running)
            .await
            .expect_err("the probe failed");
        assert!(error.to_string().contains("probe"), "{error}");
        assert_balanced(error.report().unwrap());
        assert_eq!(
            seen.lock().unwrap().asker_cancels,
            [Ok(())],
            "round {round}"
        );
    }
    assert_eq!(told.keys().collect::<Vec<_>>(), ["Cancelled"], "{told:?}");
}

/// An `Asker` that a thread of the user's cancels through without pause, as fast as it can (here
/// on a subscription that has ended, of a stage that runs on another): the pipeline still takes
/// its stages' ends and finishes (the stream of cancels does not hold its supervisor), and the
/// thread's cancels fail once the stage has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_without_pause_do_not_hold_the_pipeline() {
    let (probe, seen) = Probe::new();
    let (other, _) = Probe::new();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let more = pipeline.add_producer_named("more", Counter::endless(0));
    let probe = pipeline.add_consumer_named("probe", probe);
    let other = pipeline.add_consumer_named("other", other);
    // `more` first: the `Asker` the probe keeps last is the one of `counter`.
    pipeline.subscribe(&more, &probe);
    pipeline.subscribe(&counter, &probe);
    pipeline.subscribe(&more, &other);
    let running = pipeline.start();
    until("the askers", || seen.lock().unwrap().tags.len() == 2).await;
    let kept = seen.lock().unwrap().kept.clone().unwrap();
    assert_eq!(kept.subscription(), seen.lock().unwrap().tags["counter"]);
    // The probe leaves `counter`: the subscription ends, and the cancels below find nothing to
    // cancel; the probe runs on with `more`.
    assert_eq!(probe.call(Quit("counter")).await, Ok(Ok(())));
    until("the subscription's end", || {
        !seen.lock().unwrap().ends.is_empty()
    })
    .await;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let spammer = std::thread::spawn({
        let sent = sent.clone();
        move || {
            while kept.cancel().is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    until("cancels sent", || sent.load(Ordering::Relaxed) > 1000).await;
    // Both consumers leave `more`: the probe ends (which stops the cancels), the producer and
    // then the pipeline end, under the cancels.
    assert_eq!(probe.call(Quit("more")).await, Ok(Ok(())));
    assert_eq!(other.call(Quit("more")).await, Ok(Ok(())));
    let report = ended("the run", running)
        .await
        .expect("the run ends normally");
    spammer.join().unwrap();
    assert_eq!(report.stage("probe").unwrap().status, StageStatus::Finished);
    assert_eq!(report.stage("other").unwrap().status, StageStatus::Finished);
    assert_balanced(&report);
    drop((probe, other));
}

/// Under cancels without pause, a graceful shutdown's time limit still comes: the stage still busy
/// at it is aborted and named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_without_pause_do_not_hold_back_a_shutdowns_time_limit() {
    let never = Arc::new(tokio::sync::Notify::new());
    let stuck = Arc::new(AtomicBool::new(false));
    let (probe, seen) = Probe::new();
    let (mut busy, _) = Probe::new();
    busy.quit_after = Some(2);
    busy.hang_after_quit = Some((never.clone(), stuck.clone()));
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named("counter", Counter::endless(0));
    let more = pipeline.add_producer_named("more", Counter::endless(0));
    let extra = pipeline.add_producer_named("extra", Counter::endless(0));
    let probe = pipeline.add_consumer_named("probe", probe);
    let busy = pipeline.add_consumer_named("busy", busy);
    // `extra` first: the `Asker` the probe keeps last is the one of `counter`; `extra` keeps the
    // probe running once it has left `counter`, so that its `Asker` cancels without pause.
    pipeline.subscribe(&extra, &probe);
    pipeline.subscribe(&counter, &probe);
    pipeline.subscribe_with(&more, &busy, one_at_a_time());
    let running = pipeline.start();
    until("the askers", || seen.lock().unwrap().tags.len() == 2).await;
    let kept = seen.lock().unwrap().kept.clone().unwrap();
    assert_eq!(kept.subscription(), seen.lock().unwrap().tags["counter"]);
    assert_eq!(probe.call(Quit("counter")).await, Ok(Ok(())));
    until("the subscription's end", || {
        !seen.lock().unwrap().ends.is_empty()
    })
    .await;
    until("the busy one stuck", || stuck.load(Ordering::SeqCst)).await;
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let spammer = std::thread::spawn({
        let sent = sent.clone();
        move || {
            while kept.cancel().is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    until("cancels sent", || sent.load(Ordering::Relaxed) > 1000).await;
    let error = ended(
        "the shutdown",
        running.shutdown_within(Duration::from_secs(1)),
    )
    .await
    .expect_err("busy is still busy at the limit");
    spammer.join().unwrap();
    let PipelineError::ShutdownTimeout {
        busy: stages,
        report,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(*stages, ["busy"]);
    assert_balanced(report);
    drop(busy);
}
