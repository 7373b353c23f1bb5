//! Running a pipeline: one task per stage, and the notices each stage's end sends its neighbours.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::dispatcher::SubscriptionId;
use crate::error::PipelineError;
use crate::protocol::EndReason;
use crate::report::{Report, StageReport, StageStatus};
use crate::run::{Exit, Outcome};

use super::Pipeline;

impl Pipeline {
    /// Runs every stage to completion.
    ///
    /// Must be called from within a tokio runtime; each stage runs as its own task.
    ///
    /// # Errors
    ///
    /// A wiring mistake ([`PipelineError::NoConsumer`], [`PipelineError::NoProducer`],
    /// [`PipelineError::Cycle`], [`PipelineError::InvalidSubscription`]) before anything runs; then
    /// the first stage that failed or panicked.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future aborts every stage of the pipeline.
    pub async fn run(mut self) -> Result<Report, PipelineError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.disambiguate_names();
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
        let mut first_error: Option<PipelineError> = None;
        while let Some(joined) = tasks.join_next_with_id().await {
            let (task, outcome) = match joined {
                Ok((task, outcome)) => (task, Ok(outcome)),
                Err(error) => (error.id(), Err(error)),
            };
            let Some(&index) = task_stage.get(&task) else {
                continue;
            };
            let name = &names[index];
            let (status, counts) = match outcome {
                Ok(Outcome {
                    exit,
                    events_in,
                    events_out,
                    discarded,
                    excess,
                }) => {
                    let status = match exit {
                        Exit::Finished => StageStatus::Finished,
                        Exit::Cancelled(cause) => StageStatus::Cancelled {
                            cause: cause.map(|c| c.to_string()),
                        },
                        Exit::Failed(error) => {
                            let message = error.to_string();
                            first_error.get_or_insert(PipelineError::StageFailed {
                                stage: name.clone(),
                                error,
                            });
                            StageStatus::Failed(message)
                        }
                    };
                    (status, (events_in, events_out, discarded, excess))
                }
                Err(error) => {
                    let message = panic_message(error);
                    first_error.get_or_insert(PipelineError::StagePanicked {
                        stage: name.clone(),
                        message: message.clone(),
                    });
                    (StageStatus::Panicked(message), (0, 0, 0, 0))
                }
            };
            // Tell the neighbours. The root cause travels downstream with a failure.
            let reason = match &status {
                StageStatus::Finished => EndReason::Finished,
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
            let (events_in, events_out, discarded, excess) = counts;
            reports[index] = Some(StageReport {
                name: name.clone(),
                events_in,
                events_out,
                discarded,
                excess,
                status,
            });
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(Report {
                stages: reports.into_iter().flatten().collect(),
            }),
        }
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    if error.is_cancelled() {
        return "cancelled".to_owned();
    }
    let payload = error.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
