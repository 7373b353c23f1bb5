//! GenStage's RateLimiter ported as a producer_consumer (`genstage-semantics.md` §1.3 manual mode,
//! §1.7 demand modes): its `handle_subscribe` takes the subscription's demand (manual), it asks
//! from `handle_info` ticks, and it is later switched back to automatic demand by a
//! resubscription; and its producer accumulates the asks, then forwards them. Each test checks the
//! exact sequence of the producer's `handle_demand` calls and of the limiter's batches.
//!
//! The test sends the ticks itself (`info`), where the Elixir sets a timer, so that every ask is
//! made at a known point. One documented difference shows: a manual subscription starts with its
//! initial ask of `max_demand` made (README, "Deliberate differences"), where GenStage's starts at 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use genstage::{ConsumerRef, ProducerConsumerRef, ProducerRef};

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// Counts from 0 to `end`, emitting exactly what it is asked, and logs each demand.
struct Counter {
    next: u64,
    end: u64,
    mode: DemandMode,
    demands: Shared<usize>,
}

impl Producer for Counter {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.demands.lock().unwrap().push(demand);
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer().demand(self.mode)
    }
}

/// A tick: ask the producer for this many events.
struct Tick(usize);

/// From the next subscription on, let the runtime ask.
struct Automatic;

/// Answered, with the limiter's subscription, once the messages sent before it are handled.
struct Ping;

/// GenStage's RateLimiter, as a producer_consumer passing its events on.
struct RateLimiter {
    manual: bool,
    subscription: Option<SubscriptionTag>,
    batches: Shared<Vec<u64>>,
    asks: Shared<Result<(), AskError>>,
    cancels: Shared<(SubscriptionTag, CancelReason)>,
}

#[stage(producer_consumer, max_demand = 5)]
impl RateLimiter {
    fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand {
        self.subscription = Some(subscription.tag());
        if self.manual {
            Demand::Manual
        } else {
            Demand::Automatic
        }
    }

    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        self.batches.lock().unwrap().push(events.clone());
        events
    }

    fn handle_info(&mut self, tick: Tick, ctx: &mut Context<Self>) {
        let tag = self.subscription.expect("subscribed");
        let asked = ctx.ask(tag, tick.0);
        self.asks.lock().unwrap().push(asked);
    }

    fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason) {
        self.cancels
            .lock()
            .unwrap()
            .push((subscription.tag(), reason.clone()));
    }

    fn handle_cast(&mut self, _: Automatic) {
        self.manual = false;
    }

    fn handle_call(&mut self, _: Ping, reply: ReplyTo<Option<SubscriptionTag>>) {
        reply.reply(self.subscription);
    }
}

/// Collects every event.
struct Sink {
    events: Shared<u64>,
}

#[stage(consumer, max_demand = 100)]
impl Sink {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.events.lock().unwrap().extend(events);
    }
}

struct Wired {
    running: PipelineHandle,
    counter: ProducerRef<Counter>,
    limiter: ProducerConsumerRef<RateLimiter>,
    demands: Shared<usize>,
    batches: Shared<Vec<u64>>,
    asks: Shared<Result<(), AskError>>,
    cancels: Shared<(SubscriptionTag, CancelReason)>,
    events: Shared<u64>,
}

impl Wired {
    fn start(end: u64, mode: DemandMode) -> Wired {
        let demands = Shared::default();
        let batches = Shared::default();
        let asks = Shared::default();
        let cancels = Shared::default();
        let events = Shared::default();
        let mut pipeline = Pipeline::new();
        let counter = pipeline.add_producer_named(
            "counter",
            Counter {
                next: 0,
                end,
                mode,
                demands: demands.clone(),
            },
        );
        let limiter = pipeline.add_producer_consumer_named(
            "limiter",
            RateLimiter {
                manual: true,
                subscription: None,
                batches: batches.clone(),
                asks: asks.clone(),
                cancels: cancels.clone(),
            },
        );
        let sink: ConsumerRef<Sink> = pipeline.add_consumer_named(
            "sink",
            Sink {
                events: events.clone(),
            },
        );
        pipeline.subscribe(&counter, &limiter);
        pipeline.subscribe(&limiter, &sink);
        Wired {
            running: pipeline.start(),
            counter,
            limiter,
            demands,
            batches,
            asks,
            cancels,
            events,
        }
    }

    fn demands(&self) -> Vec<usize> {
        self.demands.lock().unwrap().clone()
    }

    fn batches(&self) -> Vec<Vec<u64>> {
        self.batches.lock().unwrap().clone()
    }

    async fn sink_has(&self, n: usize) {
        let events = self.events.clone();
        tokio::time::timeout(Duration::from_secs(10), async move {
            while events.lock().unwrap().len() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the sink never had {n} events"));
    }

    /// Ticks the limiter, and returns once its asks have reached the counter's mailbox.
    async fn tick(&self, n: usize) {
        self.limiter.info(Tick(n)).unwrap();
        self.limiter.call(Ping).await.unwrap();
    }
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..to).collect()
}

/// Manual demand asked from ticks (an ask of 0 asks nothing), each batch whole as the producer
/// sent it; then a resubscription whose `handle_subscribe` says automatic: the runtime asks
/// `max_demand` 5, then 3 each time 2 are outstanding, with batches of at most 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_asks_from_ticks_then_goes_back_to_automatic_demand() {
    let w = Wired::start(30, DemandMode::Forward);
    // The initial ask of max_demand 5 is made for it.
    w.sink_has(5).await;
    assert_eq!(w.demands(), [5]);
    w.tick(3).await;
    w.sink_has(8).await;
    assert_eq!(w.demands(), [5, 3]);
    w.tick(0).await;
    w.tick(2).await;
    w.sink_has(10).await;
    assert_eq!(w.demands(), [5, 3, 2]);
    assert_eq!(
        w.batches(),
        [range(0, 5), range(5, 8), range(8, 10)],
        "manual batches are not split"
    );
    assert_eq!(w.asks.lock().unwrap().clone(), [Ok(()), Ok(()), Ok(())]);

    // Back to automatic demand, through a new subscription.
    w.limiter.cast(Automatic).unwrap();
    let old = w.limiter.call(Ping).await.unwrap().expect("subscribed");
    let new = w
        .running
        .resubscribe(old, &w.counter, &w.limiter, SubscribeOptions::new())
        .await
        .unwrap();
    assert_ne!(old, new);
    w.sink_has(30).await;
    let report = tokio::time::timeout(Duration::from_secs(10), w.running)
        .await
        .expect("the pipeline ends")
        .unwrap();
    assert_eq!(w.demands.lock().unwrap().clone(), [5, 3, 2, 5, 3, 5, 3, 5]);
    assert_eq!(
        w.batches.lock().unwrap()[3..],
        [
            range(10, 13),
            range(13, 15),
            range(15, 18),
            range(18, 21),
            range(21, 23),
            range(23, 26),
            range(26, 29),
            range(29, 30),
        ]
    );
    assert_eq!(w.events.lock().unwrap().clone(), range(0, 30));
    // The old subscription ended as a cancellation (GenStage's resubscribe cancels it), the new one
    // when the counter finished.
    assert_eq!(
        w.cancels.lock().unwrap().clone(),
        [
            (old, CancelReason::Cancelled),
            (new, CancelReason::Finished)
        ]
    );
    assert!(report.balanced(), "{report}");
    assert_eq!(report.totals().lost, 0);
}

/// The producer accumulates: the initial ask and the ticks' asks are recorded, not one
/// `handle_demand` runs; forward replays them in order, one call each (5, 3, 2), and the limiter
/// gets one batch per call. Accumulating again and forwarding again replays only the new asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulated_manual_asks_are_replayed_one_handle_demand_each() {
    let w = Wired::start(1000, DemandMode::Accumulate);
    w.tick(3).await;
    w.tick(2).await;
    // The counter has taken in every ask before this is answered.
    assert_eq!(w.counter.estimate_buffered_count().await.unwrap(), 0);
    assert_eq!(w.demands(), Vec::<usize>::new());
    assert_eq!(
        w.counter.demand_mode().await.unwrap(),
        DemandMode::Accumulate
    );

    w.counter.demand(DemandMode::Forward).unwrap();
    w.sink_has(10).await;
    assert_eq!(w.demands(), [5, 3, 2]);
    assert_eq!(w.batches(), [range(0, 5), range(5, 8), range(8, 10)]);

    w.counter.demand(DemandMode::Accumulate).unwrap();
    assert_eq!(w.counter.estimate_buffered_count().await.unwrap(), 0);
    w.tick(4).await;
    w.tick(1).await;
    assert_eq!(w.counter.estimate_buffered_count().await.unwrap(), 0);
    assert_eq!(w.demands(), [5, 3, 2]);
    w.counter.demand(DemandMode::Forward).unwrap();
    w.sink_has(15).await;
    assert_eq!(w.demands(), [5, 3, 2, 4, 1]);
    assert_eq!(
        w.batches(),
        [
            range(0, 5),
            range(5, 8),
            range(8, 10),
            range(10, 14),
            range(14, 15)
        ]
    );
    let report = w.running.shutdown().await.unwrap();
    assert_eq!(w.events.lock().unwrap().clone(), range(0, 15));
    assert!(report.balanced(), "{report}");
}
