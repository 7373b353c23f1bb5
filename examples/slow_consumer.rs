//! Back-pressure: a slow consumer paces a fast producer.
//!
//! The producer prints every demand it is asked to serve. The consumer takes 20 ms per batch and
//! asks for at most 10 events at a time, re-asking when 5 remain outstanding, so the producer is only
//! ever asked for a handful of events at a time, never flooding memory, however fast it could go.
//!
//! ```text
//! cargo run --release --example slow_consumer
//! ```

use std::time::{Duration, Instant};

use genstage::prelude::*;

/// Could emit millions of events a second; emits only what it is asked for.
struct Numbers {
    next: u64,
    end: u64,
    started: Instant,
}

#[stage(producer)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.min(self.next + demand as u64);
        println!(
            "{:>6.0?} producer asked for {demand:>2}, emits {}..{}",
            self.started.elapsed(),
            self.next,
            stop
        );
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

impl Numbers {
    fn up_to(end: u64) -> Self {
        Numbers {
            next: 0,
            end,
            started: Instant::now(),
        }
    }
}

/// Takes its time over every batch.
struct Slow {
    handled: u64,
}

#[stage(consumer, max_demand = 10, min_demand = 5)]
impl Slow {
    async fn handle_events(&mut self, events: Vec<u64>) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.handled += events.len() as u64;
        println!(
            "       consumer handled {:>2} events ({} so far)",
            events.len(),
            self.handled
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let report = pipeline! { Numbers::up_to(60) -> Slow { handled: 0 } }
        .run()
        .await?;
    let slow = report.stage("Slow").map_or(0, |s| s.events_in);
    println!("done: the consumer handled {slow} events, never more than 10 outstanding");
    println!("{report}");
    Ok(())
}
