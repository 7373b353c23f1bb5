//! Throughput of the broadcast and partition dispatchers, against hand-written tokio equivalents
//! measured in the same run.
//!
//! Run with `cargo bench --bench dispatch`. Every variant runs once as a warm-up, then [`RUNS`]
//! times, interleaved run by run; the summary lines give medians:
//!
//! ```text
//! broadcast genstage_eps=<events/s> baseline_eps=<events/s> ratio=<r>
//! partition genstage_eps=<events/s> baseline_eps=<events/s> ratio=<r>
//! broadcast_same_batches genstage_eps=<events/s> baseline_eps=<events/s> ratio=<r>
//! partition_same_batches genstage_eps=<events/s> baseline_eps=<events/s> ratio=<r>
//! ```
//!
//! All run [`EVENTS`] events, counted once each (not once per delivery), on tokio's multi-thread
//! runtime with 2 worker threads. The broadcast runs come first, then the partition runs: each
//! comparison's runs are interleaved, but the two comparisons are not, since the allocator's state
//! that one leaves moved the other's figures by up to 15% (in alternated builds).
//!
//! # Demand
//! The first two lines give genstage's consumers GenStage's default demand, `max_demand` 1000 and
//! `min_demand` 500. A consumer then asks for 500 after every 500 events it handles. A broadcast
//! emits once every consumer has asked: each time the second consumer's ask catches up with the
//! first's, the counter is asked for 500, and each consumer is sent a batch of 500 (in a probe,
//! 9 998 of the counter's 9 999 calls were for 500). A partition's demand is shared, so each ask
//! of 500 makes the counter emit 500, of which each partition takes half: batches of 250 (in the
//! probe, four in five; the others 500, a share that waited for its partition's ask). That is
//! three to four times the messages the baselines move for the same events (batches and asks),
//! with at most 1000 events sent and not yet handled per consumer.
//!
//! The last two (`_same_batches`) give them the baselines' batches, to price genstage's own work
//! apart from the protocol's: `max_demand` 2000 and `min_demand` 1000 ([`SAME_BATCHES`]), so that
//! a consumer is sent batches of 1000 (a partition's, of 500) and asks for 1000 after each, as a
//! baseline task receives batches from a channel of one. Each consumer then has at most 2000 events
//! sent and not yet handled, as in the baselines (one batch the task sums, one in the channel; the
//! counter has the next made and waiting to be sent).
//!
//! # Placement
//! The first and the last line, `placement crosscore_roundtrip_ns=<ns>`, time how quickly two
//! threads pass a cache line between them (see `common::print_placement`). On the 2-core
//! development machine, a virtual machine, it is about 60 to 140 ns most of the time, and about
//! 330 ns in streaks of seconds to minutes, when the host places its two virtual cores far apart.
//! Discard runs whose placement lines are far above the usual figure, or run them again.
//!
//! Where the tasks run decides these figures more than the work they do. The baselines' three
//! tasks run on one worker nearly all the time: a counter blocked on a full channel is woken by the
//! task that empties it, on that task's worker, and tokio runs next the task a worker woke last (in
//! a probe that recorded threads, each summing task ran on the counter's thread for 99.7% of its
//! batches). The batches then never leave one core's cache. genstage's partitioning and
//! broadcasting producers keep their consumers with them the same way, by handing them their own
//! wake-up (see `genstage-runtime/src/mailbox.rs`). Before the partition's did, a producer with
//! asks queued ran on by itself on one worker and its consumers on the other (7.7% of their
//! batches on its thread), every batch crossed the cores, and the partition ran at 0.66 of its
//! baseline with the baselines' batches, against about 1.1 since.
//!
//! tokio runs at most three woken tasks in a row from the slot other workers cannot take from;
//! the next goes through its run queue, with a wake-up of the other worker, which may take it
//! there, and the producer and its consumers with it. A producer and two consumers fill that
//! slot's three turns with one round, so how many rounds the events take decides how often that
//! happens, and how long the task in the run queue waits there decides how often the other worker
//! gets it. So the producer takes all the asks of its consumers' last turn before it waits for
//! them again, rather than wait after each (see `Receiver::await_hand_off`), and each wake-up of
//! the chain is given only as the task that holds it ends its poll (`mailbox/held.rs`). In six
//! runs alternated with the code before both, the partition went from 0.596 to 1.006 of its
//! baseline at default demand and from 1.057 to 1.383 with the baselines' batches, the broadcast
//! from 0.823 to 0.901 and from 1.300 to 1.470 (README's performance section has the account).
//!
//! # Broadcast
//! A counter producer broadcasting `0..EVENTS` to two consumers that each sum what they receive.
//! The baseline: a counter task sends each batch of 1000 as an `Arc<Vec<u64>>` into two bounded
//! `tokio::sync::mpsc` channels (room for one batch each), and
//! two tasks sum what they receive. genstage hands each consumer its own `Vec` (one copy of every
//! batch; the API gives consumers owned events), where the baseline shares one.
//!
//! # Partition
//! The counter partitioned by `n % 2` into two consumers that each sum their partition. The
//! baseline: the counter task splits each batch of 1000 into two `Vec`s by parity and sends them to
//! two bounded channels (room for one batch each), and two tasks sum them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genstage::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

mod common;
use common::{label, measure, median, Sum};

/// Events per run.
const EVENTS: u64 = 5_000_000;
/// Measured runs per variant (after one warm-up run of each).
const RUNS: usize = 15;
/// Events per message of the baselines: GenStage's default max_demand.
const BATCH: u64 = 1000;

/// A consumer's `(max_demand, min_demand)`.
type Demand = (usize, usize);

/// GenStage's default demand.
const DEFAULT_DEMAND: Demand = (1000, 500);

/// Demand that gives genstage's consumers the baselines' batches (see the module docs).
const SAME_BATCHES: Demand = (2000, 1000);

/// Emits `next, next + 1, …` up to (not including) `end`, as many as asked, to every consumer or
/// by parity.
struct Counter {
    next: u64,
    end: u64,
    partitioned: bool,
}

impl Partition<u64> for Counter {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

impl Producer for Counter {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = self.end.min(self.next.saturating_add(demand as u64));
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        if self.partitioned {
            Dispatch::partition(2)
        } else {
            Dispatch::broadcast()
        }
    }
}

/// The sum of `0..n`.
fn expected_sum(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// The counter, broadcast or partitioned, into two summing consumers subscribed with `demand`;
/// returns the time and the sum of both consumers' totals.
fn genstage(rt: &Runtime, n: u64, partitioned: bool, demand: Demand) -> (Duration, u64) {
    rt.block_on(async {
        let total = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer(Counter {
            next: 0,
            end: n,
            partitioned,
        });
        for partition in 0..2 {
            let sum = pipeline.add_consumer(Sum::new(&total));
            let (max_demand, min_demand) = demand;
            let options = SubscribeOptions::new()
                .max_demand(max_demand)
                .min_demand(min_demand);
            let options = if partitioned {
                options.partition(partition)
            } else {
                options
            };
            pipeline.subscribe_with(&counter, &sum, options);
        }
        let report = pipeline.run().await.expect("the pipeline runs");
        let elapsed = start.elapsed();
        let handled = report.totals().handled;
        assert_eq!(handled, if partitioned { n } else { 2 * n });
        (elapsed, total.load(Ordering::Relaxed))
    })
}

/// Two tasks summing what their channels bring.
fn summers<B: std::ops::Deref<Target = Vec<u64>> + Send + 'static>(
    receivers: [mpsc::Receiver<B>; 2],
) -> [tokio::task::JoinHandle<u64>; 2] {
    receivers.map(|mut rx| {
        tokio::spawn(async move {
            let mut total = 0u64;
            while let Some(batch) = rx.recv().await {
                total += batch.iter().sum::<u64>();
            }
            total
        })
    })
}

fn broadcast_baseline(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let start = Instant::now();
        let (a_tx, a_rx) = mpsc::channel::<Arc<Vec<u64>>>(1);
        let (b_tx, b_rx) = mpsc::channel::<Arc<Vec<u64>>>(1);
        let counter = tokio::spawn(async move {
            let mut next = 0;
            while next < n {
                let stop = n.min(next + BATCH);
                let batch = Arc::new((next..stop).collect::<Vec<u64>>());
                next = stop;
                if a_tx.send(batch.clone()).await.is_err() || b_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let mut total = 0;
        for summer in summers([a_rx, b_rx]) {
            total += summer.await.expect("sum task");
        }
        counter.await.expect("counter task");
        (start.elapsed(), total)
    })
}

fn partition_baseline(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let start = Instant::now();
        let (even_tx, even_rx) = mpsc::channel::<Box<Vec<u64>>>(1);
        let (odd_tx, odd_rx) = mpsc::channel::<Box<Vec<u64>>>(1);
        let counter = tokio::spawn(async move {
            let mut next = 0;
            while next < n {
                let stop = n.min(next + BATCH);
                let (evens, odds): (Vec<u64>, Vec<u64>) = (next..stop).partition(|n| n % 2 == 0);
                next = stop;
                if even_tx.send(Box::new(evens)).await.is_err()
                    || odd_tx.send(Box::new(odds)).await.is_err()
                {
                    break;
                }
            }
        });
        let mut total = 0;
        for summer in summers([even_rx, odd_rx]) {
            total += summer.await.expect("sum task");
        }
        counter.await.expect("counter task");
        (start.elapsed(), total)
    })
}

/// Medians of one comparison's runs.
#[derive(Default)]
struct Runs {
    genstage: Vec<f64>,
    baseline: Vec<f64>,
}

impl Runs {
    fn push(&mut self, genstage: f64, baseline: f64) {
        self.genstage.push(genstage);
        self.baseline.push(baseline);
    }

    /// The summary line: medians, and the ratio of the medians.
    fn print(&self, name: &str) {
        let (genstage, baseline) = (median(&self.genstage), median(&self.baseline));
        println!(
            "{name} genstage_eps={genstage:.0} baseline_eps={baseline:.0} ratio={:.3}",
            genstage / baseline
        );
    }
}

/// One dispatcher's comparison: genstage with default demand, the baseline, and genstage with the
/// baselines' batches, run in turn; returns the runs with default demand and those with the
/// baselines' batches.
fn compare(
    rt: &Runtime,
    name: &str,
    partitioned: bool,
    baseline: fn(&Runtime, u64) -> (Duration, u64),
) -> (Runs, Runs) {
    // Each event is summed once per consumer it goes to.
    let sum = expected_sum(EVENTS) * if partitioned { 1 } else { 2 };
    let (mut default_demand, mut same_batches) = (Runs::default(), Runs::default());
    // Run 0 is the warm-up and is not counted.
    for run in 0..=RUNS {
        let default_eps = measure(EVENTS, sum, name, || {
            genstage(rt, EVENTS, partitioned, DEFAULT_DEMAND)
        });
        let baseline_eps = measure(EVENTS, sum, name, || baseline(rt, EVENTS));
        let same_eps = measure(EVENTS, sum, name, || {
            genstage(rt, EVENTS, partitioned, SAME_BATCHES)
        });
        println!(
            "{}: {name} genstage {:.1} M/s (same batches {:.1}), baseline {:.1} M/s (ratio {:.2}, \
             same batches {:.2})",
            label(run),
            default_eps / 1e6,
            same_eps / 1e6,
            baseline_eps / 1e6,
            default_eps / baseline_eps,
            same_eps / baseline_eps
        );
        if run > 0 {
            default_demand.push(default_eps, baseline_eps);
            same_batches.push(same_eps, baseline_eps);
        }
    }
    (default_demand, same_batches)
}

fn main() {
    let rt = common::runtime();
    common::print_placement();
    // One dispatcher after the other (see the module docs).
    let (broadcast, broadcast_same) = compare(&rt, "broadcast", false, broadcast_baseline);
    let (partition, partition_same) = compare(&rt, "partition", true, partition_baseline);
    common::print_placement();
    broadcast.print("broadcast");
    partition.print("partition");
    broadcast_same.print("broadcast_same_batches");
    partition_same.print("partition_same_batches");
}
