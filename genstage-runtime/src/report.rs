//! What a finished pipeline reports.

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StageStatus {
    /// Its input ended and it handled and delivered every event.
    Finished,
    /// It stopped early: `cause` names the stage whose failure stopped it, or is `None` when every
    /// consumer it had went away.
    Cancelled {
        /// The stage that failed first.
        cause: Option<String>,
    },
    /// Its callback returned this error.
    Failed(String),
    /// Its callback panicked with this message.
    Panicked(String),
}

/// Counts for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    /// The stage's name (`Printer[1]` for the second of several stages with one name).
    pub name: String,
    /// Events handed to its `handle_events`.
    pub events_in: u64,
    /// Events it delivered to its consumers.
    pub events_out: u64,
    /// Events it dropped: buffer overflow, or buffered when it stopped early.
    pub discarded: u64,
    /// Events it received beyond what it had asked for (a producer breaking the protocol); always 0
    /// for the stages of this crate.
    pub excess: u64,
    /// How it ended.
    pub status: StageStatus,
}

/// What [`Pipeline::run`](crate::Pipeline::run) returns: one entry per stage, in the order added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every stage's counts.
    pub stages: Vec<StageReport>,
}

impl Report {
    /// The stage with this name.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Stages whose name is `name` or `name[i]`, in order.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a StageReport> + 'a {
        self.stages.iter().filter(move |s| {
            s.name == name
                || s.name
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']'))
        })
    }
}
