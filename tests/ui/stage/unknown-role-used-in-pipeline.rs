// A `#[stage]` whose role is unknown still expands to a stage that fits anywhere in `pipeline!`:
// the one error is under `sink`.
use genstage::prelude::*;

struct Printer;

#[stage(sink)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -> Printer };
    let _ = pipeline! { Printer -> Printer };
}
