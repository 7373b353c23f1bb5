//! Stage and subscription options, with GenStage's names and defaults.

/// What a consumer does when one of its producers ends (GenStage's `:cancel`).
///
/// # How producers end here, and why `permanent` and `transient` act alike
/// In GenStage a producer is a process that exits with a reason, and a consumer's cancel mode
/// decides which reasons also stop the consumer: `permanent` any, `transient` any but `:normal` and
/// `:shutdown`, `temporary` none. A finite GenStage pipeline shuts down by that cascade: producers
/// exit `:normal`, and transient consumers are left to finish.
///
/// In genstage a producer ends in one of two ways:
/// - **it finishes** (`Emit::last`, or its input ended): that is the end of this subscription's
///   input, never a reason to stop. The consumer handles every event the producer sent, and finishes
///   once *all* its producers have ended, so a consumer fed by several producers (fan-in) is never
///   cut short by the first that ends. GenStage's `permanent` would stop it there and drop the other
///   producers' later events; no mode here does, because every producer's events would be lost to
///   a normal end.
/// - **it fails** (its callback returns `Err` or panics), or stops because a stage above it failed:
///   an abnormal reason, which stops `permanent` and `transient` consumers alike, after the events
///   sent before the failure. `temporary` consumers go on with their other producers, and finish
///   when those end.
///
/// A subscription the producer's dispatcher refused
/// ([`CancelReason::Refused`](crate::CancelReason::Refused)) never began: it stops `permanent` and
/// `transient` consumers, failed with a [`SubscriptionRefused`](crate::SubscriptionRefused) error,
/// as GenStage's consumer exits with the reason its producer cancelled it for; `temporary`
/// consumers go on.
///
/// A graceful shutdown and a cancelled subscription end a subscription as a finish does, whoever
/// cancelled it: the pipeline's handle, or the consumer itself
/// ([`Context::cancel`](crate::Context::cancel), [`Asker::cancel`](crate::Asker::cancel)). In
/// GenStage a consumer's own `cancel/2` comes back to it with the reason it gave, and stops it by
/// its mode (scenarios 74 and 75: a `transient` consumer on a reason other than `:normal` or
/// `:shutdown`, a `permanent` one on any), even when it has other producers; here the cancel has no
/// reason, and stops no consumer in any mode: the consumer goes on with its other producers, and
/// finishes normally once it has cancelled the last (GenStage's `{:stop, :normal, state}`).
///
/// So `transient` behaves as `permanent` here: the two differ only on reasons that never stop a
/// consumer in genstage (`:normal` and `:shutdown` are finishes). Both are kept with GenStage's
/// meaning, so that a pipeline keeps its behaviour should such reasons ever be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelMode {
    /// The consumer stops when the producer fails, or when its dispatcher refuses the subscription
    /// (the default).
    #[default]
    Permanent,
    /// The consumer stops when the producer fails, or when its dispatcher refuses the subscription,
    /// not when it ends normally or is shut down; see the type's docs for why that is the same as
    /// `Permanent` in a pipeline today.
    Transient,
    /// The consumer never stops because of this producer; it goes on with its other producers.
    Temporary,
}

/// Options of one subscription (one edge of the pipeline), set on the consumer side.
///
/// Unset fields fall back to the consumer's own defaults, then to GenStage's: `max_demand` 1000,
/// `min_demand` `max_demand / 2`, `cancel` permanent.
///
/// ```
/// use genstage::{CancelMode, SubscribeOptions};
/// let opts = SubscribeOptions::new().max_demand(10).min_demand(5).cancel(CancelMode::Temporary);
/// assert_eq!(opts.max_demand, Some(10));
/// ```
///
/// Built with [`SubscribeOptions::new`] and the setters: the struct is `#[non_exhaustive]`, so that
/// options can be added without breaking code that builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// The most events the consumer has outstanding at once.
    pub max_demand: Option<usize>,
    /// When outstanding demand falls to this, the consumer asks again for `max_demand - outstanding`.
    pub min_demand: Option<usize>,
    /// What a failure of the producer does to the consumer.
    pub cancel: Option<CancelMode>,
    /// The partition the consumer takes, of a producer that partitions its events
    /// ([`Dispatch::partition`](crate::Dispatch::partition)).
    pub partition: Option<usize>,
}

impl SubscribeOptions {
    /// No option set: every value falls back to the default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `max_demand`.
    pub fn max_demand(mut self, max_demand: usize) -> Self {
        self.max_demand = Some(max_demand);
        self
    }

    /// Sets `min_demand`.
    pub fn min_demand(mut self, min_demand: usize) -> Self {
        self.min_demand = Some(min_demand);
        self
    }

    /// Sets the cancel mode.
    pub fn cancel(mut self, cancel: CancelMode) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Takes partition `partition` of a producer that partitions its events.
    pub fn partition(mut self, partition: usize) -> Self {
        self.partition = Some(partition);
        self
    }

    /// These options, with every unset field taken from `defaults`.
    pub fn or(self, defaults: SubscribeOptions) -> Self {
        SubscribeOptions {
            max_demand: self.max_demand.or(defaults.max_demand),
            min_demand: self.min_demand.or(defaults.min_demand),
            cancel: self.cancel.or(defaults.cancel),
            partition: self.partition.or(defaults.partition),
        }
    }
}

/// Which events a full buffer keeps (GenStage's `:buffer_keep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferKeep {
    /// Keep the oldest events; drop incoming ones that do not fit.
    First,
    /// Keep the newest events; drop the oldest (the default).
    #[default]
    Last,
}

/// How a producer treats the demand of its consumers (GenStage's `:demand` option, a producer's
/// only).
///
/// A producer that starts in [`Accumulate`](DemandMode::Accumulate) lets its consumers subscribe
/// and ask without emitting anything; switching it to [`Forward`](DemandMode::Forward) (through
/// [`ProducerRef::demand`](crate::ProducerRef::demand)) replays what they asked, in order. GenStage's
/// intended use: start the producer accumulating, subscribe every consumer, then forward, so that
/// the first consumer to subscribe does not get everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemandMode {
    /// Demand goes to the dispatcher and to `handle_demand` as it comes (the default).
    #[default]
    Forward,
    /// Demand is recorded, not served:
    /// - `handle_demand` is not called, and nothing is dispatched: each ask of a consumer is recorded,
    ///   in order, with its subscription;
    /// - events the producer emits meanwhile (from `handle_call`, `handle_cast`, `handle_info`) wait
    ///   in its buffer, which keeps its `buffer_size` and `buffer_keep` (GenStage keeps them in a list
    ///   of its own that nothing bounds);
    /// - subscriptions and cancels are taken in as usual; a cancelled subscription's recorded asks are
    ///   dropped.
    ///
    /// Switching to [`Forward`](DemandMode::Forward) first serves what consumers had asked before the
    /// producer accumulated, from the buffer, then replays the recorded asks in order, one at a time,
    /// as GenStage does: each goes to the dispatcher, which serves it from the buffer first, then
    /// `handle_demand` is called once with what the buffer did not serve (not at all when it served
    /// the whole ask). Asks are not combined: two consumers that asked for 2 each give two calls of
    /// `handle_demand(2)`, not one of 4. After the replay, demand is forwarded as usual (and a
    /// producer that emitted fewer events than a replayed ask is asked again for the rest, as always).
    /// Setting `Accumulate` again while accumulating keeps what was recorded; a graceful shutdown
    /// forwards, so that what the producer holds is delivered.
    Accumulate,
}

/// What a producer or producer_consumer does when it has no consumer: at the start, or once its
/// last consumer has left.
///
/// [`Stop`](WithoutConsumers::Stop), the default, suits a pipeline that runs a job: a stage must
/// have a consumer when the pipeline starts ([`PipelineError::NoConsumer`] otherwise), and one
/// whose consumers have all left (cancelled, finished or failed) stops, counting what it still
/// buffers as lost. [`Wait`](WithoutConsumers::Wait) suits a service: GenStage's broadcaster,
/// a producer that consumers subscribe to and leave at any time through the running pipeline's
/// handle ([`PipelineHandle::add_consumer`](crate::PipelineHandle::add_consumer), then
/// [`subscribe`](crate::PipelineHandle::subscribe) and [`cancel`](crate::PipelineHandle::cancel)),
/// and that stays up while it has none.
///
/// A stage that waits:
/// - may start with no consumer;
/// - when its last consumer leaves, keeps its buffer (within `buffer_size`: an overflow is
///   discarded and counted as always) and the demand its consumers left, and goes on taking
///   messages; the next consumer to subscribe gets the buffered events first, in order;
/// - a producer_consumer keeps its subscriptions to its producers: it stops handling its input
///   while no consumer asks (its producers hold their events, as for a slow consumer), and goes on
///   when one does;
/// - a partitioned one (see [`Dispatch::partition`](crate::Dispatch::partition)) started with no
///   consumer is not refused for its vacant partitions; it buffers its events until consumers ask,
///   and then keeps the events of a partition that has no consumer for the next consumer that takes
///   it, as when a partition's consumer leaves mid-run. Started with consumers, its partitions must
///   all be taken, as any partitioned stage's;
/// - still ends by its own end ([`Emit::last`](crate::Emit::last), once it has delivered its
///   buffer), by a failure, by a graceful shutdown or by an abort. A graceful shutdown ends it at
///   once when it has no consumer, counting what it still holds as lost
///   ([`LossReason::Buffered`](crate::LossReason::Buffered) for its buffer, `Unhandled` for a
///   producer_consumer's input), so that the report balances.
///
/// Since such a producer has no end of its own while it may get consumers, `run().await` on its
/// pipeline returns only once it ends: start the pipeline with
/// [`start`](crate::Pipeline::start), and end it with
/// [`shutdown`](crate::PipelineHandle::shutdown) or
/// [`shutdown_within`](crate::PipelineHandle::shutdown_within).
///
/// In `pipeline!`, when its `#[stage]` says `without_consumers = wait`, a producer may stand alone
/// as a definition, `room = Room;`, and a producer_consumer may end a chain, `room -> relay =
/// Relay;`, their consumers subscribed through the handle; any other stage whose events would go
/// nowhere is refused (a dead end is most likely a mistake). A stage written by hand that waits is
/// added so with the [`Pipeline`](crate::Pipeline) builder.
///
/// # Examples
///
/// A broadcaster started with no consumer, and listeners that come and go:
///
/// ```
/// use genstage::{
///     Consumer, Context, Dispatch, Emit, HandleCall, Pipeline, Producer, ProducerOptions,
///     ReplyTo, StageRef, StageResult, WithoutConsumers,
/// };
/// use tokio::sync::mpsc;
///
/// /// Emits what it is told to (GenStage's broadcaster): every listener gets every line.
/// struct Broadcaster;
/// impl Producer for Broadcaster {
///     type Output = String;
///     async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<String>> {
///         Ok(Emit::more(Vec::new()))
///     }
///     fn dispatcher(&self) -> Dispatch<Self, String> {
///         Dispatch::broadcast()
///     }
///     fn producer_options(&self) -> ProducerOptions {
///         ProducerOptions::for_producer().without_consumers(WithoutConsumers::Wait)
///     }
/// }
///
/// /// A line to broadcast; answered once it is dispatched (to the listeners, or to the buffer).
/// struct Say(&'static str);
/// impl HandleCall<Say> for Broadcaster {
///     type Reply = ();
///     type Emitted = Vec<String>;
///     async fn handle_call(&mut self, Say(line): Say, reply: ReplyTo<()>, _: &mut Context<'_, Self>)
///         -> StageResult<Vec<String>>
///     {
///         reply.reply(());
///         Ok(vec![line.to_owned()])
///     }
/// }
///
/// /// Hands on what it hears.
/// struct Listener(mpsc::UnboundedSender<String>);
/// impl Consumer for Listener {
///     type Input = String;
///     async fn handle_events(&mut self, lines: Vec<String>) -> StageResult<()> {
///         lines.into_iter().for_each(|line| drop(self.0.send(line)));
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut pipeline = Pipeline::new();
/// let broadcaster = pipeline.add_producer(Broadcaster);
/// // No consumer: `start` would refuse a broadcaster that stops without consumers.
/// let running = pipeline.start();
/// // Nobody listens yet: the line waits in the broadcaster's buffer.
/// broadcaster.call(Say("hello")).await?;
/// assert_eq!(broadcaster.estimate_buffered_count().await?, 1);
///
/// let (tell, mut heard) = mpsc::unbounded_channel();
/// let listener = running.add_consumer(Listener(tell)).await?;
/// let tag = running.subscribe(&broadcaster, &listener).await?;
/// assert_eq!(heard.recv().await.as_deref(), Some("hello"));
/// // The last listener leaves: the broadcaster stays up, and keeps what it is told.
/// running.cancel(tag).await?;
/// broadcaster.call(Say("again")).await?;
/// assert_eq!(broadcaster.estimate_buffered_count().await?, 1);
///
/// let report = running.shutdown().await?;
/// // The line nobody heard is counted lost with the broadcaster's buffer.
/// assert_eq!(report.stage("Broadcaster").unwrap().lost, 1);
/// assert!(report.balanced());
/// # Ok(())
/// # }
/// ```
///
/// [`PipelineError::NoConsumer`]: crate::PipelineError::NoConsumer
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WithoutConsumers {
    /// It must have a consumer at the start, and stops when its last consumer leaves (the
    /// default).
    #[default]
    Stop,
    /// It may start with no consumer, and stays up, keeping its buffer, while it has none; see the
    /// type's docs.
    Wait,
}

/// Buffer settings of a producer or producer_consumer, and a producer's [`DemandMode`].
///
/// ```
/// use genstage::{BufferKeep, DemandMode, ProducerOptions};
/// assert_eq!(ProducerOptions::for_producer().buffer_size, Some(10_000));
/// assert_eq!(ProducerOptions::for_producer_consumer().buffer_size, None);
/// let opts = ProducerOptions::for_producer().buffer_size(5).buffer_keep(BufferKeep::First);
/// assert_eq!(opts.buffer_keep, BufferKeep::First);
/// assert_eq!(opts.demand, DemandMode::Forward);
/// let opts = ProducerOptions::for_producer().demand(DemandMode::Accumulate);
/// assert_eq!(opts.demand, DemandMode::Accumulate);
/// ```
///
/// Built from [`ProducerOptions::for_producer`] or [`ProducerOptions::for_producer_consumer`] and
/// the setters: the struct is `#[non_exhaustive]`, so that options can be added without breaking
/// code that builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerOptions {
    /// The most events the buffer holds; `None` is unbounded (GenStage's `:infinity`).
    pub buffer_size: Option<usize>,
    /// Which events a full buffer keeps.
    pub buffer_keep: BufferKeep,
    /// The demand mode the stage starts in, if it is a producer: a producer_consumer has none
    /// (GenStage logs an error for one), and ignores it with a warning.
    pub demand: DemandMode,
    /// What the stage does when it has no consumer; see [`WithoutConsumers`].
    pub without_consumers: WithoutConsumers,
}

impl ProducerOptions {
    /// GenStage's producer default: 10 000 events, keep the last.
    pub fn for_producer() -> Self {
        ProducerOptions {
            buffer_size: Some(10_000),
            buffer_keep: BufferKeep::Last,
            demand: DemandMode::Forward,
            without_consumers: WithoutConsumers::Stop,
        }
    }

    /// GenStage's producer_consumer default: unbounded, keep the last.
    pub fn for_producer_consumer() -> Self {
        ProducerOptions {
            buffer_size: None,
            buffer_keep: BufferKeep::Last,
            demand: DemandMode::Forward,
            without_consumers: WithoutConsumers::Stop,
        }
    }

    /// Sets the buffer size (`usize::MAX` is as good as unbounded).
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.buffer_size = Some(size);
        self
    }

    /// Makes the buffer unbounded.
    pub fn unbounded(mut self) -> Self {
        self.buffer_size = None;
        self
    }

    /// Sets which events a full buffer keeps.
    pub fn buffer_keep(mut self, keep: BufferKeep) -> Self {
        self.buffer_keep = keep;
        self
    }

    /// Sets the demand mode a producer starts in (GenStage's `:demand`); see [`DemandMode`].
    pub fn demand(mut self, mode: DemandMode) -> Self {
        self.demand = mode;
        self
    }

    /// Sets what the stage does when it has no consumer, at the start or once its last consumer
    /// has left; see [`WithoutConsumers`].
    pub fn without_consumers(mut self, without: WithoutConsumers) -> Self {
        self.without_consumers = without;
        self
    }
}
