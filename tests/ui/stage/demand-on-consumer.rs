use genstage::prelude::*;

struct Printer;

// A demand mode is a producer's: a consumer's demand is its subscriptions' `max_demand`.
#[stage(consumer, demand = accumulate)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
