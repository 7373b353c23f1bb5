//! Messages into a running stage: GenStage's `handle_call`, `handle_cast` and `handle_info`, typed.
//!
//! A stage answers a message type `M` by implementing [`HandleCall<M>`], [`HandleCast<M>`] or
//! [`HandleInfo<M>`] (or, in a `#[stage]` impl block, by a `handle_call`, `handle_cast` or
//! `handle_info` method). Its handles ([`ProducerRef`](crate::ProducerRef) and its siblings) then
//! offer `call`, `cast` and `info` for exactly those types: sending a message a stage does not
//! handle does not compile.
//!
//! Each callback runs in the stage's task, between batches, with `&mut self`, and may emit events
//! where the stage's role emits: a producer's or producer_consumer's callback returns them as its
//! event callback does (`Vec<T>`, and for a producer also `Emit<T>`), a consumer's returns `()`.
//! The events go to the dispatcher (and the buffer) as soon as the callback returns.
//!
//! # Ordering
//! Messages reach a stage in its mailbox, in the order they were sent by one sender, interleaved with
//! the events and demand it receives.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::stage::{Emit, StageResult};
use crate::subscription::{AskError, ManualAsks, SubscriptionTag};

/// Requests of type `M` that a stage answers with a [`Reply`](Self::Reply): GenStage's
/// `handle_call`. Callers use `call` on the stage's handle.
///
/// The callback gets a [`ReplyTo`]: replying in the callback sends the reply once the events the
/// callback returns have been dispatched (GenStage's `{:reply, reply, events, state}`);
/// [`ReplyTo::reply_now`] replies before them; and a `ReplyTo` kept in the stage replies whenever
/// the stage chooses (a queue that answers a push once the job has gone out).
///
/// # Examples
///
/// ```
/// use genstage_runtime::{Context, HandleCall, ReplyTo, StageResult};
///
/// struct Queue { jobs: Vec<String> }
/// struct Len;
///
/// impl HandleCall<Len> for Queue {
///     type Reply = usize;
///     type Emitted = Vec<String>;
///     async fn handle_call(
///         &mut self,
///         _request: Len,
///         reply: ReplyTo<usize>,
///         _ctx: &mut Context<'_, Self>,
///     ) -> StageResult<Vec<String>> {
///         reply.reply(self.jobs.len());
///         Ok(Vec::new())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not answer calls of `{M}`",
    label = "no `handle_call` for `{M}`",
    note = "a stage answers calls of `{M}` when its `#[stage]` impl block has `fn handle_call(&mut self, request: {M}, reply: ReplyTo<R>)`, or when it implements `genstage::HandleCall<{M}>`"
)]
pub trait HandleCall<M>: Sized + Send + 'static {
    /// The type of the answer.
    type Reply: Send + 'static;
    /// What the callback returns: the events it emits, as the stage's event callback returns them
    /// (`Vec<T>` or `Emit<T>` for a producer, `Vec<T>` for a producer_consumer), or `()` for a
    /// consumer.
    type Emitted: Send + 'static;

    /// Answers `request` through `reply`, and returns the events to emit.
    ///
    /// # Errors
    ///
    /// An error stops the stage, as an error of its event callback does; the caller gets
    /// [`CallError::NoReply`] unless the stage replied first.
    fn handle_call(
        &mut self,
        request: M,
        reply: ReplyTo<Self::Reply>,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = StageResult<Self::Emitted>> + Send;
}

/// One-way messages of type `M`: GenStage's `handle_cast`. Senders use `cast` on the stage's
/// handle.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not take casts of `{M}`",
    label = "no `handle_cast` for `{M}`",
    note = "a stage takes casts of `{M}` when its `#[stage]` impl block has `fn handle_cast(&mut self, message: {M})`, or when it implements `genstage::HandleCast<{M}>`"
)]
pub trait HandleCast<M>: Sized + Send + 'static {
    /// What the callback returns: see [`HandleCall::Emitted`].
    type Emitted: Send + 'static;

    /// Handles `message`, and returns the events to emit.
    ///
    /// # Errors
    ///
    /// An error stops the stage, as an error of its event callback does.
    fn handle_cast(
        &mut self,
        message: M,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = StageResult<Self::Emitted>> + Send;
}

/// Messages of type `M` a stage gets from itself or from anywhere, such as timer ticks: GenStage's
/// `handle_info`. A stage sends them to itself with [`Context::info`] and [`Context::info_after`];
/// others use `info` on the stage's handle.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not take infos of `{M}`",
    label = "no `handle_info` for `{M}`",
    note = "a stage takes infos of `{M}` when its `#[stage]` impl block has `fn handle_info(&mut self, message: {M})`, or when it implements `genstage::HandleInfo<{M}>`"
)]
pub trait HandleInfo<M>: Sized + Send + 'static {
    /// What the callback returns: see [`HandleCall::Emitted`].
    type Emitted: Send + 'static;

    /// Handles `message`, and returns the events to emit.
    ///
    /// # Errors
    ///
    /// An error stops the stage, as an error of its event callback does.
    fn handle_info(
        &mut self,
        message: M,
        ctx: &mut Context<'_, Self>,
    ) -> impl Future<Output = StageResult<Self::Emitted>> + Send;
}

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The stage has ended (or never started, and its pipeline is gone): nothing takes messages.
    Ended {
        /// The stage's name.
        stage: String,
    },
    /// The stage did not answer in time. It may still handle the request.
    Timeout {
        /// The stage's name.
        stage: String,
        /// How long the caller waited.
        after: Duration,
    },
    /// The stage dropped the [`ReplyTo`] without replying, or stopped before it replied.
    NoReply {
        /// The stage's name.
        stage: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Ended { stage } => write!(f, "stage {stage} has ended"),
            CallError::Timeout { stage, after } => {
                write!(f, "stage {stage} did not answer within {after:?}")
            }
            CallError::NoReply { stage } => write!(f, "stage {stage} did not reply"),
        }
    }
}

impl std::error::Error for CallError {}

/// Where a call's answer goes: given to [`HandleCall::handle_call`], used once.
///
/// Dropping it without replying answers the caller with [`CallError::NoReply`].
pub struct ReplyTo<R> {
    sender: oneshot::Sender<R>,
    /// The replies of the callback running now, held until its events are dispatched.
    held: Arc<HeldReplies>,
}

impl<R: Send + 'static> ReplyTo<R> {
    pub(crate) fn new(sender: oneshot::Sender<R>, held: Arc<HeldReplies>) -> Self {
        ReplyTo { sender, held }
    }

    /// Replies with `reply`. Called inside the `handle_call` that received this `ReplyTo`, the
    /// reply goes once the events that callback returns have been dispatched, as GenStage's
    /// `{:reply, …}` does; called later (the `ReplyTo` kept in the stage), it goes at once, or, from
    /// another call, cast or info, once that callback's events are dispatched.
    pub fn reply(self, reply: R) {
        let ReplyTo { sender, held } = self;
        held.send_or_hold(move || {
            // The caller may have given up waiting (a timeout): nobody to tell.
            let _ = sender.send(reply);
        });
    }

    /// Replies with `reply` at once, before the events of the running callback are dispatched
    /// (GenStage's `GenStage.reply/2` followed by `{:noreply, events, state}`).
    pub fn reply_now(self, reply: R) {
        let _ = self.sender.send(reply);
    }

    /// Whether the caller has stopped waiting (it timed out or was dropped).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl<R> std::fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo").finish_non_exhaustive()
    }
}

type HeldReply = Box<dyn FnOnce() + Send>;

/// The replies made during one callback, sent once its events are dispatched. One per stage.
#[derive(Default)]
pub(crate) struct HeldReplies {
    /// `Some` while a callback runs.
    held: Mutex<Option<Vec<HeldReply>>>,
}

impl HeldReplies {
    fn send_or_hold(&self, send: impl FnOnce() + Send + 'static) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_mut() {
            Some(replies) => replies.push(Box::new(send)),
            None => {
                drop(held);
                send();
            }
        }
    }

    /// From now on, replies are held.
    pub(crate) fn hold(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get_or_insert_with(Vec::new);
    }

    /// Sends the held replies, and stops holding.
    pub(crate) fn release(&self) {
        let replies = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for send in replies.into_iter().flatten() {
            send();
        }
    }
}

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

/// What a message callback may return: the events it emits, as `Vec<T>` or [`Emit<T>`], or `()`
/// when it emits none (always, for a consumer).
///
/// Sealed: the runtime turns these into the stage's events.
pub trait Emission<T>: sealed::Sealed + Send + 'static {
    /// The events, as an [`Emit`].
    #[doc(hidden)]
    fn into_emit(self) -> Emit<T>;
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for Vec<T> {}
    impl<T> Sealed for crate::stage::Emit<T> {}
    impl Sealed for () {}
}

impl<T: Send + 'static> Emission<T> for Vec<T> {
    fn into_emit(self) -> Emit<T> {
        Emit::more(self)
    }
}

impl<T: Send + 'static> Emission<T> for Emit<T> {
    fn into_emit(self) -> Emit<T> {
        self
    }
}

impl<T> Emission<T> for () {
    fn into_emit(self) -> Emit<T> {
        Emit::more(Vec::new())
    }
}

/// What a message callback returned, before the stage loop turns it into its role's events: an
/// [`Emit`] of the stage's event type when the letter was written by a typed handle, or the
/// callback's own [`Emission`] type when written by [`Context`] (which does not know the role).
pub(crate) type Emitted = Box<dyn Any + Send>;

/// Turns what a message callback returned into the events of a stage emitting `T`.
///
/// # Errors
///
/// The callback returned events of another type, which only a hand-written `HandleInfo` whose
/// `Emitted` disagrees with its stage's event type can do.
pub(crate) fn events_of<T: Send + 'static>(emitted: Emitted) -> Result<Emit<T>, String> {
    let emitted = match emitted.downcast::<Emit<T>>() {
        Ok(emit) => return Ok(*emit),
        Err(other) => other,
    };
    let emitted = match emitted.downcast::<Vec<T>>() {
        Ok(events) => return Ok(Emit::more(*events)),
        Err(other) => other,
    };
    if emitted.is::<()>() {
        return Ok(Emit::more(Vec::new()));
    }
    Err(format!(
        "a message callback returned events of another type than the stage's `{}`",
        std::any::type_name::<T>()
    ))
}

/// A message for a stage, with the callback that handles it: the stage's type is known where the
/// letter is written (a typed handle, or [`Context`]), not in the stage's mailbox, which carries
/// letters for any stage type.
pub(crate) type Letter = Box<dyn OpenLetter>;

/// A letter's callback, run by the stage loop with the stage (downcast to the letter's stage type).
pub(crate) trait OpenLetter: Send {
    fn open<'a>(
        self: Box<Self>,
        stage: &'a mut (dyn Any + Send),
        opened: Opened<'a>,
    ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>>;
}

/// What a stage loop lends a letter it opens.
pub(crate) struct Opened<'a> {
    pub(crate) name: &'a str,
    pub(crate) me: &'a dyn PostLetter,
    pub(crate) held: &'a Arc<HeldReplies>,
    pub(crate) asks: Option<&'a mut dyn ManualAsks>,
}

/// Where a stage posts letters to itself.
pub(crate) trait PostLetter: Send + Sync {
    /// Posts `letter`; false when the stage has ended.
    fn post(&self, letter: Letter) -> bool;
    /// An owned port, for a timer task.
    fn clone_port(&self) -> Box<dyn PostLetter>;
}

impl<T: PostLetter + ?Sized> PostLetter for Box<T> {
    fn post(&self, letter: Letter) -> bool {
        (**self).post(letter)
    }
    fn clone_port(&self) -> Box<dyn PostLetter> {
        (**self).clone_port()
    }
}

/// The error of a letter opened on a stage of another type, which the handles' types rule out.
fn wrong_stage<S>() -> crate::error::StageError {
    format!(
        "a message for a `{}` reached another stage",
        std::any::type_name::<S>()
    )
    .into()
}

struct Letter1<S, M, F> {
    message: M,
    handle: F,
    _stage: PhantomData<fn(&mut S)>,
}

/// A letter that hands `message` to `handle` with the stage.
fn letter<S, M, F>(message: M, handle: F) -> Letter
where
    S: Send + 'static,
    M: Send + 'static,
    F: for<'a> FnOnce(
            &'a mut S,
            M,
            Opened<'a>,
        ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>>
        + Send
        + 'static,
{
    Box::new(Letter1 {
        message,
        handle,
        _stage: PhantomData,
    })
}

impl<S, M, F> OpenLetter for Letter1<S, M, F>
where
    S: Send + 'static,
    M: Send + 'static,
    F: for<'a> FnOnce(
            &'a mut S,
            M,
            Opened<'a>,
        ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>>
        + Send
        + 'static,
{
    fn open<'a>(
        self: Box<Self>,
        stage: &'a mut (dyn Any + Send),
        opened: Opened<'a>,
    ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>> {
        let Letter1 {
            message, handle, ..
        } = *self;
        match stage.downcast_mut::<S>() {
            Some(stage) => handle(stage, message, opened),
            None => Box::pin(std::future::ready(Err(wrong_stage::<S>()))),
        }
    }
}

pub(crate) fn info_letter<S: HandleInfo<M>, M: Send + 'static>(message: M) -> Letter {
    letter::<S, M, _>(message, |stage, message, opened| {
        Box::pin(async move {
            let mut ctx = Context::new(opened.name, opened.me, opened.asks);
            let emitted = stage.handle_info(message, &mut ctx).await?;
            Ok(Box::new(emitted) as Emitted)
        })
    })
}

/// An info from a typed handle of a stage emitting `T`.
pub(crate) fn typed_info_letter<S, M, T>(message: M) -> Letter
where
    S: HandleInfo<M>,
    S::Emitted: Emission<T>,
    M: Send + 'static,
    T: Send + 'static,
{
    letter::<S, M, _>(message, |stage, message, opened| {
        Box::pin(async move {
            let mut ctx = Context::new(opened.name, opened.me, opened.asks);
            let emitted = stage.handle_info(message, &mut ctx).await?;
            Ok(Box::new(emitted.into_emit()) as Emitted)
        })
    })
}

/// A cast from a typed handle of a stage emitting `T`.
pub(crate) fn cast_letter<S, M, T>(message: M) -> Letter
where
    S: HandleCast<M>,
    S::Emitted: Emission<T>,
    M: Send + 'static,
    T: Send + 'static,
{
    letter::<S, M, _>(message, |stage, message, opened| {
        Box::pin(async move {
            let mut ctx = Context::new(opened.name, opened.me, opened.asks);
            let emitted = stage.handle_cast(message, &mut ctx).await?;
            Ok(Box::new(emitted.into_emit()) as Emitted)
        })
    })
}

/// A call from a typed handle of a stage emitting `T`.
pub(crate) fn call_letter<S, M, T>(message: M, sender: oneshot::Sender<S::Reply>) -> Letter
where
    S: HandleCall<M>,
    S::Emitted: Emission<T>,
    M: Send + 'static,
    T: Send + 'static,
{
    letter::<S, M, _>(message, move |stage, message, opened| {
        Box::pin(async move {
            let reply = ReplyTo::new(sender, opened.held.clone());
            let mut ctx = Context::new(opened.name, opened.me, opened.asks);
            let emitted = stage.handle_call(message, reply, &mut ctx).await?;
            Ok(Box::new(emitted.into_emit()) as Emitted)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_made_in_a_callback_waits_for_its_release_and_one_made_later_goes_at_once() {
        let held = Arc::new(HeldReplies::default());
        let (sender, mut answer) = oneshot::channel();
        held.hold();
        ReplyTo::new(sender, held.clone()).reply(1);
        // Held: the callback's events have not been dispatched yet.
        assert!(answer.try_recv().is_err());
        held.release();
        assert_eq!(answer.try_recv(), Ok(1));

        let (sender, mut answer) = oneshot::channel();
        ReplyTo::new(sender, held.clone()).reply(2);
        assert_eq!(answer.try_recv(), Ok(2));
    }

    #[test]
    fn reply_now_goes_before_the_callback_ends() {
        let held = Arc::new(HeldReplies::default());
        let (sender, mut answer) = oneshot::channel();
        held.hold();
        ReplyTo::new(sender, held.clone()).reply_now(3);
        assert_eq!(answer.try_recv(), Ok(3));
        held.release();
    }

    #[test]
    fn what_a_callback_returns_becomes_the_stages_events() {
        let emit = |emitted: Emitted| events_of::<u64>(emitted).map(|e| (e.events, e.last));
        assert_eq!(emit(Box::new(vec![1u64, 2])), Ok((vec![1, 2], false)));
        assert_eq!(emit(Box::new(Emit::last(vec![3u64]))), Ok((vec![3], true)));
        assert_eq!(emit(Box::new(())), Ok((vec![], false)));
        assert!(emit(Box::new(vec!["not a u64"])).is_err());
    }
}
