use genstage::prelude::*;

struct Printer;

#[stage(consumer, max_demand = 10, max_demand = 20)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
