//! A pipeline run as a service: fed by other tasks, its results read as a stream, drained on Ctrl-C.
//!
//! ```text
//! cargo run --example service            # stops by itself after 30 results, as on Ctrl-C
//! cargo run --example service -- 0       # runs until Ctrl-C
//! ```
//!
//! Three "web handler" tasks push jobs into the pipeline through `from_channel`'s sender, waiting
//! when the pipeline is busy (back-pressure); the pipeline squares them; `main` reads the results
//! from a `to_stream` sink. On Ctrl-C (or after the given number of results), `main` shuts the
//! pipeline down gracefully: the channel closes, so the handlers' next `send` fails, and every job
//! a `send` accepted is squared and read: the results read are the jobs accepted, and the report
//! shows nothing lost.

use std::time::Duration;

use genstage::prelude::*;

/// Squares each job.
struct Square;

#[stage(producer_consumer, max_demand = 4, min_demand = 2)]
impl Square {
    async fn handle_events(&mut self, jobs: Vec<u64>) -> Vec<String> {
        // Some work per batch.
        tokio::time::sleep(Duration::from_millis(5)).await;
        jobs.into_iter()
            .map(|job| format!("{job}² = {}", job * job))
            .collect()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stop_after: usize = match std::env::args().nth(1) {
        None => 30,
        Some(n) => n
            .parse()
            .map_err(|e| format!("expected a count, got {n:?}: {e}"))?,
    };

    let (jobs, source) = from_channel::<u64>(8);
    let (sink, mut results) = to_stream::<String>();
    let running = pipeline! { source -> Square -> sink }.start();

    // Other tasks feed the pipeline; `send` waits while it is busy, and fails once it is shutting
    // down. Each counts the jobs it got accepted.
    let handlers: Vec<_> = (0..3u64)
        .map(|handler| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let mut accepted = 0;
                while jobs.send(handler * 1000 + accepted).await.is_ok() {
                    accepted += 1;
                }
                accepted
            })
        })
        .collect();
    drop(jobs);

    // One Ctrl-C listener for the whole loop: a new one per round would miss a signal that came
    // between rounds.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut read = 0;
    loop {
        tokio::select! {
            result = results.next() => match result {
                Some(result) => {
                    read += 1;
                    println!("{result}");
                    if read == stop_after {
                        eprintln!("{stop_after} results: shutting down, as on Ctrl-C");
                        break;
                    }
                }
                None => break,
            },
            _ = &mut ctrl_c => {
                eprintln!("Ctrl-C: shutting down");
                break;
            }
        }
    }

    // Drain: the shutdown ends once every result already on its way has been read.
    let shutdown = tokio::spawn(running.shutdown());
    while let Some(result) = results.next().await {
        read += 1;
        println!("{result} (drained)");
    }
    let report = shutdown.await??;
    let mut accepted = 0;
    for handler in handlers {
        accepted += handler.await?;
    }

    eprintln!("accepted {accepted} jobs, read {read} results");
    eprintln!("{report}");
    assert_eq!(read as u64, accepted, "every accepted job is read");
    assert!(report.totals().balanced() && report.totals().lost == 0);
    Ok(())
}
