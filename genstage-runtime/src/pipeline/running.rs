//! A pipeline running in the background: [`Pipeline::start`] and its [`PipelineHandle`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::dispatcher::Selector;
use crate::error::PipelineError;
use crate::options::SubscribeOptions;
use crate::report::{Report, StageReport};
use crate::stage::{Consumer, Producer, ProducerConsumer};
use crate::subscription::SubscriptionTag;

use super::handles::StageId;
use super::stage_ref::StageLabel;
use super::supervise::{send_request, Ended, Request};
use super::{
    ConsumerRef, Pipeline, ProducerConsumerRef, ProducerRef, ShutdownHandle, Sink, Source, StageRef,
};

impl Pipeline {
    /// Starts the pipeline in the background, as a tokio task, and returns its handle: await the
    /// handle for the report, or end the pipeline with [`PipelineHandle::shutdown`] (gracefully),
    /// [`PipelineHandle::shutdown_within`] (gracefully, with a time limit) or
    /// [`PipelineHandle::abort`].
    ///
    /// Must be called within a tokio runtime with its time driver enabled; elsewhere the handle
    /// resolves to [`PipelineError::NoRuntime`]. The stage references taken while building reach
    /// the running stages ([`StageRef`](crate::StageRef)).
    ///
    /// # Errors
    ///
    /// None at once: a pipeline that [`run`](Self::run) would refuse before anything runs (a
    /// wiring mistake, a consumer subscribed twice to a stage that broadcasts, …) starts nothing,
    /// and its handle resolves to that error, as `run` returns it; its requests are answered
    /// [`PipelineError::NotRunning`].
    ///
    /// # Examples
    ///
    /// A pipeline that runs until it is shut down, as a service does on Ctrl-C:
    ///
    /// ```
    /// use genstage::{from_iter, Consumer, Pipeline, StageResult, StageStatus};
    ///
    /// struct Sink;
    /// impl Consumer for Sink {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer(from_iter(0u64..)); // endless
    /// let sink = pipeline.add_consumer(Sink);
    /// pipeline.subscribe(&numbers, &sink);
    /// let running = pipeline.start();
    /// tokio::task::yield_now().await; // (a service would await Ctrl-C here)
    /// let report = running.shutdown().await?;
    /// assert_eq!(report.stage("from_iter").unwrap().status, StageStatus::ShutDown);
    /// assert!(report.totals().balanced()); // every event emitted was handled
    /// # Ok(()) }
    /// ```
    pub fn start(self) -> PipelineHandle {
        // Stages added while it runs are built here, indexed after this pipeline's.
        let staging = Mutex::new(Pipeline {
            first_index: self.stages.len(),
            ..Pipeline::with_id(self.id)
        });
        let (requests, receiver) = mpsc::unbounded_channel();
        let (alive, supervisor_alive) = watch::channel(None);
        match self.prepare(Some(receiver)) {
            Ok(mut supervisor) => {
                supervisor.alive = Some(alive);
                PipelineHandle {
                    state: State::Running(tokio::spawn(supervisor.run())),
                    requests: Some(requests),
                    supervisor_alive,
                    staging,
                }
            }
            Err(error) => PipelineHandle {
                state: State::Ended(Some(Err(error))),
                requests: None,
                supervisor_alive,
                staging,
            },
        }
    }
}

/// A running pipeline, returned by [`Pipeline::start`].
///
/// Awaiting it waits for the pipeline to end by itself and gives its report, as
/// [`Pipeline::run`] does. It may also be awaited by `&mut` (in a `tokio::select!`), and then still
/// shut down. Dropping it leaves the pipeline running, detached, as dropping a tokio `JoinHandle`
/// does.
///
/// # Shutting down
/// A graceful [`shutdown`](Self::shutdown) (or a [`ShutdownHandle`]'s, from another task) stops
/// the producers (a producer's `handle_demand` is not
/// called again, and one that is waiting in it is dropped at its `.await`, see
/// [`Producer::handle_demand`](crate::Producer::handle_demand)), delivers every event already
/// emitted, buffered ones included, lets every stage downstream handle them and end, and runs each
/// stage's `terminate`. Producers end with [`StageStatus::ShutDown`](crate::StageStatus::ShutDown),
/// the stages after them as when their input ends. Nothing already emitted is lost, and nothing a
/// [`from_channel`](crate::from_channel) sender got accepted: that producer closes its channel and
/// delivers what is in it before it ends.
///
/// A shutdown waits for the stages to handle what was emitted, however long that takes:
/// [`shutdown_within`](Self::shutdown_within) bounds the wait. In particular, a
/// [`to_stream`](crate::to_stream) sink hands its events on only as its stream is read, so read the
/// stream while the shutdown runs (spawn the shutdown, or `select!` on both), not after it; and a
/// consumer with manual demand that never asks again holds its producer's buffer undelivered.
///
/// Once a shutdown or an abort has begun (from this handle or a [`ShutdownHandle`]), the pipeline
/// grows no more: every `add_*` and `subscribe*` is refused at once with
/// [`PipelineError::ShuttingDown`], and the report holds nothing it would have added. A request
/// that reached the pipeline before the shutdown was asked for is served as before.
/// [`cancel`](Self::cancel) keeps working until the pipeline has ended, and so does a
/// [`resubscribe`](Self::resubscribe) that replaces a running subscription (it adds nothing: it is
/// how a consumer in manual demand that holds the shutdown open is moved to automatic demand, and
/// drains what its producer keeps for it); one whose `old` subscription is not running would only
/// add one, and is refused.
pub struct PipelineHandle {
    state: State,
    /// `None` once the pipeline has been asked to end, or when it never started.
    requests: Option<mpsc::UnboundedSender<Request>>,
    /// Where the stages and subscriptions added while it runs are built, one at a time, so that
    /// they reach the pipeline in the order of their indexes.
    staging: Mutex<Pipeline>,
    /// Closed once the supervisor has ended (it holds the sender): a request sent as it ended may
    /// stay in the channel, unanswered, so the answer is awaited against this too.
    supervisor_alive: watch::Receiver<Ended>,
}

enum State {
    Running(JoinHandle<Result<Report, PipelineError>>),
    /// Ended before it started (`Some`), or its result has been taken.
    Ended(Option<Result<Report, PipelineError>>),
}

impl PipelineHandle {
    /// Whether the pipeline has ended (its result is ready).
    pub fn is_finished(&self) -> bool {
        match &self.state {
            State::Running(task) => task.is_finished(),
            State::Ended(_) => true,
        }
    }

    /// A handle that shuts the pipeline down, or aborts it, from another task, while this one is
    /// awaited for the report (see [`ShutdownHandle`]).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::of(self)
    }

    /// Shuts the pipeline down gracefully (see the type's docs) and returns its report.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::run`]: the first stage that failed, leaving out those whose failure was
    /// dismissed ([`dismiss_failure`](Self::dismiss_failure)), with the report.
    ///
    /// # Cancel safety
    ///
    /// The shutdown is asked for when `shutdown` is called, not when the future is first polled:
    /// dropping the future, polled or not, leaves the shutdown going, detached.
    pub fn shutdown(self) -> impl Future<Output = Result<Report, PipelineError>> + Send {
        self.request(Request::Shutdown { deadline: None })
    }

    /// Shuts the pipeline down gracefully, but aborts the stages still busy after `timeout`.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShutdownTimeout`] naming the stages that were still busy, with the report
    /// (what they held is counted as lost); otherwise as [`shutdown`](Self::shutdown).
    ///
    /// # Cancel safety
    ///
    /// As [`shutdown`](Self::shutdown): the shutdown, and its time limit (counted from the call),
    /// go on if the future is dropped.
    pub fn shutdown_within(
        self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Report, PipelineError>> + Send {
        self.request(Request::shutdown_within(timeout))
    }

    /// Stops every stage where it stands and returns the report: what the stages held (a batch in a
    /// callback, their mailboxes, their buffers) is counted as lost, and their status is
    /// [`StageStatus::Aborted`](crate::StageStatus::Aborted). `terminate` is not called.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::run`], when a stage had failed before.
    ///
    /// # Cancel safety
    ///
    /// As [`shutdown`](Self::shutdown): the abort is asked for when `abort` is called, and goes on
    /// if the future is dropped.
    pub fn abort(self) -> impl Future<Output = Result<Report, PipelineError>> + Send {
        self.request(Request::Abort)
    }

    /// Adds a producer to the running pipeline and starts it, named after its type (made unique, as
    /// `Numbers#2`), as GenStage starts a stage at any time for others to `sync_subscribe` to. It
    /// has no consumer until [`subscribe`](Self::subscribe) gives it one, and waits for it:
    /// [`PipelineError::NoConsumer`] is a check of the pipeline as it starts, not of what is added
    /// later. Its `handle_demand` is first called once a consumer asks; from then on it is as one
    /// added with the pipeline: it ends when it returns [`Emit::last`](crate::Emit::last) or
    /// fails, and stops once every consumer it had has left. A shutdown stops it as it stops the
    /// others, with or without consumers; one that never had a consumer and holds events (emitted
    /// from a message, see [`HandleCast`](crate::HandleCast)) then stops at once as
    /// [`ShutDown`](crate::StageStatus::ShutDown) and counts them lost, having had nowhere to
    /// deliver them.
    ///
    /// The reference it returns is usable at once: to [`subscribe`](Self::subscribe) consumers
    /// to it, and, as a [`StageRef`](crate::StageRef), to reach it (`call`, `cast`, `info`,
    /// `demand`, `estimate_buffered_count`).
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended;
    /// [`PipelineError::NotRebuildable`] when the producer's restart policy (its `#[stage]`'s
    /// `restart` option, or [`Producer::restart_policy`](crate::Producer::restart_policy))
    /// restarts it: a value cannot be made again, so add it with
    /// [`add_producer_with`](Self::add_producer_with).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the producer added, without its reference.
    ///
    /// # Examples
    ///
    /// A new source (one per queue, say) added to the worker of a running pipeline:
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use genstage::{from_iter, Consumer, Pipeline, StageResult};
    ///
    /// /// Counts the events of the second queue, numbered from 1000.
    /// struct Worker(Arc<AtomicU64>);
    /// impl Consumer for Worker {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
    ///         let second = events.iter().filter(|&&n| n >= 1000).count() as u64;
    ///         self.0.fetch_add(second, Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let from_second = Arc::new(AtomicU64::new(0));
    /// let mut pipeline = Pipeline::new();
    /// let first_queue = pipeline.add_producer_named("queue-1", from_iter((0..1000u64).cycle()));
    /// let worker = pipeline.add_consumer(Worker(from_second.clone()));
    /// pipeline.subscribe(&first_queue, &worker);
    /// let running = pipeline.start();
    /// // A second queue appears: its producer feeds the same worker.
    /// let second_queue = running.add_producer_named("queue-2", from_iter(1000..1100u64)).await?;
    /// running.subscribe(&second_queue, &worker).await?;
    /// while from_second.load(Ordering::Relaxed) < 100 {
    ///     tokio::task::yield_now().await;
    /// }
    /// let report = running.shutdown().await?;
    /// assert_eq!(report.stage("queue-2").unwrap().emitted, 100);
    /// assert!(report.totals().balanced()); // every event emitted was handled
    /// # Ok(()) }
    /// ```
    pub fn add_producer<P: Producer>(&self, stage: P) -> AddingProducer<'_, P> {
        self.add_producer_as(None, stage)
    }

    /// [`add_producer`](Self::add_producer) under the given name.
    ///
    /// # Errors
    ///
    /// [`PipelineError::DuplicateName`] when another stage has the name;
    /// [`PipelineError::ShuttingDown`], [`PipelineError::NotRunning`] and [`PipelineError::NotRebuildable`] as
    /// [`add_producer`](Self::add_producer).
    ///
    /// # Cancel safety
    ///
    /// As [`add_producer`](Self::add_producer).
    pub fn add_producer_named<P: Producer>(
        &self,
        name: impl Into<String>,
        stage: P,
    ) -> AddingProducer<'_, P> {
        self.add_producer_as(Some(name.into()), stage)
    }

    /// [`add_producer`](Self::add_producer) for a producer built by `build`, which builds it again
    /// each time it is restarted (see [`RestartPolicy`](crate::RestartPolicy)), as
    /// [`Pipeline::add_producer_with`] does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended.
    ///
    /// # Cancel safety
    ///
    /// As [`add_producer`](Self::add_producer).
    pub fn add_producer_with<P: Producer>(
        &self,
        build: impl FnMut() -> P + Send + 'static,
    ) -> AddingProducer<'_, P> {
        self.add_producer_with_as(None, build)
    }

    /// [`add_producer_with`](Self::add_producer_with), under `name` or, when `None`, under its
    /// type's name, as [`Pipeline::add_producer_with_as`] does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::DuplicateName`] when another stage has the name;
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended.
    ///
    /// # Cancel safety
    ///
    /// As [`add_producer`](Self::add_producer).
    pub fn add_producer_with_as<P: Producer>(
        &self,
        name: Option<String>,
        build: impl FnMut() -> P + Send + 'static,
    ) -> AddingProducer<'_, P> {
        self.adding(|staging| staging.add_producer_with_as(name, build))
    }

    fn add_producer_as<P: Producer>(
        &self,
        name: Option<String>,
        stage: P,
    ) -> AddingProducer<'_, P> {
        self.adding(|staging| staging.add_producer_as(name, stage))
    }

    /// Adds a producer_consumer to the running pipeline and starts it, named after its type (made
    /// unique, as `Parse#2`): a new step to put between a running producer and a consumer. It
    /// waits for its first producer and its first consumer, which
    /// [`subscribe`](Self::subscribe) gives it, in either order; from then on it is as one added
    /// with the pipeline: it ends once its producers have all ended (or, as a consumer, been
    /// cancelled) and it has delivered what they sent, and stops once every consumer it had has
    /// left. A shutdown ends it as it ends the others; one that never had a consumer and was sent
    /// events then stops at once as [`ShutDown`](crate::StageStatus::ShutDown) and counts them
    /// lost, having had nowhere to deliver them.
    ///
    /// The reference it returns is usable at once, as [`add_producer`](Self::add_producer)'s is.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended;
    /// [`PipelineError::NotRebuildable`] when the stage's restart policy (its `#[stage]`'s
    /// `restart` option, or
    /// [`ProducerConsumer::restart_policy`](crate::ProducerConsumer::restart_policy)) restarts
    /// it: a value cannot be made again, so add it with
    /// [`add_producer_consumer_with`](Self::add_producer_consumer_with).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the producer_consumer added, without its reference.
    pub fn add_producer_consumer<S: ProducerConsumer>(
        &self,
        stage: S,
    ) -> AddingProducerConsumer<'_, S> {
        self.add_producer_consumer_as(None, stage)
    }

    /// [`add_producer_consumer`](Self::add_producer_consumer) under the given name.
    ///
    /// # Errors
    ///
    /// [`PipelineError::DuplicateName`] when another stage has the name;
    /// [`PipelineError::ShuttingDown`], [`PipelineError::NotRunning`] and [`PipelineError::NotRebuildable`] as
    /// [`add_producer_consumer`](Self::add_producer_consumer).
    ///
    /// # Cancel safety
    ///
    /// As [`add_producer_consumer`](Self::add_producer_consumer).
    pub fn add_producer_consumer_named<S: ProducerConsumer>(
        &self,
        name: impl Into<String>,
        stage: S,
    ) -> AddingProducerConsumer<'_, S> {
        self.add_producer_consumer_as(Some(name.into()), stage)
    }

    /// [`add_producer_consumer`](Self::add_producer_consumer) for a producer_consumer built by
    /// `build`, which builds it again each time it is restarted (see
    /// [`RestartPolicy`](crate::RestartPolicy)), as [`Pipeline::add_producer_consumer_with`] does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended.
    ///
    /// # Cancel safety
    ///
    /// As [`add_producer_consumer`](Self::add_producer_consumer).
    pub fn add_producer_consumer_with<S: ProducerConsumer>(
        &self,
        build: impl FnMut() -> S + Send + 'static,
    ) -> AddingProducerConsumer<'_, S> {
        self.add_producer_consumer_with_as(None, build)
    }

    /// [`add_producer_consumer_with`](Self::add_producer_consumer_with), under `name` or, when
    /// `None`, under its type's name, as [`Pipeline::add_producer_consumer_with_as`] does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::DuplicateName`] when another stage has the name;
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended.
    ///
    /// # Cancel safety
    ///
    /// As [`add_producer_consumer`](Self::add_producer_consumer).
    pub fn add_producer_consumer_with_as<S: ProducerConsumer>(
        &self,
        name: Option<String>,
        build: impl FnMut() -> S + Send + 'static,
    ) -> AddingProducerConsumer<'_, S> {
        self.adding(|staging| staging.add_producer_consumer_with_as(name, build))
    }

    fn add_producer_consumer_as<S: ProducerConsumer>(
        &self,
        name: Option<String>,
        stage: S,
    ) -> AddingProducerConsumer<'_, S> {
        self.adding(|staging| staging.add_producer_consumer_as(name, stage))
    }

    /// Adds a consumer to the running pipeline and starts it, named after its type (made unique, as
    /// `Tap#2`); it has no producer until [`subscribe`](Self::subscribe) gives it one, and waits
    /// for it: until then it keeps the pipeline up, so awaiting this handle does not return even
    /// once every other stage has ended (a shutdown ends such a consumer at once). Once subscribed,
    /// it finishes when its producers have all ended, as any consumer does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended;
    /// [`PipelineError::NotRebuildable`] when the consumer's restart policy (its `#[stage]`'s
    /// `restart` option, or [`Consumer::restart_policy`](crate::Consumer::restart_policy)) restarts it: a value
    /// cannot be made again, so add it with [`add_consumer_with`](Self::add_consumer_with).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the consumer added, without its reference.
    pub fn add_consumer<C: Consumer>(&self, stage: C) -> AddingConsumer<'_, C> {
        self.add_consumer_as(None, stage)
    }

    /// [`add_consumer`](Self::add_consumer) under the given name.
    ///
    /// # Errors
    ///
    /// [`PipelineError::DuplicateName`] when another stage has the name;
    /// [`PipelineError::ShuttingDown`], [`PipelineError::NotRunning`] and [`PipelineError::NotRebuildable`] as
    /// [`add_consumer`](Self::add_consumer).
    ///
    /// # Cancel safety
    ///
    /// As [`add_consumer`](Self::add_consumer).
    pub fn add_consumer_named<C: Consumer>(
        &self,
        name: impl Into<String>,
        stage: C,
    ) -> AddingConsumer<'_, C> {
        self.add_consumer_as(Some(name.into()), stage)
    }

    /// [`add_consumer`](Self::add_consumer) for a consumer built by `build`, which builds it again
    /// each time it is restarted (see [`RestartPolicy`](crate::RestartPolicy)), as
    /// [`Pipeline::add_consumer_with`] does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended.
    ///
    /// # Cancel safety
    ///
    /// As [`add_consumer`](Self::add_consumer).
    pub fn add_consumer_with<C: Consumer>(
        &self,
        build: impl FnMut() -> C + Send + 'static,
    ) -> AddingConsumer<'_, C> {
        self.add_consumer_with_as(None, build)
    }

    /// [`add_consumer_with`](Self::add_consumer_with), under `name` or, when `None`, under its
    /// type's name, as [`Pipeline::add_consumer_with_as`] does.
    ///
    /// # Errors
    ///
    /// [`PipelineError::DuplicateName`] when another stage has the name;
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun;
    /// [`PipelineError::NotRunning`] once the pipeline has ended.
    ///
    /// # Cancel safety
    ///
    /// As [`add_consumer`](Self::add_consumer).
    pub fn add_consumer_with_as<C: Consumer>(
        &self,
        name: Option<String>,
        build: impl FnMut() -> C + Send + 'static,
    ) -> AddingConsumer<'_, C> {
        self.adding(|staging| staging.add_consumer_with_as(name, build))
    }

    fn add_consumer_as<C: Consumer>(
        &self,
        name: Option<String>,
        stage: C,
    ) -> AddingConsumer<'_, C> {
        self.adding(|staging| staging.add_consumer_as(name, stage))
    }

    /// Adds the stage that `add` adds, when the future is first polled (see
    /// [`add_staged`](Self::add_staged)): the one path of every `add_*` of the handle. A named
    /// future, of a type without bounds, as the stage references are: a stage of the wrong role is
    /// one error, at the call's argument, as with the builder, rather than the same error again
    /// at the call, its `.await` and its `?` for the bounds of an `async fn`'s future and of the
    /// reference (five in all).
    fn adding<R: Send + 'static>(
        &self,
        add: impl FnOnce(&mut Pipeline) -> R + Send + 'static,
    ) -> Adding<'_, R> {
        Adding {
            answer: Box::pin(self.add_staged(add)),
        }
    }

    /// Adds a stage with `add` to the pipeline that stages what the handle adds, and starts it in
    /// the running pipeline.
    async fn add_staged<R>(
        &self,
        add: impl FnOnce(&mut Pipeline) -> R,
    ) -> Result<R, PipelineError> {
        let (reply, answer) = oneshot::channel();
        let added = {
            let mut staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
            let added = add(&mut staging);
            let Some(stage) = staging.stages.pop() else {
                return Err(PipelineError::NotRunning);
            };
            staging.first_index += 1;
            self.send(Request::AddStage {
                stage: Box::new(stage),
                reply,
            })?;
            added
        };
        self.answer(answer).await??;
        Ok(added)
    }

    /// Subscribes `consumer` to `producer` in the running pipeline, with the consumer's default
    /// options; returns the subscription's tag, for [`cancel`](Self::cancel). As with
    /// [`Pipeline::subscribe`], the event types must agree, or it does not compile.
    ///
    /// # Errors
    ///
    /// As [`subscribe_with`](Self::subscribe_with).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the subscription made, without its tag.
    pub fn subscribe<T: Send + 'static>(
        &self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
    ) -> Subscribing<'_> {
        self.subscribe_with(producer, consumer, SubscribeOptions::default())
    }

    /// Subscribes `consumer` to `producer` in the running pipeline; set fields of `options`
    /// override the consumer's defaults. The consumer's initial ask is made at once, and its
    /// `handle_subscribe` runs before the producer's first events reach it.
    ///
    /// # Errors
    ///
    /// [`PipelineError::InvalidSubscription`] for bad options (naming both stages, with GenStage's
    /// message), [`PipelineError::InvalidDispatch`] when the subscription does not fit
    /// `producer`'s dispatcher (naming `producer`: a partition missing, out of range, or held by a
    /// running subscription, or, to a stage that broadcasts, `consumer` subscribed there already,
    /// [`DispatchSetupError::AlreadySubscribed`](crate::DispatchSetupError::AlreadySubscribed)),
    /// [`PipelineError::StageEnded`] when either stage has ended (a stage still ending,
    /// its `terminate` running, takes the subscription, which ends when the stage does),
    /// [`PipelineError::Cycle`] when the consumer feeds the producer (through subscriptions not
    /// cancelled),
    /// [`PipelineError::ForeignStage`] for a stage of another pipeline,
    /// [`PipelineError::ShuttingDown`] once a shutdown or an abort has begun,
    /// [`PipelineError::NotRunning`] once the pipeline has ended. A subscription that `producer`'s
    /// own dispatcher refuses ([`Dispatcher::subscribe`](crate::dispatcher::Dispatcher::subscribe))
    /// is made here, and its tag returned: the refusal reaches the consumer as its
    /// [`CancelReason::Refused`](crate::CancelReason::Refused).
    ///
    /// # Cancel safety
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_with<T: Send + 'static>(
        &self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
    ) -> Subscribing<'_> {
        self.wire(None, producer, consumer, options, None)
    }

    /// Subscribes `consumer` to `producer`, a stage that broadcasts its events, in the running
    /// pipeline, for only the events `selector` accepts (as
    /// [`Pipeline::subscribe_selected`](crate::Pipeline::subscribe_selected)).
    ///
    /// # Errors
    ///
    /// As [`subscribe_with`](Self::subscribe_with), and [`PipelineError::InvalidDispatch`] when
    /// `producer`'s dispatcher takes no selector (of the built-in ones, only a broadcast's does).
    ///
    /// # Cancel safety
    ///
    /// As [`subscribe`](Self::subscribe).
    pub fn subscribe_selected<T: Send + 'static>(
        &self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
        selector: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Subscribing<'_> {
        let selector: Selector<T> = Arc::new(selector);
        self.wire(None, producer, consumer, options, Some(selector))
    }

    /// Replaces the subscription `old` of `consumer` by a new one to `producer`, with `options`
    /// (GenStage's `sync_resubscribe`): the new subscription is made as by
    /// [`subscribe_with`](Self::subscribe_with), and `old` is cancelled as by
    /// [`cancel`](Self::cancel), in one step of the pipeline; returns the new subscription's tag.
    ///
    /// The consumer's `handle_subscribe` sees the new subscription, and its `handle_cancel` sees
    /// `old` end as [`cancel`](Self::cancel) ends it, once it has handled every event sent on it:
    /// nothing is lost or handled twice across the switch, and the consumer, having a producer
    /// throughout, does not finish in between. `producer` may be `old`'s producer (to change the
    /// options) or another.
    ///
    /// To `old`'s producer, `old` is cancelled first, as GenStage cancels the old reference
    /// first, and the producer takes the new subscription in the same step (so it is never left
    /// without a consumer in between, and a broadcast sends its other consumers nothing that the
    /// new subscription would then miss): a partition that `old` took is free for the new
    /// subscription to take again, and the events the partition kept that `old` had not been sent
    /// go to the new one, in order, after those sent on `old`.
    ///
    /// An `old` that is not a running subscription of `consumer` (it has ended or been cancelled,
    /// or is another consumer's or another pipeline's) is left alone, and the new subscription made
    /// all the same, as GenStage's `sync_resubscribe` does with an unknown reference.
    ///
    /// A consumer that cancels `old` itself ([`Context::cancel`](crate::Context::cancel),
    /// [`Asker::cancel`](crate::Asker::cancel)) while this is on its way races it, as GenStage's
    /// `cancel/2` from the consumer races a `sync_resubscribe`: the pipeline takes the two in the
    /// order they reach it. Should the resubscribe come first, `old` is replaced as above. Should
    /// the cancel, `old` has ended, and the new subscription is made as by
    /// [`subscribe_with`](Self::subscribe_with): a consumer left with no other producer may
    /// finish before it is told of the new one, and the resubscribe is then refused
    /// ([`PipelineError::StageEnded`]) or, the consumer still ending, answered with a subscription
    /// that ends with it. Either way nothing is lost or handled twice, and the report accounts for
    /// every event; a consumer that is to stay subscribed keeps `old` for the resubscribe to
    /// replace, or another producer.
    ///
    /// # Errors
    ///
    /// As [`subscribe_with`](Self::subscribe_with); a subscription refused with one of these
    /// errors leaves `old` as it was. One that `producer`'s own dispatcher refuses
    /// ([`Dispatcher::subscribe`](crate::dispatcher::Dispatcher::subscribe)) is not refused here:
    /// the new tag comes back and `old` is cancelled, as for any resubscribe, and then the new
    /// subscription ends at once with [`CancelReason::Refused`](crate::CancelReason::Refused),
    /// which fails the consumer unless `options` make it `temporary`. To a stage that broadcasts,
    /// [`PipelineError::InvalidDispatch`]
    /// ([`AlreadySubscribed`](crate::DispatchSetupError::AlreadySubscribed)) when `consumer` has a
    /// running subscription there that `old` is not: `old` already ended, or is to another
    /// producer. Once a shutdown or an abort has begun, [`PipelineError::ShuttingDown`] unless
    /// `old` is a running subscription of `consumer`: replacing one grows nothing, and is served.
    ///
    /// # Cancel safety
    ///
    /// The request is sent when the future is first polled, and the pipeline makes the switch
    /// whole: dropping the future after that may leave the new subscription made and `old`
    /// cancelled, without the new tag.
    ///
    /// # Examples
    ///
    /// A consumer moves to smaller batches while the pipeline runs:
    ///
    /// ```
    /// use genstage::{from_iter, Consumer, Pipeline, StageResult, SubscribeOptions};
    ///
    /// struct Sink;
    /// impl Consumer for Sink {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer(from_iter(0u64..)); // endless
    /// let first_sink = pipeline.add_consumer(Sink);
    /// pipeline.subscribe(&numbers, &first_sink);
    /// let running = pipeline.start();
    /// let sink = running.add_consumer(Sink).await?;
    /// let first = running.subscribe(&numbers, &sink).await?;
    /// let options = SubscribeOptions::new().max_demand(10);
    /// let second = running.resubscribe(first, &numbers, &sink, options).await?;
    /// assert_ne!(first, second);
    /// // `first` is over; `second` is the sink's subscription now.
    /// assert!(running.cancel(first).await.is_err());
    /// let report = running.shutdown().await?;
    /// assert!(report.totals().balanced()); // every event emitted was handled
    /// assert_eq!(report.totals().lost, 0);
    /// # Ok(()) }
    /// ```
    pub fn resubscribe<T: Send + 'static>(
        &self,
        old: SubscriptionTag,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
    ) -> Subscribing<'_> {
        self.wire(Some(old), producer, consumer, options, None)
    }

    /// [`resubscribe`](Self::resubscribe) to a producer that broadcasts, for only the events
    /// `selector` accepts (as [`subscribe_selected`](Self::subscribe_selected)): a consumer's
    /// selector does not carry over from `old`, so a resubscription that keeps one gives it again.
    ///
    /// # Errors
    ///
    /// As [`subscribe_selected`](Self::subscribe_selected); a subscription refused with one of
    /// these errors leaves `old` as it was (one that `producer`'s own dispatcher refuses: see
    /// [`resubscribe`](Self::resubscribe)). During a shutdown, as
    /// [`resubscribe`](Self::resubscribe).
    ///
    /// # Cancel safety
    ///
    /// As [`resubscribe`](Self::resubscribe).
    pub fn resubscribe_selected<T: Send + 'static>(
        &self,
        old: SubscriptionTag,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
        selector: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Subscribing<'_> {
        let selector: Selector<T> = Arc::new(selector);
        self.wire(Some(old), producer, consumer, options, Some(selector))
    }

    /// Subscribes `consumer` to `producer`, replacing `replacing` (see
    /// [`resubscribe`](Self::resubscribe)), when the future is first polled. The handles' ends are
    /// taken now, so that the future's type names neither handle nor `T`: a consumer of the wrong
    /// type is one error, at the call's argument, rather than one more at the call and one at its
    /// `.await` for the bounds of a future generic over the handles.
    fn wire<T: Send + 'static>(
        &self,
        replacing: Option<SubscriptionTag>,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
        options: SubscribeOptions,
        selector: Option<Selector<T>>,
    ) -> Subscribing<'_> {
        let (source, sink) = (producer.source_end(), consumer.sink_end());
        let answer = async move {
            let (reply, answer) = oneshot::channel();
            {
                let mut staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
                staging.subscribe_edge(source, sink, options, selector);
                if let Some(error) = staging.error.take() {
                    return Err(error);
                }
                let Some(edge) = staging.edges.pop() else {
                    return Err(PipelineError::NotRunning);
                };
                self.send(Request::Subscribe {
                    edge,
                    replacing,
                    reply,
                })?;
            }
            self.answer(answer).await?
        };
        Subscribing {
            answer: Box::pin(answer),
        }
    }

    /// Ends a subscription made by [`subscribe`](Self::subscribe) or when the pipeline was built
    /// (GenStage's `cancel/2`): its producer sends nothing more to it, and its consumer handles what
    /// was sent, then sees it end (`handle_cancel` with
    /// [`CancelReason::Cancelled`](crate::CancelReason::Cancelled); the producer's
    /// `handle_consumer_cancel` is told the same). As for a producer that finishes, the consumer goes
    /// on with its other producers whatever its cancel mode, and finishes when it has none left; a
    /// producer left without consumers stops, unless it waits for consumers
    /// ([`WithoutConsumers::Wait`](crate::WithoutConsumers::Wait)): then it keeps what it buffers for
    /// the next consumer to subscribe.
    ///
    /// The tag of a subscription made when the pipeline was built is what
    /// [`subscriptions`](Self::subscriptions) finds by its two stages, and the one its consumer's
    /// `handle_subscribe` is told ([`Subscription::tag`](crate::Subscription::tag)); one made by
    /// [`subscribe`](Self::subscribe) is what that returns.
    ///
    /// # Errors
    ///
    /// [`PipelineError::UnknownSubscription`] if the subscription has ended or is not this
    /// pipeline's; [`PipelineError::NotRunning`] once the pipeline has ended. A shutdown does not
    /// refuse it: as GenStage lets a consumer cancel at any time, a subscription may be cancelled
    /// while the pipeline shuts down, and its consumer then handles what was sent on it, as above.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the subscription cancelled.
    pub async fn cancel(&self, subscription: SubscriptionTag) -> Result<(), PipelineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Cancel {
            tag: subscription,
            reply,
        })?;
        self.answer(answer).await?
    }

    /// The tags of the subscriptions of `consumer` to `producer` that still run, oldest first:
    /// those made when the pipeline was built (by [`Pipeline::subscribe`] and its siblings, or by
    /// `pipeline!`) as well as those made through the handle, for [`cancel`](Self::cancel) and
    /// [`resubscribe`](Self::resubscribe). A GenStage consumer subscribed by its `subscribe_to`
    /// learns its subscription's reference in `handle_subscribe`; here, whoever holds the two
    /// stage references asks the pipeline. The tag is the one the consumer's `handle_subscribe`
    /// is told ([`Subscription::tag`](crate::Subscription::tag)).
    ///
    /// Usually one tag; none once the subscription has been cancelled, replaced, refused by the
    /// producer's dispatcher, or either stage has ended; several when the consumer was subscribed
    /// more than once to a producer that does not broadcast.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ForeignStage`] for a stage of another pipeline;
    /// [`PipelineError::NotRunning`] once the pipeline has ended. A shutdown does not refuse it.
    ///
    /// # Cancel safety
    ///
    /// It changes nothing: dropping the future loses only the answer.
    ///
    /// # Examples
    ///
    /// A subscription made when the pipeline was built, moved to smaller batches while it runs:
    ///
    /// ```
    /// use genstage::{from_iter, Consumer, Pipeline, StageResult, SubscribeOptions};
    ///
    /// struct Sink;
    /// impl Consumer for Sink {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer(from_iter(0u64..)); // endless
    /// let sink = pipeline.add_consumer(Sink);
    /// pipeline.subscribe(&numbers, &sink);
    /// let running = pipeline.start();
    /// let built = running.subscriptions(&numbers, &sink).await?;
    /// assert_eq!(built.len(), 1);
    /// let options = SubscribeOptions::new().max_demand(10);
    /// let smaller = running.resubscribe(built[0], &numbers, &sink, options).await?;
    /// assert_eq!(running.subscriptions(&numbers, &sink).await?, [smaller]);
    /// let report = running.shutdown().await?;
    /// assert!(report.totals().balanced()); // every event emitted was handled
    /// # Ok(()) }
    /// ```
    pub fn subscriptions<T: Send + 'static>(
        &self,
        producer: &impl Source<T>,
        consumer: &impl Sink<T>,
    ) -> impl Future<Output = Result<Vec<SubscriptionTag>, PipelineError>> + Send + '_ {
        // The ends' ids are taken now, so that the future names neither handle (see `wire`).
        let (producer, consumer) = (producer.source_end(), consumer.sink_end());
        let ids = [(producer.id, producer.label), (consumer.id, consumer.label)];
        async move {
            let (reply, answer) = oneshot::channel();
            let [producer, consumer] = self.indexes(ids)?;
            self.send(Request::Subscriptions {
                producer,
                consumer,
                reply,
            })?;
            self.answer(answer).await
        }
    }

    /// Waits for `stage` to end, and gives its report: what GenStage's users get by monitoring a
    /// stage. A stage ends when it finishes, fails (once its restarts are spent), is cancelled
    /// by its producers' ends, or is shut down or aborted with the pipeline; at once if it has
    /// ended already, even once the whole pipeline has (a monitor that asks late gets the report
    /// the pipeline's report holds). From then on the pipeline counts it ended: a
    /// [`subscribe`](Self::subscribe) to it is refused with [`PipelineError::StageEnded`]. A
    /// message to a stage that is ending is refused a little earlier, as soon as the stage has
    /// decided to end ([`CallError::Ended`](crate::CallError::Ended)), while its `terminate` may
    /// still run.
    ///
    /// The pipeline is asked when this is called, not when the future is first polled: the future
    /// holds neither the handle nor the reference, so that it may be spawned, or awaited while the
    /// handle shuts the pipeline down.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ForeignStage`] for a stage of another pipeline;
    /// [`PipelineError::NotRunning`] when the pipeline never ran: `start()` found it invalid, and
    /// awaiting the handle gives why.
    ///
    /// # Cancel safety
    ///
    /// It changes nothing: dropping the future loses only the answer.
    ///
    /// # Examples
    ///
    /// ```
    /// use genstage::{from_iter, Consumer, Pipeline, StageResult, StageStatus};
    ///
    /// struct Sink;
    /// impl Consumer for Sink {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let few = pipeline.add_producer(from_iter(0..3u64));
    /// let sink = pipeline.add_consumer(Sink);
    /// pipeline.subscribe(&few, &sink);
    /// let running = pipeline.start();
    /// let ended = running.stage_ended(&few).await?;
    /// assert_eq!((ended.emitted, ended.status), (3, StageStatus::Finished));
    /// let report = running.await?;
    /// assert_eq!(report.stage("Sink").unwrap().events_in, 3);
    ///
    /// // Waited for from another task, while the handle shuts the pipeline down.
    /// let mut pipeline = Pipeline::new();
    /// let endless = pipeline.add_producer(from_iter(0u64..));
    /// let sink = pipeline.add_consumer(Sink);
    /// pipeline.subscribe(&endless, &sink);
    /// let running = pipeline.start();
    /// let sink_ended = tokio::spawn(running.stage_ended(&sink));
    /// let report = running.shutdown().await?;
    /// let sink_ended = sink_ended.await.expect("the task ran")?;
    /// assert_eq!(report.stage("Sink"), Some(&sink_ended));
    /// # Ok(()) }
    /// ```
    pub fn stage_ended(
        &self,
        stage: &impl StageRef,
    ) -> impl Future<Output = Result<StageReport, PipelineError>> + Send + 'static {
        let alive = self.supervisor_alive.clone();
        let asked = self.ask_about(stage, |stage, reply| Request::StageEnded { stage, reply });
        async move {
            let (stage, asked) = asked?;
            let answered = match asked {
                Ok(answer) => answer_while(alive.clone(), answer).await,
                Err(error) => Err(error),
            };
            match answered {
                // Asked as the pipeline ended, or after: its report is the one published then.
                Err(PipelineError::NotRunning) => {
                    let ended = alive
                        .borrow()
                        .as_ref()
                        .and_then(|ended| ended.get(stage).cloned());
                    ended.flatten().ok_or(PipelineError::NotRunning)
                }
                answered => answered,
            }
        }
    }

    /// Takes `stage`'s failure as dealt with: the run does not fail for it. A service whose monitor
    /// replaces a worker that died, as an OTP supervisor replaces a temporary child, says so here;
    /// a failure of another stage still fails the run.
    ///
    /// It holds for a failure that has happened and for one to come, of any kind: an `Err`, a
    /// panic, or a restart limit reached. The report still shows the stage as it ended (its status,
    /// failures and losses) and still balances; only the run's result changes: `Ok(report)`, or
    /// the error of the first other stage that failed (a shutdown that timed out still gives
    /// [`PipelineError::ShutdownTimeout`]). It is asked of a running pipeline: one whose stages
    /// may all end before the call (a short batch) may end first, and then fails for the stage;
    /// [`Pipeline::dismiss_failure`](crate::Pipeline::dismiss_failure) dismisses it beforehand.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ForeignStage`] for a stage of another pipeline;
    /// [`PipelineError::NotRunning`] once the pipeline has ended, or when it never ran: the run's
    /// result is then as if it had not been asked. `Ok` says the dismissal counts: one asked
    /// before the pipeline ended does, even as its last stages end. A shutdown does not refuse it.
    ///
    /// # Cancel safety
    ///
    /// The dismissal is asked for when `dismiss_failure` is called, not when the future is first
    /// polled: dropping the future, polled or not, does not withdraw it.
    ///
    /// # Examples
    ///
    /// ```
    /// use genstage::{from_iter, CancelMode, Consumer, Pipeline, StageResult, StageStatus};
    /// use genstage::SubscribeOptions;
    ///
    /// struct Worker { sound: bool }
    /// impl Consumer for Worker {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _jobs: Vec<u64>) -> StageResult<()> {
    ///         if self.sound { Ok(()) } else { Err("out of memory".into()) }
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let jobs = pipeline.add_producer(from_iter(0u64..)); // endless: a service
    /// let worker = pipeline.add_consumer_named("worker", Worker { sound: false });
    /// let spare = pipeline.add_consumer_named("spare", Worker { sound: true });
    /// // The worker's end must not take the jobs down.
    /// let options = || SubscribeOptions::new().max_demand(1).cancel(CancelMode::Temporary);
    /// pipeline.subscribe_with(&jobs, &worker, options());
    /// pipeline.subscribe_with(&jobs, &spare, options());
    /// let running = pipeline.start();
    /// let ended = running.stage_ended(&worker).await?;
    /// assert!(matches!(ended.status, StageStatus::Failed(_)));
    /// running.dismiss_failure(&worker).await?;
    /// let report = running.shutdown().await?; // `Ok`: the worker's failure was dealt with
    /// assert_eq!(report.stage("worker"), Some(&ended));
    /// assert!(report.balanced()); // the worker's lost job included
    /// # Ok(()) }
    /// ```
    pub fn dismiss_failure(
        &self,
        stage: &impl StageRef,
    ) -> impl Future<Output = Result<(), PipelineError>> + Send + 'static {
        let alive = self.supervisor_alive.clone();
        let asked = self.ask_about(stage, |stage, reply| Request::DismissFailure {
            stage,
            reply,
        });
        async move {
            let (_, asked) = asked?;
            answer_while(alive, asked?).await
        }
    }

    /// Sends the supervisor the request `request` makes about `stage`, given its index and where
    /// to reply: the index, and the answer to wait for (`NotRunning` when the pipeline takes no
    /// more requests); `ForeignStage` for a stage of another pipeline.
    fn ask_about<T>(
        &self,
        stage: &impl StageRef,
        request: impl FnOnce(usize, oneshot::Sender<T>) -> Request,
    ) -> Result<(usize, Result<oneshot::Receiver<T>, PipelineError>), PipelineError> {
        let port = stage.port();
        let [index] = self.indexes([(port.id, port.label.clone())])?;
        let (reply, answer) = oneshot::channel();
        Ok((index, self.send(request(index, reply)).map(|()| answer)))
    }

    /// The indexes of stages of this pipeline, given their ids and labels: `ForeignStage` naming
    /// one of another.
    fn indexes<const N: usize>(
        &self,
        stages: [(StageId, Arc<StageLabel>); N],
    ) -> Result<[usize; N], PipelineError> {
        let staging = self.staging.lock().unwrap_or_else(PoisonError::into_inner);
        let known = staging.first_index + staging.stages.len();
        for (id, label) in &stages {
            if id.pipeline != staging.id || id.index >= known {
                return Err(PipelineError::ForeignStage {
                    stage: label.get().to_owned(),
                });
            }
        }
        Ok(stages.map(|(id, _)| id.index))
    }

    /// The supervisor's answer to a request; [`PipelineError::NotRunning`] if it ended without
    /// giving one.
    async fn answer<T>(&self, answer: oneshot::Receiver<T>) -> Result<T, PipelineError> {
        answer_while(self.supervisor_alive.clone(), answer).await
    }

    /// Where requests go, while the pipeline may take them.
    pub(super) fn requests(&self) -> Option<&mpsc::UnboundedSender<Request>> {
        self.requests.as_ref()
    }

    fn send(&self, request: Request) -> Result<(), PipelineError> {
        send_request(self.requests(), request)
    }

    /// Sends `request` now, and gives back the handle to await the pipeline's result.
    fn request(mut self, request: Request) -> Self {
        if let Some(requests) = self.requests.take() {
            // The pipeline may have ended already: its result is what awaiting gives.
            let _ = requests.send(request);
        }
        self
    }
}

/// The supervisor's answer to a request, while `alive` tells it runs; [`PipelineError::NotRunning`]
/// if it ended without giving one.
async fn answer_while<T>(
    mut alive: watch::Receiver<Ended>,
    answer: oneshot::Receiver<T>,
) -> Result<T, PipelineError> {
    tokio::pin!(answer);
    tokio::select! {
        biased;
        answered = &mut answer => answered.map_err(|_| PipelineError::NotRunning),
        _ = alive.changed() => answer.try_recv().map_err(|_| PipelineError::NotRunning),
    }
}

/// The answer of [`PipelineHandle::subscribe`] and its siblings: a future of the new
/// subscription's tag, which asks for the subscription when first polled.
///
/// # Cancel safety
///
/// As [`PipelineHandle::subscribe`]: dropping the future once polled may leave the subscription
/// made, without its tag.
#[must_use = "a subscription is asked for only when the future is `.await`ed"]
pub struct Subscribing<'a> {
    answer: Pin<Box<dyn Future<Output = Result<SubscriptionTag, PipelineError>> + Send + 'a>>,
}

impl Future for Subscribing<'_> {
    type Output = Result<SubscriptionTag, PipelineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.as_mut().poll(cx)
    }
}

impl fmt::Debug for Subscribing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subscribing")
    }
}

/// The answer of [`PipelineHandle::add_consumer`], [`add_producer`](PipelineHandle::add_producer),
/// [`add_producer_consumer`](PipelineHandle::add_producer_consumer) and their siblings: a future of
/// the new stage's reference `R`, which adds the stage when first polled.
///
/// # Cancel safety
///
/// As [`PipelineHandle::add_consumer`]: dropping the future once polled may leave the stage added,
/// without its reference.
#[must_use = "a stage is added only when the future is `.await`ed"]
pub struct Adding<'a, R> {
    answer: Pin<Box<dyn Future<Output = Result<R, PipelineError>> + Send + 'a>>,
}

/// The answer of [`PipelineHandle::add_consumer`] and its siblings: a future of the new
/// consumer's reference.
pub type AddingConsumer<'a, C> = Adding<'a, ConsumerRef<C>>;

/// The answer of [`PipelineHandle::add_producer`] and its siblings: a future of the new
/// producer's reference.
pub type AddingProducer<'a, P> = Adding<'a, ProducerRef<P>>;

/// The answer of [`PipelineHandle::add_producer_consumer`] and its siblings: a future of the new
/// producer_consumer's reference.
pub type AddingProducerConsumer<'a, S> = Adding<'a, ProducerConsumerRef<S>>;

impl<R> Future for Adding<'_, R> {
    type Output = Result<R, PipelineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.as_mut().poll(cx)
    }
}

impl<R> fmt::Debug for Adding<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Adding")
    }
}

impl Future for PipelineHandle {
    type Output = Result<Report, PipelineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match &mut self.state {
            State::Running(task) => match Pin::new(task).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(result)) => result,
                Poll::Ready(Err(error)) => Err(PipelineError::Internal {
                    message: if error.is_cancelled() {
                        "the pipeline's task was cancelled (its runtime shut down)".to_owned()
                    } else {
                        format!(
                            "the pipeline's task panicked: {}",
                            crate::run::panic_message(&*error.into_panic())
                        )
                    },
                }),
            },
            State::Ended(result) => result.take().unwrap_or(Err(PipelineError::Internal {
                message: "the pipeline's result was already taken".to_owned(),
            })),
        };
        self.state = State::Ended(None);
        Poll::Ready(result)
    }
}

impl fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request sent while the supervisor ends may be pushed into the channel after the
    /// supervisor's receiver has drained it (tokio's mpsc keeps such a message until every sender
    /// is dropped, and the handle holds one): its reply is never sent nor dropped. Found by
    /// tests/chaos.rs (seed 1304: a resubscribe racing the pipeline's end waited for ever). The
    /// handle then answers `NotRunning` once the supervisor has ended.
    #[tokio::test]
    async fn a_request_stuck_in_the_channel_is_answered_once_the_supervisor_has_ended() {
        let (requests, stuck) = mpsc::unbounded_channel();
        let (alive, supervisor_alive) = watch::channel(None);
        let handle = PipelineHandle {
            state: State::Ended(None),
            requests: Some(requests),
            supervisor_alive,
            staging: Mutex::new(Pipeline::new()),
        };
        // The supervisor has ended; the request stays in the channel, unread.
        drop(alive);
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            handle.cancel(SubscriptionTag(7)),
        )
        .await;
        assert!(
            matches!(answered, Ok(Err(PipelineError::NotRunning))),
            "{answered:?}"
        );
        drop(stuck);
    }
}
