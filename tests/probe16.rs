//! Probe 16: the open pipeline (issue 13) and the dispatchers (issue 14) attacked as a new user
//! who knows Elixir's GenStage would, from README.md and the rustdoc alone, through `#[stage]` and
//! `pipeline!`: a user-written `Dispatcher` (the trait's own documented example in a running
//! pipeline), calls answered while a producer accumulates or has no demand, the re-ask after a
//! message, a producer ended from a message, selectors in front of a `to_stream`. Every run is
//! guarded against hangs, and each test asserts exact values and a balanced report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use genstage::dispatcher::{DispatchError, DispatchOptions, Dispatcher, Outbox, SubscriptionId};
use genstage::prelude::*;

#[allow(dead_code)] // `lost` is not used here
mod run_reports;

use run_reports::{guard, report_of, stage};

type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap().clone()
}

// ---------------------------------------------------------------------------------------------
// A user-written dispatcher: `Dispatcher`'s documented example, `FirstOnly`, in a pipeline.

/// `Dispatcher`'s documented example, as fixed: everything to the consumer that subscribed first;
/// the others wait their turn, with what they asked for kept, so that the next one is served once
/// the first leaves. (As first documented, the others' asks were forgotten, and the next consumer
/// never got an event: `the_next_consumer_of_first_only_is_served_once_the_first_leaves`.)
#[derive(Default)]
struct FirstOnly {
    first: Option<(SubscriptionId, usize)>,
    others: Vec<(SubscriptionId, usize)>,
}

impl<T: Send + 'static> Dispatcher<T> for FirstOnly {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError> {
        if options.partition.is_some() || options.selector.is_some() {
            return Err(DispatchError("FirstOnly takes no options".into()));
        }
        match self.first {
            None => self.first = Some((sub, 0)),
            Some(_) => self.others.push((sub, 0)),
        }
        Ok(0)
    }
    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        if self.first.is_some_and(|(first, _)| first == sub) {
            self.first = (!self.others.is_empty()).then(|| self.others.remove(0));
            self.first.map_or(0, |(_, wants)| wants)
        } else {
            self.others.retain(|&(other, _)| other != sub);
            0
        }
    }
    fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, T>) -> usize {
        match &mut self.first {
            Some((first, wants)) if *first == sub => {
                *wants = wants.saturating_add(demand);
                demand
            }
            _ => {
                if let Some((_, wants)) = self.others.iter_mut().find(|(other, _)| *other == sub) {
                    *wants = wants.saturating_add(demand);
                }
                0
            }
        }
    }
    fn dispatch(
        &mut self,
        mut events: Vec<T>,
        out: &mut Outbox<'_, T>,
    ) -> Result<Vec<T>, DispatchError> {
        let Some((first, wants)) = &mut self.first else {
            return Ok(events);
        };
        let rest = events.split_off((*wants).min(events.len()));
        *wants -= events.len();
        out.send(*first, events);
        Ok(rest)
    }
    fn capacity(&self) -> usize {
        self.first.map_or(0, |(_, wants)| wants)
    }
    fn consumers(&self) -> usize {
        usize::from(self.first.is_some()) + self.others.len()
    }
}

/// Counts from 0 to `end`, then ends; dispatches with `FirstOnly`.
struct Numbers {
    next: u64,
    end: u64,
}

#[stage(producer)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(FirstOnly::default())
    }
}

/// A consumer that takes what its first ask (`max_demand` 10) brings and asks for nothing more;
/// it tells `tag` its subscription, and `full` once it has its 10 events.
struct TakesTen {
    seen: Log<u64>,
    tag: Arc<Mutex<Option<SubscriptionTag>>>,
    full: Arc<tokio::sync::Notify>,
}

#[stage(consumer, max_demand = 10, min_demand = 0)]
impl TakesTen {
    fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand {
        *self.tag.lock().unwrap() = Some(subscription.tag());
        Demand::Manual
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(events);
        if seen.len() == 10 {
            self.full.notify_one();
        }
    }
}

/// Records every event.
struct Collect(Log<u64>);

#[stage(consumer)]
impl Collect {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.0.lock().unwrap().extend(events);
    }
}

/// The documented `FirstOnly` says the other consumers "wait their turn": once the first leaves
/// (its subscription cancelled through the handle), the next one gets the rest, nothing lost.
#[tokio::test]
async fn the_next_consumer_of_first_only_is_served_once_the_first_leaves() {
    let (first_seen, next_seen) = (log(), log());
    let tag = Arc::new(Mutex::new(None));
    let full = Arc::new(tokio::sync::Notify::new());
    // The builder, so that `first` subscribes first.
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Numbers { next: 0, end: 100 });
    let first = pipeline.add_consumer_named(
        "first",
        TakesTen {
            seen: first_seen.clone(),
            tag: tag.clone(),
            full: full.clone(),
        },
    );
    let next = pipeline.add_consumer_named("next", Collect(next_seen.clone()));
    pipeline
        .subscribe(&numbers, &first)
        .subscribe(&numbers, &next);
    let running = pipeline.start();
    guard(full.notified()).await;
    let first_tag = tag.lock().unwrap().expect("told of its subscription");
    running.cancel(first_tag).await.expect("cancelled");
    let report = guard(running).await.expect("the run ends");
    assert_eq!(taken(&first_seen), (0..10).collect::<Vec<_>>());
    assert_eq!(taken(&next_seen), (10..100).collect::<Vec<_>>());
    assert_eq!(stage(&report, "next").events_in, 90);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Calls answered while the events they emit cannot go out yet.

/// Asks a `Queue` to emit a job.
struct Push(u64);

/// A producer fed only by calls; each call's events go out with GenStage's `{:reply, …}`.
struct Queue;

#[stage(producer, demand = accumulate)]
impl Queue {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_call(&mut self, request: Push, reply: ReplyTo<u64>) -> Vec<u64> {
        reply.reply(request.0);
        vec![request.0]
    }
}

/// GenStage's `{:reply, reply, events, state}` sends the reply once the events are dispatched *or
/// buffered*: while the producer accumulates, they are recorded, and the call is answered at once.
/// After the switch to forward, the consumer gets every pushed job, in order.
#[tokio::test(start_paused = true)]
async fn a_call_to_an_accumulating_producer_is_answered_before_the_switch() {
    let seen = log();
    let p = pipeline! { queue = Queue -> Collect(seen.clone()) };
    let queue = p.queue.clone();
    let running = p.start();
    for n in 0..3 {
        let answer = guard(queue.call_timeout(Push(n), Duration::from_secs(1))).await;
        assert_eq!(
            answer,
            Ok(n),
            "push {n} answered while the producer accumulates"
        );
    }
    assert_eq!(guard(queue.estimate_buffered_count()).await, Ok(3));
    queue.demand(DemandMode::Forward).expect("the queue runs");
    assert_eq!(guard(queue.call(Push(3))).await, Ok(3));
    let report = guard(running.shutdown()).await.expect("shut down");
    assert_eq!(taken(&seen), [0, 1, 2, 3]);
    assert_eq!(stage(&report, "queue").emitted, 4);
    assert!(report.balanced(), "{report}");
}

/// A producer_consumer fed by a manual consumer that has used up its demand: what a call emits is
/// buffered, and the call is answered at once (GenStage: "dispatched or buffered").
struct Relay;

#[stage(producer_consumer)]
impl Relay {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }

    fn handle_call(&mut self, request: Push, reply: ReplyTo<u64>) -> Vec<u64> {
        reply.reply(request.0);
        vec![request.0; 5]
    }
}

/// Takes its first ask (`max_demand` 2) and asks for nothing more until told to (`AskMore`).
struct Slow {
    seen: Log<u64>,
    asker: Option<Asker>,
}

/// Has a `Slow` ask for `n` more.
struct AskMore(usize);

#[stage(consumer, max_demand = 2, min_demand = 0)]
impl Slow {
    fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.lock().unwrap().extend(events);
    }

    fn handle_cast(&mut self, message: AskMore) {
        if let Some(asker) = &self.asker {
            let _ = asker.ask(message.0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_to_a_producer_consumer_without_downstream_demand_is_answered_at_once() {
    let seen = log();
    let (jobs, source) = from_channel::<u64>(4);
    let p = pipeline! {
        source -> relay = Relay -> slow = Slow { seen: seen.clone(), asker: None }
    };
    let (relay, slow) = (p.relay.clone(), p.slow.clone());
    let running = p.start();
    // 2 go out against the consumer's first ask, 3 stay buffered; then 5 more, all buffered.
    assert_eq!(
        guard(relay.call_timeout(Push(7), Duration::from_secs(1))).await,
        Ok(7)
    );
    assert_eq!(
        guard(relay.call_timeout(Push(8), Duration::from_secs(1))).await,
        Ok(8)
    );
    assert_eq!(guard(relay.estimate_buffered_count()).await, Ok(8));
    drop(jobs);
    slow.cast(AskMore(8)).expect("slow runs");
    let report = guard(running.shutdown()).await.expect("shut down");
    assert_eq!(taken(&seen), [7, 7, 7, 7, 7, 8, 8, 8, 8, 8]);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// "After a message, the runtime asks the producer for its outstanding demand again at once."

/// A queue that emits what `Enqueue` casts put in it, as it is asked; empty, it returns no events
/// (and is asked again after a back-off).
struct Backlog {
    jobs: std::collections::VecDeque<u64>,
}

/// Puts a job in a `Backlog`.
struct Enqueue(u64);

#[stage(producer)]
impl Backlog {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let n = demand.min(self.jobs.len());
        self.jobs.drain(..n).collect()
    }

    fn handle_cast(&mut self, message: Enqueue) {
        self.jobs.push_back(message.0);
    }
}

/// Tells `arrived` when each event comes.
struct Arrivals(tokio::sync::mpsc::UnboundedSender<u64>);

#[stage(consumer)]
impl Arrivals {
    fn handle_events(&mut self, events: Vec<u64>) {
        for event in events {
            let _ = self.0.send(event);
        }
    }
}

/// With the producer backed off (100 ms, after a second of empty batches), a cast that queues a
/// job makes the runtime ask again at once: the job arrives with no time passing (paused clock).
#[tokio::test(start_paused = true)]
async fn a_cast_to_a_backed_off_producer_is_followed_by_an_ask_at_once() {
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let p = pipeline! {
        backlog = Backlog { jobs: Default::default() } -> Arrivals(arrived)
    };
    let backlog = p.backlog.clone();
    let running = p.start();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = tokio::time::Instant::now();
    backlog.cast(Enqueue(42)).expect("the backlog runs");
    assert_eq!(guard(arrivals.recv()).await, Some(42));
    assert_eq!(
        sent.elapsed(),
        Duration::ZERO,
        "the producer was asked again at once after the cast"
    );
    let report = guard(running.shutdown()).await.expect("shut down");
    assert_eq!(stage(&report, "backlog").emitted, 1);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A producer ended by a message.

/// Ends the `Closing` producer with its last events.
struct Close(Vec<u64>);

/// Emits nothing of its own; a `Close` cast emits its events and ends it (`Emit::last`).
struct Closing;

#[stage(producer)]
impl Closing {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_cast(&mut self, message: Close) -> Emit<u64> {
        Emit::last(message.0)
    }
}

/// `Emit::last` from a message callback ends the producer once its events are delivered, and the
/// pipeline ends by itself, with nothing lost.
#[tokio::test(start_paused = true)]
async fn emit_last_from_a_cast_ends_the_producer_and_the_run() {
    let seen = log();
    let p = pipeline! { closing = Closing -> [Collect(seen.clone()); 2] };
    let closing = p.closing.clone();
    let running = p.start();
    closing.cast(Close((0..50).collect())).expect("runs");
    let report = guard(running).await.expect("the run ends by itself");
    let mut all = taken(&seen);
    all.sort_unstable();
    assert_eq!(all, (0..50).collect::<Vec<_>>());
    assert_eq!(stage(&report, "closing").emitted, 50);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Selectors in front of a `to_stream`.

/// Counts to `end`, to every consumer.
struct Broadcast {
    next: u64,
    end: u64,
}

#[stage(producer, dispatcher = broadcast)]
impl Broadcast {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

/// A `to_stream` behind a selector yields exactly the selected events, in order, while another
/// consumer gets them all; the report counts the copies and the rejected events.
#[tokio::test]
async fn a_stream_behind_a_selector_yields_the_selected_events_in_order() {
    let all = log();
    let (sink, stream) = to_stream::<u64>();
    let running = pipeline! {
        numbers = Broadcast { next: 0, end: 1000 };
        numbers -[selector = |n| n.is_multiple_of(3), max_demand = 7, min_demand = 3]-> sink;
        numbers -> Collect(all.clone());
    }
    .start();
    let threes: Vec<u64> = guard(stream.collect()).await;
    let report = guard(running).await.expect("the run ends");
    assert_eq!(
        threes,
        (0..1000u64)
            .filter(|n| n.is_multiple_of(3))
            .collect::<Vec<_>>()
    );
    assert_eq!(taken(&all), (0..1000).collect::<Vec<_>>());
    let numbers = stage(&report, "numbers");
    assert_eq!(numbers.emitted, 1000);
    assert_eq!(numbers.copies, 334);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A producer that ends from a message while it accumulates.

/// Emits its last events from a call, while it accumulates.
struct Finisher;

#[stage(producer, demand = accumulate)]
impl Finisher {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_call(&mut self, request: Close, reply: ReplyTo<usize>) -> Emit<u64> {
        reply.reply(request.0.len());
        Emit::last(request.0)
    }
}

/// `Emit::last` from a call while the producer accumulates: its events wait for the switch to
/// forward, which still reaches the producer and delivers them; then the run ends by itself.
#[tokio::test(start_paused = true)]
async fn a_producer_that_ends_while_accumulating_delivers_once_forwarded() {
    let seen = log();
    let p = pipeline! { finisher = Finisher -> Collect(seen.clone()) };
    let finisher = p.finisher.clone();
    let running = p.start();
    let answer = guard(finisher.call(Close((0..20).collect()))).await;
    assert_eq!(answer, Ok(20));
    assert_eq!(finisher.demand(DemandMode::Forward), Ok(()));
    let report = guard(running).await.expect("the run ends by itself");
    assert_eq!(taken(&seen), (0..20).collect::<Vec<_>>());
    assert_eq!(stage(&report, "finisher").emitted, 20);
    assert!(report.balanced(), "{report}");
}

/// The same, shut down instead of forwarded: the shutdown delivers what it holds.
#[tokio::test(start_paused = true)]
async fn a_producer_that_ends_while_accumulating_is_drained_by_a_shutdown() {
    let seen = log();
    let p = pipeline! { finisher = Finisher -> Collect(seen.clone()) };
    let finisher = p.finisher.clone();
    let running = p.start();
    assert_eq!(guard(finisher.call(Close((0..20).collect()))).await, Ok(20));
    let report = guard(running.shutdown()).await.expect("shut down");
    assert_eq!(taken(&seen), (0..20).collect::<Vec<_>>());
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A broadcast fed by casts, with a consumer added while it runs.

/// Emits what it is cast, to every consumer; tells `left` of the consumers that leave, and emits
/// `1000` for the others when one does.
struct Feed {
    left: Log<String>,
}

/// Has a `Feed` emit these.
struct Emit2(Vec<u64>);

#[stage(producer, dispatcher = broadcast)]
impl Feed {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_cast(&mut self, message: Emit2) -> Vec<u64> {
        message.0
    }

    fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
    ) -> Vec<u64> {
        self.left
            .lock()
            .unwrap()
            .push(format!("{} {reason:?}", subscriber.consumer()));
        vec![1000]
    }
}

/// Records every event and the tag of its subscription.
struct Tagged {
    seen: Log<u64>,
    tag: Arc<Mutex<Option<SubscriptionTag>>>,
}

#[stage(consumer)]
impl Tagged {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        *self.tag.lock().unwrap() = Some(subscription.tag());
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.lock().unwrap().extend(events);
    }
}

/// A consumer subscribed at run time with a selector gets the selected events emitted after its
/// subscription; the first consumer, cancelled through the handle, is told to the producer, whose
/// `handle_consumer_cancel` emits to the one left. Every event is accounted for.
#[tokio::test(start_paused = true)]
async fn a_selected_consumer_added_to_a_running_broadcast_and_the_first_cancelled() {
    let (first_seen, later_seen, left) = (log(), log(), log());
    let first_tag = Arc::new(Mutex::new(None));
    let p = pipeline! {
        feed = Feed { left: left.clone() } -> first = Tagged {
            seen: first_seen.clone(),
            tag: first_tag.clone(),
        }
    };
    let feed = p.feed.clone();
    let running = p.start();
    feed.cast(Emit2((0..10).collect())).expect("feed runs");
    // A call queued behind the cast: once answered, the cast's events are dispatched.
    assert_eq!(guard(feed.estimate_buffered_count()).await, Ok(0));
    let later = guard(running.add_consumer_named("later", Collect(later_seen.clone())))
        .await
        .expect("added");
    guard(
        running.subscribe_selected(&feed, &later, SubscribeOptions::default(), |n: &u64| {
            n.is_multiple_of(2)
        }),
    )
    .await
    .expect("subscribed");
    feed.cast(Emit2((10..20).collect())).expect("feed runs");
    assert_eq!(guard(feed.estimate_buffered_count()).await, Ok(0));
    let tag = first_tag.lock().unwrap().expect("told of its subscription");
    guard(running.cancel(tag)).await.expect("cancelled");
    let report = guard(running.shutdown()).await.expect("shut down");
    assert_eq!(taken(&first_seen), (0..20).collect::<Vec<_>>());
    let mut expected: Vec<u64> = (10..20u64).filter(|n| n.is_multiple_of(2)).collect();
    expected.push(1000);
    assert_eq!(taken(&later_seen), expected);
    assert_eq!(taken(&left), ["first Cancelled"]);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A rate-limited consumer (manual demand, asking on its own ticks) pacing a broadcast, shut down.

/// Counts up from 0 for ever, to every consumer.
struct Endless {
    next: u64,
}

#[stage(producer, dispatcher = broadcast)]
impl Endless {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        events
    }
}

/// A tick of `Limited`.
struct Tick;

/// GenStage's RateLimiter: manual demand, 5 more events per 10 ms tick, asked from `handle_info`.
struct Limited {
    seen: Log<u64>,
    tag: Option<SubscriptionTag>,
    started: Arc<tokio::sync::Notify>,
}

#[stage(consumer, max_demand = 5, min_demand = 0)]
impl Limited {
    fn init(&mut self, ctx: &mut Context<Self>) {
        ctx.info_after(Duration::from_millis(10), Tick);
    }

    fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand {
        self.tag = Some(subscription.tag());
        Demand::Manual
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.lock().unwrap().extend(events);
        self.started.notify_one();
    }

    fn handle_info(&mut self, _tick: Tick, ctx: &mut Context<Self>) {
        if let Some(tag) = self.tag {
            let _ = ctx.ask(tag, 5);
        }
        ctx.info_after(Duration::from_millis(10), Tick);
    }
}

/// The broadcast goes at the limited consumer's pace; a graceful shutdown stops the producer and
/// delivers everything it emitted to both consumers (the limited one keeps asking on its ticks),
/// then ends: both consumers got the same events, in order, and nothing is lost.
#[tokio::test(start_paused = true)]
async fn a_rate_limited_consumer_of_a_broadcast_is_drained_by_a_shutdown() {
    let (limited_seen, all_seen) = (log(), log());
    let started = Arc::new(tokio::sync::Notify::new());
    let running = pipeline! {
        numbers = Endless { next: 0 };
        numbers -> limited = Limited {
            seen: limited_seen.clone(),
            tag: None,
            started: started.clone(),
        };
        numbers -> all = Collect(all_seen.clone());
    }
    .start();
    guard(started.notified()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = guard(running.shutdown()).await.expect("shut down");
    let (limited, all) = (taken(&limited_seen), taken(&all_seen));
    let emitted = stage(&report, "numbers").emitted;
    assert_eq!(limited, (0..emitted).collect::<Vec<_>>());
    assert_eq!(all, limited);
    // 5 on subscribing, 5 per tick: a shutdown after ~100 ms has seen about 10 ticks, never 1000.
    assert!(emitted <= 100, "paced by the limited consumer: {emitted}");
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A stage that ends its own pipeline through a `ShutdownHandle`.

/// Collects events; once it has `stop_at`, ends the pipeline through the handle (gracefully, or
/// by an abort).
struct Stopper {
    seen: Log<u64>,
    handle: Arc<std::sync::OnceLock<genstage::ShutdownHandle>>,
    stop_at: usize,
    abort: bool,
}

#[stage(consumer, max_demand = 10, min_demand = 5)]
impl Stopper {
    fn handle_events(&mut self, events: Vec<u64>) {
        let mut seen = self.seen.lock().unwrap();
        let before = seen.len();
        seen.extend(events);
        if before < self.stop_at && seen.len() >= self.stop_at {
            if let Some(handle) = self.handle.get() {
                let ended = if self.abort {
                    handle.abort()
                } else {
                    handle.shutdown()
                };
                assert!(ended.is_ok(), "{ended:?}");
            }
        }
    }
}

async fn stopped_from_inside(abort: bool) -> (Vec<u64>, Result<Report, PipelineError>) {
    let seen = log();
    let handle = Arc::new(std::sync::OnceLock::new());
    let running = pipeline! {
        Endless2 { next: 0 } -> Stopper {
            seen: seen.clone(),
            handle: handle.clone(),
            stop_at: 50,
            abort,
        }
    }
    .start();
    let _ = handle.set(running.shutdown_handle());
    let result = guard(running).await;
    (taken(&seen), result)
}

/// Counts up from 0 for ever.
struct Endless2 {
    next: u64,
}

#[stage(producer)]
impl Endless2 {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        events
    }
}

/// A consumer that shuts its own pipeline down from `handle_events`: the run ends, every event
/// emitted is handled, in order.
#[tokio::test]
async fn a_stage_shuts_its_own_pipeline_down() {
    let (seen, result) = stopped_from_inside(false).await;
    let report = result.expect("a graceful shutdown");
    let emitted = stage(&report, "Endless2").emitted;
    assert!(seen.len() >= 50);
    assert_eq!(seen, (0..emitted).collect::<Vec<_>>());
    assert_eq!(stage(&report, "Stopper").events_in, emitted);
    assert!(report.balanced(), "{report}");
}

/// The same with an abort from inside the consumer's callback: the run ends, and what was not
/// handled is counted lost.
#[tokio::test]
async fn a_stage_aborts_its_own_pipeline() {
    let (seen, result) = stopped_from_inside(true).await;
    let (report, _) = report_of(result);
    assert!(seen.len() >= 50);
    let sink = stage(&report, "Stopper");
    assert_eq!(sink.events_in, seen.len() as u64, "{report}");
    let producer = stage(&report, "Endless2");
    let lost_anywhere: u64 = report
        .stages
        .iter()
        .map(|s| s.losses.iter().map(|l| l.count).sum::<u64>())
        .sum();
    assert_eq!(producer.emitted, sink.events_in + lost_anywhere, "{report}");
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Partition mistakes that `pipeline!` does not see, although the partitions are literals.

/// Splits `0..100` by parity into two partitions.
struct Parity {
    next: u64,
}

#[stage(producer, dispatcher = partition(2))]
impl Parity {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = 100.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == 100 {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }

    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

fn invalid_dispatch(result: Result<Report, PipelineError>) -> String {
    match result {
        Err(PipelineError::InvalidDispatch { stage, error }) => format!("{stage}: {error}"),
        other => panic!("expected InvalidDispatch, got {other:?}"),
    }
}

/// A partition taken twice, with literal partitions, compiles and is refused by `run()`, naming
/// the stage, both consumers and the partition (README, Dispatchers).
#[tokio::test]
async fn a_literal_partition_taken_twice_is_refused_by_run() {
    let (a, b) = (log(), log());
    let result = guard(
        pipeline! {
            split = Parity { next: 0 };
            split -[partition = 0]-> first = Collect(a.clone());
            split -[partition = 0]-> second = Collect(b.clone());
        }
        .run(),
    )
    .await;
    assert_eq!(
        invalid_dispatch(result),
        "split: `second` takes partition 0, already taken by `first`: each partition has exactly one consumer"
    );
}

/// A partition left without a consumer, with a literal partition, compiles and is refused by
/// `run()`, naming the stage and the partition.
#[tokio::test]
async fn a_literal_partition_left_without_a_consumer_is_refused_by_run() {
    let a = log();
    let result = guard(
        pipeline! {
            split = Parity { next: 0 };
            split -[partition = 1]-> odd = Collect(a.clone());
        }
        .run(),
    )
    .await;
    assert_eq!(
        invalid_dispatch(result),
        "split: partition 0 of 2 has no consumer: each partition has exactly one"
    );
}

// ---------------------------------------------------------------------------------------------
// A stream dropped early behind a broadcast.

/// A `to_stream` of a broadcast, dropped after 10 events (GenStage's `Enum.take`), leaves: the
/// broadcast goes on with its other consumer, which gets every event, and the events the stream
/// was handed but did not yield are counted lost, so the report balances.
#[tokio::test]
async fn a_stream_dropped_early_leaves_a_broadcast_to_its_other_consumer() {
    let all = log();
    let (sink, stream) = to_stream::<u64>();
    let running = pipeline! {
        numbers = Broadcast { next: 0, end: 1000 };
        numbers -[max_demand = 4, min_demand = 2]-> taken = sink;
        numbers -> Collect(all.clone());
    }
    .start();
    let first: Vec<u64> = guard(stream.take(10).collect()).await;
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    let report = guard(running).await.expect("the run ends");
    assert_eq!(taken(&all), (0..1000).collect::<Vec<_>>());
    let sink = stage(&report, "taken");
    assert_eq!(sink.events_in, 10, "{report}");
    assert!(
        matches!(sink.status, StageStatus::Cancelled { .. }),
        "{report}"
    );
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// An info behind an accumulating producer's buffer, shut down.

/// What `Held` records: its events' fate is the consumer's; here, its infos and its end.
type Journal = Log<String>;

/// Tells `Held` that its buffer, as it was, has gone out.
struct Flushed;

/// Accumulates; emits what it is cast; records its infos and its end.
struct Held {
    journal: Journal,
}

#[stage(producer, demand = accumulate)]
impl Held {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_cast(&mut self, message: Emit2) -> Vec<u64> {
        message.0
    }

    fn handle_info(&mut self, _flushed: Flushed) {
        self.journal.lock().unwrap().push("flushed".to_owned());
    }

    fn terminate(&mut self, status: &StageStatus) {
        self.journal
            .lock()
            .unwrap()
            .push(format!("terminate {status:?}"));
    }
}

/// README: infos behind the buffer "are delivered during a graceful shutdown". An accumulating
/// producer holds 5 events and an `info_after_buffered` behind them; the shutdown delivers the
/// events, then the info, then runs `terminate`.
#[tokio::test(start_paused = true)]
async fn an_info_behind_an_accumulating_buffer_is_delivered_by_a_shutdown() {
    let (seen, journal) = (log(), log());
    let p = pipeline! { held = Held { journal: journal.clone() } -> Collect(seen.clone()) };
    let held = p.held.clone();
    let running = p.start();
    held.cast(Emit2((0..5).collect())).expect("runs");
    held.info_after_buffered(Flushed).expect("runs");
    // Sent right after the start, the count comes behind the cast: it counts its 5 events.
    assert_eq!(guard(held.estimate_buffered_count()).await, Ok(5));
    assert_eq!(
        taken(&journal),
        [] as [String; 0],
        "the info waits behind the buffer"
    );
    let report = guard(running.shutdown()).await.expect("shut down");
    assert_eq!(taken(&seen), [0, 1, 2, 3, 4]);
    assert_eq!(taken(&journal), ["flushed", "terminate ShutDown"]);
    assert!(report.balanced(), "{report}");
}

/// Has a `Caster` emit these.
struct Inject(Vec<u64>);

/// A producer_consumer that passes events on and emits what it is cast.
struct Caster;

#[stage(producer_consumer)]
impl Caster {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }

    fn handle_cast(&mut self, message: Inject) -> Vec<u64> {
        message.0
    }
}

/// A cast then `estimate_buffered_count` right after `start()`, to a producer_consumer whose
/// consumer takes 2: the count comes behind the cast, and counts the 3 it buffered.
#[tokio::test(start_paused = true)]
async fn a_count_right_after_start_counts_what_a_cast_to_a_producer_consumer_buffered() {
    let seen = log();
    let (jobs, source) = from_channel::<u64>(1);
    let p = pipeline! {
        source -> caster = Caster -> slow = Slow { seen: seen.clone(), asker: None }
    };
    let (caster, slow) = (p.caster.clone(), p.slow.clone());
    let running = p.start();
    caster.cast(Inject((0..5).collect())).expect("runs");
    assert_eq!(guard(caster.estimate_buffered_count()).await, Ok(3));
    drop(jobs);
    slow.cast(AskMore(3)).expect("slow runs");
    let report = guard(running.shutdown()).await.expect("shut down");
    assert_eq!(taken(&seen), [0, 1, 2, 3, 4]);
    assert!(report.balanced(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// A partition count chosen at run time: a `dispatcher` method, and the block's `partition`.

/// Counts to `end`, partitioned by `n % partitions` into a number of partitions chosen at run
/// time: its `dispatcher` method returns `Dispatch::partition`, and `#[stage]` makes the block's
/// `partition` method its partition function, as it does with `dispatcher = partition(N)`.
struct Modulo {
    next: u64,
    end: u64,
    partitions: usize,
}

#[stage(producer)]
impl Modulo {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(self.partitions)
    }

    fn partition(&self, event: &u64) -> Option<usize> {
        Some((*event % self.partitions as u64) as usize)
    }
}

/// Instance `i` of a group after it takes partition `i`, although `pipeline!` cannot see the
/// count; a group of another size is refused by `run()`, naming the stage.
#[tokio::test]
async fn a_run_time_partition_count_wires_a_group_by_instance() {
    let received: Vec<Log<u64>> = (0..3).map(|_| log()).collect();
    let partitions = 3;
    let report = guard(
        pipeline! {
            split = Modulo { next: 0, end: 300, partitions };
            split -> [Collect(received[0].clone()); 1];
            split -[partition = 1]-> one = Collect(received[1].clone());
            split -[partition = 2]-> two = Collect(received[2].clone());
        }
        .run(),
    )
    .await
    .expect("the pipeline runs");
    for (i, seen) in received.iter().enumerate() {
        let expected: Vec<u64> = (0..300).filter(|n| n % 3 == i as u64).collect();
        assert_eq!(taken(seen), expected, "partition {i}");
    }
    assert!(report.balanced(), "{report}");

    let wrong = guard(
        pipeline! { Modulo { next: 0, end: 10, partitions: 2 } -> [Collect(log()); 3] }.run(),
    )
    .await;
    assert!(
        invalid_dispatch(wrong).starts_with("Modulo: "),
        "the group of 3 after 2 partitions is refused"
    );
}

// ---------------------------------------------------------------------------------------------
// A stream whose producer fails.

/// Emits `0..10`, then fails.
struct Breaks {
    next: u64,
}

#[stage(producer)]
impl Breaks {
    fn handle_demand(&mut self, demand: usize) -> Result<Vec<u64>, String> {
        if self.next >= 10 {
            return Err("the source broke".to_owned());
        }
        let stop = 10.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(events)
    }
}

/// A `to_stream` after a producer that fails yields what was emitted, then ends, whatever its
/// cancel mode; the run fails naming the producer, and its report balances.
#[tokio::test]
async fn a_stream_ends_when_its_producer_fails() {
    for mode in [CancelMode::Permanent, CancelMode::Temporary] {
        let (sink, stream) = to_stream::<u64>();
        let sink = sink.with_options(SubscribeOptions::new().max_demand(4).cancel(mode));
        let running = pipeline! { Breaks { next: 0 } -> sink }.start();
        let events: Vec<u64> = guard(stream.collect()).await;
        assert_eq!(events, (0..10).collect::<Vec<_>>(), "{mode:?}");
        let (report, error) = report_of(guard(running).await);
        let error = error.expect("the producer failed");
        assert!(
            error
                .to_string()
                .contains("`Breaks` failed: the source broke"),
            "{mode:?}: {error}"
        );
        assert!(report.balanced(), "{mode:?}: {report}");
    }
}
