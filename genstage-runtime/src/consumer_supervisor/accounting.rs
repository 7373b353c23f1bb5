//! The demand and child accounting of a [`ConsumerSupervisor`](super::ConsumerSupervisor), as a
//! plain state machine: it is told of subscriptions, events, children starting and exiting, and the
//! time, and says what to ask, what to restart and when to give up. The tokio side (`stage.rs`)
//! spawns and aborts the tasks and sends the asks.
//!
//! # The rule (GenStage's `ConsumerSupervisor`, lib/consumer_supervisor.ex)
//! Per producer, `count` children started from its events are alive (running or restarting) and
//! `pending` of its children have ended since the last ask:
//! - subscribing asks `max_demand` (the pipeline's initial ask);
//! - each event received starts one child: `count += 1`;
//! - a child that ends for good (it succeeded, it failed and is `temporary`, or its restarts are
//!   exhausted) gives its slot back: `count -= 1`, `pending += 1`, and once `pending >= min_demand`
//!   the supervisor asks for `pending` more and sets `pending` to 0;
//! - a `transient` child that failed is restarted with the same event and keeps its slot: nothing
//!   is asked while it restarts (GenStage 1.3, issue 191).
//!
//! So `count + pending + demand the producer still owes = max_demand` at all times: at most
//! `max_demand` children of one producer are alive at once, and at least
//! `max_demand - min_demand + 1` slots are in use (children, or demand on its way) when
//! `min_demand > 0`: `min_demand` is how many slots may idle before the supervisor asks, not a
//! minimum of children (issue 190).
//! `min_demand` 0 and 1 both ask after every child that ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use super::counts::ChildCounts;
use crate::restart::Intensity;

/// A child's number in its supervisor, from 0.
pub(crate) type ChildId = u64;

/// Whether a failed child is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    /// Never: its event is lost.
    Temporary,
    /// Yes, with the same event, within the restart intensity.
    Transient,
}

/// How a child's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChildExit {
    /// It returned `Ok`: its event is handled.
    Succeeded,
    /// It returned `Err` or panicked, with this message.
    Failed(String),
}

/// What the supervisor does after a child exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterExit<K> {
    /// Nothing more, or ask this producer for this many events.
    Done(Option<(K, usize)>),
    /// Start the child again with its event (it keeps its slot and its id).
    Restart(ChildId),
    /// The restart intensity is exceeded: the supervisor fails. The child is given up (its event
    /// lost), and so is every other child when the supervisor stops.
    GiveUp {
        /// The failure that was one restart too many.
        last_failure: String,
    },
}

/// One producer's slots.
#[derive(Debug, Clone, Copy)]
struct Slots {
    /// Children started from its events, alive.
    count: usize,
    /// Children that ended since the last ask.
    pending: usize,
    min_demand: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildState {
    Running,
    /// Failed, and waiting to be started again.
    Restarting,
}

#[derive(Debug)]
struct ChildEntry<K> {
    /// The subscription its event came on, for the report's edges.
    from: Option<K>,
    /// The producer whose slot it holds; `None` once that producer's subscription has ended.
    producer: Option<K>,
    state: ChildState,
}

/// A supervisor's children and the demand of each of its producers; `K` names a producer (its
/// subscription).
#[derive(Debug)]
pub(crate) struct Supervision<K> {
    producers: HashMap<K, Slots>,
    /// Every child alive: running, or restarting.
    children: HashMap<ChildId, ChildEntry<K>>,
    next_id: ChildId,
    restart: Restart,
    intensity: Intensity,
    handled: u64,
    /// Children given up: failed and not restarted (their events are lost).
    failed: u64,
    /// The same, by the subscription their events came on.
    failed_from: HashMap<Option<K>, u64>,
    restarts: u64,
}

impl<K: Copy + Eq + Hash> Supervision<K> {
    pub(crate) fn new(restart: Restart, intensity: Intensity) -> Self {
        Supervision {
            producers: HashMap::new(),
            children: HashMap::new(),
            next_id: 0,
            restart,
            intensity,
            handled: 0,
            failed: 0,
            failed_from: HashMap::new(),
            restarts: 0,
        }
    }

    pub(crate) fn restart(&self) -> Restart {
        self.restart
    }

    pub(crate) fn set_restart(&mut self, restart: Restart) {
        self.restart = restart;
    }

    pub(crate) fn intensity(&self) -> &Intensity {
        &self.intensity
    }

    pub(crate) fn set_intensity(&mut self, intensity: Intensity) {
        self.intensity = intensity;
    }

    /// A producer subscribed, and was asked for `max_demand` events (all its slots).
    pub(crate) fn subscribed(&mut self, producer: K, min_demand: usize) {
        self.producers.insert(
            producer,
            Slots {
                count: 0,
                pending: 0,
                min_demand,
            },
        );
    }

    /// A producer's subscription ended: its children run on, and their ends ask nothing.
    pub(crate) fn cancelled(&mut self, producer: K) {
        self.producers.remove(&producer);
        for child in self.children.values_mut() {
            if child.producer == Some(producer) {
                child.producer = None;
            }
        }
    }

    /// An event arrived from `producer` (`None`: from no producer it knows): the child to start
    /// for it.
    pub(crate) fn start(&mut self, producer: Option<K>) -> ChildId {
        let id = self.next_id;
        self.next_id += 1;
        let from = producer;
        let producer = producer.filter(|p| self.producers.contains_key(p));
        if let Some(slots) = producer.and_then(|p| self.producers.get_mut(&p)) {
            slots.count += 1;
        }
        self.children.insert(
            id,
            ChildEntry {
                from,
                producer,
                state: ChildState::Running,
            },
        );
        id
    }

    /// A restarting child runs again.
    pub(crate) fn running(&mut self, id: ChildId) {
        if let Some(child) = self.children.get_mut(&id) {
            child.state = ChildState::Running;
        }
    }

    /// Child `id` exited at `now`.
    pub(crate) fn exited(&mut self, id: ChildId, exit: ChildExit, now: Instant) -> AfterExit<K> {
        let Some(child) = self.children.get_mut(&id) else {
            return AfterExit::Done(None);
        };
        match exit {
            ChildExit::Succeeded => {
                self.handled += 1;
                AfterExit::Done(self.end(id))
            }
            ChildExit::Failed(_) if self.restart == Restart::Temporary => {
                self.count_failed(id);
                AfterExit::Done(self.end(id))
            }
            ChildExit::Failed(failure) => {
                if self.intensity.allow(now) {
                    child.state = ChildState::Restarting;
                    self.restarts += 1;
                    AfterExit::Restart(id)
                } else {
                    self.count_failed(id);
                    self.end(id);
                    AfterExit::GiveUp {
                        last_failure: failure,
                    }
                }
            }
        }
    }

    /// Gives child `id` up as failed, without a restart: the ask its slot earns, if any.
    pub(crate) fn give_up(&mut self, id: ChildId) -> Option<(K, usize)> {
        if !self.children.contains_key(&id) {
            return None;
        }
        self.count_failed(id);
        self.end(id)
    }

    /// Counts child `id` (alive) as failed for good.
    fn count_failed(&mut self, id: ChildId) {
        let from = self.children.get(&id).and_then(|child| child.from);
        self.failed += 1;
        *self.failed_from.entry(from).or_default() += 1;
    }

    /// Removes child `id` for good; the ask its slot earns, if any.
    fn end(&mut self, id: ChildId) -> Option<(K, usize)> {
        let producer = self.children.remove(&id)?.producer?;
        let slots = self.producers.get_mut(&producer)?;
        slots.count = slots.count.saturating_sub(1);
        slots.pending += 1;
        if slots.pending >= slots.min_demand {
            let ask = std::mem::take(&mut slots.pending);
            Some((producer, ask))
        } else {
            None
        }
    }

    /// Gives up every child still alive (the supervisor stops without waiting for them): how many
    /// there were, by the subscription their events came on.
    pub(crate) fn abandon(&mut self) -> HashMap<Option<K>, u64> {
        let mut left = HashMap::new();
        for (_, child) in self.children.drain() {
            *left.entry(child.from).or_default() += 1;
        }
        left
    }

    /// Takes the counts of children given up after a failure since the last call, by the
    /// subscription their events came on.
    pub(crate) fn take_failed_from(&mut self) -> HashMap<Option<K>, u64> {
        std::mem::take(&mut self.failed_from)
    }

    /// No child is alive.
    pub(crate) fn is_idle(&self) -> bool {
        self.children.is_empty()
    }

    /// Children given up after a failure.
    #[cfg(test)]
    fn failed(&self) -> u64 {
        self.failed
    }

    pub(crate) fn counts(&self) -> ChildCounts {
        let restarting = self
            .children
            .values()
            .filter(|child| child.state == ChildState::Restarting)
            .count();
        ChildCounts {
            active: self.children.len() - restarting,
            restarting,
            handled: self.handled,
            failed: self.failed,
            restarts: self.restarts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn supervision(restart: Restart) -> Supervision<u8> {
        Supervision::new(restart, Intensity::new(3, Duration::from_secs(5)))
    }

    fn start(sup: &mut Supervision<u8>, producer: u8, n: usize) -> Vec<ChildId> {
        (0..n).map(|_| sup.start(Some(producer))).collect()
    }

    #[test]
    fn a_high_min_demand_asks_once_min_demand_children_have_ended() {
        // Scenario 188: max 3, min 2.
        let now = Instant::now();
        let mut sup = supervision(Restart::Temporary);
        sup.subscribed(1, 2);
        let ids = start(&mut sup, 1, 3);
        assert_eq!(sup.counts().active, 3);
        assert_eq!(
            sup.exited(ids[0], ChildExit::Succeeded, now),
            AfterExit::Done(None)
        );
        assert_eq!(
            sup.exited(ids[1], ChildExit::Succeeded, now),
            AfterExit::Done(Some((1, 2)))
        );
        assert_eq!(
            sup.exited(ids[2], ChildExit::Succeeded, now),
            AfterExit::Done(None)
        );
    }

    #[test]
    fn min_demand_zero_asks_after_every_child() {
        let now = Instant::now();
        let mut sup = supervision(Restart::Temporary);
        sup.subscribed(1, 0);
        let ids = start(&mut sup, 1, 2);
        for id in ids {
            assert_eq!(
                sup.exited(id, ChildExit::Succeeded, now),
                AfterExit::Done(Some((1, 1)))
            );
        }
    }

    #[test]
    fn a_failed_temporary_child_gives_its_slot_back_and_is_counted_failed() {
        let now = Instant::now();
        let mut sup = supervision(Restart::Temporary);
        sup.subscribed(1, 0);
        let [id] = start(&mut sup, 1, 1)[..] else {
            unreachable!()
        };
        assert_eq!(
            sup.exited(id, ChildExit::Failed("boom".into()), now),
            AfterExit::Done(Some((1, 1)))
        );
        let counts = sup.counts();
        assert_eq!((counts.active, counts.failed, counts.handled), (0, 1, 0));
        assert!(sup.is_idle());
    }

    #[test]
    fn a_restarting_transient_child_keeps_its_slot() {
        // Scenario 186: max 1 / min 0, transient.
        let now = Instant::now();
        let mut sup = supervision(Restart::Transient);
        sup.subscribed(1, 0);
        let [id] = start(&mut sup, 1, 1)[..] else {
            unreachable!()
        };
        assert_eq!(
            sup.exited(id, ChildExit::Failed("boom".into()), now),
            AfterExit::Restart(id)
        );
        let counts = sup.counts();
        assert_eq!(
            (counts.active, counts.restarting, counts.restarts),
            (0, 1, 1)
        );
        sup.running(id);
        assert_eq!((sup.counts().active, sup.counts().restarting), (1, 0));
        // Only its success frees the slot.
        assert_eq!(
            sup.exited(id, ChildExit::Succeeded, now),
            AfterExit::Done(Some((1, 1)))
        );
        assert_eq!(sup.counts().handled, 1);
    }

    #[test]
    fn exceeding_the_restart_intensity_gives_up() {
        let now = Instant::now();
        let mut sup = supervision(Restart::Transient);
        sup.set_intensity(Intensity::new(1, Duration::from_secs(5)));
        sup.subscribed(1, 1);
        let [id] = start(&mut sup, 1, 1)[..] else {
            unreachable!()
        };
        assert_eq!(
            sup.exited(id, ChildExit::Failed("first".into()), now),
            AfterExit::Restart(id)
        );
        assert_eq!(
            sup.exited(id, ChildExit::Failed("second".into()), now),
            AfterExit::GiveUp {
                last_failure: "second".into()
            }
        );
        assert_eq!(sup.failed(), 1);
        assert_eq!(sup.take_failed_from(), HashMap::from([(Some(1), 1)]));
        assert!(sup.is_idle());
    }

    #[test]
    fn children_outlive_their_producers_subscription_and_ask_nothing() {
        // Scenario 187.
        let now = Instant::now();
        let mut sup = supervision(Restart::Temporary);
        sup.subscribed(1, 0);
        let ids = start(&mut sup, 1, 2);
        sup.cancelled(1);
        assert_eq!(sup.counts().active, 2);
        for id in ids {
            assert_eq!(
                sup.exited(id, ChildExit::Succeeded, now),
                AfterExit::Done(None)
            );
        }
        assert_eq!(sup.counts().handled, 2);
    }

    #[test]
    fn each_producer_has_its_own_slots() {
        let now = Instant::now();
        let mut sup = supervision(Restart::Temporary);
        sup.subscribed(1, 1);
        sup.subscribed(2, 2);
        let a = start(&mut sup, 1, 2);
        let b = start(&mut sup, 2, 4);
        assert_eq!(sup.counts().active, 6);
        assert_eq!(
            sup.exited(b[0], ChildExit::Succeeded, now),
            AfterExit::Done(None)
        );
        assert_eq!(
            sup.exited(a[0], ChildExit::Succeeded, now),
            AfterExit::Done(Some((1, 1)))
        );
        assert_eq!(
            sup.exited(b[1], ChildExit::Succeeded, now),
            AfterExit::Done(Some((2, 2)))
        );
    }

    #[test]
    fn abandoning_counts_the_children_alive() {
        let now = Instant::now();
        let mut sup = supervision(Restart::Transient);
        sup.subscribed(1, 2);
        let ids = start(&mut sup, 1, 3);
        assert_eq!(
            sup.exited(ids[0], ChildExit::Failed("x".into()), now),
            AfterExit::Restart(ids[0])
        );
        assert_eq!(sup.abandon(), HashMap::from([(Some(1), 3)]));
        assert!(sup.is_idle());
    }

    proptest::proptest! {
        /// For any limits and any order of deliveries and child ends, with a producer that sends
        /// at most what it was asked: children alive + slots pending + demand owed = `max_demand`,
        /// so never more than `max_demand` children, and `pending` stays below `min_demand` (or 1).
        #[test]
        fn slots_are_conserved(
            max in 1usize..12,
            min_fraction in 0usize..100,
            transient in proptest::bool::ANY,
            steps in proptest::collection::vec((0u8..4, 0usize..64), 1..200),
        ) {
            let min = (max * min_fraction / 100).min(max - 1);
            let restart = if transient { Restart::Transient } else { Restart::Temporary };
            let mut sup = Supervision::new(restart, Intensity::new(u32::MAX, Duration::from_secs(5)));
            let now = Instant::now();
            sup.subscribed(7u8, min);
            let mut owed = max;
            let mut alive: Vec<ChildId> = Vec::new();
            for (op, n) in steps {
                match op {
                    // The producer sends some of what it owes.
                    0 => {
                        let k = n % (owed + 1);
                        owed -= k;
                        alive.extend((0..k).map(|_| sup.start(Some(7))));
                    }
                    // A child ends: succeeds, fails, or (transient) fails and restarts.
                    _ if !alive.is_empty() => {
                        let id = alive[n % alive.len()];
                        let exit = if op == 1 { ChildExit::Succeeded } else { ChildExit::Failed("x".into()) };
                        match sup.exited(id, exit, now) {
                            AfterExit::Done(ask) => {
                                alive.retain(|&a| a != id);
                                if let Some((7, ask)) = ask {
                                    owed += ask;
                                }
                            }
                            AfterExit::Restart(restarted) => {
                                proptest::prop_assert_eq!(restarted, id);
                                sup.running(id);
                            }
                            AfterExit::GiveUp { .. } => proptest::prop_assert!(false, "no limit"),
                        }
                    }
                    _ => {}
                }
                let pending = sup.producers[&7].pending;
                proptest::prop_assert_eq!(alive.len() + pending + owed, max);
                proptest::prop_assert_eq!(sup.counts().children(), alive.len());
                proptest::prop_assert!(pending < min.max(1));
            }
        }
    }
}
