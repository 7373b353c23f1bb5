// The dispatcher set twice: one error, under the second. The stage is not judged by either value
// (here the first, `partition(3)`, would also ask for a `partition` method the stage lacks, which
// the user who meant `broadcast` never needed).
use genstage::prelude::*;

struct Tee;

#[stage(producer_consumer, dispatcher = partition(3), dispatcher = broadcast)]
impl Tee {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }
}

struct Print;

#[stage(consumer)]
impl Print {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -> Tee -> Print };
}
