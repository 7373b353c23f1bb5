use genstage::prelude::*;
use genstage::{Demand, Subscription};

struct Numbers {
    next: u64,
}

#[stage(producer)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let start = self.next;
        self.next += demand as u64;
        (start..self.next).collect()
    }

    fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand {
        let _ = subscription;
        Demand::Automatic
    }
}

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {
    let _ = pipeline! { Numbers { next: 0 } -> Printer };
}
