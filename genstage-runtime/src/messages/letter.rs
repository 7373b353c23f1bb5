//! Letters: a message for a stage together with the callback that handles it.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::cancel_port::CancelPort;
use super::reply::{HeldReplies, ReplyTo};
use super::{Context, Emission, HandleCall, HandleCast, HandleInfo};
use crate::stage::{Emit, StageResult};
use crate::subscription::ManualAsks;

/// What a message callback returned, before the stage loop turns it into its role's events: an
/// [`Emit`] of the stage's event type, as every letter is written.
pub(crate) type Emitted = Box<dyn Any + Send>;

/// Turns what a message callback returned into the events of a stage emitting `T`.
///
/// # Errors
///
/// The callback returned events of another type. The types of the handles and of [`Context`] rule
/// this out (a `HandleInfo` whose `Emitted` is not the stage's events does not compile where it
/// is sent): only a letter posted to a stage of another type than its own could.
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

    /// Whether this is an info sent with `info_after_buffered` (see [`after_buffered`]), which a
    /// producer or producer_consumer places behind its buffered events rather than opens.
    fn is_after_buffered(&self) -> bool {
        false
    }

    /// The info inside an [`after_buffered`] envelope, to place behind the buffered events; any
    /// other letter is given back, to open.
    ///
    /// # Errors
    ///
    /// Gives the letter back when it is not an envelope.
    fn into_after_buffered(self: Box<Self>) -> Result<Letter, Letter>;

    /// The answer of an `estimate_buffered_count` that came behind letters not yet opened (see
    /// [`count_letter`]), to send once they have been, instead of opening it; `None` for any
    /// other letter.
    fn take_count(&mut self) -> Option<oneshot::Sender<usize>> {
        None
    }

    /// The generation of the stage's value that sent it to its own stage (see
    /// [`OwnPort`](super::OwnPort)); `None` for a letter from outside.
    fn generation(&self) -> Option<u64> {
        None
    }

    /// Whether it reaches the stage's value also when the value that sent it has been replaced
    /// since: an [`Asker`](super::Asker)'s ask, made on a subscription that outlives the value (in
    /// GenStage it goes to the producer at once). False by default.
    fn outlives_its_sender(&self) -> bool {
        false
    }
}

/// An info to be delivered after the events its stage buffers when it takes the info in (GenStage's
/// `sync_info`/`async_info`). Opened as it stands (a consumer's, or one that reached a stage loop
/// that does not place it), it opens the info.
struct AfterBuffered(Letter);

/// Wraps an info letter to be delivered after the events its stage has buffered when it takes the
/// letter in: a producer or producer_consumer places it behind them (and behind its queued input,
/// for a producer_consumer); a consumer opens it as any letter.
pub(crate) fn after_buffered(info: Letter) -> Letter {
    Box::new(AfterBuffered(info))
}

impl OpenLetter for AfterBuffered {
    fn open<'a>(
        self: Box<Self>,
        stage: &'a mut (dyn Any + Send),
        opened: Opened<'a>,
    ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>> {
        self.0.open(stage, opened)
    }

    fn is_after_buffered(&self) -> bool {
        true
    }

    fn into_after_buffered(self: Box<Self>) -> Result<Letter, Letter> {
        Ok(self.0)
    }
}

/// An `estimate_buffered_count` that reached a producer behind letters it has not opened yet (it
/// took them in at its start, or while its `handle_demand` waited): queued behind them, so that the
/// count includes what they emit, as GenStage's answer, in mailbox order, does. The stage loop
/// answers it in its turn instead of opening it.
pub(crate) fn count_letter(reply: oneshot::Sender<usize>) -> Letter {
    Box::new(CountLetter(Some(reply)))
}

struct CountLetter(Option<oneshot::Sender<usize>>);

impl OpenLetter for CountLetter {
    /// Not opened by the loops that queue it; opened elsewhere, it answers 0, as a stage without a
    /// buffer does.
    fn open<'a>(
        self: Box<Self>,
        _stage: &'a mut (dyn Any + Send),
        _opened: Opened<'a>,
    ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>> {
        if let Some(reply) = self.0 {
            let _ = reply.send(0);
        }
        Box::pin(async { Ok(Box::new(()) as Emitted) })
    }

    fn into_after_buffered(self: Box<Self>) -> Result<Letter, Letter> {
        Err(self)
    }

    fn take_count(&mut self) -> Option<oneshot::Sender<usize>> {
        self.0.take()
    }
}

/// What a stage loop lends a letter it opens.
pub(crate) struct Opened<'a> {
    pub(crate) name: &'a str,
    pub(crate) me: &'a dyn PostLetter,
    pub(crate) cancels: &'a CancelPort,
    pub(crate) held: &'a Arc<HeldReplies>,
    pub(crate) asks: Option<&'a mut dyn ManualAsks>,
}

/// Where a stage posts letters to itself.
pub(crate) trait PostLetter: Send + Sync {
    /// Posts `letter`; false when the stage has ended.
    fn post(&self, letter: Letter) -> bool;
    /// Whether the stage still takes letters: false once it has ended.
    fn is_open(&self) -> bool;
    /// An owned port, for a timer task.
    fn clone_port(&self) -> Box<dyn PostLetter>;
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

    fn into_after_buffered(self: Box<Self>) -> Result<Letter, Letter> {
        Err(self)
    }
}

/// An info from a typed handle of a stage emitting `T`, from the stage's own [`Context`], or from
/// the runtime to a stage of its own (a `to_stream` sink, emitting `Infallible`).
pub(crate) fn typed_info_letter<S, M, T>(message: M) -> Letter
where
    S: HandleInfo<M>,
    S::Emitted: Emission<T>,
    M: Send + 'static,
    T: Send + 'static,
{
    letter::<S, M, _>(message, |stage, message, opened| {
        Box::pin(async move {
            let mut ctx = Context::new(opened.name, opened.me, opened.cancels, opened.asks);
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
            let mut ctx = Context::new(opened.name, opened.me, opened.cancels, opened.asks);
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
            let mut ctx = Context::new(opened.name, opened.me, opened.cancels, opened.asks);
            let emitted = stage.handle_call(message, reply, &mut ctx).await?;
            Ok(Box::new(emitted.into_emit()) as Emitted)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_callback_returns_becomes_the_stages_events() {
        let emit = |emitted: Emitted| events_of::<u64>(emitted).map(|e| (e.events, e.last));
        assert_eq!(emit(Box::new(vec![1u64, 2])), Ok((vec![1, 2], false)));
        assert_eq!(emit(Box::new(Emit::last(vec![3u64]))), Ok((vec![3], true)));
        assert_eq!(emit(Box::new(())), Ok((vec![], false)));
        assert!(emit(Box::new(vec!["not a u64"])).is_err());
    }
}
