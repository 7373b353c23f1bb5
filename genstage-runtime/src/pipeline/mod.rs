//! The typed pipeline builder: add stages, subscribe consumers to producers, run.
//!
//! Types do the checking: [`Pipeline::subscribe`] takes a [`Source<T>`] and a [`Sink<T>`] with the
//! same `T`, so wiring a consumer of `String` to a producer of `u64` does not compile.
//!
//! # Completion
//! A producer ends when it returns [`Emit::last`](crate::Emit::last) and its buffer is empty. A stage
//! with producers ends once all of them have ended and it has handled (and, for a producer_consumer,
//! delivered) every event. `run().await` returns when every stage has ended: a producer that waits
//! for consumers ([`WithoutConsumers::Wait`](crate::WithoutConsumers::Wait)) and never returns
//! `Emit::last` holds it open by design; start such a pipeline with [`Pipeline::start`] and end it
//! with a shutdown.
//!
//! # Failure
//! A stage whose callback returns an error or panics is restarted if its restart policy says so
//! (see [`RestartPolicy`](crate::RestartPolicy): rebuilt in its own task, its subscriptions kept,
//! its neighbours unaware); otherwise it ends at once. Its consumers stop too unless
//! their subscription is `temporary` (see [`CancelMode`](crate::CancelMode)); its producers see it
//! cancel, and a producer left without consumers stops, also while its callback waits (unless it
//! waits for consumers: [`WithoutConsumers`](crate::WithoutConsumers)). Each failure
//! is logged through `tracing` when it happens. Once every stage has ended, `run()` returns
//! [`PipelineError`] naming the first stage that failed, with the report of the whole run.
//!
//! # Accounting
//! Every ending returns a [`Report`](crate::Report) in which every emitted event is handled,
//! discarded by a buffer that overflowed, or lost with its reason: the batch a callback failed on,
//! events received but not handled when a stage stopped, events sent to a consumer that had stopped,
//! and a stopped stage's buffer. A stage closes its mailbox when it stops, so each event is counted
//! once, by whichever side held it.

mod graph;
mod handles;
mod run_future;
mod running;
mod shutdown_handle;
mod stage;
mod stage_ref;
mod supervise;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::demand::DemandLimits;
use crate::dispatcher::{Dispatch, DispatchOptions, Selector, SubscriptionId};
use crate::error::PipelineError;
use crate::mailbox::{mailbox, Receiver};
use crate::messages::CancelPort;
use crate::names::{self, Naming};
use crate::options::{CancelMode, ProducerOptions, SubscribeOptions, WithoutConsumers};
use crate::protocol::{ControlPort, Mail, NewConsumer, Subscribed};
use crate::restart::{NoInput, Restart, RestartPolicy};
use crate::run::{self, Abort, Build, Outcome, StageEnv};
use crate::stage::{Consumer, Producer, ProducerConsumer};

use ends::{SinkEnd, SourceEnd};
use handles::NewEnds;
pub use handles::{ends, ConsumerRef, ProducerConsumerRef, ProducerRef, Sink, Source, StageId};
pub use run_future::Run;
pub use running::{
    Adding, AddingConsumer, AddingProducer, AddingProducerConsumer, PipelineHandle, Subscribing,
};
pub use shutdown_handle::ShutdownHandle;
pub use stage::Stage;
pub use stage_ref::{Call, CallFor, CastFor, InfoFor, StageRef, DEFAULT_CALL_TIMEOUT};
use stage_ref::{StageLabel, StagePort};

static NEXT_PIPELINE: AtomicU64 = AtomicU64::new(0);

type StageTask = Pin<Box<dyn Future<Output = Box<Outcome>> + Send>>;

/// Makes a stage's task once the pipeline starts, when its name is final: from that name, the
/// pipeline's abort signal, the port through which its callbacks cancel its subscriptions, and the
/// restart policy the builder set for it, if any (a `RestartPolicy` of the stage's input type, see
/// [`Pipeline::set_restart`]).
type StartStage = Box<
    dyn FnOnce(Arc<str>, Arc<Abort>, CancelPort, Option<Box<dyn Any + Send>>) -> StageTask + Send,
>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    ProducerConsumer,
    Consumer,
}

struct StageEntry {
    /// Its name as given or generated; made unique by `run` (see `names.rs`).
    name: String,
    /// Its name as its references see it.
    label: Arc<StageLabel>,
    naming: Naming,
    role: Role,
    /// Options its subscriptions default to (consumer side).
    subscribe_defaults: SubscribeOptions,
    /// What its dispatcher allows of the subscriptions to it (producer side).
    dispatch: DispatchInfo,
    control: Arc<dyn ControlPort>,
    /// When it is restarted, by its type's policy or the one the builder set.
    restart: Restart,
    /// It can be built again for a restart: added with a constructor.
    rebuildable: bool,
    /// The restart policy the builder set for it ([`Pipeline::set_restart`]).
    policy: Option<Box<dyn Any + Send>>,
    /// Its failure does not fail the run ([`Pipeline::dismiss_failure`]).
    failure_dismissed: bool,
    start: StartStage,
}

impl StageEntry {
    /// The error of a stage that its policy restarts but that was added as a value, which cannot
    /// be made again.
    fn unrebuildable(&self) -> Option<PipelineError> {
        (self.restart != Restart::Temporary && !self.rebuildable).then(|| {
            PipelineError::NotRebuildable {
                stage: self.name.clone(),
                restart: self.restart,
                constructor: match self.role {
                    Role::Producer => "add_producer_with",
                    Role::ProducerConsumer => "add_producer_consumer_with",
                    Role::Consumer => "add_consumer_with",
                },
            }
        })
    }
}

struct Edge {
    producer: usize,
    consumer: usize,
    options: SubscribeOptions,
    /// It has a selector (see [`Pipeline::subscribe_selected`]).
    selected: bool,
    /// Wires the edge, given its subscription id, its resolved limits and cancel mode, and the
    /// stages' final names (see [`Wiring`]).
    connect: Box<dyn FnOnce(SubscriptionId, DemandLimits, CancelMode, Wiring) + Send>,
}

/// What a stage's dispatcher allows of the subscriptions to it, for the checks before it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DispatchInfo {
    /// It routes events into this many partitions, each taken by one subscription.
    partitions: Option<usize>,
    /// It has the stage's partition function, which routing needs.
    routes: bool,
    /// Its subscriptions may have a selector.
    selects: bool,
    /// It sends every subscription every event: a consumer subscribes to it at most once.
    broadcasts: bool,
    /// The stage may have no consumer ([`WithoutConsumers::Wait`]): it may start with none, and
    /// then its partitions, if it partitions, need not all be taken.
    waits: bool,
}

impl DispatchInfo {
    /// Whether its stage, if a producer, waits for its consumers' turn after it emits, handing
    /// them its own wake-up (see `crate::mailbox`'s hand-offs): a broadcast, or a partition by
    /// the stage's function, as the stage itself decides (`Outputs::offers_own_wake`).
    fn chains(&self) -> bool {
        self.broadcasts || self.routes
    }

    fn of<S, T: 'static>(dispatch: &Dispatch<S, T>, options: ProducerOptions) -> Self {
        DispatchInfo {
            partitions: dispatch.dispatcher.partitions(),
            routes: dispatch.partition.is_some(),
            selects: dispatch.dispatcher.selects(),
            broadcasts: dispatch.dispatcher.broadcasts(),
            waits: options.without_consumers == WithoutConsumers::Wait,
        }
    }
}

/// What wiring an edge needs besides its subscription's settings: the final names of its two stages,
/// for the callbacks that are told of the subscription, whether the pipeline runs already, and the
/// subscription to the same producer that it replaces, if any (see `NewConsumer::replacing`).
struct Wiring {
    producer: Arc<str>,
    consumer: Arc<str>,
    running: bool,
    replacing: Option<SubscriptionId>,
}

/// A pipeline of stages, built by hand or by `pipeline!`, run with [`Pipeline::run`].
///
/// # Examples
///
/// ```
/// use genstage::{from_iter, Consumer, Pipeline, ProducerConsumer, StageResult};
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
/// # async fn main() -> Result<(), genstage::PipelineError> {
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
    /// The index of this builder's first stage in its pipeline: 0, but for the stages a running
    /// pipeline's handle adds (see `running.rs`).
    first_index: usize,
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

/// For a group built again on restarts: instance `i`'s builder, `move || make(i)`, all sharing `make`.
fn builds<S>(
    make: impl Fn(usize) -> S + Send + Sync + 'static,
) -> impl FnMut(usize) -> Box<dyn FnMut() -> S + Send> {
    let make = Arc::new(make);
    move |i| {
        let make = make.clone();
        Box::new(move || make(i))
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::with_id(NEXT_PIPELINE.fetch_add(1, Ordering::Relaxed))
    }

    fn with_id(id: u64) -> Self {
        Pipeline {
            id,
            first_index: 0,
            stages: Vec::new(),
            edges: Vec::new(),
            error: None,
        }
    }

    /// Records a wiring mistake found while building (`pipeline!`'s empty group); `run` returns
    /// the first one recorded.
    pub(crate) fn record_error(&mut self, error: PipelineError) {
        self.error.get_or_insert(error);
    }

    fn next_id(&self) -> StageId {
        StageId {
            pipeline: self.id,
            index: self.first_index + self.stages.len(),
        }
    }

    /// Adds a producer, named after its type.
    pub fn add_producer<P: Producer>(&mut self, stage: P) -> ProducerRef<P> {
        self.add_producer_as(None, stage)
    }

    /// Adds a producer under `name`, or under its type's name when `None`.
    pub fn add_producer_as<P: Producer>(
        &mut self,
        name: Option<String>,
        stage: P,
    ) -> ProducerRef<P> {
        self.add_producer_built(name, Build::once(stage))
    }

    /// Adds a producer built by `build`, named after its type: `build` makes it now, and again each
    /// time it is restarted (see [`RestartPolicy`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use genstage::{Emit, Pipeline, Producer, RestartPolicy, StageResult, NoInput};
    /// # use genstage::{Consumer};
    ///
    /// struct Numbers { next: u64 }
    /// impl Producer for Numbers {
    ///     type Output = u64;
    ///     async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
    ///         let events: Vec<u64> = (self.next..self.next + demand as u64).collect();
    ///         self.next += demand as u64;
    ///         Ok(Emit::more(events))
    ///     }
    ///     fn restart_policy(&self) -> RestartPolicy<NoInput> {
    ///         RestartPolicy::transient()
    ///     }
    /// }
    /// # struct Drop1;
    /// # impl Consumer for Drop1 { type Input = u64;
    /// #   async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> { Ok(()) } }
    ///
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer_with(|| Numbers { next: 0 });
    /// # let sink = pipeline.add_consumer(Drop1);
    /// # pipeline.subscribe(&numbers, &sink);
    /// ```
    pub fn add_producer_with<P: Producer>(
        &mut self,
        build: impl FnMut() -> P + Send + 'static,
    ) -> ProducerRef<P> {
        self.add_producer_with_as(None, build)
    }

    /// [`add_producer_with`](Self::add_producer_with), under `name` or, when `None`, under its
    /// type's name.
    pub fn add_producer_with_as<P: Producer>(
        &mut self,
        name: Option<String>,
        build: impl FnMut() -> P + Send + 'static,
    ) -> ProducerRef<P> {
        self.add_producer_built(name, Build::by(build))
    }

    fn add_producer_built<P: Producer>(
        &mut self,
        name: Option<String>,
        build: Build<P>,
    ) -> ProducerRef<P> {
        let defaults = SubscribeOptions::default();
        let dispatch = build.first.dispatcher();
        let options = build.first.producer_options();
        let policy = build.first.restart_policy();
        self.add_stage(
            names::stage_name::<P>(name, P::DEFAULT_NAME),
            Role::Producer,
            (defaults, DispatchInfo::of(&dispatch, options)),
            (policy.restart(), build.rebuildable()),
            move |env, inbox, set: Option<RestartPolicy<NoInput>>| {
                Box::pin(run::run_producer(
                    build,
                    dispatch,
                    set.unwrap_or(policy),
                    env,
                    inbox,
                ))
            },
            |ends| ProducerRef {
                source: Arc::new(handles::SourceOf(ends.source())),
                stage: ends.stage,
            },
        )
    }

    /// Adds a producer under the given name (used in errors and the report).
    pub fn add_producer_named<P: Producer>(
        &mut self,
        name: impl Into<String>,
        stage: P,
    ) -> ProducerRef<P> {
        self.add_producer_as(Some(name.into()), stage)
    }

    /// Adds a producer_consumer, named after its type.
    pub fn add_producer_consumer<S: ProducerConsumer>(
        &mut self,
        stage: S,
    ) -> ProducerConsumerRef<S> {
        self.add_producer_consumer_as(None, stage)
    }

    /// Adds a producer_consumer under `name`, or under its type's name when `None`.
    pub fn add_producer_consumer_as<S: ProducerConsumer>(
        &mut self,
        name: Option<String>,
        stage: S,
    ) -> ProducerConsumerRef<S> {
        self.add_producer_consumer_built(name, Build::once(stage))
    }

    /// Adds a producer_consumer built by `build`, named after its type: `build` makes it now, and
    /// again each time it is restarted (see [`RestartPolicy`]).
    pub fn add_producer_consumer_with<S: ProducerConsumer>(
        &mut self,
        build: impl FnMut() -> S + Send + 'static,
    ) -> ProducerConsumerRef<S> {
        self.add_producer_consumer_with_as(None, build)
    }

    /// [`add_producer_consumer_with`](Self::add_producer_consumer_with), under `name` or, when
    /// `None`, under its type's name.
    pub fn add_producer_consumer_with_as<S: ProducerConsumer>(
        &mut self,
        name: Option<String>,
        build: impl FnMut() -> S + Send + 'static,
    ) -> ProducerConsumerRef<S> {
        self.add_producer_consumer_built(name, Build::by(build))
    }

    fn add_producer_consumer_built<S: ProducerConsumer>(
        &mut self,
        name: Option<String>,
        build: Build<S>,
    ) -> ProducerConsumerRef<S> {
        let defaults = build.first.subscribe_options();
        let dispatch = build.first.dispatcher();
        let options = build.first.producer_options();
        let policy = build.first.restart_policy();
        self.add_stage(
            names::stage_name::<S>(name, None),
            Role::ProducerConsumer,
            (defaults, DispatchInfo::of(&dispatch, options)),
            (policy.restart(), build.rebuildable()),
            move |env, inbox, set: Option<RestartPolicy<S::Input>>| {
                Box::pin(run::run_producer_consumer(
                    build,
                    dispatch,
                    set.unwrap_or(policy),
                    env,
                    inbox,
                ))
            },
            |ends| ProducerConsumerRef {
                ends: Arc::new(handles::EndsOf(ends.sink(), ends.source())),
                stage: ends.stage,
            },
        )
    }

    /// Adds a producer_consumer under the given name (used in errors and the report).
    pub fn add_producer_consumer_named<S: ProducerConsumer>(
        &mut self,
        name: impl Into<String>,
        stage: S,
    ) -> ProducerConsumerRef<S> {
        self.add_producer_consumer_as(Some(name.into()), stage)
    }

    /// Adds a consumer, named after its type.
    pub fn add_consumer<C: Consumer>(&mut self, stage: C) -> ConsumerRef<C> {
        self.add_consumer_as(None, stage)
    }

    /// Adds a consumer under `name`, or under its type's name when `None`.
    pub fn add_consumer_as<C: Consumer>(
        &mut self,
        name: Option<String>,
        stage: C,
    ) -> ConsumerRef<C> {
        self.add_consumer_built(name, Build::once(stage))
    }

    /// Adds a consumer built by `build`, named after its type: `build` makes it now, and again each
    /// time it is restarted (see [`RestartPolicy`]).
    pub fn add_consumer_with<C: Consumer>(
        &mut self,
        build: impl FnMut() -> C + Send + 'static,
    ) -> ConsumerRef<C> {
        self.add_consumer_with_as(None, build)
    }

    /// [`add_consumer_with`](Self::add_consumer_with), under `name` or, when `None`, under its
    /// type's name.
    pub fn add_consumer_with_as<C: Consumer>(
        &mut self,
        name: Option<String>,
        build: impl FnMut() -> C + Send + 'static,
    ) -> ConsumerRef<C> {
        self.add_consumer_built(name, Build::by(build))
    }

    fn add_consumer_built<C: Consumer>(
        &mut self,
        name: Option<String>,
        build: Build<C>,
    ) -> ConsumerRef<C> {
        let defaults = build.first.subscribe_options();
        let policy = build.first.restart_policy();
        self.add_stage(
            names::stage_name::<C>(name, C::DEFAULT_NAME),
            Role::Consumer,
            (defaults, DispatchInfo::default()),
            (policy.restart(), build.rebuildable()),
            move |env, inbox, set: Option<RestartPolicy<C::Input>>| {
                Box::pin(run::run_consumer(build, set.unwrap_or(policy), env, inbox))
            },
            |ends| ConsumerRef {
                sink: Arc::new(handles::SinkOf(ends.sink())),
                stage: ends.stage,
            },
        )
    }

    /// Sets the restart policy of `stage`, one of this pipeline's, in place of the one its type
    /// declares (`#[stage(…, restart = …)]`, or its role trait's `restart_policy`).
    ///
    /// A stage restarted other than `temporary` must have been added with a constructor
    /// (`add_consumer_with` and its siblings): [`run`](Self::run) refuses one added as a value
    /// ([`PipelineError::NotRebuildable`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use genstage::{Consumer, StageResult, from_iter};
    /// use genstage::{Pipeline, RestartPolicy};
    /// # struct Store;
    /// # impl Consumer for Store { type Input = u64;
    /// #   async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> { Ok(()) } }
    ///
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer(from_iter(0..10u64));
    /// let store = pipeline.add_consumer_with(|| Store);
    /// pipeline.subscribe(&numbers, &store);
    /// pipeline.set_restart(&store, RestartPolicy::transient().redeliver());
    /// ```
    pub fn set_restart<R: StageRef>(
        &mut self,
        stage: &R,
        policy: RestartPolicy<R::Receives>,
    ) -> &mut Self {
        if let Some(entry) = self.entry_of(stage) {
            entry.restart = policy.restart();
            entry.policy = Some(Box::new(policy));
        }
        self
    }

    /// Takes `stage`'s failure as dealt with from the start: the run does not fail for it, as if
    /// [`PipelineHandle::dismiss_failure`] had been asked as it started, which a short run may end
    /// before. The report still shows the stage as it ended; a failure of another stage still
    /// fails the run.
    ///
    /// A stage of another pipeline is reported by [`Pipeline::run`]
    /// ([`PipelineError::ForeignStage`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use genstage::{from_iter, CancelMode, Consumer, Pipeline, StageResult, StageStatus};
    /// use genstage::SubscribeOptions;
    ///
    /// /// Refuses every job.
    /// struct Broken;
    /// impl Consumer for Broken {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _jobs: Vec<u64>) -> StageResult<()> {
    ///         Err("out of order".into())
    ///     }
    /// }
    /// # struct Sound;
    /// # impl Consumer for Sound {
    /// #     type Input = u64;
    /// #     async fn handle_events(&mut self, _jobs: Vec<u64>) -> StageResult<()> { Ok(()) }
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let jobs = pipeline.add_producer(from_iter(0..10u64));
    /// let broken = pipeline.add_consumer(Broken);
    /// let sound = pipeline.add_consumer(Sound);
    /// let options = || SubscribeOptions::new().max_demand(1).cancel(CancelMode::Temporary);
    /// pipeline.subscribe_with(&jobs, &broken, options());
    /// pipeline.subscribe_with(&jobs, &sound, options());
    /// pipeline.dismiss_failure(&broken);
    /// let report = pipeline.run().await?; // `Ok`, though `Broken` failed
    /// let broken = report.stage("Broken").unwrap();
    /// assert_eq!(broken.status, StageStatus::Failed("out of order".into()));
    /// assert_eq!(report.stage("Sound").unwrap().events_in, 10 - broken.lost);
    /// # Ok(()) }
    /// ```
    pub fn dismiss_failure(&mut self, stage: &impl StageRef) -> &mut Self {
        if let Some(entry) = self.entry_of(stage) {
            entry.failure_dismissed = true;
        }
        self
    }

    /// The entry of `stage`, not yet started; `None`, recording `ForeignStage` for `run()`, for a
    /// stage of another pipeline.
    fn entry_of(&mut self, stage: &impl StageRef) -> Option<&mut StageEntry> {
        let id = stage.id();
        let index = (id.pipeline == self.id)
            .then(|| id.index.checked_sub(self.first_index))
            .flatten()
            .filter(|&index| index < self.stages.len());
        if index.is_none() {
            self.error.get_or_insert(PipelineError::ForeignStage {
                stage: stage.name(),
            });
        }
        self.stages.get_mut(index?)
    }

    /// Adds a consumer under the given name (used in errors and the report).
    pub fn add_consumer_named<C: Consumer>(
        &mut self,
        name: impl Into<String>,
        stage: C,
    ) -> ConsumerRef<C> {
        self.add_consumer_as(Some(name.into()), stage)
    }

    /// Adds `count` consumers, instance `i` made by `make(i)`, as one group: `pipeline!`'s
    /// `[Worker::new(); 4]`. The report names them after their type, `Worker[0]`, `Worker[1]`, …
    /// (a group of one, `Worker`).
    /// Subscribe each to its producers; to a partitioned producer, instance `i` to partition `i`
    /// (`SubscribeOptions::partition`), as `pipeline!` does.
    ///
    /// # Errors
    ///
    /// A `count` of 0 adds nothing, and `run()` (or `start()`) then fails with
    /// [`PipelineError::EmptyGroup`] naming the group, as `pipeline!`'s `[Worker; n]` does when
    /// `n` is 0 at run time: a group computed to be empty starts no stage, which is most likely
    /// a mistake.
    ///
    /// # Examples
    ///
    /// ```
    /// use genstage::{from_iter, Consumer, Pipeline, StageResult};
    ///
    /// struct Worker;
    /// impl Consumer for Worker {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let jobs = pipeline.add_producer(from_iter(0..10_000u64));
    /// let workers = pipeline.add_consumers(3, |_| Worker);
    /// for worker in &workers {
    ///     pipeline.subscribe(&jobs, worker);
    /// }
    /// let report = pipeline.run().await?;
    /// let handled: u64 = (0..3).map(|i| report.stage(&format!("Worker[{i}]")).unwrap().events_in).sum();
    /// assert_eq!(handled, 10_000);
    /// # Ok(()) }
    /// ```
    pub fn add_consumers<C: Consumer>(
        &mut self,
        count: usize,
        make: impl FnMut(usize) -> C,
    ) -> Vec<ConsumerRef<C>> {
        let group = names::stage_name::<C>(None, C::DEFAULT_NAME).0;
        self.add_group(group, count, make, |pipeline, stage| {
            pipeline.add_consumer(stage)
        })
    }

    /// [`add_consumers`](Self::add_consumers) under `name`: `name[0]`, `name[1]`, ….
    ///
    /// # Errors
    ///
    /// As [`add_consumers`](Self::add_consumers).
    pub fn add_consumers_named<C: Consumer>(
        &mut self,
        name: impl Into<String>,
        count: usize,
        make: impl FnMut(usize) -> C,
    ) -> Vec<ConsumerRef<C>> {
        let name = name.into();
        self.add_group(name.clone(), count, make, |pipeline, stage| {
            pipeline.add_consumer_named(name.clone(), stage)
        })
    }

    /// Adds `count` consumers as one group, as [`add_consumers`](Self::add_consumers) does, each
    /// built by `make(i)` now and again each time it is restarted, as
    /// [`add_consumer_with`](Self::add_consumer_with) builds one: for a group whose restart policy
    /// restarts its instances (a value added as such cannot be made again).
    ///
    /// # Errors
    ///
    /// As [`add_consumers`](Self::add_consumers).
    ///
    /// # Examples
    ///
    /// ```
    /// use genstage::{from_iter, Consumer, Pipeline, RestartPolicy, StageResult};
    ///
    /// /// Fails on job 13 once; restarted, it handles the rest.
    /// struct Worker { id: usize }
    /// impl Consumer for Worker {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, jobs: Vec<u64>) -> StageResult<()> {
    ///         if jobs.contains(&13) { return Err(format!("worker {} dropped job 13", self.id).into()); }
    ///         Ok(())
    ///     }
    ///     fn restart_policy(&self) -> RestartPolicy<u64> { RestartPolicy::transient() }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let jobs = pipeline.add_producer(from_iter(0..100u64));
    /// for worker in pipeline.add_consumers_with(2, |id| Worker { id }) {
    ///     pipeline.subscribe(&jobs, &worker);
    /// }
    /// let report = pipeline.run().await?;
    /// let restarts: u64 = report.instances("Worker").map(|worker| worker.restarts).sum();
    /// assert_eq!(restarts, 1);
    /// # Ok(()) }
    /// ```
    pub fn add_consumers_with<C: Consumer>(
        &mut self,
        count: usize,
        make: impl Fn(usize) -> C + Send + Sync + 'static,
    ) -> Vec<ConsumerRef<C>> {
        self.add_consumers_with_as(None, count, make)
    }

    /// [`add_consumers_with`](Self::add_consumers_with), under `name` (`name[0]`, `name[1]`, …) or,
    /// when `None`, under its type's name.
    ///
    /// # Errors
    ///
    /// As [`add_consumers`](Self::add_consumers).
    pub fn add_consumers_with_as<C: Consumer>(
        &mut self,
        name: Option<String>,
        count: usize,
        make: impl Fn(usize) -> C + Send + Sync + 'static,
    ) -> Vec<ConsumerRef<C>> {
        let group = names::stage_name::<C>(name.clone(), C::DEFAULT_NAME).0;
        self.add_group(group, count, builds(make), |pipeline, build| {
            pipeline.add_consumer_with_as(name.clone(), build)
        })
    }

    /// Adds `count` producer_consumers, instance `i` made by `make(i)`, as one group, as
    /// [`add_consumers`](Self::add_consumers) adds consumers.
    ///
    /// # Errors
    ///
    /// As [`add_consumers`](Self::add_consumers).
    pub fn add_producer_consumers<S: ProducerConsumer>(
        &mut self,
        count: usize,
        make: impl FnMut(usize) -> S,
    ) -> Vec<ProducerConsumerRef<S>> {
        let group = names::stage_name::<S>(None, None).0;
        self.add_group(group, count, make, |pipeline, stage| {
            pipeline.add_producer_consumer(stage)
        })
    }

    /// [`add_producer_consumers`](Self::add_producer_consumers) under `name`: `name[0]`,
    /// `name[1]`, ….
    ///
    /// # Errors
    ///
    /// As [`add_consumers`](Self::add_consumers).
    pub fn add_producer_consumers_named<S: ProducerConsumer>(
        &mut self,
        name: impl Into<String>,
        count: usize,
        make: impl FnMut(usize) -> S,
    ) -> Vec<ProducerConsumerRef<S>> {
        let name = name.into();
        self.add_group(name.clone(), count, make, |pipeline, stage| {
            pipeline.add_producer_consumer_named(name.clone(), stage)
        })
    }

    /// Adds `count` producer_consumers as one group, each built by `make(i)` now and again each time
    /// it is restarted, as [`add_consumers_with`](Self::add_consumers_with) adds consumers.
    ///
    /// # Errors
    ///
    /// As [`add_consumers`](Self::add_consumers).
    pub fn add_producer_consumers_with<S: ProducerConsumer>(
        &mut self,
        count: usize,
        make: impl Fn(usize) -> S + Send + Sync + 'static,
    ) -> Vec<ProducerConsumerRef<S>> {
        self.add_producer_consumers_with_as(None, count, make)
    }

    /// [`add_producer_consumers_with`](Self::add_producer_consumers_with), under `name` (`name[0]`,
    /// `name[1]`, …) or, when `None`, under its type's name.
    ///
    /// # Errors
    ///
    /// As [`add_consumers`](Self::add_consumers).
    pub fn add_producer_consumers_with_as<S: ProducerConsumer>(
        &mut self,
        name: Option<String>,
        count: usize,
        make: impl Fn(usize) -> S + Send + Sync + 'static,
    ) -> Vec<ProducerConsumerRef<S>> {
        let group = names::stage_name::<S>(name.clone(), None).0;
        self.add_group(group, count, builds(make), |pipeline, build| {
            pipeline.add_producer_consumer_with_as(name.clone(), build)
        })
    }

    /// Adds `count` stages made by `make`, each by `add`, and marks them as one group; records
    /// [`PipelineError::EmptyGroup`] naming `group` for a count of 0.
    fn add_group<S, R: StageRef>(
        &mut self,
        group: String,
        count: usize,
        make: impl FnMut(usize) -> S,
        mut add: impl FnMut(&mut Self, S) -> R,
    ) -> Vec<R> {
        if count == 0 {
            self.record_error(PipelineError::EmptyGroup { group });
        }
        let group: Vec<R> = (0..count).map(make).map(|stage| add(self, stage)).collect();
        let ids: Vec<StageId> = group.iter().map(StageRef::id).collect();
        self.mark_group(&ids);
        group
    }

    /// Creates the stage's mailbox, records the stage with how to start its task, and hands its ends
    /// to `make_ref`.
    fn add_stage<S: Send + 'static, In: Send + 'static, Out: Send + 'static, R>(
        &mut self,
        (name, naming): (String, Naming),
        role: Role,
        (subscribe_defaults, dispatch): (SubscribeOptions, DispatchInfo),
        (restart, rebuildable): (Restart, bool),
        task: impl FnOnce(StageEnv, Receiver<Mail<In, Out>>, Option<RestartPolicy<In>>) -> StageTask
            + Send
            + 'static,
        make_ref: impl FnOnce(NewEnds<S, In, Out>) -> R,
    ) -> R {
        let id = self.next_id();
        let (mailbox, inbox) = mailbox::<Mail<In, Out>>();
        let control: Arc<dyn ControlPort> = Arc::new(mailbox.clone());
        let label = Arc::new(StageLabel::new(name.clone()));
        let me = mailbox.clone();
        self.stages.push(StageEntry {
            name,
            label: label.clone(),
            naming,
            role,
            subscribe_defaults,
            dispatch,
            control: control.clone(),
            restart,
            rebuildable,
            policy: None,
            failure_dismissed: false,
            start: Box::new(move |name, abort, cancels, policy| {
                // `set_restart` typed it by the stage's reference: it is the stage's input type.
                let policy = policy
                    .and_then(|policy| policy.downcast::<RestartPolicy<In>>().ok())
                    .map(|policy| *policy);
                task(
                    StageEnv::new(name, Box::new(me), abort, cancels),
                    inbox,
                    policy,
                )
            }),
        });
        make_ref(NewEnds {
            id,
            mailbox,
            stage: StagePort::new(id, label, control),
        })
    }

    /// Subscribes `consumer` to `producer` with the consumer's default options.
    ///
    /// A subscription that does not fit is reported by [`Pipeline::run`], as for
    /// [`subscribe_with`](Self::subscribe_with): calling this twice for the same pair, when
    /// `producer` broadcasts, makes `run` return [`PipelineError::InvalidDispatch`].
    pub fn subscribe<T: Send + 'static>(
        &mut self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
    ) -> &mut Self {
        self.subscribe_with(producer, consumer, SubscribeOptions::default())
    }

    /// Subscribes `consumer` to `producer`; set fields of `options` override the consumer's defaults.
    /// A subscription to a stage that partitions its events names its partition
    /// ([`SubscribeOptions::partition`]).
    ///
    /// Invalid options are reported by [`Pipeline::run`], naming both stages; a subscription that
    /// does not fit `producer`'s dispatcher (a partition missing or taken, or `consumer` subscribed
    /// a second time to a stage that broadcasts) as [`PipelineError::InvalidDispatch`], naming
    /// `producer`.
    pub fn subscribe_with<T: Send + 'static>(
        &mut self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
    ) -> &mut Self {
        self.subscribe_edge(producer.source_end(), consumer.sink_end(), options, None)
    }

    /// Subscribes `consumer` to `producer`, a stage that broadcasts its events
    /// ([`Dispatch::broadcast`]), for only the events `selector` accepts: the others are not sent to
    /// it and do not use up its demand (GenStage's `:selector`).
    ///
    /// A selector on a subscription to a stage whose dispatcher takes none (of the built-in ones,
    /// only a broadcast's does) is reported by [`Pipeline::run`]
    /// ([`PipelineError::InvalidDispatch`]), as is a second subscription of
    /// `consumer` to `producer`: one selector accepts what two would.
    pub fn subscribe_selected<T: Send + 'static>(
        &mut self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
        selector: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> &mut Self {
        let selector: Selector<T> = Arc::new(selector);
        self.subscribe_edge(
            producer.source_end(),
            consumer.sink_end(),
            options,
            Some(selector),
        )
    }

    /// How many partitions `producer`'s dispatcher routes its events to, if it partitions them
    /// ([`Dispatch::partition`]); `None` for a stage of another pipeline.
    pub fn partitions<T: Send + 'static>(&self, producer: &impl Source<T>) -> Option<usize> {
        let id = producer.source_end().id;
        if id.pipeline != self.id {
            return None;
        }
        let index = id.index.checked_sub(self.first_index)?;
        self.stages.get(index)?.dispatch.partitions
    }

    /// Subscribes `sink`'s stage to `source`'s: what `subscribe` and its siblings do, on both
    /// pipelines and running ones, once the handles' ends are taken.
    pub(super) fn subscribe_edge<T: Send + 'static>(
        &mut self,
        source: SourceEnd<T>,
        sink: SinkEnd<T>,
        options: SubscribeOptions,
        selector: Option<Selector<T>>,
    ) -> &mut Self {
        for (id, label) in [(source.id, &source.label), (sink.id, &sink.label)] {
            if id.pipeline != self.id || id.index >= self.first_index + self.stages.len() {
                self.error.get_or_insert(PipelineError::ForeignStage {
                    stage: label.get().to_owned(),
                });
                return self;
            }
        }
        let selected = selector.is_some();
        let partition = options.partition;
        let dispatch_options = DispatchOptions {
            partition: options.partition,
            selector,
        };
        let connect = Box::new(move |sub, limits: DemandLimits, cancel, wiring: Wiring| {
            let producer = source.port.producer();
            source.port.subscribe(NewConsumer {
                sub,
                consumer: sink.port.consumer(),
                consumer_name: wiring.consumer,
                limits,
                options: dispatch_options,
                replacing: wiring.replacing,
            });
            // The consumer's initial ask. Before the pipeline runs, it is queued now, on the
            // consumer's behalf: every subscription has its demand in place before any event flows,
            // so the first consumer to be scheduled does not take all the first events (GenStage
            // needs `demand: :accumulate` for that). In a running pipeline, the consumer sends it
            // itself when it takes the subscription in: a consumer that has finished meanwhile
            // never asks, so no event is sent to it to be lost.
            let asked = !wiring.running;
            sink.port.subscribed(Subscribed {
                sub,
                producer: producer.clone(),
                producer_name: wiring.producer,
                limits,
                cancel,
                partition,
                asked,
            });
            if asked {
                drop(producer.ask(sub, limits.max()));
            }
        });
        self.edges.push(Edge {
            producer: source.id.index,
            consumer: sink.id.index,
            options,
            selected,
            connect,
        });
        self
    }

    /// The stages' names, in the order they were added: those the run's report gives them (see
    /// [`StageReport::name`](crate::StageReport::name)), a group's instances `Worker[0]`,
    /// `Worker[1]`, … and a second unnamed `Worker` `Worker#2`. While a name is given to two
    /// stages, which [`run`](Self::run) refuses ([`PipelineError::DuplicateName`]), every name
    /// is listed as given or generated.
    ///
    /// ```
    /// use genstage::{from_iter, Consumer, Pipeline, StageResult};
    ///
    /// struct Worker;
    /// impl Consumer for Worker {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer_named("numbers", from_iter(0..10u64));
    /// for worker in pipeline.add_consumers(2, |_| Worker) {
    ///     pipeline.subscribe(&numbers, &worker);
    /// }
    /// let names: Vec<String> = pipeline.stage_names().collect();
    /// assert_eq!(names, ["numbers", "Worker[0]", "Worker[1]"]);
    /// ```
    pub fn stage_names(&self) -> impl Iterator<Item = String> {
        let names = self
            .unique_names()
            .unwrap_or_else(|_| self.stages.iter().map(|s| s.name.clone()).collect());
        names.into_iter()
    }
}
