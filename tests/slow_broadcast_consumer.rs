//! How much a slow consumer of a broadcast holds the others back, and what loosens it: the
//! numbers behind the advice in the README's Dispatchers section and `BroadcastDispatcher`'s docs.
//!
//! The slow consumer is gated: it takes its first batch and waits in `handle_events` until the
//! test opens the gate. On tokio's paused clock a sleep returns only once every task is idle, so
//! what the fast consumer has then is all the broadcast lets through while the slow one waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use genstage::prelude::*;
use tokio::sync::Semaphore;

const EVENTS: u64 = 10_000;

/// `0..EVENTS` to every consumer.
struct Numbers {
    next: u64,
}

#[stage(producer, dispatcher = broadcast)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = EVENTS.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == EVENTS {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

/// Counts what it handles.
struct Fast(Arc<AtomicU64>);

#[stage(consumer)]
impl Fast {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.0.fetch_add(events.len() as u64, Ordering::SeqCst);
    }
}

/// Waits for the gate before each batch.
struct Gated(Arc<Semaphore>);

#[stage(consumer, max_demand = 10, min_demand = 5)]
impl Gated {
    async fn handle_events(&mut self, _events: Vec<u64>) {
        if let Ok(permit) = self.0.acquire().await {
            permit.forget();
        }
    }
}

/// Passes events on: a producer_consumer put in front of the slow consumer.
struct Spool;

#[stage(producer_consumer)]
impl Spool {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }
}

/// What the fast consumer has once everything waits on the gate; then the gate opens and the run
/// must end with every event handled by both.
async fn let_through(pipeline: Pipeline, fast: Arc<AtomicU64>, gate: Arc<Semaphore>) -> u64 {
    let running = pipeline.start();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let let_through = fast.load(Ordering::SeqCst);
    gate.add_permits(Semaphore::MAX_PERMITS);
    let report = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the run ends once the gate is open")
        .expect("no stage fails");
    assert!(report.balanced(), "{report}");
    assert_eq!(fast.load(Ordering::SeqCst), EVENTS);
    let_through
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_paces_the_others_to_its_max_demand() {
    let (fast, gate) = (Arc::new(AtomicU64::new(0)), Arc::new(Semaphore::new(0)));
    let p = pipeline! {
        numbers = Numbers { next: 0 };
        numbers -> Fast(fast.clone());
        numbers -> Gated(gate.clone());
    };
    // The slow one asked for 10: the broadcast sends 10, to everyone.
    assert_eq!(let_through(p.into_pipeline(), fast, gate).await, 10);
}

#[tokio::test(start_paused = true)]
async fn a_larger_max_demand_lets_the_others_run_ahead_by_it() {
    let (fast, gate) = (Arc::new(AtomicU64::new(0)), Arc::new(Semaphore::new(0)));
    let p = pipeline! {
        numbers = Numbers { next: 0 };
        numbers -> Fast(fast.clone());
        numbers -[max_demand = 3000, min_demand = 2995]-> Gated(gate.clone());
    };
    assert_eq!(let_through(p.into_pipeline(), fast, gate).await, 3000);
}

#[tokio::test(start_paused = true)]
async fn a_producer_consumer_in_front_adds_its_max_demand_not_a_buffer() {
    // The producer_consumer handles its input only while the slow consumer has demand (GenStage's
    // rule): its first batch (1000 - 500 events) goes out, 10 to the slow one and 490 into its
    // buffer, and it asks again for 500; the next 500 wait unhandled. So the others get 1500, its
    // default `max_demand` and one batch, not all that its unbounded buffer could hold.
    let (fast, gate) = (Arc::new(AtomicU64::new(0)), Arc::new(Semaphore::new(0)));
    let p = pipeline! {
        numbers = Numbers { next: 0 };
        numbers -> Fast(fast.clone());
        numbers -> Spool -> Gated(gate.clone());
    };
    assert_eq!(let_through(p.into_pipeline(), fast, gate).await, 1500);
}

#[tokio::test(start_paused = true)]
async fn a_producer_consumer_in_front_with_a_larger_max_demand_lets_the_others_run_ahead() {
    let (fast, gate) = (Arc::new(AtomicU64::new(0)), Arc::new(Semaphore::new(0)));
    let p = pipeline! {
        numbers = Numbers { next: 0 };
        numbers -> Fast(fast.clone());
        numbers -[max_demand = 4000, min_demand = 3000]-> Spool -> Gated(gate.clone());
    };
    // One batch of 1000 handled, asked again; 4000 + 1000 let through.
    assert_eq!(let_through(p.into_pipeline(), fast, gate).await, 5000);
}
