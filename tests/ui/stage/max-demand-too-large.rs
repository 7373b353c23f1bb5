use genstage::prelude::*;

struct Sink;

#[stage(consumer, max_demand = 2000000000)]
impl Sink {
    fn handle_events(&mut self, _events: Vec<u64>) {}
}

fn main() {}
