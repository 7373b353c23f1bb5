use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
