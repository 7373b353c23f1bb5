// Forgetting `.await` on `run()` would run nothing; `run()`'s future is `#[must_use]` and says so.
// `unused_must_use` is a warning by default; denied here so that trybuild sees it.
#![deny(unused_must_use)]

use genstage::{from_iter, Consumer, Pipeline, StageResult};

struct Print;

impl Consumer for Print {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let print = pipeline.add_consumer(Print);
    pipeline.subscribe(&numbers, &print);
    pipeline.run();
}
