//! Aborting a pipeline's stages where they stand, with their counts kept.
//!
//! tokio's `abort` would drop a stage's task, and the counts its loop keeps with it. Instead each
//! stage races its loop against an [`Abort`] signal: when the signal wins, the loop's future is
//! dropped, and the stage still has its counts (they live outside the loop) to report what it held
//! as lost. A stage checks the signal on each wake-up with one atomic load, and registers its waker
//! only when it changes, so the check costs the event path nothing measurable.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

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

    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Runs `work` to its end, or until the signal is raised; `None` when aborted.
    pub(crate) async fn race<T>(self: &Arc<Self>, work: impl Future<Output = T>) -> Option<T> {
        let mut work = pin!(work);
        let mut slot: Option<usize> = None;
        let mut registered: Option<Waker> = None;
        poll_fn(|cx| {
            if self.is_aborted() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
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
        assert_eq!(abort.race(async { 7 }).await, Some(7));
    }

    #[tokio::test]
    async fn a_waiting_race_ends_when_aborted() {
        let abort = Arc::new(Abort::default());
        let racer = abort.clone();
        let task = tokio::spawn(async move { racer.race(std::future::pending::<()>()).await });
        // Let the task register its waker, then abort.
        tokio::task::yield_now().await;
        abort.abort();
        assert_eq!(task.await.ok(), Some(None));
    }

    #[tokio::test]
    async fn a_race_started_after_the_abort_ends_at_once() {
        let abort = Arc::new(Abort::default());
        abort.abort();
        assert_eq!(abort.race(async { 7 }).await, None);
    }
}
