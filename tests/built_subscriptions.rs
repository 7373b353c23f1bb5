//! The tags of subscriptions made when the pipeline was built, looked up through its handle by
//! their two stages (`PipelineHandle::subscriptions`), then cancelled and resubscribed by them.

use std::sync::{Arc, Mutex};

use genstage::prelude::*;
use genstage::PipelineError;

/// Push a job into the queue: answered once the job is dispatched or buffered.
struct Push(u64);

/// A queue that the test pushes jobs into.
#[derive(Default)]
struct Queue;

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_call(&mut self, push: Push, reply: ReplyTo<()>) -> Vec<u64> {
        reply.reply(());
        vec![push.0]
    }
}

type Seen = Arc<Mutex<Vec<u64>>>;

/// Records the jobs it handled, and the tags its `handle_subscribe` was told.
struct Worker {
    seen: Seen,
    told: Arc<Mutex<Vec<SubscriptionTag>>>,
}

#[stage(consumer, max_demand = 4, min_demand = 2)]
impl Worker {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        self.told.lock().expect("poisoned").push(subscription.tag());
    }

    fn handle_events(&mut self, jobs: Vec<u64>) {
        self.seen.lock().expect("poisoned").extend(jobs);
    }
}

async fn push_all(queue: &ProducerRef<Queue>, jobs: std::ops::Range<u64>) -> Result<(), CallError> {
    for job in jobs {
        queue.call(Push(job)).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_subscription_is_cancelled_and_resubscribed_by_its_looked_up_tag(
) -> Result<(), Box<dyn std::error::Error>> {
    let (a_seen, b_seen) = (Seen::default(), Seen::default());
    let (a_told, b_told) = (Arc::default(), Arc::default());
    let p = pipeline! {
        queue = Queue -> a = Worker { seen: a_seen.clone(), told: Arc::clone(&a_told) };
        queue -> b = Worker { seen: b_seen.clone(), told: Arc::clone(&b_told) };
    };
    let (queue, a, b) = (p.queue.clone(), p.a.clone(), p.b.clone());
    let running = p.start();

    let to_a = running.subscriptions(&queue, &a).await?;
    let to_b = running.subscriptions(&queue, &b).await?;
    assert_eq!(to_a.len(), 1);
    assert_eq!(to_b.len(), 1);
    assert_ne!(to_a, to_b);

    // `a` leaves before any job: `b` gets them all.
    running.cancel(to_a[0]).await?;
    assert_eq!(running.subscriptions(&queue, &a).await?, []);
    push_all(&queue, 0..20).await?;

    // `b` moves to a new subscription of the same queue.
    let options = SubscribeOptions::new().max_demand(2).min_demand(1);
    let moved = running.resubscribe(to_b[0], &queue, &b, options).await?;
    assert_ne!(moved, to_b[0]);
    assert_eq!(running.subscriptions(&queue, &b).await?, [moved]);
    push_all(&queue, 20..40).await?;

    // Once the pipeline has ended, the lookup is `NotRunning`.
    let shutdown = running.shutdown_handle();
    let mut running = running;
    shutdown.shutdown()?;
    let report = (&mut running).await?;
    assert!(matches!(
        running.subscriptions(&queue, &b).await,
        Err(PipelineError::NotRunning)
    ));

    // The tags the consumers' `handle_subscribe` were told (each before its subscription's
    // events, so surely by the end).
    assert_eq!(*a_told.lock().expect("poisoned"), to_a);
    assert_eq!(*b_told.lock().expect("poisoned"), [to_b[0], moved]);
    assert!(a_seen.lock().expect("poisoned").is_empty());
    assert_eq!(
        *b_seen.lock().expect("poisoned"),
        (0..40).collect::<Vec<u64>>()
    );
    assert_eq!(report.stage("queue").map(|s| s.emitted), Some(40));
    assert_eq!(report.stage("a").map(|s| s.events_in), Some(0));
    assert_eq!(report.stage("b").map(|s| s.events_in), Some(40));
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_subscribed_twice_has_two_tags_and_a_foreign_stage_is_refused(
) -> Result<(), Box<dyn std::error::Error>> {
    let seen = Seen::default();
    let told = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer_named("queue", Queue);
    let worker = pipeline.add_consumer_named(
        "worker",
        Worker {
            seen: seen.clone(),
            told: told.clone(),
        },
    );
    pipeline
        .subscribe(&queue, &worker)
        .subscribe(&queue, &worker);
    let mut other = Pipeline::new();
    let foreign = other.add_producer_named("foreign", Queue);

    let running = pipeline.start();
    let tags = running.subscriptions(&queue, &worker).await?;
    assert_eq!(tags.len(), 2);
    assert_ne!(tags[0], tags[1]);
    let refused = running.subscriptions(&foreign, &worker).await;
    assert!(
        matches!(&refused, Err(PipelineError::ForeignStage { stage }) if stage == "foreign"),
        "{refused:?}"
    );

    running.cancel(tags[1]).await?;
    assert_eq!(running.subscriptions(&queue, &worker).await?, [tags[0]]);
    push_all(&queue, 0..10).await?;
    let report = running.shutdown().await?;
    assert_eq!(
        *seen.lock().expect("poisoned"),
        (0..10).collect::<Vec<u64>>()
    );
    assert_eq!(report.stage("worker").map(|s| s.events_in), Some(10));
    // Oldest first, in the order the consumer was told of them.
    assert_eq!(*told.lock().expect("poisoned"), tags);
    assert!(report.balanced(), "{report}");
    Ok(())
}
