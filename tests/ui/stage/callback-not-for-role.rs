use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        vec![0; demand]
    }
}

fn main() {}
