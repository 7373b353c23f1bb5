//! Stages that fail, restart, and a report that accounts for every event.
//!
//! `orders` emits 200 orders. `enrich` panics on a malformed order (every 50th): it is
//! `restart = transient`, so it is rebuilt and goes on, and the batch it held is counted as lost.
//! `store` writes orders to a "database" whose connection drops on every 40th write: it is
//! `restart = transient` with `redeliver`, so the batch it held is handed again to the restarted
//! stage, and no order is lost. Both allow 10 restarts in 5 seconds (the default is 3).
//!
//! ```text
//! cargo run --example flaky
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use genstage::prelude::*;

/// An order, and whether its data can be read.
#[derive(Debug, Clone)]
struct Order {
    number: u64,
    malformed: bool,
}

/// `count` orders; every 50th is malformed.
struct Orders {
    next: u64,
    count: u64,
}

#[stage(producer)]
impl Orders {
    fn handle_demand(&mut self, demand: usize) -> Emit<Order> {
        let stop = self.count.min(self.next + demand as u64);
        let orders = (self.next..stop)
            .map(|number| Order {
                number,
                malformed: number % 50 == 49,
            })
            .collect();
        self.next = stop;
        if stop == self.count {
            Emit::last(orders)
        } else {
            Emit::more(orders)
        }
    }
}

/// Reads each order; panics on a malformed one.
struct Enrich;

#[stage(producer_consumer, max_demand = 10, restart = transient, max_restarts = 10, max_seconds = 5)]
impl Enrich {
    fn handle_events(&mut self, orders: Vec<Order>) -> Vec<Order> {
        for order in &orders {
            assert!(!order.malformed, "order {} is malformed", order.number);
        }
        orders
    }
}

/// Writes so far, over every value of `Store`: the database's connection drops on every 40th.
static WRITES: AtomicU64 = AtomicU64::new(0);
/// How many times each order was stored, over every value of `Store`.
static STORED: Mutex<BTreeMap<u64, u32>> = Mutex::new(BTreeMap::new());

/// Writes orders to the database.
struct Store;

#[stage(consumer, max_demand = 10, restart = transient, redeliver, max_restarts = 10, max_seconds = 5)]
impl Store {
    fn handle_events(&mut self, orders: Vec<Order>) -> Result<(), String> {
        for order in orders {
            if WRITES.fetch_add(1, Ordering::Relaxed) % 40 == 39 {
                return Err(format!("connection lost writing order {}", order.number));
            }
            if let Ok(mut stored) = STORED.lock() {
                *stored.entry(order.number).or_default() += 1;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    // One line per panic, instead of the default message and backtrace.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        eprintln!("a stage panicked: {message}");
    }));
    // Each stage expression stands on its own, so `pipeline!` evaluates it again to restart it.
    let report = pipeline! { Orders { next: 0, count: 200 } -> Enrich -> Store }
        .run()
        .await?;
    let stored = STORED
        .lock()
        .map(|stored| stored.clone())
        .unwrap_or_default();
    let twice = stored.values().filter(|&&times| times > 1).count();
    println!(
        "stored {} distinct orders in {} writes; {twice} of them twice (a redelivered batch is handled at least once)",
        stored.len(),
        WRITES.load(Ordering::Relaxed)
    );
    println!("{report}");
    Ok(())
}
