//! Streams in and out of a pipeline (GenStage's `from_enumerable` and `stream/2`, semantics §1.12):
//! `from_stream` pulls a `Stream`'s items as its consumers ask, `to_stream` gives a pipeline's
//! output to the calling code as a `Stream` read at its own pace. GenStage's scenarios 102, 103,
//! 110 and 111 (semantics §4) are rewritten for this API and carry their numbers.
//!
//! No assertion depends on timing. The tests run on tokio's current-thread runtime; the
//! back-pressure test also pauses its clock, so that sleeping returns only once every task is idle
//! (tokio advances a paused clock only when it has nothing else to run): what it asserts after
//! such a sleep is the state the pipeline settles in, not a snapshot of a race.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use genstage::prelude::*;
use genstage::{LossReason, StageReport, StageStatus};
use tokio::sync::mpsc;

async fn guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("the pipeline hung (no end within 30 s)")
}

fn stage<'a>(report: &'a Report, name: &str) -> &'a StageReport {
    report
        .stage(name)
        .unwrap_or_else(|| panic!("no stage `{name}` in {report:?}"))
}

fn cancelled(stage: &StageReport) -> bool {
    stage.status == StageStatus::Cancelled { cause: None }
}

/// A `Stream` of what a tokio channel receives (`tokio-stream`'s `ReceiverStream` does the same).
fn receiver_stream<T>(mut receiver: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// Records every batch it handles.
struct Collect {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl Collect {
    fn new() -> (Self, Arc<Mutex<Vec<Vec<u64>>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        (
            Collect {
                batches: batches.clone(),
            },
            batches,
        )
    }
}

#[stage(consumer)]
impl Collect {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.batches.lock().unwrap().push(events);
    }
}

/// Counts up from `next`, up to `end` (excluded) or for ever, exactly as many as asked, and counts
/// what it emits in `produced`.
struct Counter {
    next: u64,
    end: Option<u64>,
    produced: Arc<AtomicU64>,
}

impl Counter {
    fn up_to(end: Option<u64>) -> (Self, Arc<AtomicU64>) {
        let produced = Arc::new(AtomicU64::new(0));
        (
            Counter {
                next: 0,
                end,
                produced: produced.clone(),
            },
            produced,
        )
    }
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.map_or(self.next + demand as u64, |end| {
            end.min(self.next + demand as u64)
        });
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        self.produced
            .fetch_add(events.len() as u64, Ordering::SeqCst);
        if Some(stop) == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

struct Evens;

#[stage(producer_consumer)]
impl Evens {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().filter(|n| n % 2 == 0).collect()
    }
}

// ---- from_stream ----------------------------------------------------------------------------

#[tokio::test]
async fn from_stream_delivers_every_item_in_order_and_ends_with_the_stream() {
    let (collect, batches) = Collect::new();
    let report =
        guard(pipeline! { from_stream(futures::stream::iter(0..1000u64)) -> collect }.run())
            .await
            .unwrap();
    let seen: Vec<u64> = batches.lock().unwrap().concat();
    assert_eq!(seen, (0..1000).collect::<Vec<_>>());
    let source = stage(&report, "from_stream");
    assert_eq!((source.emitted, source.events_out), (1000, 1000));
    assert_eq!(source.status, StageStatus::Finished);
    assert_eq!(stage(&report, "Collect").events_in, 1000);
    assert!(report.balanced());
}

#[tokio::test]
async fn from_stream_is_fed_by_a_channel_that_another_task_sends_into() {
    let (jobs, received) = mpsc::channel::<u64>(8);
    let sender = tokio::spawn(async move {
        for job in 0..500 {
            jobs.send(job).await.unwrap();
        }
    });
    let (collect, batches) = Collect::new();
    let report = guard(pipeline! { from_stream(receiver_stream(received)) -> collect }.run())
        .await
        .unwrap();
    sender.await.unwrap();
    assert_eq!(
        batches.lock().unwrap().concat(),
        (0..500).collect::<Vec<_>>()
    );
    assert_eq!(stage(&report, "from_stream").emitted, 500);
    assert_eq!(stage(&report, "Collect").events_in, 500);
}

#[tokio::test]
async fn from_stream_passes_on_a_trickle_one_item_at_a_time() {
    // The sender sends the next job only once the consumer has handled the previous one: had the
    // producer waited for its demand (1000) to fill, this would never end.
    let (jobs, received) = mpsc::channel::<u64>(1);
    let (handled_tx, mut handled_rx) = mpsc::unbounded_channel::<()>();
    let sender = tokio::spawn(async move {
        for job in 0..20 {
            jobs.send(job).await.unwrap();
            handled_rx.recv().await.unwrap();
        }
    });

    struct Ack {
        handled: mpsc::UnboundedSender<()>,
        batches: Arc<Mutex<Vec<Vec<u64>>>>,
    }

    #[stage(consumer)]
    impl Ack {
        fn handle_events(&mut self, events: Vec<u64>) {
            self.batches.lock().unwrap().push(events);
            let _ = self.handled.send(());
        }
    }

    let batches = Arc::new(Mutex::new(Vec::new()));
    let ack = Ack {
        handled: handled_tx,
        batches: batches.clone(),
    };
    guard(pipeline! { from_stream(receiver_stream(received)) -> ack }.run())
        .await
        .unwrap();
    sender.await.unwrap();
    let expected: Vec<Vec<u64>> = (0..20).map(|n| vec![n]).collect();
    assert_eq!(*batches.lock().unwrap(), expected);
}

#[tokio::test]
async fn from_stream_takes_what_is_ready_up_to_the_demand() {
    let (jobs, received) = mpsc::channel::<u64>(100);
    for job in 0..5 {
        jobs.try_send(job).unwrap();
    }
    let mut producer = from_stream(receiver_stream(received));
    // Asked for 3 with 5 ready: 3.
    let emit = producer.handle_demand(3).await.unwrap();
    assert_eq!((emit.events, emit.last), (vec![0, 1, 2], false));
    // Asked for 10 with 2 ready: those 2 at once, not waiting for 8 more.
    let emit = producer.handle_demand(10).await.unwrap();
    assert_eq!((emit.events, emit.last), (vec![3, 4], false));
    // A burst goes out as one batch, with the end when the stream ends with it.
    for job in 5..55 {
        jobs.try_send(job).unwrap();
    }
    drop(jobs);
    let emit = producer.handle_demand(1000).await.unwrap();
    assert_eq!((emit.events, emit.last), ((5..55).collect(), true));
}

#[tokio::test]
async fn from_stream_loses_nothing_when_its_wait_is_dropped() {
    let (jobs, received) = mpsc::channel::<u64>(4);
    let mut producer = from_stream(receiver_stream(received));
    // Nothing is ready: the call waits, and is dropped while it waits (as the stage drops it when
    // its consumers leave).
    assert!(producer.handle_demand(5).now_or_never().is_none());
    jobs.try_send(7).unwrap();
    jobs.try_send(8).unwrap();
    let emit = producer.handle_demand(5).await.unwrap();
    assert_eq!((emit.events, emit.last), (vec![7, 8], false));
    drop(jobs);
    let emit = producer.handle_demand(5).await.unwrap();
    assert_eq!((emit.events, emit.last), (vec![], true));
}

// ---- from_channel -----------------------------------------------------------------------------

/// Takes batches of at most 2 (`max_demand` 2, `min_demand` 1), each only once the test opens its
/// gate, and records them.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
}

#[stage(consumer, max_demand = 2, min_demand = 1)]
impl Gated {
    async fn handle_events(&mut self, events: Vec<u64>) {
        self.gate
            .acquire()
            .await
            .expect("the gate stays open")
            .forget();
        self.batches.lock().unwrap().push(events);
    }
}

/// A `from_channel` producer into a gated consumer, started, with 10 events sent without waiting
/// into its channel of 8: 8 accepted. Once settled, the consumer holds its first batch, [0, 1],
/// at its closed gate, and 6 events wait in the channel.
async fn eight_accepted() -> (
    mpsc::Sender<u64>,
    genstage::PipelineHandle,
    Arc<tokio::sync::Semaphore>,
    Arc<Mutex<Vec<Vec<u64>>>>,
) {
    let (jobs, source) = from_channel::<u64>(8);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let batches = Arc::new(Mutex::new(Vec::new()));
    let gated = Gated {
        gate: gate.clone(),
        batches: batches.clone(),
    };
    let running = pipeline! { source -> gated }.start();
    let accepted = (0..10).filter(|&job| jobs.try_send(job).is_ok()).count();
    assert_eq!(accepted, 8);
    settle().await;
    assert_eq!(jobs.capacity(), 2, "6 events wait in the channel");
    (jobs, running, gate, batches)
}

/// Every event a sender handed over is delivered by a graceful shutdown, which closes the channel.
#[tokio::test(start_paused = true)]
async fn a_graceful_shutdown_delivers_what_from_channel_accepted() {
    let (jobs, running, gate, batches) = eight_accepted().await;
    let shutdown = tokio::spawn(running.shutdown());
    settle().await;
    // Closed: a send fails, giving its event back.
    assert_eq!(jobs.try_send(10).map_err(|e| e.into_inner()), Err(10));
    gate.add_permits(100);
    let report = guard(shutdown).await.unwrap().unwrap();
    let handled: Vec<u64> = batches.lock().unwrap().concat();
    assert_eq!(handled, (0..8).collect::<Vec<_>>());
    let source = stage(&report, "from_channel");
    assert_eq!((source.emitted, source.lost), (8, 0));
    assert_eq!(source.status, StageStatus::ShutDown);
    assert_eq!(stage(&report, "Gated").events_in, 8);
    assert!(report.balanced(), "{report:?}");
}

/// An abort stops the producer with 6 events in its channel: they are counted emitted and lost,
/// for the reason that they were never emitted, so that the report accounts for all 8 accepted.
#[tokio::test(start_paused = true)]
async fn an_abort_counts_what_from_channel_held_as_lost() {
    let (_jobs, running, _gate, batches) = eight_accepted().await;
    let report = guard(running.abort()).await.unwrap();
    assert!(batches.lock().unwrap().is_empty());
    let source = stage(&report, "from_channel");
    assert_eq!(source.emitted, 8);
    assert_eq!(
        source.losses,
        [genstage::Loss {
            count: 6,
            reason: LossReason::NotEmitted
        }]
    );
    assert_eq!(stage(&report, "Gated").lost, 2);
    assert!(report.balanced(), "{report:?}");
}

/// An event sent through a place taken in the channel before an abort, and filled just after, is
/// counted too: a `send` on another thread may be at that instant (chaos seed 31849, where the
/// report counted one event fewer than `send` accepted). A permit from `reserve` held longer than
/// the producer waits for it sends into a channel nobody reads: that event is not counted.
#[tokio::test(start_paused = true)]
async fn an_abort_counts_an_event_sent_through_a_place_taken_before_it() {
    for (after, counted) in [
        (Duration::from_millis(10), true),
        (Duration::from_secs(1), false),
    ] {
        let (jobs, running, _gate, _batches) = eight_accepted().await;
        let permit = jobs.clone().reserve_owned().await.unwrap();
        let sent = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            permit.send(99);
        });
        let report = guard(running.abort()).await.unwrap();
        sent.await.unwrap();
        let source = stage(&report, "from_channel");
        let unemitted = if counted { 7 } else { 6 };
        assert_eq!(source.emitted, 2 + unemitted, "{after:?}");
        assert_eq!(
            source.losses,
            [genstage::Loss {
                count: unemitted,
                reason: LossReason::NotEmitted
            }],
            "{after:?}"
        );
        assert!(report.balanced(), "{report:?}");
    }
}

/// Takes control of its demand and never asks: it gets only the initial ask of `max_demand` (1).
struct NeverAsks {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
}

#[stage(consumer, max_demand = 1, min_demand = 0)]
impl NeverAsks {
    fn handle_subscribe(&mut self, _subscription: &genstage::Subscription) -> genstage::Demand {
        genstage::Demand::Manual
    }
    fn handle_events(&mut self, events: Vec<u64>) {
        self.batches.lock().unwrap().push(events);
    }
}

/// A shutdown that finds the channel empty ends at once, though the consumer will never ask again
/// (found in review: the drain waited for an ask that never came).
#[tokio::test(start_paused = true)]
async fn a_shutdown_with_an_empty_channel_and_no_demand_ends() {
    let (jobs, source) = from_channel::<u64>(4);
    let batches = Arc::new(Mutex::new(Vec::new()));
    let sink = NeverAsks {
        batches: batches.clone(),
    };
    let running = pipeline! { source -> sink }.start();
    jobs.send(7).await.unwrap();
    settle().await;
    let report = guard(running.shutdown()).await.unwrap();
    assert_eq!(*batches.lock().unwrap(), [vec![7]]);
    assert_eq!(stage(&report, "from_channel").status, StageStatus::ShutDown);
    assert!(report.balanced(), "{report:?}");
}

/// A sender holding a permit may still send through it after a shutdown closed the channel: the
/// shutdown waits for it, and the event is delivered.
#[tokio::test(start_paused = true)]
async fn a_shutdown_waits_for_a_permit_and_delivers_its_event() {
    let (jobs, source) = from_channel::<u64>(4);
    let (collect, batches) = Collect::new();
    let running = pipeline! { source -> collect }.start();
    let permit = jobs.reserve().await.unwrap();
    let shutdown = tokio::spawn(running.shutdown());
    settle().await;
    assert!(!shutdown.is_finished(), "the shutdown waits for the permit");
    // Closed: a new send fails.
    assert_eq!(jobs.try_send(8).map_err(|e| e.into_inner()), Err(8));
    permit.send(7);
    let report = guard(shutdown).await.unwrap().unwrap();
    assert_eq!(batches.lock().unwrap().concat(), [7]);
    assert_eq!(stage(&report, "from_channel").emitted, 1);
    assert!(report.balanced(), "{report:?}");
}

// ---- to_stream --------------------------------------------------------------------------------

#[tokio::test]
async fn to_stream_gives_the_pipelines_output_to_the_caller() {
    let (counter, _) = Counter::up_to(Some(100));
    let (sink, stream) = to_stream::<u64>();
    let run = tokio::spawn(pipeline! { counter -> Evens -> sink }.run());
    let evens: Vec<u64> = guard(stream.collect()).await;
    assert_eq!(evens, (0..100).filter(|n| n % 2 == 0).collect::<Vec<_>>());
    let report = guard(run).await.unwrap().unwrap();
    let sink = stage(&report, "to_stream");
    assert_eq!((sink.events_in, sink.lost), (50, 0));
    assert_eq!(sink.status, StageStatus::Finished);
    assert!(report.balanced());
}

#[tokio::test]
async fn to_stream_ends_when_all_of_its_producers_have_ended() {
    let (sink, mut stream) = to_stream::<u64>();
    let run = tokio::spawn(
        pipeline! {
            out = sink;
            from_iter(0..30u64) -> out;
            from_iter(100..110u64) -> out;
        }
        .run(),
    );
    let mut seen = Vec::new();
    while let Some(n) = guard(stream.next()).await {
        seen.push(n);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..30).chain(100..110).collect::<Vec<_>>());
    let report = guard(run).await.unwrap().unwrap();
    assert_eq!(stage(&report, "out").events_in, 40);
    // Fused: `None` for good.
    assert_eq!(stream.next().await, None);
}

#[tokio::test]
async fn to_stream_ends_early_when_its_producer_fails() {
    struct FailsSecond {
        calls: u32,
    }

    #[stage(producer)]
    impl FailsSecond {
        fn handle_demand(&mut self, _demand: usize) -> Result<Vec<u64>, String> {
            self.calls += 1;
            if self.calls == 1 {
                Ok((0..5).collect())
            } else {
                Err("source broke".to_owned())
            }
        }
    }

    let (sink, stream) = to_stream::<u64>();
    let run = tokio::spawn(pipeline! { FailsSecond { calls: 0 } -> sink }.run());
    // The events sent before the failure, then the end.
    let seen: Vec<u64> = guard(stream.collect()).await;
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    let error = guard(run).await.unwrap().unwrap_err();
    assert_eq!(
        error.to_string(),
        "stage `FailsSecond` failed: source broke"
    );
    let sink = stage(error.report().unwrap(), "to_stream");
    assert_eq!(sink.events_in, 5);
    assert_eq!(
        sink.status,
        StageStatus::Cancelled {
            cause: Some("FailsSecond".to_owned())
        }
    );
}

/// GenStage 102: `stream |> Enum.take(10)` with demand 1000 returns 0..9, and halting the stream
/// cancels its subscription. Here: the pipeline ends, cancelled, without a failure, and every
/// event is accounted for.
#[tokio::test]
async fn scenario_102_taking_10_of_an_endless_producer_cancels_the_pipeline() {
    let (counter, produced) = Counter::up_to(None);
    let (sink, stream) = to_stream::<u64>();
    let run = tokio::spawn(pipeline! { counter -> sink }.run());
    let first: Vec<u64> = guard(stream.take(10).collect()).await;
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    let report = guard(run).await.unwrap().unwrap();
    let sink = stage(&report, "to_stream");
    assert!(cancelled(sink), "{sink:?}");
    assert!(cancelled(stage(&report, "Counter")), "{report:?}");
    // Asked for 1000 (max_demand) once, it emitted 1000; the sink's first batch held 500
    // (max - min), of which the caller took 10: those are handled, the rest is lost, unhandled.
    assert_eq!(produced.load(Ordering::SeqCst), 1000);
    assert_eq!(sink.events_in, 10);
    assert_eq!(sink.lost, 990);
    assert!(sink
        .losses
        .iter()
        .all(|loss| loss.reason == LossReason::Unhandled));
    assert!(report.balanced(), "{report:?}");
}

/// GenStage 103: a stream with `max_demand: 100` and `take(300)` returns 300 items.
#[tokio::test]
async fn scenario_103_taking_300_with_max_demand_100() {
    let (counter, _) = Counter::up_to(None);
    let (sink, stream) = to_stream::<u64>();
    let sink = sink.with_options(SubscribeOptions::new().max_demand(100));
    let run = tokio::spawn(pipeline! { counter -> sink }.run());
    let taken: Vec<u64> = guard(stream.take(300).collect()).await;
    assert_eq!(taken, (0..300).collect::<Vec<_>>());
    let report = guard(run).await.unwrap().unwrap();
    let sink = stage(&report, "to_stream");
    // Six whole batches of 50 (max - min): all handled.
    assert_eq!(sink.events_in, 300);
    assert!(cancelled(sink), "{sink:?}");
    assert!(report.balanced(), "{report:?}");
}

/// GenStage 110: `from_enumerable` of a finite 10-item stream, read to the end as a stream, gives
/// 0..9, and the producer terminates.
#[tokio::test]
async fn scenario_110_a_finite_stream_through_a_pipeline_and_out() {
    let (sink, stream) = to_stream::<u64>();
    let run =
        tokio::spawn(pipeline! { from_stream(futures::stream::iter(0..10u64)) -> sink }.run());
    let all: Vec<u64> = guard(stream.collect()).await;
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    let report = guard(run).await.unwrap().unwrap();
    assert_eq!(stage(&report, "from_stream").status, StageStatus::Finished);
    assert_eq!(stage(&report, "to_stream").status, StageStatus::Finished);
}

/// GenStage 111: `max_demand: 0` is refused with GenStage's message; the stream then ends at
/// once, as its sink never runs.
#[tokio::test]
async fn scenario_111_a_stream_with_max_demand_0_is_refused() {
    let (sink, mut stream) = to_stream::<u64>();
    let sink = sink.with_options(SubscribeOptions::new().max_demand(0));
    let error = pipeline! { from_iter(0..10u64) -> sink }
        .run()
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid subscription of `to_stream` to `from_iter`: expected max_demand to be equal to or greater than 1, got: 0"
    );
    assert_eq!(guard(stream.next()).await, None);
}

/// Sleeps on the paused clock: returns once every task of this runtime is idle.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// With `max_demand` 4 (`min_demand` 2, so batches of 2), a caller that does not read holds the
/// producer at 4 events: the sink's first batch waits in the stream, its second in the sink, and
/// neither has been handled, so no demand is renewed. Each batch the caller finishes renews 2 of
/// demand (outstanding 4 - 2 = 2 = min_demand, so the sink asks for max - 2 = 2): after reading `r`
/// events the producer has emitted exactly `4 + 2 * (r / 2)`, never more than `max_demand` ahead
/// of the reader.
#[tokio::test(start_paused = true)]
async fn to_stream_asks_for_more_only_as_the_caller_reads() {
    let (counter, produced) = Counter::up_to(None);
    let (sink, mut stream) = to_stream::<u64>();
    let sink = sink.with_options(SubscribeOptions::new().max_demand(4));
    let run = tokio::spawn(pipeline! { counter -> sink }.run());
    settle().await;
    assert_eq!(produced.load(Ordering::SeqCst), 4);
    for read in 1..=20u64 {
        assert_eq!(stream.next().await, Some(read - 1));
        settle().await;
        assert_eq!(
            produced.load(Ordering::SeqCst),
            4 + 2 * (read / 2),
            "after reading {read}"
        );
    }
    // Dropped between batches: the sink's next batch (20, 21) was handed to the stream but not
    // taken, and (22, 23) waits in the sink: 4 lost, 20 handled.
    drop(stream);
    let report = guard(run).await.unwrap().unwrap();
    let sink = stage(&report, "to_stream");
    assert!(cancelled(sink), "{sink:?}");
    assert_eq!((sink.events_in, sink.lost), (20, 4));
    assert_eq!(stage(&report, "Counter").emitted, 24);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test]
async fn dropping_the_stream_mid_batch_counts_what_the_caller_read() {
    let (counter, _) = Counter::up_to(None);
    let (sink, mut stream) = to_stream::<u64>();
    let sink = sink.with_options(SubscribeOptions::new().max_demand(10));
    let run = tokio::spawn(pipeline! { counter -> numbers = sink }.run());
    for expected in 0..3 {
        assert_eq!(guard(stream.next()).await, Some(expected));
    }
    drop(stream);
    let report = guard(run).await.unwrap().unwrap();
    let sink = stage(&report, "numbers");
    assert!(cancelled(sink), "{sink:?}");
    // The first batch held 5 (max 10 - min 5): 3 read, 2 lost with the 5 queued behind them.
    assert_eq!((sink.events_in, sink.lost), (3, 7));
    assert!(report.balanced(), "{report:?}");
}
