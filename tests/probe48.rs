//! A producer that broadcasts, or whose partition function routes its events, offers its quick
//! consumers its own wake-up; when one takes it, the producer goes on with the messages it has
//! taken in (a drain) before it waits, and holds the wake-up of the consumer to run first until
//! then (`mailbox::Receiver::await_hand_off`). While held, that consumer is woken by nothing else:
//! a producer that awaits anything else, or stops, without giving it first, stalls or hangs.
//!
//! These tests hold a chain and make the producer, mid-drain, wait for the held consumer (in
//! `handle_demand`, `handle_consumer_cancel`, `terminate` after a failure or its last events, a
//! cast's and an `info_after_buffered`'s callbacks), fail, panic (in `handle_demand` and in its
//! partition function), shut down and abort; and they run broadcasts and partitions with
//! restarts, demand modes and a partitioned producer_consumer on several threads. Each runs under
//! a timeout, so that a hang fails, and checks exact events and a balanced report.
//!
//! How a chain is held on one thread (as in `broadcast_chain.rs`): the producer's first
//! `handle_demand` emits nothing, so its consumer's first busy spell, which the mailbox times, is
//! its subscription only, and it counts as quick. Its consumer asks for 4 and takes them one at a
//! time (`max_demand` 4, `min_demand` 3): handling events 0..4 in one turn, it sends four asks of
//! one, which the producer takes in at one look. The first emits event 4 and holds the consumer;
//! the second (the `handle_demand` call that would emit event 5) is where each test twists. A
//! broadcast has a second consumer, subscribed first, so that the recorder is the one held; it
//! casts or cancels, after its ask, where the recorder would. (The hold rests on the recorder's
//! first spell being timed quick, 10 µs: on a loaded machine it may not be, and the test then
//! runs without a hold, which it still passes.) Without the `give_held` before opening letters,
//! before telling the producer of a cancel, or after the stage loop in `run_producer`, the
//! one-thread tests hang.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use genstage::{
    Asker, CancelReason, Consumer, Context, Demand, DemandMode, Dispatch, Emit, HandleCast,
    HandleInfo, NoInput, Partition, Pipeline, PipelineError, Producer, ProducerConsumer,
    ProducerOptions, ProducerRef, Report, RestartPolicy, ShutdownHandle, StageRef, StageResult,
    StageStatus, SubscribeOptions, Subscriber, Subscription,
};
use tokio::sync::Notify;

mod dispatch_stages;
use dispatch_stages::{balanced, count_up};

const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test if it takes more than 20 s (a hang).
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("hung: a held consumer was never woken")
}

/// What the producer does at its fourth `handle_demand` call, the second ask of its first drain
/// (see the module docs), or around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Twist {
    /// `handle_demand` waits until the consumer has handled event 4 (emitted by the call before,
    /// to the held consumer), then emits as asked.
    WaitsInDemand,
    /// `handle_demand` fails; `terminate` waits until the consumer has handled event 4.
    Fails,
    /// `handle_demand` panics.
    Panics,
    /// The partition function panics on event 5, which this call emits.
    PartitionPanics,
    /// `handle_demand` emits event 5 as its last; `terminate` waits until the consumer has
    /// handled it.
    Last,
    /// A consumer casts while handling event 1, and the cast's callback waits until the recorder
    /// has handled every event emitted so far (on one thread, event 4, to the held recorder); the
    /// cast places an `info_after_buffered`, whose callback waits for the same.
    CastThenInfo,
    /// A broadcast's other consumer cancels its subscription as it handles event 1, and the
    /// producer's `handle_consumer_cancel` waits until the recorder has handled every event
    /// emitted so far (on one thread, event 4, to the held recorder).
    CancelWaits,
    /// The recorder shuts the pipeline down as it handles event 1.
    ShutsDown,
    /// The recorder aborts the pipeline as it handles event 1.
    Aborts,
    /// The recorder's selector (a broadcast's) panics on event 5, which this call emits.
    SelectorPanics,
}

/// What the producer and its consumer share: the count, kept across the producer's restarts, and
/// what the consumer has handled, which the producer's twists wait for.
struct Shared {
    started: AtomicUsize,
    next: AtomicU64,
    calls: AtomicUsize,
    twisted: AtomicBool,
    end: u64,
    twist: Twist,
    handled: Mutex<Vec<u64>>,
    progress: Notify,
    stop: OnceLock<ShutdownHandle>,
}

impl Shared {
    fn new(end: u64, twist: Twist) -> Arc<Self> {
        Arc::new(Shared {
            started: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            calls: AtomicUsize::new(0),
            twisted: AtomicBool::new(false),
            end,
            twist,
            handled: Mutex::new(Vec::new()),
            progress: Notify::new(),
            stop: OnceLock::new(),
        })
    }

    /// Waits until the consumer has handled `event`.
    async fn handled(&self, event: u64) {
        loop {
            let notified = self.progress.notified();
            if self.handled.lock().unwrap().contains(&event) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until the consumer has handled every event emitted so far: on one thread, the
    /// cast's and the cancel's callbacks open with event 4 emitted, to the held consumer; on
    /// several, they may open before.
    async fn handled_all_emitted(&self) {
        let next = self.next.load(Ordering::SeqCst);
        if next > 0 {
            self.handled(next - 1).await;
        }
    }

    fn handled_events(&self) -> Vec<u64> {
        self.handled.lock().unwrap().clone()
    }
}

/// Counts from 0 to `end` as asked, into one partition or broadcast, twisting as its `Shared` says.
struct Twisted {
    shared: Arc<Shared>,
    broadcast: bool,
}

impl Producer for Twisted {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let shared = self.shared.clone();
        shared.calls.fetch_add(1, Ordering::SeqCst);
        if shared.started.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(Emit::more(Vec::new()));
        }
        let start = shared.next.load(Ordering::SeqCst);
        let mut last = false;
        if start == 5 && !shared.twisted.swap(true, Ordering::SeqCst) {
            match shared.twist {
                Twist::WaitsInDemand => shared.handled(4).await,
                Twist::Fails => return Err("fails on the second ask of a drain".into()),
                Twist::Panics => panic!("panics on the second ask of a drain"),
                Twist::Last => last = true,
                _ => {}
            }
        }
        let mut next = start;
        let mut emit = count_up(&mut next, shared.end, demand);
        shared.next.store(next, Ordering::SeqCst);
        emit.last |= last;
        Ok(emit)
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        if self.broadcast {
            Dispatch::broadcast()
        } else {
            Dispatch::partition(1)
        }
    }

    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient().max_restarts(3, Duration::from_secs(60))
    }

    async fn handle_consumer_cancel(
        &mut self,
        _: &Subscriber,
        _: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        if self.shared.twist == Twist::CancelWaits {
            self.shared.handled_all_emitted().await;
        }
        Ok(Vec::new())
    }

    async fn terminate(&mut self, _: &StageStatus) {
        match self.shared.twist {
            Twist::Fails => self.shared.handled(4).await,
            Twist::Last => self.shared.handled(5).await,
            _ => {}
        }
    }
}

impl Partition<u64> for Twisted {
    fn partition(&self, event: &u64) -> Option<usize> {
        if self.shared.twist == Twist::PartitionPanics && *event == 5 {
            panic!("the partition function panics on event 5");
        }
        Some(0)
    }
}

/// Cast by the consumer as it handles event 1 ([`Twist::CastThenInfo`]).
struct WaitForFour;

/// Placed behind the buffer by the cast's callback.
struct AfterBuffered;

impl HandleCast<WaitForFour> for Twisted {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        _: WaitForFour,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.shared.handled_all_emitted().await;
        ctx.info_after_buffered(AfterBuffered);
        Ok(Vec::new())
    }
}

impl HandleInfo<AfterBuffered> for Twisted {
    type Emitted = Vec<u64>;
    async fn handle_info(
        &mut self,
        _: AfterBuffered,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.shared.handled_all_emitted().await;
        Ok(Vec::new())
    }
}

/// Takes events one at a time and keeps them in `seen` (and in `Shared`, which the producer's
/// twists read, when `records`); as it handles event 1, when `acts`, casts [`WaitForFour`] or
/// cancels its subscription, as the twist says.
struct Recorder {
    shared: Arc<Shared>,
    producer: ProducerRef<Twisted>,
    acts: bool,
    records: bool,
    seen: Arc<Mutex<Vec<u64>>>,
    asker: Option<Asker>,
}

impl Consumer for Recorder {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Automatic
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for event in events {
            if event == 1 && self.acts {
                match self.shared.twist {
                    Twist::CastThenInfo => self.producer.cast(WaitForFour)?,
                    Twist::CancelWaits => self.asker.as_ref().expect("subscribed").cancel()?,
                    _ => {}
                }
            }
            if event == 1 && self.records {
                // On several threads, the recorder may get here before the test has set it.
                let stop = loop {
                    match self.shared.stop.get() {
                        Some(stop) => break stop,
                        None => tokio::task::yield_now().await,
                    }
                };
                match self.shared.twist {
                    Twist::ShutsDown => stop.shutdown()?,
                    Twist::Aborts => stop.abort()?,
                    _ => {}
                }
            }
            self.seen.lock().unwrap().push(event);
            if self.records {
                self.shared.handled.lock().unwrap().push(event);
                self.shared.progress.notify_waiters();
            }
        }
        Ok(())
    }
}

/// What a run of a twisted producer gave: its result, what the recorder handled, and for a
/// broadcast what the other consumer did.
struct Ran {
    result: Result<Report, PipelineError>,
    handled: Vec<u64>,
    other: Vec<u64>,
}

/// Runs a twisted producer of `0..end` and a [`Recorder`] that takes its events one at a time;
/// a broadcast has another such consumer, subscribed first, so that the recorder is the consumer
/// whose wake-up the producer holds (the last it sends to, the first to run).
async fn twisted(twist: Twist, broadcast: bool, end: u64) -> Ran {
    let shared = Shared::new(end, twist);
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_with_as(Some("twisted".into()), {
        let shared = shared.clone();
        move || Twisted {
            shared: shared.clone(),
            broadcast,
        }
    });
    let options = SubscribeOptions::new().max_demand(4).min_demand(3);
    let recorder = |pipeline: &mut Pipeline, name: &str, acts: bool, records: bool| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let consumer = pipeline.add_consumer_named(
            name,
            Recorder {
                shared: shared.clone(),
                producer: producer.clone(),
                acts,
                records,
                seen: seen.clone(),
                asker: None,
            },
        );
        let options = if broadcast {
            options
        } else {
            options.partition(0)
        };
        if broadcast && records {
            pipeline.subscribe_selected(&producer, &consumer, options, move |event: &u64| {
                assert!(
                    !(twist == Twist::SelectorPanics && *event == 5),
                    "the selector panics on event 5"
                );
                true
            });
        } else {
            pipeline.subscribe_with(&producer, &consumer, options);
        }
        seen
    };
    // The broadcast's other consumer casts or cancels, after the ask that makes the producer hold
    // the recorder: the recorder's asks come first, and a broadcast emits once both have asked.
    let other = broadcast.then(|| recorder(&mut pipeline, "other", true, false));
    recorder(&mut pipeline, "recorder", !broadcast, true);
    let running = pipeline.start();
    let _ = shared.stop.set(running.shutdown_handle());
    let result = match tokio::time::timeout(LIMIT, running).await {
        Ok(result) => result,
        Err(_) => panic!(
            "{twist:?} hung: the recorder handled {:?}, the other consumer {:?}, after {} calls",
            shared.handled_events(),
            other.as_ref().map(|seen| seen.lock().unwrap().clone()),
            shared.calls.load(Ordering::SeqCst)
        ),
    };
    Ran {
        result,
        handled: shared.handled_events(),
        other: other
            .map(|seen| seen.lock().unwrap().clone())
            .unwrap_or_default(),
    }
}

fn report_of(result: Result<Report, PipelineError>) -> Report {
    match result {
        Ok(report) => report,
        Err(PipelineError::StageFailed { report, .. }) => *report,
        Err(other) => panic!("{other:?}"),
    }
}

/// Checks a run in which the recorder (and for a broadcast the other consumer) got `expected`,
/// the producer emitted `emitted` and was restarted `restarts` times, and the report balances.
fn check(ran: Ran, broadcast: bool, expected: &[u64], emitted: u64, restarts: u64, what: Twist) {
    assert_eq!(ran.handled, expected, "{what:?}");
    if broadcast {
        assert_eq!(ran.other, expected, "{what:?}: the other consumer");
    }
    let report = report_of(ran.result);
    let stage = report.stage("twisted").unwrap();
    assert_eq!(stage.emitted, emitted, "{what:?}");
    assert_eq!(stage.restarts, restarts, "{what:?}");
    balanced(&report);
}

async fn every_twist(broadcast: bool) {
    let all: Vec<u64> = (0..12).collect();
    for twist in [Twist::WaitsInDemand, Twist::CastThenInfo] {
        let ran = twisted(twist, broadcast, 12).await;
        assert!(ran.result.is_ok(), "{twist:?}: {:?}", ran.result);
        check(ran, broadcast, &all, 12, 0, twist);
    }
    // Restarted after its failure or its panic, it goes on from where it was.
    for twist in [Twist::Fails, Twist::Panics] {
        let ran = twisted(twist, broadcast, 12).await;
        check(ran, broadcast, &all, 12, 1, twist);
    }
    // Its other consumer leaves as it takes event 1, having been sent events 0 to 4 (or 0 to 3,
    // if its cancel came first: on several threads, or on one where the recorder's first spell
    // was not quick, and nothing was held).
    if broadcast {
        let ran = twisted(Twist::CancelWaits, true, 12).await;
        if ran.other.len() != 4 {
            assert_eq!(ran.other, (0..5).collect::<Vec<_>>());
        }
        let ran = Ran {
            other: all.clone(),
            ..ran
        };
        check(ran, true, &all, 12, 0, Twist::CancelWaits);
    }
    // Shut down mid-drain, it delivers what it emitted; aborted, its report still balances.
    for twist in [Twist::ShutsDown, Twist::Aborts] {
        let ran = twisted(twist, broadcast, 12).await;
        let report = report_of(ran.result);
        let emitted = report.stage("twisted").unwrap().emitted;
        assert!((4..=12).contains(&emitted), "{twist:?}: {report}");
        if twist == Twist::ShutsDown {
            let all: Vec<u64> = (0..emitted).collect();
            assert_eq!(ran.handled, all, "{twist:?}");
            if broadcast {
                assert_eq!(ran.other, all, "{twist:?}: the other consumer");
            }
        } else {
            assert!(ran.handled.iter().copied().eq(0..ran.handled.len() as u64));
        }
        balanced(&report);
    }
    // Its last events emitted mid-drain, it finishes once they are handled.
    let ran = twisted(Twist::Last, broadcast, 12).await;
    assert!(ran.result.is_ok(), "{:?}", ran.result);
    check(ran, broadcast, &all[..6], 6, 0, Twist::Last);
}

#[tokio::test]
async fn a_partitioned_producer_twisting_mid_drain_stalls_no_held_consumer() {
    every_twist(false).await;
}

#[tokio::test]
async fn a_broadcasting_producer_twisting_mid_drain_stalls_no_held_consumer() {
    every_twist(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_twisting_mid_drain_on_two_threads_stalls_no_consumer() {
    for _ in 0..20 {
        every_twist(false).await;
        every_twist(true).await;
    }
}

/// A panic in the recorder's selector mid-drain interrupts the broadcast of event 5: it is lost,
/// for both consumers, counted so, and the restarted producer goes on.
#[tokio::test]
async fn a_selector_panicking_mid_drain_loses_its_dispatch_only() {
    let ran = twisted(Twist::SelectorPanics, true, 12).await;
    let expected: Vec<u64> = (0..12).filter(|&n| n != 5).collect();
    check(ran, true, &expected, 12, 1, Twist::SelectorPanics);
}

/// A panic in the partition function mid-drain interrupts the dispatch of event 5: it is lost,
/// counted so, and the restarted producer goes on.
#[tokio::test]
async fn a_partition_function_panicking_mid_drain_loses_its_dispatch_only() {
    let ran = twisted(Twist::PartitionPanics, false, 12).await;
    let expected: Vec<u64> = (0..12).filter(|&n| n != 5).collect();
    check(ran, false, &expected, 12, 1, Twist::PartitionPanics);
}

/// How a [`Counter`] dispatches: split by parity into two partitions, or broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fan {
    Parity,
    Broadcast,
}

/// Counts from 0 to `end` as asked (kept across restarts in `next`); fails every `fail_every`th
/// call, if any, and is restarted.
struct Counter {
    next: Arc<AtomicU64>,
    calls: Arc<AtomicUsize>,
    end: u64,
    fan: Fan,
    fail_every: Option<usize>,
    demand: DemandMode,
}

impl Producer for Counter {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self
            .fail_every
            .is_some_and(|every| call.is_multiple_of(every))
        {
            return Err(format!("fails on call {call}").into());
        }
        let mut next = self.next.load(Ordering::SeqCst);
        let emit = count_up(&mut next, self.end, demand);
        self.next.store(next, Ordering::SeqCst);
        Ok(emit)
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        match self.fan {
            Fan::Parity => Dispatch::partition(2),
            Fan::Broadcast => Dispatch::broadcast(),
        }
    }

    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer().demand(self.demand)
    }

    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient().max_restarts(1_000_000, Duration::from_secs(3600))
    }
}

impl Partition<u64> for Counter {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// Passes its events on, split by parity.
struct PassParity;

impl ProducerConsumer for PassParity {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
}

impl Partition<u64> for PassParity {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// What the `i`th consumer of a fan of `fan` is sent of `0..end`.
fn share_of(fan: Fan, i: usize, end: u64) -> Vec<u64> {
    match fan {
        Fan::Parity => (0..end).filter(|n| n % 2 == i as u64).collect(),
        Fan::Broadcast => (0..end).collect(),
    }
}

/// A [`Counter`] of `0..end` fanned out to two consumers (through a partitioned
/// producer_consumer, whose producer broadcasts to it alone, when `through`), which take their events one at a time (`one_at_a_time`)
/// or at default demand; in `demand` mode, switched to forward once the consumers have asked.
/// Checks that each consumer got its share, in order, and the report.
async fn fan_out(
    fan: Fan,
    through: bool,
    one_at_a_time: bool,
    demand: DemandMode,
    fail_every: Option<usize>,
    end: u64,
) {
    let what = format!("{fan:?} through {through} one at a time {one_at_a_time} {demand:?} fail every {fail_every:?}");
    let mut pipeline = Pipeline::new();
    let next = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = pipeline.add_producer_with_as(Some("counter".into()), {
        let (next, calls) = (next.clone(), calls.clone());
        move || Counter {
            next: next.clone(),
            calls: calls.clone(),
            end,
            fan,
            fail_every,
            demand,
        }
    });
    let options = if one_at_a_time {
        SubscribeOptions::new().max_demand(4).min_demand(3)
    } else {
        SubscribeOptions::new().max_demand(64).min_demand(32)
    };
    let pass = through.then(|| {
        let pass = pipeline.add_producer_consumer_named("pass", PassParity);
        pipeline.subscribe_with(&counter, &pass, SubscribeOptions::new().max_demand(64));
        pass
    });
    let mut kept = Vec::new();
    for i in 0..2 {
        let (collect, batches) = dispatch_stages::Collect::new();
        let consumer = pipeline.add_consumer_named(format!("consumer-{i}"), collect);
        match &pass {
            Some(pass) => {
                pipeline.subscribe_with(pass, &consumer, options.partition(i));
            }
            None if fan == Fan::Parity => {
                pipeline.subscribe_with(&counter, &consumer, options.partition(i));
            }
            None => {
                pipeline.subscribe_with(&counter, &consumer, options);
            }
        }
        kept.push(batches);
    }
    let running = pipeline.start();
    if demand == DemandMode::Accumulate {
        // Every stage takes its subscription in, and the consumers ask, before the switch.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(next.load(Ordering::SeqCst), 0, "{what}: accumulating");
        counter.demand(DemandMode::Forward).unwrap();
    }
    let report = within(running)
        .await
        .unwrap_or_else(|error| panic!("{what}: {error}"));
    let fan_of_consumers = if through { Fan::Parity } else { fan };
    for (i, batches) in kept.iter().enumerate() {
        assert_eq!(
            dispatch_stages::flat(batches),
            share_of(fan_of_consumers, i, end),
            "{what}: consumer {i}"
        );
    }
    let stage = report.stage("counter").unwrap();
    assert_eq!(stage.emitted, end, "{what}");
    if let Some(every) = fail_every {
        assert!(stage.restarts >= 1, "{what}: failing every {every} calls");
    }
    balanced(&report);
}

async fn every_fan_out(end: u64) {
    for fan in [Fan::Parity, Fan::Broadcast] {
        // The producer_consumer is the broadcast's one consumer.
        for through in [false, fan == Fan::Broadcast] {
            for one_at_a_time in [true, false] {
                for demand in [DemandMode::Forward, DemandMode::Accumulate] {
                    for fail_every in [None, Some(7)] {
                        fan_out(fan, through, one_at_a_time, demand, fail_every, end).await;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn fanned_out_producers_on_one_thread_deliver_every_event_once() {
    every_fan_out(3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn fanned_out_producers_on_three_threads_deliver_every_event_once() {
    for _ in 0..5 {
        every_fan_out(3000).await;
    }
}

/// Keeps its events; spins for 40 µs per batch (past the mailbox's quick spell) from its
/// `slow_from`th batch on.
struct SlowingDown {
    seen: Arc<Mutex<Vec<u64>>>,
    batches: usize,
    slow_from: usize,
}

impl Consumer for SlowingDown {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches += 1;
        if self.batches > self.slow_from {
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_micros(40) {
                std::hint::spin_loop();
            }
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
}

/// A broadcast whose first consumer selects nothing (the chain starts with no delivery to it),
/// whose second is quick for its first 50 batches and slow after, and whose third takes its
/// events one at a time; the counter fails every 11th call and is restarted.
async fn selective_broadcast(end: u64) {
    let mut pipeline = Pipeline::new();
    let (next, calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
    let counter = pipeline.add_producer_with_as(Some("counter".into()), move || Counter {
        next: next.clone(),
        calls: calls.clone(),
        end,
        fan: Fan::Broadcast,
        fail_every: Some(11),
        demand: DemandMode::Forward,
    });
    let mut seen = Vec::new();
    for (i, slow_from) in [usize::MAX, 50, usize::MAX].into_iter().enumerate() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let consumer = pipeline.add_consumer_named(
            format!("consumer-{i}"),
            SlowingDown {
                seen: kept.clone(),
                batches: 0,
                slow_from,
            },
        );
        let options = if i == 2 {
            SubscribeOptions::new().max_demand(4).min_demand(3)
        } else {
            SubscribeOptions::new().max_demand(16).min_demand(8)
        };
        if i == 0 {
            pipeline.subscribe_selected(&counter, &consumer, options, |_: &u64| false);
        } else {
            pipeline.subscribe_with(&counter, &consumer, options);
        }
        seen.push(kept);
    }
    let report = within(pipeline.run()).await.unwrap();
    let all: Vec<u64> = (0..end).collect();
    assert_eq!(*seen[0].lock().unwrap(), Vec::<u64>::new());
    assert_eq!(*seen[1].lock().unwrap(), all);
    assert_eq!(*seen[2].lock().unwrap(), all);
    let stage = report.stage("counter").unwrap();
    assert_eq!(stage.emitted, end);
    assert!(stage.restarts >= 1);
    balanced(&report);
}

#[tokio::test]
async fn a_selective_broadcast_slowing_down_on_one_thread_delivers_every_event() {
    selective_broadcast(2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_selective_broadcast_slowing_down_on_three_threads_delivers_every_event() {
    for _ in 0..10 {
        selective_broadcast(2000).await;
    }
}
