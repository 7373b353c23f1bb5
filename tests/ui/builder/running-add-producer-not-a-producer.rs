// Adding a consumer to a running pipeline as a producer does not compile: the handle's
// `add_producer` takes only producers, as the builder's does, and says so once.
use genstage::{Consumer, Pipeline, PipelineError, StageResult};

struct Printer;

impl Consumer for Printer {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

async fn add_printer(pipeline: Pipeline) -> Result<(), PipelineError> {
    let running = pipeline.start();
    let _printer = running.add_producer(Printer).await?;
    Ok(())
}

fn main() {
    let _ = add_printer(Pipeline::new());
}
