use genstage::prelude::*;

struct Printer;

// Waiting for consumers is for a stage that has consumers: producers and producer_consumers.
#[stage(consumer, without_consumers = wait)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
