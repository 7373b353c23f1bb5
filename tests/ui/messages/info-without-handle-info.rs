// An info to a stage that takes no infos at all: the error is the stage's, and lists no other
// stage's infos.
use genstage::prelude::*;

struct Log;
struct Ping;

#[stage(consumer)]
impl Log {
    fn handle_events(&mut self, _events: Vec<u64>) {}
}

fn main() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..3u64));
    let log = pipeline.add_consumer(Log);
    pipeline.subscribe(&numbers, &log);
    let _ = log.info(Ping);
}
