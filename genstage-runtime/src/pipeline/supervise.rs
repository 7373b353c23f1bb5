//! Running a pipeline: one task per stage, and the notices each stage's end sends its neighbours.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dispatcher::SubscriptionId;
use crate::error::PipelineError;
use crate::protocol::{Control, EndReason};
use crate::report::{Report, StageReport, StageStatus};
use crate::run::{panic_message, Abort, Exit, Outcome};

use super::{Pipeline, Role, Run};

/// What a [`PipelineHandle`](super::PipelineHandle) asks of its running pipeline.
#[derive(Debug)]
pub(super) enum Request {
    /// Stop the producers, let every event already emitted be handled, and end; abort whatever is
    /// still running at `deadline`, if any.
    Shutdown { deadline: Option<Instant> },
    /// Stop every stage where it stands.
    Abort,
}

impl Pipeline {
    /// Runs every stage to completion.
    ///
    /// Must be awaited within a tokio runtime with its time driver enabled (as `#[tokio::main]` and
    /// `#[tokio::test]` make it); each stage runs as its own task. To run a pipeline in the
    /// background, and shut it down, use [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// [`PipelineError::NoRuntime`] outside a tokio runtime; a wiring mistake
    /// ([`PipelineError::NoConsumer`], [`PipelineError::NoProducer`], [`PipelineError::Cycle`],
    /// [`PipelineError::InvalidSubscription`]) or a name given to two stages
    /// ([`PipelineError::DuplicateName`]) before anything runs; then, once every stage has
    /// ended, the first stage that failed or panicked, with the report of the whole run
    /// ([`PipelineError::report`]): every stage's counts and status, and the events lost.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future aborts every stage of the pipeline, without a report: to stop a pipeline
    /// and still get its report, [`start`](Self::start) it and use its handle.
    pub fn run(self) -> Run {
        Run::new(self.run_to_end(None))
    }

    pub(super) async fn run_to_end(
        mut self,
        mut requests: Option<mpsc::UnboundedReceiver<Request>>,
    ) -> Result<Report, PipelineError> {
        if !tokio_with_timers() {
            return Err(PipelineError::NoRuntime);
        }
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.disambiguate_names()?;
        let edges = self.validate()?;
        let Pipeline {
            stages,
            edges: edge_list,
            ..
        } = self;

        // Wire every edge before any task runs: each consumer finds its subscriptions first in its
        // mailbox, and each producer finds all its subscribers and their initial asks.
        let mut wiring: Vec<(usize, usize, SubscriptionId)> = Vec::with_capacity(edge_list.len());
        for (sub, (edge, (limits, cancel))) in edge_list.into_iter().zip(edges).enumerate() {
            let sub = sub as SubscriptionId;
            let producer_name = Arc::from(stages[edge.producer].name.as_str());
            (edge.connect)(sub, limits, cancel, producer_name);
            wiring.push((edge.producer, edge.consumer, sub));
        }

        let abort = Arc::new(Abort::default());
        let mut tasks = JoinSet::new();
        let mut task_stage = std::collections::HashMap::new();
        let mut names = Vec::with_capacity(stages.len());
        let mut controls = Vec::with_capacity(stages.len());
        let mut producers = Vec::new();
        for (index, stage) in stages.into_iter().enumerate() {
            stage.label.set_unique(&stage.name);
            let task = (stage.start)(Arc::from(stage.name.as_str()), abort.clone());
            let handle = tasks.spawn(task);
            task_stage.insert(handle.id(), index);
            if stage.role == Role::Producer {
                producers.push(index);
            }
            names.push(stage.name);
            controls.push(stage.control);
        }

        let mut reports: Vec<Option<StageReport>> = (0..names.len()).map(|_| None).collect();
        let mut first_failure: Option<(usize, Failure)> = None;
        // When a graceful shutdown gives up, and the stages still busy then.
        let mut deadline: Option<Instant> = None;
        let mut busy_at_deadline: Option<Vec<String>> = None;
        loop {
            let joined = tokio::select! {
                joined = tasks.join_next_with_id() => match joined {
                    Some(joined) => joined,
                    None => break,
                },
                request = next_request(&mut requests) => {
                    match request {
                        Some(Request::Shutdown { deadline: at }) => {
                            // Producers stop emitting; the rest follows as their input ends.
                            for &index in &producers {
                                if reports[index].is_none() {
                                    controls[index].control(Control::Shutdown);
                                }
                            }
                            deadline = at;
                        }
                        Some(Request::Abort) => abort.abort(),
                        // The handle is gone: the pipeline runs on, detached.
                        None => requests = None,
                    }
                    continue;
                }
                () = sleep_until_some(deadline) => {
                    busy_at_deadline = Some(
                        (0..names.len())
                            .filter(|&index| reports[index].is_none())
                            .map(|index| names[index].clone())
                            .collect(),
                    );
                    deadline = None;
                    abort.abort();
                    continue;
                }
            };
            let (task, outcome) = match joined {
                Ok((task, outcome)) => (task, outcome),
                // Callbacks' panics are caught in the stage loops; this is a panic of the runtime
                // itself, and the stage's counts are gone with its task.
                Err(error) => (error.id(), lost_task(error)),
            };
            let Some(&index) = task_stage.get(&task) else {
                continue;
            };
            let name = &names[index];
            let Outcome {
                exit,
                events_in,
                events_out,
                emitted,
                discarded,
                excess,
                losses,
            } = outcome;
            let status = exit.status();
            match exit {
                Exit::Failed(error) => {
                    tracing::error!(stage = %name, "stage {name} failed: {error}");
                    first_failure.get_or_insert((index, Failure::Error(error)));
                }
                Exit::Panicked(message) => {
                    tracing::error!(stage = %name, "stage {name} panicked: {message}");
                    first_failure.get_or_insert((index, Failure::Panic(message)));
                }
                _ => {}
            }
            // Tell the neighbours. The root cause travels downstream with a failure.
            let reason = match &status {
                StageStatus::Cancelled { cause: Some(cause) } => {
                    EndReason::Failed(Arc::from(cause.as_str()))
                }
                StageStatus::Failed(_) | StageStatus::Panicked(_) => {
                    EndReason::Failed(Arc::from(name.as_str()))
                }
                _ => EndReason::Finished,
            };
            for &(producer, consumer, sub) in &wiring {
                if producer == index {
                    controls[consumer].upstream_ended(sub, reason.clone());
                }
                if consumer == index {
                    controls[producer].downstream_cancelled(sub);
                }
            }
            reports[index] = Some(StageReport {
                name: name.clone(),
                events_in,
                events_out,
                emitted,
                discarded,
                lost: losses.iter().map(|loss| loss.count).sum(),
                losses,
                excess,
                status,
            });
        }
        let report = Report {
            stages: reports.into_iter().flatten().collect(),
        };
        if let Some(busy) = busy_at_deadline {
            return Err(PipelineError::ShutdownTimeout {
                busy,
                report: Box::new(report),
            });
        }
        match first_failure {
            None => Ok(report),
            Some((index, failure)) => {
                let stage = names[index].clone();
                let report = Box::new(report);
                Err(match failure {
                    Failure::Error(error) => PipelineError::StageFailed {
                        stage,
                        error,
                        report,
                    },
                    Failure::Panic(message) => PipelineError::StagePanicked {
                        stage,
                        message,
                        report,
                    },
                })
            }
        }
    }
}

/// The next request from the pipeline's handle; never, for a pipeline without one.
async fn next_request(requests: &mut Option<mpsc::UnboundedReceiver<Request>>) -> Option<Request> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until `deadline`; never, without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether this runs in a tokio runtime with its time driver, which producers' back-off needs.
/// tokio has no query for the time driver: making a timer panics without it.
fn tokio_with_timers() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
        && std::panic::catch_unwind(|| drop(tokio::time::sleep(std::time::Duration::ZERO))).is_ok()
}

/// The first failure of a run, which its error names.
enum Failure {
    Error(crate::error::StageError),
    Panic(String),
}

/// The outcome of a stage whose task itself panicked or was cancelled.
fn lost_task(error: tokio::task::JoinError) -> Outcome {
    let message = if error.is_cancelled() {
        "cancelled".to_owned()
    } else {
        panic_message(&*error.into_panic())
    };
    Outcome {
        exit: Exit::Panicked(message),
        events_in: 0,
        events_out: 0,
        emitted: 0,
        discarded: 0,
        excess: 0,
        losses: Vec::new(),
    }
}
