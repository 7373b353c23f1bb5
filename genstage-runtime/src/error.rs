//! Errors: what a stage callback may fail with, and what a pipeline reports.

use std::fmt;
use std::time::Duration;

use crate::report::Report;
use crate::restart::Restart;
use crate::subscription::SubscriptionTag;

/// The error a stage callback returns. Any `std::error::Error + Send + Sync` converts into it with `?`.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Invalid demand settings for a subscription (GenStage's `bad_opts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DemandError {
    /// `max_demand` must be at least 1.
    MaxDemandZero,
    /// `max_demand` must be at most [`MAX_DEMAND_LIMIT`](crate::demand::MAX_DEMAND_LIMIT), so that
    /// demand summed over consumers never overflows.
    MaxDemandTooLarge {
        /// The `max_demand` given.
        max_demand: usize,
    },
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
            DemandError::MaxDemandTooLarge { max_demand } => write!(
                f,
                "expected max_demand to be equal to or less than {}, got: {max_demand}",
                crate::demand::MAX_DEMAND_LIMIT
            ),
            DemandError::MinDemandTooLarge {
                min_demand,
                max_demand,
            } => write!(
                f,
                "expected min_demand to be equal to or less than {}, got: {min_demand}",
                max_demand.saturating_sub(1)
            ),
        }
    }
}

impl std::error::Error for DemandError {}

/// What a [`to_stream`](crate::to_stream) sink's `handle_events` fails with when its
/// [`EventStream`](crate::EventStream) was dropped: the consumer loop recognises it and stops the
/// sink as cancelled, not failed, counting the events the stream had not yielded as lost
/// (`LossReason::Unhandled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamDropped {
    /// The events of the batch that the stream yielded before it was dropped: handled.
    pub(crate) delivered: u64,
}

impl StreamDropped {
    /// The stream was dropped after yielding `delivered` events of the sink's batch.
    pub(crate) fn after(delivered: usize) -> Self {
        StreamDropped {
            delivered: delivered as u64,
        }
    }
}

impl fmt::Display for StreamDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the stream was dropped after yielding {} events of the batch",
            self.delivered
        )
    }
}

impl std::error::Error for StreamDropped {}

/// What a consumer fails with when its producer's dispatcher refused one of its subscriptions
/// ([`CancelReason::Refused`](crate::CancelReason::Refused)) and the subscription was `permanent`
/// or `transient`, as by default: the pipeline's run returns it in a
/// [`PipelineError::StageFailed`] naming the consumer, whose `error.downcast_ref()` finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionRefused {
    /// The producer whose dispatcher refused the subscription.
    pub producer: String,
    /// What the dispatcher said.
    pub reason: String,
}

impl fmt::Display for SubscriptionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its subscription to `{}` was refused by that stage's dispatcher: {}",
            self.producer, self.reason
        )
    }
}

impl std::error::Error for SubscriptionRefused {}

/// Why a pipeline did not run to a clean end. Every variant names the stage(s) involved.
///
/// A failure at run time ([`StageFailed`](Self::StageFailed), [`StagePanicked`](Self::StagePanicked))
/// names the first stage that failed (leaving out those whose failure the handle dismissed:
/// [`PipelineHandle::dismiss_failure`](crate::PipelineHandle::dismiss_failure)) and carries the
/// whole [`Report`] of the run: every stage's counts, every failure, and the events lost with their
/// reasons ([`PipelineError::report`]).
///
/// Its `Debug` form, which a `main` returning the error prints, is the variant's name and the
/// message, followed by the report's table when the error carries a report:
///
/// ```text
/// Error: StageFailed: stage `Store` failed: disk full
///
/// stage    in  out  emitted  discarded  lost  status
/// ...
/// ```
#[non_exhaustive]
pub enum PipelineError {
    /// A stage's callback returned an error.
    StageFailed {
        /// The stage's name.
        stage: String,
        /// The error it returned.
        error: StageError,
        /// The report of the run, every stage included.
        report: Box<Report>,
    },
    /// A stage's callback panicked.
    StagePanicked {
        /// The stage's name.
        stage: String,
        /// The panic message, when it was a string.
        message: String,
        /// The report of the run, every stage included.
        report: Box<Report>,
    },
    /// `run()` was awaited outside a tokio runtime, or in one without its time driver (which
    /// producers' back-off needs). The check makes a timer: in a runtime without timers, tokio's
    /// panic message for it is printed (and a build with `panic = "abort"` aborts there).
    NoRuntime,
    /// The options of a subscription are invalid.
    InvalidSubscription {
        /// The producer side of the edge.
        producer: String,
        /// The consumer side of the edge.
        consumer: String,
        /// What is wrong.
        error: DemandError,
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
    /// Two stages would have the same name: a name given explicitly (`add_*_named`,
    /// `name = Stage` in `pipeline!`) is also another stage's name. Names generated from types are
    /// made unique instead (`Tap`, `Tap#2`; `Printer[0]`, `Printer[1]` for a group).
    DuplicateName {
        /// The name.
        name: String,
        /// The two stages, in the order they were added, each as its position and how it got the
        /// name: `stage #2 (named explicitly)`.
        stages: [String; 2],
    },
    /// A group `[S; n]` of `pipeline!` has no instance (`n` is 0 at run time), or one of
    /// [`Pipeline::add_consumers`](crate::Pipeline::add_consumers) and its siblings was given a
    /// count of 0: it would start no stage.
    EmptyGroup {
        /// The group's name: its name in the pipeline, or its stage expression (`pipeline!`); the
        /// name given, or its type's (the builder).
        group: String,
    },
    /// The subscriptions to a stage do not fit its dispatcher: a partition missing, out of range,
    /// taken twice or left without a consumer, a selector on a stage whose dispatcher takes none,
    /// or a consumer subscribed twice to a stage that broadcasts.
    InvalidDispatch {
        /// The producer side: the stage whose dispatcher it is.
        stage: String,
        /// What is wrong.
        error: DispatchSetupError,
    },
    /// A stage whose restart policy restarts it (`permanent` or `transient`) was added as a value,
    /// which cannot be made again: add it with a constructor (`add_consumer_with` and its
    /// siblings), or, in `pipeline!`, write it as an expression that can be evaluated again.
    NotRebuildable {
        /// The stage's name.
        stage: String,
        /// Its restart policy.
        restart: Restart,
        /// The builder method that adds a stage of its role with a constructor:
        /// `add_producer_with`, `add_producer_consumer_with` or `add_consumer_with`.
        constructor: &'static str,
    },
    /// A stage failed once more than its restart policy allows within its window
    /// ([`RestartPolicy::max_restarts`](crate::RestartPolicy::max_restarts)): it was stopped for good.
    RestartLimit {
        /// The stage's name.
        stage: String,
        /// The restarts its policy allows within `within`.
        max_restarts: u32,
        /// The window.
        within: Duration,
        /// Its last failures, oldest first, the one that stopped it last.
        failures: Vec<String>,
        /// With redelivery, the event of the batch that failed the stage each time it was handed
        /// again: its index in the batch.
        poison: Option<usize>,
        /// The report of the run, every stage included.
        report: Box<Report>,
    },
    /// A handle from another pipeline was used.
    ForeignStage {
        /// The stage's name in its own pipeline.
        stage: String,
    },
    /// A graceful shutdown with a time limit
    /// ([`PipelineHandle::shutdown_within`](crate::PipelineHandle::shutdown_within)) ran out of time:
    /// these stages were still busy, and were aborted.
    ShutdownTimeout {
        /// The stages still running when the time ran out, in the order they were added.
        busy: Vec<String>,
        /// The report of the run: what the busy stages held is counted as lost.
        report: Box<Report>,
    },
    /// A stage to subscribe, through a running pipeline's handle, has ended.
    StageEnded {
        /// The stage's name.
        stage: String,
    },
    /// The subscription to cancel is not one of the pipeline's, or has ended already.
    UnknownSubscription {
        /// The subscription.
        subscription: SubscriptionTag,
        /// Its consumer's name, when it is one of the pipeline's subscriptions that has ended.
        consumer: Option<String>,
    },
    /// The pipeline has ended: its handle can add and wire nothing more.
    NotRunning,
    /// The pipeline is shutting down (a graceful shutdown or an abort was asked for): its handle
    /// adds and subscribes nothing more, though it still cancels, and still replaces a running
    /// subscription by a `resubscribe`.
    ShuttingDown,
    /// The task running a started pipeline was lost: its tokio runtime shut down, or genstage
    /// itself panicked (a bug: please report it).
    Internal {
        /// What happened.
        message: String,
    },
}

impl fmt::Debug for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {self}", self.variant())?;
        match self.report() {
            Some(report) => write!(f, "\n\n{report}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::StageFailed { stage, error, .. } => {
                write!(f, "stage `{stage}` failed: {error}")
            }
            PipelineError::StagePanicked { stage, message, .. } => {
                write!(f, "stage `{stage}` panicked: {message}")
            }
            PipelineError::NoRuntime => f.write_str(
                "a pipeline runs on tokio: call `run()` from within a tokio runtime with its time \
                 driver enabled (`#[tokio::main]`, or a runtime built with `enable_all()`)",
            ),
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
            PipelineError::EmptyGroup { group } => {
                write!(
                    f,
                    "the group `{group}` has 0 instances and starts no stage: the number of instances must be at least 1"
                )
            }
            PipelineError::ForeignStage { stage } => {
                write!(f, "stage `{stage}` belongs to another pipeline")
            }
            PipelineError::NotRebuildable {
                stage,
                restart,
                constructor,
            } => write!(
                f,
                "stage `{stage}` is restarted ({restart}), but it was added as a value, which cannot be made again: add it with a constructor (`{constructor}(|| …)`), or, in `pipeline!`, write it as an expression that stands on its own (no local variable, no call by a bare name)"
            ),
            PipelineError::RestartLimit {
                stage,
                max_restarts,
                within,
                failures,
                poison,
                ..
            } => {
                if within.is_zero() {
                    // A window of 0 holds the restarts less than a second old (see
                    // `RestartPolicy::max_restarts`).
                    write!(
                        f,
                        "stage `{stage}` failed more often than its restart policy allows ({max_restarts} restarts within a second: a window of 0), and was stopped"
                    )?;
                } else {
                    write!(
                        f,
                        "stage `{stage}` failed more often than its restart policy allows ({max_restarts} restarts in {within:?}), and was stopped"
                    )?;
                }
                if let Some(index) = poison {
                    write!(f, "; the event at index {index} of its batch failed it each time")?;
                }
                if let Some(last) = failures.last() {
                    write!(f, "; last failure: {last}")?;
                }
                Ok(())
            }
            PipelineError::InvalidDispatch { stage, error } => {
                write!(f, "the subscriptions to `{stage}` do not fit its dispatcher: {error}")
            }
            PipelineError::DuplicateName {
                name,
                stages: [first, second],
            } => write!(
                f,
                "two stages are named `{name}`: {first} and {second}; a name given explicitly must differ from every other stage's name"
            ),
            PipelineError::ShutdownTimeout { busy, .. } => write!(
                f,
                "the shutdown ran out of time; still busy, and aborted: {}",
                busy.join(", ")
            ),
            PipelineError::Internal { message } => f.write_str(message),
            PipelineError::StageEnded { stage } => write!(f, "stage `{stage}` has ended"),
            PipelineError::UnknownSubscription {
                subscription,
                consumer: Some(consumer),
            } => write!(
                f,
                "subscription {} of stage `{consumer}` has ended",
                subscription.0
            ),
            PipelineError::UnknownSubscription {
                subscription,
                consumer: None,
            } => write!(
                f,
                "subscription {} is not one of the pipeline's: it is another pipeline's, or was \
                 never made",
                subscription.0
            ),
            PipelineError::NotRunning => f.write_str("the pipeline has ended"),
            PipelineError::ShuttingDown => {
                f.write_str("the pipeline is shutting down: it adds and wires nothing more")
            }
        }
    }
}

impl std::error::Error for PipelineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PipelineError::StageFailed { error, .. } => Some(error.as_ref()),
            PipelineError::InvalidSubscription { error, .. } => Some(error),
            PipelineError::InvalidDispatch { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl PipelineError {
    /// The name of the stage this error is about (the consumer side, for a subscription; the first
    /// busy stage, for a shutdown timeout; empty for [`NoRuntime`](Self::NoRuntime),
    /// [`Internal`](Self::Internal) and a subscription that was never the pipeline's).
    pub fn stage(&self) -> &str {
        match self {
            PipelineError::StageFailed { stage, .. }
            | PipelineError::StagePanicked { stage, .. }
            | PipelineError::NoConsumer { stage }
            | PipelineError::NoProducer { stage }
            | PipelineError::ForeignStage { stage }
            | PipelineError::DuplicateName { name: stage, .. }
            | PipelineError::EmptyGroup { group: stage }
            | PipelineError::InvalidDispatch { stage, .. }
            | PipelineError::NotRebuildable { stage, .. }
            | PipelineError::RestartLimit { stage, .. }
            | PipelineError::StageEnded { stage } => stage,
            PipelineError::InvalidSubscription { consumer, .. }
            | PipelineError::UnknownSubscription {
                consumer: Some(consumer),
                ..
            } => consumer,
            PipelineError::Cycle { stages }
            | PipelineError::ShutdownTimeout { busy: stages, .. } => {
                stages.first().map(String::as_str).unwrap_or("")
            }
            PipelineError::NoRuntime
            | PipelineError::Internal { .. }
            | PipelineError::UnknownSubscription { consumer: None, .. }
            | PipelineError::NotRunning
            | PipelineError::ShuttingDown => "",
        }
    }

    /// The variant's name, as its `Debug` form begins.
    fn variant(&self) -> &'static str {
        match self {
            PipelineError::StageFailed { .. } => "StageFailed",
            PipelineError::StagePanicked { .. } => "StagePanicked",
            PipelineError::NoRuntime => "NoRuntime",
            PipelineError::InvalidSubscription { .. } => "InvalidSubscription",
            PipelineError::NoConsumer { .. } => "NoConsumer",
            PipelineError::NoProducer { .. } => "NoProducer",
            PipelineError::Cycle { .. } => "Cycle",
            PipelineError::DuplicateName { .. } => "DuplicateName",
            PipelineError::EmptyGroup { .. } => "EmptyGroup",
            PipelineError::InvalidDispatch { .. } => "InvalidDispatch",
            PipelineError::NotRebuildable { .. } => "NotRebuildable",
            PipelineError::RestartLimit { .. } => "RestartLimit",
            PipelineError::ForeignStage { .. } => "ForeignStage",
            PipelineError::ShutdownTimeout { .. } => "ShutdownTimeout",
            PipelineError::StageEnded { .. } => "StageEnded",
            PipelineError::UnknownSubscription { .. } => "UnknownSubscription",
            PipelineError::NotRunning => "NotRunning",
            PipelineError::ShuttingDown => "ShuttingDown",
            PipelineError::Internal { .. } => "Internal",
        }
    }

    /// The report of the run, for a failure at run time; `None` for a mistake found before anything
    /// ran.
    pub fn report(&self) -> Option<&Report> {
        match self {
            PipelineError::StageFailed { report, .. }
            | PipelineError::StagePanicked { report, .. }
            | PipelineError::RestartLimit { report, .. }
            | PipelineError::ShutdownTimeout { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// How the subscriptions to a stage do not fit its dispatcher
/// ([`PipelineError::InvalidDispatch`]), found before the pipeline runs, or, for a subscription
/// made through a running pipeline's handle, before it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchSetupError {
    /// `partition(0)`: a partitioned stage needs at least one partition.
    NoPartitions,
    /// More partitions than a stage may have
    /// ([`MAX_PARTITIONS`](crate::dispatcher::MAX_PARTITIONS)).
    TooManyPartitions {
        /// How many the stage asked for.
        partitions: usize,
    },
    /// The dispatcher partitions, but the stage gives it no partition function
    /// ([`Dispatch::custom`](crate::Dispatch::custom) instead of
    /// [`Dispatch::custom_partitioned`](crate::Dispatch::custom_partitioned)).
    NoPartitionFunction,
    /// A subscription to a partitioned stage does not name its partition.
    PartitionMissing {
        /// The consumer.
        consumer: String,
    },
    /// A subscription names a partition that does not exist.
    PartitionOutOfRange {
        /// The consumer.
        consumer: String,
        /// The partition it names.
        partition: usize,
        /// How many partitions the stage has.
        partitions: usize,
    },
    /// Two subscriptions name the same partition.
    PartitionTaken {
        /// The second consumer.
        consumer: String,
        /// The partition.
        partition: usize,
        /// The consumer that took it first.
        taken_by: String,
    },
    /// A partition has no consumer: its events would go nowhere.
    PartitionVacant {
        /// The partition.
        partition: usize,
        /// How many partitions the stage has.
        partitions: usize,
    },
    /// A subscription names a partition of a stage that does not partition its events.
    NotPartitioned {
        /// The consumer.
        consumer: String,
    },
    /// A subscription has a selector, but the stage's dispatcher takes none (it does not
    /// [`select`](crate::dispatcher::Dispatcher::selects): a broadcast's does; one of the user's
    /// may broadcast and still take none).
    NotBroadcast {
        /// The consumer.
        consumer: String,
    },
    /// A consumer subscribes a second time to a stage that broadcasts its events
    /// ([`Dispatcher::broadcasts`](crate::dispatcher::Dispatcher::broadcasts)), which would hand it
    /// every event twice (GenStage's `:already_subscribed`): twice in the builder, or through the
    /// handle while its first subscription there runs. A
    /// [`resubscribe`](crate::PipelineHandle::resubscribe) that replaces that subscription is not
    /// a second one.
    AlreadySubscribed {
        /// The consumer.
        consumer: String,
    },
}

impl fmt::Display for DispatchSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchSetupError::NoPartitions => {
                f.write_str("it has 0 partitions: `partition(n)` needs n >= 1")
            }
            DispatchSetupError::TooManyPartitions { partitions } => write!(
                f,
                "it has {partitions} partitions: a stage has at most {}",
                crate::dispatcher::MAX_PARTITIONS
            ),
            DispatchSetupError::NoPartitionFunction => f.write_str(
                "its dispatcher partitions events but has no partition function: use \
                 `Dispatch::partition` or `Dispatch::custom_partitioned`",
            ),
            DispatchSetupError::PartitionMissing { consumer } => write!(
                f,
                "`{consumer}` subscribes without a partition: a subscription to a partitioned \
                 stage names its partition (`partition = i` in `pipeline!`, \
                 `SubscribeOptions::new().partition(i)` through the builder or the handle)"
            ),
            DispatchSetupError::PartitionOutOfRange {
                consumer,
                partition,
                partitions,
            } => write!(
                f,
                "`{consumer}` takes partition {partition}, but there are {partitions} \
                 (0..{partitions})"
            ),
            DispatchSetupError::PartitionTaken {
                consumer,
                partition,
                taken_by,
            } => write!(
                f,
                "`{consumer}` takes partition {partition}, already taken by `{taken_by}`: each \
                 partition has exactly one consumer"
            ),
            DispatchSetupError::PartitionVacant {
                partition,
                partitions,
            } => write!(
                f,
                "partition {partition} of {partitions} has no consumer: each partition has \
                 exactly one"
            ),
            DispatchSetupError::NotPartitioned { consumer } => write!(
                f,
                "`{consumer}` names a partition, but the stage does not partition its events"
            ),
            DispatchSetupError::NotBroadcast { consumer } => write!(
                f,
                "`{consumer}` has a selector, but the stage's dispatcher takes none (a \
                 broadcast's does)"
            ),
            DispatchSetupError::AlreadySubscribed { consumer } => write!(
                f,
                "`{consumer}` is already subscribed to it: the stage broadcasts, so a second \
                 subscription would hand it every event twice; subscribe it once (one selector \
                 can accept what two would), and replace a running subscription with \
                 `PipelineHandle::resubscribe`"
            ),
        }
    }
}

impl std::error::Error for DispatchSetupError {}
