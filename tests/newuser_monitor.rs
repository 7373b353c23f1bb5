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
    done: Arc<Mutex<Vec<(String, u64)>>>,
}

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
    let workers = pipeline.add_consumers(3, |i| Worker {
        id: format!("Worker[{i}]"),
        done: done.clone(),
    });
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
    // Asked again, and by many at once, the same report.
    let again = futures::future::join_all((0..5).map(|_| running.stage_ended(&workers[dead])));
    for report in within("the ended worker's report", again).await {
        assert_eq!(report?, ended);
    }
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
            Worker {
                id: replacement_name.clone(),
                done: done.clone(),
            },
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
    let queue_report = report.stage("queue").expect("the queue's report");
    assert_eq!(
        (
            queue_report.emitted,
            queue_report.lost,
            &queue_report.status
        ),
        (JOBS, 0, &StageStatus::ShutDown)
    );
    for stage in &report.stages[1..] {
        let by_it = done
            .lock()
            .unwrap()
            .iter()
            .filter(|(w, _)| *w == stage.name)
            .count();
        let poison = u64::from(stage.name == dead_name);
        assert_eq!(stage.events_in, by_it as u64, "{}", stage.name);
        assert_eq!(stage.lost, poison, "{}", stage.name);
        if stage.name != dead_name {
            assert_eq!(stage.status, StageStatus::Finished, "{}", stage.name);
        }
    }
    assert_eq!(report.totals().lost, 1);
    Ok(())
}
