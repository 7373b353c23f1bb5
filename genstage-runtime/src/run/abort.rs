//! Aborting a pipeline's stages where they stand, with their counts kept.
//!
//! tokio's `abort` would drop a stage's task, and the counts its loop keeps with it. Instead each
//! stage races its loop against an [`Abort`] signal: when the signal wins, the loop's future is
//! dropped, and the stage still has its counts (they live outside the loop) to report what it held
//! as lost. A stage checks the signal on each wake-up with one atomic load, and registers its waker
//! only when it changes, so the check costs the event path nothing measurable.

use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use super::callback::panic_message;

/// One pipeline's abort signal, shared by its stages.
#[derive(Default)]
pub(crate) struct Abort {
    aborted: AtomicBool,
    /// The waker of each stage waiting on the signal, by registration slot.
    wakers: Mutex<Vec<Option<Waker>>>,
}

impl Abort {
    /// Aborts every stage that races against this signal, now or later.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        let wakers =
            std::mem::take(&mut *self.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    #[inline]
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Runs `work` to its end, or until the signal is raised (`None`), catching a panic in it
    /// (`Some(Err(message))`): only a user's callback panics, so the stage's state outside `work`
    /// (its counts, its queues) is consistent when one does.
    ///
    /// One `poll_fn` does both, around each poll of the whole stage loop, not each callback, so
    /// that callbacks are inlined into the loop as they would be without it.
    pub(crate) async fn guard<T>(
        self: &Arc<Self>,
        work: impl Future<Output = T>,
    ) -> Option<Result<T, String>> {
        let mut work = pin!(work);
        let mut slot: Option<usize> = None;
        let mut registered: Option<Waker> = None;
        poll_fn(|cx| {
            if self.is_aborted() {
                return Poll::Ready(None);
            }
            match catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
                Ok(Poll::Ready(output)) => return Poll::Ready(Some(Ok(output))),
                Err(payload) => return Poll::Ready(Some(Err(panic_message(&*payload)))),
                Ok(Poll::Pending) => {}
            }
            // Register (again) only when the task's waker changed since the last registration.
            if registered
                .as_ref()
                .is_none_or(|waker| !waker.will_wake(cx.waker()))
            {
                let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
                let at = *slot.get_or_insert_with(|| {
                    wakers.push(None);
                    wakers.len() - 1
                });
                if let Some(entry) = wakers.get_mut(at) {
                    *entry = Some(cx.waker().clone());
                }
                registered = Some(cx.waker().clone());
                drop(wakers);
                // Raised while registering: the waker may have been taken before it was put.
                if self.is_aborted() {
                    return Poll::Ready(None);
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_that_ends_is_not_aborted() {
        let abort = Arc::new(Abort::default());
        assert_eq!(abort.guard(async { 7 }).await, Some(Ok(7)));
    }

    #[tokio::test]
    async fn a_waiting_race_ends_when_aborted() {
        let abort = Arc::new(Abort::default());
        let racer = abort.clone();
        let task = tokio::spawn(async move { racer.guard(std::future::pending::<()>()).await });
        // Let the task register its waker, then abort.
        tokio::task::yield_now().await;
        abort.abort();
        assert_eq!(task.await.ok(), Some(None));
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_its_message() {
        let abort = Arc::new(Abort::default());
        let panicked = abort.guard(async { panic!("boom") }).await;
        assert_eq!(
            panicked.map(|result: Result<(), String>| result),
            Some(Err("boom".to_owned()))
        );
    }

    #[tokio::test]
    async fn a_race_started_after_the_abort_ends_at_once() {
        let abort = Arc::new(Abort::default());
        abort.abort();
        assert_eq!(abort.guard(async { 7 }).await, None);
    }
}
