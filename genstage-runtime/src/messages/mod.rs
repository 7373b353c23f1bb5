//! Messages into a running stage: GenStage's `handle_call`, `handle_cast` and `handle_info`, typed.
//!
//! A stage answers a message type `M` by implementing [`HandleCall<M>`], [`HandleCast<M>`] or
//! [`HandleInfo<M>`] (or, in a `#[stage]` impl block, by a `handle_call`, `handle_cast` or
//! `handle_info` method). Its handles ([`ProducerRef`](crate::ProducerRef) and its siblings) then
//! offer `call`, `cast` and `info` for exactly those types, and its [`Context`] offers `info` for
//! the stage to message itself: sending a message a stage does not handle, or one whose callback
//! returns other events than the stage's, does not compile.
//!
//! Each callback runs in the stage's task, between batches, with `&mut self`, and may emit events
//! where the stage's role emits: a producer's or producer_consumer's callback returns them as its
//! event callback does (`Vec<T>`, and for a producer also `Emit<T>`), a consumer's returns `()`.
//! The events go to the dispatcher (and the buffer) as soon as the callback returns.
//!
//! # Ordering
//! Messages reach a stage in its mailbox, in the order they were sent by one sender, interleaved with
//! the events and demand it receives.
//!
//! An info sent with `info_after_buffered` (GenStage's `sync_info`/`async_info`) waits, once the
//! stage takes it in, behind the events the stage has buffered then (and a producer_consumer's
//! queued input): its `handle_info` runs once those have been dispatched.
//!
//! Here: the message traits, [`CallError`] and [`Emission`]; [`ReplyTo`] in `reply.rs`,
//! [`Context`] in `context.rs`, [`Asker`] (asks on a manual subscription, as a letter the stage
//! sends itself) in `asker.rs`, [`CancelPort`] (where a stage cancels its own subscriptions, and
//! a producer tells of those it refused) in `cancel_port.rs`, the compile-time check of the infos
//! a stage sends itself through it ([`InfoToSelf`], [`StageEvents`]) in `events.rs`, and in
//! `letter.rs` the letters that carry a message and its callback to a stage's mailbox.

mod asker;
mod cancel_port;
mod context;
mod events;
mod letter;
mod own_port;
mod reply;
mod timer;

use std::future::Future;
use std::time::Duration;

use crate::stage::{Emit, StageResult};

pub use asker::Asker;
pub(crate) use cancel_port::CancelPort;
pub use context::Context;
pub use events::{
    AsConsumer, AsProducer, AsProducerConsumer, InfoEmission, InfoToSelf, StageEvents,
};
pub(crate) use letter::{
    after_buffered, call_letter, cast_letter, count_letter, events_of, typed_info_letter, Letter,
    Opened, PostLetter,
};
pub(crate) use own_port::OwnPort;
pub(crate) use reply::HeldReplies;
pub use reply::ReplyTo;
pub use timer::Timer;

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
/// use genstage::{Context, HandleCall, ReplyTo, StageResult};
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
    /// The stage has ended (or never started, and its pipeline is gone), or has decided to end (its
    /// events or its input ran out, it failed, its consumers left or its producer failed): nothing
    /// takes messages from outside any more. The message was not sent.
    ///
    /// A stage that is restarted is not ended: what is sent while it restarts is taken by its next
    /// value (a `permanent` producer that finishes, too). A stage that decided to end for want of
    /// input or of consumers goes on after all if a subscription made through the pipeline's
    /// handle reaches it first; it takes messages again from the moment it takes the subscription
    /// in (before its `handle_subscribe`, or its consumer's, runs); so does an accumulating
    /// producer whose last look gave it events to hold, which it delivers only once switched to
    /// forward. [`PipelineHandle::stage_ended`](crate::PipelineHandle::stage_ended) tells for
    /// certain that a stage has ended.
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
    /// The stage is a producer or producer_consumer shutting down (a graceful shutdown reached it),
    /// or a producer_consumer whose input has ended and that delivers what it holds before it
    /// finishes: it takes no more messages from outside (calls, casts, infos, demand switches), so
    /// that senders that keep sending cannot keep it going. The message was not sent; one accepted
    /// before is handled.
    ///
    /// A stage with nothing left to deliver ends as soon as the shutdown reaches it, so a sender
    /// may get [`Ended`](Self::Ended) without ever getting `ShuttingDown` (most often, for a stage
    /// that keeps up with its senders): treat both as "stop sending to this stage". Either way,
    /// what it accepted before the shutdown reached it is handled.
    ShuttingDown {
        /// The stage's name.
        stage: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Ended { stage } => write!(f, "stage `{stage}` has ended"),
            CallError::Timeout { stage, after } => {
                write!(f, "stage `{stage}` did not answer within {after:?}")
            }
            CallError::NoReply { stage } => write!(
                f,
                "stage `{stage}` did not reply: it dropped the reply, or stopped before it replied"
            ),
            CallError::ShuttingDown { stage } => write!(
                f,
                "stage `{stage}` is shutting down: it takes no more messages from outside"
            ),
        }
    }
}

impl std::error::Error for CallError {}

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
