//! `PipelineHandle::dismiss_failure`: a failure dealt with by whoever runs the pipeline does not
//! fail the run, while the report still shows it and any other failure still fails the run.

use std::time::Duration;

use tokio::sync::mpsc;

use genstage::prelude::*;
use genstage::{
    from_channel, from_iter, CancelMode, LossReason, Pipeline, PipelineHandle, Report,
    RestartPolicy, StageStatus, SubscribeOptions,
};

/// A worker: sound, or failing on its first batch (`Err`, or a panic).
#[derive(Clone, Copy)]
enum Worker {
    Sound,
    Fails(&'static str),
    Panics(&'static str),
}

impl Consumer for Worker {
    type Input = u64;

    async fn handle_events(&mut self, _jobs: Vec<u64>) -> StageResult<()> {
        match *self {
            Worker::Sound => Ok(()),
            Worker::Fails(why) => Err(why.into()),
            Worker::Panics(why) => panic!("{why}"),
        }
    }
}

/// One job at a time, and a worker's end does not take the jobs down.
fn one_at_a_time() -> SubscribeOptions {
    SubscribeOptions::new()
        .max_demand(1)
        .min_demand(0)
        .cancel(CancelMode::Temporary)
}

/// Jobs `0..10` to `workers`, named as given, each subscribed one job at a time; started. Each
/// worker gets a job: the producer serves the subscriptions made before it runs in turn. The jobs
/// come through a channel, which the producer ends with once it is dropped: until then, the
/// pipeline runs.
fn start(
    workers: Vec<(&str, Worker)>,
) -> (PipelineHandle, Vec<ConsumerRef<Worker>>, mpsc::Sender<u64>) {
    let (feed, jobs) = from_channel(10);
    for job in 0..10 {
        feed.try_send(job).expect("room for every job");
    }
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", jobs);
    let workers: Vec<_> = workers
        .into_iter()
        .map(|(name, worker)| {
            let worker = pipeline.add_consumer_named(name, worker);
            pipeline.subscribe_with(&jobs, &worker, one_at_a_time());
            worker
        })
        .collect();
    (pipeline.start(), workers, feed)
}

/// Guards a wait that should end against a hang.
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("within 10 s")
}

/// Every job handled by the sound workers, but the one lost with the first batch of each of
/// `failed`.
fn assert_every_job_accounted_for(report: &Report, failed: &[&str]) {
    assert!(report.balanced(), "{report}");
    let jobs = report.stage("jobs").expect("the producer's report");
    assert_eq!(
        (jobs.emitted, jobs.status.clone()),
        (10, StageStatus::Finished)
    );
    let handled: u64 = report.stages[1..].iter().map(|s| s.events_in).sum();
    let lost: u64 = report.stages[1..].iter().map(|s| s.lost).sum();
    assert_eq!(
        (handled, lost),
        (10 - failed.len() as u64, failed.len() as u64)
    );
    for name in failed {
        let stage = report.stage(name).expect("the failed stage's report");
        assert_eq!(stage.losses[0].reason, LossReason::FailedBatch, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_dismissed_after_it_happened_leaves_the_run_ok() {
    let (running, workers, feed) = start(vec![
        ("broken", Worker::Fails("out of memory")),
        ("spare", Worker::Sound),
    ]);
    let ended = within(running.stage_ended(&workers[0])).await.unwrap();
    assert_eq!(ended.status, StageStatus::Failed("out of memory".into()));
    within(running.dismiss_failure(&workers[0])).await.unwrap();
    drop(feed);
    let report = within(running).await.expect("the failure was dismissed");
    assert_eq!(report.stage("broken"), Some(&ended));
    assert_eq!(report.stage("spare").unwrap().events_in, 9);
    assert_every_job_accounted_for(&report, &["broken"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_dismissed_as_the_run_starts_leaves_the_run_ok() {
    // The dismissal may come before the panic or after it: the run is `Ok` either way.
    let (running, workers, feed) = start(vec![
        ("panicky", Worker::Panics("boom")),
        ("spare", Worker::Sound),
    ]);
    within(running.dismiss_failure(&workers[0])).await.unwrap();
    drop(feed);
    let report = within(running).await.expect("the failure was dismissed");
    let panicky = report.stage("panicky").unwrap();
    assert_eq!(panicky.status, StageStatus::Panicked("boom".into()));
    assert_every_job_accounted_for(&report, &["panicky"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_stages_failure_still_fails_the_run() {
    let (running, workers, feed) = start(vec![
        ("first", Worker::Fails("disk full")),
        ("second", Worker::Fails("out of memory")),
        ("spare", Worker::Sound),
    ]);
    within(running.dismiss_failure(&workers[0])).await.unwrap();
    drop(feed);
    match within(running).await {
        Err(PipelineError::StageFailed {
            stage,
            error,
            report,
        }) => {
            assert_eq!(
                (stage.as_str(), error.to_string()),
                ("second", "out of memory".into())
            );
            assert_eq!(
                report.stage("first").unwrap().status,
                StageStatus::Failed("disk full".into())
            );
            assert_every_job_accounted_for(&report, &["first", "second"]);
        }
        other => panic!("expected the second worker's failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_restart_limit_leaves_the_run_ok() {
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", from_iter(0..10u64));
    let broken = || Worker::Fails("out of memory");
    let worker = pipeline.add_consumer_with_as(Some("broken".into()), broken);
    let policy = RestartPolicy::transient().max_restarts(2, Duration::from_secs(60));
    pipeline.set_restart(&worker, policy);
    pipeline.subscribe_with(&jobs, &worker, one_at_a_time());
    // Through the builder: the run may end before a dismissal through the handle would be asked.
    pipeline.dismiss_failure(&worker);
    let report = within(pipeline.run())
        .await
        .expect("the failure was dismissed");
    let broken = report.stage("broken").unwrap();
    assert_eq!(broken.status, StageStatus::Failed("out of memory".into()));
    // Three batches failed: the first, and one after each restart.
    assert_eq!((broken.restarts, broken.lost), (2, 3));
    assert_eq!(report.stage("jobs").unwrap().emitted, 3);
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_dismissal_names_a_foreign_stage_and_is_refused_once_the_run_has_ended() {
    let (running, workers, feed) = start(vec![("worker", Worker::Sound)]);
    let (other, others, other_feed) = start(vec![("other", Worker::Sound)]);
    match within(running.dismiss_failure(&others[0])).await {
        Err(PipelineError::ForeignStage { stage }) => assert_eq!(stage, "other"),
        other => panic!("expected ForeignStage, got {other:?}"),
    }
    drop((feed, other_feed));
    within(other).await.unwrap();
    within(running.stage_ended(&workers[0])).await.unwrap();
    let dismissal = running.dismiss_failure(&workers[0]);
    within(running).await.unwrap();
    // The pipeline may have ended before or after it took the dismissal.
    assert!(matches!(
        within(dismissal).await,
        Ok(()) | Err(PipelineError::NotRunning)
    ));
}

/// One job, to a worker named `broken` that fails on it: the run ends as soon as it can.
fn one_job_for_a_broken_worker() -> (Pipeline, ConsumerRef<Worker>) {
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", from_iter(0..1u64));
    let worker = pipeline.add_consumer_named("broken", Worker::Fails("out of memory"));
    pipeline.subscribe(&jobs, &worker);
    (pipeline, worker)
}

/// The report of [`one_job_for_a_broken_worker`]: the worker failed, and lost the job.
fn assert_the_broken_worker_lost_the_job(report: &Report) {
    let broken = report.stage("broken").unwrap();
    assert_eq!(broken.status, StageStatus::Failed("out of memory".into()));
    assert_eq!((broken.lost, report.stage("jobs").unwrap().emitted), (1, 1));
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_dismissal_asked_before_the_pipeline_ended_counts_though_its_stages_end_first() {
    // One job, which the worker fails on: the producer finishes and the worker fails without
    // waiting for anything, so the supervisor may find both ended before it reads the dismissal,
    // asked for as the run starts. It counts, and says so.
    let (pipeline, worker) = one_job_for_a_broken_worker();
    let running = pipeline.start();
    let dismissal = running.dismiss_failure(&worker);
    let result = within(running).await;
    within(dismissal)
        .await
        .expect("asked before the pipeline ended");
    let report = result.expect("the failure was dismissed");
    assert_the_broken_worker_lost_the_job(&report);
}

/// Passes its jobs on, or fails on its first batch.
struct Relay {
    sound: bool,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;

    async fn handle_events(&mut self, jobs: Vec<u64>) -> StageResult<Vec<u64>> {
        if self.sound {
            Ok(jobs)
        } else {
            Err("relay broke".into())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_producer_consumer_stops_its_consumers_without_failing_the_run() {
    // The relay's consumer ends cancelled by the relay's failure: not a failure of its own.
    let (feed, jobs) = from_channel(1);
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", jobs);
    let relay = pipeline.add_producer_consumer_named("relay", Relay { sound: false });
    let worker = pipeline.add_consumer_named("worker", Worker::Sound);
    pipeline.subscribe(&jobs, &relay);
    pipeline.subscribe(&relay, &worker);
    let running = pipeline.start();
    within(running.dismiss_failure(&relay)).await.unwrap();
    feed.send(0).await.unwrap();
    drop(feed);
    let report = within(running).await.expect("the failure was dismissed");
    let relay = report.stage("relay").unwrap();
    assert_eq!(relay.status, StageStatus::Failed("relay broke".into()));
    assert_eq!((relay.events_in, relay.lost), (0, 1));
    let worker = report.stage("worker").unwrap();
    let cause = Some("relay".to_owned());
    assert_eq!(worker.status, StageStatus::Cancelled { cause });
    assert_eq!(report.stage("jobs").unwrap().emitted, 1);
    assert!(report.balanced(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_fails_for_a_restart_limit_after_a_dismissed_panic() {
    let (feed, jobs) = from_channel(10);
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", jobs);
    let panicky = pipeline.add_consumer_named("panicky", Worker::Panics("boom"));
    let broken = || Worker::Fails("out of memory");
    let limited = pipeline.add_consumer_with_as(Some("limited".into()), broken);
    let policy = RestartPolicy::transient().max_restarts(0, Duration::from_secs(60));
    pipeline.set_restart(&limited, policy);
    let spare = pipeline.add_consumer_named("spare", Worker::Sound);
    for worker in [&panicky, &limited, &spare] {
        pipeline.subscribe_with(&jobs, worker, one_at_a_time());
    }
    let running = pipeline.start();
    within(running.dismiss_failure(&panicky)).await.unwrap();
    for job in 0..10 {
        feed.send(job).await.unwrap();
    }
    drop(feed);
    match within(running).await {
        Err(PipelineError::RestartLimit {
            stage,
            max_restarts,
            failures,
            report,
            ..
        }) => {
            assert_eq!((stage.as_str(), max_restarts), ("limited", 0));
            assert_eq!(failures, ["failed: out of memory"]);
            let panicky = report.stage("panicky").unwrap();
            assert_eq!(panicky.status, StageStatus::Panicked("boom".into()));
            assert_every_job_accounted_for(&report, &["panicky", "limited"]);
        }
        other => panic!("expected the restart limit of `limited`, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dismissed_consumer_supervisor_at_its_restart_intensity_leaves_the_run_ok() {
    async fn job(_job: u64) -> Result<(), std::io::Error> {
        Err(std::io::Error::other("child broke"))
    }
    let (feed, jobs) = from_channel(10);
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", jobs);
    let children = ConsumerSupervisor::new(job).transient().max_restarts(1);
    let children = pipeline.add_consumer_named("children", children);
    pipeline.subscribe(&jobs, &children);
    let running = pipeline.start();
    within(running.dismiss_failure(&children)).await.unwrap();
    // The jobs stop taking more once the supervisor has failed.
    for job in 0..10 {
        if feed.send(job).await.is_err() {
            break;
        }
    }
    drop(feed);
    let report = within(running).await.expect("the failure was dismissed");
    let children = report.stage("children").unwrap();
    assert!(
        matches!(&children.status, StageStatus::Failed(why) if why.contains("restart intensity")),
        "{report}"
    );
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn a_failure_dismissed_by_the_builder_leaves_a_short_run_ok() {
    // The run ends before the handle could dismiss anything: the builder dismisses it beforehand.
    let (mut pipeline, worker) = one_job_for_a_broken_worker();
    pipeline.dismiss_failure(&worker);
    let report = within(pipeline.run())
        .await
        .expect("the failure was dismissed");
    assert_the_broken_worker_lost_the_job(&report);

    // Another stage's failure still fails the run.
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", from_iter(0..2u64));
    let dismissed = pipeline.add_consumer_named("dismissed", Worker::Fails("disk full"));
    let failing = pipeline.add_consumer_named("failing", Worker::Panics("boom"));
    for worker in [&dismissed, &failing] {
        pipeline.subscribe_with(&jobs, worker, one_at_a_time());
    }
    pipeline.dismiss_failure(&dismissed);
    match within(pipeline.run()).await {
        Err(PipelineError::StagePanicked { stage, message, .. }) => {
            assert_eq!((stage.as_str(), message.as_str()), ("failing", "boom"))
        }
        other => panic!("expected the undismissed stage's panic, got {other:?}"),
    }
}

#[tokio::test]
async fn the_builder_refuses_to_dismiss_a_stage_of_another_pipeline() {
    let mut other = Pipeline::new();
    let foreign = other.add_consumer_named("foreign", Worker::Sound);
    let mut pipeline = Pipeline::new();
    let jobs = pipeline.add_producer_named("jobs", from_iter(0..1u64));
    let worker = pipeline.add_consumer_named("worker", Worker::Sound);
    pipeline.subscribe(&jobs, &worker);
    pipeline.dismiss_failure(&foreign);
    match within(pipeline.run()).await {
        Err(PipelineError::ForeignStage { stage }) => assert_eq!(stage, "foreign"),
        other => panic!("expected ForeignStage, got {other:?}"),
    }
}
