//! Reaching a running stage through its reference: calls, casts, infos and its buffer's size.
//!
//! A stage reference ([`ProducerRef`](super::ProducerRef), [`ProducerConsumerRef`](super::ProducerConsumerRef),
//! [`ConsumerRef`](super::ConsumerRef)) is what wires the stage into its pipeline before it runs, and
//! what reaches it while it runs: the [`StageRef`] trait gives every reference the same messaging
//! methods, checked against the stage's type.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::messages::{
    after_buffered, call_letter, cast_letter, typed_info_letter, CallError, Emission, HandleCall,
    HandleCast, HandleInfo,
};
use crate::options::DemandMode;
use crate::protocol::{Control, ControlPort, Unsent};
use crate::stage::{Consumer, Producer, ProducerConsumer};

use super::handles::{ConsumerRef, ProducerConsumerRef, ProducerRef, StageId};

/// How long [`StageRef::call`] waits for an answer: GenStage's default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A stage's name, as its references see it: the name it was added under, until the pipeline starts
/// and makes it unique (`Tap#2`).
#[derive(Debug)]
pub(crate) struct StageLabel {
    added_as: String,
    unique: OnceLock<String>,
}

impl StageLabel {
    pub(crate) fn new(added_as: String) -> Self {
        StageLabel {
            added_as,
            unique: OnceLock::new(),
        }
    }

    /// Records the name the pipeline gave the stage when it started.
    pub(crate) fn set_unique(&self, name: &str) {
        let _ = self.unique.set(name.to_owned());
    }

    pub(crate) fn get(&self) -> &str {
        self.unique.get().unwrap_or(&self.added_as)
    }
}

/// The control path of a stage of type `S`, as its references hold it. Not part of the API.
#[doc(hidden)]
pub struct StagePort<S> {
    pub(crate) id: StageId,
    pub(crate) label: Arc<StageLabel>,
    pub(crate) control: Arc<dyn ControlPort>,
    _stage: PhantomData<fn() -> S>,
}

impl<S> StagePort<S> {
    pub(crate) fn new(id: StageId, label: Arc<StageLabel>, control: Arc<dyn ControlPort>) -> Self {
        StagePort {
            id,
            label,
            control,
            _stage: PhantomData,
        }
    }

    fn ended(&self) -> CallError {
        CallError::Ended {
            stage: self.label.get().to_owned(),
        }
    }

    fn send(&self, control: Control) -> Result<(), CallError> {
        if self.control.control(control) {
            Ok(())
        } else {
            Err(self.ended())
        }
    }

    /// Sends what a producer or producer_consumer drops once shutting down (a letter, a demand
    /// switch): refused then, at once, so that what is accepted is what the stage takes.
    fn send_refusable(&self, control: Control) -> Result<(), CallError> {
        self.control
            .control_from_outside(control)
            .map_err(|unsent| match unsent {
                Unsent::Ended => self.ended(),
                Unsent::ShuttingDown => CallError::ShuttingDown {
                    stage: self.label.get().to_owned(),
                },
            })
    }

    /// Sends `control` (by [`send_refusable`](Self::send_refusable) when `refusable`) and waits
    /// for its answer.
    async fn request<R>(
        &self,
        control: Control,
        refusable: bool,
        answer: oneshot::Receiver<R>,
        timeout: Duration,
    ) -> Result<R, CallError> {
        if refusable {
            self.send_refusable(control)?;
        } else {
            self.send(control)?;
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            // The stage dropped the reply: it did not reply, or it ended first.
            Ok(Err(_)) => Err(CallError::NoReply {
                stage: self.label.get().to_owned(),
            }),
            Err(_) => Err(CallError::Timeout {
                stage: self.label.get().to_owned(),
                after: timeout,
            }),
        }
    }
}

impl<S> std::fmt::Debug for StagePort<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagePort")
            .field("id", &self.id)
            .field("name", &self.label.get())
            .finish()
    }
}

impl<S> Clone for StagePort<S> {
    fn clone(&self) -> Self {
        StagePort::new(self.id, self.label.clone(), self.control.clone())
    }
}

/// What every stage reference offers: the stage's name, and GenStage's messages (`call`, `cast`,
/// `info`), each checked against the stage's type: a message the stage does not handle does not
/// compile.
///
/// References work before the pipeline starts (messages wait in the stage's mailbox until it runs,
/// and reach the stage before its subscriptions, which the pipeline makes as it starts) and after
/// it has ended (they return [`CallError::Ended`] naming the stage).
///
/// # Examples
///
/// ```
/// use genstage::{
///     from_iter, Consumer, Context, HandleCall, Pipeline, ReplyTo, StageRef, StageResult,
/// };
///
/// /// Adds up what it receives; answers `Total` calls with the sum so far.
/// #[derive(Default)]
/// struct Sum(u64);
/// impl Consumer for Sum {
///     type Input = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
///         self.0 += events.iter().sum::<u64>();
///         Ok(())
///     }
/// }
/// struct Total;
/// impl HandleCall<Total> for Sum {
///     type Reply = u64;
///     type Emitted = ();
///     async fn handle_call(&mut self, _: Total, reply: ReplyTo<u64>, _: &mut Context<'_, Self>)
///         -> StageResult<()>
///     {
///         reply.reply(self.0);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut pipeline = Pipeline::new();
/// let numbers = pipeline.add_producer(from_iter(1..=100u64));
/// let sum = pipeline.add_consumer(Sum::default());
/// pipeline.subscribe(&numbers, &sum);
/// let running = pipeline.start();
/// let so_far = sum.call(Total).await?; // while it runs: somewhere from 0 to 5050
/// assert!(so_far <= 5050);
/// running.await?;
/// // Once it has ended, the stage says so, by name.
/// assert_eq!(sum.call(Total).await.unwrap_err().to_string(), "stage `Sum` has ended");
/// # Ok(()) }
/// ```
///
/// # Generic code
///
/// A function that messages any stage taking a message bounds the message by [`CallFor`],
/// [`CastFor`] or [`InfoFor`] of the reference's `Stage` and `Emits`: a bound on the stage alone
/// (`HandleCast<M>`) is not enough, since the callback must also emit the stage's events.
///
/// ```
/// use genstage::{CallError, CastFor, StageRef};
///
/// /// A job for any stage that takes it as a cast.
/// struct Job(u64);
///
/// fn submit<R: StageRef>(stage: &R, jobs: u64) -> Result<(), CallError>
/// where
///     Job: CastFor<R::Stage, R::Emits>,
/// {
///     (0..jobs).try_for_each(|n| stage.cast(Job(n)))
/// }
/// ```
pub trait StageRef: Clone + Send + Sync + 'static {
    /// The stage's type.
    type Stage: Send + 'static;
    /// The type of the events it emits (`Infallible` for a consumer, which emits none).
    type Emits: Send + 'static;
    /// The type of the events it receives ([`NoInput`](crate::NoInput) for a producer, which
    /// receives none).
    type Receives: Send + 'static;

    #[doc(hidden)]
    fn port(&self) -> &StagePort<Self::Stage>;

    /// The stage's id in its pipeline.
    fn id(&self) -> StageId {
        self.port().id
    }

    /// The stage's name: the one it was added under, made unique once its pipeline has started.
    fn name(&self) -> String {
        self.port().label.get().to_owned()
    }

    /// Sends `request` to the stage's [`HandleCall`] and waits for its answer, at most
    /// [`DEFAULT_CALL_TIMEOUT`] (5 s, as in GenStage); [`call_timeout`](Self::call_timeout) sets
    /// another limit.
    ///
    /// # Errors
    ///
    /// [`CallError::Ended`] if the stage has ended or decided to end, [`CallError::ShuttingDown`]
    /// if it takes no more messages from outside (see [`cast`](Self::cast); in both cases the
    /// request was not sent),
    /// [`CallError::Timeout`] if it did not answer in time, [`CallError::NoReply`] if it dropped
    /// the request's [`ReplyTo`](crate::ReplyTo) or stopped first.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up waiting; the stage may still handle the request (its
    /// [`ReplyTo::is_closed`](crate::ReplyTo::is_closed) then says so).
    fn call<M: CallFor<Self::Stage, Self::Emits>>(&self, request: M) -> Call<M::Reply> {
        self.call_timeout(request, DEFAULT_CALL_TIMEOUT)
    }

    /// [`call`](Self::call), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Self::call).
    fn call_timeout<M: CallFor<Self::Stage, Self::Emits>>(
        &self,
        request: M,
        timeout: Duration,
    ) -> Call<M::Reply> {
        request.__call(self.port().clone(), timeout)
    }

    /// Sends `message` to the stage's [`HandleCast`], without waiting.
    ///
    /// A producer or producer_consumer that is shutting down, or a producer_consumer whose input
    /// has ended and that delivers what it holds, refuses it at once, and one it has accepted
    /// before is handled. A stage that ends by itself (its events or its input ran out, or, for a
    /// producer, its consumers all left) refuses it from the moment it decides to end, and first
    /// handles every one it accepted before: `Ok` means the stage takes it. The exception is a
    /// stage that stops where it stands: one that fails (or panics, or is aborted), or is
    /// cancelled otherwise (a producer_consumer whose consumers left, a stage whose producer
    /// failed), refuses casts from then on, but the casts it had accepted and not yet opened are
    /// lost with it (a call among them is answered [`CallError::NoReply`]). To know that a
    /// message was handled, [`call`](Self::call).
    ///
    /// Unlike events, which a stage receives only as it asks for them, messages from outside
    /// queue in its mailbox without bound, as in a GenStage process's mailbox: a task that casts
    /// (or sends infos) faster than the stage handles them grows that queue, and memory, for as
    /// long as it does, and `cast` never waits or refuses for it. A sender that must be held back
    /// to the stage's pace uses [`call`](Self::call), which waits for each to be handled, or
    /// feeds the pipeline events instead (a `from_channel` producer waits while it is busy).
    ///
    /// # Errors
    ///
    /// [`CallError::Ended`] if the stage has ended or decided to end; [`CallError::ShuttingDown`]
    /// if it is a producer or producer_consumer shutting down, or a producer_consumer whose input
    /// has ended, which take no more messages from outside. A sender that keeps sending through a
    /// graceful shutdown gets either, first: a stage with nothing left to deliver ends at once.
    fn cast<M: CastFor<Self::Stage, Self::Emits>>(&self, message: M) -> Result<(), CallError> {
        message.__cast(self.port())
    }

    /// Sends `message` to the stage's [`HandleInfo`], without waiting. What `Ok` means is as for
    /// [`cast`](Self::cast).
    ///
    /// # Errors
    ///
    /// As [`cast`](Self::cast).
    fn info<M: InfoFor<Self::Stage, Self::Emits>>(&self, message: M) -> Result<(), CallError> {
        message.__info(self.port())
    }

    /// Sends `message` to the stage's [`HandleInfo`], without waiting, to be delivered after the
    /// events the stage holds when it takes the message in (GenStage's `async_info`): on a producer
    /// or producer_consumer whose buffer holds events then, right after they have all been
    /// dispatched to consumers (or dropped by a full [`BufferKeep::Last`](crate::BufferKeep::Last)
    /// buffer); with nothing buffered, at once, as [`info`](Self::info). A producer_consumer first
    /// lets the input it has received and not yet handled go ahead of it. On a consumer it is
    /// [`info`](Self::info).
    ///
    /// Infos keep their order among themselves and relative to events, are never counted by
    /// `estimate_buffered_count`, and are never lost while the stage runs; when the stage stops
    /// first, they go with it. [`Context::info_after_buffered`](crate::Context::info_after_buffered)
    /// is the same, for a stage's own callbacks.
    ///
    /// # Errors
    ///
    /// As [`cast`](Self::cast).
    ///
    /// # Examples
    ///
    /// Learn when the events a producer holds now have gone out:
    ///
    /// ```
    /// use genstage::{
    ///     Consumer, Context, Emit, HandleCast, HandleInfo, Pipeline, Producer, StageRef,
    ///     StageResult, SubscribeOptions,
    /// };
    /// use tokio::sync::oneshot;
    ///
    /// /// Emits what it is cast.
    /// struct Feed;
    /// impl Producer for Feed {
    ///     type Output = u64;
    ///     async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
    ///         Ok(Emit::more(Vec::new()))
    ///     }
    /// }
    /// struct Push(Vec<u64>);
    /// impl HandleCast<Push> for Feed {
    ///     type Emitted = Vec<u64>;
    ///     async fn handle_cast(&mut self, Push(events): Push, _: &mut Context<'_, Self>)
    ///         -> StageResult<Vec<u64>>
    ///     {
    ///         Ok(events)
    ///     }
    /// }
    /// /// Tells the sender that what was buffered before it has gone out.
    /// struct Flushed(oneshot::Sender<()>);
    /// impl HandleInfo<Flushed> for Feed {
    ///     type Emitted = ();
    ///     async fn handle_info(&mut self, Flushed(tell): Flushed, _: &mut Context<'_, Self>)
    ///         -> StageResult<()>
    ///     {
    ///         let _ = tell.send(());
    ///         Ok(())
    ///     }
    /// }
    ///
    /// /// Counts what it receives.
    /// struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
    /// impl Consumer for Count {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
    ///         self.0.fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let count = std::sync::Arc::default();
    /// let mut pipeline = Pipeline::new();
    /// let feed = pipeline.add_producer(Feed);
    /// let sink = pipeline.add_consumer(Count(std::sync::Arc::clone(&count)));
    /// pipeline.subscribe_with(&feed, &sink, SubscribeOptions::new().max_demand(10));
    /// let running = pipeline.start();
    /// feed.cast(Push((0..100).collect()))?;
    /// let (tell, flushed) = oneshot::channel();
    /// feed.info_after_buffered(Flushed(tell))?;
    /// flushed.await?;
    /// // All 100 were sent to the consumer, 10 at a time; the last batches may still be in its
    /// // mailbox.
    /// assert_eq!(feed.estimate_buffered_count().await?, 0);
    /// running.shutdown().await?;
    /// assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 100);
    /// # Ok(()) }
    /// ```
    fn info_after_buffered<M: InfoFor<Self::Stage, Self::Emits>>(
        &self,
        message: M,
    ) -> Result<(), CallError> {
        message.__info_after_buffered(self.port())
    }
}

/// A message that a stage of type `S`, whose events are `E`, takes as a cast: every `M` for which
/// `S` implements [`HandleCast<M>`](HandleCast) with an [`Emission`] of `E`. As [`CallFor`], it
/// makes a message the stage does not take one compile error in [`HandleCast`]'s words.
pub trait CastFor<S, E>: Send + Sized + 'static {
    #[doc(hidden)]
    fn __cast(self, port: &StagePort<S>) -> Result<(), CallError>;
}

impl<M, S, E> CastFor<S, E> for M
where
    M: Send + 'static,
    S: HandleCast<M>,
    S::Emitted: Emission<E>,
    E: Send + 'static,
{
    #[doc(hidden)]
    fn __cast(self, port: &StagePort<S>) -> Result<(), CallError> {
        port.send_refusable(Control::Letter(cast_letter::<S, M, E>(self)))
    }
}

/// A message that a stage of type `S`, whose events are `E`, takes as an info: every `M` for which
/// `S` implements [`HandleInfo<M>`](HandleInfo) with an [`Emission`] of `E`. As [`CallFor`], it
/// makes a message the stage does not take one compile error in [`HandleInfo`]'s words.
pub trait InfoFor<S, E>: Send + Sized + 'static {
    #[doc(hidden)]
    fn __info(self, port: &StagePort<S>) -> Result<(), CallError>;

    #[doc(hidden)]
    fn __info_after_buffered(self, port: &StagePort<S>) -> Result<(), CallError>;
}

impl<M, S, E> InfoFor<S, E> for M
where
    M: Send + 'static,
    S: HandleInfo<M>,
    S::Emitted: Emission<E>,
    E: Send + 'static,
{
    #[doc(hidden)]
    fn __info(self, port: &StagePort<S>) -> Result<(), CallError> {
        port.send_refusable(Control::Letter(typed_info_letter::<S, M, E>(self)))
    }

    #[doc(hidden)]
    fn __info_after_buffered(self, port: &StagePort<S>) -> Result<(), CallError> {
        let letter = after_buffered(typed_info_letter::<S, M, E>(self));
        port.send_refusable(Control::Letter(letter))
    }
}

/// A request that a stage of type `S`, whose events are `E`, answers: every `M` for which `S`
/// implements [`HandleCall<M>`](HandleCall) with an [`Emission`] of `E`. Implemented for all of
/// them; [`StageRef::call`] bounds its request by it, so that a request the stage does not answer
/// is one compile error, under the call, in [`HandleCall`]'s words ("`Queue` does not answer calls
/// of `Foo`").
pub trait CallFor<S, E>: Send + Sized + 'static {
    /// The stage's answer.
    type Reply: Send + 'static;

    #[doc(hidden)]
    fn __call(self, port: StagePort<S>, timeout: Duration) -> Call<Self::Reply>;
}

impl<M, S, E> CallFor<S, E> for M
where
    M: Send + 'static,
    S: HandleCall<M>,
    S::Emitted: Emission<E>,
    E: Send + 'static,
{
    type Reply = S::Reply;

    #[doc(hidden)]
    fn __call(self, port: StagePort<S>, timeout: Duration) -> Call<S::Reply> {
        let (reply, answer) = oneshot::channel();
        let letter = call_letter::<S, M, E>(self, reply);
        Call {
            answer: Box::pin(async move {
                port.request(Control::Letter(letter), true, answer, timeout)
                    .await
            }),
        }
    }
}

/// The answer of a [`StageRef::call`]: a future of the stage's reply, which sends the request
/// when first polled.
///
/// # Cancel safety
///
/// As [`StageRef::call`].
#[must_use = "a call sends nothing until it is `.await`ed"]
pub struct Call<R> {
    answer: Pin<Box<dyn Future<Output = Result<R, CallError>> + Send>>,
}

impl<R> Future for Call<R> {
    type Output = Result<R, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.answer.as_mut().poll(cx)
    }
}

impl<R> std::fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Call")
    }
}

/// How many events a producer's or producer_consumer's buffer holds (GenStage's
/// `estimate_buffered_count`).
///
/// # Errors
///
/// As [`StageRef::call`].
pub(crate) async fn buffered_count<S>(
    port: &StagePort<S>,
    timeout: Duration,
) -> Result<usize, CallError> {
    let (reply, answer) = oneshot::channel();
    port.request(Control::BufferedCount(reply), false, answer, timeout)
        .await
}

impl<S: Producer> StageRef for ProducerRef<S> {
    type Stage = S;
    type Emits = S::Output;
    type Receives = crate::NoInput;
    fn port(&self) -> &StagePort<S> {
        &self.stage
    }
}

impl<S: ProducerConsumer> StageRef for ProducerConsumerRef<S> {
    type Stage = S;
    type Emits = S::Output;
    type Receives = S::Input;
    fn port(&self) -> &StagePort<S> {
        &self.stage
    }
}

impl<S: Consumer> StageRef for ConsumerRef<S> {
    type Stage = S;
    type Emits = Infallible;
    type Receives = S::Input;
    fn port(&self) -> &StagePort<S> {
        &self.stage
    }
}

impl<S: Producer> ProducerRef<S> {
    /// How many events the producer holds now, emitted and not yet sent (GenStage's
    /// `estimate_buffered_count`): its buffer's, and those its dispatcher keeps (a partition's
    /// backlog, and the events kept for a partition that has no consumer).
    ///
    /// # Errors
    ///
    /// As [`StageRef::call`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up waiting, with no other effect.
    pub async fn estimate_buffered_count(&self) -> Result<usize, CallError> {
        buffered_count(&self.stage, DEFAULT_CALL_TIMEOUT).await
    }

    /// Switches the producer's [`DemandMode`] (GenStage's `demand/2`), without waiting: the
    /// producer takes the switch in its mailbox's order, after the messages sent before it.
    /// Switching to [`DemandMode::Forward`] replays the demand recorded while it accumulated, one
    /// `handle_demand` per recorded ask, in order (see [`DemandMode::Accumulate`]). Only producers
    /// have a demand mode: producer_consumer and consumer references have no such method.
    ///
    /// # Errors
    ///
    /// [`CallError::Ended`] if the producer has ended or decided to end; [`CallError::ShuttingDown`]
    /// if it is shutting down, when it forwards until it ends, whatever it is told.
    ///
    /// # Examples
    ///
    /// Start a producer accumulating, let its consumers subscribe, then let the events flow:
    ///
    /// ```
    /// use genstage::{
    ///     to_stream, DemandMode, Emit, Pipeline, Producer, ProducerOptions, StageResult,
    /// };
    /// use futures::StreamExt;
    ///
    /// /// Counts up from 0.
    /// struct Counter(u64);
    /// impl Producer for Counter {
    ///     type Output = u64;
    ///     async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
    ///         let events: Vec<u64> = (self.0..self.0 + demand as u64).collect();
    ///         self.0 += demand as u64;
    ///         Ok(Emit::more(events))
    ///     }
    ///     fn producer_options(&self) -> ProducerOptions {
    ///         ProducerOptions::for_producer().demand(DemandMode::Accumulate)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut pipeline = Pipeline::new();
    /// let counter = pipeline.add_producer(Counter(0));
    /// let (sink, events) = to_stream::<u64>();
    /// let sink = pipeline.add_consumer(sink);
    /// pipeline.subscribe(&counter, &sink);
    /// let running = pipeline.start();
    /// assert_eq!(counter.demand_mode().await?, DemandMode::Accumulate);
    ///
    /// counter.demand(DemandMode::Forward)?;
    /// let first: Vec<u64> = events.take(3).collect().await;
    /// assert_eq!(first, [0, 1, 2]);
    /// assert_eq!(counter.demand_mode().await?, DemandMode::Forward);
    /// running.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn demand(&self, mode: DemandMode) -> Result<(), CallError> {
        self.stage.send_refusable(Control::SetDemand(mode))
    }

    /// The producer's [`DemandMode`] (GenStage's `demand/1`), as it stands once the producer has
    /// taken in the messages sent before this one.
    ///
    /// # Errors
    ///
    /// As [`StageRef::call`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up waiting, with no other effect.
    ///
    /// # Examples
    ///
    /// See [`demand`](Self::demand).
    pub async fn demand_mode(&self) -> Result<DemandMode, CallError> {
        let (reply, answer) = oneshot::channel();
        self.stage
            .request(
                Control::GetDemand(reply),
                false,
                answer,
                DEFAULT_CALL_TIMEOUT,
            )
            .await
    }
}

impl<S: ProducerConsumer> ProducerConsumerRef<S> {
    /// How many events the stage holds now, emitted and not yet sent (GenStage's
    /// `estimate_buffered_count`): its buffer's, and those its dispatcher keeps (a partition's
    /// backlog, and the events kept for a partition that has no consumer).
    ///
    /// # Errors
    ///
    /// As [`StageRef::call`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up waiting, with no other effect.
    pub async fn estimate_buffered_count(&self) -> Result<usize, CallError> {
        buffered_count(&self.stage, DEFAULT_CALL_TIMEOUT).await
    }
}
