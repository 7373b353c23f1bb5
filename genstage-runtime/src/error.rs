//! Errors: what a stage callback may fail with, and what a pipeline reports.

use std::fmt;

/// The error a stage callback returns. Any `std::error::Error + Send + Sync` converts into it with `?`.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Invalid demand settings for a subscription (GenStage's `bad_opts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemandError {
    /// `max_demand` must be at least 1.
    MaxDemandZero,
    /// `min_demand` must be less than `max_demand`.
    MinDemandTooLarge {
        /// The `min_demand` given.
        min_demand: usize,
        /// The `max_demand` it was checked against.
        max_demand: usize,
    },
}

impl fmt::Display for DemandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemandError::MaxDemandZero => {
                write!(
                    f,
                    "expected max_demand to be equal to or greater than 1, got: 0"
                )
            }
            DemandError::MinDemandTooLarge {
                min_demand,
                max_demand,
            } => write!(
                f,
                "expected min_demand to be equal to or less than {}, got: {min_demand}",
                max_demand - 1
            ),
        }
    }
}

impl std::error::Error for DemandError {}

/// Why a pipeline did not run to a clean end. Every variant names the stage(s) involved.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError {
    /// A stage's callback returned an error.
    StageFailed {
        /// The stage's name.
        stage: String,
        /// The error it returned.
        error: StageError,
    },
    /// A stage's callback panicked.
    StagePanicked {
        /// The stage's name.
        stage: String,
        /// The panic message, when it was a string.
        message: String,
    },
    /// The options of a subscription are invalid.
    InvalidSubscription {
        /// The producer side of the edge.
        producer: String,
        /// The consumer side of the edge.
        consumer: String,
        /// What is wrong.
        error: DemandError,
    },
    /// The options of a stage are invalid.
    InvalidOptions {
        /// The stage's name.
        stage: String,
        /// What is wrong.
        message: String,
    },
    /// A producer or producer_consumer has no consumer: its events would go nowhere.
    NoConsumer {
        /// The stage's name.
        stage: String,
    },
    /// A consumer or producer_consumer has no producer: nothing would ever feed it.
    NoProducer {
        /// The stage's name.
        stage: String,
    },
    /// The subscriptions form a cycle, so the pipeline could never finish.
    Cycle {
        /// The stages on the cycle, in order.
        stages: Vec<String>,
    },
    /// A handle from another pipeline was used.
    ForeignStage {
        /// The stage's position in its own pipeline, as `#index`.
        stage: String,
    },
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::StageFailed { stage, error } => {
                write!(f, "stage `{stage}` failed: {error}")
            }
            PipelineError::StagePanicked { stage, message } => {
                write!(f, "stage `{stage}` panicked: {message}")
            }
            PipelineError::InvalidSubscription {
                producer,
                consumer,
                error,
            } => {
                write!(
                    f,
                    "invalid subscription of `{consumer}` to `{producer}`: {error}"
                )
            }
            PipelineError::InvalidOptions { stage, message } => {
                write!(f, "invalid options for stage `{stage}`: {message}")
            }
            PipelineError::NoConsumer { stage } => {
                write!(
                    f,
                    "stage `{stage}` has no consumer: its events would go nowhere"
                )
            }
            PipelineError::NoProducer { stage } => {
                write!(
                    f,
                    "stage `{stage}` has no producer: nothing would ever feed it"
                )
            }
            PipelineError::Cycle { stages } => {
                write!(f, "the subscriptions form a cycle: {}", stages.join(" -> "))
            }
            PipelineError::ForeignStage { stage } => {
                write!(f, "stage `{stage}` belongs to another pipeline")
            }
        }
    }
}

impl std::error::Error for PipelineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipelineError::StageFailed { error, .. } => Some(error.as_ref()),
            PipelineError::InvalidSubscription { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl PipelineError {
    /// The name of the stage this error is about (the consumer side, for a subscription).
    pub fn stage(&self) -> &str {
        match self {
            PipelineError::StageFailed { stage, .. }
            | PipelineError::StagePanicked { stage, .. }
            | PipelineError::InvalidOptions { stage, .. }
            | PipelineError::NoConsumer { stage }
            | PipelineError::NoProducer { stage }
            | PipelineError::ForeignStage { stage } => stage,
            PipelineError::InvalidSubscription { consumer, .. } => consumer,
            PipelineError::Cycle { stages } => stages.first().map(String::as_str).unwrap_or(""),
        }
    }
}
