// A rejected `#[stage]` still expands to a stage (with placeholder events), so using it in
// `pipeline!` adds no second error: the one below is under `&self`.
use genstage::prelude::*;

struct Double;

#[stage(producer_consumer)]
impl Double {
    fn handle_events(&self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().map(|n| n * 2).collect()
    }
}

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -> Double -> [Printer; 2] };
    let _ = pipeline! { doubled = Double; from_iter(0..10u64) -> doubled -> Printer };
}
