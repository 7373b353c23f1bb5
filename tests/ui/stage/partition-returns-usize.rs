use genstage::prelude::*;

struct Split;

#[stage(producer_consumer, dispatcher = partition(2))]
impl Split {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }

    fn partition(&self, event: &u64) -> usize {
        (event % 2) as usize
    }
}

fn main() {}
