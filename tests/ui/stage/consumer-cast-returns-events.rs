use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_cast(&mut self, message: u64) -> Vec<u64> {
        vec![message]
    }
}

fn main() {}
