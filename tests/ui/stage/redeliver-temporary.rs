use genstage::prelude::*;

struct Store;

#[stage(consumer, restart = temporary, redeliver)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
