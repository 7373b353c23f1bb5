use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }
}

fn main() {}
