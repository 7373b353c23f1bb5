//! The restart intensity of a supervisor (OTP's `max_restarts` in `max_seconds`), as a plain value
//! that is told the time: tested without a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Remembers the restarts made in the last `period`; a restart that makes them more than
/// `max_restarts` is refused.
#[derive(Debug, Clone)]
pub(crate) struct Intensity {
    max_restarts: u32,
    period: Duration,
    /// When each restart still inside the window was made, oldest first; at most
    /// `max_restarts + 1` long (entries older than `period` are dropped on each restart).
    recent: VecDeque<Instant>,
}

impl Intensity {
    pub(crate) fn new(max_restarts: u32, period: Duration) -> Self {
        Intensity {
            max_restarts,
            period,
            recent: VecDeque::new(),
        }
    }

    pub(crate) fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    /// Records a restart at `now`. False when it is one too many: more than `max_restarts` restarts
    /// at most `period` apart from `now` (OTP's rule: the restarts at `now - period` or later
    /// count, and the limit is exceeded by the restart that makes them `max_restarts + 1`).
    pub(crate) fn restart(&mut self, now: Instant) -> bool {
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) > self.period {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        self.recent.len() <= self.max_restarts as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_beyond_max_restarts_within_the_period_is_refused() {
        let start = Instant::now();
        let mut intensity = Intensity::new(3, Duration::from_secs(5));
        for at in [0, 1, 2] {
            assert!(intensity.restart(start + Duration::from_secs(at)));
        }
        // A 4th within 5 s of the first: one too many.
        assert!(!intensity.restart(start + Duration::from_secs(5)));
    }

    #[test]
    fn restarts_older_than_the_period_no_longer_count() {
        let start = Instant::now();
        let mut intensity = Intensity::new(2, Duration::from_secs(5));
        assert!(intensity.restart(start));
        assert!(intensity.restart(start + Duration::from_secs(1)));
        // The first is more than 5 s old by now: two restarts in the window.
        assert!(intensity.restart(start + Duration::from_millis(5_001)));
        assert!(!intensity.restart(start + Duration::from_secs(6)));
    }

    #[test]
    fn max_restarts_zero_refuses_the_first_restart() {
        let mut intensity = Intensity::new(0, Duration::from_secs(5));
        assert!(!intensity.restart(Instant::now()));
    }
}
