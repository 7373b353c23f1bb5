use genstage::prelude::*;

struct Printer;

#[stage(consumer, min_demand = 5)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        drop(events);
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -[max_demand = 4]-> Printer };
}
