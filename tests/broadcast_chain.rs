//! A broadcast's consumers are chained (`run/outputs.rs`, `Outputs::flush`): each quick consumer's
//! wake-up goes with the next consumer's batch, and the last one's is given at the end of the flush.
//! A wake-up lost on the way is a consumer that never runs again: a hang. These tests broadcast to
//! 2 to 5 consumers, quick and slow (busy past the mailbox's quick spell), selective, asking one
//! event at a time, failing and restarted, behind a broadcasting producer_consumer that asks its
//! producer lazily, on a multi-threaded runtime, and assert exact counts and a balanced report,
//! each under a 20 s timeout so that a hang fails instead of blocking. The last test holds a
//! partitioned producer's chain, whose first consumer's wake-up the producer holds until its poll
//! ends (`mailbox::Receiver::await_hand_off`), across a callback that waits for that consumer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genstage::{
    from_iter, Consumer, Context, Dispatch, Emit, HandleCast, Partition, Pipeline, PipelineError,
    Producer, ProducerConsumer, ProducerRef, Report, RestartPolicy, StageRef, StageResult,
    SubscribeOptions,
};

mod dispatch_stages;
use dispatch_stages::{balanced, count_up, Broadcast};

const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test if it takes more than 20 s (a hang).
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("hung: a consumer was never woken")
}

/// What a consumer of the broadcast is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Counts its events at once: takes hand-offs, and is chained.
    Quick,
    /// Busy for 40 µs per batch, past the mailbox's quick spell: woken at once, not chained.
    Slow,
    /// Quick, subscribed with a selector taking the multiples of 3 only.
    Selective,
    /// Quick, asking for one event at a time.
    Lazy,
    /// Quick, failing on every fifth batch it is handed, restarted, and handed the batch again.
    Flaky,
    /// Quick, failing on its tenth batch, not restarted: it leaves the broadcast mid-run.
    Leaving,
}

/// What a consumer handled: its events' count and sum, and the batches it was handed (failed
/// ones too).
#[derive(Default)]
struct Tally {
    count: AtomicU64,
    sum: AtomicU64,
    handed: AtomicU64,
}

struct Counter {
    kind: Kind,
    tally: Arc<Tally>,
}

impl Consumer for Counter {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let handed = self.tally.handed.fetch_add(1, Ordering::SeqCst);
        match self.kind {
            Kind::Slow => {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(40) {
                    std::hint::spin_loop();
                }
            }
            Kind::Flaky if handed % 5 == 4 => return Err("flaky: every fifth batch".into()),
            Kind::Leaving if handed == 9 => return Err("leaving: the tenth batch".into()),
            _ => {}
        }
        self.tally
            .count
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        self.tally
            .sum
            .fetch_add(events.iter().sum::<u64>(), Ordering::SeqCst);
        Ok(())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        match self.kind {
            Kind::Flaky => RestartPolicy::transient()
                .max_restarts(1_000_000, Duration::from_secs(3600))
                .redeliver(),
            _ => RestartPolicy::temporary(),
        }
    }
}

/// A producer_consumer passing its events on, broadcasting.
struct PassBroadcast;

impl ProducerConsumer for PassBroadcast {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// Counts from 0, forever, broadcasting.
struct Endless {
    next: u64,
}

impl Producer for Endless {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let start = self.next;
        self.next += demand as u64;
        Ok(Emit::more((start..self.next).collect()))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// Adds a consumer of `kind` subscribed to `source`; returns its tally.
fn add_counter(
    pipeline: &mut Pipeline,
    source: &impl genstage::Source<u64>,
    kind: Kind,
    index: usize,
) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let consumer = pipeline.add_consumer_with_as(Some(format!("{kind:?}-{index}")), {
        let tally = tally.clone();
        move || Counter {
            kind,
            tally: tally.clone(),
        }
    });
    let options = match kind {
        Kind::Lazy => SubscribeOptions::new().max_demand(1).min_demand(0),
        _ => SubscribeOptions::new().max_demand(8).min_demand(4),
    };
    match kind {
        Kind::Selective => {
            pipeline.subscribe_selected(source, &consumer, options, |n: &u64| n.is_multiple_of(3));
        }
        _ => {
            pipeline.subscribe_with(source, &consumer, options);
        }
    }
    tally
}

/// Broadcasts `0..n` to consumers of `kinds` (through a broadcasting producer_consumer when
/// `through`), and checks that each got every event it selects, exactly once, and the report.
async fn broadcast(kinds: &[Kind], through: bool, n: u64) {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Broadcast(from_iter(0..n)));
    let tallies: Vec<(Kind, Arc<Tally>)> = if through {
        let pass = pipeline.add_producer_consumer_named("pass", PassBroadcast);
        pipeline.subscribe_with(
            &numbers,
            &pass,
            SubscribeOptions::new().max_demand(8).min_demand(4),
        );
        kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| (kind, add_counter(&mut pipeline, &pass, kind, i)))
            .collect()
    } else {
        kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| (kind, add_counter(&mut pipeline, &numbers, kind, i)))
            .collect()
    };
    let report = within(pipeline.run())
        .await
        .unwrap_or_else(|error| panic!("{kinds:?}: {error}"));
    for (kind, tally) in &tallies {
        let selected: Vec<u64> = match kind {
            Kind::Selective => (0..n).filter(|n| n.is_multiple_of(3)).collect(),
            _ => (0..n).collect(),
        };
        assert_eq!(
            tally.count.load(Ordering::SeqCst),
            selected.len() as u64,
            "{kind:?} of {kinds:?}"
        );
        assert_eq!(
            tally.sum.load(Ordering::SeqCst),
            selected.iter().sum::<u64>(),
            "{kind:?} of {kinds:?}"
        );
    }
    assert_eq!(report.stage("numbers").unwrap().emitted, n);
    balanced(&report);
}

/// Adds a consumer of a kind, the `usize`th, to the stage under test.
type AddCounter = Box<dyn Fn(&mut Pipeline, Kind, usize) -> Arc<Tally>>;

/// Broadcasts `0..n` to consumers of `kinds`, one of which leaves mid-run (fails, not
/// restarted): the run fails with it, each other consumer gets every event, the one that left
/// handled its 9 batches, and the report balances (the copies sent it after it left are lost).
async fn broadcast_with_one_leaving(kinds: &[Kind], through: bool, n: u64) {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Broadcast(from_iter(0..n)));
    let source: AddCounter = if through {
        let pass = pipeline.add_producer_consumer_named("pass", PassBroadcast);
        pipeline.subscribe_with(
            &numbers,
            &pass,
            SubscribeOptions::new().max_demand(8).min_demand(4),
        );
        Box::new(move |pipeline, kind, i| add_counter(pipeline, &pass, kind, i))
    } else {
        Box::new(move |pipeline, kind, i| add_counter(pipeline, &numbers, kind, i))
    };
    let tallies: Vec<(Kind, Arc<Tally>)> = kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| (kind, source(&mut pipeline, kind, i)))
        .collect();
    let error = within(pipeline.run()).await.unwrap_err();
    let leaving = kinds
        .iter()
        .position(|kind| matches!(kind, Kind::Leaving))
        .expect("one consumer leaves");
    assert_eq!(error.stage(), format!("Leaving-{leaving}"), "{error}");
    for (kind, tally) in &tallies {
        match kind {
            Kind::Leaving => assert_eq!(tally.handed.load(Ordering::SeqCst), 10),
            _ => assert_eq!(
                tally.count.load(Ordering::SeqCst),
                n,
                "{kind:?} of {kinds:?}"
            ),
        }
    }
    let report = match error {
        PipelineError::StageFailed { report, .. } => *report,
        other => panic!("{other:?}"),
    };
    assert_eq!(report.stage("numbers").unwrap().emitted, n);
    balanced(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_consumer_leaving_mid_chain_stalls_none_of_the_others() {
    for kinds in [
        &[Kind::Quick, Kind::Leaving, Kind::Quick][..],
        &[Kind::Leaving, Kind::Quick, Kind::Slow],
        &[Kind::Quick, Kind::Slow, Kind::Leaving],
        &[
            Kind::Lazy,
            Kind::Leaving,
            Kind::Quick,
            Kind::Quick,
            Kind::Lazy,
        ],
    ] {
        for through in [false, true] {
            broadcast_with_one_leaving(kinds, through, 3000).await;
        }
    }
}

/// The mixes the tests run: 2 to 5 consumers, each kind first, in the middle and last of the
/// chain.
const MIXES: &[&[Kind]] = &[
    &[Kind::Quick, Kind::Quick],
    &[Kind::Slow, Kind::Quick],
    &[Kind::Quick, Kind::Slow],
    &[Kind::Quick, Kind::Slow, Kind::Quick],
    &[Kind::Selective, Kind::Quick, Kind::Selective],
    &[Kind::Quick, Kind::Lazy, Kind::Quick, Kind::Lazy],
    &[Kind::Flaky, Kind::Quick, Kind::Flaky],
    &[
        Kind::Quick,
        Kind::Flaky,
        Kind::Slow,
        Kind::Selective,
        Kind::Lazy,
    ],
    &[
        Kind::Lazy,
        Kind::Selective,
        Kind::Quick,
        Kind::Flaky,
        Kind::Quick,
    ],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn every_consumer_of_a_broadcast_gets_every_event() {
    for kinds in MIXES {
        broadcast(kinds, false, 3000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn every_consumer_of_a_broadcasting_producer_consumer_gets_every_event() {
    for kinds in MIXES {
        broadcast(kinds, true, 3000).await;
    }
}

#[tokio::test]
async fn a_chained_broadcast_on_one_thread_gets_every_event() {
    for kinds in MIXES {
        broadcast(kinds, true, 1000).await;
    }
}

/// An endless broadcast to quick and slow consumers, ended while its chains run: shut down
/// gracefully (every copy delivered), or aborted; no hang, and the report balances.
async fn ended_mid_run(abort: bool) {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", Endless { next: 0 });
    let pass = pipeline.add_producer_consumer_named("pass", PassBroadcast);
    pipeline.subscribe_with(
        &numbers,
        &pass,
        SubscribeOptions::new().max_demand(8).min_demand(4),
    );
    let kinds = [Kind::Quick, Kind::Slow, Kind::Lazy, Kind::Quick];
    let tallies: Vec<Arc<Tally>> = kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| add_counter(&mut pipeline, &pass, kind, i))
        .collect();
    let running = pipeline.start();
    within(async {
        while tallies
            .iter()
            .any(|tally| tally.count.load(Ordering::SeqCst) < 500)
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report: Report = if abort {
        within(running.abort()).await.unwrap()
    } else {
        match within(running.shutdown()).await {
            Ok(report) => report,
            Err(PipelineError::StageFailed { report, .. }) => *report,
            Err(other) => panic!("{other:?}"),
        }
    };
    if !abort {
        let counts: Vec<u64> = tallies
            .iter()
            .map(|tally| tally.count.load(Ordering::SeqCst))
            .collect();
        let emitted = report.stage("pass").unwrap().emitted;
        assert!(
            counts.iter().all(|&count| count == emitted),
            "a graceful shutdown delivers every copy: {counts:?} of {emitted}"
        );
    }
    balanced(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_chained_broadcast_shut_down_mid_run_delivers_every_copy() {
    for _ in 0..5 {
        ended_mid_run(false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_chained_broadcast_aborted_mid_run_balances() {
    for _ in 0..5 {
        ended_mid_run(true).await;
    }
}

/// Counts up from 0 to `end` as asked, into one partition (a partitioned producer chains its
/// consumers however many it has); a [`WaitForConsumer`] cast waits until its
/// consumer has handled an event the producer emitted after the cast. Its first call emits
/// nothing (it is called again a millisecond later), so that its consumer's first busy spell,
/// which the mailbox times to tell whether it is quick enough to take hand-offs, is only its
/// subscription.
struct Waiting {
    started: bool,
    next: u64,
    end: u64,
    handled_after_cast: Arc<tokio::sync::Notify>,
}

impl Producer for Waiting {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        if !std::mem::replace(&mut self.started, true) {
            return Ok(Emit::more(Vec::new()));
        }
        Ok(count_up(&mut self.next, self.end, demand))
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(1)
    }
}

impl Partition<u64> for Waiting {
    fn partition(&self, _: &u64) -> Option<usize> {
        Some(0)
    }
}

struct WaitForConsumer;

impl HandleCast<WaitForConsumer> for Waiting {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        _: WaitForConsumer,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.handled_after_cast.notified().await;
        Ok(Vec::new())
    }
}

/// Takes one event at a time (it asks for 4, then for 1 after each); casts [`WaitForConsumer`] to
/// its producer as it handles event 1, and tells the producer when it handles an event from 4 on,
/// the first the producer emits after its first 4.
struct CastsToItsProducer {
    producer: ProducerRef<Waiting>,
    handled_after_cast: Arc<tokio::sync::Notify>,
    seen: Vec<u64>,
    all: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Consumer for CastsToItsProducer {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for event in events {
            if event == 1 {
                self.producer.cast(WaitForConsumer)?;
            }
            if event >= 4 {
                self.handled_after_cast.notify_one();
            }
            self.seen.push(event);
        }
        Ok(())
    }

    async fn terminate(&mut self, _status: &genstage::StageStatus) {
        *self.all.lock().unwrap() = std::mem::take(&mut self.seen);
    }
}

/// A partitioned producer whose consumer took its wake-up goes on with the messages it took in
/// with the ask before it waits, holding back the wake-up of the consumer it just sent to until its
/// poll ends (`mailbox::Receiver::await_hand_off`). Here those messages are an ask and a cast, whose
/// callback waits for that consumer to handle the events the ask made: held back through the
/// callback, the wake-up would never come (one thread, so the order is fixed: the consumer's turn
/// sends the ask, the cast, and three more asks, all taken in at once).
#[tokio::test]
async fn a_producer_waiting_in_a_callback_holds_back_no_consumer() {
    let handled_after_cast = Arc::new(tokio::sync::Notify::new());
    let all = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer(Waiting {
        started: false,
        next: 0,
        end: 10,
        handled_after_cast: handled_after_cast.clone(),
    });
    let consumer = pipeline.add_consumer(CastsToItsProducer {
        producer: producer.clone(),
        handled_after_cast,
        seen: Vec::new(),
        all: all.clone(),
    });
    let options = SubscribeOptions::new()
        .max_demand(4)
        .min_demand(3)
        .partition(0);
    pipeline.subscribe_with(&producer, &consumer, options);
    let report = within(pipeline.run()).await.unwrap();
    assert_eq!(*all.lock().unwrap(), (0..10).collect::<Vec<_>>());
    balanced(&report);
}
