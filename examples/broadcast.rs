//! Broadcast: every event to every consumer, or to those whose selector accepts it.
//!
//! `orders` emits orders and **broadcasts** them (`dispatcher = broadcast`): `ledger` sees every
//! order, `large` only those its selector accepts (a total of 100 or more) and `refunds` only the
//! negative ones. Rejected orders do not use up a consumer's demand, so `large` and `refunds` never
//! hold the others back for events they do not want. The broadcast goes at the pace of its slowest
//! consumer: `ledger`, here, which takes 10 orders at a time.
//!
//! The report shows the copies: `orders` emitted each order once and the broadcast copied some for
//! the other consumers; every delivery is handled once, so `emitted + copies = handled + discarded +
//! lost`. An order that every selector rejected would be counted as discarded (none is: `ledger`
//! takes them all).
//!
//! ```text
//! cargo run --release --example broadcast
//! ```

use genstage::prelude::*;

/// An order: its number and its total (negative for a refund).
#[derive(Debug, Clone)]
struct Order {
    number: u64,
    total: i64,
}

/// `count` orders, every one to every consumer.
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
                number,
                total: (number * 37 % 170) as i64 - 20,
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

/// Adds up every order, and checks it sees them all, in order.
#[derive(Default)]
struct Ledger {
    next: u64,
    balance: i64,
}

#[stage(consumer, max_demand = 10)]
impl Ledger {
    fn handle_events(&mut self, orders: Vec<Order>) {
        for order in orders {
            assert_eq!(order.number, self.next, "the ledger missed an order");
            self.next += 1;
            self.balance += order.total;
        }
    }

    fn terminate(&mut self, _status: &StageStatus) {
        println!("ledger: {} orders, balance {}", self.next, self.balance);
    }
}

/// Counts the orders it is sent, under a label.
struct Tally {
    label: &'static str,
    seen: u64,
}

#[stage(consumer)]
impl Tally {
    fn handle_events(&mut self, orders: Vec<Order>) {
        self.seen += orders.len() as u64;
    }

    fn terminate(&mut self, _status: &StageStatus) {
        println!("{}: {} orders", self.label, self.seen);
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let large = Tally {
        label: "large (100 or more)",
        seen: 0,
    };
    let refunds = Tally {
        label: "refunds (below 0)",
        seen: 0,
    };
    let report = pipeline! {
        orders = Orders { next: 0, count: 10_000 };
        orders -> ledger = Ledger::default();
        orders -[selector = |order| order.total >= 100]-> large = large;
        orders -[selector = |order| order.total < 0]-> refunds = refunds;
    }
    .run()
    .await?;

    println!();
    println!("{report}");
    assert!(report.totals().balanced());
    Ok(())
}
