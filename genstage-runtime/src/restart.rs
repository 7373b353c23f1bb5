//! Restart policies: what happens to a stage when its callback fails (OTP's child restart
//! values), how often it may happen, and what becomes of the batch it failed on.
//!
//! A restarted stage is rebuilt, not repaired: the failed value's `terminate` runs (unless it
//! panicked, as for any stage), its value is made again by its constructor (the builder's
//! `add_*_with` closure, or `pipeline!` evaluating its expression again), and the runtime keeps
//! everything around it. Its subscriptions stay (the new value's
//! `handle_subscribe` and `handle_consumer_subscribe` are called for each, as for a new
//! subscription), its producers keep their buffers and the demand it had asked for, its
//! consumers keep theirs and see no cancellation, and what waits in its mailbox goes to the new
//! value, but for what the failed values sent themselves (a timer's info, from `info_after`),
//! which dies with them, as a GenStage process's does.
//!
//! Here: the policy ([`Restart`], [`RestartPolicy`]) and the restart intensity window
//! ([`Intensity`], plain data).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::time::{Duration, Instant};

/// When a stage is restarted: OTP's `:restart` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Restart {
    /// Always restarted: after a failure, and also when it ends on its own (a producer that
    /// emitted its last events starts again from a new value). A stage is never restarted when the
    /// pipeline ends it: a shutdown, an abort, its input ending, its consumers leaving.
    Permanent,
    /// Restarted only after a failure: its callback returned an error or panicked.
    Transient,
    /// Never restarted: a failure stops it, and the pipeline reports it. The default.
    #[default]
    Temporary,
}

impl Restart {
    /// Its name, as `#[stage(restart = …)]` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The input type of a producer's restart policy: a producer receives no events, so it has
/// none to redeliver.
pub type NoInput = Infallible;

/// How a stage whose events are `T` is restarted: when ([`Restart`]), at most how often (OTP's
/// `max_restarts` in `max_seconds`, by default 3 in 5 seconds), and whether the batch it failed on
/// is handed again to the new value ([`redeliver`](Self::redeliver)).
///
/// A stage's type declares its policy (`#[stage(consumer, restart = transient)]`, or the role
/// trait's `restart_policy`), and the builder may set another one for one stage
/// ([`Pipeline::set_restart`](crate::Pipeline::set_restart)).
///
/// One restart more than the limit within the window stops the stage for good: the pipeline fails
/// with [`PipelineError::RestartLimit`](crate::PipelineError::RestartLimit), which names the
/// stage and its last failures.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use genstage::{Restart, RestartPolicy};
///
/// let policy = RestartPolicy::<u64>::new(Restart::Transient)
///     .max_restarts(10, Duration::from_secs(60))
///     .redeliver();
/// assert_eq!(policy.restart(), Restart::Transient);
/// assert_eq!(policy.limit(), (10, Duration::from_secs(60)));
/// assert!(policy.redelivers());
/// ```
pub struct RestartPolicy<T> {
    restart: Restart,
    max_restarts: u32,
    within: Duration,
    redeliver: Option<CopyBatch<T>>,
}

/// Copies a batch for redelivery.
pub(crate) type CopyBatch<T> = fn(&[T]) -> Vec<T>;

/// OTP's `max_restarts` default.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// OTP's `max_seconds` default.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(5);

impl<T> RestartPolicy<T> {
    /// `restart`, at most 3 restarts in 5 seconds, without redelivery.
    pub const fn new(restart: Restart) -> Self {
        RestartPolicy {
            restart,
            max_restarts: DEFAULT_MAX_RESTARTS,
            within: DEFAULT_RESTART_WINDOW,
            redeliver: None,
        }
    }

    /// Never restarted: the default.
    pub const fn temporary() -> Self {
        Self::new(Restart::Temporary)
    }

    /// Restarted after a failure.
    pub const fn transient() -> Self {
        Self::new(Restart::Transient)
    }

    /// Always restarted.
    pub const fn permanent() -> Self {
        Self::new(Restart::Permanent)
    }

    /// At most `max` restarts within any `within` (OTP's `max_restarts` and `max_seconds`); one
    /// more stops the stage for good. `max = 0` stops it at its first failure.
    ///
    /// A `within` of zero counts the restarts less than a second old, as GenStage's
    /// `ConsumerSupervisor` does with `max_seconds: 0` (OTP counts time in whole seconds, so its
    /// window of 0 holds the restarts of the same second): a stage that fails at once each time it
    /// is restarted is stopped after `max` restarts, not restarted for ever. (`#[stage]` refuses
    /// `max_seconds = 0`, as OTP's supervisors refuse a period of 0.)
    pub const fn max_restarts(mut self, max: u32, within: Duration) -> Self {
        self.max_restarts = max;
        self.within = within;
        self
    }

    /// When it is restarted.
    pub fn restart(&self) -> Restart {
        self.restart
    }

    /// At most how many restarts, within how long.
    pub fn limit(&self) -> (u32, Duration) {
        (self.max_restarts, self.within)
    }

    /// Whether the batch it failed on is handed again to the restarted stage.
    pub fn redelivers(&self) -> bool {
        self.redeliver.is_some()
    }

    /// The copy of a batch to keep for redelivery, when it redelivers.
    pub(crate) fn redelivery(&self) -> Option<CopyBatch<T>> {
        self.redeliver
    }
}

impl<T: Clone> RestartPolicy<T> {
    /// Hands the batch a failed callback held to the restarted stage (at least once delivery),
    /// instead of counting it as lost. The runtime keeps a copy of each batch while the callback
    /// runs, so the events must be `Clone`.
    ///
    /// The batch is handed again one event at a time, so that an event that fails the stage again
    /// is known: once the restart limit is reached on it, it is reported as the poison event (its
    /// index in the batch, [`PipelineError::RestartLimit`](crate::PipelineError::RestartLimit)).
    /// The events of the batch before it are handled (some perhaps twice: the failed callback may
    /// have handled them), the ones after it are lost with it.
    pub fn redeliver(mut self) -> Self {
        self.redeliver = Some(<[T]>::to_vec);
        self
    }
}

impl<T> Default for RestartPolicy<T> {
    fn default() -> Self {
        Self::temporary()
    }
}

impl<T> Clone for RestartPolicy<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for RestartPolicy<T> {}

impl<T> PartialEq for RestartPolicy<T> {
    fn eq(&self, other: &Self) -> bool {
        self.restart == other.restart
            && self.max_restarts == other.max_restarts
            && self.within == other.within
            && self.redeliver.is_some() == other.redeliver.is_some()
    }
}

impl<T> fmt::Debug for RestartPolicy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestartPolicy")
            .field("restart", &self.restart)
            .field("max_restarts", &self.max_restarts)
            .field("within", &self.within)
            .field("redeliver", &self.redelivers())
            .finish()
    }
}

/// OTP's unit of time for restart windows: a window of 0 holds the restarts of less than this.
const ONE_SECOND: Duration = Duration::from_secs(1);

/// The restarts of one stage (or of a ConsumerSupervisor's children) within the sliding window of
/// its policy: OTP's restart intensity.
///
/// Plain data: the caller says when each restart is wanted.
#[derive(Debug, Clone)]
pub(crate) struct Intensity {
    max_restarts: u32,
    within: Duration,
    /// When the restarts still in the window happened, oldest first.
    recent: VecDeque<Instant>,
}

impl Intensity {
    /// No restart yet, with at most `max_restarts` within `within`.
    pub(crate) fn new(max_restarts: u32, within: Duration) -> Self {
        Intensity {
            max_restarts,
            within,
            recent: VecDeque::new(),
        }
    }

    /// At most how many restarts.
    pub(crate) fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// Within how long.
    pub(crate) fn within(&self) -> Duration {
        self.within
    }

    /// Whether a restart `age` old has left the window: OTP's rule, the restarts made at
    /// `now - within` or later count. A window of zero counts those less than a second old: OTP's
    /// clock has whole seconds, and there a window of 0 holds the restarts of the same second (a
    /// window of no time at all would hold no earlier restart, and a child or stage that fails at
    /// once would be restarted for ever).
    fn expired(&self, age: Duration) -> bool {
        if self.within.is_zero() {
            age >= ONE_SECOND
        } else {
            age > self.within
        }
    }

    /// Records a restart wanted at `now`; says whether it is allowed: false when it would be one
    /// more than `max_restarts` within the window ending at `now` (see [`expired`](Self::expired)).
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        while let Some(&oldest) = self.recent.front() {
            if self.expired(now.saturating_duration_since(oldest)) {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.max_restarts as usize {
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// Whether a restart wanted at `now` would be allowed, recording nothing. One allowed at `now`
    /// is allowed at any later time too: restarts only ever leave the window.
    pub(crate) fn would_allow(&self, now: Instant) -> bool {
        let in_window = self
            .recent
            .iter()
            .filter(|&&at| !self.expired(now.saturating_duration_since(at)))
            .count();
        in_window < self.max_restarts as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otp_defaults_three_restarts_in_five_seconds() {
        let policy = RestartPolicy::<u64>::transient();
        assert_eq!(policy.limit(), (3, Duration::from_secs(5)));
        assert!(!policy.redelivers());
        assert_eq!(
            RestartPolicy::<u64>::default().restart(),
            Restart::Temporary
        );
    }

    #[test]
    fn the_fourth_restart_within_the_window_is_refused() {
        let start = Instant::now();
        let mut intensity = Intensity::new(3, Duration::from_secs(5));
        let at = |ms| start + Duration::from_millis(ms);
        assert!(intensity.allow(at(0)));
        assert!(intensity.allow(at(1000)));
        assert!(intensity.allow(at(4000)));
        assert!(!intensity.allow(at(4999)));
    }

    #[test]
    fn would_allow_says_what_allow_would_and_records_nothing() {
        let start = Instant::now();
        let mut intensity = Intensity::new(2, Duration::from_secs(5));
        let at = |ms| start + Duration::from_millis(ms);
        assert!(intensity.would_allow(at(0)));
        assert!(intensity.allow(at(0)));
        assert!(intensity.allow(at(1000)));
        assert!(!intensity.would_allow(at(5000)));
        // The first restart leaves the window: allowed from then on, as `allow` says.
        assert!(intensity.would_allow(at(5001)));
        assert!(intensity.would_allow(at(9000)));
        assert!(intensity.allow(at(5001)));
        assert!(!intensity.would_allow(at(5001)));
    }

    #[test]
    fn restarts_leave_the_window_after_it_passes() {
        let start = Instant::now();
        let mut intensity = Intensity::new(3, Duration::from_secs(5));
        let at = |ms| start + Duration::from_millis(ms);
        for ms in [0, 1000, 2000] {
            assert!(intensity.allow(at(ms)));
        }
        // The restart at 0 is still in the window at 5000 (OTP counts a restart `within` old),
        // and leaves it after; the one at 1000 is still in it at 6000.
        assert!(!intensity.allow(at(5000)));
        assert!(intensity.allow(at(5001)));
        assert!(!intensity.allow(at(6000)));
        assert!(intensity.allow(at(6001)));
    }

    /// GenStage's scenario 177 (`max_seconds: 0`): the restarts less than a second old count, so
    /// restarts in quick succession reach the limit; a restart a second old or more has left.
    #[test]
    fn a_zero_window_counts_the_restarts_of_the_last_second() {
        let start = Instant::now();
        let mut intensity = Intensity::new(3, Duration::ZERO);
        let at = |ms| start + Duration::from_millis(ms);
        for ms in [0, 1, 2] {
            assert!(intensity.allow(at(ms)));
        }
        assert!(!intensity.allow(at(3)));
        assert!(!intensity.allow(at(999)));
        // The restart at 0 leaves at 1000, the one at 1 at 1001.
        assert!(intensity.allow(at(1000)));
        assert!(!intensity.allow(at(1000)));
        assert!(intensity.allow(at(1001)));
    }

    #[test]
    fn zero_restarts_refuses_the_first() {
        let mut intensity = Intensity::new(0, Duration::from_secs(5));
        assert!(!intensity.allow(Instant::now()));
    }
}
