//! What a stage's callbacks get besides their arguments.

use std::marker::PhantomData;
use std::time::Duration;

use super::events::InfoToSelf;
use super::letter::PostLetter;
use crate::subscription::{AskError, ManualAsks, SubscriptionTag};

/// What a stage's message and subscription callbacks get besides their arguments: the stage's name,
/// a way to send itself messages, and, for a consumer, a way to ask on its manual subscriptions.
pub struct Context<'a, S> {
    name: &'a str,
    me: &'a dyn PostLetter,
    /// The stage's subscriptions to producers; `None` for a producer.
    asks: Option<&'a mut dyn ManualAsks>,
    _stage: PhantomData<fn(&mut S)>,
}

impl<'a, S: Send + 'static> Context<'a, S> {
    pub(crate) fn new(
        name: &'a str,
        me: &'a dyn PostLetter,
        asks: Option<&'a mut dyn ManualAsks>,
    ) -> Self {
        Context {
            name,
            me,
            asks,
            _stage: PhantomData,
        }
    }

    /// The stage's name in its pipeline.
    pub fn name(&self) -> &str {
        self.name
    }

    /// Asks the producer of a manual subscription for `demand` more events (GenStage's `ask/2`;
    /// see [`Demand::Manual`](crate::Demand::Manual)); `ask(_, 0)` asks for nothing.
    ///
    /// # Errors
    ///
    /// [`AskError`] when the subscription is not a manual one of this stage, or has ended, or this
    /// stage is a producer.
    pub fn ask(&mut self, subscription: SubscriptionTag, demand: usize) -> Result<(), AskError> {
        match self.asks.as_mut() {
            Some(asks) => asks.ask_manual(subscription, demand),
            None => Err(AskError::NotAConsumer),
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
    /// use genstage_runtime::{Context, Emit, HandleInfo, Producer, StageResult};
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

    /// Sends `message` to this stage's own `handle_info` once `delay` has passed (GenStage's
    /// `Process.send_after(self(), …)`): a timer task holds it meanwhile. It is dropped if the stage
    /// has ended by then. Checked as [`info`](Self::info) is.
    pub fn info_after<M: InfoToSelf<S, Role>, Role>(&self, delay: Duration, message: M) {
        let me = self.me.clone_port();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.post(message.__letter().0);
        });
    }
}

impl<S> Context<'_, S> {
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
