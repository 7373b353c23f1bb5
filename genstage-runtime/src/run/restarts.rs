//! A stage task's restarts: how it makes its stage value again, when it may, and what a restart
//! does with the batch the failed value held.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::dispatcher::SubscriptionId;
use crate::messages::OwnPort;
use crate::restart::{CopyBatch, Intensity, Restart, RestartPolicy};

use super::{panic_message, Abort, Exit};

/// How many of a stage's last failures its report keeps.
const FAILURES_KEPT: usize = 10;

/// A stage's value, and how to make it again for a restart (`None`: it cannot be).
pub(crate) struct Build<S> {
    pub(crate) first: S,
    again: Option<Box<dyn FnMut() -> S + Send>>,
}

impl<S> Build<S> {
    /// A value added as such: it cannot be made again.
    pub(crate) fn once(stage: S) -> Self {
        Build {
            first: stage,
            again: None,
        }
    }

    /// The value `build` makes now, and again for each restart.
    pub(crate) fn by(mut build: impl FnMut() -> S + Send + 'static) -> Self {
        Build {
            first: build(),
            again: Some(Box::new(build)),
        }
    }

    /// Whether it can be made again.
    pub(crate) fn rebuildable(&self) -> bool {
        self.again.is_some()
    }
}

/// Why a stage gave up restarting: its policy's limit, reached.
#[derive(Debug)]
pub(crate) struct GaveUp {
    pub(crate) max_restarts: u32,
    pub(crate) within: Duration,
    /// With redelivery, the index in its batch of the event it failed on each time.
    pub(crate) poison: Option<usize>,
}

/// Whether a stage finishing on its own now is restarted: plain data, which a stage's loop can
/// hold (a [`Restarts`] holds the stage's constructor). What it says now,
/// [`Restarts::wanted`] says when asked later too: a restart allowed now stays allowed, as
/// restarts only ever leave the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestartOnFinish(Option<Intensity>);

impl RestartOnFinish {
    pub(crate) fn now(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|intensity| intensity.would_allow(tokio::time::Instant::now().into_std()))
    }
}

/// A stage's restarts so far, and whether it may restart again.
pub(crate) struct Restarts<S, T> {
    again: Option<Box<dyn FnMut() -> S + Send>>,
    policy: RestartPolicy<T>,
    intensity: Intensity,
    /// Restarts made.
    pub(crate) count: u64,
    /// Its last failures, oldest first.
    pub(crate) failures: VecDeque<String>,
    /// Set when it stopped for having reached its limit.
    pub(crate) gave_up: Option<GaveUp>,
}

impl<S, T> Restarts<S, T> {
    /// The restarts of the stage `build` makes, by `policy`; returns its first value.
    pub(crate) fn new(build: Build<S>, policy: RestartPolicy<T>) -> (S, Self) {
        let (max_restarts, within) = policy.limit();
        let restarts = Restarts {
            again: build.again,
            policy,
            intensity: Intensity::new(max_restarts, within),
            count: 0,
            failures: VecDeque::new(),
            gave_up: None,
        };
        (build.first, restarts)
    }

    /// The copy of a batch to keep for redelivery, when the stage redelivers.
    pub(crate) fn redelivery(&self) -> Option<CopyBatch<T>> {
        self.policy.redelivery()
    }

    /// Whether the stage is to be restarted, after its loop ended with `exit`: by its policy,
    /// after a failure (not `temporary`), or after it ended on its own (`finished_on_its_own`, a
    /// producer's last events delivered; `permanent` only), and within its restart limit (once
    /// past it, recorded in [`gave_up`](Self::gave_up), with the `poison` event if known).
    pub(crate) fn wanted(
        &mut self,
        stage: &str,
        exit: &Exit,
        finished_on_its_own: bool,
        poison: Option<usize>,
    ) -> bool {
        self.wanted_as_of(stage, exit, finished_on_its_own, poison, None)
    }

    /// [`wanted`](Self::wanted), with the restart limit judged as of `at` (now when `None`): a
    /// producer that decided to finish when its limit did not allow a restart is judged as of
    /// that moment, as it was then.
    pub(crate) fn wanted_as_of(
        &mut self,
        stage: &str,
        exit: &Exit,
        finished_on_its_own: bool,
        poison: Option<usize>,
        at: Option<std::time::Instant>,
    ) -> bool {
        let restart = self.policy.restart();
        let wanted = match exit {
            Exit::Failed(_) | Exit::Panicked(_) => restart != Restart::Temporary,
            Exit::Finished => finished_on_its_own && restart == Restart::Permanent,
            _ => false,
        };
        if !wanted || self.again.is_none() {
            return false;
        }
        let status = exit.status().to_string();
        if self.failures.len() == FAILURES_KEPT {
            self.failures.pop_front();
        }
        self.failures.push_back(status.clone());
        let at = at.unwrap_or_else(|| tokio::time::Instant::now().into_std());
        if !self.intensity.allow(at) {
            let (max_restarts, within) = self.policy.limit();
            tracing::error!(
                stage,
                max_restarts,
                "stage {stage} reached its restart limit ({max_restarts} in {within:?}) and stops: {status}"
            );
            self.gave_up = Some(GaveUp {
                max_restarts,
                within,
                poison,
            });
            return false;
        }
        tracing::warn!(
            stage,
            restart = self.count + 1,
            "stage {stage} restarts ({restart}) after: {status}"
        );
        true
    }

    /// What tells whether the stage, finishing on its own, is restarted (a `permanent` producer
    /// that can be made again, within its limit), for its loop to ask as it finishes.
    pub(crate) fn on_finish(&self) -> RestartOnFinish {
        let restarts = self.policy.restart() == Restart::Permanent && self.again.is_some();
        RestartOnFinish(restarts.then(|| self.intensity.clone()))
    }

    /// The stage's new value, made by its constructor, from which on what the failed values sent
    /// themselves through `me` is stale; the exit of the stage when the constructor panicked.
    ///
    /// The stage loops yield to the runtime before each call: a stage whose callback fails at once
    /// on each redelivery of a poison event would otherwise restart without an `.await` that
    /// waits, holding its worker thread (or a current-thread runtime) until its restart limit.
    pub(crate) fn rebuild(&mut self, me: &OwnPort) -> Result<S, Exit> {
        let Some(again) = self.again.as_mut() else {
            return Err(Exit::Panicked("it cannot be made again".to_owned()));
        };
        match catch_unwind(AssertUnwindSafe(again)) {
            Ok(stage) => {
                self.count += 1;
                me.next_generation();
                Ok(stage)
            }
            Err(panic) => Err(Exit::Panicked(format!(
                "its constructor panicked on restart: {}",
                panic_message(&*panic)
            ))),
        }
    }
}

/// Runs the `terminate` of a stage's value that is about to be replaced, told `exit`'s status,
/// when it ended as a stage whose `terminate` runs (it returned an error, or a producer's last
/// events went out; not after a panic); false when the pipeline aborted the stage meanwhile.
pub(crate) async fn farewell(
    abort: &Arc<Abort>,
    exit: &Exit,
    terminate: impl std::future::Future<Output = ()>,
) -> bool {
    if !matches!(exit, Exit::Failed(_) | Exit::Finished) {
        return true;
    }
    // A panic in it is the old value's: the new one starts all the same.
    abort.guard(terminate).await.is_some()
}

/// Events to hand again, one at a time, to a restarted stage that redelivers: each with its index
/// in the batch it first came in, and the subscription it came on.
pub(crate) struct Redelivery<T> {
    queue: VecDeque<(usize, SubscriptionId, T)>,
    /// Events handed again, over every restart.
    pub(crate) count: u64,
}

impl<T> Default for Redelivery<T> {
    fn default() -> Self {
        Redelivery {
            queue: VecDeque::new(),
            count: 0,
        }
    }
}

impl<T> Redelivery<T> {
    /// Queues the batch a failed callback held, in front of what waits: a whole batch, or
    /// (`index`) the one redelivered event it failed on again.
    pub(crate) fn again(&mut self, index: Option<usize>, sub: SubscriptionId, events: Vec<T>) {
        self.count += events.len() as u64;
        let first = index.unwrap_or(0);
        for (offset, event) in events.into_iter().enumerate().rev() {
            self.queue.push_front((first + offset, sub, event));
        }
    }

    /// The next event to hand again, with its index and subscription.
    pub(crate) fn next(&mut self) -> Option<(usize, SubscriptionId, T)> {
        self.queue.pop_front()
    }

    /// Events of `sub` waiting to be handed again.
    pub(crate) fn waiting_on(&self, sub: SubscriptionId) -> u64 {
        self.queue
            .iter()
            .filter(|&&(_, waiting, _)| waiting == sub)
            .count() as u64
    }

    /// Events waiting to be handed again.
    pub(crate) fn len(&self) -> u64 {
        self.queue.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_batch_is_handed_again_one_event_at_a_time_in_order() {
        let mut redelivery = Redelivery::default();
        redelivery.again(None, 7, vec!['a', 'b', 'c']);
        assert_eq!(redelivery.next(), Some((0, 7, 'a')));
        // 'b' fails the restarted stage: it is handed again first, with its index.
        assert_eq!(redelivery.next(), Some((1, 7, 'b')));
        redelivery.again(Some(1), 7, vec!['b']);
        assert_eq!(redelivery.next(), Some((1, 7, 'b')));
        assert_eq!(redelivery.len(), 1);
        assert_eq!(redelivery.next(), Some((2, 7, 'c')));
        assert_eq!(redelivery.next(), None);
        assert_eq!(redelivery.count, 4);
    }
}
