// Subscribing a consumer of `String` to a producer of `u64` in a running pipeline does not compile:
// the handle's `subscribe` needs one event type on both ends, as the builder's does, and says so
// once.
use genstage::{from_iter, Consumer, Pipeline, PipelineError, StageResult};

struct Print;

impl Consumer for Print {
    type Input = String;
    async fn handle_events(&mut self, _events: Vec<String>) -> StageResult<()> {
        Ok(())
    }
}

async fn add_printer() -> Result<(), PipelineError> {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..10u64));
    let running = pipeline.start();
    let print = running.add_consumer(Print).await?;
    running.subscribe(&numbers, &print).await?;
    Ok(())
}

fn main() {
    let _ = add_printer();
}
