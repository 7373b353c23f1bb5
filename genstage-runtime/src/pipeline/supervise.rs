//! Running a pipeline: one task per stage, the notices each stage's end sends its neighbours, and
//! what the pipeline's handle asks of it while it runs (shutdown, abort, new stages and
//! subscriptions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;

use crate::dispatcher::SubscriptionId;
use crate::error::{DispatchSetupError, PipelineError};
use crate::mailbox::GivesHeld;
use crate::messages::CancelPort;
use crate::options::SubscribeOptions;
use crate::protocol::{ControlPort, EndReason};
use crate::report::{EdgeReport, Report, StageReport, StageStatus};
use crate::run::{panic_message, Abort, Exit, GaveUp, Outcome, ReceivedCounts, SentCounts};
use crate::subscription::SubscriptionTag;

use super::graph::{edge_partition, edge_terms};
use super::{DispatchInfo, Edge, Pipeline, Role, Run, StageEntry, Wiring};

/// The next subscription's id.
static NEXT_SUBSCRIPTION: AtomicU64 = AtomicU64::new(0);

/// What a [`PipelineHandle`](super::PipelineHandle) asks of its running pipeline.
pub(super) enum Request {
    /// Stop the producers, let every event already emitted be handled, and end; abort whatever is
    /// still running at `deadline`, if any.
    Shutdown { deadline: Option<Instant> },
    /// Stop every stage where it stands.
    Abort,
    /// Start this stage now.
    AddStage {
        stage: Box<StageEntry>,
        reply: oneshot::Sender<Result<(), PipelineError>>,
    },
    /// Wire this edge now, and cancel `replacing`, if it is a subscription of the edge's consumer
    /// still running (a resubscribe): see `Supervisor::subscribe`.
    Subscribe {
        edge: Edge,
        replacing: Option<SubscriptionTag>,
        reply: oneshot::Sender<Result<SubscriptionTag, PipelineError>>,
    },
    /// The running subscriptions of `consumer` to `producer` (indexes), oldest first.
    Subscriptions {
        producer: usize,
        consumer: usize,
        reply: oneshot::Sender<Vec<SubscriptionTag>>,
    },
    /// End this subscription: its producer sends nothing more to it, and its consumer handles what
    /// it was sent, then sees it end (`CancelReason::Cancelled`).
    Cancel {
        tag: SubscriptionTag,
        reply: oneshot::Sender<Result<(), PipelineError>>,
    },
    /// This stage's report, once it has ended (at once if it has).
    StageEnded {
        stage: usize,
        reply: oneshot::Sender<StageReport>,
    },
    /// This stage's failure, past or to come, does not fail the run.
    DismissFailure {
        stage: usize,
        reply: oneshot::Sender<()>,
    },
}

impl Request {
    /// A graceful shutdown that gives up `timeout` from now.
    pub(super) fn shutdown_within(timeout: Duration) -> Request {
        // A limit too far to count (`Duration::MAX`) is no limit.
        Request::Shutdown {
            deadline: Instant::now().checked_add(timeout),
        }
    }
}

/// Sends `request` to the supervisor through a handle's channel, `requests`: `NotRunning` when
/// there is none (the pipeline never started, or was asked to end) or the pipeline has ended.
pub(super) fn send_request(
    requests: Option<&mpsc::UnboundedSender<Request>>,
    request: Request,
) -> Result<(), PipelineError> {
    match requests {
        Some(requests) if requests.send(request).is_ok() => Ok(()),
        _ => Err(PipelineError::NotRunning),
    }
}

impl Pipeline {
    /// Runs every stage to completion.
    ///
    /// Must be awaited within a tokio runtime with its time driver enabled (as `#[tokio::main]` and
    /// `#[tokio::test]` make it); each stage runs as its own task. To run a pipeline in the
    /// background, and shut it down, use [`start`](Self::start).
    ///
    /// # Errors
    ///
    /// [`PipelineError::NoRuntime`] outside a tokio runtime; a wiring mistake
    /// ([`PipelineError::NoConsumer`], [`PipelineError::NoProducer`], [`PipelineError::Cycle`],
    /// [`PipelineError::InvalidSubscription`], and [`PipelineError::InvalidDispatch`] for
    /// subscriptions that do not fit their producer's dispatcher: a partition missing, out of
    /// range, taken twice or left without a consumer, a selector on a stage that does not
    /// broadcast, a consumer subscribed twice to one that does) or a name given to two stages
    /// ([`PipelineError::DuplicateName`]) before anything runs; then, once every stage has
    /// ended, the first stage that failed or panicked, with the report of the whole run
    /// ([`PipelineError::report`]): every stage's counts and status, and the events lost.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future aborts every stage of the pipeline, without a report: to stop a pipeline
    /// and still get its report, [`start`](Self::start) it and use its handle.
    pub fn run(self) -> Run {
        Run::new(async move { self.prepare(None)?.run().await })
    }

    /// Checks the pipeline, wires every subscription and starts every stage's task: what `run()`
    /// does when first polled, and `start()` before it returns, so that a message sent to a stage
    /// after `start()` reaches it after its subscriptions.
    pub(super) fn prepare(
        mut self,
        requests: Option<mpsc::UnboundedReceiver<Request>>,
    ) -> Result<Supervisor, PipelineError> {
        if !tokio_with_timers() {
            return Err(PipelineError::NoRuntime);
        }
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.disambiguate_names()?;
        let limits = self.validate()?;
        let Pipeline { stages, edges, .. } = self;

        let mut supervisor = Supervisor::new(requests);
        // Wire every edge before any task runs: each consumer finds its subscriptions first in its
        // mailbox, and each producer finds all its subscribers and their initial asks.
        for (edge, (limits, cancel)) in edges.into_iter().zip(limits) {
            let wiring = Wiring {
                producer: Arc::from(stages[edge.producer].name.as_str()),
                consumer: Arc::from(stages[edge.consumer].name.as_str()),
                running: false,
                replacing: None,
            };
            supervisor.wire(edge, limits, cancel, wiring);
        }
        supervisor.holds = stages.iter().any(|stage| stage.dispatch.chains());
        for stage in stages {
            supervisor.spawn(stage);
        }
        Ok(supervisor)
    }
}

/// Every stage's report by index (`None` for one refused when added), published by the supervisor
/// as it ends: what a `stage_ended` asked once it has ended is answered from.
pub(super) type Ended = Option<Arc<Vec<Option<StageReport>>>>;

/// A running pipeline's stages, by index (the order they were added), and its subscriptions.
pub(super) struct Supervisor {
    tasks: JoinSet<Box<Outcome>>,
    /// A stage of the pipeline waits for its consumers' turns (see [`DispatchInfo::chains`]): the
    /// tasks started from then on are polled as [`GivesHeld`], so that each wake-up of the chain
    /// goes as its holder's poll ends. Other pipelines do without it, as a stage that holds a
    /// wake-up outside such a poll gives it at once: each poll it wraps costs a little.
    holds: bool,
    task_stage: HashMap<Id, usize>,
    names: Vec<String>,
    /// The options each stage's subscriptions default to.
    defaults: Vec<SubscribeOptions>,
    /// What each stage's dispatcher allows of the subscriptions to it.
    dispatch: Vec<DispatchInfo>,
    /// The partition each subscription to a partitioned stage takes.
    partition_of: HashMap<SubscriptionId, usize>,
    controls: Vec<Arc<dyn ControlPort>>,
    /// Whether each stage emits events (a producer or producer_consumer): one that does refuses
    /// messages from outside once told to shut down.
    emits: Vec<bool>,
    /// Each stage's report, once it has ended.
    reports: Vec<Option<StageReport>>,
    /// Who waits for which stage's report (`Request::StageEnded`).
    awaiting_end: Vec<(usize, oneshot::Sender<StageReport>)>,
    /// Every subscription: its id, producer and consumer.
    wiring: Vec<(SubscriptionId, usize, usize)>,
    /// Each stage's subscriptions, either side, as indexes into `wiring`: a stage's end is told
    /// to its neighbours in time proportional to its own subscriptions, not to the pipeline's.
    wiring_of: HashMap<usize, Vec<usize>>,
    /// What the stages that ended sent on each subscription, and received and handled.
    sent: HashMap<SubscriptionId, SentCounts>,
    received: HashMap<SubscriptionId, ReceivedCounts>,
    /// The subscriptions cancelled through the handle, or by their consumers, and those their
    /// producers' dispatchers refused.
    cancelled: std::collections::HashSet<SubscriptionId>,
    /// Where the stages tell of the cancels of their own subscriptions, and where they arrive.
    cancel_port: CancelPort,
    stage_cancels: mpsc::UnboundedReceiver<SubscriptionTag>,
    /// The indexes of stages added while running and refused (see [`add`](Self::add)).
    never_started: std::collections::HashSet<usize>,
    abort: Arc<Abort>,
    requests: Option<mpsc::UnboundedReceiver<Request>>,
    /// Dropped with the supervisor: tells the handle it has ended (see `PipelineHandle::answer`).
    /// Before that, it publishes every stage's report, for `stage_ended` asked too late for the
    /// supervisor to answer.
    pub(super) alive: Option<tokio::sync::watch::Sender<Ended>>,
    /// The stages that failed for good, in the order they failed: the first not dismissed is
    /// the run's error.
    failures: Vec<(usize, Failure)>,
    /// The stages whose failure does not fail the run (`Request::DismissFailure`).
    dismissed: std::collections::HashSet<usize>,
    /// A graceful shutdown was asked for.
    shutting_down: bool,
    /// When a graceful shutdown gives up.
    deadline: Option<Instant>,
    /// The stages still busy when it gave up.
    busy_at_deadline: Option<Vec<String>>,
}

impl Supervisor {
    fn new(requests: Option<mpsc::UnboundedReceiver<Request>>) -> Self {
        let (cancel_port, stage_cancels) = CancelPort::channel();
        Supervisor {
            tasks: JoinSet::new(),
            holds: false,
            task_stage: HashMap::new(),
            names: Vec::new(),
            defaults: Vec::new(),
            dispatch: Vec::new(),
            partition_of: HashMap::new(),
            controls: Vec::new(),
            emits: Vec::new(),
            reports: Vec::new(),
            awaiting_end: Vec::new(),
            wiring: Vec::new(),
            wiring_of: HashMap::new(),
            sent: HashMap::new(),
            received: HashMap::new(),
            cancelled: std::collections::HashSet::new(),
            cancel_port,
            stage_cancels,
            never_started: std::collections::HashSet::new(),
            abort: Arc::new(Abort::default()),
            requests,
            alive: None,
            failures: Vec::new(),
            dismissed: std::collections::HashSet::new(),
            shutting_down: false,
            deadline: None,
            busy_at_deadline: None,
        }
    }

    /// Sends the subscription's messages to both stages; returns its tag.
    fn wire(
        &mut self,
        edge: Edge,
        limits: crate::demand::DemandLimits,
        cancel: crate::options::CancelMode,
        wiring: Wiring,
    ) -> SubscriptionTag {
        // Unique over every pipeline of the process, so that a tag of one pipeline never names a
        // subscription of another.
        let sub = NEXT_SUBSCRIPTION.fetch_add(1, Ordering::Relaxed);
        if let Some(partition) = edge.options.partition {
            self.partition_of.insert(sub, partition);
        }
        (edge.connect)(sub, limits, cancel, wiring);
        for stage in [edge.producer, edge.consumer] {
            self.wiring_of
                .entry(stage)
                .or_default()
                .push(self.wiring.len());
        }
        self.wiring.push((sub, edge.producer, edge.consumer));
        SubscriptionTag(sub)
    }

    /// Starts a stage's task.
    fn spawn(&mut self, stage: StageEntry) {
        stage.label.set_unique(&stage.name);
        let index = self.record(&stage);
        if stage.failure_dismissed {
            self.dismissed.insert(index);
        }
        let task = (stage.start)(
            Arc::from(stage.name.as_str()),
            self.abort.clone(),
            self.cancel_port.clone(),
            stage.policy,
        );
        self.holds |= stage.dispatch.chains();
        let handle = if self.holds {
            self.tasks.spawn(GivesHeld::new(task))
        } else {
            self.tasks.spawn(task)
        };
        self.task_stage.insert(handle.id(), index);
    }

    /// Gives a stage the next index, started or not; returns the index.
    fn record(&mut self, stage: &StageEntry) -> usize {
        self.names.push(stage.name.clone());
        self.defaults.push(stage.subscribe_defaults);
        self.dispatch.push(stage.dispatch);
        self.controls.push(stage.control.clone());
        self.emits.push(stage.role != Role::Consumer);
        self.reports.push(None);
        self.names.len() - 1
    }

    /// Tells a stage to shut down. A producer or producer_consumer refuses messages from outside
    /// from then on (it would drop them, see `run/mod.rs`), in the same step, so that their senders
    /// learn it when they send; a consumer keeps taking them until it ends.
    fn shut_down(&self, index: usize) {
        self.controls[index].shut_down(self.emits[index]);
    }

    fn running(&self, index: usize) -> bool {
        self.reports.get(index).is_some_and(Option::is_none) && !self.never_started.contains(&index)
    }

    /// Supervises the stages until every one has ended; returns the report.
    pub(super) async fn run(mut self) -> Result<Report, PipelineError> {
        // Requests found queued as the last stage ended, answered once the end is published.
        let unanswered = loop {
            tokio::select! {
                // Ends first: a stage that ended is never counted busy at a deadline.
                biased;
                joined = self.tasks.join_next_with_id() => {
                    self.take_stage_cancels();
                    match joined {
                        Some(Ok((task, outcome))) => self.ended(task, outcome),
                        // Callbacks' panics are caught in the stage loops; this is a panic of the
                        // runtime itself, and the stage's counts are gone with its task.
                        Some(Err(error)) => self.ended(error.id(), lost_task(error)),
                        None => break self.take_dismissals(),
                    }
                }
                request = next_request(&mut self.requests) => {
                    self.take_stage_cancels();
                    match request {
                        Some(request) => self.handle(request),
                        // The handle is gone: the pipeline runs on, detached.
                        None => self.requests = None,
                    }
                }
                () = sleep_until_some(self.deadline) => {
                    // Stages that ended by now are not busy, though not joined yet.
                    self.reap();
                    self.busy_at_deadline = Some(
                        (0..self.names.len())
                            .filter(|&index| self.running(index))
                            .map(|index| self.names[index].clone())
                            .collect(),
                    );
                    self.deadline = None;
                    self.abort.abort();
                }
                // Last, so that a stage that cancels without pause holds back no end, request or
                // deadline (those it made before one are taken before it: `take_stage_cancels`).
                // The supervisor holds a port itself: the channel never closes while it runs.
                Some(tag) = self.stage_cancels.recv() => {
                    self.cancelled.insert(tag.0);
                }
            }
        };
        if let Some(alive) = &self.alive {
            alive.send_replace(Some(Arc::new(self.reports.clone())));
        }
        // Dropped now, so that their askers find the end published: a `stage_ended` its report.
        drop(unanswered);
        self.finish()
    }

    /// Takes in the dismissals already asked for when the last stage has ended: one asked before
    /// the pipeline ended counts, though the stages' ends, which the supervisor takes first, came
    /// in before it. Returns the other requests queued, which find the pipeline ended.
    fn take_dismissals(&mut self) -> Vec<Request> {
        let mut queued = Vec::new();
        if let Some(requests) = &mut self.requests {
            while let Ok(request) = requests.try_recv() {
                queued.push(request);
            }
        }
        let mut others = Vec::new();
        for request in queued {
            match request {
                Request::DismissFailure { stage, reply } => self.dismiss(stage, reply),
                other => others.push(other),
            }
        }
        others
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Shutdown { deadline } if !self.shutting_down && !self.abort.is_aborted() => {
                self.shutting_down = true;
                // Producers stop emitting; the rest follows as their input ends (a stage without
                // producers ends at once).
                for index in 0..self.names.len() {
                    if self.running(index) {
                        self.shut_down(index);
                    }
                }
                self.deadline = deadline;
            }
            // Asked again (a `ShutdownHandle` and the handle): the limit may only come closer, and
            // none is set once the one given has passed, nor once aborted.
            Request::Shutdown { deadline } => {
                let aborted = self.abort.is_aborted() || self.busy_at_deadline.is_some();
                if let (Some(deadline), false) = (deadline, aborted) {
                    self.deadline = Some(self.deadline.map_or(deadline, |at| at.min(deadline)));
                }
            }
            Request::Abort => self.abort.abort(),
            // Once the pipeline is ending, what would grow it is refused: a stage added would end
            // at once, a subscription with it. A request taken before the shutdown was served. A
            // resubscribe that replaces a running subscription grows nothing: it stays, as the way
            // to move a consumer that holds the shutdown open to another demand, losing nothing.
            Request::AddStage { stage, reply } if self.ending() => {
                let _ = reply.send(Err(self.refuse(&stage, PipelineError::ShuttingDown)));
            }
            Request::AddStage { stage, reply } => {
                let result = self.add(*stage);
                let _ = reply.send(result);
            }
            Request::Subscribe {
                edge,
                replacing,
                reply,
            } if self.ending() && !self.replaces_running(replacing, edge.consumer) => {
                let _ = reply.send(Err(PipelineError::ShuttingDown));
            }
            Request::Subscribe {
                edge,
                replacing,
                reply,
            } => {
                let result = self.subscribe(edge, replacing);
                let _ = reply.send(result);
            }
            Request::Subscriptions {
                producer,
                consumer,
                reply,
            } => {
                let _ = reply.send(self.subscriptions(producer, consumer));
            }
            // A consumer may cancel at any time, as in GenStage, a shutdown's included.
            Request::Cancel { tag, reply } => {
                let result = self.cancel(tag);
                let _ = reply.send(result);
            }
            Request::StageEnded { stage, reply } => self.await_end(stage, reply),
            Request::DismissFailure { stage, reply } => self.dismiss(stage, reply),
        }
    }

    /// Takes the stage's failure, past or to come, as dealt with, and says so.
    fn dismiss(&mut self, stage: usize, reply: oneshot::Sender<()>) {
        self.dismissed.insert(stage);
        let _ = reply.send(());
    }

    /// Gives `reply` the stage's report once it has ended: now, if its end is in (a stage whose
    /// task has finished is taken in first); when it ends, otherwise. A stage refused when added
    /// never ran: `reply` is dropped, which the handle tells as `NotRunning`.
    fn await_end(&mut self, stage: usize, reply: oneshot::Sender<StageReport>) {
        self.reap();
        if let Some(Some(report)) = self.reports.get(stage) {
            let _ = reply.send(report.clone());
        } else if self.running(stage) {
            // Waiters that gave up are dropped here, so that they do not pile up.
            self.awaiting_end
                .retain(|(_, waiting)| !waiting.is_closed());
            self.awaiting_end.push((stage, reply));
        }
    }

    /// Starts a stage added to the running pipeline, under a name no other stage has.
    fn add(&mut self, mut stage: StageEntry) -> Result<(), PipelineError> {
        if let Some(error) = stage.unrebuildable() {
            return Err(self.refuse(&stage, error));
        }
        // A name is taken by a stage that started: one refused leaves its name free.
        let started = || (0..self.names.len()).filter(|index| !self.never_started.contains(index));
        let taken = |name: &str| started().any(|index| self.names[index] == name);
        // A generated name is also taken as a group's base (`Worker` beside `Worker[0]`,
        // `Worker[1]`), as the builder names a stage beside a group (see `names.rs`): `Worker#2`.
        let base_taken = |name: &str| {
            started().any(|index| {
                let other = &self.names[index];
                other == name
                    || other
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']'))
            })
        };
        if stage.naming.given && taken(&stage.name) {
            let error = PipelineError::DuplicateName {
                name: stage.name.clone(),
                stages: [
                    "a stage of the running pipeline".to_owned(),
                    "the stage added (named explicitly)".to_owned(),
                ],
            };
            return Err(self.refuse(&stage, error));
        } else if !stage.naming.given && base_taken(&stage.name) {
            stage.name = crate::names::first_free(&stage.name, |name| !base_taken(name));
        }
        self.spawn(stage);
        Ok(())
    }

    /// The subscriptions of `consumer` to `producer` that still run (not cancelled, both stages
    /// running), in the order they were made.
    fn subscriptions(&mut self, producer: usize, consumer: usize) -> Vec<SubscriptionTag> {
        self.reap();
        self.wiring
            .iter()
            .filter(|&&(sub, from, to)| from == producer && to == consumer && self.runs(sub))
            .map(|&(sub, ..)| SubscriptionTag(sub))
            .collect()
    }

    /// Whether `replacing` is a subscription of `consumer` still running, both its stages too.
    fn replaces_running(&self, replacing: Option<SubscriptionTag>, consumer: usize) -> bool {
        replacing.is_some_and(|tag| {
            self.ends_of(tag.0)
                .is_some_and(|(_, wired)| wired == consumer)
                && self.runs(tag.0)
        })
    }

    /// The producer and the consumer of `sub`, if it is one of the pipeline's subscriptions.
    fn ends_of(&self, sub: SubscriptionId) -> Option<(usize, usize)> {
        self.wiring
            .iter()
            .find(|&&(wired, ..)| wired == sub)
            .map(|&(_, producer, consumer)| (producer, consumer))
    }

    /// Whether `sub` still runs: it is one of the pipeline's subscriptions, not cancelled, and both
    /// its stages run.
    fn runs(&self, sub: SubscriptionId) -> bool {
        !self.cancelled.contains(&sub)
            && self.ends_of(sub).is_some_and(|(producer, consumer)| {
                self.running(producer) && self.running(consumer)
            })
    }

    /// Whether a graceful shutdown or an abort has been asked for (or a shutdown's time limit has
    /// passed): the pipeline takes no new stage nor subscription from then on.
    fn ending(&self) -> bool {
        self.shutting_down || self.abort.is_aborted()
    }

    /// Refuses a stage added while the pipeline runs, for `error`: its index stays taken, never
    /// started, so that the stages added after it keep the indexes their references were given.
    fn refuse(&mut self, stage: &StageEntry, error: PipelineError) -> PipelineError {
        let index = self.record(stage);
        self.never_started.insert(index);
        error
    }

    /// Wires a subscription made while the pipeline runs; for a resubscribe, also cancels the
    /// subscription it replaces, if that is one of the consumer's and still running (any other tag
    /// is ignored, as GenStage's `sync_resubscribe` ignores an unknown reference). Nothing changes
    /// when the new subscription is refused.
    ///
    /// The consumer is told of the new subscription before the end of the old one reaches it, so a
    /// consumer whose only producer that was does not finish in between. When the old subscription
    /// is to the same producer, the producer is sent one message that cancels it and then takes
    /// the new one, in one step, as GenStage cancels the old reference first: what the old one held
    /// (its partition) is free for the new one, and the producer keeps a consumer throughout. To
    /// another producer, the new subscription is wired first, then the old one cancelled.
    fn subscribe(
        &mut self,
        edge: Edge,
        replacing: Option<SubscriptionTag>,
    ) -> Result<SubscriptionTag, PipelineError> {
        // A stage whose task has finished has ended, though its end is not yet taken in.
        self.reap();
        let (producer, consumer) = (edge.producer, edge.consumer);
        for index in [producer, consumer] {
            if !self.running(index) {
                return Err(PipelineError::StageEnded {
                    stage: self.names.get(index).cloned().unwrap_or_default(),
                });
            }
        }
        let replacing = replacing.filter(|tag| {
            self.wiring
                .iter()
                .any(|&(sub, _, wired)| sub == tag.0 && wired == consumer)
        });
        // Replaced in the producer's step (see above): still running, and to the same producer.
        let replaced_here = replacing.filter(|tag| {
            !self.cancelled.contains(&tag.0)
                && self
                    .wiring
                    .iter()
                    .any(|&(sub, from, _)| sub == tag.0 && from == producer)
        });
        if self.reaches(consumer, producer) {
            let mut stages = vec![self.names[producer].clone(), self.names[consumer].clone()];
            stages.push(self.names[producer].clone());
            return Err(PipelineError::Cycle { stages });
        }
        let (limits, cancel) = edge_terms(edge.options.or(self.defaults[consumer]), || {
            (self.names[producer].clone(), self.names[consumer].clone())
        })?;
        self.check_dispatch(&edge, replaced_here.map(|tag| tag.0))?;
        let wiring = Wiring {
            producer: Arc::from(self.names[producer].as_str()),
            consumer: Arc::from(self.names[consumer].as_str()),
            running: true,
            replacing: replaced_here.map(|tag| tag.0),
        };
        if let Some(old) = replaced_here {
            // Cancelled by the producer as it takes the new subscription in.
            self.cancelled.insert(old.0);
        }
        let tag = self.wire(edge, limits, cancel, wiring);
        if let Some(old) = replacing.filter(|_| replaced_here.is_none()) {
            // Ended or cancelled already: nothing to cancel.
            let _ = self.cancel(old);
        }
        Ok(tag)
    }

    /// Checks a subscription made while the pipeline runs against its producer's dispatcher, as
    /// `run` checks the pipeline's (see `graph.rs`); a partition is taken, and a broadcast's
    /// consumer subscribed, while the subscription that did it runs, but for `replaced`, which the
    /// producer cancels before it takes the new one in.
    fn check_dispatch(
        &self,
        edge: &Edge,
        replaced: Option<SubscriptionId>,
    ) -> Result<(), PipelineError> {
        let (producer, consumer) = (edge.producer, edge.consumer);
        let fail = |error| PipelineError::InvalidDispatch {
            stage: self.names[producer].clone(),
            error,
        };
        let info = self.dispatch[producer];
        let taken = edge_partition(info, edge, || self.names[consumer].clone()).map_err(fail)?;
        // The subscriptions from `producer` that still run, but `replaced`.
        let mut running = self.wiring.iter().filter(|&&(sub, from, to)| {
            from == producer
                && Some(sub) != replaced
                && !self.cancelled.contains(&sub)
                && self.running(to)
        });
        if info.broadcasts && running.clone().any(|&(.., to)| to == consumer) {
            return Err(fail(DispatchSetupError::AlreadySubscribed {
                consumer: self.names[consumer].clone(),
            }));
        }
        let Some(partition) = taken else {
            return Ok(());
        };
        let holder = running.find(|&&(sub, ..)| self.partition_of.get(&sub) == Some(&partition));
        match holder {
            Some(&(_, _, to)) => Err(fail(DispatchSetupError::PartitionTaken {
                consumer: self.names[consumer].clone(),
                partition,
                taken_by: self.names[to].clone(),
            })),
            None => Ok(()),
        }
    }

    /// Takes in the cancels the stages have made of their own subscriptions so far, before an end
    /// or a request: each was made before it, so a request of the handle sent after it finds the
    /// partition it freed, the path it cut (see `CancelPort::cancel`). Only those queued now: a
    /// stage that cancels without pause does not hold the supervisor.
    fn take_stage_cancels(&mut self) {
        for _ in 0..self.stage_cancels.len() {
            match self.stage_cancels.try_recv() {
                Ok(tag) => {
                    self.cancelled.insert(tag.0);
                }
                Err(_) => break,
            }
        }
    }

    /// Takes in the ends of the stages whose tasks have finished.
    fn reap(&mut self) {
        self.take_stage_cancels();
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            match joined {
                Ok((task, outcome)) => self.ended(task, outcome),
                Err(error) => self.ended(error.id(), lost_task(error)),
            }
        }
    }

    /// Whether `to` is `from` or downstream of it, through the subscriptions that can still carry
    /// events: not cancelled, and not to a stage that has ended. A consumer once subscribed to a
    /// stage, then cancelled, may feed it.
    fn reaches(&self, from: usize, to: usize) -> bool {
        let mut seen = vec![false; self.names.len()];
        let mut stack = vec![from];
        while let Some(stage) = stack.pop() {
            if stage == to {
                return true;
            }
            if std::mem::replace(&mut seen[stage], true) {
                continue;
            }
            stack.extend(
                self.wiring
                    .iter()
                    .filter(|&&(sub, producer, consumer)| {
                        producer == stage
                            && !self.cancelled.contains(&sub)
                            && self.running(consumer)
                    })
                    .map(|&(_, _, consumer)| consumer),
            );
        }
        false
    }

    /// Ends a subscription: its producer forgets it and tells its consumer, which sees it cancelled
    /// after what the producer sent it. The subscription stays in the wiring: should the
    /// producer end before it takes the cancel in, its end still reaches the consumer.
    fn cancel(&mut self, tag: SubscriptionTag) -> Result<(), PipelineError> {
        let Some((producer, consumer)) = self.ends_of(tag.0) else {
            return Err(PipelineError::UnknownSubscription {
                subscription: tag,
                consumer: None,
            });
        };
        if !self.runs(tag.0) {
            return Err(PipelineError::UnknownSubscription {
                subscription: tag,
                consumer: Some(self.names[consumer].clone()),
            });
        }
        self.cancelled.insert(tag.0);
        self.controls[producer].cancel(tag.0);
        Ok(())
    }

    /// Records how a stage ended, and tells its neighbours.
    fn ended(&mut self, task: Id, outcome: Box<Outcome>) {
        let Some(&index) = self.task_stage.get(&task) else {
            return;
        };
        let name = self.names[index].clone();
        let Outcome {
            exit,
            events_in,
            events_out,
            emitted,
            copies,
            discarded,
            discards,
            excess,
            losses,
            restarts,
            redelivered,
            failures,
            gave_up,
            sent,
            received,
        } = *outcome;
        self.sent.extend(sent);
        self.received.extend(received);
        let status = exit.status();
        let failure = match exit {
            Exit::Failed(error) => {
                tracing::error!(stage = %name, "stage {name} failed: {error}");
                Some(Failure::Error(error))
            }
            Exit::Panicked(message) => {
                tracing::error!(stage = %name, "stage {name} panicked: {message}");
                Some(Failure::Panic(message))
            }
            _ => None,
        };
        // A stage that gave up on restarting failed once more than its policy allows.
        let failure = match gave_up {
            Some(gave_up) => Some(Failure::RestartLimit {
                gave_up,
                failures: failures.clone(),
            }),
            None => failure,
        };
        if let Some(failure) = failure {
            self.failures.push((index, failure));
        }
        // Tell the neighbours. The root cause travels downstream with a failure.
        let reason = match &status {
            StageStatus::Cancelled { cause: Some(cause) } => {
                EndReason::Failed(Arc::from(cause.as_str()))
            }
            StageStatus::Failed(_) | StageStatus::Panicked(_) => {
                EndReason::Failed(Arc::from(name.as_str()))
            }
            _ => EndReason::Finished,
        };
        let subscriptions = self.wiring_of.get(&index).map_or(&[][..], Vec::as_slice);
        for &(sub, producer, consumer) in subscriptions.iter().map(|&at| &self.wiring[at]) {
            if producer == index {
                self.controls[consumer].upstream_ended(sub, reason.clone());
            }
            if consumer == index {
                self.controls[producer].downstream_ended(sub, reason.clone());
            }
        }
        let report = StageReport {
            name,
            events_in,
            events_out,
            emitted,
            copies,
            discarded,
            discards,
            lost: losses.iter().map(|loss| loss.count).sum(),
            losses,
            excess,
            restarts,
            redelivered,
            failures,
            status,
        };
        for (_, reply) in self
            .awaiting_end
            .extract_if(.., |(stage, _)| *stage == index)
        {
            let _ = reply.send(report.clone());
        }
        self.reports[index] = Some(report);
    }

    /// The report, or the error that carries it.
    fn finish(self) -> Result<Report, PipelineError> {
        let edges = self
            .wiring
            .iter()
            .map(|&(sub, producer, consumer)| {
                let sent = self.sent.get(&sub).copied().unwrap_or_default();
                let received = self.received.get(&sub).copied().unwrap_or_default();
                EdgeReport {
                    producer: self.names[producer].clone(),
                    consumer: self.names[consumer].clone(),
                    sent: sent.sent + sent.lost,
                    handled: received.handled,
                    lost: sent.lost + received.received.saturating_sub(received.handled),
                }
            })
            .collect();
        let report = Report {
            stages: self.reports.into_iter().flatten().collect(),
            edges,
        };
        // Busy are the stages the abort stopped where they stood: one that was finishing its last
        // steps at the deadline (its `terminate` run, its task not yet joined) ended on its own.
        let busy: Vec<String> = self
            .busy_at_deadline
            .into_iter()
            .flatten()
            .filter(|name| {
                report
                    .stage(name)
                    .is_none_or(|stage| stage.status == StageStatus::Aborted)
            })
            .collect();
        if !busy.is_empty() {
            return Err(PipelineError::ShutdownTimeout {
                busy,
                report: Box::new(report),
            });
        }
        let dismissed = self.dismissed;
        let failure = self
            .failures
            .into_iter()
            .find(|(index, _)| !dismissed.contains(index));
        match failure {
            None => Ok(report),
            Some((index, failure)) => {
                let stage = self.names[index].clone();
                let report = Box::new(report);
                Err(match failure {
                    Failure::Error(error) => PipelineError::StageFailed {
                        stage,
                        error,
                        report,
                    },
                    Failure::Panic(message) => PipelineError::StagePanicked {
                        stage,
                        message,
                        report,
                    },
                    Failure::RestartLimit { gave_up, failures } => PipelineError::RestartLimit {
                        stage,
                        max_restarts: gave_up.max_restarts,
                        within: gave_up.within,
                        failures,
                        poison: gave_up.poison,
                        report,
                    },
                })
            }
        }
    }
}

/// The next request from the pipeline's handle; never, for a pipeline without one.
async fn next_request(requests: &mut Option<mpsc::UnboundedReceiver<Request>>) -> Option<Request> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until `deadline`; never, without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether this runs in a tokio runtime with its time driver, which producers' back-off needs.
/// tokio has no query for the time driver: making a timer panics without it.
fn tokio_with_timers() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
        && std::panic::catch_unwind(|| drop(tokio::time::sleep(std::time::Duration::ZERO))).is_ok()
}

/// How a stage failed for good: the run's error, unless it was dismissed.
enum Failure {
    Error(crate::error::StageError),
    Panic(String),
    /// It failed once more than its restart policy allows.
    RestartLimit {
        gave_up: GaveUp,
        failures: Vec<String>,
    },
}

/// The outcome of a stage whose task itself panicked or was cancelled.
fn lost_task(error: tokio::task::JoinError) -> Box<Outcome> {
    let message = if error.is_cancelled() {
        "cancelled".to_owned()
    } else {
        panic_message(&*error.into_panic())
    };
    Box::new(Outcome {
        exit: Exit::Panicked(message),
        events_in: 0,
        events_out: 0,
        emitted: 0,
        copies: 0,
        discarded: 0,
        discards: Vec::new(),
        excess: 0,
        losses: Vec::new(),
        restarts: 0,
        redelivered: 0,
        failures: Vec::new(),
        gave_up: None,
        sent: Vec::new(),
        received: Vec::new(),
    })
}
