//! Calling a stage's callbacks: a producer keeps serving its mailbox while its callback waits. (A
//! panic in one is caught as the stage's exit by [`Abort::guard`](super::abort::Abort::guard).)

use std::any::Any;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use crate::mailbox::{Receiver, TryRecvError};

/// How a callback call ended.
pub(super) enum Called<T> {
    /// It returned this.
    Returned(T),
    /// The stage had to stop while it waited, and it was dropped.
    Stopped,
}

/// Awaits `callback` and hands every message that arrives meanwhile to `take`; when `take` says the
/// stage must stop, drops the callback and returns [`Called::Stopped`]. A callback that is ready when
/// first polled never looks at the mailbox.
///
/// Only eager messages wake the stage while it waits (cancels and events, not asks: see
/// [`crate::mailbox`]); asks are taken in with them.
#[inline]
pub(super) async fn call_serving<F: Future, M>(
    callback: F,
    mailbox: &mut Receiver<M>,
    mut take: impl FnMut(M) -> bool,
) -> Called<F::Output> {
    let mut callback = pin!(callback);
    // Whether the mailbox was parked while the callback waited: unparked once it returns, as the
    // stage then runs on with other awaits before its next look at its mailbox.
    let mut parked = false;
    let called = poll_fn(|cx| {
        if let Poll::Ready(output) = callback.as_mut().poll(cx) {
            return Poll::Ready(Called::Returned(output));
        }
        loop {
            match mailbox.try_recv() {
                Ok(mail) => {
                    if take(mail) {
                        return Poll::Ready(Called::Stopped);
                    }
                }
                Err(TryRecvError::Empty) => {
                    if pin!(mailbox.ready(false)).poll(cx).is_pending() {
                        parked = true;
                        return Poll::Pending;
                    }
                }
                // Only the pipeline being dropped closes a mailbox, and that aborts the stage.
                Err(TryRecvError::Disconnected) => return Poll::Pending,
            }
        }
    })
    .await;
    if parked {
        mailbox.unpark();
    }
    called
}

/// The message of a panic, when it was a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
