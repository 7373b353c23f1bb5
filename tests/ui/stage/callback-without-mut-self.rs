use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
