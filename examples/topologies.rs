//! Broadcast and partition: every event to every consumer, or each event to the consumer of its key.
//!
//! `orders` emits orders from a few customers. It **broadcasts**: `ledger` sees every order, and
//! `large` only those its selector accepts (a total of 100 or more), without the others using up
//! its demand. `ledger` **partitions** what it passes on by customer into `[Shipping; 3]`: each
//! instance gets exactly the orders of its partition, in the order they were placed, so that one
//! customer's orders are always handled by the same instance and never reordered (GenStage's
//! `PartitionDispatcher`, Broadway's `partition_by`).
//!
//! The report shows the broadcast's copies: `orders` emitted each order once and copied some for
//! `large`; every delivery is handled once, so `emitted + copies = handled + discarded + lost`.
//!
//! ```text
//! cargo run --release --example topologies
//! ```

use genstage::prelude::*;

/// An order: who placed it, its number, its total.
#[derive(Debug, Clone)]
struct Order {
    customer: u32,
    number: u64,
    total: u64,
}

/// `count` orders from 7 customers, every event to every consumer.
struct Orders {
    next: u64,
    count: u64,
}

#[stage(producer, dispatcher = broadcast)]
impl Orders {
    fn handle_demand(&mut self, demand: usize) -> Emit<Order> {
        let stop = self.count.min(self.next + demand as u64);
        let orders = (self.next..stop)
            .map(|number| Order {
                customer: (number * 5 % 7) as u32,
                number,
                total: number * 37 % 150,
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

/// Records every order, and passes it on, partitioned by customer.
#[derive(Default)]
struct Ledger {
    revenue: u64,
}

#[stage(producer_consumer, dispatcher = partition(3))]
impl Ledger {
    fn handle_events(&mut self, orders: Vec<Order>) -> Vec<Order> {
        self.revenue += orders.iter().map(|order| order.total).sum::<u64>();
        orders
    }

    fn partition(&self, order: &Order) -> Option<usize> {
        Some(order.customer as usize % 3)
    }

    fn terminate(&mut self, _status: &StageStatus) {
        println!("ledger: revenue {}", self.revenue);
    }
}

/// Ships one partition's orders, checking that each customer's come in order.
#[derive(Default)]
struct Shipping {
    last: std::collections::HashMap<u32, u64>,
    shipped: u64,
}

#[stage(consumer, max_demand = 8)]
impl Shipping {
    fn handle_events(&mut self, orders: Vec<Order>) {
        for order in orders {
            let last = self.last.insert(order.customer, order.number);
            assert!(
                last < Some(order.number),
                "customer {}'s orders out of order",
                order.customer
            );
            self.shipped += 1;
        }
    }

    fn terminate(&mut self, _status: &StageStatus) {
        let mut customers: Vec<u32> = self.last.keys().copied().collect();
        customers.sort();
        println!(
            "shipping: {} orders of customers {customers:?}",
            self.shipped
        );
    }
}

/// Counts the large orders it is sent.
#[derive(Default)]
struct Large {
    seen: u64,
}

#[stage(consumer)]
impl Large {
    fn handle_events(&mut self, orders: Vec<Order>) {
        self.seen += orders.len() as u64;
    }

    fn terminate(&mut self, _status: &StageStatus) {
        println!("large: {} orders of 100 or more", self.seen);
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let report = pipeline! {
        orders = Orders { next: 0, count: 10_000 };
        orders -> ledger = Ledger::default() -> [Shipping::default(); 3];
        orders -[selector = |order| order.total >= 100]-> large = Large::default();
    }
    .run()
    .await?;

    println!();
    for stage in &report.stages {
        println!(
            "{:<12} in {:>6}  out {:>6}  emitted {:>6}  copies {:>5}  discarded {}",
            stage.name,
            stage.events_in,
            stage.events_out,
            stage.emitted,
            stage.copies,
            stage.discarded
        );
    }
    let totals = report.totals();
    println!(
        "emitted (with copies) {} = handled {} + discarded {} + lost {}: {}",
        totals.emitted,
        totals.handled,
        totals.discarded,
        totals.lost,
        if totals.balanced() {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    );
    Ok(())
}
