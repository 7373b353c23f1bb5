//! What a stage's callbacks get besides their arguments.

use std::marker::PhantomData;
use std::time::Duration;

use super::letter::{info_letter, PostLetter};
use super::HandleInfo;
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
    pub fn info<M: Send + 'static>(&self, message: M)
    where
        S: HandleInfo<M>,
    {
        // A stage that is stopping takes no more messages: nothing to do.
        self.me.post(info_letter::<S, M>(message));
    }

    /// Sends `message` to this stage's own `handle_info` once `delay` has passed (GenStage's
    /// `Process.send_after(self(), …)`): a timer task holds it meanwhile. It is dropped if the stage
    /// has ended by then.
    pub fn info_after<M: Send + 'static>(&self, delay: Duration, message: M)
    where
        S: HandleInfo<M>,
    {
        let me = self.me.clone_port();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.post(info_letter::<S, M>(message));
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
