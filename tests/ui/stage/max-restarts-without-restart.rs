use genstage::prelude::*;

struct Store;

#[stage(consumer, max_restarts = 10, max_seconds = 60)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
