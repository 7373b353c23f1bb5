use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: std::collections::VecDeque<u64>) {
        let _ = events;
    }
}

fn main() {}
