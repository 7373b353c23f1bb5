// A cast of a type the stage does not take does not compile, also when it takes casts of exactly
// one other type: the error is the stage's, not a mismatch with that type.
use genstage::prelude::*;

struct Log;
struct Note;
struct Other;

#[stage(consumer)]
impl Log {
    fn handle_events(&mut self, _events: Vec<u64>) {}
    fn handle_cast(&mut self, _note: Note) {}
}

fn main() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..3u64));
    let log = pipeline.add_consumer(Log);
    pipeline.subscribe(&numbers, &log);
    let _ = log.cast(Other);
}
