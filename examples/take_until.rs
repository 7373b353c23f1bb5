//! A consumer that stops itself: it reads an endless feed until it has found what it looks for,
//! then cancels its subscription (GenStage's `cancel/2` from the consumer). It handles what was
//! already sent to it, and finishes; the feed, left without consumers, stops; the run ends on its
//! own, with nothing lost.
//!
//! ```text
//! cargo run --example take_until
//! ```
//!
//! It prints the first five multiples of 7 that are also palindromes, how many readings it handled
//! (a few more than it needed: those already on their way when it cancelled), and the report.

use genstage::prelude::*;

/// Counts up from 1 for ever, emitting what it is asked.
struct Feed {
    next: u64,
}

#[stage(producer)]
impl Feed {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        events
    }
}

/// Keeps the first `wanted` palindromic multiples of 7, then leaves the feed.
struct Finder {
    wanted: usize,
    found: Vec<u64>,
    handled: usize,
    /// Cancels the subscription from `handle_events`, which has no context.
    asker: Option<Asker>,
}

fn palindrome(n: u64) -> bool {
    let digits = n.to_string();
    digits.chars().eq(digits.chars().rev())
}

#[stage(consumer, max_demand = 50)]
impl Finder {
    fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) {
        self.asker = ctx.asker(subscription.tag()).ok();
    }

    fn handle_events(&mut self, events: Vec<u64>) -> Result<(), CallError> {
        self.handled += events.len();
        if self.found.len() == self.wanted {
            // Sent before the cancel reached the feed: handled, and nothing more to find.
            return Ok(());
        }
        let wanted = self.wanted - self.found.len();
        let hits = events.into_iter().filter(|n| n % 7 == 0 && palindrome(*n));
        self.found.extend(hits.take(wanted));
        if self.found.len() == self.wanted {
            println!("found {:?}: leaving the feed", self.found);
            if let Some(asker) = &self.asker {
                asker.cancel()?;
            }
        }
        Ok(())
    }

    fn handle_cancel(&mut self, _subscription: &Subscription, reason: &CancelReason) {
        println!(
            "the subscription ended ({reason:?}) after {} readings",
            self.handled
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let report = pipeline! {
        Feed { next: 1 } -> Finder { wanted: 5, found: Vec::new(), handled: 0, asker: None }
    }
    .run()
    .await?;
    println!("{report}");
    let totals = report.totals();
    assert_eq!(totals.emitted, totals.handled, "nothing lost");
    Ok(())
}
