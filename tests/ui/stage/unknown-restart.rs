use genstage::prelude::*;

struct Store;

#[stage(consumer, restart = always)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
