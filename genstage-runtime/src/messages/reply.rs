//! Where a call's answer goes, and the replies held until a callback's events are dispatched.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// Where a call's answer goes: given to [`HandleCall::handle_call`](crate::HandleCall::handle_call), used once.
///
/// Dropping it without replying answers the caller with [`CallError::NoReply`](crate::CallError::NoReply).
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
}
