use genstage::prelude::*;

struct Printer;

#[stage(consumer, dispatcher = broadcast)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
