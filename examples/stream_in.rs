//! A pipeline fed by another task through a `tokio::sync::mpsc` channel, with `from_stream`.
//!
//! A task sends 20 jobs into a channel that holds 4. The pipeline's producer is the channel's
//! receiver, as a `Stream`: it pulls jobs only as the two workers ask for them (2 each at most), so
//! the sender runs at most 8 jobs ahead of the workers (4 pulled, 4 in the channel) and then waits:
//! back-pressure reaches whoever feeds the pipeline. When the sender is done and drops its end, the
//! stream ends, the producer ends, and the pipeline finishes with its report.
//!
//! ```text
//! cargo run --example stream_in
//! ```

use std::time::Duration;

use genstage::prelude::*;
use tokio::sync::mpsc;

/// Handles a job at a time, slowly.
struct Worker {
    id: usize,
}

#[stage(consumer, max_demand = 2, min_demand = 1)]
impl Worker {
    async fn handle_events(&mut self, jobs: Vec<u64>) {
        for job in jobs {
            tokio::time::sleep(Duration::from_millis(5)).await;
            println!("    worker {} handled job {job}", self.id);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let (jobs, mut received) = mpsc::channel::<u64>(4);
    let sender = tokio::spawn(async move {
        for job in 1..=20 {
            // Waits while the channel is full, that is while the workers are busy.
            if jobs.send(job).await.is_err() {
                break;
            }
            println!("sent job {job}");
        }
        println!("sender done: dropping its end of the channel ends the stream");
    });

    // The receiver as a `Stream` (`tokio-stream`'s `ReceiverStream` would do the same).
    let source = from_stream(futures::stream::poll_fn(move |cx| received.poll_recv(cx)));
    let report = pipeline! {
        jobs = source;
        jobs -> Worker { id: 1 };
        jobs -> Worker { id: 2 };
    }
    .run()
    .await?;
    sender.await.expect("the sender's task");

    println!("report:");
    println!("{report}");
    Ok(())
}
