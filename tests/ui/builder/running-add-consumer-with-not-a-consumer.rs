// Adding a producer, built by a closure, to a running pipeline as a consumer does not compile: the
// handle's `add_consumer_with` takes only a constructor of consumers, as the builder's does, and
// says so once (at the method, as the builder's does: the closure's return type is inferred).
use genstage::{Emit, Pipeline, PipelineError, Producer, StageResult};

struct Numbers;

impl Producer for Numbers {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last(Vec::new()))
    }
}

async fn add_numbers(pipeline: Pipeline) -> Result<(), PipelineError> {
    let running = pipeline.start();
    let _numbers = running.add_consumer_with(|| Numbers).await?;
    Ok(())
}

fn main() {
    let _ = add_numbers(Pipeline::new());
}
