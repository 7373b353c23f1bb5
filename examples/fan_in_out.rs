//! Fan-in and fan-out with named stages.
//!
//! Two producers (`odds` and `evens`) feed one `merge` stage (fan-in). `merge` feeds two printers,
//! with its own demand settings on that edge; `evens` also feeds an `audit` consumer that counts what
//! it sees (fan-out to a different stage). A name is also the stage's name in the report.
//!
//! Fan-out splits events, it does not copy them: `evens` uses GenStage's default DemandDispatcher, so
//! each even number goes either to `merge` or to `audit`, whichever has more demand (a small
//! `max_demand` on both edges bounds what either takes at once: the first 8 go 4 to each, and the
//! rest to whichever asks again first, often all to `merge`). The report shows how they shared:
//! `merge` and `audit` together received all 20 even numbers.
//!
//! ```text
//! cargo run --release --example fan_in_out
//! ```

use genstage::prelude::*;

/// Tags each number with where it came from.
struct Label;

#[stage(producer_consumer)]
impl Label {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<String> {
        events
            .into_iter()
            .map(|n| format!("{n} is {}", if n % 2 == 0 { "even" } else { "odd" }))
            .collect()
    }
}

/// Prints each line.
struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, lines: Vec<String>) {
        for line in lines {
            println!("{line}");
        }
    }
}

/// Counts and sums what it sees.
#[derive(Default)]
struct Audit {
    count: u64,
    sum: u64,
}

#[stage(consumer)]
impl Audit {
    async fn handle_events(&mut self, events: Vec<u64>) {
        self.count += events.len() as u64;
        self.sum += events.iter().sum::<u64>();
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let report = pipeline! {
        odds = from_iter((0..20u64).map(|n| 2 * n + 1));
        evens = from_iter((0..20u64).map(|n| 2 * n));
        merge = Label;
        odds -> merge;
        evens -[max_demand = 4]-> merge;
        merge -[max_demand = 4, min_demand = 2]-> [Printer; 2];
        evens -[max_demand = 4]-> audit = Audit::default();
    }
    .run()
    .await?;

    println!("{report}");
    Ok(())
}
