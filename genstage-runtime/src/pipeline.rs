//! The typed pipeline builder: add stages, subscribe consumers to producers, run.
//!
//! Types do the checking: [`Pipeline::subscribe`] takes a [`Source<T>`] and a [`Sink<T>`] with the
//! same `T`, so wiring a consumer of `String` to a producer of `u64` does not compile.
//!
//! # Completion
//! A producer ends when it returns [`Emit::last`](crate::Emit::last) and its buffer is empty. A stage
//! with producers ends once all of them have ended and it has handled (and, for a producer_consumer,
//! delivered) every event. `run().await` returns when every stage has ended.
//!
//! # Failure
//! A stage whose callback returns an error or panics ends at once. Its consumers stop too unless
//! their subscription is `temporary`; its producers see it cancel, and a producer left without
//! consumers stops. `run()` then returns [`PipelineError`] naming the first stage that failed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::demand::DemandLimits;
use crate::dispatcher::SubscriptionId;
use crate::error::PipelineError;
use crate::mailbox::{mailbox, Receiver};
use crate::options::{CancelMode, SubscribeOptions};
use crate::protocol::{
    ControlPort, Downstream, EndReason, EventSink, Mail, Mailbox, ProducerPort, Subscribed,
    Subscriber, Upstream,
};
use crate::report::{Report, StageReport, StageStatus};
use crate::run::{self, Exit, Outcome};
use crate::stage::{Consumer, Producer, ProducerConsumer};

static NEXT_PIPELINE: AtomicU64 = AtomicU64::new(0);

/// Identifies a stage within its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StageId {
    pipeline: u64,
    index: usize,
}

/// A stage that emits events of type `T`: a producer or a producer_consumer.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be subscribed to as a source of `{T}`",
    note = "only producers and producer_consumers can be subscribed to, and their event type must match the consumer's"
)]
pub trait Source<T>: ends::Sealed {
    #[doc(hidden)]
    fn source_end(&self) -> ends::SourceEnd<T>;
}

/// A stage that consumes events of type `T`: a consumer or a producer_consumer.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot subscribe to a source of `{T}`",
    note = "only consumers and producer_consumers can subscribe, and their event type must match the producer's"
)]
pub trait Sink<T>: ends::Sealed {
    #[doc(hidden)]
    fn sink_end(&self) -> ends::SinkEnd<T>;
}

#[doc(hidden)]
pub mod ends {
    //! The opaque mailbox ends that stage handles carry.
    use super::*;

    pub trait Sealed {}

    /// Where consumers subscribe to a stage emitting `T`.
    pub struct SourceEnd<T> {
        pub(crate) id: StageId,
        pub(crate) port: Arc<dyn SourcePort<T>>,
    }

    /// Where producers send a stage consuming `T` its events.
    pub struct SinkEnd<T> {
        pub(crate) id: StageId,
        pub(crate) port: Arc<dyn SinkPort<T>>,
    }

    impl<T> fmt::Debug for SourceEnd<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SourceEnd").field("id", &self.id).finish()
        }
    }

    impl<T> fmt::Debug for SinkEnd<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SinkEnd").field("id", &self.id).finish()
        }
    }

    impl<T> Clone for SourceEnd<T> {
        fn clone(&self) -> Self {
            SourceEnd {
                id: self.id,
                port: self.port.clone(),
            }
        }
    }

    impl<T> Clone for SinkEnd<T> {
        fn clone(&self) -> Self {
            SinkEnd {
                id: self.id,
                port: self.port.clone(),
            }
        }
    }
}

use ends::{SinkEnd, SourceEnd};

/// The typed producer side of a stage's mailbox.
pub(crate) trait SourcePort<T>: Send + Sync {
    fn subscribe(&self, sub: SubscriptionId, consumer: Box<dyn EventSink<T>>);
    fn producer(&self) -> Arc<dyn ProducerPort>;
}

/// The typed consumer side of a stage's mailbox.
pub(crate) trait SinkPort<T>: Send + Sync {
    fn consumer(&self) -> Box<dyn EventSink<T>>;
    fn subscribed(
        &self,
        sub: SubscriptionId,
        producer: Arc<dyn ProducerPort>,
        limits: DemandLimits,
        cancel: CancelMode,
    );
}

impl<In: Send + 'static, Out: Send + 'static> SourcePort<Out> for Mailbox<In, Out> {
    fn subscribe(&self, sub: SubscriptionId, consumer: Box<dyn EventSink<Out>>) {
        let _ = self.send(Mail::Downstream(Downstream::Subscribe(Box::new(
            Subscriber { sub, consumer },
        ))));
    }
    fn producer(&self) -> Arc<dyn ProducerPort> {
        Arc::new(self.clone())
    }
}

impl<In: Send + 'static, Out: Send + 'static> SinkPort<In> for Mailbox<In, Out> {
    fn consumer(&self) -> Box<dyn EventSink<In>> {
        Box::new(self.clone())
    }
    fn subscribed(
        &self,
        sub: SubscriptionId,
        producer: Arc<dyn ProducerPort>,
        limits: DemandLimits,
        cancel: CancelMode,
    ) {
        let _ = self.send(Mail::Upstream(Upstream::Subscribed(Box::new(Subscribed {
            sub,
            producer,
            limits,
            cancel,
        }))));
    }
}

/// A producer in a [`Pipeline`], emitting `T`.
pub struct ProducerRef<T> {
    source: SourceEnd<T>,
}

/// A producer_consumer in a [`Pipeline`], consuming `I` and emitting `O`.
pub struct ProducerConsumerRef<I, O> {
    sink: SinkEnd<I>,
    source: SourceEnd<O>,
}

/// A consumer in a [`Pipeline`], consuming `T`.
pub struct ConsumerRef<T> {
    sink: SinkEnd<T>,
}

impl<T> ProducerRef<T> {
    /// This stage's id in its pipeline.
    pub fn id(&self) -> StageId {
        self.source.id
    }
}
impl<I, O> ProducerConsumerRef<I, O> {
    /// This stage's id in its pipeline.
    pub fn id(&self) -> StageId {
        self.source.id
    }
}
impl<T> ConsumerRef<T> {
    /// This stage's id in its pipeline.
    pub fn id(&self) -> StageId {
        self.sink.id
    }
}

impl<T> Clone for ProducerRef<T> {
    fn clone(&self) -> Self {
        ProducerRef {
            source: self.source.clone(),
        }
    }
}
impl<I, O> Clone for ProducerConsumerRef<I, O> {
    fn clone(&self) -> Self {
        ProducerConsumerRef {
            sink: self.sink.clone(),
            source: self.source.clone(),
        }
    }
}
impl<T> Clone for ConsumerRef<T> {
    fn clone(&self) -> Self {
        ConsumerRef {
            sink: self.sink.clone(),
        }
    }
}

impl<T> fmt::Debug for ProducerRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerRef")
            .field("id", &self.id())
            .finish()
    }
}
impl<I, O> fmt::Debug for ProducerConsumerRef<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConsumerRef")
            .field("id", &self.id())
            .finish()
    }
}
impl<T> fmt::Debug for ConsumerRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerRef")
            .field("id", &self.id())
            .finish()
    }
}

impl<T> ends::Sealed for ProducerRef<T> {}
impl<I, O> ends::Sealed for ProducerConsumerRef<I, O> {}
impl<T> ends::Sealed for ConsumerRef<T> {}

impl<T> Source<T> for ProducerRef<T> {
    fn source_end(&self) -> SourceEnd<T> {
        self.source.clone()
    }
}
impl<I, O> Source<O> for ProducerConsumerRef<I, O> {
    fn source_end(&self) -> SourceEnd<O> {
        self.source.clone()
    }
}
impl<I, O> Sink<I> for ProducerConsumerRef<I, O> {
    fn sink_end(&self) -> SinkEnd<I> {
        self.sink.clone()
    }
}
impl<T> Sink<T> for ConsumerRef<T> {
    fn sink_end(&self) -> SinkEnd<T> {
        self.sink.clone()
    }
}

/// The ends of a new stage's mailbox, from which its handle is made.
struct NewEnds<In, Out> {
    id: StageId,
    mailbox: Mailbox<In, Out>,
}

impl<In: Send + 'static, Out: Send + 'static> NewEnds<In, Out> {
    fn source(&self) -> SourceEnd<Out> {
        SourceEnd {
            id: self.id,
            port: Arc::new(self.mailbox.clone()),
        }
    }

    fn sink(&self) -> SinkEnd<In> {
        SinkEnd {
            id: self.id,
            port: Arc::new(self.mailbox.clone()),
        }
    }
}

type StageTask = Pin<Box<dyn Future<Output = Outcome> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    ProducerConsumer,
    Consumer,
}

struct StageEntry {
    name: String,
    role: Role,
    /// Options its subscriptions default to (consumer side).
    subscribe_defaults: SubscribeOptions,
    control: Arc<dyn ControlPort>,
    task: StageTask,
}

struct Edge {
    producer: usize,
    consumer: usize,
    options: SubscribeOptions,
    connect: Box<dyn FnOnce(SubscriptionId, DemandLimits, CancelMode) + Send>,
}

/// A pipeline of stages, built by hand or by `pipeline!`, run with [`Pipeline::run`].
///
/// # Examples
///
/// ```
/// use genstage_runtime::{from_iter, Consumer, Pipeline, ProducerConsumer, StageResult};
///
/// struct Evens;
/// impl ProducerConsumer for Evens {
///     type Input = u64;
///     type Output = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
///         Ok(events.into_iter().filter(|n| n % 2 == 0).collect())
///     }
/// }
///
/// struct Count(std::sync::Arc<std::sync::atomic::AtomicU64>);
/// impl Consumer for Count {
///     type Input = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
///         self.0.fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), genstage_runtime::PipelineError> {
/// let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// let mut pipeline = Pipeline::new();
/// let numbers = pipeline.add_producer(from_iter(0..100u64));
/// let evens = pipeline.add_producer_consumer(Evens);
/// let count = pipeline.add_consumer(Count(seen.clone()));
/// pipeline.subscribe(&numbers, &evens);
/// pipeline.subscribe(&evens, &count);
/// let report = pipeline.run().await?;
/// assert_eq!(report.stage("Count").unwrap().events_in, 50);
/// # Ok(()) }
/// ```
pub struct Pipeline {
    id: u64,
    stages: Vec<StageEntry>,
    edges: Vec<Edge>,
    /// The first wiring mistake, reported by `run`.
    error: Option<PipelineError>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Pipeline")
            .field("stages", &names)
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Pipeline {
            id: NEXT_PIPELINE.fetch_add(1, Ordering::Relaxed),
            stages: Vec::new(),
            edges: Vec::new(),
            error: None,
        }
    }

    fn next_id(&self) -> StageId {
        StageId {
            pipeline: self.id,
            index: self.stages.len(),
        }
    }

    /// Adds a producer, named after its type.
    pub fn add_producer<P: Producer>(&mut self, stage: P) -> ProducerRef<P::Output> {
        self.add_producer_named(short_type_name::<P>(), stage)
    }

    /// Adds a producer under `name`, or under its type's name when `None`.
    pub fn add_producer_as<P: Producer>(
        &mut self,
        name: Option<String>,
        stage: P,
    ) -> ProducerRef<P::Output> {
        let name = name.unwrap_or_else(short_type_name::<P>);
        self.add_producer_named(name, stage)
    }

    /// Adds a producer under the given name (used in errors and the report).
    pub fn add_producer_named<P: Producer>(
        &mut self,
        name: impl Into<String>,
        stage: P,
    ) -> ProducerRef<P::Output> {
        let defaults = SubscribeOptions::default();
        self.add_stage(
            name.into(),
            Role::Producer,
            defaults,
            |name, inbox| Box::pin(run::run_producer(stage, name, inbox)),
            |ends| ProducerRef {
                source: ends.source(),
            },
        )
    }

    /// Adds a producer_consumer, named after its type.
    pub fn add_producer_consumer<S: ProducerConsumer>(
        &mut self,
        stage: S,
    ) -> ProducerConsumerRef<S::Input, S::Output> {
        self.add_producer_consumer_named(short_type_name::<S>(), stage)
    }

    /// Adds a producer_consumer under `name`, or under its type's name when `None`.
    pub fn add_producer_consumer_as<S: ProducerConsumer>(
        &mut self,
        name: Option<String>,
        stage: S,
    ) -> ProducerConsumerRef<S::Input, S::Output> {
        let name = name.unwrap_or_else(short_type_name::<S>);
        self.add_producer_consumer_named(name, stage)
    }

    /// Adds a producer_consumer under the given name (used in errors and the report).
    pub fn add_producer_consumer_named<S: ProducerConsumer>(
        &mut self,
        name: impl Into<String>,
        stage: S,
    ) -> ProducerConsumerRef<S::Input, S::Output> {
        let defaults = stage.subscribe_options();
        self.add_stage(
            name.into(),
            Role::ProducerConsumer,
            defaults,
            |name, inbox| Box::pin(run::run_producer_consumer(stage, name, inbox)),
            |ends| ProducerConsumerRef {
                sink: ends.sink(),
                source: ends.source(),
            },
        )
    }

    /// Adds a consumer, named after its type.
    pub fn add_consumer<C: Consumer>(&mut self, stage: C) -> ConsumerRef<C::Input> {
        self.add_consumer_named(short_type_name::<C>(), stage)
    }

    /// Adds a consumer under `name`, or under its type's name when `None`.
    pub fn add_consumer_as<C: Consumer>(
        &mut self,
        name: Option<String>,
        stage: C,
    ) -> ConsumerRef<C::Input> {
        let name = name.unwrap_or_else(short_type_name::<C>);
        self.add_consumer_named(name, stage)
    }

    /// Adds a consumer under the given name (used in errors and the report).
    pub fn add_consumer_named<C: Consumer>(
        &mut self,
        name: impl Into<String>,
        stage: C,
    ) -> ConsumerRef<C::Input> {
        let defaults = stage.subscribe_options();
        self.add_stage(
            name.into(),
            Role::Consumer,
            defaults,
            |name, inbox| Box::pin(run::run_consumer(stage, name, inbox)),
            |ends| ConsumerRef { sink: ends.sink() },
        )
    }

    /// Creates the stage's mailbox and task, records it, and hands its ends to `make_ref`.
    fn add_stage<In: Send + 'static, Out: Send + 'static, R>(
        &mut self,
        name: String,
        role: Role,
        subscribe_defaults: SubscribeOptions,
        task: impl FnOnce(Arc<str>, Receiver<Mail<In, Out>>) -> StageTask,
        make_ref: impl FnOnce(NewEnds<In, Out>) -> R,
    ) -> R {
        let id = self.next_id();
        let (mailbox, inbox) = mailbox::<Mail<In, Out>>();
        let task = task(Arc::from(name.as_str()), inbox);
        let control: Arc<dyn ControlPort> = Arc::new(mailbox.clone());
        self.stages.push(StageEntry {
            name,
            role,
            subscribe_defaults,
            control,
            task,
        });
        make_ref(NewEnds { id, mailbox })
    }

    /// Subscribes `consumer` to `producer` with the consumer's default options.
    pub fn subscribe<T: Send + 'static>(
        &mut self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
    ) -> &mut Self {
        self.subscribe_with(producer, consumer, SubscribeOptions::default())
    }

    /// Subscribes `consumer` to `producer`; set fields of `options` override the consumer's defaults.
    ///
    /// Invalid options are reported by [`Pipeline::run`], naming both stages.
    pub fn subscribe_with<T: Send + 'static>(
        &mut self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
    ) -> &mut Self {
        let source = producer.source_end();
        let sink = consumer.sink_end();
        for id in [source.id, sink.id] {
            if id.pipeline != self.id || id.index >= self.stages.len() {
                self.error.get_or_insert(PipelineError::ForeignStage {
                    stage: format!("#{}", id.index),
                });
                return self;
            }
        }
        let connect = Box::new(move |sub, limits: DemandLimits, cancel| {
            let producer = source.port.producer();
            source.port.subscribe(sub, sink.port.consumer());
            // The consumer's initial ask, queued now rather than when its task first runs: every
            // subscription has its demand in place before any event flows, so the first consumer to
            // be scheduled does not take all the first events (GenStage needs `demand: :accumulate`
            // for that).
            drop(producer.ask(sub, limits.max()));
            sink.port.subscribed(sub, producer, limits, cancel);
        });
        self.edges.push(Edge {
            producer: source.id.index,
            consumer: sink.id.index,
            options,
            connect,
        });
        self
    }

    /// The stages' names, in the order they were added.
    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|s| s.name.as_str())
    }

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

    /// Gives stages that share a name distinct ones: `Printer[0]`, `Printer[1]`, ….
    fn disambiguate_names(&mut self) {
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for stage in &self.stages {
            *counts.entry(stage.name.clone()).or_default() += 1;
        }
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for stage in &mut self.stages {
            if counts[&stage.name] > 1 {
                let n = seen.entry(stage.name.clone()).or_default();
                stage.name = format!("{}[{n}]", stage.name);
                *n += 1;
            }
        }
    }

    /// Checks the wiring and resolves each edge's demand limits and cancel mode.
    fn validate(&self) -> Result<Vec<(DemandLimits, CancelMode)>, PipelineError> {
        let name = |i: usize| self.stages[i].name.clone();
        for (index, stage) in self.stages.iter().enumerate() {
            let feeds = self.edges.iter().any(|e| e.producer == index);
            let fed = self.edges.iter().any(|e| e.consumer == index);
            if stage.role != Role::Consumer && !feeds {
                return Err(PipelineError::NoConsumer { stage: name(index) });
            }
            if stage.role != Role::Producer && !fed {
                return Err(PipelineError::NoProducer { stage: name(index) });
            }
        }
        if let Some(cycle) = self.find_cycle() {
            return Err(PipelineError::Cycle {
                stages: cycle.into_iter().map(name).collect(),
            });
        }
        self.edges
            .iter()
            .map(|edge| {
                let options = edge
                    .options
                    .or(self.stages[edge.consumer].subscribe_defaults);
                let limits = DemandLimits::from_options(&options).map_err(|error| {
                    PipelineError::InvalidSubscription {
                        producer: name(edge.producer),
                        consumer: name(edge.consumer),
                        error,
                    }
                })?;
                Ok((limits, options.cancel.unwrap_or_default()))
            })
            .collect()
    }

    /// A cycle of subscriptions, if any, as the stages on it.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let n = self.stages.len();
        let mut marks = vec![Mark::New; n];
        let successors = |i: usize| {
            self.edges
                .iter()
                .filter(move |e| e.producer == i)
                .map(|e| e.consumer)
        };
        for root in 0..n {
            if marks[root] != Mark::New {
                continue;
            }
            // Iterative depth-first search; `path` holds the open stages.
            let mut path = vec![root];
            let mut iters = vec![successors(root)];
            marks[root] = Mark::Open;
            while let Some(iter) = iters.last_mut() {
                match iter.next() {
                    Some(next) if marks[next] == Mark::Open => {
                        let start = path.iter().position(|&s| s == next).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Some(next) if marks[next] == Mark::New => {
                        marks[next] = Mark::Open;
                        path.push(next);
                        iters.push(successors(next));
                    }
                    Some(_) => {}
                    None => {
                        iters.pop();
                        if let Some(done) = path.pop() {
                            marks[done] = Mark::Done;
                        }
                    }
                }
            }
        }
        None
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

/// `my_crate::stages::Printer<u64>` becomes `Printer`.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}
