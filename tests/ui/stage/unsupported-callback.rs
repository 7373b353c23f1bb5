use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_subscribe(&mut self, producer: String) {
        let _ = producer;
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -> Printer };
}
