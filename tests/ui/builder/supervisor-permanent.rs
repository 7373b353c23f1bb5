// A ConsumerSupervisor's children cannot be `permanent` (restarted even after they succeed): a
// child per event would hold its slot forever. GenStage rejects it since issues 195 and 231.
use genstage::prelude::*;

async fn handle_job(job: u32) -> Result<(), String> {
    let _ = job;
    Ok(())
}

fn main() {
    let _jobs = ConsumerSupervisor::new(handle_job).permanent();
}
