//! Wake-ups held until the poll of a stage's task in progress ends.
//!
//! A producer that waits for its consumers, and the consumers it chains, each wake the next task of
//! the chain only once they stop: woken earlier, that task waits in tokio's run queue while the
//! waker goes on, where the other worker, woken for it, may take it, and the chain with it (see
//! the module docs of [`crate::mailbox`]). "Once they stop" is the end of the poll of their task,
//! however it ends (an await that waits for anything, a yield, the task's end), which
//! [`GivesHeld`] marks: [`hold`] keeps a wake-up until then. Holding it so, no await in a stage's
//! loop or callbacks can keep it from the task it is owed to. Outside such a poll (a stage of a
//! pipeline with no stage that chains its consumers, whose tasks the supervisor does not wrap, as
//! each poll wrapped costs a little; or a receiver driven by something else) it gives the wake-up
//! at once.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[cfg(not(all(test, loom)))]
std::thread_local! {
    /// `None` outside a poll of a [`GivesHeld`] task on this thread; inside one, the wake-up held
    /// for its end, if any.
    static HELD: Cell<Option<Option<Waker>>> = const { Cell::new(None) };
}

// loom's thread-locals take no `const` initializer.
#[cfg(all(test, loom))]
::loom::thread_local! {
    static HELD: Cell<Option<Option<Waker>>> = Cell::new(None);
}

/// Wakes `waker` when the poll of the stage's task in progress on this thread ends, or now when
/// none is. A wake-up held already goes first, now: one is held at a time.
pub(crate) fn hold(waker: Waker) {
    let earlier = HELD.with(|held| match held.take() {
        Some(earlier) => {
            held.set(Some(Some(waker)));
            earlier
        }
        None => Some(waker),
    });
    if let Some(earlier) = earlier {
        earlier.wake();
    }
}

/// A stage's task: at the end of each of its polls, gives the wake-up its stage held for it
/// ([`hold`]).
pub(crate) struct GivesHeld<F: ?Sized> {
    task: Pin<Box<F>>,
}

impl<F: ?Sized> GivesHeld<F> {
    pub(crate) fn new(task: Pin<Box<F>>) -> Self {
        GivesHeld { task }
    }
}

/// Ends a poll: gives what it held and restores what the thread held before it (nothing, unless
/// a task was polled inside another's poll). A guard, so that a panic ends it too.
struct EndOfPoll(Option<Option<Waker>>);

impl Drop for EndOfPoll {
    fn drop(&mut self) {
        let held = HELD.with(|held| held.replace(self.0.take()));
        if let Some(Some(waker)) = held {
            waker.wake();
        }
    }
}

impl<F: Future + ?Sized> Future for GivesHeld<F> {
    type Output = F::Output;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _end = EndOfPoll(HELD.with(|held| held.replace(Some(None))));
        self.task.as_mut().poll(cx)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::mailbox::tests::{logging_waker as logging, poll_as_a_stage};
    use std::sync::{Arc, Mutex};

    #[test]
    fn outside_a_stage_s_poll_a_wake_up_is_given_at_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        hold(logging(&log, "now"));
        assert_eq!(*log.lock().unwrap(), ["now"]);
    }

    #[test]
    fn a_wake_up_held_in_a_poll_is_given_as_the_poll_ends_and_an_earlier_one_first() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let inside = log.clone();
        let polled = poll_as_a_stage(std::future::poll_fn(move |_| {
            hold(logging(&inside, "first"));
            assert!(inside.lock().unwrap().is_empty(), "held");
            hold(logging(&inside, "second"));
            assert_eq!(*inside.lock().unwrap(), ["first"], "the earlier goes now");
            Poll::<()>::Pending
        }));
        assert_eq!(polled, Poll::Pending);
        assert_eq!(*log.lock().unwrap(), ["first", "second"]);
        hold(logging(&log, "after"));
        assert_eq!(
            *log.lock().unwrap(),
            ["first", "second", "after"],
            "outside again"
        );
    }

    #[test]
    fn a_poll_that_panics_gives_what_it_held() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let inside = log.clone();
        let task = std::future::poll_fn(move |_| -> Poll<()> {
            hold(logging(&inside, "held"));
            panic!("the stage's task panics");
        });
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_as_a_stage(task)));
        assert!(panicked.is_err());
        assert_eq!(*log.lock().unwrap(), ["held"]);
        hold(logging(&log, "after"));
        assert_eq!(*log.lock().unwrap(), ["held", "after"], "outside again");
    }
}
