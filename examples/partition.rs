//! Partition by key: each event to the one consumer of its partition, in order.
//!
//! `orders` emits orders from 7 customers. `ledger` records them and **partitions** what it passes
//! on by customer (`dispatcher = partition(3)` and its `partition` method) into `[Shipping; 3]`:
//! instance `i` takes partition `i`, so one customer's orders always go to the same instance, in the
//! order they were placed (GenStage's `PartitionDispatcher`, Broadway's `partition_by`). Each
//! instance checks that order. Cancelled orders go to no partition (`None`): the report counts them
//! as discarded.
//!
//! ```text
//! cargo run --release --example partition
//! ```

use std::collections::HashMap;

use genstage::prelude::*;

/// An order: who placed it, its number, whether it was cancelled.
#[derive(Debug)]
struct Order {
    customer: u32,
    number: u64,
    cancelled: bool,
}

/// `count` orders from 7 customers, one in 10 cancelled.
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
                customer: (number * 5 % 7) as u32,
                number,
                cancelled: number % 10 == 3,
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

/// Counts the orders, and passes them on, partitioned by customer; cancelled ones go nowhere.
#[derive(Default)]
struct Ledger {
    orders: u64,
}

#[stage(producer_consumer, dispatcher = partition(3))]
impl Ledger {
    fn handle_events(&mut self, orders: Vec<Order>) -> Vec<Order> {
        self.orders += orders.len() as u64;
        orders
    }

    fn partition(&self, order: &Order) -> Option<usize> {
        (!order.cancelled).then_some(order.customer as usize % 3)
    }
}

/// Ships one partition's orders, checking that each customer's come in order.
#[derive(Default)]
struct Shipping {
    last: HashMap<u32, u64>,
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
            "shipping: {} orders, of customers {customers:?}, each customer's in order",
            self.shipped
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let report = pipeline! {
        Orders { next: 0, count: 10_000 } -> Ledger::default() -> [Shipping::default(); 3]
    }
    .run()
    .await?;

    println!();
    println!("{report}");
    assert!(report.totals().balanced());
    Ok(())
}
