//! Throughput of the seed pipeline and latency of a max_demand 1 ping-pong, against hand-written
//! tokio equivalents measured in the same run.
//!
//! Run with `cargo bench --bench seed`. Every variant runs once as a warm-up, then [`RUNS`] times,
//! interleaved run by run; the summary lines give medians. The last line of output is the seed line:
//!
//! ```text
//! pingpong genstage_eps=<events/s> tokio_eps=<events/s> ratio=<r>
//! protocol genstage_eps=<events/s> mpsc_protocol_eps=<events/s> ratio=<r>
//! seed genstage_eps=<events/s> mpsc_batch_eps=<events/s> loop_eps=<events/s> ratio_vs_mpsc_batch=<r>
//! ```
//!
//! `cargo bench --bench seed -- alone` runs the seed pipeline alone, with nothing else in the process,
//! and prints `seed_alone genstage_eps=<events/s>`: for comparing two builds of genstage, run
//! alternately. The ratios above share the process with the baselines, whose runs leave the
//! allocator in a state that moves the next run's figures, in both directions.
//!
//! # Seed
//! The GenStage tutorial's pipeline: a counter producer emitting `0..SEED_EVENTS` on demand, a
//! producer_consumer keeping the even numbers, a consumer summing them, with default demand
//! (max_demand 1000, min_demand 500), on tokio's multi-thread runtime with 2 worker threads.
//! Baselines doing the same work:
//! - `mpsc_batch`: three tokio tasks joined by bounded `tokio::sync::mpsc` channels of
//!   [`MPSC_CAPACITY`] message, each message a `Vec<u64>` of up to [`MPSC_BATCH`] events: a counter
//!   task sends `0..N` in batches, an evens task filters each batch in place and forwards it, a sum
//!   task adds them up. One queued batch of 1000 per channel is the bound genstage's default
//!   max_demand of 1000 puts on a subscription (a larger capacity lets the counter run further
//!   ahead: with 4, this baseline measured 5 to 25% faster on the 2-core machine). Note that
//!   genstage, following GenStage's protocol, moves more messages for the same events: after the
//!   first ask of 1000, each consumer asks 500 after every 500 events handled, so the counter sends
//!   500-event messages, each answered by an ask, and the evens stage sends 250-event messages;
//! - `mpsc_protocol`: the same three tasks exchanging the messages genstage exchanges, written by
//!   hand on unbounded `tokio::sync::mpsc` channels: the counter emits what it was asked for, the
//!   evens task handles batches of at most 500 only while the sum task has demand, asks 500 after
//!   each batch and holds back what the sum task has not asked for, and the sum task asks 500 after
//!   every 500 events. It prices GenStage's message pattern apart from genstage's implementation
//!   of it; an upper bound on the pattern's own price, since tokio's unbounded channel costs more
//!   per message than genstage's mailbox;
//! - `loop`: one thread counting up and summing the evens, each value passed through
//!   `black_box` so that the compiler can neither vectorize the loop nor replace it by a formula.
//!
//! # Ping-pong
//! A producer and a consumer subscribed with max_demand 1, min_demand 0: every event costs one ask
//! upstream and one one-event message downstream. The tokio baseline is the same exchange written by
//! hand: the consumer task sends a request on a bounded mpsc channel and the producer task answers
//! with one event on a second bounded mpsc channel (capacity 1 each). Two long-lived channels are the
//! closest equivalent of two stages' mailboxes, and the stronger baseline: a `oneshot` per request
//! would create a channel per event.
//!
//! # What the runtime's design choices measured
//! Figures from alternated runs of this benchmark (each variant built, then run in turn) on the
//! 2-core development machine, when each choice was made; the runtime's code says why it does what
//! it does, and these say how much it was worth. The machine is shared and noisy: rerun before
//! relying on any of them.
//! - The mailbox (`genstage-runtime/src/mailbox.rs`), against `tokio::sync::mpsc::unbounded_channel`
//!   in its place: median throughput +16% (48 alternated runs each: 370 vs 320 M events/s).
//! - A mailbox's shared state on one aligned cache line: +2 to +8% on the multi-thread runtime.
//! - A `Mail` of 32 bytes, the rare subscription messages boxed (`protocol.rs`): a subscription
//!   inline made it 48 bytes and cost 6 to 10% of the seed's throughput.
//! - Lazy asks (a producer_consumer with nothing to do with an ask is not woken for it): workers
//!   parked 20% less and stole 45% less, median throughput +5% (20 alternated rounds of 30 runs: 393
//!   vs 374 M events/s).
//! - A producer woken before the consumer of the events its ask paid for (`run/mod.rs`): +10%.
//! - Hand-offs (a producer_consumer leaves the wake-up its ask owes its producer with the consumer
//!   its events wake): median throughput +24% (20 alternated runs: 432 vs 347 M events/s; ratio to
//!   `mpsc_batch` 0.87 vs 0.75; faster in all 20 runs). The ping-pong, which never hands off but
//!   pays for timing busy spells, lost 7% (ratio to tokio 0.88 vs 0.94). Reading the clock costs
//!   about 35 ns, so a receiver times one busy spell in 16; the seed's three stages are woken about
//!   10,000 times each in a run of about 25 ms, far below the 10 µs spell that refuses a hand-off.
//!   `benches/heavy.rs` gives the other side of hand-offs.
//! - The mailbox's slot kept as a small enum beside the waker, with the shared queue a `VecDeque`
//!   swapped whole: a waker-carrying enum needed a `Vec` queue, converted to the receiver's
//!   `VecDeque` at each take, to stay on one cache line, and that cost the ping-pong about 18%
//!   (alternated runs: ratio 0.47 vs 0.57).
//! - The cooperative budget (`Receiver::consume_budget`): one unit of tokio's budget per message
//!   cost about 8% of genstage's seed throughput (ratio 0.56 vs 0.58 in 9 alternated runs on a
//!   loaded machine); one unit per 8 messages is within the noise (12 alternated runs: 688 vs 694 M
//!   events/s, ratio 0.750 vs 0.723, ping-pong 0.735 vs 0.722).
//! - Four small changes to the stage loops (the upstream message handler always inlined, a
//!   handed-out input entry dropped as what it is, two checks made cheaper) took instructions off
//!   each round but made `-- alone` 2 to 5% slower (15 alternated builds each, three sets), so they
//!   were not kept: inlining decisions move the loops' code layout, and that moves these figures as
//!   much.
//! - A stage about to wait takes in its messages or parks under one lock (`ready`, then
//!   `try_recv`), where it locked its mailbox once to find it empty and again to park: callgrind
//!   counts 9% fewer instructions on the ping-pong (268M against 296M for 100 000 events,
//!   current-thread runtime) and 1% fewer on the seed (32.4M against 32.7M for 2 000 000). In 8
//!   alternated runs the ping-pong's median ratio rose from 0.638 to 0.701 (2.82 to 3.13 M events/s)
//!   and the seed's did not move (0.668 and 0.664; 20 alternated `-- alone` runs: 599 and 600 M
//!   events/s).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use genstage::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

mod common;
use common::{label, measure, median, Sum};

/// Events through the seed pipeline per run.
const SEED_EVENTS: u64 = 10_000_000;
/// Events exchanged by the ping-pong per run.
const PINGPONG_EVENTS: u64 = 200_000;
/// Measured runs per variant (after one warm-up run of each).
const RUNS: usize = 15;
/// Events per message of the mpsc baseline: GenStage's default max_demand.
const MPSC_BATCH: u64 = 1000;
/// Messages each bounded channel of the mpsc baseline holds: one batch of max_demand events.
const MPSC_CAPACITY: usize = 1;
/// GenStage's default demand, used by the hand-written protocol baseline.
const MAX_DEMAND: usize = 1000;
const MIN_DEMAND: usize = MAX_DEMAND / 2;

/// Emits `next, next + 1, …` up to (not including) `end`, as many as asked (GenStage's tutorial
/// `Counter`).
struct Counter {
    next: u64,
    end: u64,
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
}

/// Keeps the even numbers.
struct Evens;

impl ProducerConsumer for Evens {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, mut events: Vec<u64>) -> StageResult<Vec<u64>> {
        events.retain(|n| n % 2 == 0);
        Ok(events)
    }
}

/// The sum of the even numbers below `n`.
fn expected_evens_sum(n: u64) -> u64 {
    let evens = n.div_ceil(2);
    evens * evens.saturating_sub(1)
}

/// The sum of `0..n`.
fn expected_sum(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn seed_genstage(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let total = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer(Counter { next: 0, end: n });
        let evens = pipeline.add_producer_consumer(Evens);
        let sum = pipeline.add_consumer(Sum::new(&total));
        pipeline.subscribe(&counter, &evens);
        pipeline.subscribe(&evens, &sum);
        let report = pipeline.run().await.expect("the seed pipeline runs");
        let elapsed = start.elapsed();
        assert_eq!(
            report.stage("Sum").map(|s| s.events_in),
            Some(n.div_ceil(2))
        );
        (elapsed, total.load(Ordering::Relaxed))
    })
}

fn seed_mpsc_batch(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let start = Instant::now();
        let (numbers_tx, mut numbers_rx) = mpsc::channel::<Vec<u64>>(MPSC_CAPACITY);
        let (evens_tx, mut evens_rx) = mpsc::channel::<Vec<u64>>(MPSC_CAPACITY);
        let counter = tokio::spawn(async move {
            let mut next = 0;
            while next < n {
                let stop = n.min(next + MPSC_BATCH);
                let batch: Vec<u64> = (next..stop).collect();
                next = stop;
                if numbers_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let evens = tokio::spawn(async move {
            while let Some(mut batch) = numbers_rx.recv().await {
                batch.retain(|n| n % 2 == 0);
                if evens_tx.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let sum = tokio::spawn(async move {
            let mut total = 0u64;
            while let Some(batch) = evens_rx.recv().await {
                total += batch.iter().sum::<u64>();
            }
            total
        });
        let total = sum.await.expect("sum task");
        counter.await.expect("counter task");
        evens.await.expect("evens task");
        (start.elapsed(), total)
    })
}

/// The evens task's mailbox in the protocol baseline.
enum EvensMail {
    Events(Vec<u64>),
    Ask(usize),
    End,
}

/// GenStage's consumer-side rule (§1.3): after a batch, ask for what refills `outstanding` to
/// max_demand once it has fallen to min_demand.
fn ask_after_batch(outstanding: &mut usize, batch: usize) -> usize {
    *outstanding -= batch;
    if *outstanding <= MIN_DEMAND {
        let ask = MAX_DEMAND - *outstanding;
        *outstanding = MAX_DEMAND;
        ask
    } else {
        0
    }
}

/// Sends what `demand` allows of `held` to the sum task; the rest stays held, in order.
fn send_held(held: &mut Vec<u64>, demand: &mut usize, sum: &mpsc::UnboundedSender<Vec<u64>>) {
    let n = held.len().min(*demand);
    if n == 0 {
        return;
    }
    let rest = held.split_off(n);
    *demand -= n;
    let _ = sum.send(std::mem::replace(held, rest));
}

fn seed_mpsc_protocol(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let start = Instant::now();
        let (ask_tx, mut ask_rx) = mpsc::unbounded_channel::<usize>();
        let (evens_tx, mut evens_rx) = mpsc::unbounded_channel::<EvensMail>();
        let (sum_tx, mut sum_rx) = mpsc::unbounded_channel::<Vec<u64>>();
        let sum_asks = evens_tx.clone();
        let counter = tokio::spawn(async move {
            // The evens task's initial ask.
            let mut owed = MAX_DEMAND as u64;
            let mut next = 0;
            loop {
                let stop = n.min(next + owed);
                if stop > next {
                    let _ = evens_tx.send(EvensMail::Events((next..stop).collect()));
                    owed -= stop - next;
                    next = stop;
                }
                if next == n {
                    let _ = evens_tx.send(EvensMail::End);
                    break;
                }
                match ask_rx.recv().await {
                    Some(demand) => owed += demand as u64,
                    None => break,
                }
            }
        });
        let evens = tokio::spawn(async move {
            let mut input: std::collections::VecDeque<Vec<u64>> = Default::default();
            let mut outstanding = MAX_DEMAND;
            // The sum task's initial ask.
            let mut demand = MAX_DEMAND;
            let mut held = Vec::new();
            let mut ended = false;
            loop {
                // Input is handled only while the sum task has demand (GenStage §1.8).
                while demand > 0 && held.is_empty() {
                    let Some(mut batch) = input.pop_front() else {
                        break;
                    };
                    if batch.len() > MAX_DEMAND - MIN_DEMAND {
                        input.push_front(batch.split_off(MAX_DEMAND - MIN_DEMAND));
                    }
                    let ask = ask_after_batch(&mut outstanding, batch.len());
                    batch.retain(|n| n % 2 == 0);
                    if ask > 0 {
                        let _ = ask_tx.send(ask);
                    }
                    held = batch;
                    send_held(&mut held, &mut demand, &sum_tx);
                }
                if ended && input.is_empty() && held.is_empty() {
                    break;
                }
                match evens_rx.recv().await {
                    Some(EvensMail::Events(events)) => input.push_back(events),
                    Some(EvensMail::Ask(more)) => {
                        demand += more;
                        send_held(&mut held, &mut demand, &sum_tx);
                    }
                    Some(EvensMail::End) => ended = true,
                    None => break,
                }
            }
        });
        let sum = tokio::spawn(async move {
            let mut total = 0u64;
            let mut outstanding = MAX_DEMAND;
            while let Some(batch) = sum_rx.recv().await {
                total += batch.iter().sum::<u64>();
                let ask = ask_after_batch(&mut outstanding, batch.len());
                if ask > 0 {
                    let _ = sum_asks.send(EvensMail::Ask(ask));
                }
            }
            total
        });
        let total = sum.await.expect("sum task");
        counter.await.expect("counter task");
        evens.await.expect("evens task");
        (start.elapsed(), total)
    })
}

fn seed_loop(n: u64) -> (Duration, u64) {
    let start = Instant::now();
    let mut total = 0u64;
    for i in 0..black_box(n) {
        let i = black_box(i);
        if i % 2 == 0 {
            total += i;
        }
    }
    (start.elapsed(), black_box(total))
}

/// Sums what it receives, one event at a time in the ping-pong.
struct PingSum {
    total: Arc<AtomicU64>,
}

impl Consumer for PingSum {
    type Input = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.total
            .fetch_add(events.iter().sum::<u64>(), Ordering::Relaxed);
        Ok(())
    }
}

fn pingpong_genstage(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let total = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer(Counter { next: 0, end: n });
        let sum = pipeline.add_consumer(PingSum {
            total: total.clone(),
        });
        pipeline.subscribe_with(
            &counter,
            &sum,
            SubscribeOptions::new().max_demand(1).min_demand(0),
        );
        let report = pipeline.run().await.expect("the ping-pong pipeline runs");
        let elapsed = start.elapsed();
        assert_eq!(report.stage("PingSum").map(|s| s.events_in), Some(n));
        (elapsed, total.load(Ordering::Relaxed))
    })
}

fn pingpong_tokio(rt: &Runtime, n: u64) -> (Duration, u64) {
    rt.block_on(async {
        let start = Instant::now();
        let (ask_tx, mut ask_rx) = mpsc::channel::<()>(1);
        let (event_tx, mut event_rx) = mpsc::channel::<u64>(1);
        let producer = tokio::spawn(async move {
            let mut next = 0u64;
            while next < n && ask_rx.recv().await.is_some() {
                if event_tx.send(next).await.is_err() {
                    break;
                }
                next += 1;
            }
        });
        let consumer = tokio::spawn(async move {
            let mut total = 0u64;
            for _ in 0..n {
                if ask_tx.send(()).await.is_err() {
                    break;
                }
                match event_rx.recv().await {
                    Some(event) => total += event,
                    None => break,
                }
            }
            total
        });
        let total = consumer.await.expect("consumer task");
        producer.await.expect("producer task");
        (start.elapsed(), total)
    })
}

/// The seed pipeline alone: [`RUNS`] runs after a warm-up, and nothing else in the process.
fn seed_alone(rt: &Runtime) {
    let seed_sum = expected_evens_sum(SEED_EVENTS);
    let runs: Vec<f64> = (0..=RUNS)
        .map(|_| {
            measure(SEED_EVENTS, seed_sum, "seed genstage", || {
                seed_genstage(rt, SEED_EVENTS)
            })
        })
        .skip(1)
        .collect();
    println!("seed_alone genstage_eps={:.0}", median(&runs));
}

fn main() {
    let rt = common::runtime();
    if std::env::args().any(|arg| arg == "alone") {
        return seed_alone(&rt);
    }
    common::print_placement();

    let seed_sum = expected_evens_sum(SEED_EVENTS);
    let ping_sum = expected_sum(PINGPONG_EVENTS);
    let mut seed_gs = Vec::new();
    let mut seed_mpsc = Vec::new();
    let mut seed_protocol = Vec::new();
    let mut seed_lp = Vec::new();
    let mut ping_gs = Vec::new();
    let mut ping_tk = Vec::new();

    // Run 0 is the warm-up and is not counted.
    for run in 0..=RUNS {
        let gs = measure(SEED_EVENTS, seed_sum, "seed genstage", || {
            seed_genstage(&rt, SEED_EVENTS)
        });
        let mp = measure(SEED_EVENTS, seed_sum, "seed mpsc_batch", || {
            seed_mpsc_batch(&rt, SEED_EVENTS)
        });
        let pr = measure(SEED_EVENTS, seed_sum, "seed mpsc_protocol", || {
            seed_mpsc_protocol(&rt, SEED_EVENTS)
        });
        let lp = measure(SEED_EVENTS, seed_sum, "seed loop", || {
            seed_loop(SEED_EVENTS)
        });
        let pg = measure(PINGPONG_EVENTS, ping_sum, "pingpong genstage", || {
            pingpong_genstage(&rt, PINGPONG_EVENTS)
        });
        let pt = measure(PINGPONG_EVENTS, ping_sum, "pingpong tokio", || {
            pingpong_tokio(&rt, PINGPONG_EVENTS)
        });
        let label = label(run);
        println!(
            "{label}: seed genstage {:.1} M/s, mpsc_batch {:.1} M/s, mpsc_protocol {:.1} M/s, \
             loop {:.1} M/s (ratio {:.2}); pingpong genstage {:.0} k/s, tokio {:.0} k/s (ratio {:.2})",
            gs / 1e6,
            mp / 1e6,
            pr / 1e6,
            lp / 1e6,
            gs / mp,
            pg / 1e3,
            pt / 1e3,
            pg / pt
        );
        if run > 0 {
            seed_gs.push(gs);
            seed_mpsc.push(mp);
            seed_protocol.push(pr);
            seed_lp.push(lp);
            ping_gs.push(pg);
            ping_tk.push(pt);
        }
    }
    common::print_placement();

    let (pg, pt) = (median(&ping_gs), median(&ping_tk));
    println!(
        "pingpong genstage_eps={pg:.0} tokio_eps={pt:.0} ratio={:.3}",
        pg / pt
    );
    let (gs, mp, lp) = (median(&seed_gs), median(&seed_mpsc), median(&seed_lp));
    let pr = median(&seed_protocol);
    println!(
        "protocol genstage_eps={gs:.0} mpsc_protocol_eps={pr:.0} ratio={:.3}",
        gs / pr
    );
    println!(
        "seed genstage_eps={gs:.0} mpsc_batch_eps={mp:.0} loop_eps={lp:.0} ratio_vs_mpsc_batch={:.3}",
        gs / mp
    );
}
