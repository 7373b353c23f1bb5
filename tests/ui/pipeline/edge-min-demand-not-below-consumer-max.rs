use genstage::prelude::*;

struct Printer;

// No `max_demand`: GenStage's default, 1000.
#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        drop(events);
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -[min_demand = 1000]-> Printer };
}
