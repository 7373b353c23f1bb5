//! Throughput of the broadcast and partition dispatchers, against hand-written tokio equivalents
//! measured in the same run.
//!
//! Run with `cargo bench --bench dispatch`. Every variant runs once as a warm-up, then [`RUNS`]
//! times, interleaved run by run; the summary lines give medians:
//!
//! ```text
//! broadcast genstage_eps=<events/s> baseline_eps=<events/s> ratio=<r>
//! partition genstage_eps=<events/s> baseline_eps=<events/s> ratio=<r>
//! ```
//!
//! Both run [`EVENTS`] events, counted once each (not once per delivery), on tokio's multi-thread
//! runtime with 2 worker threads, with default demand (max_demand 1000, min_demand 500).
//!
//! # Broadcast
//! A counter producer broadcasting `0..EVENTS` to two consumers that each sum what they receive.
//! The baseline: a counter task sends each batch of 1000 as an `Arc<Vec<u64>>` into two bounded
//! `tokio::sync::mpsc` channels (one batch each, the bound max_demand puts on a subscription), and
//! two tasks sum what they receive. genstage hands each consumer its own `Vec` (one copy of every
//! batch; the API gives consumers owned events), where the baseline shares one.
//!
//! # Partition
//! The counter partitioned by `n % 2` into two consumers that each sum their partition. The
//! baseline: the counter task splits each batch of 1000 into two `Vec`s by parity and sends them to
//! two bounded channels (one batch each), and two tasks sum them.

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
const RUNS: usize = 9;
/// Events per message of the baselines: GenStage's default max_demand.
const BATCH: u64 = 1000;

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

/// The counter, broadcast or partitioned, into two summing consumers; returns the time and the
/// sum of both consumers' totals.
fn genstage(rt: &Runtime, n: u64, partitioned: bool) -> (Duration, u64) {
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
            let sum = pipeline.add_consumer(Sum {
                total: total.clone(),
            });
            let options = if partitioned {
                SubscribeOptions::new().partition(partition)
            } else {
                SubscribeOptions::new()
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

fn main() {
    let rt = common::runtime();

    let sum = expected_sum(EVENTS);
    let (mut bc_gs, mut bc_base, mut pt_gs, mut pt_base) = (vec![], vec![], vec![], vec![]);
    // Run 0 is the warm-up and is not counted.
    for run in 0..=RUNS {
        let bg = measure(EVENTS, 2 * sum, "broadcast genstage", || {
            genstage(&rt, EVENTS, false)
        });
        let bb = measure(EVENTS, 2 * sum, "broadcast baseline", || {
            broadcast_baseline(&rt, EVENTS)
        });
        let pg = measure(EVENTS, sum, "partition genstage", || {
            genstage(&rt, EVENTS, true)
        });
        let pb = measure(EVENTS, sum, "partition baseline", || {
            partition_baseline(&rt, EVENTS)
        });
        let label = label(run);
        println!(
            "{label}: broadcast genstage {:.1} M/s, baseline {:.1} M/s (ratio {:.2}); partition \
             genstage {:.1} M/s, baseline {:.1} M/s (ratio {:.2})",
            bg / 1e6,
            bb / 1e6,
            bg / bb,
            pg / 1e6,
            pb / 1e6,
            pg / pb
        );
        if run > 0 {
            bc_gs.push(bg);
            bc_base.push(bb);
            pt_gs.push(pg);
            pt_base.push(pb);
        }
    }
    let (bg, bb) = (median(&bc_gs), median(&bc_base));
    println!(
        "broadcast genstage_eps={bg:.0} baseline_eps={bb:.0} ratio={:.3}",
        bg / bb
    );
    let (pg, pb) = (median(&pt_gs), median(&pt_base));
    println!(
        "partition genstage_eps={pg:.0} baseline_eps={pb:.0} ratio={:.3}",
        pg / pb
    );
}
