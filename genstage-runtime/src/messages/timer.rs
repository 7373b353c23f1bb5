//! A message a stage sends itself later, which it may take back: [`Timer`].

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

/// Still to be sent.
const PENDING: u8 = 0;
/// Sent to the stage's mailbox.
const SENT: u8 = 1;
/// Taken back before it was sent.
const CANCELLED: u8 = 2;

/// The timer of a message a stage sends itself later, returned by
/// [`Context::info_after`](super::Context::info_after): [`cancel`](Self::cancel) takes the message
/// back while it has not been sent (GenStage's `Process.cancel_timer`). Dropping the timer leaves
/// it running.
///
/// # Examples
///
/// A consumer that starts one timer per subscription, and keeps only the latest:
///
/// ```
/// use std::time::Duration;
/// use genstage::{Consumer, Context, Demand, HandleInfo, StageResult, Subscription, Timer};
///
/// struct Flush;
///
/// #[derive(Default)]
/// struct Batcher { held: Vec<u64>, flush: Option<Timer> }
///
/// impl Consumer for Batcher {
///     type Input = u64;
///     fn handle_subscribe(&mut self, _: &Subscription, ctx: &mut Context<'_, Self>) -> Demand {
///         if let Some(earlier) = self.flush.replace(ctx.info_after(Duration::from_secs(1), Flush)) {
///             earlier.cancel();
///         }
///         Demand::Automatic
///     }
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
///         self.held.extend(events);
///         Ok(())
///     }
/// }
///
/// impl HandleInfo<Flush> for Batcher {
///     type Emitted = ();
///     async fn handle_info(&mut self, _: Flush, ctx: &mut Context<'_, Self>) -> StageResult<()> {
///         println!("{} events", self.held.len());
///         self.held.clear();
///         self.flush = Some(ctx.info_after(Duration::from_secs(1), Flush));
///         Ok(())
///     }
/// }
/// ```
pub struct Timer {
    state: Arc<AtomicU8>,
    task: AbortHandle,
}

impl Timer {
    /// Runs `send` once `delay` has passed, unless the timer is cancelled first.
    pub(crate) fn start(delay: Duration, send: impl FnOnce() + Send + 'static) -> Timer {
        let state = Arc::new(AtomicU8::new(PENDING));
        let due = state.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // Exactly one of this and `cancel` wins.
            if due
                .compare_exchange(PENDING, SENT, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                send();
            }
        });
        Timer {
            state,
            task: task.abort_handle(),
        }
    }

    /// Takes the message back: `true` if it had not been sent yet, and now never will be; `false`
    /// if it was sent already (it is in the stage's mailbox, or was handled) or the timer was
    /// cancelled before.
    pub fn cancel(&self) -> bool {
        let cancelled = self
            .state
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if cancelled {
            self.task.abort();
        }
        cancelled
    }

    /// Whether the message has been sent to the stage.
    pub fn is_sent(&self) -> bool {
        self.state.load(Ordering::Acquire) == SENT
    }
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Ordering::Acquire) {
            PENDING => "pending",
            SENT => "sent",
            _ => "cancelled",
        };
        f.debug_struct("Timer").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_timer_sends_once_unless_cancelled_before() {
        let sent = Arc::new(AtomicUsize::new(0));
        let count = |sent: &Arc<AtomicUsize>| {
            let sent = sent.clone();
            move || {
                sent.fetch_add(1, Ordering::SeqCst);
            }
        };
        let kept = Timer::start(Duration::from_millis(10), count(&sent));
        let taken_back = Timer::start(Duration::from_millis(10), count(&sent));
        assert!(taken_back.cancel());
        assert!(!taken_back.cancel(), "cancelled before");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sent.load(Ordering::SeqCst), 1);
        assert!(kept.is_sent() && !taken_back.is_sent());
        assert!(!kept.cancel(), "sent already");
        assert_eq!(format!("{kept:?}"), "Timer { state: \"sent\" }");
    }
}
