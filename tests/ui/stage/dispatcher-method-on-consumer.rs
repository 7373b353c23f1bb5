use genstage::prelude::*;

struct Printer;

// A consumer emits no events: a `dispatcher` method has nothing to dispatch.
#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        println!("{events:?}");
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

fn main() {}
