use genstage::prelude::*;

struct Store;

#[stage(consumer, restart = transient, max_seconds = 0)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
