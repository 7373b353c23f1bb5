// Subscribing a consumer of `String` to a producer of `u64` does not compile: the builder's
// `subscribe` needs one event type on both ends.
use genstage::{from_iter, Consumer, Pipeline, StageResult};

struct Print;

impl Consumer for Print {
    type Input = String;
    async fn handle_events(&mut self, _events: Vec<String>) -> StageResult<()> {
        Ok(())
    }
}

fn main() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let print = pipeline.add_consumer(Print);
    pipeline.subscribe(&numbers, &print);
}
