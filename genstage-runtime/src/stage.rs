//! The three roles a stage can play, as in GenStage.
//!
//! A stage is a value that owns its state; the runtime runs each stage instance in its own tokio task
//! and calls its callbacks with `&mut self`. Callbacks return futures, so they may be written as
//! `fn` or `async fn`.
//!
//! | role | callback | GenStage |
//! |---|---|---|
//! | [`Producer`] | `handle_demand(demand) -> events` | `:producer` |
//! | [`ProducerConsumer`] | `handle_events(events) -> events` | `:producer_consumer` |
//! | [`Consumer`] | `handle_events(events)` | `:consumer` |

use std::future::Future;

use crate::dispatcher::Dispatch;
use crate::error::StageError;
use crate::messages::Context;
use crate::options::{ProducerOptions, SubscribeOptions};
use crate::report::{LossReason, StageStatus};
use crate::restart::{NoInput, RestartPolicy};
use crate::subscription::{CancelReason, Demand, Subscriber, Subscription, SubscriptionTag};

/// What a producer's `handle_demand` returns: the events it emits now, and whether it is exhausted.
///
/// A producer may emit fewer events than asked (the runtime keeps asking it for the rest, see
/// [`Producer::handle_demand`]) or more (the excess is buffered). Once it returns
/// [`Emit::last`], `handle_demand` is not called again; its buffered events are still delivered and
/// then its consumers see it end.
///
/// ```
/// use genstage::Emit;
/// let more: Emit<u64> = vec![1, 2, 3].into();
/// assert!(!more.is_last());
/// assert!(Emit::last(vec![4u64]).is_last());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit<T> {
    /// The events emitted by this call, in order.
    pub events: Vec<T>,
    /// `true` when the producer has nothing more to emit, ever.
    pub last: bool,
}

impl<T> Emit<T> {
    /// Events, with more to come.
    pub fn more(events: Vec<T>) -> Self {
        Emit {
            events,
            last: false,
        }
    }

    /// The final events: the producer is exhausted after these.
    pub fn last(events: Vec<T>) -> Self {
        Emit { events, last: true }
    }

    /// Whether the producer is exhausted after these events.
    pub fn is_last(&self) -> bool {
        self.last
    }
}

impl<T> From<Vec<T>> for Emit<T> {
    fn from(events: Vec<T>) -> Self {
        Emit::more(events)
    }
}

/// The result type of every stage callback.
pub type StageResult<T> = Result<T, StageError>;

/// A source of events: GenStage's `:producer`.
///
/// The runtime calls [`handle_demand`](Producer::handle_demand) when its consumers ask for events,
/// after serving what it can from the producer's buffer.
///
/// # Examples
///
/// ```
/// use genstage::{Emit, Producer, StageResult};
///
/// /// Emits 0, 1, 2, … up to (not including) `end`.
/// struct Counter { next: u64, end: u64 }
///
/// impl Producer for Counter {
///     type Output = u64;
///     async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
///         let stop = self.end.min(self.next + demand as u64);
///         let events: Vec<u64> = (self.next..stop).collect();
///         self.next = stop;
///         Ok(if stop == self.end { Emit::last(events) } else { Emit::more(events) })
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a producer",
    label = "this stage emits no events of its own",
    note = "a producer implements `handle_demand`: add `#[stage(producer)]` to its impl block, or implement `genstage::Producer`"
)]
pub trait Producer: Send + 'static {
    /// The type of the events this producer emits.
    type Output: Send + 'static;

    /// Emits up to `demand` events (`demand >= 1`).
    ///
    /// `demand` is what this producer's consumers can take now, less what its buffer already holds
    /// for them. Returning more events than asked is allowed: the excess goes to the buffer and
    /// serves the next demand first. Returning fewer is allowed too: the runtime asks again for the
    /// shortfall once it has taken in its mail. So, unlike a GenStage producer, a producer here
    /// does not keep count of the demand it owes: the runtime asks for it again.
    ///
    /// # Nothing to emit yet
    /// A producer whose source has nothing right now may either
    /// - `.await` inside this method until it has events (a channel, a socket, a timer): while it
    ///   waits, the stage still takes in its consumers' asks and cancels, and stops (dropping this
    ///   future) if they all leave; or
    /// - return an empty batch: the shortfall is asked for again after a back-off that starts at
    ///   1 ms and doubles up to 100 ms while the batches stay empty (a new ask ends the wait early),
    ///   so a producer that polls its source works. The stage's first empty batch is logged
    ///   through `tracing` at info level, later ones at debug level.
    ///
    /// An empty batch never ends the producer: return [`Emit::last`] for that.
    ///
    /// # Cancel safety
    ///
    /// The future may be dropped at any `.await` point, when the stage must stop while it waits: all
    /// of its consumers have left, the pipeline is shut down or aborted, or it is dropped. Events it
    /// had not returned are never
    /// emitted, so a producer that takes items from a source before an `.await` should keep them in
    /// `self` rather than in the future (or use only cancel-safe awaits, as `tokio::sync::mpsc`'s
    /// `recv` is).
    ///
    /// # Errors
    ///
    /// An error stops this stage; the pipeline reports it by the stage's name.
    fn handle_demand(
        &mut self,
        demand: usize,
    ) -> impl Future<Output = StageResult<Emit<Self::Output>>> + Send;

    /// Called when the stage starts, before any other callback, and in each value a restart makes
    /// (GenStage's `init`, once the stage runs): the place to start a timer (`ctx.info_after`) or
    /// send the stage its first message (`ctx.info`). Not `async`: work that waits belongs in a
    /// message callback, reached with `ctx.info(…)`. The default does nothing.
    fn init(&mut self, ctx: &mut Context<'_, Self>)
    where
        Self: Sized,
    {
        let _ = ctx;
    }

    /// Called when a consumer has subscribed to this stage (GenStage's
    /// `handle_subscribe(:consumer, …)`), between this stage's callbacks: once the consumer is
    /// subscribed, so events may already be on their way to it. A producer never takes control of a
    /// consumer's demand (GenStage stops a producer that tries; here there is nothing to return).
    /// The default does nothing.
    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, ctx: &mut Context<'_, Self>)
    where
        Self: Sized,
    {
        let _ = (subscriber, ctx);
    }

    /// Called when a consumer's subscription to this stage has ended (GenStage's `handle_cancel`
    /// on the producer side): the consumer ended ([`CancelReason::Finished`]), failed
    /// ([`CancelReason::Failed`]), or the subscription was cancelled ([`CancelReason::Cancelled`]).
    /// Nothing more is sent to it. The stage keeps running (it stops once every consumer it had has
    /// left, unless it waits for consumers: [`WithoutConsumers`](crate::WithoutConsumers)); it may
    /// emit events, for its other consumers. The default does nothing.
    ///
    /// # Errors
    ///
    /// An error stops the stage, as an error of its event callback does.
    fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = StageResult<Vec<Self::Output>>> + Send
    where
        Self: Sized,
    {
        let _ = (subscriber, reason, ctx);
        std::future::ready(Ok(Vec::new()))
    }

    /// Buffer settings and the demand mode it starts in. Defaults to GenStage's for a producer:
    /// 10 000 events, keep the last, forward demand ([`DemandMode`](crate::DemandMode)).
    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer()
    }

    /// Who gets which events: [`Dispatch::demand`] (the default: each event to one consumer, the
    /// one with the most demand), [`Dispatch::broadcast`] (every event to every consumer),
    /// [`Dispatch::partition`] (each event to the consumer of its partition, by the stage's
    /// [`Partition`](crate::Partition) function), or a dispatcher of your own. Called once, when the
    /// stage is added to a pipeline. `#[stage(…, dispatcher = …)]` writes it.
    fn dispatcher(&self) -> Dispatch<Self, Self::Output>
    where
        Self: Sized,
    {
        Dispatch::demand()
    }

    /// When the stage is restarted, how often, and (for a stage with input) whether the batch it
    /// failed on is handed again: [`RestartPolicy`]. The default is
    /// [`temporary`](crate::Restart::Temporary): a failure stops it. Called once, when the stage is
    /// added to a pipeline. `#[stage(…, restart = …)]` writes it; the builder may set another
    /// policy for one stage ([`Pipeline::set_restart`](crate::Pipeline::set_restart)).
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::temporary()
    }

    /// Called once when the stage ends, with how it ended, unless it panicked or was aborted
    /// (GenStage's `terminate/2`): the place to flush or close what the stage holds. The default
    /// does nothing.
    ///
    /// # Cancel safety
    ///
    /// The future is dropped at an `.await` if the pipeline is aborted meanwhile, or a graceful
    /// shutdown's timeout passes.
    fn terminate(&mut self, status: &StageStatus) -> impl Future<Output = ()> + Send {
        let _ = status;
        std::future::ready(())
    }

    /// The name a stage of this type gets in a pipeline when none is given; `None`, the default,
    /// means its type's name (`from_iter`'s producer gives `"from_iter"`, as users write it).
    #[doc(hidden)]
    const DEFAULT_NAME: Option<&'static str> = None;

    /// Not part of the API: told once of a graceful shutdown that came while the producer could
    /// still emit; `true` if it has taken in events that it delivers before it ends
    /// ([`from_channel`](crate::from_channel), which closes its channel here): it is then asked
    /// until it returns [`Emit::last`], where any other producer is not asked again. `false` by
    /// default.
    #[doc(hidden)]
    fn __drain_on_shutdown(&mut self) -> bool {
        false
    }

    /// Not part of the API: called once the stage has stopped (and before a restart replaces its
    /// value), the events it had taken in but not emitted, dropped now: the report counts them
    /// emitted and lost ([`LossReason::NotEmitted`]). 0 by default.
    #[doc(hidden)]
    fn __unemitted(&mut self) -> impl Future<Output = u64> + Send {
        std::future::ready(0)
    }
}

/// A stage in the middle: GenStage's `:producer_consumer`.
///
/// It handles events only while its own consumers have demand for its output, so a stalled consumer
/// stalls everything upstream of it.
///
/// # Examples
///
/// ```
/// use genstage::{ProducerConsumer, StageResult};
///
/// struct Evens;
///
/// impl ProducerConsumer for Evens {
///     type Input = u64;
///     type Output = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
///         Ok(events.into_iter().filter(|n| n % 2 == 0).collect())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a producer_consumer",
    note = "a producer_consumer implements `handle_events` returning events: add `#[stage(producer_consumer)]` to its impl block, or implement `genstage::ProducerConsumer`"
)]
pub trait ProducerConsumer: Send + 'static {
    /// The type of the events it receives.
    type Input: Send + 'static;
    /// The type of the events it emits.
    type Output: Send + 'static;

    /// Handles one batch of at most `max_demand - min_demand` events and returns the events to emit.
    ///
    /// # Cancel safety
    ///
    /// While it waits, the stage takes in its mail; if all of its consumers leave, the future is
    /// dropped at its current `.await` and the batch is reported as lost (not handled), unless
    /// the stage waits for consumers ([`WithoutConsumers::Wait`](crate::WithoutConsumers::Wait)).
    ///
    /// # Errors
    ///
    /// An error stops this stage; the pipeline reports it by the stage's name.
    fn handle_events(
        &mut self,
        events: Vec<Self::Input>,
    ) -> impl Future<Output = StageResult<Vec<Self::Output>>> + Send;

    /// Default subscription options for its upstream edges (an edge may override them).
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::default()
    }

    /// Called when the stage starts, before any other callback, and in each value a restart makes
    /// (GenStage's `init`, once the stage runs): the place to start a timer (`ctx.info_after`) or
    /// send the stage its first message (`ctx.info`). Not `async`: work that waits belongs in a
    /// message callback, reached with `ctx.info(…)`. The default does nothing.
    fn init(&mut self, ctx: &mut Context<'_, Self>)
    where
        Self: Sized,
    {
        let _ = ctx;
    }

    /// Called when this stage is subscribed to a producer, before any of its events arrive
    /// (GenStage's `handle_subscribe(:producer, …)`): returns who asks for the subscription's events,
    /// the runtime ([`Demand::Automatic`], the default) or the stage itself ([`Demand::Manual`],
    /// asking with [`Context::ask`]).
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand
    where
        Self: Sized,
    {
        let _ = (subscription, ctx);
        Demand::Automatic
    }

    /// Told, right before each [`handle_events`](Self::handle_events) call, which subscription
    /// the batch came on: GenStage's `from` in `handle_events(events, from, state)`, which a
    /// stage in manual demand asks on, through the [`Asker`](crate::Asker) it made for that
    /// subscription in [`handle_subscribe`](Self::handle_subscribe). As
    /// [`Consumer::batch_from`] (whose example shows a stage subscribed to two producers), it is
    /// told of every batch: also of one handed again after a restart, and of the last ones of a
    /// producer that has gone since. The default does nothing, and costs nothing: the runtime
    /// passes a `Copy` tag.
    #[inline]
    fn batch_from(&mut self, subscription: SubscriptionTag) {
        let _ = subscription;
    }

    /// Called when a subscription to a producer has ended, after every event the producer sent has
    /// been handled (GenStage's `handle_cancel`); then, if the producer failed, or its dispatcher
    /// refused the subscription ([`CancelReason::Refused`]), and the subscription is not
    /// `temporary`, the stage stops. It may emit events. The default does nothing.
    ///
    /// # Errors
    ///
    /// An error stops the stage, as an error of `handle_events` does.
    fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = StageResult<Vec<Self::Output>>> + Send
    where
        Self: Sized,
    {
        let _ = (subscription, reason, ctx);
        std::future::ready(Ok(Vec::new()))
    }

    /// Called when a consumer has subscribed to this stage (GenStage's
    /// `handle_subscribe(:consumer, …)`), between this stage's callbacks: once the consumer is
    /// subscribed, so events may already be on their way to it. A producer never takes control of a
    /// consumer's demand (GenStage stops a producer that tries; here there is nothing to return).
    /// The default does nothing.
    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, ctx: &mut Context<'_, Self>)
    where
        Self: Sized,
    {
        let _ = (subscriber, ctx);
    }

    /// Called when a consumer's subscription to this stage has ended (GenStage's `handle_cancel`
    /// on the producer side): the consumer ended ([`CancelReason::Finished`]), failed
    /// ([`CancelReason::Failed`]), or the subscription was cancelled ([`CancelReason::Cancelled`]).
    /// Nothing more is sent to it. The stage keeps running (it stops once every consumer it had has
    /// left, unless it waits for consumers: [`WithoutConsumers`](crate::WithoutConsumers)); it may
    /// emit events, for its other consumers. The default does nothing.
    ///
    /// # Errors
    ///
    /// An error stops the stage, as an error of its event callback does.
    fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = StageResult<Vec<Self::Output>>> + Send
    where
        Self: Sized,
    {
        let _ = (subscriber, reason, ctx);
        std::future::ready(Ok(Vec::new()))
    }

    /// Buffer settings. Defaults to GenStage's for a producer_consumer: unbounded, keep the last.
    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer_consumer()
    }

    /// Who gets which events: [`Dispatch::demand`] (the default: each event to one consumer, the
    /// one with the most demand), [`Dispatch::broadcast`] (every event to every consumer),
    /// [`Dispatch::partition`] (each event to the consumer of its partition, by the stage's
    /// [`Partition`](crate::Partition) function), or a dispatcher of your own. Called once, when the
    /// stage is added to a pipeline. `#[stage(…, dispatcher = …)]` writes it.
    fn dispatcher(&self) -> Dispatch<Self, Self::Output>
    where
        Self: Sized,
    {
        Dispatch::demand()
    }

    /// When the stage is restarted, how often, and (for a stage with input) whether the batch it
    /// failed on is handed again: [`RestartPolicy`]. The default is
    /// [`temporary`](crate::Restart::Temporary): a failure stops it. Called once, when the stage is
    /// added to a pipeline. `#[stage(…, restart = …)]` writes it; the builder may set another
    /// policy for one stage ([`Pipeline::set_restart`](crate::Pipeline::set_restart)).
    fn restart_policy(&self) -> RestartPolicy<Self::Input> {
        RestartPolicy::temporary()
    }

    /// Called once when the stage ends, with how it ended, unless it panicked or was aborted
    /// (GenStage's `terminate/2`): the place to flush or close what the stage holds. The default
    /// does nothing.
    ///
    /// # Cancel safety
    ///
    /// The future is dropped at an `.await` if the pipeline is aborted meanwhile, or a graceful
    /// shutdown's timeout passes.
    fn terminate(&mut self, status: &StageStatus) -> impl Future<Output = ()> + Send {
        let _ = status;
        std::future::ready(())
    }
}

/// A sink: GenStage's `:consumer`.
///
/// # Examples
///
/// ```
/// use genstage::{Consumer, StageResult};
///
/// #[derive(Default)]
/// struct Sum { total: u64 }
///
/// impl Consumer for Sum {
///     type Input = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
///         self.total += events.iter().sum::<u64>();
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a consumer",
    note = "a consumer implements `handle_events` returning nothing: add `#[stage(consumer)]` to its impl block, or implement `genstage::Consumer`"
)]
pub trait Consumer: Send + 'static {
    /// The type of the events it receives.
    type Input: Send + 'static;

    /// Handles one batch of at most `max_demand - min_demand` events.
    ///
    /// The stage takes in no message while this runs (as a GenStage process, which is busy): a
    /// producer that fails meanwhile stops this consumer only once the call has returned.
    ///
    /// # Errors
    ///
    /// An error stops this stage; the pipeline reports it by the stage's name.
    fn handle_events(
        &mut self,
        events: Vec<Self::Input>,
    ) -> impl Future<Output = StageResult<()>> + Send;

    /// Default subscription options for its upstream edges (an edge may override them).
    fn subscribe_options(&self) -> SubscribeOptions {
        SubscribeOptions::default()
    }

    /// Called when the stage starts, before any other callback, and in each value a restart makes
    /// (GenStage's `init`, once the stage runs): the place to start a timer (`ctx.info_after`) or
    /// send the stage its first message (`ctx.info`). Not `async`: work that waits belongs in a
    /// message callback, reached with `ctx.info(…)`. The default does nothing.
    fn init(&mut self, ctx: &mut Context<'_, Self>)
    where
        Self: Sized,
    {
        let _ = ctx;
    }

    /// Called when this stage is subscribed to a producer, before any of its events arrive
    /// (GenStage's `handle_subscribe(:producer, …)`): returns who asks for the subscription's events,
    /// the runtime ([`Demand::Automatic`], the default) or the stage itself ([`Demand::Manual`],
    /// asking with [`Context::ask`]).
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand
    where
        Self: Sized,
    {
        let _ = (subscription, ctx);
        Demand::Automatic
    }

    /// Told, right before each [`handle_events`](Self::handle_events) call, which subscription
    /// the batch came on: GenStage's `from` in `handle_events(events, from, state)`, which a
    /// stage in manual demand asks on (`GenStage.ask(from, n)`). `handle_events` has no context:
    /// a stage subscribed to several producers in manual demand keeps the tag here, and asks
    /// through the [`Asker`](crate::Asker) it made for that subscription in
    /// [`handle_subscribe`](Self::handle_subscribe).
    ///
    /// It is told of every batch: one handed again after a restart (a policy that
    /// [redelivers](crate::RestartPolicy::redeliver)), and the last ones of a producer that has
    /// gone since, whose subscription [`handle_cancel`](Self::handle_cancel) is told of after
    /// them. The default does nothing, and costs nothing: the runtime passes a `Copy` tag.
    ///
    /// # Examples
    ///
    /// A consumer that takes its events one at a time from each of two producers, asking the
    /// producer each event came from for the next:
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// use genstage::{
    ///     from_iter, Asker, Consumer, Context, Demand, Pipeline, StageResult, SubscribeOptions,
    ///     Subscription, SubscriptionTag,
    /// };
    ///
    /// #[derive(Default)]
    /// struct OneAtATime {
    ///     askers: HashMap<SubscriptionTag, Asker>,
    ///     from: Option<SubscriptionTag>,
    ///     seen: Vec<u32>,
    /// }
    ///
    /// impl Consumer for OneAtATime {
    ///     type Input = u32;
    ///
    ///     fn handle_subscribe(
    ///         &mut self,
    ///         subscription: &Subscription,
    ///         ctx: &mut Context<'_, Self>,
    ///     ) -> Demand {
    ///         if let Ok(asker) = ctx.asker(subscription.tag()) {
    ///             self.askers.insert(subscription.tag(), asker);
    ///         }
    ///         Demand::Manual
    ///     }
    ///
    ///     fn batch_from(&mut self, subscription: SubscriptionTag) {
    ///         self.from = Some(subscription);
    ///     }
    ///
    ///     async fn handle_events(&mut self, events: Vec<u32>) -> StageResult<()> {
    ///         self.seen.extend(&events);
    ///         // As many again, from the producer these came from.
    ///         if let Some(asker) = self.from.take().and_then(|tag| self.askers.get(&tag)) {
    ///             asker.ask(events.len())?;
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut pipeline = Pipeline::new();
    /// let low = pipeline.add_producer(from_iter(1..=3u32));
    /// let high = pipeline.add_producer(from_iter(101..=103u32));
    /// let one_at_a_time = pipeline.add_consumer(OneAtATime::default());
    /// // A manual subscription starts with its first ask made: one event.
    /// let options = SubscribeOptions::new().max_demand(1).min_demand(0);
    /// pipeline.subscribe_with(&low, &one_at_a_time, options);
    /// pipeline.subscribe_with(&high, &one_at_a_time, options);
    /// let report = pipeline.run().await.unwrap();
    /// assert_eq!(report.totals().handled, 6);
    /// # }
    /// ```
    #[inline]
    fn batch_from(&mut self, subscription: SubscriptionTag) {
        let _ = subscription;
    }

    /// Called when a subscription to a producer has ended, after every event the producer sent has
    /// been handled (GenStage's `handle_cancel`); then, if the producer failed, or its dispatcher
    /// refused the subscription ([`CancelReason::Refused`]), and the subscription is not
    /// `temporary`, the stage stops. The default does nothing.
    ///
    /// # Errors
    ///
    /// An error stops the stage, as an error of `handle_events` does.
    fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        reason: &CancelReason,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = StageResult<()>> + Send
    where
        Self: Sized,
    {
        let _ = (subscription, reason, ctx);
        std::future::ready(Ok(()))
    }

    /// When the stage is restarted, how often, and (for a stage with input) whether the batch it
    /// failed on is handed again: [`RestartPolicy`]. The default is
    /// [`temporary`](crate::Restart::Temporary): a failure stops it. Called once, when the stage is
    /// added to a pipeline. `#[stage(…, restart = …)]` writes it; the builder may set another
    /// policy for one stage ([`Pipeline::set_restart`](crate::Pipeline::set_restart)).
    fn restart_policy(&self) -> RestartPolicy<Self::Input> {
        RestartPolicy::temporary()
    }

    /// Called once when the stage ends, with how it ended, unless it panicked or was aborted
    /// (GenStage's `terminate/2`): the place to flush or close what the stage holds. The default
    /// does nothing.
    ///
    /// # Cancel safety
    ///
    /// The future is dropped at an `.await` if the pipeline is aborted meanwhile, or a graceful
    /// shutdown's timeout passes.
    fn terminate(&mut self, status: &StageStatus) -> impl Future<Output = ()> + Send {
        let _ = status;
        std::future::ready(())
    }

    /// The name a stage of this type gets in a pipeline when none is given; `None`, the default,
    /// means its type's name (`to_stream`'s sink gives `"to_stream"`, as users write it).
    #[doc(hidden)]
    const DEFAULT_NAME: Option<&'static str> = None;

    /// Not part of the API: how many events of the batch its `handle_events` held when the stage
    /// was aborted had already been handed on (`to_stream`'s sink, whose caller may have read
    /// some), so that the report counts them handled, not lost. 0 by default. Called once, as the
    /// stage ends aborted: `to_stream`'s sink freezes the count then, so that its stream yields no
    /// event the report counts lost.
    #[doc(hidden)]
    fn __handled_of_interrupted_batch(&self) -> u64 {
        0
    }

    /// Not part of the API: whether the stage still has work of its own in flight (a
    /// [`ConsumerSupervisor`](crate::ConsumerSupervisor)'s children), which messages it as it ends:
    /// once its input has ended, the stage finishes only when this is false, taking in its mail
    /// meanwhile. False by default.
    #[doc(hidden)]
    fn __busy(&self) -> bool {
        false
    }

    /// Not part of the API: called once the stage has ended (after `terminate`, if it ran), and
    /// before its value is replaced by a restart: the events its `handle_events` took that were
    /// lost after all, by the subscription they came on and the reason, since the last call. A
    /// [`ConsumerSupervisor`](crate::ConsumerSupervisor)'s children that failed for good
    /// ([`LossReason::ChildFailed`]), and those still alive, which it aborts now
    /// ([`LossReason::Unhandled`]), once they have stopped. The report counts them lost, not
    /// handled. None by default.
    #[doc(hidden)]
    fn __child_losses(
        &mut self,
    ) -> impl Future<Output = Vec<(Option<SubscriptionTag>, LossReason, u64)>> + Send {
        std::future::ready(Vec::new())
    }
}
