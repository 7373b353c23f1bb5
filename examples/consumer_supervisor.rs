//! ConsumerSupervisor: one task per job, at most `max_demand` at once.
//!
//! A queue of 40 jobs, each a simulated request of 20 to 200 ms (a `tokio::time::sleep`). The
//! supervisor runs one task per job and asks the queue for another job each time one ends
//! (`min_demand` 0), so 8 jobs hold a slot at once until the queue runs out; every 10th job fails
//! on its first try and is restarted (`transient`) after a 30 ms back-off, holding its slot
//! meanwhile (`running=7 restarting=1`). Every 50 ms the program prints how many jobs are running
//! and restarting, then the final counts and the report.
//!
//! ```text
//! cargo run --release --example consumer_supervisor
//! ```

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use genstage::prelude::*;
use tokio::time::Instant;

/// Fetches job `n`: a request that takes 20 to 200 ms, and fails the first time for every 10th job.
struct Fetch {
    /// The jobs that have failed once already.
    failed_once: Mutex<HashSet<u64>>,
}

impl Child<u64> for Fetch {
    type Output = Result<(), String>;

    async fn run(&self, job: u64) -> Result<(), String> {
        tokio::time::sleep(Duration::from_millis(20 + job * 37 % 181)).await;
        if job % 10 == 9 && self.failed_once.lock().is_ok_and(|mut f| f.insert(job)) {
            return Err(format!("job {job}: connection reset"));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let fetch = Fetch {
        failed_once: Mutex::new(HashSet::new()),
    };
    let jobs = ConsumerSupervisor::new(fetch)
        .max_demand(8)
        .min_demand(0)
        .transient()
        .max_restarts(10)
        .restart_delay(Duration::from_millis(30));
    let counts = jobs.watch_counts();

    let running = pipeline! { queue = from_iter(0..40u64); queue -> jobs = jobs }.start();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    ticks.tick().await;
    while !running.is_finished() {
        ticks.tick().await;
        let now = *counts.borrow();
        println!(
            "t={:>4}ms running={} {:<8} restarting={} handled={:>2}",
            started.elapsed().as_millis() / 10 * 10,
            now.active,
            "#".repeat(now.active),
            now.restarting,
            now.handled
        );
    }
    let report = running.await?;
    let last = *counts.borrow();
    println!(
        "\nfinal counts: active {}, restarting {}, handled {}, failed {}, restarts {}\n",
        last.active, last.restarting, last.handled, last.failed, last.restarts
    );
    println!("{report}");
    Ok(())
}
