//! Throughput of the seed pipeline's shape when every stage does real CPU work per event, against
//! the hand-written tokio pipeline doing the same work.
//!
//! Run with `cargo bench --bench heavy`. Both variants run once as a warm-up, then [`RUNS`] times,
//! interleaved; the last line gives medians:
//!
//! ```text
//! heavy genstage_eps=<events/s> mpsc_batch_eps=<events/s> ratio=<r>
//! ```
//!
//! The seed benchmark (`benches/seed.rs`) prices genstage's messages: its stages do almost nothing,
//! and the pipeline runs fastest with its three tasks one after another on one worker. Here each
//! stage spends about 0.1 µs of CPU per event ([`churn`]), tens of microseconds per batch, and the
//! pipeline gains from running its stages on both workers at once. So this is where a scheduling
//! choice made for quick stages would cost parallelism: the mailbox's hand-offs, given to every
//! consumer rather than to quick ones only, brought the ratio from 1.15 down to 0.98. Given only to
//! consumers whose busy spells last at most 10 µs, as they are, they left it about where it was
//! without hand-offs (median 1.15 vs 1.18 in 6 alternated runs).
//!
//! The pipelines are the seed's, each stage calling [`churn`] on every event it sees: a counter
//! emitting `0..HEAVY_EVENTS`, a producer_consumer keeping the evens, a consumer summing them; on
//! tokio's multi-thread runtime with 2 workers, default demand. The baseline is the seed's
//! `mpsc_batch`: three tasks joined by bounded `tokio::sync::mpsc` channels of one 1000-event batch.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genstage::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

mod common;
use common::{label, measure, median};

/// Events through the pipeline per run.
const HEAVY_EVENTS: u64 = 200_000;
/// Measured runs per variant (after one warm-up run of each).
const RUNS: usize = 15;
/// Events per message of the mpsc baseline: GenStage's default max_demand.
const MPSC_BATCH: u64 = 1000;
/// Rounds of [`churn`] per event and stage.
const CHURN_ROUNDS: u32 = 64;

/// CPU work standing for what a real stage does with an event (parse, hash, transform): rounds of
/// xorshift that the compiler can neither skip nor vectorize away.
fn churn(event: u64) -> u64 {
    let mut x = black_box(event) | 1;
    for _ in 0..CHURN_ROUNDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// Emits `next, next + 1, …` up to `end`, as many as asked, churning each.
struct Counter {
    next: u64,
    end: u64,
}

impl Producer for Counter {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = self.end.min(self.next.saturating_add(demand as u64));
        let events: Vec<u64> = (self.next..stop).inspect(|&n| _ = churn(n)).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
}

/// Keeps the even numbers, churning each event.
struct Evens;

impl ProducerConsumer for Evens {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, mut events: Vec<u64>) -> StageResult<Vec<u64>> {
        events.retain(|&n| {
            churn(n);
            n % 2 == 0
        });
        Ok(events)
    }
}

/// Sums what it receives, churning each event.
struct Sum {
    total: Arc<AtomicU64>,
}

impl Consumer for Sum {
    type Input = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let sum = events.iter().inspect(|&&n| _ = churn(n)).sum::<u64>();
        self.total.fetch_add(sum, Ordering::Relaxed);
        Ok(())
    }
}

fn heavy_genstage(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let total = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer(Counter { next: 0, end: n });
        let evens = pipeline.add_producer_consumer(Evens);
        let sum = pipeline.add_consumer(Sum {
            total: total.clone(),
        });
        pipeline.subscribe(&counter, &evens);
        pipeline.subscribe(&evens, &sum);
        pipeline.run().await.expect("the heavy pipeline runs");
        (start.elapsed(), total.load(Ordering::Relaxed))
    })
}

fn heavy_mpsc_batch(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let start = Instant::now();
        let (numbers_tx, mut numbers_rx) = mpsc::channel::<Vec<u64>>(1);
        let (evens_tx, mut evens_rx) = mpsc::channel::<Vec<u64>>(1);
        let counter = tokio::spawn(async move {
            let mut next = 0;
            while next < n {
                let stop = n.min(next + MPSC_BATCH);
                let batch: Vec<u64> = (next..stop).inspect(|&n| _ = churn(n)).collect();
                next = stop;
                if numbers_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let evens = tokio::spawn(async move {
            while let Some(mut batch) = numbers_rx.recv().await {
                batch.retain(|&n| {
                    churn(n);
                    n % 2 == 0
                });
                if evens_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let sum = tokio::spawn(async move {
            let mut total = 0u64;
            while let Some(batch) = evens_rx.recv().await {
                total += batch.iter().inspect(|&&n| _ = churn(n)).sum::<u64>();
            }
            total
        });
        let total = sum.await.expect("sum task");
        counter.await.expect("counter task");
        evens.await.expect("evens task");
        (start.elapsed(), total)
    })
}

fn main() {
    let rt = common::runtime();
    let evens = HEAVY_EVENTS.div_ceil(2);
    let expected = evens * evens.saturating_sub(1);
    let (mut genstage, mut batch) = (Vec::new(), Vec::new());
    common::print_placement();
    // Run 0 is the warm-up and is not counted.
    for run in 0..=RUNS {
        let gs = measure(HEAVY_EVENTS, expected, "genstage", || {
            heavy_genstage(&rt, HEAVY_EVENTS)
        });
        let mp = measure(HEAVY_EVENTS, expected, "mpsc_batch", || {
            heavy_mpsc_batch(&rt, HEAVY_EVENTS)
        });
        let label = label(run);
        println!(
            "{label}: heavy genstage {:.2} M/s, mpsc_batch {:.2} M/s (ratio {:.2})",
            gs / 1e6,
            mp / 1e6,
            gs / mp
        );
        if run > 0 {
            genstage.push(gs);
            batch.push(mp);
        }
    }
    common::print_placement();
    let (gs, mp) = (median(&genstage), median(&batch));
    println!(
        "heavy genstage_eps={gs:.0} mpsc_batch_eps={mp:.0} ratio={:.3}",
        gs / mp
    );
}
