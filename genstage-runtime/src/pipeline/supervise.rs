//! Running a pipeline: one task per stage, and the notices each stage's end sends its neighbours.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::dispatcher::SubscriptionId;
use crate::error::PipelineError;
use crate::protocol::EndReason;
use crate::report::{Report, StageReport, StageStatus};
use crate::run::{panic_message, Exit, Outcome};

use super::{Pipeline, Run};

impl Pipeline {
    /// Runs every stage to completion.
    ///
    /// Must be awaited within a tokio runtime with its time driver enabled (as `#[tokio::main]` and
    /// `#[tokio::test]` make it); each stage runs as its own task.
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
    /// Dropping the future aborts every stage of the pipeline.
    pub fn run(self) -> Run {
        Run::new(self.run_to_end())
    }

    async fn run_to_end(mut self) -> Result<Report, PipelineError> {
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
            (edge.connect)(sub, limits, cancel);
            wiring.push((edge.producer, edge.consumer, sub));
        }

        let mut tasks = JoinSet::new();
        let mut task_stage = std::collections::HashMap::new();
        let mut names = Vec::with_capacity(stages.len());
        let mut controls = Vec::with_capacity(stages.len());
        for (index, stage) in stages.into_iter().enumerate() {
            let handle = tasks.spawn(stage.task);
            task_stage.insert(handle.id(), index);
            names.push(stage.name);
            controls.push(stage.control);
        }

        let mut reports: Vec<Option<StageReport>> = (0..names.len()).map(|_| None).collect();
        let mut first_failure: Option<(usize, Failure)> = None;
        while let Some(joined) = tasks.join_next_with_id().await {
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
            let status = match exit {
                Exit::Finished => StageStatus::Finished,
                Exit::Cancelled(cause) => StageStatus::Cancelled {
                    cause: cause.map(|c| c.to_string()),
                },
                Exit::Failed(error) => {
                    let message = error.to_string();
                    tracing::error!(stage = %name, "stage {name} failed: {message}");
                    first_failure.get_or_insert((index, Failure::Error(error)));
                    StageStatus::Failed(message)
                }
                Exit::Panicked(message) => {
                    tracing::error!(stage = %name, "stage {name} panicked: {message}");
                    first_failure.get_or_insert((index, Failure::Panic(message.clone())));
                    StageStatus::Panicked(message)
                }
            };
            // Tell the neighbours. The root cause travels downstream with a failure.
            let reason = match &status {
                StageStatus::Finished | StageStatus::ShutDown | StageStatus::Aborted => {
                    EndReason::Finished
                }
                StageStatus::Cancelled { cause: Some(cause) } => {
                    EndReason::Failed(Arc::from(cause.as_str()))
                }
                StageStatus::Cancelled { cause: None } => EndReason::Finished,
                StageStatus::Failed(_) | StageStatus::Panicked(_) => {
                    EndReason::Failed(Arc::from(name.as_str()))
                }
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
