use genstage::prelude::*;

struct Store;

#[stage(consumer, redeliver)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
