//! A new user's job service, written from the README and the rustdoc only: a queue fed by another
//! task, a group of workers made with `add_consumers`, and a monitor that waits for a worker to
//! end with `stage_ended` and puts a replacement in its place through the handle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::select_all;
use genstage::prelude::*;
use genstage::{CancelMode, LossReason, Pipeline, StageStatus, SubscribeOptions};

/// The job no worker survives.
const POISON: u64 = 13;
/// The jobs the feeder sends: `0..JOBS`.
const JOBS: u64 = 100;

/// A worker: takes one job at a time, records which worker handled it, fails on the poison job.
struct Worker {
    id: String,
    done: Done,
}

/// The jobs handled, each with its worker's name.
type Done = Arc<Mutex<Vec<(String, u64)>>>;

#[stage(consumer, max_demand = 1, min_demand = 0)]
impl Worker {
    async fn handle_events(&mut self, jobs: Vec<u64>) -> Result<(), String> {
        for job in jobs {
            if job == POISON {
                return Err(format!("job {job} is poison"));
            }
            self.done
                .lock()
                .expect("poisoned")
                .push((self.id.clone(), job));
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

/// Worker `id`, recording into `done`.
fn worker(id: impl Into<String>, done: &Done) -> Worker {
    let (id, done) = (id.into(), done.clone());
    Worker { id, done }
}

/// The jobs of `done` that `worker` handled, in order.
fn handled_by(done: &Done, worker: &str) -> Vec<u64> {
    let done = done.lock().expect("poisoned");
    done.iter()
        .filter(|(w, _)| w == worker)
        .map(|(_, job)| *job)
        .collect()
}

/// Guards a wait that should end against a hang.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 10 s"))
}

/// Waits until `condition` holds.
async fn until(condition: impl Fn() -> bool) {
    while !condition() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_monitor_replaces_the_worker_that_died() -> Result<(), Box<dyn std::error::Error>> {
    let done = Arc::new(Mutex::new(Vec::new()));
    let (jobs_in, queue) = genstage::from_channel::<u64>(8);
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer_named("queue", queue);
    let workers = pipeline.add_consumers(3, |i| worker(format!("Worker[{i}]"), &done));
    // A worker that dies must not take the queue with it.
    let temporary = || SubscribeOptions::new().cancel(CancelMode::Temporary);
    for worker in &workers {
        pipeline.subscribe_with(&queue, worker, temporary());
    }
    let running = pipeline.start();

    // The monitor: the first worker to end, whichever it is.
    let watching = workers.iter().map(|w| Box::pin(running.stage_ended(w)));
    let first_end = tokio::spawn(select_all(watching));

    // The feeder: the jobs up to the poison one and a few more; the rest once replaced.
    let (go_on, resume) = tokio::sync::oneshot::channel::<()>();
    let feeder = tokio::spawn(async move {
        for job in 0..JOBS / 2 {
            jobs_in.send(job).await.expect("the queue takes jobs");
        }
        resume.await.expect("the monitor says when");
        for job in JOBS / 2..JOBS {
            jobs_in.send(job).await.expect("the queue takes jobs");
        }
        // Kept open: the queue ends by the shutdown, not because its feed ran dry.
        jobs_in
    });

    let (ended, dead, _) = within("a worker's end", first_end).await?;
    let ended = ended?;
    let dead_name = format!("Worker[{dead}]");
    assert_eq!(ended.name, dead_name);
    assert_eq!(ended.status, StageStatus::Failed("job 13 is poison".into()));
    assert_eq!((ended.lost, ended.losses.len()), (1, 1));
    assert_eq!(ended.losses[0].reason, LossReason::FailedBatch);
    // The dead worker takes no more subscriptions, and the error names it.
    let refused = running.subscribe(&queue, &workers[dead]).await;
    match refused {
        Err(PipelineError::StageEnded { stage }) => assert_eq!(stage, dead_name),
        other => panic!("expected StageEnded, got {other:?}"),
    }

    // The replacement takes the dead worker's place.
    let replacement_name = format!("{dead_name}'");
    let replacement = running
        .add_consumer_named(
            replacement_name.clone(),
            worker(replacement_name.clone(), &done),
        )
        .await?;
    running
        .subscribe_with(&queue, &replacement, temporary())
        .await?;
    let replacement_ended = tokio::spawn(running.stage_ended(&replacement));
    go_on.send(()).map_err(|_| "the feeder is gone")?;
    let jobs_in = within("the feeder", feeder).await?;
    // Every job but the poison one handled before the shutdown: it then has nothing to drain.
    within(
        "the jobs handled",
        until(|| done.lock().unwrap().len() == JOBS as usize - 1),
    )
    .await;

    let report = match within("the shutdown", running.shutdown()).await {
        Err(PipelineError::StageFailed { stage, report, .. }) => {
            assert_eq!(stage, dead_name);
            *report
        }
        other => panic!("expected the dead worker's failure, got {other:?}"),
    };
    let replacement_ended = within("the replacement's end", replacement_ended).await??;
    assert!(jobs_in.send(JOBS).await.is_err(), "the queue has ended");

    // Every job handled exactly once but the poison one, lost with its worker's failed batch.
    let mut handled: Vec<u64> = done.lock().unwrap().iter().map(|(_, job)| *job).collect();
    handled.sort_unstable();
    let expected: Vec<u64> = (0..JOBS).filter(|&job| job != POISON).collect();
    assert_eq!(handled, expected);
    assert!(report.balanced(), "{report}");
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    let mut expected_names = vec!["queue", "Worker[0]", "Worker[1]", "Worker[2]"];
    expected_names.push(&replacement_name);
    assert_eq!(names, expected_names);
    assert_eq!(report.stage(&dead_name), Some(&ended));
    assert_eq!(report.stage(&replacement_name), Some(&replacement_ended));
    let queue = report.stage("queue").expect("the queue's report");
    assert_eq!((queue.emitted, queue.lost), (JOBS, 0));
    assert_eq!(queue.status, StageStatus::ShutDown);
    for stage in &report.stages[1..] {
        let (name, dead) = (&stage.name, stage.name == dead_name);
        assert_eq!(
            stage.events_in,
            handled_by(&done, name).len() as u64,
            "{name}"
        );
        assert_eq!(stage.lost, u64::from(dead), "{name}");
        assert!(dead || stage.status == StageStatus::Finished, "{name}");
    }
    Ok(())
}

/// A worker that fails on its first batch, restarted by its policy.
struct Flaky {
    failed_once: Arc<Mutex<bool>>,
    done: Arc<Mutex<Vec<u64>>>,
}

#[stage(consumer, max_demand = 1, min_demand = 0, restart = transient)]
impl Flaky {
    fn handle_events(&mut self, jobs: Vec<u64>) -> Result<(), String> {
        let mut failed_once = self.failed_once.lock().expect("poisoned");
        if !*failed_once {
            *failed_once = true;
            return Err("first batch".into());
        }
        self.done.lock().expect("poisoned").extend(jobs);
        Ok(())
    }
}

/// A producer fed by casts only, so that it ends by a shutdown or an abort.
#[derive(Default)]
struct Queue;

#[stage(producer, buffer_size = infinity)]
impl Queue {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_cast(&mut self, job: u64) -> Vec<u64> {
        vec![job]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_ended_waits_through_restarts_and_answers_every_waiter(
) -> Result<(), Box<dyn std::error::Error>> {
    let failed_once = Arc::new(Mutex::new(false));
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer(Queue);
    let flaky = pipeline.add_consumer_with({
        let (failed_once, done) = (failed_once.clone(), done.clone());
        move || Flaky {
            failed_once: failed_once.clone(),
            done: done.clone(),
        }
    });
    pipeline.subscribe(&queue, &flaky);
    let running = pipeline.start();

    // Asked and dropped at once, then many waiters: each gets the one report.
    drop(running.stage_ended(&flaky));
    let waiters: Vec<_> = (0..50)
        .map(|_| tokio::spawn(running.stage_ended(&flaky)))
        .collect();
    for job in 0..3 {
        queue.cast(job)?;
    }
    within(
        "the restarted worker's jobs",
        until(|| done.lock().unwrap().len() == 2),
    )
    .await;
    // A restart is not an end.
    assert!(waiters.iter().all(|waiter| !waiter.is_finished()));
    // One added while running, never subscribed: it ends with the shutdown.
    let idle = running
        .add_consumer_named("idle", worker("idle", &Arc::default()))
        .await?;
    let idle_ended = tokio::spawn(running.stage_ended(&idle));

    let report = within("the shutdown", running.shutdown()).await?;
    assert!(report.balanced(), "{report}");
    let flaky_report = report.stage("Flaky").expect("Flaky's report");
    let counts = (flaky_report.events_in, flaky_report.lost);
    assert_eq!((counts, flaky_report.restarts), ((2, 1), 1));
    assert_eq!(flaky_report.status, StageStatus::Finished);
    for waiter in waiters {
        assert_eq!(&within("a waiter", waiter).await??, flaky_report);
    }
    let idle_ended = within("the idle stage's end", idle_ended).await??;
    assert_eq!(idle_ended.status, StageStatus::Finished);
    assert_eq!(report.stage("idle"), Some(&idle_ended));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_ended_answers_an_abort() -> Result<(), Box<dyn std::error::Error>> {
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer(Queue);
    let workers = pipeline.add_consumers(2, |i| worker(format!("Worker[{i}]"), &done));
    for worker in &workers {
        pipeline.subscribe(&queue, worker);
    }
    let running = pipeline.start();
    let ends: Vec<_> = workers
        .iter()
        .map(|w| tokio::spawn(running.stage_ended(w)))
        .collect();
    let queue_end = tokio::spawn(running.stage_ended(&queue));
    // An unnamed worker added beside the group is named as the builder names it there.
    let extra = running.add_consumer(worker("extra", &done)).await?;
    let extra_end = tokio::spawn(running.stage_ended(&extra));
    let report = within("the abort", running.abort()).await?;
    let extra_end = within("the extra worker's end", extra_end).await??;
    assert_eq!(extra_end.name, "Worker#2");
    assert_eq!(report.instances("Worker").count(), 2);
    assert!(report.balanced(), "{report}");
    for (i, end) in ends.into_iter().enumerate() {
        let end = within("a worker's end", end).await??;
        assert_eq!(end.name, format!("Worker[{i}]"));
        assert_eq!(report.stage(&end.name), Some(&end));
    }
    let queue_end = within("the queue's end", queue_end).await??;
    assert_eq!(queue_end.status, StageStatus::Aborted);
    assert_eq!(report.stage("Queue"), Some(&queue_end));
    Ok(())
}

/// Routes job `n` to partition `n % 3`.
#[derive(Default)]
struct Split;

#[stage(producer, dispatcher = partition(3), buffer_size = infinity)]
impl Split {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_cast(&mut self, job: u64) -> Vec<u64> {
        vec![job]
    }

    fn partition(&self, job: &u64) -> Option<usize> {
        Some((job % 3) as usize)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_waits_for_the_replacement_of_its_dead_worker(
) -> Result<(), Box<dyn std::error::Error>> {
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer(Split);
    let workers = pipeline.add_consumers(3, |i| worker(format!("Worker[{i}]"), &done));
    for (i, worker) in workers.iter().enumerate() {
        let options = SubscribeOptions::new()
            .partition(i)
            .cancel(CancelMode::Temporary);
        pipeline.subscribe_with(&split, worker, options);
    }
    let running = pipeline.start();
    let dead = running.stage_ended(&workers[1]);
    for job in 0..30 {
        split.cast(job)?;
    }
    // Partition 1 takes 1, 4, 7, 10 and dies on 13.
    let dead = within("Worker[1]'s end", dead).await?;
    assert_eq!(
        (dead.name.as_str(), dead.events_in, dead.lost),
        ("Worker[1]", 4, 1)
    );
    within(
        "the other partitions",
        until(|| done.lock().unwrap().len() == 24),
    )
    .await;

    // Its replacement takes partition 1 over, with what waited for it.
    let replacement = running
        .add_consumer_named("Worker[1]'", worker("Worker[1]'", &done))
        .await?;
    let options = SubscribeOptions::new().partition(1);
    running
        .subscribe_with(&split, &replacement, options)
        .await?;
    for job in 30..60 {
        split.cast(job)?;
    }
    within("every job", until(|| done.lock().unwrap().len() == 59)).await;
    let report = match within("the shutdown", running.shutdown()).await {
        Err(PipelineError::StageFailed { stage, report, .. }) if stage == "Worker[1]" => *report,
        other => panic!("expected Worker[1]'s failure, got {other:?}"),
    };
    assert!(report.balanced(), "{report}");
    assert_eq!(report.stage("Worker[1]"), Some(&dead));
    let partition = |p: u64, jobs: std::ops::Range<u64>| jobs.filter(move |j| j % 3 == p);
    assert_eq!(
        handled_by(&done, "Worker[0]"),
        partition(0, 0..60).collect::<Vec<_>>()
    );
    assert_eq!(handled_by(&done, "Worker[1]"), [1, 4, 7, 10]);
    assert_eq!(
        handled_by(&done, "Worker[1]'"),
        partition(1, 16..60).collect::<Vec<_>>()
    );
    assert_eq!(
        handled_by(&done, "Worker[2]"),
        partition(2, 0..60).collect::<Vec<_>>()
    );
    let split = report.stage("Split").expect("Split's report");
    assert_eq!((split.emitted, split.discarded, split.lost), (60, 0, 0));
    Ok(())
}

#[tokio::test]
async fn group_mistakes_are_errors_naming_the_group() {
    let done = Arc::new(Mutex::new(Vec::new()));
    let nth = |i: usize| worker(format!("Worker[{i}]"), &done);
    // A group of none, as `pipeline!`'s `[Worker; n]` with `n` 0: an error, not a quiet no-op.
    for named in [false, true] {
        let mut pipeline = Pipeline::new();
        let jobs = pipeline.add_producer(genstage::from_iter(0..10u64));
        let other = pipeline.add_consumer_named("other", nth(9));
        pipeline.subscribe(&jobs, &other);
        let none = if named {
            pipeline.add_consumers_named("pool", 0, nth)
        } else {
            pipeline.add_consumers(0, nth)
        };
        assert!(none.is_empty());
        match pipeline.run().await {
            Err(PipelineError::EmptyGroup { group }) => {
                assert_eq!(group, if named { "pool" } else { "Worker" })
            }
            other => panic!("expected EmptyGroup, got {other:?}"),
        }
    }

    // A given name that is an instance's: both stages named.
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("Worker[1]", genstage::from_iter(0..10u64));
    for w in pipeline.add_consumers(2, nth) {
        pipeline.subscribe(&jobs, &w);
    }
    let error = pipeline.run().await.expect_err("a name taken twice");
    assert_eq!(
        error.to_string(),
        "two stages are named `Worker[1]`: stage #0 (named explicitly) and stage #2 (instance 1 \
         of a group named after its type); a name given explicitly must differ from every other \
         stage's name"
    );

    // A group subscribed to a partitioned stage without its partitions: told how, in builder terms.
    let mut pipeline = Pipeline::new();
    let split = pipeline.add_producer(Split);
    for w in pipeline.add_consumers(3, nth) {
        pipeline.subscribe(&split, &w);
    }
    let error = pipeline.run().await.expect_err("partitions missing");
    assert_eq!(
        error.to_string(),
        "the subscriptions to `Split` do not fit its dispatcher: `Worker[0]` subscribes without a \
         partition: a subscription to a partitioned stage names its partition (`partition = i` in \
         `pipeline!`, `SubscribeOptions::new().partition(i)` through the builder or the handle)"
    );
    assert!(done.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_ended_gives_the_report_of_a_stage_of_a_pipeline_that_has_ended(
) -> Result<(), Box<dyn std::error::Error>> {
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer(genstage::from_iter(0..3u64));
    let workers = pipeline.add_consumers(2, |i| worker(format!("Worker[{i}]"), &done));
    for worker in &workers {
        pipeline.subscribe(&jobs, worker);
    }
    let running = pipeline.start();
    // A monitor that asks only once the (short) run is over, as a slow one may.
    within("the run's end", until(|| running.is_finished())).await;
    let late = running.stage_ended(&workers[1]).await?;
    let report = running.await?;
    assert_eq!(report.stage("Worker[1]"), Some(&late));
    assert_eq!(late.status, StageStatus::Finished);
    Ok(())
}
