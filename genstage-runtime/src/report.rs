//! What a pipeline reports when it ends, however it ends.
//!
//! Every event a stage emits is accounted for exactly once: handled by a consumer, discarded by a
//! buffer that overflowed, or lost with a reason ([`LossReason`]). [`Report::totals`] sums the counts
//! and [`Totals::balanced`] checks `emitted = handled + discarded + lost`.

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StageStatus {
    /// Its input ended and it handled and delivered every event.
    Finished,
    /// It stopped early: `cause` names the stage whose failure stopped it, or is `None` when every
    /// consumer it had went away (or, for a [`to_stream`](crate::to_stream) sink, when its stream
    /// was dropped).
    Cancelled {
        /// The stage that failed first.
        cause: Option<String>,
    },
    /// Its callback returned this error.
    Failed(String),
    /// Its callback panicked with this message.
    Panicked(String),
    /// A producer stopped by a graceful shutdown, once it had delivered every event it emitted
    /// ([`PipelineHandle::shutdown`](crate::PipelineHandle::shutdown)); or a producer or
    /// producer_consumer stopped by a graceful shutdown while it had no consumer to deliver to (it
    /// waits for consumers, [`WithoutConsumers::Wait`](crate::WithoutConsumers::Wait), or was
    /// added to the running pipeline and never subscribed to): what it held then is counted as
    /// lost.
    ShutDown,
    /// It was stopped where it stood: the pipeline was aborted, or a graceful shutdown ran out of
    /// time while this stage was busy. What it held is counted as lost.
    Aborted,
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageStatus::Finished => f.write_str("finished"),
            StageStatus::Cancelled { cause: Some(cause) } => {
                write!(f, "cancelled (`{cause}` failed)")
            }
            StageStatus::Cancelled { cause: None } => f.write_str("cancelled"),
            StageStatus::Failed(error) => write!(f, "failed: {error}"),
            StageStatus::Panicked(message) => write!(f, "panicked: {message}"),
            StageStatus::ShutDown => f.write_str("shut down"),
            StageStatus::Aborted => f.write_str("aborted"),
        }
    }
}

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// The batch the stage's callback failed or panicked on.
    FailedBatch,
    /// Received by the stage (in its mailbox or queued for its callback) but not handled when it
    /// stopped.
    Unhandled,
    /// Sent by the stage to a consumer that had already stopped.
    ConsumerGone,
    /// In the stage's buffer when it stopped early (its consumers had left, or it failed), or when
    /// a graceful shutdown stopped it while it waited for consumers and had none
    /// ([`WithoutConsumers::Wait`](crate::WithoutConsumers::Wait)); also what its dispatcher
    /// kept for no consumer when it stopped
    /// ([`Dispatcher::stranded`](crate::dispatcher::Dispatcher::stranded)).
    Buffered,
    /// Its [`ConsumerSupervisor`](crate::ConsumerSupervisor) child failed (returned `Err` or
    /// panicked) and was not restarted: `temporary`, or out of restarts.
    ChildFailed,
    /// Taken in by a producer but not emitted when it stopped: sent into a
    /// [`from_channel`](crate::from_channel) producer's channel, which a graceful shutdown delivers
    /// but an abort, a shutdown's timeout or its consumers leaving do not. Counted as emitted too,
    /// so that the report accounts for every event a sender handed over.
    NotEmitted,
    /// Taken by a [`Dispatcher`](crate::dispatcher::Dispatcher) of the user's that broke its
    /// contract ([`ContractBreach`](crate::dispatcher::ContractBreach)): the events of the call that
    /// broke it, those it sent to a subscription that does not exist, and those it held then. The
    /// stage fails with the breach.
    BrokenDispatcher,
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossReason::FailedBatch => "in the batch its callback failed on",
            LossReason::Unhandled => "received but not handled when it stopped",
            LossReason::ConsumerGone => "sent to a consumer that had stopped",
            LossReason::Buffered => "in its buffer when it stopped",
            LossReason::ChildFailed => "its child failed and was not restarted",
            LossReason::NotEmitted => "taken in but not emitted when it stopped",
            LossReason::BrokenDispatcher => "taken by its dispatcher, which broke its contract",
        })
    }
}

/// Why events were discarded: dropped by design, as the stage's options say, not lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiscardReason {
    /// Its buffer was full (`buffer_size`, and `buffer_keep` chose which to drop).
    BufferFull,
    /// Its dispatcher sent them to no consumer: partitioned to `None`, rejected by every selector
    /// of a broadcast, or beyond the backlog a partition without a consumer keeps.
    Unrouted,
}

impl std::fmt::Display for DiscardReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DiscardReason::BufferFull => "its buffer was full",
            DiscardReason::Unrouted => "its dispatcher sent them to no consumer",
        })
    }
}

/// Events a stage discarded, all for one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discard {
    /// How many.
    pub count: u64,
    /// Why.
    pub reason: DiscardReason,
}

/// Events a stage lost, all for one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// How many.
    pub count: u64,
    /// Why.
    pub reason: LossReason,
}

impl Loss {
    /// Adds `count` events lost for `reason` to `losses`, one entry per reason (none for 0).
    pub(crate) fn add(losses: &mut Vec<Loss>, count: u64, reason: LossReason) {
        if count == 0 {
            return;
        }
        match losses.iter_mut().find(|loss| loss.reason == reason) {
            Some(loss) => loss.count += count,
            None => losses.push(Loss { count, reason }),
        }
    }
}

/// Counts for one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    /// The stage's name, unique in the report: the one given, or its type's (`Printer`), with
    /// `[i]` for the instances of a group of `pipeline!` or of the builder's `add_consumers` and
    /// `add_producer_consumers` (`Printer[1]`), and `#k` for the k-th stage
    /// named after one type elsewhere (`Printer#2`).
    pub name: String,
    /// Events its `handle_events` handled: handed to it, and it returned.
    pub events_in: u64,
    /// Events it delivered to its consumers.
    pub events_out: u64,
    /// Events its callbacks emitted (`handle_demand`, or a producer_consumer's `handle_events`);
    /// for a [`from_channel`](crate::from_channel) producer, also the events its channel had
    /// accepted and it never emitted ([`LossReason::NotEmitted`]), so that they are accounted for.
    pub emitted: u64,
    /// Copies of its events that a broadcast sent, beyond the first: an event sent to three
    /// consumers is emitted once and copied twice, and handled three times.
    pub copies: u64,
    /// Events it dropped: on buffer overflow (`buffer_size`, `buffer_keep`), partitioned to `None`,
    /// or rejected by every selector of a broadcast. The sum of `discards`.
    pub discarded: u64,
    /// Why it discarded them, one entry per reason.
    pub discards: Vec<Discard>,
    /// Events it lost: the sum of `losses`.
    pub lost: u64,
    /// Why it lost them, one entry per reason.
    pub losses: Vec<Loss>,
    /// Events it received beyond what it had asked for (a producer breaking the protocol); always 0
    /// for the stages of this crate.
    pub excess: u64,
    /// Times it was restarted (see [`RestartPolicy`](crate::RestartPolicy)).
    pub restarts: u64,
    /// Events of the batches it failed on, given back to it after a restart to be handed again
    /// (an event given back twice counts twice), counted as they are given back: handled, they
    /// count once in `events_in`; still waiting when the stage stopped (a producer_consumer
    /// whose consumers had no demand, aborted or out of a shutdown's time), they are in `losses`.
    pub redelivered: u64,
    /// The last ends (at most 10, oldest first) its restart policy acted on, as statuses: those it
    /// was restarted after, and the one that reached its restart limit. Empty for a stage never
    /// restarted: its `status` says how it ended.
    pub failures: Vec<String>,
    /// How it ended.
    pub status: StageStatus,
}

impl StageReport {
    /// Whether it failed or panicked.
    pub fn failed(&self) -> bool {
        matches!(
            self.status,
            StageStatus::Failed(_) | StageStatus::Panicked(_)
        )
    }
}

/// What [`Pipeline::run`](crate::Pipeline::run) returns, and what a [`PipelineError`] raised at run
/// time carries: one entry per stage, in the order added.
///
/// [`PipelineError`]: crate::PipelineError
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Every stage's counts.
    pub stages: Vec<StageReport>,
    /// Every subscription's counts, in the order they were made.
    pub edges: Vec<EdgeReport>,
}

/// Counts for one subscription (an edge of the pipeline): what its producer sent on it, and what
/// became of it. `sent = handled + lost` for every edge ([`balanced`](Self::balanced)); a
/// producer's discards happen before its events go to any subscription, and a broadcast's copies
/// are sent on each edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeReport {
    /// The producer's name.
    pub producer: String,
    /// The consumer's name.
    pub consumer: String,
    /// Events its producer's dispatcher gave it.
    pub sent: u64,
    /// Events of it its consumer handled.
    pub handled: u64,
    /// Events of it lost: sent to its consumer once stopped, or lost by its consumer (see
    /// [`LossReason`]).
    pub lost: u64,
}

impl EdgeReport {
    /// Whether every event sent on it is accounted for: `sent = handled + lost`.
    pub fn balanced(&self) -> bool {
        self.sent == self.handled + self.lost
    }
}

impl Report {
    /// The stage with this name.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stages that failed or panicked, in the order they were added.
    pub fn failures(&self) -> impl Iterator<Item = &StageReport> {
        self.stages.iter().filter(|s| s.failed())
    }

    /// Whether the counts balance in total ([`Totals::balanced`]) and on every edge
    /// ([`EdgeReport::balanced`]).
    pub fn balanced(&self) -> bool {
        self.totals().balanced() && self.edges.iter().all(EdgeReport::balanced)
    }

    /// The edges whose counts do not balance: none, when every event is accounted for.
    pub fn unbalanced_edges(&self) -> impl Iterator<Item = &EdgeReport> {
        self.edges.iter().filter(|edge| !edge.balanced())
    }

    /// The counts of every stage, summed.
    pub fn totals(&self) -> Totals {
        self.stages.iter().fold(Totals::default(), |t, s| Totals {
            emitted: t.emitted + s.emitted + s.copies,
            handled: t.handled + s.events_in,
            discarded: t.discarded + s.discarded,
            lost: t.lost + s.lost,
        })
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

/// A table, one row per stage (events in, out, emitted, copied by a broadcast, discarded, lost, and
/// how it ended), a row of totals, each loss with its reason, and whether the counts balance.
///
/// ```
/// use genstage::{Loss, LossReason, Report, StageReport, StageStatus};
/// let stage = |name: &str, events_in, events_out, emitted, lost, status| StageReport {
///     name: name.into(),
///     events_in,
///     events_out,
///     emitted,
///     copies: 0,
///     discarded: 0,
///     discards: Vec::new(),
///     lost,
///     losses: (lost > 0)
///         .then_some(Loss { count: lost, reason: LossReason::Unhandled })
///         .into_iter()
///         .collect(),
///     excess: 0,
///     restarts: 0,
///     redelivered: 0,
///     failures: Vec::new(),
///     status,
/// };
/// let report = Report {
///     stages: vec![
///         stage("Counter", 0, 1000, 1000, 0, StageStatus::ShutDown),
///         stage("Sum", 990, 0, 0, 10, StageStatus::Aborted),
///     ],
///     edges: Vec::new(),
/// };
/// assert_eq!(
///     report.to_string(),
///     "stage     in   out  emitted  copies  discarded  lost  status\n\
///      Counter    0  1000     1000       0          0     0  shut down\n\
///      Sum      990     0        0       0          0    10  aborted\n\
///      total    990  1000     1000       0          0    10\n\
///      lost by Sum: 10, received but not handled when it stopped\n\
///      emitted 1000 (copies included) = handled 990 + discarded 0 + lost 10: balanced"
/// );
/// ```
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The restart columns only for a run in which a stage was restarted.
        let restarted = self
            .stages
            .iter()
            .any(|stage| stage.restarts > 0 || stage.redelivered > 0);
        type Column = (&'static str, fn(&StageReport) -> u64);
        let columns: &[Column] = &[
            ("in", |stage| stage.events_in),
            ("out", |stage| stage.events_out),
            ("emitted", |stage| stage.emitted),
            ("copies", |stage| stage.copies),
            ("discarded", |stage| stage.discarded),
            ("lost", |stage| stage.lost),
            ("restarts", |stage| stage.restarts),
            ("redelivered", |stage| stage.redelivered),
        ];
        let columns = &columns[..if restarted { 8 } else { 6 }];
        let totals = self.totals();
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["stage".to_owned()];
        header.extend(columns.iter().map(|(name, _)| (*name).to_owned()));
        header.push("status".to_owned());
        rows.push(header);
        for stage in &self.stages {
            let mut row = vec![stage.name.clone()];
            row.extend(columns.iter().map(|(_, count)| count(stage).to_string()));
            row.push(stage.status.to_string());
            rows.push(row);
        }
        let mut total = vec!["total".to_owned()];
        // Each column's sum; those of `in`, `discarded` and `lost` are the identity's terms.
        total.extend(
            columns
                .iter()
                .map(|&(_, count)| self.stages.iter().map(count).sum::<u64>().to_string()),
        );
        total.push(String::new());
        rows.push(total);
        let mut widths = vec![0; columns.len() + 2];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let last = columns.len() + 1;
        for row in &rows {
            // The name left-aligned, the counts right-aligned, the status last, as it comes.
            let mut line = format!("{:<w$}", row[0], w = widths[0]);
            for (cell, &width) in row[1..last].iter().zip(&widths[1..last]) {
                line.push_str(&format!("  {cell:>width$}"));
            }
            line.push_str("  ");
            line.push_str(&row[last]);
            writeln!(f, "{}", line.trim_end())?;
        }
        for stage in &self.stages {
            for discard in &stage.discards {
                writeln!(
                    f,
                    "discarded by {}: {}, {}",
                    stage.name, discard.count, discard.reason
                )?;
            }
            for loss in &stage.losses {
                writeln!(f, "lost by {}: {}, {}", stage.name, loss.count, loss.reason)?;
            }
        }
        for stage in self.stages.iter().filter(|stage| stage.restarts > 0) {
            writeln!(
                f,
                "restarted {} {} time{}; the last ends its restart policy acted on, oldest first: {}",
                stage.name,
                stage.restarts,
                if stage.restarts == 1 { "" } else { "s" },
                stage.failures.join("; ")
            )?;
        }
        for edge in self.unbalanced_edges() {
            writeln!(
                f,
                "edge {} -> {} NOT balanced: sent {} = handled {} + lost {}",
                edge.producer, edge.consumer, edge.sent, edge.handled, edge.lost
            )?;
        }
        write!(
            f,
            "emitted {} (copies included) = handled {} + discarded {} + lost {}: {}",
            totals.emitted,
            totals.handled,
            totals.discarded,
            totals.lost,
            if totals.balanced() {
                "balanced"
            } else {
                "NOT balanced"
            }
        )
    }
}

/// A pipeline's counts, summed over its stages (see [`Report::totals`]).
///
/// ```
/// use genstage::Totals;
/// let totals = Totals { emitted: 10, handled: 7, discarded: 1, lost: 2 };
/// assert!(totals.balanced());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Events emitted by every stage's callbacks, with the copies broadcasts made of them (and
    /// those a `from_channel` producer accepted and never emitted: see [`StageReport::emitted`]).
    pub emitted: u64,
    /// Events handled by every stage's `handle_events`.
    pub handled: u64,
    /// Events dropped: by buffers on overflow, partitioned to `None`, or rejected by every selector.
    pub discarded: u64,
    /// Events lost, whatever the reason.
    pub lost: u64,
}

impl Totals {
    /// Whether every event emitted is accounted for: `emitted = handled + discarded + lost`.
    pub fn balanced(&self) -> bool {
        self.emitted == self.handled + self.discarded + self.lost
    }
}
