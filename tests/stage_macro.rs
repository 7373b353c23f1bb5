//! Stages written with `#[stage]` run in pipelines built with the typed builder: sync and async
//! callbacks, every accepted return form, generic stages, and the options, each checked to take
//! effect.

use std::sync::{Arc, Mutex};

use genstage::prelude::*;
use genstage::{
    CancelReason, Context, Demand, HandleCall, HandleCast, HandleInfo, ProducerRef, ReplyTo,
    StageStatus, Subscriber, Subscription, SubscriptionTag,
};

/// What a test's stages saw, shared with the test.
type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap().clone()
}

/// Counts from `next` up to `end` (excluded), recording every demand it is asked for.
struct Counter {
    next: u64,
    end: u64,
    demands: Log<usize>,
}

impl Counter {
    fn new(end: u64) -> Self {
        Counter {
            next: 0,
            end,
            demands: log(),
        }
    }
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        self.demands.lock().unwrap().push(demand);
        let stop = self.end.min(self.next + demand as u64);
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

/// Keeps the even numbers.
struct Evens;

#[stage(producer_consumer)]
impl Evens {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().filter(|n| n % 2 == 0).collect()
    }
}

/// Records every event, and the size of every batch.
struct Collect<T> {
    events: Log<T>,
    batches: Log<usize>,
}

impl<T> Collect<T> {
    fn new() -> Self {
        Collect {
            events: log(),
            batches: log(),
        }
    }

    fn logs(&self) -> (Log<T>, Log<usize>) {
        (self.events.clone(), self.batches.clone())
    }
}

// No `Send + 'static` bounds written: the generated impls require them.
#[stage(consumer)]
impl<T> Collect<T> {
    async fn handle_events(&mut self, events: Vec<T>) {
        self.batches.lock().unwrap().push(events.len());
        self.events.lock().unwrap().extend(events);
    }
}

#[tokio::test]
async fn sync_and_async_callbacks_deliver_every_event_in_order() {
    let mut pipeline = Pipeline::new();
    let counter = Counter::new(1_000).add_to(&mut pipeline, None);
    let evens = Evens.add_to(&mut pipeline, None);
    let collect = Collect::new();
    let (events, _) = collect.logs();
    let sink = collect.add_to(&mut pipeline, None);
    pipeline.subscribe(&counter, &evens);
    pipeline.subscribe(&evens, &sink);

    let report = pipeline.run().await.unwrap();

    assert_eq!(taken(&events), (0..1_000).step_by(2).collect::<Vec<u64>>());
    assert_eq!(report.stage("Counter").unwrap().events_out, 1_000);
    assert_eq!(report.stage("Evens").unwrap().events_in, 1_000);
    assert_eq!(report.stage("Evens").unwrap().events_out, 500);
    assert_eq!(report.stage("Collect").unwrap().events_in, 500);
    assert!(report
        .stages
        .iter()
        .all(|s| s.status == StageStatus::Finished));
}

/// `Result<Vec<T>, E>` from a producer: more events until the source runs dry.
struct Lines {
    lines: Vec<String>,
}

#[stage(producer)]
impl Lines {
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<String>, std::io::Error> {
        let take = demand.min(self.lines.len());
        let events: Vec<String> = self.lines.drain(..take).collect();
        Ok(if self.lines.is_empty() {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
}

/// `StageResult<Vec<T>>` from a producer_consumer, with an async callback.
struct Lengths;

#[stage(producer_consumer)]
impl Lengths {
    async fn handle_events(&mut self, events: Vec<String>) -> StageResult<Vec<usize>> {
        Ok(events.iter().map(String::len).collect())
    }
}

/// `Result<(), E>` from a consumer, with a sync callback.
struct Sum {
    total: Arc<Mutex<usize>>,
}

#[stage(consumer)]
impl Sum {
    fn handle_events(&mut self, events: Vec<usize>) -> Result<(), String> {
        *self.total.lock().unwrap() += events.iter().sum::<usize>();
        Ok(())
    }
}

#[tokio::test]
async fn result_returns_deliver_their_ok_values() {
    let lines: Vec<String> = (0..300).map(|i| "x".repeat(i % 7)).collect();
    let expected: usize = lines.iter().map(String::len).sum();
    let total = Arc::new(Mutex::new(0));

    let mut pipeline = Pipeline::new();
    let source = Lines { lines }.add_to(&mut pipeline, None);
    let lengths = Lengths.add_to(&mut pipeline, None);
    let sum = Sum {
        total: total.clone(),
    }
    .add_to(&mut pipeline, None);
    pipeline.subscribe(&source, &lengths);
    pipeline.subscribe(&lengths, &sum);
    let report = pipeline.run().await.unwrap();

    assert_eq!(*total.lock().unwrap(), expected);
    assert_eq!(report.stage("Lines").unwrap().events_out, 300);
    assert_eq!(report.stage("Sum").unwrap().events_in, 300);
}

/// Fails on the first event at or above `limit`.
struct FailAt {
    limit: u64,
}

#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is too large", self.0)
    }
}

impl std::error::Error for TooLarge {}

#[stage(consumer, max_demand = 4, min_demand = 0)]
impl FailAt {
    fn handle_events(&mut self, events: Vec<u64>) -> Result<(), TooLarge> {
        match events.iter().find(|&&n| n >= self.limit) {
            Some(&n) => Err(TooLarge(n)),
            None => Ok(()),
        }
    }
}

#[tokio::test]
async fn an_error_returned_by_a_callback_fails_the_pipeline_naming_the_stage() {
    let mut pipeline = Pipeline::new();
    let counter = Counter::new(100).add_to(&mut pipeline, None);
    let fail = FailAt { limit: 10 }.add_to(&mut pipeline, None);
    pipeline.subscribe(&counter, &fail);

    let error = pipeline.run().await.unwrap_err();

    assert_eq!(error.stage(), "FailAt");
    // Batches of 4 (max_demand 4, min_demand 0): 8..12 is the first holding a number >= 10.
    assert_eq!(error.to_string(), "stage `FailAt` failed: 10 is too large");
}

/// A generic producer_consumer, with its bounds spelled out and a where clause.
struct Tag<T> {
    prefix: String,
    _events: std::marker::PhantomData<fn(T)>,
}

#[stage(producer_consumer)]
impl<T: Send + 'static> Tag<T>
where
    T: std::fmt::Display,
{
    fn handle_events(&mut self, events: Vec<T>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| format!("{}{e}", self.prefix))
            .collect()
    }
}

#[tokio::test]
async fn generic_stages_run_with_any_event_type() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(1..=3u8));
    let tag = Tag {
        prefix: "n".to_owned(),
        _events: std::marker::PhantomData,
    }
    .add_to(&mut pipeline, Some("tag".to_owned()));
    let collect = Collect::<String>::new();
    let (events, _) = collect.logs();
    let sink = pipeline.add_consumer(collect);
    pipeline.subscribe(&numbers, &tag);
    pipeline.subscribe(&tag, &sink);
    let report = pipeline.run().await.unwrap();

    assert_eq!(taken(&events), ["n1", "n2", "n3"]);
    assert_eq!(report.stage("tag").unwrap().events_out, 3);
}

/// Emits one event per call from an `impl Future` returned by a sync fn.
struct Ticks {
    left: u32,
}

#[stage(producer)]
impl Ticks {
    #[allow(clippy::manual_async_fn)]
    fn handle_demand(
        &mut self,
        _demand: usize,
    ) -> impl std::future::Future<Output = Emit<u32>> + Send + '_ {
        async move {
            self.left -= 1;
            if self.left == 0 {
                Emit::last(vec![self.left])
            } else {
                Emit::more(vec![self.left])
            }
        }
    }
}

#[tokio::test]
async fn a_sync_callback_may_return_a_future() {
    let mut pipeline = Pipeline::new();
    let ticks = Ticks { left: 5 }.add_to(&mut pipeline, None);
    let collect = Collect::<u32>::new();
    let (events, _) = collect.logs();
    let sink = collect.add_to(&mut pipeline, None);
    pipeline.subscribe(&ticks, &sink);
    pipeline.run().await.unwrap();

    assert_eq!(taken(&events), [4, 3, 2, 1, 0]);
}

/// Demand options: asks for at most 10 events, and again each time 5 have been handled.
struct Batched<T> {
    inner: Collect<T>,
}

#[stage(consumer, max_demand = 10, min_demand = 5)]
impl<T: Send + 'static> Batched<T> {
    async fn handle_events(&mut self, events: Vec<T>) {
        self.inner.handle_events(events).await;
    }
}

#[tokio::test]
async fn demand_options_shape_the_batches_and_the_demand() {
    let mut pipeline = Pipeline::new();
    let counter = Counter::new(100);
    let demands = counter.demands.clone();
    let counter = counter.add_to(&mut pipeline, None);
    let inner = Collect::<u64>::new();
    let (events, batches) = inner.logs();
    let sink = Batched { inner }.add_to(&mut pipeline, None);
    pipeline.subscribe(&counter, &sink);
    pipeline.run().await.unwrap();

    assert_eq!(taken(&events), (0..100).collect::<Vec<u64>>());
    // Every batch is `max_demand - min_demand` = 5 events.
    assert_eq!(taken(&batches), vec![5; 20]);
    // The producer is asked for `max_demand` first, then never for more than that.
    let demands = taken(&demands);
    assert_eq!(demands[0], 10);
    assert!(demands.iter().all(|&d| d <= 10), "{demands:?}");
    assert_eq!(demands.iter().sum::<usize>(), 100);
}

const MAX: usize = 6;

/// Demand options as constant expressions.
struct ConstOptions<T> {
    inner: Collect<T>,
}

#[stage(consumer, max_demand = MAX, min_demand = MAX / 2)]
impl<T: Send + 'static> ConstOptions<T> {
    async fn handle_events(&mut self, events: Vec<T>) {
        self.inner.handle_events(events).await;
    }
}

/// Demand options from a method: each instance has its own.
struct PerInstance<T> {
    inner: Collect<T>,
    max_demand: usize,
}

#[stage(consumer)]
impl<T: Send + 'static> PerInstance<T> {
    async fn handle_events(&mut self, events: Vec<T>) {
        self.inner.handle_events(events).await;
    }

    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new()
            .max_demand(self.max_demand)
            .min_demand(0)
    }
}

#[tokio::test]
async fn demand_options_may_be_constants_or_come_from_a_method() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..30u64));
    let by_const = Collect::<u64>::new();
    let (_, const_batches) = by_const.logs();
    let by_const = ConstOptions { inner: by_const }.add_to(&mut pipeline, None);
    pipeline.subscribe(&numbers, &by_const);
    let more = pipeline.add_producer(from_iter(0..30u64));
    let by_method = Collect::<u64>::new();
    let (_, method_batches) = by_method.logs();
    let by_method = PerInstance {
        inner: by_method,
        max_demand: 7,
    }
    .add_to(&mut pipeline, None);
    pipeline.subscribe(&more, &by_method);
    pipeline.run().await.unwrap();

    assert_eq!(taken(&const_batches), vec![3; 10]);
    // max_demand 7, min_demand 0: batches of 7, the last one what is left.
    assert_eq!(taken(&method_batches), [7, 7, 7, 7, 2]);
}

/// Emits `burst` events on its first call, whatever the demand, then ends: the excess goes to its
/// buffer of 3 events, which keeps the first (or, for `KeepLast`, the last) that arrive.
struct BurstKeepFirst {
    burst: u64,
}

#[stage(producer, buffer_size = 3, buffer_keep = first)]
impl BurstKeepFirst {
    fn handle_demand(&mut self, _demand: usize) -> Emit<u64> {
        Emit::last((0..self.burst).collect())
    }
}

struct BurstKeepLast {
    burst: u64,
}

#[stage(producer, buffer_size = 3, buffer_keep = last)]
impl BurstKeepLast {
    fn handle_demand(&mut self, _demand: usize) -> Emit<u64> {
        Emit::last((0..self.burst).collect())
    }
}

struct BurstUnbounded {
    burst: u64,
}

#[stage(producer, buffer_size = infinity)]
impl BurstUnbounded {
    fn handle_demand(&mut self, _demand: usize) -> Emit<u64> {
        Emit::last((0..self.burst).collect())
    }
}

/// Asks for one event at a time.
struct OneByOne<T> {
    inner: Collect<T>,
}

#[stage(consumer, max_demand = 1, min_demand = 0)]
impl<T: Send + 'static> OneByOne<T> {
    async fn handle_events(&mut self, events: Vec<T>) {
        self.inner.handle_events(events).await;
    }
}

/// Runs `producer` into a one-by-one consumer: the events delivered and the producer's discards.
async fn run_burst<P: Producer<Output = u64> + Stage<Ref = ProducerRef<P>>>(
    producer: P,
) -> (Vec<u64>, u64) {
    let mut pipeline = Pipeline::new();
    let source = producer.add_to(&mut pipeline, Some("burst".to_owned()));
    let inner = Collect::<u64>::new();
    let (events, _) = inner.logs();
    let sink = OneByOne { inner }.add_to(&mut pipeline, None);
    pipeline.subscribe(&source, &sink);
    let report = pipeline.run().await.unwrap();
    (taken(&events), report.stage("burst").unwrap().discarded)
}

#[tokio::test]
async fn buffer_options_size_the_buffer_and_choose_what_it_keeps() {
    // Asked for 1, emits 10: 1 delivered, 9 for a buffer of 3.
    assert_eq!(
        run_burst(BurstKeepFirst { burst: 10 }).await,
        (vec![0, 1, 2, 3], 6)
    );
    assert_eq!(
        run_burst(BurstKeepLast { burst: 10 }).await,
        (vec![0, 7, 8, 9], 6)
    );
    assert_eq!(
        run_burst(BurstUnbounded { burst: 10 }).await,
        ((0..10).collect(), 0)
    );
}

/// A producer that fails on its second call.
struct Flaky {
    calls: u32,
}

#[stage(producer)]
impl Flaky {
    fn handle_demand(&mut self, demand: usize) -> Result<Vec<u64>, &'static str> {
        self.calls += 1;
        if self.calls > 1 {
            return Err("flaky failed");
        }
        Ok(vec![7; demand.min(2)])
    }
}

/// Subscribes with `cancel = temporary`: a failing producer does not stop it.
struct Tolerant<T> {
    inner: Collect<T>,
}

#[stage(consumer, cancel = temporary)]
impl<T: Send + 'static> Tolerant<T> {
    async fn handle_events(&mut self, events: Vec<T>) {
        self.inner.handle_events(events).await;
    }
}

#[tokio::test]
async fn cancel_temporary_keeps_a_consumer_going_when_a_producer_fails() {
    let mut pipeline = Pipeline::new();
    let flaky = Flaky { calls: 0 }.add_to(&mut pipeline, None);
    let good = pipeline.add_producer(from_iter(100..200u64));
    let inner = Collect::<u64>::new();
    let (events, _) = inner.logs();
    let tolerant = Tolerant { inner }.add_to(&mut pipeline, None);
    pipeline.subscribe(&flaky, &tolerant);
    pipeline.subscribe(&good, &tolerant);

    let error = pipeline.run().await.unwrap_err();

    assert_eq!(error.stage(), "Flaky");
    let mut events = taken(&events);
    events.sort_unstable();
    // Everything from the good producer, and whatever the flaky one emitted before failing.
    let from_good: Vec<u64> = events.iter().copied().filter(|&e| e >= 100).collect();
    assert_eq!(from_good, (100..200).collect::<Vec<u64>>());
    assert!(events.iter().filter(|&&e| e < 100).all(|&e| e == 7));
}

#[tokio::test]
async fn without_cancel_temporary_a_failing_producer_stops_the_consumer() {
    let mut pipeline = Pipeline::new();
    let flaky = Flaky { calls: 0 }.add_to(&mut pipeline, None);
    let good = pipeline.add_producer(from_iter(std::iter::repeat(1u64)));
    let collect = Collect::<u64>::new();
    let sink = collect.add_to(&mut pipeline, None);
    pipeline.subscribe(&flaky, &sink);
    pipeline.subscribe(&good, &sink);

    // The endless producer only ends because the consumer stopped and it has no consumer left: were
    // the consumer to go on, the pipeline would never end.
    let run = tokio::time::timeout(std::time::Duration::from_secs(30), pipeline.run());
    let error = run.await.expect("the consumer stops").unwrap_err();

    assert_eq!(error.stage(), "Flaky");
}

mod renamed {
    //! `crate = "…"` names the genstage crate by another path.
    use ::genstage as gs;

    pub(crate) struct Count {
        pub(crate) seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    #[gs::stage(consumer, crate = "gs")]
    impl Count {
        fn handle_events(&mut self, events: Vec<u64>) {
            self.seen
                .fetch_add(events.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[tokio::test]
async fn the_crate_option_renames_the_genstage_path() {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..42u64));
    let count = renamed::Count { seen: seen.clone() }.add_to(&mut pipeline, None);
    pipeline.subscribe(&numbers, &count);
    pipeline.run().await.unwrap();

    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 42);
}

mod shadowed {
    //! The expansion names everything by absolute paths: shadowing prelude names breaks nothing.
    #![allow(dead_code)]
    use genstage::stage;

    struct Vec;
    struct Option;
    struct String;
    struct Result;
    struct Send;

    pub(crate) struct Shadowed;

    #[stage(producer_consumer)]
    impl Shadowed {
        fn handle_events(&mut self, events: std::vec::Vec<u8>) -> std::vec::Vec<u8> {
            events
        }
    }
}

#[tokio::test]
async fn stages_are_named_after_their_type_unless_named() {
    let mut pipeline = Pipeline::new();
    let numbers = from_iter(0..4u8).add_to(&mut pipeline, None);
    let a = shadowed::Shadowed.add_to(&mut pipeline, None);
    let b = shadowed::Shadowed.add_to(&mut pipeline, Some("second".to_owned()));
    let sink = pipeline.add_consumer(Collect::<u8>::new());
    pipeline.subscribe(&numbers, &a);
    pipeline.subscribe(&a, &b);
    pipeline.subscribe(&b, &sink);
    let report = pipeline.run().await.unwrap();

    let names: std::vec::Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["from_iter", "Shadowed", "second", "Collect"]);
    assert_eq!(report.stage("second").unwrap().events_out, 4);
}

/// A consumer whose `max_demand` `#[stage]` knows: 10.
struct Tally {
    seen: Log<usize>,
}

#[stage(consumer, max_demand = 10)]
impl Tally {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.lock().unwrap().push(events.len());
    }
}

/// A producer_consumer with GenStage's default `max_demand`.
struct PassOn;

#[stage(producer_consumer)]
impl PassOn {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }
}

#[test]
fn stage_tells_pipeline_the_max_demand_it_knows() {
    assert_eq!(<Tally as Stage>::__MAX_DEMAND, Some((10, false)));
    assert_eq!(<PassOn as Stage>::__MAX_DEMAND, Some((1000, true)));
    assert_eq!(<Counter as Stage>::__MAX_DEMAND, None);
}

#[tokio::test]
async fn an_edge_min_demand_below_the_consumer_max_demand_compiles_and_applies() {
    let seen = log();
    let report = pipeline! {
        from_iter(0..100u64) -[min_demand = 999]-> PassOn -[min_demand = 6]-> Tally { seen: seen.clone() }
    }
    .run()
    .await
    .unwrap();
    assert_eq!(report.stage("Tally").unwrap().events_in, 100);
    // Batches hold at most max_demand - min_demand = 4 events.
    let batches = taken(&seen);
    assert_eq!(batches.iter().sum::<usize>(), 100);
    assert!(batches.iter().all(|&n| n <= 4), "{batches:?}");
}

// Message callbacks and `terminate`. A `Context` and a `ReplyTo` come only from a running stage, so
// these tests check the generated impls' types and call `terminate` directly; messages_macro.rs
// sends messages to running stages.

/// A request, a cast and an info.
struct Push(u64);
struct Len;
struct Tick;

/// That `S` answers calls of `M` with `R`, emitting `E`.
fn answers_calls<S, M, R, E>()
where
    S: HandleCall<M, Reply = R, Emitted = E>,
{
}

/// That `S` takes casts of `M`, emitting `E`.
fn takes_casts<S, M, E>()
where
    S: HandleCast<M, Emitted = E>,
{
}

/// That `S` takes infos of `M`, emitting `E`.
fn takes_infos<S, M, E>()
where
    S: HandleInfo<M, Emitted = E>,
{
}

/// A producer with every message callback, in every form: sync with the context, async, a
/// `Result`, `impl Future`, emitting `Emit<T>`, `Vec<T>` or nothing.
struct Queue {
    jobs: Vec<u64>,
    ended: Log<String>,
}

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let take = demand.min(self.jobs.len());
        self.jobs.drain(..take).collect()
    }

    fn handle_call(
        &mut self,
        request: Push,
        reply: ReplyTo<usize>,
        ctx: &mut Context<Self>,
    ) -> Emit<u64> {
        let _ = ctx.name();
        reply.reply(self.jobs.len());
        Emit::more(vec![request.0])
    }

    async fn handle_cast(&mut self, message: Push) -> Result<Vec<u64>, String> {
        Ok(vec![message.0])
    }

    #[allow(clippy::manual_async_fn)]
    fn handle_info(
        &mut self,
        _tick: Tick,
        ctx: &mut Context<'_, Self>,
    ) -> impl std::future::Future<Output = ()> + Send {
        let _ = ctx.name();
        async {}
    }

    async fn terminate(&mut self, status: &StageStatus) {
        self.ended
            .lock()
            .unwrap()
            .push(format!("Queue: {status:?}"));
    }
}

/// A producer_consumer whose message callbacks emit `Vec<T>`, a `StageResult` or nothing.
struct Scale {
    factor: u64,
    ended: Log<String>,
}

#[stage(producer_consumer)]
impl Scale {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().map(|n| n * self.factor).collect()
    }

    async fn handle_call(
        &mut self,
        factor: u64,
        reply: genstage::ReplyTo<u64>,
        _ctx: &mut genstage::Context<'_, Self>,
    ) -> Vec<u64> {
        reply.reply(std::mem::replace(&mut self.factor, factor));
        Vec::new()
    }

    fn handle_cast(&mut self, _tick: Tick) {}

    fn handle_info(&mut self, message: Push) -> StageResult<Vec<u64>> {
        Ok(vec![message.0 * self.factor])
    }

    // `-> ()` written out is accepted too.
    #[allow(clippy::unused_unit)]
    fn terminate(&mut self, status: &genstage::StageStatus) -> () {
        self.ended
            .lock()
            .unwrap()
            .push(format!("Scale: {status:?}"));
    }
}

/// A consumer whose message callbacks return `()` or `Result<(), E>`.
struct Tape {
    seen: Vec<u64>,
    ended: Log<String>,
}

#[stage(consumer)]
impl Tape {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.extend(events);
    }

    fn handle_call(&mut self, _request: Len, reply: ReplyTo<usize>) -> Result<(), std::io::Error> {
        reply.reply(self.seen.len());
        Ok(())
    }

    async fn handle_cast(&mut self, message: Push, ctx: &mut Context<'_, Self>) {
        let _ = ctx.name();
        self.seen.push(message.0);
    }

    #[allow(clippy::unused_unit)]
    fn handle_info(&mut self, _tick: Tick) -> () {}

    #[allow(clippy::manual_async_fn)]
    fn terminate(
        &mut self,
        status: &StageStatus,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        let line = format!("Tape: {status:?}");
        async move { self.ended.lock().unwrap().push(line) }
    }
}

/// A generic stage: the message type is the stage's parameter.
struct Relay<T> {
    held: Vec<T>,
}

#[stage(producer_consumer)]
impl<T> Relay<T> {
    fn handle_events(&mut self, events: Vec<T>) -> Vec<T> {
        events
    }

    fn handle_cast(&mut self, event: T) -> Vec<T> {
        self.held.push(event);
        std::mem::take(&mut self.held)
    }

    fn handle_call(&mut self, request: Vec<T>, reply: ReplyTo<usize>) -> Vec<T> {
        reply.reply(request.len());
        request
    }
}

#[test]
fn message_callbacks_implement_the_message_traits_with_the_roles_events() {
    // A producer's callbacks emit an `Emit<T>`, whatever form they return it in.
    answers_calls::<Queue, Push, usize, Emit<u64>>();
    takes_casts::<Queue, Push, Emit<u64>>();
    takes_infos::<Queue, Tick, Emit<u64>>();
    // A producer_consumer's a `Vec<T>`.
    answers_calls::<Scale, u64, u64, Vec<u64>>();
    takes_casts::<Scale, Tick, Vec<u64>>();
    takes_infos::<Scale, Push, Vec<u64>>();
    // A consumer's nothing.
    answers_calls::<Tape, Len, usize, ()>();
    takes_casts::<Tape, Push, ()>();
    takes_infos::<Tape, Tick, ()>();
    // A generic stage's, for each of its event types.
    takes_casts::<Relay<String>, String, Vec<String>>();
    answers_calls::<Relay<u8>, Vec<u8>, usize, Vec<u8>>();
}

#[tokio::test]
async fn terminate_is_the_role_traits_terminate() {
    let ended = log();
    let mut queue = Queue {
        jobs: Vec::new(),
        ended: ended.clone(),
    };
    let mut scale = Scale {
        factor: 2,
        ended: ended.clone(),
    };
    let mut tape = Tape {
        seen: Vec::new(),
        ended: ended.clone(),
    };

    Producer::terminate(&mut queue, &StageStatus::ShutDown).await;
    ProducerConsumer::terminate(&mut scale, &StageStatus::Finished).await;
    Consumer::terminate(&mut tape, &StageStatus::Failed("boom".to_owned())).await;
    // A stage without `terminate` has the trait's, which does nothing.
    Producer::terminate(&mut Counter::new(1), &StageStatus::Aborted).await;

    assert_eq!(
        taken(&ended),
        [
            "Queue: ShutDown",
            "Scale: Finished",
            "Tape: Failed(\"boom\")"
        ]
    );
}

// `handle_subscribe` and `handle_cancel`. A `Subscription` and a `Context` come only from a running
// stage, so these tests check that every accepted form compiles into the role trait's methods, with
// the role's types; the runtime's tests run them.

/// That `S`'s `handle_subscribe` is the consumer trait's: it gives a `Demand`.
fn consumer_subscribes<S: Consumer>() {
    let _: fn(&mut S, &Subscription, &mut Context<'_, S>) -> Demand =
        <S as Consumer>::handle_subscribe;
}

/// That `S`'s `handle_subscribe` is the producer_consumer trait's, with these events.
fn producer_consumer_subscribes<S, I, O>()
where
    S: ProducerConsumer<Input = I, Output = O>,
{
    let _: fn(&mut S, &Subscription, &mut Context<'_, S>) -> Demand =
        <S as ProducerConsumer>::handle_subscribe;
}

/// A consumer taking control of its demand (`Demand::Manual`, with the context), whose
/// `handle_cancel` is `async` and returns a `Result<(), E>`.
struct Metered {
    seen: Vec<u64>,
    subscriptions: Vec<String>,
    cancels: Vec<String>,
}

#[stage(consumer)]
impl Metered {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.extend(events);
    }

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        let _ = ctx.ask(subscription.tag(), subscription.max_demand());
        self.subscriptions.push(subscription.producer().to_owned());
        Demand::Manual
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
    ) -> Result<(), String> {
        match reason {
            CancelReason::Failed { cause } => Err(format!("{cause} failed")),
            _ => {
                self.cancels.push(subscription.producer().to_owned());
                Ok(())
            }
        }
    }
}

/// A consumer whose `handle_subscribe` returns nothing (`Demand::Automatic`), with paths written
/// out, and whose `handle_cancel` takes the context and returns `()`.
struct Quiet;

#[stage(consumer)]
impl Quiet {
    fn handle_events(&mut self, _events: Vec<String>) {}

    fn handle_subscribe(&mut self, _subscription: &genstage::Subscription) {}

    fn handle_cancel(
        &mut self,
        _subscription: &genstage::Subscription,
        _reason: &genstage::CancelReason,
        ctx: &mut genstage::Context<Self>,
    ) {
        let _ = ctx.name();
    }
}

/// A producer_consumer that flushes what it holds when a subscription ends: `handle_cancel`
/// returns `Vec<T>`; `handle_subscribe` returns `genstage::Demand`.
struct Batcher {
    held: Vec<u64>,
}

#[stage(producer_consumer)]
impl Batcher {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        self.held.extend(events);
        if self.held.len() >= 10 {
            std::mem::take(&mut self.held)
        } else {
            Vec::new()
        }
    }

    fn handle_subscribe(&mut self, _subscription: &Subscription) -> genstage::Demand {
        genstage::Demand::Automatic
    }

    fn handle_cancel(&mut self, _subscription: &Subscription, _reason: &CancelReason) -> Vec<u64> {
        std::mem::take(&mut self.held)
    }
}

/// A producer_consumer whose `handle_cancel` returns `impl Future` of a `StageResult<Vec<T>>`,
/// with the context.
struct Flush {
    held: Vec<String>,
}

#[stage(producer_consumer)]
impl Flush {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<String> {
        events.iter().map(u64::to_string).collect()
    }

    #[allow(clippy::manual_async_fn)]
    fn handle_cancel(
        &mut self,
        _subscription: &Subscription,
        _reason: &CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> impl std::future::Future<Output = StageResult<Vec<String>>> + Send + '_ {
        let _ = ctx.name();
        async move { Ok(std::mem::take(&mut self.held)) }
    }
}

/// A producer_consumer whose `handle_cancel` emits nothing (`()`), and a generic one whose
/// `handle_cancel` is `async` and returns `Result<Vec<T>, E>`.
struct Pass;

#[stage(producer_consumer)]
impl Pass {
    fn handle_events(&mut self, events: Vec<u8>) -> Vec<u8> {
        events
    }

    fn handle_cancel(&mut self, _subscription: &Subscription, _reason: &CancelReason) {}
}

struct Hold<T> {
    held: Vec<T>,
}

#[stage(producer_consumer)]
impl<T> Hold<T> {
    fn handle_events(&mut self, events: Vec<T>) -> Vec<T> {
        self.held.extend(events);
        Vec::new()
    }

    fn handle_subscribe(
        &mut self,
        _subscription: &Subscription,
        _ctx: &mut Context<Self>,
    ) -> Demand {
        Demand::default()
    }

    async fn handle_cancel(
        &mut self,
        _subscription: &Subscription,
        _reason: &CancelReason,
    ) -> Result<Vec<T>, std::io::Error> {
        Ok(std::mem::take(&mut self.held))
    }
}

#[test]
fn subscription_callbacks_are_the_role_traits_methods() {
    consumer_subscribes::<Metered>();
    consumer_subscribes::<Quiet>();
    producer_consumer_subscribes::<Batcher, u64, u64>();
    producer_consumer_subscribes::<Flush, u64, String>();
    producer_consumer_subscribes::<Pass, u8, u8>();
    producer_consumer_subscribes::<Hold<String>, String, String>();
    // The impl blocks are kept as written: their methods stay the stages' own.
    let mut batcher = Batcher { held: vec![1, 2] };
    assert_eq!(batcher.handle_events(vec![3]), Vec::<u64>::new());
    assert_eq!(batcher.held, [1, 2, 3]);
    let metered = Metered {
        seen: Vec::new(),
        subscriptions: Vec::new(),
        cancels: Vec::new(),
    };
    assert!(metered.subscriptions.is_empty() && metered.cancels.is_empty());
}

// `handle_consumer_subscribe` and `handle_consumer_cancel`: a producer, or a producer_consumer as a
// producer, told of its consumers (GenStage's `handle_subscribe(:consumer, …)` and a producer's
// `handle_cancel`), with GenStage's scenario numbers (genstage-semantics.md §4). Scenarios 60 and
// 85 (a producer that returns `:manual` is stopped) do not compile here:
// tests/ui/stage/consumer-subscribe-returns-demand.rs.

/// What a stage was told of its consumers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Subscribed {
        consumer: String,
        tag: SubscriptionTag,
        max_demand: usize,
        min_demand: usize,
    },
    Cancelled {
        consumer: String,
        tag: SubscriptionTag,
        reason: CancelReason,
    },
}

impl Told {
    fn subscribed(subscriber: &Subscriber) -> Told {
        Told::Subscribed {
            consumer: subscriber.consumer().to_owned(),
            tag: subscriber.tag(),
            max_demand: subscriber.max_demand(),
            min_demand: subscriber.min_demand(),
        }
    }

    fn cancelled(subscriber: &Subscriber, reason: &CancelReason) -> Told {
        Told::Cancelled {
            consumer: subscriber.consumer().to_owned(),
            tag: subscriber.tag(),
            reason: reason.clone(),
        }
    }
}

/// What a stage emits to the consumers it has left when one leaves.
const GONE: u64 = u64::MAX;

/// Counts up from 0 for ever, emitting what it is asked; records what it is told of its consumers
/// (`handle_consumer_subscribe` with the context, `handle_consumer_cancel` async), and emits
/// [`GONE`] when one leaves.
struct Endless {
    next: u64,
    told: Log<Told>,
}

#[stage(producer)]
impl Endless {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let start = self.next;
        self.next += demand as u64;
        (start..self.next).collect()
    }

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, ctx: &mut Context<Self>) {
        let _ = ctx.name();
        self.told.lock().unwrap().push(Told::subscribed(subscriber));
    }

    async fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
    ) -> Vec<u64> {
        self.told
            .lock()
            .unwrap()
            .push(Told::cancelled(subscriber, reason));
        vec![GONE]
    }
}

/// Passes its events on; records what it is told of its consumers (`handle_consumer_subscribe`
/// without the context, paths written out; `handle_consumer_cancel` with it, returning a
/// `StageResult`), and emits [`GONE`] when one leaves.
struct Herald {
    told: Log<Told>,
}

#[stage(producer_consumer)]
impl Herald {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }

    fn handle_consumer_subscribe(&mut self, subscriber: &genstage::Subscriber) {
        self.told.lock().unwrap().push(Told::subscribed(subscriber));
    }

    fn handle_consumer_cancel(
        &mut self,
        subscriber: &genstage::Subscriber,
        reason: &genstage::CancelReason,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.told
            .lock()
            .unwrap()
            .push(Told::cancelled(subscriber, reason));
        Ok(vec![GONE])
    }
}

/// A producer whose producer-side callbacks return nothing, one with `-> ()` written out.
struct Mute;

#[stage(producer)]
impl Mute {
    fn handle_demand(&mut self, demand: usize) -> Vec<u8> {
        vec![0; demand]
    }

    #[allow(clippy::unused_unit)]
    fn handle_consumer_subscribe(&mut self, _subscriber: &Subscriber) -> () {}

    fn handle_consumer_cancel(&mut self, _subscriber: &Subscriber, _reason: &CancelReason) {}
}

/// A generic producer_consumer told of both sides of its subscriptions: its own to producers and
/// its consumers' to it, each `handle_…cancel` with its own return form.
struct Both<T> {
    held: Vec<T>,
}

#[stage(producer_consumer)]
impl<T: Send> Both<T> {
    fn handle_events(&mut self, events: Vec<T>) -> Vec<T> {
        self.held.extend(events);
        Vec::new()
    }

    fn handle_subscribe(&mut self, _subscription: &Subscription) -> Demand {
        Demand::Automatic
    }

    fn handle_cancel(&mut self, _subscription: &Subscription, _reason: &CancelReason) -> Vec<T> {
        std::mem::take(&mut self.held)
    }

    fn handle_consumer_subscribe(&mut self, _subscriber: &Subscriber, _ctx: &mut Context<Self>) {}

    #[allow(clippy::manual_async_fn)]
    fn handle_consumer_cancel(
        &mut self,
        _subscriber: &Subscriber,
        _reason: &CancelReason,
    ) -> impl std::future::Future<Output = Result<Vec<T>, std::io::Error>> + Send + '_ {
        async move { Ok(std::mem::take(&mut self.held)) }
    }
}

/// That `S`'s `handle_consumer_subscribe` is the producer trait's.
fn producer_is_told_of_consumers<S: Producer>() {
    let _: fn(&mut S, &Subscriber, &mut Context<'_, S>) =
        <S as Producer>::handle_consumer_subscribe;
}

/// That `S`'s `handle_consumer_subscribe` is the producer_consumer trait's, with these events.
fn producer_consumer_is_told_of_consumers<S, I, O>()
where
    S: ProducerConsumer<Input = I, Output = O>,
{
    let _: fn(&mut S, &Subscriber, &mut Context<'_, S>) =
        <S as ProducerConsumer>::handle_consumer_subscribe;
}

#[test]
fn producer_side_subscription_callbacks_are_the_role_traits_methods() {
    producer_is_told_of_consumers::<Endless>();
    producer_is_told_of_consumers::<Mute>();
    producer_consumer_is_told_of_consumers::<Herald, u64, u64>();
    producer_consumer_is_told_of_consumers::<Both<String>, String, String>();
    producer_consumer_subscribes::<Both<u8>, u8, u8>();
    // The impl blocks are kept as written: their methods stay the stages' own.
    let mut both = Both { held: vec![1, 2] };
    assert_eq!(both.handle_events(vec![3]), Vec::<u8>::new());
    assert_eq!(both.held, [1, 2, 3]);
}

/// The stage told of its consumers in a scenario.
#[derive(Debug, Clone, Copy)]
enum Teller {
    /// An [`Endless`].
    Producer,
    /// A [`Herald`] fed by an endless source.
    ProducerConsumer,
}

impl Teller {
    /// Its status once it ran until a graceful shutdown: a producer is shut down, a
    /// producer_consumer finishes once its producer is.
    fn shut_down(self) -> StageStatus {
        match self {
            Teller::Producer => StageStatus::ShutDown,
            Teller::ProducerConsumer => StageStatus::Finished,
        }
    }
}

/// Records the tag of its subscription and its events; fails on its first events when `fails`.
struct Watch {
    tags: Log<SubscriptionTag>,
    events: Log<u64>,
    fails: bool,
}

#[stage(consumer, max_demand = 10, min_demand = 5)]
impl Watch {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        self.tags.lock().unwrap().push(subscription.tag());
    }

    fn handle_events(&mut self, events: Vec<u64>) -> Result<(), String> {
        if self.fails {
            return Err("gave up".to_owned());
        }
        self.events.lock().unwrap().extend(events);
        Ok(())
    }
}

/// A running scenario: the teller, named `teller`, and its consumers, each a [`Watch`].
struct Scene {
    running: PipelineHandle,
    told: Log<Told>,
    /// Each consumer's subscription tags and events, in the order given to [`Scene::start`].
    watches: Vec<(Log<SubscriptionTag>, Log<u64>)>,
}

impl Scene {
    /// Starts `teller` with consumers named and failing as `consumers` say, each subscribed to it.
    fn start(teller: Teller, consumers: &[(&str, bool)]) -> Scene {
        let told = log();
        let mut pipeline = Pipeline::new();
        let watches = match teller {
            Teller::Producer => {
                let endless = Endless {
                    next: 0,
                    told: told.clone(),
                };
                let endless = pipeline.add_producer_named("teller", endless);
                Scene::subscribe(&mut pipeline, &endless, consumers)
            }
            Teller::ProducerConsumer => {
                let source = pipeline.add_producer(from_iter(0u64..));
                let herald = Herald { told: told.clone() };
                let herald = pipeline.add_producer_consumer_named("teller", herald);
                pipeline.subscribe(&source, &herald);
                Scene::subscribe(&mut pipeline, &herald, consumers)
            }
        };
        Scene {
            running: pipeline.start(),
            told,
            watches,
        }
    }

    fn subscribe(
        pipeline: &mut Pipeline,
        teller: &impl genstage::Source<u64>,
        consumers: &[(&str, bool)],
    ) -> Vec<(Log<SubscriptionTag>, Log<u64>)> {
        let mut watches = Vec::new();
        for &(name, fails) in consumers {
            let (tags, events) = (log(), log());
            let watch = Watch {
                tags: tags.clone(),
                events: events.clone(),
                fails,
            };
            let watch = pipeline.add_consumer_named(name, watch);
            pipeline.subscribe(teller, &watch);
            watches.push((tags, events));
        }
        watches
    }

    fn told(&self) -> Vec<Told> {
        taken(&self.told)
    }

    /// The tag of consumer `n`'s subscription, once it has one.
    fn tag(&self, n: usize) -> Option<SubscriptionTag> {
        taken(&self.watches[n].0).first().copied()
    }

    fn events(&self, n: usize) -> Vec<u64> {
        taken(&self.watches[n].1)
    }

    /// What the teller says when consumer `n` subscribes: `max_demand` and `min_demand` are
    /// [`Watch`]'s.
    fn subscribed(&self, n: usize, consumer: &str) -> Told {
        Told::Subscribed {
            consumer: consumer.to_owned(),
            tag: self.tag(n).expect("subscribed"),
            max_demand: 10,
            min_demand: 5,
        }
    }
}

/// Yields until `condition` holds. It holds within a few rounds of the stages when the runtime
/// works; the time limit only turns a runtime that never gets there into a failure saying `what`
/// was awaited (in the scenario of `teller`), instead of a test that hangs.
async fn until(teller: Teller, what: &str, condition: impl Fn() -> bool) {
    let wait = async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .is_err()
    {
        panic!("{teller:?}: still waiting, after 10 s, for {what}");
    }
}

/// Scenarios 59 and 84: the teller is told of each consumer that subscribes, by its name and the
/// tag of its subscription (the consumer's own `Subscription::tag`), with its demand limits.
#[tokio::test]
async fn scenario_59_84_a_producer_is_told_of_each_consumer_by_name_and_tag() {
    for teller in [Teller::Producer, Teller::ProducerConsumer] {
        let scene = Scene::start(teller, &[("first", false), ("second", false)]);
        until(teller, "the teller to be told of both consumers", || {
            scene.told().len() == 2 && scene.tag(0).is_some() && scene.tag(1).is_some()
        })
        .await;
        until(teller, "events for both consumers", || {
            !scene.events(0).is_empty() && !scene.events(1).is_empty()
        })
        .await;

        let mut told = scene.told();
        told.sort_by_key(|told| format!("{told:?}"));
        assert_eq!(
            told,
            [scene.subscribed(0, "first"), scene.subscribed(1, "second")],
            "{teller:?}"
        );
        assert_ne!(scene.tag(0), scene.tag(1));
        let report = scene.running.shutdown().await.unwrap();
        assert_eq!(
            report.stage("teller").unwrap().status,
            teller.shut_down(),
            "{teller:?}"
        );
    }
}

/// Scenarios 61 and 86: a subscription cancelled through the pipeline's handle is told to the
/// teller as `CancelReason::Cancelled`; the teller goes on for its other consumer, and what its
/// `handle_consumer_cancel` returns reaches that consumer.
#[tokio::test]
async fn scenario_61_86_a_producer_is_told_of_a_cancelled_subscription() {
    for teller in [Teller::Producer, Teller::ProducerConsumer] {
        let scene = Scene::start(teller, &[("keeper", false), ("leaver", false)]);
        until(
            teller,
            "the teller to be told of both consumers, and events for the leaver",
            || scene.told().len() == 2 && !scene.events(1).is_empty(),
        )
        .await;
        let tag = scene.tag(1).expect("subscribed");

        scene.running.cancel(tag).await.unwrap();
        until(teller, "the teller to be told that a consumer left", || {
            scene.told().len() == 3
        })
        .await;
        until(teller, "the keeper to receive GONE", || {
            scene.events(0).contains(&GONE)
        })
        .await;
        let kept = scene.events(0).len();
        until(teller, "more events for the keeper", || {
            scene.events(0).len() > kept
        })
        .await;

        let told = scene.told();
        assert_eq!(
            told[2],
            Told::Cancelled {
                consumer: "leaver".to_owned(),
                tag,
                reason: CancelReason::Cancelled,
            },
            "{teller:?}: {told:?}"
        );
        let keeper = scene.events(0);
        assert_eq!(
            keeper.iter().filter(|&&e| e == GONE).count(),
            1,
            "{teller:?}"
        );
        assert!(!scene.events(1).contains(&GONE), "{teller:?}");
        let report = scene.running.shutdown().await.unwrap();
        assert_eq!(
            report.stage("teller").unwrap().status,
            teller.shut_down(),
            "{teller:?}"
        );
        assert_eq!(
            report.stage("leaver").unwrap().status,
            StageStatus::Finished,
            "{teller:?}"
        );
    }
}

/// Scenarios 62 and 87: a consumer that fails is told to the teller as `CancelReason::Failed`,
/// naming it; the teller keeps running for its other consumer.
#[tokio::test]
async fn scenario_62_87_a_producer_is_told_of_a_failed_consumer_and_keeps_running() {
    for teller in [Teller::Producer, Teller::ProducerConsumer] {
        let scene = Scene::start(teller, &[("keeper", false), ("failing", true)]);
        until(teller, "the teller to be told that a consumer left", || {
            scene.told().len() == 3
        })
        .await;
        until(teller, "the keeper to receive GONE", || {
            scene.events(0).contains(&GONE)
        })
        .await;
        let kept = scene.events(0).len();
        until(teller, "more events for the keeper", || {
            scene.events(0).len() > kept
        })
        .await;

        let (mut told, cancelled): (Vec<Told>, Vec<Told>) = scene
            .told()
            .into_iter()
            .partition(|told| matches!(told, Told::Subscribed { .. }));
        told.sort_by_key(|told| format!("{told:?}"));
        assert_eq!(
            told,
            [
                scene.subscribed(1, "failing"),
                scene.subscribed(0, "keeper")
            ],
            "{teller:?}"
        );
        assert_eq!(
            cancelled,
            [Told::Cancelled {
                consumer: "failing".to_owned(),
                tag: scene.tag(1).expect("subscribed"),
                reason: CancelReason::Failed {
                    cause: "failing".to_owned()
                },
            }],
            "{teller:?}"
        );
        assert!(scene.events(1).is_empty(), "{teller:?}");
        let error = scene.running.shutdown().await.unwrap_err();
        assert_eq!(error.stage(), "failing", "{teller:?}");
        let report = error.report().expect("a failed run's report");
        assert_eq!(
            report.stage("teller").unwrap().status,
            teller.shut_down(),
            "{teller:?}"
        );
    }
}
