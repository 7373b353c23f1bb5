use genstage::prelude::*;
use genstage::Subscription;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_subscribe(&mut self, subscription: &Subscription) -> bool {
        subscription.max_demand() > 10
    }
}

fn main() {}
