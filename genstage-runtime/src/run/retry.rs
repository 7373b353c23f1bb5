//! When a producer that returned an empty batch is asked again.

use std::time::Duration;

use tokio::time::Instant;

/// The first wait after an empty batch; each empty batch in a row doubles it, up to [`LONGEST`].
const FIRST: Duration = Duration::from_millis(1);
/// The longest wait: a polling producer notices new work at most this late.
const LONGEST: Duration = Duration::from_millis(100);

/// A producer's back-off after empty batches. An empty batch is not an end (that is `Emit::last`):
/// the demand it left unmet is asked for again after a wait that grows while the batches stay empty,
/// so a producer that polls a source works, and one that meant "done" is visible in the logs instead
/// of a silent stall.
#[derive(Debug, Default)]
pub(super) struct Retry {
    /// When `handle_demand` may be called again; `None` when it may be called now.
    at: Option<Instant>,
    /// The last wait; zero after a non-empty batch.
    wait: Duration,
    /// Whether an empty batch was logged at info level already: only the first of a stage's life
    /// is, so that a producer polling a sporadic source does not flood the log.
    logged: bool,
}

impl Retry {
    /// Whether `handle_demand` may be called now.
    pub(super) fn due(&self) -> bool {
        self.waiting_until().is_none()
    }

    /// When `handle_demand` may be called again, while it must wait.
    pub(super) fn waiting_until(&self) -> Option<Instant> {
        self.at.filter(|&at| Instant::now() < at)
    }

    /// A call returned events, or the stage was asked for more: call again when there is demand.
    pub(super) fn reset(&mut self) {
        self.at = None;
    }

    /// A call emitted events: the next empty batch starts the back-off anew.
    pub(super) fn emitted(&mut self) {
        self.at = None;
        self.wait = Duration::ZERO;
    }

    /// A call for `demand` emitted nothing: wait before the next.
    pub(super) fn empty(&mut self, stage: &str, demand: usize) {
        self.wait = if self.wait.is_zero() {
            FIRST
        } else {
            (self.wait * 2).min(LONGEST)
        };
        self.at = Some(Instant::now() + self.wait);
        if !self.logged {
            self.logged = true;
            tracing::info!(
                stage,
                demand,
                "producer {stage} emitted no events for a demand of {demand}; it is asked again \
                 after a back-off of up to {LONGEST:?}. To end a producer, return `Emit::last`."
            );
        } else {
            tracing::debug!(stage, demand, wait = ?self.wait, "producer {stage} emitted no events again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest_and_reset_on_events() {
        let mut retry = Retry::default();
        assert!(retry.due());
        let mut waits = Vec::new();
        for _ in 0..10 {
            retry.empty("p", 5);
            waits.push(retry.wait.as_millis());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
        assert!(!retry.due());
        retry.reset();
        assert!(retry.due());
        retry.empty("p", 5);
        assert_eq!(
            retry.wait.as_millis(),
            100,
            "an ask keeps the wait it had reached"
        );
        retry.emitted();
        retry.empty("p", 5);
        assert_eq!(retry.wait.as_millis(), 1);
    }
}
