//! What a stage's callbacks get besides their arguments.

use std::marker::PhantomData;
use std::time::Duration;

use super::asker::Asker;
use super::cancel_port::CancelPort;
use super::events::InfoToSelf;
use super::letter::{after_buffered, PostLetter};
use super::timer::Timer;
use crate::subscription::{AskError, ManualAsks, SubscriptionTag};

/// What a stage's message and subscription callbacks get besides their arguments: the stage's name,
/// a way to send itself messages, and, for a consumer, a way to ask on its manual subscriptions and
/// to cancel its subscriptions.
pub struct Context<'a, S> {
    name: &'a str,
    me: &'a dyn PostLetter,
    cancels: &'a CancelPort,
    /// The stage's subscriptions to producers; `None` for a producer.
    asks: Option<&'a mut dyn ManualAsks>,
    /// In `handle_subscribe`'s context: the subscription it is told of, and what the callback
    /// asked on it, made once it has returned `Demand::Manual` (see `run::tell_subscribed`).
    subscribing: Option<(SubscriptionTag, usize)>,
    _stage: PhantomData<fn(&mut S)>,
}

impl<'a, S: Send + 'static> Context<'a, S> {
    pub(crate) fn new(
        name: &'a str,
        me: &'a dyn PostLetter,
        cancels: &'a CancelPort,
        asks: Option<&'a mut dyn ManualAsks>,
    ) -> Self {
        Context {
            name,
            me,
            cancels,
            asks,
            subscribing: None,
            _stage: PhantomData,
        }
    }

    /// The context of `handle_subscribe` for `subscription`, on which it may ask before it is
    /// manual.
    pub(crate) fn subscribing(mut self, subscription: SubscriptionTag) -> Self {
        self.subscribing = Some((subscription, 0));
        self
    }

    /// What `handle_subscribe` asked on the subscription it is told of, to be made once it has
    /// returned `Demand::Manual`.
    pub(crate) fn asked_while_subscribing(&self) -> usize {
        self.subscribing.map_or(0, |(_, asked)| asked)
    }

    /// The stage's name in its pipeline.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Asks the producer of a manual subscription for `demand` more events (GenStage's `ask/2`;
    /// see [`Demand::Manual`](crate::Demand::Manual)); `ask(_, 0)` asks for nothing. From
    /// `handle_events`, which has no context, or from another task, an [`Asker`](Self::asker)
    /// asks.
    ///
    /// In `handle_subscribe`, on the subscription it is told of, which is manual only once it has
    /// returned `Demand::Manual`, the ask is made as it returns, before any of the subscription's
    /// events is handled (GenStage's `ask/2` there reaches the producer before the callback
    /// returns); it is dropped with a warning if `handle_subscribe` returns `Demand::Automatic`.
    ///
    /// # Errors
    ///
    /// [`AskError`], naming this stage: [`Unknown`](AskError::Unknown) when the subscription is
    /// not this stage's, or has ended; [`Automatic`](AskError::Automatic) when it is not manual;
    /// [`NotAConsumer`](AskError::NotAConsumer) in a producer's callbacks.
    pub fn ask(&mut self, subscription: SubscriptionTag, demand: usize) -> Result<(), AskError> {
        let asked = match self.asks.as_mut() {
            Some(asks) => asks.ask_manual(subscription, demand),
            None => Err(self.not_a_consumer()),
        };
        match (asked, &mut self.subscribing) {
            (
                Err(AskError::Automatic {
                    subscription: tag, ..
                }),
                Some((subscribing, asked)),
            ) if *subscribing == tag => {
                *asked = asked.saturating_add(demand);
                Ok(())
            }
            (asked, _) => asked,
        }
    }

    /// An [`Asker`] for `subscription`: it asks on it where no context is at hand, from the stage's
    /// `handle_events` or from a task the stage hands work to (GenStage's `from`, kept for
    /// `ask/2`). Made in `handle_subscribe`, before the subscription is manual: it asks once
    /// `handle_subscribe` has returned [`Demand::Manual`](crate::Demand::Manual).
    ///
    /// # Errors
    ///
    /// [`AskError::Unknown`], naming this stage, when the subscription is not this stage's, or has
    /// ended; [`AskError::NotAConsumer`], naming it, in a producer's callbacks.
    pub fn asker(&self, subscription: SubscriptionTag) -> Result<Asker, AskError> {
        let asks = self.asks.as_ref().ok_or_else(|| self.not_a_consumer())?;
        let ends = asks
            .asker_ends(subscription)
            .ok_or_else(|| self.unknown(subscription))?;
        Ok(Asker::new(
            subscription,
            self.name,
            self.me.clone_port(),
            self.cancels.clone(),
            ends,
        ))
    }

    /// Cancels one of this stage's subscriptions to a producer, from the consumer's side
    /// (GenStage's `cancel/2` called by the consumer), as
    /// [`PipelineHandle::cancel`](crate::PipelineHandle::cancel) does: the producer sends nothing
    /// more on it, and this stage handles what was already sent, then sees it end
    /// (`handle_cancel` with [`CancelReason::Cancelled`](crate::CancelReason::Cancelled)). The
    /// stage goes on with its other producers, whatever its cancel mode, and finishes normally
    /// once it has none left: this is how a consumer stops itself (GenStage's
    /// `{:stop, :normal, state}`) without losing what was sent to it. From `handle_events`, which
    /// has no context, an [`Asker`]'s [`cancel`](Asker::cancel) does the same.
    ///
    /// Asynchronous, as GenStage's is: the cancel goes to the producer at once, and events the
    /// producer sends before it takes the cancel in are still handled. The pipeline knows of it
    /// before any request its handle makes afterwards: a partition the subscription held is free
    /// for a subscription made once this has returned.
    ///
    /// # Errors
    ///
    /// [`AskError::Unknown`], naming this stage, when the subscription is not this stage's, or has
    /// ended; [`AskError::NotAConsumer`], naming it, in a producer's callbacks.
    pub fn cancel(&mut self, subscription: SubscriptionTag) -> Result<(), AskError> {
        match self.asks.as_ref() {
            Some(asks) => match asks.producer_of(subscription) {
                Some(producer) => {
                    // Once the pipeline has ended, so has this stage: nothing is left to cancel.
                    self.cancels.cancel(subscription, &*producer);
                    Ok(())
                }
                None => Err(self.unknown(subscription)),
            },
            None => Err(self.not_a_consumer()),
        }
    }

    /// Sends `message` to this stage's own `handle_info`, after what its mailbox holds now.
    ///
    /// Checked as the stage's handles check it ([`InfoToSelf`]): the stage must handle infos of
    /// `M`, and its `handle_info` for `M` must return the stage's events, or this does not compile.
    /// `Role` is the stage's role ([`StageEvents`](super::StageEvents)), which the compiler infers.
    ///
    /// # Examples
    ///
    /// A producer that emits a tick's number and sends itself the next tick:
    ///
    /// ```
    /// use genstage::{Context, Emit, HandleInfo, Producer, StageResult};
    ///
    /// struct Ticker(u64);
    /// struct Tick;
    ///
    /// impl Producer for Ticker {
    ///     type Output = u64;
    ///     async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
    ///         Ok(Emit::more(Vec::new()))
    ///     }
    /// }
    ///
    /// impl HandleInfo<Tick> for Ticker {
    ///     type Emitted = Vec<u64>;
    ///     async fn handle_info(&mut self, _: Tick, ctx: &mut Context<'_, Self>) -> StageResult<Vec<u64>> {
    ///         self.0 += 1;
    ///         ctx.info(Tick);
    ///         Ok(vec![self.0])
    ///     }
    /// }
    /// ```
    ///
    /// Had `handle_info` returned `Vec<String>`, `ctx.info(Tick)` would not compile:
    /// "`Vec<String>` is not what `Ticker` emits: its `handle_info` for `Tick` must return the
    /// stage's events (`u64`)".
    pub fn info<M: InfoToSelf<S, Role>, Role>(&self, message: M) {
        // A stage that is stopping takes no more messages: nothing to do.
        self.me.post(message.__letter().0);
    }

    /// Sends `message` to this stage's own `handle_info` after the events the stage holds when it
    /// takes the message in (GenStage's `async_info(self(), message)`). On a producer or
    /// producer_consumer whose buffer holds events then, it is delivered right after they have all
    /// been dispatched to consumers (or dropped by a full `BufferKeep::Last` buffer); with nothing
    /// buffered, at once, as [`info`](Self::info). A producer_consumer first lets the input it has
    /// received and not yet handled go ahead of it. On a consumer it is [`info`](Self::info).
    ///
    /// Checked as [`info`](Self::info) is.
    ///
    /// Infos keep their order among themselves and relative to events, are never counted as
    /// buffered events (`estimate_buffered_count`), and are never lost while the stage runs; when
    /// the stage stops first, they go with it.
    ///
    /// A typical use: a producer that confirms events once they have gone out to its consumers
    /// (GenStage's `async_info(self(), ...)`).
    ///
    /// # Examples
    ///
    /// ```
    /// use genstage::{
    ///     to_stream, Context, Emit, HandleCast, HandleInfo, Pipeline, Producer, StageRef,
    ///     StageResult, SubscribeOptions,
    /// };
    /// use futures::StreamExt;
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
    ///
    /// /// Events to emit, and whom to tell once they have gone out.
    /// struct Publish(Vec<u64>, oneshot::Sender<()>);
    /// impl HandleCast<Publish> for Feed {
    ///     type Emitted = Vec<u64>;
    ///     async fn handle_cast(&mut self, Publish(events, sent): Publish, ctx: &mut Context<'_, Self>)
    ///         -> StageResult<Vec<u64>>
    ///     {
    ///         // Delivered behind these events, which the consumer takes 10 at a time.
    ///         ctx.info_after_buffered(Sent(sent));
    ///         Ok(events)
    ///     }
    /// }
    ///
    /// struct Sent(oneshot::Sender<()>);
    /// impl HandleInfo<Sent> for Feed {
    ///     type Emitted = ();
    ///     async fn handle_info(&mut self, Sent(sent): Sent, _: &mut Context<'_, Self>)
    ///         -> StageResult<()>
    ///     {
    ///         let _ = sent.send(());
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut pipeline = Pipeline::new();
    /// let feed = pipeline.add_producer(Feed);
    /// let (sink, events) = to_stream::<u64>();
    /// let sink = pipeline.add_consumer(sink);
    /// pipeline.subscribe_with(&feed, &sink, SubscribeOptions::new().max_demand(10));
    /// let running = pipeline.start();
    /// let (sent, confirmed) = oneshot::channel();
    /// feed.cast(Publish((0..100).collect(), sent))?;
    /// let received = tokio::spawn(events.collect::<Vec<u64>>());
    /// confirmed.await?;
    /// // All 100 have been sent to the consumer: none is left in the producer's buffer.
    /// assert_eq!(feed.estimate_buffered_count().await?, 0);
    /// running.shutdown().await?;
    /// assert_eq!(received.await?, (0..100).collect::<Vec<u64>>());
    /// # Ok(()) }
    /// ```
    pub fn info_after_buffered<M: InfoToSelf<S, Role>, Role>(&self, message: M) {
        // A stage that is stopping takes no more messages: nothing to do.
        self.me.post(after_buffered(message.__letter().0));
    }

    /// Sends `message` to this stage's own `handle_info` once `delay` has passed (GenStage's
    /// `Process.send_after(self(), …)`): a timer task holds it meanwhile. It is dropped if the stage
    /// has ended by then. Checked as [`info`](Self::info) is. The [`Timer`] it returns takes the
    /// message back while it is not sent yet (GenStage's `Process.cancel_timer`); dropping it
    /// leaves the timer running.
    pub fn info_after<M: InfoToSelf<S, Role>, Role>(&self, delay: Duration, message: M) -> Timer {
        let me = self.me.clone_port();
        Timer::start(delay, move || {
            // A stage that has ended takes nothing: the message is dropped.
            me.post(message.__letter().0);
        })
    }
}

impl<S> Context<'_, S> {
    /// The error of an ask or cancel on `subscription`, which is not this stage's, or has ended.
    fn unknown(&self, subscription: SubscriptionTag) -> AskError {
        AskError::Unknown {
            stage: self.name.to_owned(),
            subscription,
        }
    }

    /// The error of an ask or cancel in a producer's callbacks.
    fn not_a_consumer(&self) -> AskError {
        AskError::NotAConsumer {
            stage: self.name.to_owned(),
        }
    }

    /// An owned port to the stage's own mailbox, for a task of the runtime's that messages it later.
    pub(crate) fn port(&self) -> Box<dyn PostLetter> {
        self.me.clone_port()
    }
}

impl<S> std::fmt::Debug for Context<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
