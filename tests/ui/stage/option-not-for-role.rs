use genstage::prelude::*;

struct Printer;

#[stage(consumer, buffer_size = 100)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
