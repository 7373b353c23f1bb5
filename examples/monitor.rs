//! A job service that watches its workers and replaces the one that dies.
//!
//! A queue fed by another task hands jobs to a group of three workers (`add_consumers`). A monitor
//! waits for the first worker to end (`stage_ended`, GenStage's monitor of a stage) and gets its
//! report: here a worker fails on a poison job. The monitor adds a replacement through the
//! pipeline's handle, subscribes it to the queue and dismisses the dead worker's failure, which no
//! longer fails the run. The feeder sends the rest of the jobs, and a graceful shutdown ends the
//! service. The report accounts for every job: handled once, or lost with the failed worker's
//! batch.
//!
//! ```text
//! cargo run --example monitor
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::select_all;
use genstage::prelude::*;
use genstage::{from_channel, CancelMode, Pipeline, SubscribeOptions};

/// The job no worker survives.
const POISON: u64 = 13;

/// Handles one job at a time; counts what it handled.
struct Worker {
    handled: Arc<AtomicU64>,
}

#[stage(consumer, max_demand = 1, min_demand = 0)]
impl Worker {
    async fn handle_events(&mut self, jobs: Vec<u64>) -> Result<(), String> {
        for job in jobs {
            if job == POISON {
                return Err(format!("job {job} is poison"));
            }
            self.handled.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handled = Arc::new(AtomicU64::new(0));
    let (jobs, queue) = from_channel::<u64>(8);
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer_named("queue", queue);
    let workers = pipeline.add_consumers(3, |_| Worker {
        handled: handled.clone(),
    });
    // A worker that dies must not take the queue down with it.
    let temporary = || SubscribeOptions::new().cancel(CancelMode::Temporary);
    for worker in &workers {
        pipeline.subscribe_with(&queue, worker, temporary());
    }
    let running = pipeline.start();

    // The monitor: the first worker to end, whichever it is.
    let first_end = select_all(workers.iter().map(|w| Box::pin(running.stage_ended(w))));
    for job in 0..50 {
        jobs.send(job).await?;
    }
    let (ended, dead, _) = first_end.await;
    let ended = ended?;
    println!("{} ended: {}", ended.name, ended.status);
    for loss in &ended.losses {
        println!("  lost {}: {}", loss.count, loss.reason);
    }

    let name = format!("{}'", ended.name);
    let replacement = running
        .add_consumer_named(
            name.clone(),
            Worker {
                handled: handled.clone(),
            },
        )
        .await?;
    running
        .subscribe_with(&queue, &replacement, temporary())
        .await?;
    // Dealt with: the run does not fail for it.
    running.dismiss_failure(&workers[dead]).await?;
    println!("{name} takes its place");
    for job in 50..100 {
        jobs.send(job).await?;
    }
    while handled.load(Ordering::Relaxed) < 99 {
        tokio::task::yield_now().await;
    }

    // The report still shows the dead worker's failure and its lost job.
    let report = running.shutdown().await?;
    println!("\n{report}");
    Ok(())
}
