//! GenStage's buffer tests 25–27 and 41 ported (`genstage-semantics.md` §4 and §1.6): a producer
//! whose consumer's demand does not reach it yet buffers what its casts emit, `buffer_size` 5
//! overflows, `buffer_keep: :first` drops the incoming events and `:last` the oldest; once the
//! consumer's demand (max 4, min 0) reaches it, the buffer is drained before `handle_demand` is
//! asked for the rest. The report counts the overflow as discarded, and an info behind discarded
//! events is released.
//!
//! GenStage's tests start the producer with no consumer and subscribe one later. A genstage
//! pipeline refuses a producer without consumers (`PipelineError::NoConsumer`), so here the
//! consumer is subscribed from the start and the producer starts in `demand = accumulate`,
//! switched to forward once the events are queued: the same buffer, the same overflow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use genstage::{CastFor, Discard, DiscardReason, ProducerRef};

/// Events a cast adds to the producer's buffer.
struct Queue(&'static [&'static str]);

/// An info sent with `info_after_buffered`.
struct Sync(&'static str);

type Log = Arc<Mutex<Vec<String>>>;

/// What the producers and the consumer saw, in order: `demand N`, `[a, b]`, `info X`.
fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

macro_rules! letters_producer {
    ($name:ident, $($options:tt)*) => {
        /// GenStage's `Counter`: emits `0, 1, …` for its demand (seven in all, then ends), and
        /// what its casts queue.
        struct $name {
            next: u64,
            log: Log,
        }

        #[stage(producer, $($options)*)]
        impl $name {
            fn handle_demand(&mut self, demand: usize) -> Emit<String> {
                self.log.lock().unwrap().push(format!("demand {demand}"));
                let end = (self.next + demand as u64).min(7);
                let events = (self.next..end).map(|n| n.to_string()).collect();
                self.next = end;
                if end == 7 { Emit::last(events) } else { Emit::more(events) }
            }

            fn handle_cast(&mut self, queue: Queue) -> Vec<String> {
                queue.0.iter().map(|s| s.to_string()).collect()
            }

            fn handle_info(&mut self, sync: Sync) {
                self.log.lock().unwrap().push(format!("info {}", sync.0));
            }
        }
    };
}

letters_producer!(
    KeepFirst,
    buffer_size = 5,
    buffer_keep = first,
    demand = accumulate
);
letters_producer!(
    KeepLast,
    buffer_size = 5,
    buffer_keep = last,
    demand = accumulate
);
letters_producer!(Unbounded, buffer_size = infinity, demand = accumulate);
letters_producer!(
    KeepLastOf3,
    buffer_size = 3,
    buffer_keep = last,
    demand = accumulate
);

/// Logs each batch it handles.
struct Forwarder {
    log: Log,
}

#[stage(consumer, max_demand = 4, min_demand = 0)]
impl Forwarder {
    fn handle_events(&mut self, events: Vec<String>) {
        self.log.lock().unwrap().push(format!("{events:?}"));
    }
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Queues `a..e` then `f, g, h` on a producer accumulating its Forwarder's demand, switches it to
/// forward, and runs to the end: what was logged, and the producer's report.
async fn overflow<P>(producer: P, buffered: usize) -> (Vec<String>, genstage::StageReport)
where
    P: Producer<Output = String> + Stage<Ref = ProducerRef<P>>,
    Queue: CastFor<P, String>,
{
    let mut pipeline = Pipeline::new();
    let source = producer.add_to(&mut pipeline, Some("counter".to_owned()));
    let log = self::log();
    let sink = pipeline.add_consumer_named("forwarder", Forwarder { log: log.clone() });
    pipeline.subscribe(&source, &sink);
    let running = pipeline.start();
    source.cast(Queue(&["a", "b", "c", "d", "e"])).unwrap();
    source.cast(Queue(&["f", "g", "h"])).unwrap();
    // The casts are taken in before this is answered.
    assert_eq!(source.estimate_buffered_count().await.unwrap(), buffered);
    source.demand(DemandMode::Forward).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the pipeline ends")
        .unwrap();
    assert!(report.balanced(), "{report}");
    let logged = log.lock().unwrap().clone();
    (logged, report.stage("counter").unwrap().clone())
}

fn discarded(count: u64) -> Vec<Discard> {
    vec![Discard {
        count,
        reason: DiscardReason::BufferFull,
    }]
}

/// Test 25: keep first drops `f, g, h`; the consumer gets `[a..d]`, `[e]`; then the counter is
/// asked for the 3 the buffer could not serve, and then for 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_first_drops_the_incoming_overflow() {
    let demands = log();
    let (logged, counter) = overflow(
        KeepFirst {
            next: 0,
            log: demands.clone(),
        },
        5,
    )
    .await;
    assert_eq!(
        logged,
        [
            r#"["a", "b", "c", "d"]"#,
            r#"["e"]"#,
            r#"["0", "1", "2"]"#,
            r#"["3", "4", "5", "6"]"#,
        ]
    );
    assert_eq!(demands.lock().unwrap().clone(), ["demand 3", "demand 4"]);
    assert_eq!(counter.discarded, 3);
    assert_eq!(counter.discards, discarded(3));
    assert_eq!(counter.emitted, 15);
    assert_eq!(counter.events_out, 12);
}

/// Test 26: keep last drops `a, b, c`; the consumer gets `[d..g]`, `[h]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_last_drops_the_oldest() {
    let demands = log();
    let (logged, counter) = overflow(
        KeepLast {
            next: 0,
            log: demands.clone(),
        },
        5,
    )
    .await;
    assert_eq!(
        logged,
        [
            r#"["d", "e", "f", "g"]"#,
            r#"["h"]"#,
            r#"["0", "1", "2"]"#,
            r#"["3", "4", "5", "6"]"#,
        ]
    );
    assert_eq!(demands.lock().unwrap().clone(), ["demand 3", "demand 4"]);
    assert_eq!(counter.discarded, 3);
    assert_eq!(counter.discards, discarded(3));
    assert_eq!(counter.emitted, 15);
}

/// Test 27: an unbounded buffer keeps all 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_buffer_keeps_everything() {
    let demands = log();
    let (logged, counter) = overflow(
        Unbounded {
            next: 0,
            log: demands.clone(),
        },
        8,
    )
    .await;
    assert_eq!(
        logged,
        [
            r#"["a", "b", "c", "d"]"#,
            r#"["e", "f", "g", "h"]"#,
            r#"["0", "1", "2", "3"]"#,
            r#"["4", "5", "6"]"#,
        ]
    );
    assert_eq!(demands.lock().unwrap().clone(), ["demand 4", "demand 4"]);
    assert_eq!(counter.discarded, 0);
    assert_eq!(counter.emitted, 15);
}

/// Test 41: with `[a, b]` and an info behind them in a keep-last buffer of 3, queueing `c, d, e`
/// drops `a, b`, and the info, whose events are gone, is delivered at once, before any consumer
/// has asked for anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_info_behind_dropped_events_is_released() {
    let log = log();
    let batches = self::log();
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer_named(
        "counter",
        KeepLastOf3 {
            next: 0,
            log: log.clone(),
        },
    );
    let sink = pipeline.add_consumer_named(
        "forwarder",
        Forwarder {
            log: batches.clone(),
        },
    );
    pipeline.subscribe(&source, &sink);
    let running = pipeline.start();
    source.cast(Queue(&["a", "b"])).unwrap();
    source.info_after_buffered(Sync("sync")).unwrap();
    assert_eq!(source.estimate_buffered_count().await.unwrap(), 2);
    assert_eq!(log.lock().unwrap().clone(), Vec::<String>::new());
    source.cast(Queue(&["c", "d", "e"])).unwrap();
    until("the info", || !log.lock().unwrap().is_empty()).await;
    assert_eq!(log.lock().unwrap().clone(), ["info sync"]);
    assert_eq!(source.estimate_buffered_count().await.unwrap(), 3);

    source.demand(DemandMode::Forward).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the pipeline ends")
        .unwrap();
    // The consumer's ask of 4: 3 from the buffer, then `handle_demand(1)`; then 4 more.
    assert_eq!(
        log.lock().unwrap().clone(),
        ["info sync", "demand 1", "demand 4", "demand 4"]
    );
    assert_eq!(
        batches.lock().unwrap().clone(),
        [
            r#"["c", "d", "e"]"#,
            r#"["0"]"#,
            r#"["1", "2", "3", "4"]"#,
            r#"["5", "6"]"#
        ]
    );
    assert_eq!(report.stage("counter").unwrap().discarded, 2);
    assert!(report.balanced(), "{report}");
}

macro_rules! tripler {
    ($name:ident, $keep:ident) => {
        /// Emits each event three times, with a buffer of 2.
        struct $name;

        #[stage(producer_consumer, max_demand = 2, min_demand = 0, buffer_size = 2, buffer_keep = $keep)]
        impl $name {
            fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
                events.into_iter().flat_map(|e| [e, e, e]).collect()
            }
        }
    };
}

tripler!(TriplerKeepFirst, first);
tripler!(TriplerKeepLast, last);

/// Records each batch it handles, two events at a time.
struct Batches(Arc<Mutex<Vec<Vec<u64>>>>);

#[stage(consumer, max_demand = 2, min_demand = 0)]
impl Batches {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.0.lock().unwrap().push(events);
    }
}

/// A producer_consumer's buffer overflows as a producer's does (§1.6, §1.8): its input `[0, 1]`
/// becomes `[0, 0, 0, 1, 1, 1]` against a downstream demand of 2, so 4 are left for a buffer of 2.
/// Keeping the first leaves `[0, 1]`, keeping the last `[1, 1]`; 2 discarded either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_buffer_overflows_as_a_producer_does() {
    for (keep, expected) in [("first", [[0, 0], [0, 1]]), ("last", [[0, 0], [1, 1]])] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let run = if keep == "first" {
            pipeline! { genstage::from_iter(0..2u64) -> tripler = TriplerKeepFirst -> Batches(seen.clone()) }.run()
        } else {
            pipeline! { genstage::from_iter(0..2u64) -> tripler = TriplerKeepLast -> Batches(seen.clone()) }.run()
        };
        let report = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the pipeline ends")
            .unwrap();
        assert_eq!(seen.lock().unwrap().clone(), expected, "keep {keep}");
        let tripler = report.stage("tripler").unwrap();
        assert_eq!(tripler.emitted, 6, "keep {keep}");
        assert_eq!(tripler.discards, discarded(2), "keep {keep}");
        assert!(report.balanced(), "{report}");
    }
}
