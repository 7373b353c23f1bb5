// A stage whose `#[stage]` is rejected gives its one error, not a second one at the selector of
// the edge after it.
use genstage::prelude::*;

struct Numbers;

#[stage(producer, dispatcher = broadcast)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Option<Vec<u64>> {
        Some((0..demand as u64).collect())
    }
}

struct Tap;

#[stage(consumer)]
impl Tap {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {
    let _ = pipeline! { Numbers -[selector = |n| n % 3 == 0]-> Tap };
}
