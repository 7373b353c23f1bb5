use genstage::prelude::*;

struct Evens;

#[stage(producer_consumer)]
impl Evens {
    async fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
