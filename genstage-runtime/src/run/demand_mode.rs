//! A producer's demand mode (GenStage's `:demand`, genstage-semantics.md §1.7) as plain data: while
//! it accumulates, the asks of its consumers are recorded, in order; once it forwards again, they are
//! handed back one at a time for the producer's loop to replay. Tested without tokio.

use std::collections::VecDeque;

use crate::dispatcher::SubscriptionId;
use crate::options::DemandMode;

/// The mode, and the asks recorded while accumulating that are not replayed yet.
#[derive(Debug)]
pub(super) struct DemandModes {
    mode: DemandMode,
    /// `(subscription, demand)`, oldest first.
    recorded: VecDeque<(SubscriptionId, usize)>,
    /// Forwarding with nothing left to replay: demand goes straight to the dispatcher (the only
    /// case on a producer's hot path, read as one flag).
    forwarding: bool,
}

/// What [`DemandModes::set`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Switch {
    /// Nothing: the mode was already this one.
    None,
    /// Forward to accumulate: from now on nothing is dispatched.
    Hold,
    /// Accumulate to forward: what was held may go out, and the recorded asks are replayed.
    Release,
}

impl Default for DemandModes {
    /// Forwarding, GenStage's default.
    fn default() -> Self {
        DemandModes {
            mode: DemandMode::Forward,
            recorded: VecDeque::new(),
            forwarding: true,
        }
    }
}

impl DemandModes {
    /// Whether demand goes straight to the dispatcher: forwarding, and no recorded ask is left to
    /// replay.
    #[inline]
    pub(super) fn forwarding(&self) -> bool {
        self.forwarding
    }

    /// Whether the producer accumulates: it neither dispatches nor calls `handle_demand`.
    #[inline]
    pub(super) fn accumulating(&self) -> bool {
        self.mode == DemandMode::Accumulate
    }

    pub(super) fn mode(&self) -> DemandMode {
        self.mode
    }

    /// Sets the mode. Setting `Accumulate` while accumulating keeps what was recorded (GenStage's
    /// scenario 22); setting `Forward` while replaying changes nothing.
    pub(super) fn set(&mut self, mode: DemandMode) -> Switch {
        let switch = match (self.mode, mode) {
            (DemandMode::Forward, DemandMode::Accumulate) => Switch::Hold,
            (DemandMode::Accumulate, DemandMode::Forward) => Switch::Release,
            _ => Switch::None,
        };
        self.mode = mode;
        self.update();
        switch
    }

    /// An ask of the consumer of `sub`: recorded while accumulating (true); otherwise (false) it goes
    /// to the dispatcher now, also while recorded asks are being replayed.
    pub(super) fn record(&mut self, sub: SubscriptionId, demand: usize) -> bool {
        if !self.accumulating() {
            return false;
        }
        self.recorded.push_back((sub, demand));
        self.forwarding = false;
        true
    }

    /// The consumer of `sub` left: its recorded asks are dropped.
    pub(super) fn cancel(&mut self, sub: SubscriptionId) {
        self.recorded.retain(|&(of, _)| of != sub);
        self.update();
    }

    /// The next recorded ask to replay, oldest first; none while accumulating.
    pub(super) fn next_replay(&mut self) -> Option<(SubscriptionId, usize)> {
        if self.accumulating() {
            return None;
        }
        let next = self.recorded.pop_front();
        self.update();
        next
    }

    /// Whether recorded asks wait to be replayed now (the producer forwards again).
    #[cfg(test)]
    fn replaying(&self) -> bool {
        !self.accumulating() && !self.recorded.is_empty()
    }

    fn update(&mut self) {
        self.forwarding = !self.accumulating() && self.recorded.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accumulating() -> DemandModes {
        let mut modes = DemandModes::default();
        assert_eq!(modes.set(DemandMode::Accumulate), Switch::Hold);
        modes
    }

    fn replay_all(modes: &mut DemandModes) -> Vec<(SubscriptionId, usize)> {
        std::iter::from_fn(|| modes.next_replay()).collect()
    }

    #[test]
    fn forward_passes_asks_through() {
        let mut modes = DemandModes::default();
        assert!(modes.forwarding());
        assert_eq!(modes.mode(), DemandMode::Forward);
        assert!(!modes.record(1, 10));
        assert_eq!(modes.next_replay(), None);
        // Forward before anything was recorded (scenario 21) changes nothing.
        assert_eq!(modes.set(DemandMode::Forward), Switch::None);
        assert!(modes.forwarding());
    }

    #[test]
    fn accumulated_asks_are_replayed_in_order_one_by_one_not_combined() {
        let mut modes = accumulating();
        assert!(!modes.forwarding());
        assert!(modes.record(1, 2));
        assert!(modes.record(2, 2));
        assert!(modes.record(1, 3));
        assert_eq!(
            modes.next_replay(),
            None,
            "nothing is replayed while accumulating"
        );
        assert_eq!(modes.set(DemandMode::Forward), Switch::Release);
        assert!(modes.replaying());
        assert!(!modes.forwarding());
        assert_eq!(replay_all(&mut modes), [(1, 2), (2, 2), (1, 3)]);
        assert!(modes.forwarding());
        assert!(!modes.replaying());
    }

    #[test]
    fn accumulate_while_accumulating_keeps_what_was_recorded() {
        // Scenario 22.
        let mut modes = accumulating();
        modes.record(1, 4);
        assert_eq!(modes.set(DemandMode::Accumulate), Switch::None);
        modes.record(1, 1);
        modes.set(DemandMode::Forward);
        assert_eq!(replay_all(&mut modes), [(1, 4), (1, 1)]);
    }

    #[test]
    fn a_cancelled_subscriptions_asks_are_dropped() {
        let mut modes = accumulating();
        modes.record(1, 4);
        modes.record(2, 5);
        modes.record(1, 6);
        modes.cancel(1);
        modes.set(DemandMode::Forward);
        assert_eq!(replay_all(&mut modes), [(2, 5)]);
        // Cancelling the only subscription with recorded asks leaves nothing to replay.
        let mut modes = accumulating();
        modes.record(3, 1);
        modes.set(DemandMode::Forward);
        modes.cancel(3);
        assert!(modes.forwarding());
    }

    #[test]
    fn accumulating_again_during_a_replay_keeps_the_rest_ahead_of_new_asks() {
        let mut modes = accumulating();
        modes.record(1, 1);
        modes.record(1, 2);
        modes.set(DemandMode::Forward);
        assert_eq!(modes.next_replay(), Some((1, 1)));
        // While replaying, new asks go to the dispatcher.
        assert!(!modes.record(2, 7));
        assert_eq!(modes.set(DemandMode::Accumulate), Switch::Hold);
        assert!(!modes.replaying());
        assert!(modes.record(2, 8));
        modes.set(DemandMode::Forward);
        assert_eq!(replay_all(&mut modes), [(1, 2), (2, 8)]);
    }
}
