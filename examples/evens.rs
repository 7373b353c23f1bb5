//! The seed pipeline of GenStage's tutorial, in genstage.
//!
//! A `Counter` producer counts up from 0, an `Evens` producer_consumer keeps the even numbers, and
//! two `Printer` consumers print `(consumer id, event)`, so the output shows both at work.
//!
//! ```text
//! cargo run --release --example evens             # 100 numbers, then stop
//! cargo run --release --example evens -- 5000     # 5000 numbers
//! cargo run --release --example evens -- --forever   # until Ctrl-C, then a graceful shutdown
//! ```
//!
//! The pipeline runs in the background (`start()`); Ctrl-C shuts it down gracefully: the counter
//! stops, every number it has emitted is printed, and the report shows none lost.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use genstage::prelude::*;

/// Emits 0, 1, 2, … on demand, up to `end` (or forever when `end` is `None`).
struct Counter {
    next: u64,
    end: Option<u64>,
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = match self.end {
            Some(end) => end.min(self.next + demand as u64),
            None => self.next + demand as u64,
        };
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        if Some(stop) == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

/// Keeps the even numbers.
struct Evens;

#[stage(producer_consumer)]
impl Evens {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().filter(|n| n % 2 == 0).collect()
    }
}

/// Prints each event with its own id; a small `max_demand` spreads events over both printers.
struct Printer {
    id: usize,
}

impl Printer {
    /// Each call makes the next printer: `[Printer::next(); 2]` evaluates it once per instance.
    fn next() -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        Printer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[stage(consumer, max_demand = 10, min_demand = 5)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let mut out = std::io::stdout().lock();
        for event in events {
            // A closed stdout (e.g. piped into `head`) is not this consumer's failure.
            let _ = writeln!(out, "({}, {event})", self.id);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let end = match std::env::args().nth(1).as_deref() {
        None => Some(100),
        Some("--forever") => None,
        Some(n) => Some(
            n.parse::<u64>()
                .map_err(|e| format!("expected a count or --forever, got {n:?}: {e}"))?,
        ),
    };

    let mut running =
        pipeline! { Counter { next: 0, end } -> Evens -> [Printer::next(); 2] }.start();
    let report = tokio::select! {
        report = &mut running => report?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Ctrl-C: shutting down; every number already emitted is still printed");
            running.shutdown().await?
        }
    };

    eprintln!("{report}");
    Ok(())
}
