//! GenStage's RateLimiter: a consumer that takes at most `max_demand` events per interval, by asking
//! for them itself (manual demand) on a timer it sends itself.
//!
//! ```text
//! cargo run --example rate_limiter
//! ```
//!
//! The limiter's `handle_subscribe` takes control of the subscription's demand (`Demand::Manual`)
//! and starts a tick; each `handle_info(Tick)` asks the producer for as many events as arrived since
//! the last tick, so that at most `max_demand` (here 5) are handled per 200 ms. It prints how many
//! events each tick saw, and the report.

use std::time::{Duration, Instant};

use genstage::prelude::*;

/// Counts up from 0, emitting what it is asked, up to 30.
struct Counter {
    next: u64,
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let end = (self.next + demand as u64).min(30);
        let events: Vec<u64> = (self.next..end).collect();
        self.next = end;
        if end == 30 {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

/// A tick of the limiter's clock.
struct Tick;

/// Handles at most `max_demand` events per `interval`.
struct RateLimiter {
    interval: Duration,
    subscription: Option<SubscriptionTag>,
    since_tick: usize,
    started: Instant,
}

#[stage(consumer, max_demand = 5)]
impl RateLimiter {
    fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand {
        // The pipeline has asked for the first `max_demand` events; the limiter asks for the rest.
        self.subscription = Some(subscription.tag());
        ctx.info_after(self.interval, Tick);
        Demand::Manual
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        self.since_tick += events.len();
        println!(
            "{:>5} ms: handled {events:?}",
            self.started.elapsed().as_millis()
        );
    }

    fn handle_info(&mut self, _tick: Tick, ctx: &mut Context<Self>) -> Result<(), AskError> {
        println!(
            "{:>5} ms: tick, {} events since the last",
            self.started.elapsed().as_millis(),
            self.since_tick
        );
        if let Some(subscription) = self.subscription {
            ctx.ask(subscription, self.since_tick)?;
        }
        self.since_tick = 0;
        ctx.info_after(self.interval, Tick);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let limiter = RateLimiter {
        interval: Duration::from_millis(200),
        subscription: None,
        since_tick: 0,
        started: Instant::now(),
    };
    let report = pipeline! { Counter { next: 0 } -> limiter }.run().await?;
    println!("{report}");
    Ok(())
}
