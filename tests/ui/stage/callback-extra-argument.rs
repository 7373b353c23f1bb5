use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>, from: usize) {
        let _ = (events, from);
    }
}

fn main() {}
