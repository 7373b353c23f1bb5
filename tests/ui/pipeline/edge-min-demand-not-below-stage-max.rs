use genstage::prelude::*;

struct Printer;

#[stage(consumer, max_demand = 10)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        println!("{events:?}");
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -[min_demand = 10]-> Printer };
}
