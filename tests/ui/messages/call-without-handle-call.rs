// A call to a stage that answers no calls at all: the error is the stage's, and points at no
// other stage's `handle_call` (not at the `ConsumerSupervisor`'s `CountChildren`, the only one
// in the crate).
use genstage::prelude::*;
use genstage::StageRef;

struct Log;
struct Ping;

#[stage(consumer)]
impl Log {
    fn handle_events(&mut self, _events: Vec<u64>) {}
}

async fn ping() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..3u64));
    let log = pipeline.add_consumer(Log);
    pipeline.subscribe(&numbers, &log);
    let _ = log.call(Ping).await;
}

fn main() {
    let _ = ping();
}
