//! `handle_subscribe`, `handle_cancel` and manual demand (GenStage's `{:manual, state}` and
//! `ask/2`), end to end, with GenStage's scenario numbers (genstage-semantics.md §4).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_iter, CancelMode, CancelReason, Consumer, Context, Demand, Emit, HandleCast, HandleInfo,
    Pipeline, PipelineError, Producer, StageRef, StageResult, StageStatus, SubscribeOptions,
    Subscription, SubscriptionTag,
};

/// What a [`Watch`] consumer saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Subscribed {
        producer: String,
        max_demand: usize,
        min_demand: usize,
    },
    Events(Vec<u64>),
    Cancelled(String, CancelReason),
}

/// Records its subscriptions, its batches and the ends of its subscriptions; manual if told so.
struct Watch {
    seen: Arc<Mutex<Vec<Seen>>>,
    manual: bool,
    tags: Vec<SubscriptionTag>,
}

impl Watch {
    fn new(manual: bool) -> (Self, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let watch = Watch {
            seen: seen.clone(),
            manual,
            tags: Vec::new(),
        };
        (watch, seen)
    }
}

impl Consumer for Watch {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.seen.lock().unwrap().push(Seen::Subscribed {
            producer: subscription.producer().to_owned(),
            max_demand: subscription.max_demand(),
            min_demand: subscription.min_demand(),
        });
        self.tags.push(subscription.tag());
        if self.manual {
            Demand::Manual
        } else {
            Demand::Automatic
        }
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.lock().unwrap().push(Seen::Events(events));
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.seen.lock().unwrap().push(Seen::Cancelled(
            subscription.producer().to_owned(),
            reason.clone(),
        ));
        Ok(())
    }
}

/// Asks `n` more on every subscription of a manual [`Watch`].
struct AskMore(usize);

impl HandleCast<AskMore> for Watch {
    type Emitted = ();
    async fn handle_cast(
        &mut self,
        AskMore(n): AskMore,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        for &tag in &self.tags {
            ctx.ask(tag, n)?;
        }
        Ok(())
    }
}

/// Counts up from 0, emitting exactly what it is asked, for ever.
struct Counter(u64);

impl Producer for Counter {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let events = (self.0..self.0 + demand as u64).collect::<Vec<_>>();
        self.0 += demand as u64;
        Ok(events.into())
    }
}

#[tokio::test]
async fn a_consumer_is_told_of_its_subscription_first_and_of_its_end_last() {
    let (watch, seen) = Watch::new(false);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..6u64));
    let watch = pipeline.add_consumer(watch);
    pipeline.subscribe_with(
        &numbers,
        &watch,
        SubscribeOptions::new().max_demand(4).min_demand(1),
    );
    pipeline.run().await.unwrap();

    assert_eq!(
        *seen.lock().unwrap(),
        [
            Seen::Subscribed {
                producer: "numbers".to_owned(),
                max_demand: 4,
                min_demand: 1,
            },
            Seen::Events(vec![0, 1, 2]),
            Seen::Events(vec![3]),
            Seen::Events(vec![4, 5]),
            Seen::Cancelled("numbers".to_owned(), CancelReason::Finished),
        ]
    );
}

/// Fails at its first call.
struct Failing;

impl Producer for Failing {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Err("oops".into())
    }
}

/// 72, 74, 75: `handle_cancel` is told the producer failed; then a temporary subscription keeps the
/// consumer alive, a transient or permanent one stops it with the producer as the cause.
#[tokio::test]
async fn scenarios_72_74_75_handle_cancel_runs_before_the_cancel_mode_applies() {
    for (cancel, stops) in [
        (CancelMode::Temporary, false),
        (CancelMode::Transient, true),
        (CancelMode::Permanent, true),
    ] {
        let (watch, seen) = Watch::new(false);
        let mut pipeline = Pipeline::new();
        let failing = pipeline.add_producer(Failing);
        let counter = pipeline.add_producer(from_iter(0..3u64));
        let watch = pipeline.add_consumer(watch);
        pipeline.subscribe_with(&failing, &watch, SubscribeOptions::new().cancel(cancel));
        pipeline.subscribe_with(&counter, &watch, SubscribeOptions::new().cancel(cancel));
        let error = pipeline.run().await.unwrap_err();

        let PipelineError::StageFailed { stage, report, .. } = error else {
            panic!("{cancel:?}: expected the producer's failure, got {error}");
        };
        assert_eq!(stage, "Failing");
        let failed = Seen::Cancelled(
            "Failing".to_owned(),
            CancelReason::Failed {
                cause: "Failing".to_owned(),
            },
        );
        assert!(seen.lock().unwrap().contains(&failed), "{cancel:?}");
        let status = &report.stage("Watch").unwrap().status;
        if stops {
            assert_eq!(
                *status,
                StageStatus::Cancelled {
                    cause: Some("Failing".to_owned())
                },
                "{cancel:?}"
            );
        } else {
            assert_eq!(*status, StageStatus::Finished, "{cancel:?}");
            assert_eq!(report.stage("Watch").unwrap().events_in, 3);
        }
    }
}

/// 56: manual demand set on subscribe: the first 50 (the initial ask, which the pipeline makes when
/// it wires the subscription) give `0..49`; another ask of 50 gives `50..99`. Each comes as the one
/// batch the producer sent: a manual subscription's events are not cut.
#[tokio::test]
async fn scenario_56_a_manual_consumer_gets_what_it_asks_for_and_no_more() {
    let (watch, seen) = Watch::new(true);
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let watch = pipeline.add_consumer(watch);
    pipeline.subscribe_with(&counter, &watch, SubscribeOptions::new().max_demand(50));
    let running = pipeline.start();

    let batches = |seen: &Arc<Mutex<Vec<Seen>>>| {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                Seen::Events(events) => Some(events.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    while batches(&seen).is_empty() {
        tokio::task::yield_now().await;
    }
    // One batch of 50: automatic demand would have cut it in two (max 50, min 25).
    assert_eq!(batches(&seen), [(0..50).collect::<Vec<u64>>()]);

    watch.cast(AskMore(50)).unwrap();
    while batches(&seen).len() < 2 {
        tokio::task::yield_now().await;
    }
    let report = running.shutdown().await.unwrap();
    assert_eq!(
        batches(&seen),
        [(0..50).collect::<Vec<u64>>(), (50..100).collect()]
    );
    // Nothing was asked for but the two asks of 50.
    assert_eq!(report.stage("Counter").unwrap().emitted, 100);
    assert!(report.balanced());
}

/// Takes at most `per_tick` events per tick: GenStage's RateLimiter. Its subscription is manual;
/// each tick asks for as many events as it received since the last one.
struct RateLimited {
    tag: Option<SubscriptionTag>,
    since_tick: usize,
    ticks: Arc<Mutex<Vec<usize>>>,
    interval: Duration,
}

struct Tick;

impl Consumer for RateLimited {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.tag = Some(subscription.tag());
        ctx.info_after(self.interval, Tick);
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.since_tick += events.len();
        Ok(())
    }
}

impl HandleInfo<Tick> for RateLimited {
    type Emitted = ();
    async fn handle_info(&mut self, _: Tick, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        self.ticks.lock().unwrap().push(self.since_tick);
        if let Some(tag) = self.tag {
            ctx.ask(tag, self.since_tick)?;
        }
        self.since_tick = 0;
        ctx.info_after(self.interval, Tick);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_rate_limiter_takes_at_most_max_demand_events_per_interval() {
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Counter(0));
    let limited = pipeline.add_consumer(RateLimited {
        tag: None,
        since_tick: 0,
        ticks: ticks.clone(),
        interval: Duration::from_millis(100),
    });
    pipeline.subscribe_with(&counter, &limited, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();

    // Ten intervals of paused time: each tick sees the 10 events it asked for at the last one.
    while ticks.lock().unwrap().len() < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = running.shutdown().await.unwrap();
    let ticks = ticks.lock().unwrap().clone();
    assert!(ticks.iter().all(|&n| n <= 10), "{ticks:?}");
    assert_eq!(&ticks[..10], [10; 10]);
    let handled = report.stage("RateLimited").unwrap().events_in;
    assert!((100..=110).contains(&handled), "{handled}");
    assert!(report.balanced());
}

/// Emits `0..10` at its first demand, whatever it is asked, and ends: what its consumer has not
/// asked for waits in its buffer.
struct AllAtOnce;

impl Producer for AllAtOnce {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last((0..10).collect()))
    }
}

/// A producer_consumer that passes its events on, and asks on its manual subscription only from a
/// tick it sends itself: for as many events as it received since the last tick.
struct LimitedMiddle {
    tag: Option<SubscriptionTag>,
    since_tick: usize,
}

impl genstage::ProducerConsumer for LimitedMiddle {
    type Input = u64;
    type Output = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.tag = Some(subscription.tag());
        ctx.info_after(Duration::from_millis(100), Tick);
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        self.since_tick += events.len();
        Ok(events)
    }
}

impl HandleInfo<Tick> for LimitedMiddle {
    type Emitted = Vec<u64>;
    async fn handle_info(&mut self, _: Tick, ctx: &mut Context<'_, Self>) -> StageResult<Vec<u64>> {
        if let Some(tag) = self.tag {
            ctx.ask(tag, self.since_tick)?;
        }
        self.since_tick = 0;
        ctx.info_after(Duration::from_millis(100), Tick);
        Ok(Vec::new())
    }
}

/// A producer_consumer in manual demand asks from the infos it sends itself, also while the
/// pipeline shuts down: its producer's buffer (8 of its 10 events, past the initial ask of 2) is
/// delivered, and the shutdown ends. (It hung: once shutting down, a producer_consumer dropped
/// every message, its own ticks too, so it never asked again: chaos seed 237.)
#[tokio::test(start_paused = true)]
async fn a_manual_producer_consumer_asks_from_its_own_ticks_while_shutting_down() {
    let (watch, seen) = Watch::new(false);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(AllAtOnce);
    let middle = pipeline.add_producer_consumer(LimitedMiddle {
        tag: None,
        since_tick: 0,
    });
    let watch = pipeline.add_consumer(watch);
    pipeline.subscribe_with(&numbers, &middle, SubscribeOptions::new().max_demand(2));
    pipeline.subscribe(&middle, &watch);
    let running = pipeline.start();
    // The initial ask's 2 events reach the consumer before any tick: the clock does not move while
    // this task runs.
    let handled = || {
        let seen = seen.lock().unwrap();
        seen.iter()
            .map(|s| match s {
                Seen::Events(events) => events.len(),
                _ => 0,
            })
            .sum::<usize>()
    };
    while handled() < 2 {
        tokio::task::yield_now().await;
    }
    let report = tokio::time::timeout(Duration::from_secs(60), running.shutdown())
        .await
        .expect("the shutdown hung")
        .unwrap();
    assert_eq!(handled(), 10);
    assert_eq!(report.stage("Watch").unwrap().events_in, 10);
    assert_eq!(report.stage("AllAtOnce").unwrap().lost, 0);
    assert!(report.balanced(), "{report:?}");
}

/// Sent by [`Chatty`] to itself: each emits events of its own and sends the next.
struct More;

/// A producer_consumer that passes its input on and, from its subscription on, keeps sending
/// itself a [`More`] through its context, each of which emits 5 events of its own: more than its
/// consumer takes, so that its buffer stays full and its input waits for room.
struct Chatty;

impl genstage::ProducerConsumer for Chatty {
    type Input = u64;
    type Output = u64;

    fn handle_subscribe(&mut self, _: &Subscription, ctx: &mut Context<'_, Self>) -> Demand {
        ctx.info(More);
        Demand::Automatic
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

impl HandleInfo<More> for Chatty {
    type Emitted = Vec<u64>;
    async fn handle_info(&mut self, _: More, ctx: &mut Context<'_, Self>) -> StageResult<Vec<u64>> {
        ctx.info(More);
        Ok(vec![1_000; 5])
    }
}

/// A graceful shutdown ends a producer_consumer in automatic demand that keeps sending itself
/// messages that fill its buffer: its input, which waits for room, can end only once they stop.
/// (It hung: since 263162d a shutting-down producer_consumer took its own messages until its input
/// ended, which a buffer they kept full never let happen.)
#[tokio::test]
async fn a_shutdown_ends_a_producer_consumer_whose_own_messages_keep_its_buffer_full() {
    let (watch, seen) = Watch::new(false);
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0u64..));
    let chatty = pipeline.add_producer_consumer(Chatty);
    let watch = pipeline.add_consumer(watch);
    pipeline.subscribe(&numbers, &chatty);
    pipeline.subscribe_with(&chatty, &watch, SubscribeOptions::new().max_demand(10));
    let running = pipeline.start();
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| matches!(s, Seen::Events(_)))
    {
        tokio::task::yield_now().await;
    }
    let report = tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("the shutdown hung")
        .unwrap();
    assert_eq!(
        report.stage("Chatty").unwrap().status,
        StageStatus::Finished
    );
    assert!(report.balanced(), "{report}");
}
