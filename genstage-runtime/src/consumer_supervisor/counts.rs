//! What a [`ConsumerSupervisor`](super::ConsumerSupervisor) tells about its children (GenStage's
//! `count_children`).

/// A [`ConsumerSupervisor`](super::ConsumerSupervisor)'s children: GenStage's `count_children`,
/// with the outcomes so far.
///
/// Read through the stage's handle with [`CountChildren`] (between the stage's callbacks), or at
/// any time through [`ConsumerSupervisor::watch_counts`](super::ConsumerSupervisor::watch_counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildCounts {
    /// Children running now (GenStage's `active`).
    pub active: usize,
    /// `transient` children that failed and wait out the restart delay before they run again
    /// (GenStage's `:restarting` children). With no delay (the default) a child is restarted as soon
    /// as the supervisor learns of its failure, so this is 0 whenever the counts can be read.
    pub restarting: usize,
    /// Children that succeeded: their events are handled.
    pub handled: u64,
    /// Children that failed and were not restarted (`temporary`, or out of restarts): their events
    /// are lost.
    pub failed: u64,
    /// Restarts made, over all children.
    pub restarts: u64,
}

impl ChildCounts {
    /// Children alive, running or restarting (GenStage's `workers`): what counts against
    /// `max_demand`.
    pub fn children(&self) -> usize {
        self.active + self.restarting
    }
}

/// The request that makes a [`ConsumerSupervisor`](super::ConsumerSupervisor) answer its
/// [`ChildCounts`] (GenStage's `count_children/1`): `jobs.call(CountChildren).await`.
///
/// The stage answers between its callbacks, until it has ended: also once its input has ended,
/// while it waits for its last children. [`watch_counts`](super::ConsumerSupervisor::watch_counts)
/// follows the counts without a message, and keeps the last ones after the stage has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountChildren;
