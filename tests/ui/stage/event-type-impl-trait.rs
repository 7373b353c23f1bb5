use genstage::prelude::*;

struct Sink;

#[stage(consumer)]
impl Sink {
    fn handle_events(&mut self, events: Vec<impl Send>) {
        drop(events);
    }
}

fn main() {}
