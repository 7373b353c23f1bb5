//! [`Asker`]: asks on one of a stage's manual subscriptions from where no
//! [`Context`](crate::Context) is at hand.

use std::any::Any;
use std::fmt;
use std::future::{ready, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::cancel_port::CancelPort;
use super::letter::{Emitted, Letter, OpenLetter, Opened, PostLetter};
use super::CallError;
use crate::stage::StageResult;
use crate::subscription::{AskError, AskerEnds, CancelAtProducer, SubscriptionTag};

/// Asks on one of its stage's manual subscriptions, from anywhere: the stage's `handle_events`
/// (which gets no [`Context`](crate::Context)), or a task the stage handed work to, which asks once
/// the work is done. It is GenStage's `from`, kept for `GenStage.ask(from, n)`; it also cancels
/// the subscription ([`cancel`](Self::cancel), GenStage's `cancel(from, reason)`).
///
/// A stage gets one from [`Context::asker`](crate::Context::asker), typically in
/// `handle_subscribe` as it returns [`Demand::Manual`](crate::Demand::Manual), and keeps it. Cheap
/// to clone. A stage on several producers keeps one per subscription, by its tag; its
/// [`batch_from`](crate::Consumer::batch_from) (GenStage's `from` of `handle_events`) tells it,
/// right before each `handle_events`, which subscription the batch came on, and so which `Asker`
/// to ask on.
///
/// An ask goes to the stage's own mailbox, and the stage makes it from there, when it next takes
/// its mail, after what was queued before it (unlike [`Context::ask`](crate::Context::ask), which
/// is made at once). So it is made in the stage's turn, and it counts as a message the stage sends
/// itself: a producer_consumer
/// shutting down still takes it while it has a manual subscription. It is made also when the
/// stage's value that asked fails before, and a restart replaces it: the subscription outlives the
/// value (in GenStage, `ask/2` goes to the producer at once). So under a restart policy that
/// redelivers, ask once the batch's work is done: a batch whose callback asked and then failed is
/// handed again, and asks again. An ask on a subscription that has ended since is dropped, as
/// GenStage drops one sent to a producer that is gone; one on a subscription in automatic demand
/// (its `handle_subscribe` returned [`Demand::Automatic`](crate::Demand::Automatic)) is dropped,
/// with a `tracing` warning at the first.
///
/// The report counts an event handled once `handle_events` has returned: work the stage hands
/// to a task of its own is the stage's to track. A
/// [`ConsumerSupervisor`](crate::ConsumerSupervisor) runs a child per event, asks as they end, and
/// counts the events of failed children as lost.
///
/// # Examples
///
/// A consumer that takes its events one at a time, asking for the next as it handles each:
///
/// ```
/// use genstage::{
///     from_iter, Asker, Consumer, Context, Demand, Pipeline, StageResult, SubscribeOptions,
///     Subscription,
/// };
///
/// #[derive(Default)]
/// struct OneByOne {
///     asker: Option<Asker>,
///     seen: Vec<Vec<u32>>,
/// }
///
/// impl Consumer for OneByOne {
///     type Input = u32;
///
///     fn handle_subscribe(
///         &mut self,
///         subscription: &Subscription,
///         ctx: &mut Context<'_, Self>,
///     ) -> Demand {
///         self.asker = ctx.asker(subscription.tag()).ok();
///         Demand::Manual
///     }
///
///     async fn handle_events(&mut self, events: Vec<u32>) -> StageResult<()> {
///         self.seen.push(events);
///         if let Some(asker) = &self.asker {
///             asker.ask(1)?;
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut pipeline = Pipeline::new();
/// let numbers = pipeline.add_producer(from_iter(1..=3u32));
/// let one_by_one = pipeline.add_consumer(OneByOne::default());
/// // A manual subscription starts with its first ask made: one event.
/// let options = SubscribeOptions::new().max_demand(1).min_demand(0);
/// pipeline.subscribe_with(&numbers, &one_by_one, options);
/// let report = pipeline.run().await.unwrap();
/// assert_eq!(report.totals().handled, 3);
/// # }
/// ```
#[derive(Clone)]
pub struct Asker {
    subscription: SubscriptionTag,
    stage: Arc<str>,
    port: Arc<dyn PostLetter>,
    /// Where it cancels the subscription, and the subscription's producer.
    cancels: (CancelPort, Arc<dyn CancelAtProducer>),
    /// Whether an ask through it (or a clone) was dropped with a warning: one is enough.
    warned: Arc<AtomicBool>,
    /// What the subscription's `Asker`s have asked for and the stage has not made yet: counted in
    /// [`Subscription::outstanding`](crate::Subscription::outstanding), so that a restarted stage
    /// does not ask for it again.
    on_their_way: Arc<AtomicUsize>,
}

impl Asker {
    pub(crate) fn new(
        subscription: SubscriptionTag,
        stage: &str,
        port: Box<dyn PostLetter>,
        cancels: CancelPort,
        ends: AskerEnds,
    ) -> Self {
        Asker {
            subscription,
            stage: stage.into(),
            port: Arc::from(port),
            cancels: (cancels, ends.producer),
            warned: Arc::default(),
            on_their_way: ends.on_their_way,
        }
    }

    /// The subscription it asks on.
    pub fn subscription(&self) -> SubscriptionTag {
        self.subscription
    }

    /// Asks the subscription's producer for `demand` more events, in the stage's turn (see the
    /// type's docs); `ask(0)` asks for nothing.
    ///
    /// On a subscription that has ended while its stage runs (its producer finished or failed, or
    /// it was cancelled or replaced), the ask is `Ok` and dropped in the stage's turn, as
    /// GenStage's `ask/3` to a producer that is gone is a message nobody takes: whether the
    /// subscription has ended is the stage's to know, and it learns it in its turn too
    /// (`handle_cancel`).
    ///
    /// # Errors
    ///
    /// [`CallError::Ended`], naming the stage, when the stage has ended.
    pub fn ask(&self, demand: usize) -> Result<(), CallError> {
        if demand == 0 {
            return Ok(());
        }
        // Counted before it is posted: the stage subtracts it as it opens the letter.
        add(&self.on_their_way, demand);
        let letter = AskLetter {
            subscription: self.subscription,
            demand,
            warned: Arc::clone(&self.warned),
            on_their_way: Arc::clone(&self.on_their_way),
        };
        if self.port.post(Box::new(letter)) {
            Ok(())
        } else {
            subtract(&self.on_their_way, demand);
            Err(CallError::Ended {
                stage: self.stage.to_string(),
            })
        }
    }

    /// Cancels the subscription, as [`Context::cancel`](crate::Context::cancel) does: its
    /// producer sends nothing more on it, the stage handles what was sent, then sees it end
    /// (`handle_cancel` with [`CancelReason::Cancelled`](crate::CancelReason::Cancelled)), and
    /// finishes once it has no producer left. Made at once, not in the stage's turn: the cancel
    /// goes to the producer, and the end of the subscription comes back behind the events sent on
    /// it.
    ///
    /// A cancel of a subscription that has ended since, while its stage runs, is `Ok` and does
    /// nothing, as GenStage's `cancel/2` of a dead subscription does (and as
    /// [`ask`](Self::ask) is): the stage has seen, or will see, the subscription end once, for the
    /// reason it ended, and its other subscriptions are untouched.
    ///
    /// # Errors
    ///
    /// [`CallError::Ended`], naming the stage, when the stage has ended (or its pipeline has), as
    /// [`ask`](Self::ask) then gives.
    ///
    /// # Examples
    ///
    /// A consumer of an endless producer that stops itself after its third event: the pipeline
    /// then ends normally, since a producer left without consumers stops.
    ///
    /// ```
    /// use genstage::{
    ///     from_iter, Asker, Consumer, Context, Demand, Pipeline, StageResult, SubscribeOptions,
    ///     Subscription,
    /// };
    ///
    /// #[derive(Default)]
    /// struct FirstThree {
    ///     asker: Option<Asker>,
    ///     seen: Vec<u64>,
    /// }
    ///
    /// impl Consumer for FirstThree {
    ///     type Input = u64;
    ///
    ///     fn handle_subscribe(
    ///         &mut self,
    ///         subscription: &Subscription,
    ///         ctx: &mut Context<'_, Self>,
    ///     ) -> Demand {
    ///         self.asker = ctx.asker(subscription.tag()).ok();
    ///         Demand::Manual
    ///     }
    ///
    ///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
    ///         self.seen.extend(events);
    ///         if let Some(asker) = &self.asker {
    ///             if self.seen.len() < 3 {
    ///                 asker.ask(1)?;
    ///             } else {
    ///                 asker.cancel()?;
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer(from_iter(0u64..));
    /// let first_three = pipeline.add_consumer(FirstThree::default());
    /// let options = SubscribeOptions::new().max_demand(1).min_demand(0);
    /// pipeline.subscribe_with(&numbers, &first_three, options);
    /// let report = pipeline.run().await.unwrap();
    /// assert_eq!(report.totals().handled, 3);
    /// # }
    /// ```
    pub fn cancel(&self) -> Result<(), CallError> {
        let (cancels, producer) = &self.cancels;
        // A stage that has ended has no subscription left: the cancel would cancel nothing.
        if self.port.is_open() && cancels.cancel(self.subscription, &**producer) {
            Ok(())
        } else {
            Err(CallError::Ended {
                stage: self.stage.to_string(),
            })
        }
    }
}

impl fmt::Debug for Asker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asker")
            .field("subscription", &self.subscription)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

/// An [`Asker`]'s ask, made as its stage opens it: the same for a stage of any type.
struct AskLetter {
    subscription: SubscriptionTag,
    demand: usize,
    warned: Arc<AtomicBool>,
    on_their_way: Arc<AtomicUsize>,
}

/// Adds `n` to `count`, saturating (a stage may ask for any `usize`).
fn add(count: &AtomicUsize, n: usize) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_add(n))
    });
}

/// Subtracts `n` from `count`, saturating.
fn subtract(count: &AtomicUsize, n: usize) {
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_sub(n))
    });
}

impl OpenLetter for AskLetter {
    fn open<'a>(
        self: Box<Self>,
        _stage: &'a mut (dyn Any + Send),
        opened: Opened<'a>,
    ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>> {
        // No longer on its way: from here it is made, or dropped.
        subtract(&self.on_their_way, self.demand);
        let asked = match opened.asks {
            Some(asks) => asks.ask_manual(self.subscription, self.demand),
            // Only a stage with subscriptions to producers makes an `Asker`.
            None => Err(AskError::NotAConsumer {
                stage: opened.name.to_owned(),
            }),
        };
        match asked {
            // The subscription ended since: as an ask sent to a producer that is gone.
            Ok(()) | Err(AskError::Unknown { .. }) => {}
            // Once per `Asker`: the same mistake would repeat at every ask.
            Err(error) if !self.warned.swap(true, Ordering::Relaxed) => tracing::warn!(
                stage = opened.name,
                "an Asker's ask for {} events was dropped, and its next will be: {error}",
                self.demand
            ),
            Err(_) => {}
        }
        let emitted: Emitted = Box::new(());
        Box::pin(ready(Ok(emitted)))
    }

    fn into_after_buffered(self: Box<Self>) -> Result<Letter, Letter> {
        Err(self)
    }

    fn outlives_its_sender(&self) -> bool {
        true
    }
}
