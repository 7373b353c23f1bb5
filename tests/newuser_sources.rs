//! A new user's job queue, written from the README and the rustdoc only: `[Worker; 3]` fed by a
//! queue that other tasks `call(Push(job))` into; while it runs, a second queue is added and the
//! running workers subscribe to it, then a new step (a producer_consumer) is put between that
//! queue and a new consumer. Every job is handled exactly once, and the shutdown's report
//! balances.

use std::sync::{Arc, Mutex};

use genstage::prelude::*;

/// Push a job into a queue: answered once the job is dispatched or buffered.
struct Push(u64);

/// A queue that other tasks push jobs into.
#[derive(Default)]
struct Queue;

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new() // jobs come only from pushes
    }

    fn handle_call(&mut self, push: Push, reply: ReplyTo<()>) -> Vec<u64> {
        reply.reply(());
        vec![push.0]
    }
}

type Seen = Arc<Mutex<Vec<u64>>>;

/// A worker: records the jobs it handled.
struct Worker {
    seen: Seen,
}

#[stage(consumer, max_demand = 4, min_demand = 2)]
impl Worker {
    fn handle_events(&mut self, jobs: Vec<u64>) {
        self.seen.lock().expect("poisoned").extend(jobs);
    }
}

/// A step put between the second queue and an auditor: marks the job (adds 1 000 000).
struct Mark;

#[stage(producer_consumer, max_demand = 4, min_demand = 2)]
impl Mark {
    fn handle_events(&mut self, jobs: Vec<u64>) -> Vec<u64> {
        jobs.into_iter().map(|j| j + 1_000_000).collect()
    }
}

/// The auditor after `Mark`.
struct Auditor {
    seen: Seen,
}

#[stage(consumer)]
impl Auditor {
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
async fn sources_added_while_running_feed_the_running_workers(
) -> Result<(), Box<dyn std::error::Error>> {
    let seen = Seen::default();
    let p = pipeline! { queue = Queue -> workers = [Worker { seen: seen.clone() }; 3] };
    let queue = p.queue.clone();
    let workers = p.workers.clone();
    let running = p.start();

    // Two tasks push into the first queue while the pipeline runs.
    let first = tokio::spawn({
        let queue = queue.clone();
        async move { push_all(&queue, 0..50).await }
    });
    let second = tokio::spawn({
        let queue = queue.clone();
        async move { push_all(&queue, 50..100).await }
    });

    // A second queue appears, filled before anyone takes from it.
    let queue2 = running.add_producer_named("queue-2", Queue).await?;
    push_all(&queue2, 100..150).await?;
    for worker in &workers {
        running.subscribe(&queue2, worker).await?;
    }
    push_all(&queue2, 150..200).await?;
    first.await??;
    second.await??;

    // A new step between the second queue and a new consumer.
    let audited = Seen::default();
    let mark = running.add_producer_consumer(Mark).await?;
    let auditor = running
        .add_consumer(Auditor {
            seen: audited.clone(),
        })
        .await?;
    running.subscribe(&mark, &auditor).await?;
    running.subscribe(&queue2, &mark).await?;
    push_all(&queue2, 200..300).await?;
    push_all(&queue, 300..350).await?;

    let report = running.shutdown().await?;

    let mut handled = seen.lock().expect("poisoned").clone();
    let marked = audited.lock().expect("poisoned").clone();
    // Only the second queue feeds `Mark`: its jobs pushed after `Mark` subscribed, and any pushed
    // before that still waited in its buffer then (the workers take 4 at a time).
    assert!(
        marked.iter().all(|&j| (1_000_100..1_000_300).contains(&j)),
        "{marked:?}"
    );
    handled.extend(marked.iter().map(|j| j - 1_000_000));
    handled.sort_unstable();
    assert_eq!(
        handled,
        (0..350).collect::<Vec<u64>>(),
        "every job exactly once"
    );

    assert_eq!(report.stage("queue").map(|s| s.emitted), Some(150));
    assert_eq!(report.stage("queue-2").map(|s| s.emitted), Some(200));
    let mark_report = report.stage("Mark").expect("Mark in the report");
    assert_eq!(mark_report.events_in, marked.len() as u64);
    assert_eq!(
        report.stage("Auditor").map(|s| s.events_in),
        Some(marked.len() as u64)
    );
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_put_between_a_running_source_and_a_running_worker(
) -> Result<(), Box<dyn std::error::Error>> {
    let seen = Seen::default();
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer_named("queue", Queue);
    let direct = pipeline.add_consumer_named("direct", Worker { seen: seen.clone() });
    let telling = pipeline.add_consumer_named("telling", Worker { seen: seen.clone() });
    pipeline
        .subscribe(&queue, &direct)
        .subscribe(&queue, &telling);
    let running = pipeline.start();
    push_all(&queue, 0..40).await?;

    // `telling` now takes the queue's jobs through a new `Mark` step. The subscription made when
    // the pipeline was built is found by its two stages.
    let built = running.subscriptions(&queue, &telling).await?;
    assert_eq!(built.len(), 1);
    let built = built[0];
    let mark = running.add_producer_consumer_named("mark", Mark).await?;
    running.subscribe(&queue, &mark).await?;
    let through_mark = running
        .resubscribe(built, &mark, &telling, SubscribeOptions::new())
        .await?;
    assert_ne!(through_mark, built);
    // `telling` is subscribed to `mark` now, no longer to `queue`.
    assert_eq!(running.subscriptions(&queue, &telling).await?, []);
    assert_eq!(
        running.subscriptions(&mark, &telling).await?,
        [through_mark]
    );
    push_all(&queue, 40..80).await?;

    let report = running.shutdown().await?;
    let mut handled: Vec<u64> = seen
        .lock()
        .expect("poisoned")
        .iter()
        .map(|&j| j % 1_000_000)
        .collect();
    handled.sort_unstable();
    assert_eq!(
        handled,
        (0..80).collect::<Vec<u64>>(),
        "every job exactly once"
    );
    assert_eq!(report.stage("queue").map(|s| s.emitted), Some(80));
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
    Ok(())
}
