// Adding a consumer to a running pipeline as a producer_consumer does not compile: the handle's
// `add_producer_consumer` takes only producer_consumers, as the builder's does, and says so once.
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
    let _printer = running.add_producer_consumer(Printer).await?;
    Ok(())
}

fn main() {
    let _ = add_printer(Pipeline::new());
}
