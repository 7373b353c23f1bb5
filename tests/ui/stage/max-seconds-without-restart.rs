use genstage::prelude::*;

struct Store;

// A restart window on a stage that is never restarted.
#[stage(consumer, max_seconds = 60)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
