//! A pipeline's results, read by the calling code as a `Stream` (GenStage's `stream/2`).
//!
//! `to_stream()` gives a consumer to put at the end of the pipeline and the `Stream` of what it
//! receives. The consumer asks for more only as the stream is read, so a caller that reads slowly
//! slows the whole pipeline instead of piling results up. Dropping the stream (here after `take`)
//! stops the pipeline without an error, and the report still accounts for every event.
//!
//! ```text
//! cargo run --example stream_out
//! ```

use futures::StreamExt;
use genstage::prelude::*;
use genstage::StageStatus;

/// Counts from 1, up to `end` or for ever.
struct Counter {
    next: u64,
    end: Option<u64>,
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.map_or(self.next + demand as u64, |end| {
            end.min(self.next + demand as u64)
        });
        let events = (self.next..stop).collect();
        self.next = stop;
        if Some(stop) == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

/// Squares what it receives, 5 at a time (at most 10 outstanding): a small demand keeps the
/// pipeline only a few events ahead of a slow reader.
struct Square;

#[stage(producer_consumer, max_demand = 10)]
impl Square {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().map(|n| n * n).collect()
    }
}

fn print_report(report: &Report) {
    println!("{report}");
    println!("  balanced: {}", report.totals().balanced());
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    // Every result of a finite pipeline, read one by one as they come.
    let (sink, mut squares) = to_stream::<u64>();
    // The pipeline runs in its own task while this one reads.
    let run =
        tokio::spawn(pipeline! { Counter { next: 1, end: Some(21) } -> Square -> sink }.run());
    let mut read = Vec::new();
    while let Some(square) = squares.next().await {
        read.push(square);
    }
    println!("read {} squares from the stream: {read:?}", read.len());
    let report = run.await.expect("the pipeline's task")?;
    println!("report:");
    print_report(&report);

    // The first 5 results of an endless pipeline: `take` drops the stream, which cancels it.
    let (sink, squares) = to_stream::<u64>();
    let sink = sink.with_options(SubscribeOptions::new().max_demand(10));
    let run = tokio::spawn(pipeline! { Counter { next: 1, end: None } -> Square -> sink }.run());
    let first: Vec<u64> = squares.take(5).collect().await;
    println!(
        "took the first {} squares of an endless pipeline: {first:?}",
        first.len()
    );
    let report = run.await.expect("the pipeline's task")?;
    println!("report (the stream was dropped: the sink stopped, cancelled, not failed):");
    print_report(&report);
    let sink = report.stage("to_stream").map(|s| &s.status);
    assert_eq!(sink, Some(&StageStatus::Cancelled { cause: None }));
    Ok(())
}
