//! The producer's side of its subscriptions: `handle_consumer_subscribe` and
//! `handle_consumer_cancel` (GenStage's `handle_subscribe(:consumer, …)` and the producer's
//! `handle_cancel`), on a producer and on a producer_consumer, with GenStage's scenario numbers
//! (genstage-semantics.md §4: 59–62, 84–87).
//!
//! Scenarios 60 and 85 (a producer's `handle_subscribe` returning `:manual` stops it) cannot
//! happen here: `handle_consumer_subscribe` returns nothing, so there is no demand to take.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    CancelReason, Consumer, Context, Demand, Emit, Pipeline, PipelineError, Producer,
    ProducerConsumer, StageResult, StageStatus, SubscribeOptions, Subscriber, Subscription,
    SubscriptionTag,
};

/// What a stage's producer-side callbacks were told, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Subscribed {
        consumer: String,
        tag: SubscriptionTag,
        max_demand: usize,
    },
    Demand,
    Cancelled {
        consumer: String,
        tag: SubscriptionTag,
        reason: CancelReason,
    },
}

type Log = Arc<Mutex<Vec<Told>>>;

fn subscribed(log: &Log, subscriber: &Subscriber) {
    log.lock().unwrap().push(Told::Subscribed {
        consumer: subscriber.consumer().to_owned(),
        tag: subscriber.tag(),
        max_demand: subscriber.max_demand(),
    });
}

fn cancelled(log: &Log, subscriber: &Subscriber, reason: &CancelReason) {
    log.lock().unwrap().push(Told::Cancelled {
        consumer: subscriber.consumer().to_owned(),
        tag: subscriber.tag(),
        reason: reason.clone(),
    });
}

/// Counts up forever, recording what it is told.
struct Source {
    next: u64,
    log: Log,
}

impl Producer for Source {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.log.lock().unwrap().push(Told::Demand);
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        Ok(Emit::more(events))
    }

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, _: &mut Context<'_, Self>) {
        subscribed(&self.log, subscriber);
    }

    async fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        cancelled(&self.log, subscriber, reason);
        Ok(Vec::new())
    }
}

/// Passes events on; when a consumer leaves, tells the others with one event, `u64::MAX`.
struct Relay {
    log: Log,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, _: &mut Context<'_, Self>) {
        subscribed(&self.log, subscriber);
    }

    async fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        cancelled(&self.log, subscriber, reason);
        Ok(vec![u64::MAX])
    }
}

/// Keeps what it receives and the tags of its subscriptions; fails on its first batch if told to.
#[derive(Default)]
struct Keep {
    events: Arc<Mutex<Vec<u64>>>,
    tags: Arc<Mutex<Vec<SubscriptionTag>>>,
    ends: Arc<Mutex<Vec<CancelReason>>>,
    fail: bool,
}

impl Keep {
    fn failing() -> Self {
        Keep {
            fail: true,
            ..Keep::default()
        }
    }
}

impl Consumer for Keep {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.tags.lock().unwrap().push(subscription.tag());
        Demand::Automatic
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if self.fail {
            return Err("this consumer fails".into());
        }
        self.events.lock().unwrap().extend(events);
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        _: &Subscription,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.ends.lock().unwrap().push(reason.clone());
        Ok(())
    }
}

/// Waits until `condition` holds; fails the test if it does not within 10 s.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "waited 10 s for {what}");
}

/// `future`'s output; fails the test if it takes more than 10 s.
async fn no_hang<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("no hang")
}

fn cancels(log: &Log) -> Vec<Told> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|told| matches!(told, Told::Cancelled { .. }))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_59_a_producer_is_told_of_each_consumer_with_its_name_and_tag() {
    let log = Log::default();
    let left = Keep::default();
    let left_tags = left.tags.clone();
    let right = Keep::default();
    let right_tags = right.tags.clone();
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(Source {
        next: 0,
        log: log.clone(),
    });
    let left = pipeline.add_consumer_named("left", left);
    let right = pipeline.add_consumer_named("right", right);
    pipeline.subscribe_with(&source, &left, SubscribeOptions::new().max_demand(10));
    pipeline.subscribe_with(&source, &right, SubscribeOptions::new().max_demand(20));
    let running = pipeline.start();
    until("a first demand", || {
        log.lock().unwrap().contains(&Told::Demand)
    })
    .await;
    no_hang(running.shutdown()).await.unwrap();

    let told = log.lock().unwrap().clone();
    let left_tag = left_tags.lock().unwrap()[0];
    let right_tag = right_tags.lock().unwrap()[0];
    // The pipeline's subscriptions all come to the producer, in the order they were made, before
    // it is first asked for events.
    assert_eq!(
        told[..3],
        [
            Told::Subscribed {
                consumer: "left".to_owned(),
                tag: left_tag,
                max_demand: 10,
            },
            Told::Subscribed {
                consumer: "right".to_owned(),
                tag: right_tag,
                max_demand: 20,
            },
            Told::Demand,
        ]
    );
    assert_ne!(left_tag, right_tag);
    // A shutdown ends the producer; it does not cancel its subscriptions.
    assert!(cancels(&log).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_61_a_cancelled_subscription_is_told_to_the_producer_and_the_consumer() {
    let log = Log::default();
    let stays = Keep::default();
    let stays_events = stays.events.clone();
    let leaves = Keep::default();
    let leaves_ends = leaves.ends.clone();
    let leaves_tags = leaves.tags.clone();
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(Source {
        next: 0,
        log: log.clone(),
    });
    let stays = pipeline.add_consumer_named("stays", stays);
    let leaves = pipeline.add_consumer_named("leaves", leaves);
    pipeline.subscribe(&source, &stays);
    pipeline.subscribe(&source, &leaves);
    let running = pipeline.start();
    until("leaves subscribed", || {
        !leaves_tags.lock().unwrap().is_empty()
    })
    .await;
    let tag = leaves_tags.lock().unwrap()[0];
    no_hang(running.cancel(tag)).await.unwrap();
    until("the producer told", || !cancels(&log).is_empty()).await;
    // The producer goes on for the consumer that stays.
    let before = stays_events.lock().unwrap().len();
    until("more events", || {
        stays_events.lock().unwrap().len() > before
    })
    .await;
    let report = no_hang(running.shutdown()).await.unwrap();

    assert_eq!(
        cancels(&log),
        [Told::Cancelled {
            consumer: "leaves".to_owned(),
            tag,
            reason: CancelReason::Cancelled,
        }]
    );
    assert_eq!(*leaves_ends.lock().unwrap(), [CancelReason::Cancelled]);
    assert_eq!(
        report.stage("Source").unwrap().status,
        StageStatus::ShutDown
    );
    // Left without producers, the cancelled consumer finished; nothing was lost on the way.
    assert_eq!(
        report.stage("leaves").unwrap().status,
        StageStatus::Finished
    );
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_62_a_consumer_that_fails_is_told_to_the_producer_which_goes_on() {
    let log = Log::default();
    let stays = Keep::default();
    let stays_events = stays.events.clone();
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(Source {
        next: 0,
        log: log.clone(),
    });
    let stays = pipeline.add_consumer_named("stays", stays);
    let fails = pipeline.add_consumer_named("fails", Keep::failing());
    pipeline.subscribe(&source, &stays);
    // Temporary on the consumer's side changes nothing for the producer: it never stops for a
    // consumer.
    pipeline.subscribe(&source, &fails);
    let running = pipeline.start();
    until("the producer told", || !cancels(&log).is_empty()).await;
    let before = stays_events.lock().unwrap().len();
    until("more events", || {
        stays_events.lock().unwrap().len() > before
    })
    .await;
    let error = no_hang(running.shutdown()).await.unwrap_err();

    let PipelineError::StageFailed { stage, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(stage, "fails");
    let [Told::Cancelled {
        consumer, reason, ..
    }] = &cancels(&log)[..]
    else {
        panic!("{:?}", log.lock().unwrap());
    };
    assert_eq!(consumer, "fails");
    assert_eq!(
        *reason,
        CancelReason::Failed {
            cause: "fails".to_owned()
        }
    );
    let report = error.report().unwrap();
    assert_eq!(
        report.stage("Source").unwrap().status,
        StageStatus::ShutDown
    );
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_84_86_87_a_producer_consumer_is_told_of_its_consumers_and_may_emit_for_the_rest()
{
    let log = Log::default();
    let stays = Keep::default();
    let stays_events = stays.events.clone();
    let leaves = Keep::default();
    let leaves_tags = leaves.tags.clone();
    let leaves_events = leaves.events.clone();
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(Source {
        next: 0,
        log: Log::default(),
    });
    let relay = pipeline.add_producer_consumer(Relay { log: log.clone() });
    let stays = pipeline.add_consumer_named("stays", stays);
    let leaves = pipeline.add_consumer_named("leaves", leaves);
    let fails = pipeline.add_consumer_named("fails", Keep::failing());
    pipeline.subscribe(&source, &relay);
    pipeline.subscribe(&relay, &stays);
    pipeline.subscribe(&relay, &leaves);
    pipeline.subscribe(&relay, &fails);
    let running = pipeline.start();
    until("fails told", || !cancels(&log).is_empty()).await;
    let tag = leaves_tags.lock().unwrap()[0];
    no_hang(running.cancel(tag)).await.unwrap();
    until("leaves told", || cancels(&log).len() == 2).await;
    // What the relay emitted when told reaches its consumers: the notice of the first leaver may go
    // to either of the two left then, the notice of the second goes to the one that stays.
    let notices = |events: &Arc<Mutex<Vec<u64>>>| {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|&&e| e == u64::MAX)
            .count()
    };
    until("the relay's two notices", || {
        notices(&stays_events) + notices(&leaves_events) == 2
    })
    .await;
    assert!(notices(&stays_events) >= 1);
    let error = no_hang(running.shutdown()).await.unwrap_err();

    // 84: told of each consumer, with its name.
    let told = log.lock().unwrap().clone();
    let subscribed: Vec<&str> = told
        .iter()
        .filter_map(|told| match told {
            Told::Subscribed { consumer, .. } => Some(consumer.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(subscribed, ["stays", "leaves", "fails"]);
    // 87 (the consumer died), then 86 (the subscription was cancelled).
    let reasons: Vec<(String, CancelReason)> = cancels(&log)
        .into_iter()
        .filter_map(|told| match told {
            Told::Cancelled {
                consumer, reason, ..
            } => Some((consumer, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "fails".to_owned(),
                CancelReason::Failed {
                    cause: "fails".to_owned()
                }
            ),
            ("leaves".to_owned(), CancelReason::Cancelled),
        ]
    );
    let report = error.report().unwrap();
    assert_eq!(report.stage("Relay").unwrap().status, StageStatus::Finished);
    assert!(report.balanced(), "{report:?}");
}

/// Fails when told that a consumer left.
struct Touchy;

impl Producer for Touchy {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(vec![1; demand]))
    }

    async fn handle_consumer_cancel(
        &mut self,
        _: &Subscriber,
        _: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Err("a consumer left".into())
    }
}

#[tokio::test]
async fn an_error_from_handle_consumer_cancel_fails_the_producer() {
    let stays = Keep::default();
    let mut pipeline = Pipeline::new();
    let touchy = pipeline.add_producer(Touchy);
    let stays = pipeline.add_consumer_named("stays", stays);
    let fails = pipeline.add_consumer_named("fails", Keep::failing());
    pipeline.subscribe(&touchy, &stays);
    pipeline.subscribe(&touchy, &fails);
    let error = tokio::time::timeout(Duration::from_secs(10), pipeline.run())
        .await
        .expect("the pipeline ends")
        .unwrap_err();

    let report = error.report().unwrap();
    assert_eq!(
        report.stage("Touchy").unwrap().status,
        StageStatus::Failed("a consumer left".to_owned())
    );
    assert_eq!(
        report.stage("fails").unwrap().status,
        StageStatus::Failed("this consumer fails".to_owned())
    );
    assert!(report.balanced(), "{report:?}");
}
