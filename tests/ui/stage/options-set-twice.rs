use genstage::prelude::*;

struct Printer {
    max_demand: usize,
}

#[stage(consumer, max_demand = 10)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::new().max_demand(self.max_demand)
    }
}

fn main() {}
