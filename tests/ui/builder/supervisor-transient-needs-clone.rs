// A `transient` ConsumerSupervisor restarts a failed child with the same event: it keeps a clone,
// so its events must be `Clone`.
use genstage::prelude::*;

struct Job(u32);

async fn handle_job(job: Job) -> Result<(), String> {
    let _ = job.0;
    Ok(())
}

fn main() {
    let _jobs = ConsumerSupervisor::new(handle_job).transient();
}
