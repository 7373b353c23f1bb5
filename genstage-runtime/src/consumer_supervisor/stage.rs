//! The tokio side of a [`ConsumerSupervisor`]: it spawns a task per child, learns of their ends
//! through a channel, and is woken for them by an info to its own mailbox.
//!
//! A child's task sends its [`Note`] on the supervisor's channel, then posts a [`ChildNotes`] info
//! to the stage: the stage's `handle_info` takes every note in the channel, so one info serves all
//! the notes sent before it is handled, and the infos behind it find the channel empty. (One info
//! per note, rather than a flag saying one is on its way: a child is a task, whose cost dwarfs a
//! letter's, and no synchronisation of our own is needed.)
//! Once the stage's input has ended, the runtime keeps it running while it has children
//! (`Consumer::__busy`), so their notes still reach it this way until the last one has ended.

use std::convert::Infallible;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use super::accounting::{AfterExit, ChildExit, ChildId, Restart};
use super::child::{run_child, Child};
use super::counts::CountChildren;
use super::{ChildCounts, ConsumerSupervisor};
use crate::messages::{
    typed_info_letter, Context, HandleCall, HandleInfo, Letter, PostLetter, ReplyTo,
};
use crate::options::SubscribeOptions;
use crate::pipeline::{ConsumerRef, Pipeline, Stage};
use crate::report::LossReason;
use crate::stage::{Consumer, StageResult};
use crate::subscription::{CancelReason, Demand, Subscription, SubscriptionTag};

/// What a child's task tells its supervisor.
#[derive(Debug)]
pub(super) enum Note {
    /// A restarted child has waited out the restart delay and runs again.
    Running(ChildId),
    /// A child's run ended.
    Exited(ChildId, ChildExit),
}

/// The info that wakes a supervisor to read its notes.
pub(super) struct ChildNotes;

/// How a child's task wakes its supervisor.
pub(super) struct Wake {
    /// The stage's mailbox; set when its first subscription is made, before any event arrives.
    port: OnceLock<Box<dyn PostLetter>>,
    /// Writes the info, for the supervisor's type.
    letter: fn() -> Letter,
}

impl Wake {
    pub(super) fn new<T, C>() -> Self
    where
        T: Send + 'static,
        C: Child<T>,
    {
        Wake {
            port: OnceLock::new(),
            letter: || {
                typed_info_letter::<ConsumerSupervisor<T, C>, ChildNotes, Infallible>(ChildNotes)
            },
        }
    }

    /// Called by a child's task once its note is sent.
    fn wake(&self) {
        if let Some(port) = self.port.get() {
            // A stage that has stopped takes no more mail, and needs none.
            port.post((self.letter)());
        }
    }
}

/// The supervisor failed: a child's failure was one restart too many.
#[derive(Debug)]
struct IntensityReached {
    max_restarts: u32,
    period: Duration,
    last_failure: String,
}

impl fmt::Display for IntensityReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.period.as_secs();
        write!(
            f,
            "restart intensity reached: more than {} restarts of its children ",
            self.max_restarts
        )?;
        // A window of 0 holds the restarts less than a second old (see `Intensity`).
        if self.period.is_zero() {
            f.write_str("within a second")?;
        } else {
            write!(f, "in {seconds} s")?;
        }
        write!(
            f,
            " (max_restarts = {}, max_seconds = {seconds}); last failure: {}",
            self.max_restarts, self.last_failure
        )
    }
}

impl std::error::Error for IntensityReached {}

impl<T, C> ConsumerSupervisor<T, C>
where
    T: Send + 'static,
    C: Child<T>,
{
    /// Spawns the task of child `id`, which runs `event` after `delay`.
    fn spawn(&mut self, id: ChildId, event: T, delay: Duration) {
        let child = self.child.clone();
        let notes = self.notes_to.clone();
        let wake = self.wake.clone();
        let task = tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
                // The supervisor may be gone: then nobody needs to know.
                let _ = notes.send(Note::Running(id));
                wake.wake();
            }
            let exit = run_child(child.run(event)).await;
            let _ = notes.send(Note::Exited(id, exit));
            wake.wake();
        });
        self.tasks.insert(id, task);
    }

    /// Starts a child for `event`, from the subscription of the batch in hand.
    fn start(&mut self, event: T) {
        // Events beyond `max_demand` are the runtime's to log (it tracks the manual demand).
        let id = self.supervision.start(self.from);
        if let Some(clone) = self.clone_event {
            self.events.insert(id, clone(&event));
        }
        self.spawn(id, event, Duration::ZERO);
    }

    /// Takes in a note: the ask it earns, if any.
    ///
    /// # Errors
    ///
    /// The restart intensity is exceeded.
    fn take(&mut self, note: Note) -> Result<Option<(SubscriptionTag, usize)>, IntensityReached> {
        let (id, exit) = match note {
            Note::Running(id) => {
                self.supervision.running(id);
                return Ok(None);
            }
            Note::Exited(id, exit) => (id, exit),
        };
        self.tasks.remove(&id);
        if let ChildExit::Failed(failure) = &exit {
            tracing::warn!(stage = %self.name, child = id, "a ConsumerSupervisor's child failed: {failure}");
        }
        let now = tokio::time::Instant::now().into_std();
        match self.supervision.exited(id, exit, now) {
            AfterExit::Done(ask) => {
                self.events.remove(&id);
                Ok(ask)
            }
            AfterExit::Restart(id) => {
                let event = match (self.events.get(&id), self.clone_event) {
                    (Some(event), Some(clone)) => clone(event),
                    // `transient` keeps every event: not reached. Failed for good, then.
                    _ => return Ok(self.supervision.give_up(id)),
                };
                let delay = self.restart_delay;
                self.spawn(id, event, delay);
                if delay.is_zero() {
                    self.supervision.running(id);
                }
                Ok(None)
            }
            AfterExit::GiveUp { last_failure } => {
                self.events.remove(&id);
                let intensity = self.supervision.intensity();
                Err(IntensityReached {
                    max_restarts: intensity.max_restarts(),
                    period: intensity.within(),
                    last_failure,
                })
            }
        }
    }

    /// Publishes the counts, if they changed.
    fn publish(&self) {
        let counts = self.supervision.counts();
        self.counts.send_if_modified(|published| {
            let changed = *published != counts;
            *published = counts;
            changed
        });
    }

    /// Aborts every child left and waits until none runs (a child's task polled on another worker
    /// when aborted ends that poll first), so that a value built to replace this one never has
    /// more than `max_demand` children alive beside them, and every end that came first is in the
    /// channel; takes those in (no restart now). Returns the events lost since the last call, by
    /// subscription and reason.
    async fn abandon(&mut self) -> Vec<(Option<SubscriptionTag>, LossReason, u64)> {
        let tasks: Vec<_> = self.tasks.drain().map(|(_, task)| task).collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            // Cancelled, or ended first: either way it runs no more.
            let _ = task.await;
        }
        let restart = self.supervision.restart();
        self.supervision.set_restart(Restart::Temporary);
        while let Ok(note) = self.notes.try_recv() {
            let _ = self.take(note);
        }
        self.supervision.set_restart(restart);
        self.events.clear();
        let unfinished = self.supervision.abandon();
        self.publish();
        let failed = self.supervision.take_failed_from();
        let failed = failed
            .into_iter()
            .map(|(from, count)| (from, LossReason::ChildFailed, count));
        let unfinished = unfinished
            .into_iter()
            .map(|(from, count)| (from, LossReason::Unhandled, count));
        failed.chain(unfinished).collect()
    }
}

impl<T, C> Consumer for ConsumerSupervisor<T, C>
where
    T: Send + 'static,
    C: Child<T>,
{
    type Input = T;

    /// Starts one child per event.
    async fn handle_events(&mut self, events: Vec<T>) -> StageResult<()> {
        for event in events {
            self.start(event);
        }
        self.publish();
        Ok(())
    }

    fn subscribe_options(&self) -> SubscribeOptions {
        self.options
    }

    /// Takes the subscription's demand in hand: its initial ask of `max_demand` is made, and the
    /// supervisor asks for more as children end.
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        if self.wake.port.get().is_none() {
            let _ = self.wake.port.set(ctx.port());
            self.name = ctx.name().to_owned();
        }
        self.supervision
            .subscribed(subscription.tag(), subscription.min_demand());
        // A new subscription has its initial ask of `max_demand` in place, and nothing is free.
        // One this value is told of after a restart of its stage may have free slots, its old
        // value's children being gone: asked for now. (`ctx.ask` here refuses neither: the
        // subscription is this stage's, and an ask of 0 asks nothing.)
        let free = subscription
            .max_demand()
            .saturating_sub(subscription.outstanding());
        let _ = ctx.ask(subscription.tag(), free);
        Demand::Manual
    }

    /// Its children run on; their ends ask that producer for nothing more.
    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        _: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.supervision.cancelled(subscription.tag());
        Ok(())
    }

    const DEFAULT_NAME: Option<&'static str> = Some("ConsumerSupervisor");

    /// Its input ended, it waits for its children: the runtime keeps it running (and taking in
    /// their notes) until they have all ended.
    fn __busy(&self) -> bool {
        !self.supervision.is_idle()
    }

    /// Keeps the subscription the batch comes on: its children ask that producer for their
    /// events' replacements as they end.
    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.from = Some(subscription);
    }

    async fn __child_losses(&mut self) -> Vec<(Option<SubscriptionTag>, LossReason, u64)> {
        self.abandon().await
    }
}

// Internal: a user's info of the wrong type is not told of this impl, nor is it documented (users
// cannot name the info).
#[diagnostic::do_not_recommend]
#[doc(hidden)]
impl<T, C> HandleInfo<ChildNotes> for ConsumerSupervisor<T, C>
where
    T: Send + 'static,
    C: Child<T>,
{
    type Emitted = ();

    /// Takes in every note sent so far: asks for the slots freed, restarts the failed `transient`
    /// children, or fails when the restart intensity is exceeded.
    async fn handle_info(&mut self, _: ChildNotes, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        let mut failure = None;
        while let Ok(note) = self.notes.try_recv() {
            match self.take(note) {
                // The subscription may have ended since: then there is nobody to ask.
                Ok(Some((subscription, demand))) => {
                    let _ = ctx.ask(subscription, demand);
                }
                Ok(None) => {}
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        self.publish();
        match failure {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

// Not offered as a fix for a stage without `handle_call`: rustc would show this impl, the only
// one in the crate, to a user whose own stage answers no calls, as if it were meant for theirs.
#[diagnostic::do_not_recommend]
impl<T, C> HandleCall<CountChildren> for ConsumerSupervisor<T, C>
where
    T: Send + 'static,
    C: Child<T>,
{
    type Reply = ChildCounts;
    type Emitted = ();

    /// Answers the counts as they are now.
    async fn handle_call(
        &mut self,
        _: CountChildren,
        reply: ReplyTo<ChildCounts>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(self.supervision.counts());
        Ok(())
    }
}

impl<T, C> Stage for ConsumerSupervisor<T, C>
where
    T: Send + 'static,
    C: Child<T>,
{
    type Ref = ConsumerRef<Self>;

    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_as(name, self)
    }

    /// Rebuildable: a restart of the supervisor stage builds a fresh one.
    fn add_with(
        build: impl FnMut() -> Self + Send + 'static,
        pipeline: &mut Pipeline,
        name: Option<String>,
    ) -> Self::Ref {
        pipeline.add_consumer_with_as(name, build)
    }
}
