//! The tokio task loops, one per role. Each owns a stage value and its mailbox, and drives the pure
//! parts ([`Inputs`](inputs) for the consumer side, [`Outputs`](outputs) for the producer side) with
//! the messages it receives. A loop returns when its stage is done, or failed: then, if the stage's
//! restart policy says so ([`restarts`]), the task makes a new value and runs the loop again with
//! all it kept ([`kept`]); otherwise the pipeline tells the stage's neighbours (see
//! [`crate::pipeline`]).

mod abort;
mod by_subscription;
mod callback;
mod demand_mode;
mod inputs;
mod kept;
mod outputs;
mod restarts;
mod retry;

use std::any::Any;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use crate::dispatcher::{Dispatch, PartitionFns, SubscriptionId};
use crate::error::{StageError, StreamDropped};
use crate::event_path::Route;
use crate::mailbox::{OwnWake, Receiver, TryRecvError};
use crate::messages::{
    count_letter, events_of, CancelPort, Context, HeldReplies, Letter, Opened, OwnPort, PostLetter,
};
use crate::options::DemandMode;
use crate::protocol::{Control, Downstream, Mail, Upstream};
use crate::report::{Discard, Loss, LossReason, StageStatus};
use crate::restart::{NoInput, RestartPolicy};
use crate::stage::{Consumer, Emit, Producer, ProducerConsumer};
use crate::subscription::{Demand, ManualAsks, SubscriptionTag};
use callback::{call_serving, Called};
use demand_mode::{DemandModes, Switch};
pub(crate) use inputs::ReceivedCounts;
use inputs::{Inputs, Step};
use kept::{InHand, Kept};
pub(crate) use outputs::SentCounts;
use outputs::{ConsumerNotice, Outputs};
use restarts::{farewell, RestartOnFinish, Restarts};
use retry::Retry;

pub(crate) use abort::Abort;
pub(crate) use callback::panic_message;
pub(crate) use restarts::{Build, GaveUp};

/// The next message of a stage loop's mailbox, waiting for one when none is queued; when every sender
/// is gone, `break`s the loop. A macro, not an async fn: the message must not pass through a future's
/// output (see [`crate::mailbox`]).
macro_rules! next_mail {
    ($mailbox:ident, wake_on_ask: $wake_on_ask:expr) => {{
        // A stage whose mailbox never runs dry still lets its worker's other tasks run.
        $mailbox.consume_budget().await;
        // Takes in what is queued, or waits for it, under one lock.
        $mailbox.ready($wake_on_ask).await;
        match $mailbox.try_recv() {
            Ok(mail) => mail,
            // `ready` returns only once there is an answer: never met.
            Err(TryRecvError::Empty) => {
                debug_assert!(false, "`ready` returned with nothing to take");
                continue;
            }
            Err(TryRecvError::Disconnected) => break Exit::Cancelled(None),
        }
    }};
}

/// How a stage task ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// It ran to completion: its input ended and everything it emitted was delivered.
    Finished,
    /// A producer stopped by a graceful shutdown, after delivering everything it emitted; or a
    /// stage that waits for consumers, stopped by a graceful shutdown while it had none (what it
    /// held is counted lost).
    ShutDown,
    /// It stopped because the named stage failed upstream (a permanent or transient subscription), or
    /// because every consumer it had left.
    Cancelled(Option<Arc<str>>),
    /// Its callback returned an error.
    Failed(StageError),
    /// Its callback panicked with this message.
    Panicked(String),
    /// The pipeline aborted it where it stood.
    Aborted,
}

impl Exit {
    /// The status a stage's `terminate` is told, and the report shows.
    pub(crate) fn status(&self) -> StageStatus {
        match self {
            Exit::Finished => StageStatus::Finished,
            Exit::ShutDown => StageStatus::ShutDown,
            Exit::Cancelled(cause) => StageStatus::Cancelled {
                cause: cause.as_ref().map(|cause| cause.to_string()),
            },
            Exit::Failed(error) => StageStatus::Failed(error.to_string()),
            Exit::Panicked(message) => StageStatus::Panicked(message.clone()),
            Exit::Aborted => StageStatus::Aborted,
        }
    }
}

/// What a stage task reports when it ends: boxed, since the future's output moves through every
/// poll of its task.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) exit: Exit,
    pub(crate) events_in: u64,
    pub(crate) events_out: u64,
    pub(crate) emitted: u64,
    pub(crate) copies: u64,
    pub(crate) discarded: u64,
    pub(crate) discards: Vec<Discard>,
    pub(crate) excess: u64,
    pub(crate) losses: Vec<Loss>,
    /// Times its stage was restarted.
    pub(crate) restarts: u64,
    /// Events handed again to a restarted stage.
    pub(crate) redelivered: u64,
    /// Its last failures, oldest first.
    pub(crate) failures: Vec<String>,
    /// Set when it stopped for having reached its restart limit.
    pub(crate) gave_up: Option<GaveUp>,
    /// What it sent each subscription to it.
    pub(crate) sent: Vec<(SubscriptionId, SentCounts)>,
    /// What it received on each of its subscriptions, and handled.
    pub(crate) received: Vec<(SubscriptionId, ReceivedCounts)>,
}

/// What a stage task has besides its stage and its mailbox: its name, a port to its own mailbox (for
/// the messages it sends itself), its pipeline's abort signal, where it cancels its own
/// subscriptions, and the replies its callbacks hold.
pub(crate) struct StageEnv {
    pub(crate) name: Arc<str>,
    pub(crate) me: OwnPort,
    pub(crate) abort: Arc<Abort>,
    /// Where its callbacks cancel its subscriptions to producers.
    cancels: CancelPort,
    held: Arc<HeldReplies>,
}

impl StageEnv {
    pub(crate) fn new(
        name: Arc<str>,
        me: Box<dyn PostLetter>,
        abort: Arc<Abort>,
        cancels: CancelPort,
    ) -> Self {
        StageEnv {
            name,
            me: OwnPort::new(me),
            abort,
            cancels,
            held: Arc::default(),
        }
    }

    /// Opens a call, cast or info with the stage, holding the replies it makes until
    /// [`send_replies`](Self::send_replies) (after its events are dispatched).
    async fn open<'a, S: Send + 'static, T: Send + 'static>(
        &'a self,
        stage: &'a mut S,
        letter: Letter,
        asks: Option<&'a mut dyn ManualAsks>,
    ) -> Result<Emit<T>, StageError> {
        // What a failed value sent itself dies with it (see `OwnPort`).
        if self.me.is_stale(&letter) {
            return Ok(Emit::more(Vec::new()));
        }
        self.held.hold();
        let opened = Opened {
            name: &self.name,
            me: &self.me,
            cancels: &self.cancels,
            held: &self.held,
            asks,
        };
        let emitted = letter.open(stage as &mut (dyn Any + Send), opened).await?;
        events_of::<T>(emitted).map_err(StageError::from)
    }

    /// Sends the replies held since the last letter was opened.
    fn send_replies(&self) {
        self.held.release();
    }

    /// The context of a subscription callback of a stage; `inputs`, where it consumes (none for a
    /// producer).
    fn context<'a, S: Send + 'static>(
        &'a self,
        inputs: Option<&'a mut dyn ManualAsks>,
    ) -> Context<'a, S> {
        Context::new(&self.name, &self.me, &self.cancels, inputs)
    }
}

/// Closes a stopped stage's mailbox and counts what the stage leaves behind: the batch `in_hand`
/// and those its earlier values `failed_before` on, `unhandled` events already taken from the
/// mailbox, every event still in it, what it sent to consumers that had gone, and its `buffered`
/// events.
fn close_and_count<In, Out, T>(
    mailbox: &mut Receiver<Mail<In, Out>>,
    in_hand: &InHand<T>,
    failed_before: u64,
    unhandled: u64,
    consumer_gone: u64,
    buffered: u64,
    mut left: impl FnMut(SubscriptionId, u64),
) -> Vec<Loss> {
    let mut in_mailbox = 0;
    for mail in mailbox.close() {
        if let Mail::Upstream(Upstream::Events { sub, events }) = mail {
            in_mailbox += events.len() as u64;
            left(sub, events.len() as u64);
        }
    }
    let (failed, interrupted) = if in_hand.interrupted {
        (0, in_hand.batch)
    } else {
        (in_hand.batch, 0)
    };
    [
        (failed_before + failed, LossReason::FailedBatch),
        (unhandled + in_mailbox + interrupted, LossReason::Unhandled),
        (consumer_gone, LossReason::ConsumerGone),
        (buffered, LossReason::Buffered),
    ]
    .into_iter()
    .filter(|&(count, _)| count > 0)
    .map(|(count, reason)| Loss { count, reason })
    .collect()
}

/// A stage that has decided to end takes its last look at its mailbox: it closes it to messages
/// from outside first (once: `ending`), under the mailbox's lock, so that a message from outside
/// is refused (`CallError::Ended`) or queued before the close, taken in by the caller's loop and
/// handled, never accepted and dropped. True when nothing is queued: the stage may end now.
fn last_look<M>(mailbox: &Receiver<M>, ending: &mut bool) -> bool {
    if !*ending {
        mailbox.end_to_outside();
        *ending = true;
    }
    mailbox.queued() == 0
}

/// How a stage's loop run by [`Abort::guard`] (which catches a panic and races the abort signal)
/// ended; also whether it was aborted (its loop dropped where it stood). A function of the guard's
/// output, not an `async fn` around it: every poll of a stage would go through one more layer.
fn exit_of(guarded: Option<Result<Exit, String>>) -> (Exit, bool) {
    match guarded {
        None => (Exit::Aborted, true),
        Some(Err(message)) => (Exit::Panicked(message), false),
        Some(Ok(exit)) => (exit, false),
    }
}

/// Runs a stage's `terminate` (called with `exit`'s status), unless the stage panicked or was
/// aborted; a panic in it or an abort during it is the stage's exit instead.
async fn terminated(
    env: &StageEnv,
    exit: Exit,
    terminate: impl std::future::Future<Output = ()>,
) -> Exit {
    if matches!(exit, Exit::Panicked(_) | Exit::Aborted) {
        return exit;
    }
    match env.abort.guard(terminate).await {
        None => Exit::Aborted,
        Some(Err(message)) => Exit::Panicked(message),
        Some(Ok(())) => exit,
    }
}

/// A stage's partition function, when its dispatcher partitions.
type PartitionFn<S, T> = Option<PartitionFns<S, T>>;

/// Runs `then` with the stage's partition function bound to the stage, as the event path takes it
/// (see [`Route`]).
#[inline]
fn routed<S, T, R>(
    stage: &S,
    partition: PartitionFn<S, T>,
    then: impl FnOnce(Route<'_, T>) -> R,
) -> R {
    match partition {
        Some(partition) => then(Some(&partition.bind(stage))),
        None => then(None),
    }
}

/// Dispatches the events that waited for the partition function while a callback ran; the exit of
/// a stage whose dispatcher could not dispatch (a partition out of range).
#[inline]
fn settle<S, T: Send + 'static>(
    stage: &S,
    partition: PartitionFn<S, T>,
    outputs: &mut Outputs<T>,
) -> Result<(), Exit> {
    if outputs.unsettled() {
        routed(stage, partition, |route| outputs.settle(route));
    }
    match outputs.failure() {
        Some(error) => Err(Exit::Failed(error)),
        None => Ok(()),
    }
}

pub(crate) async fn run_producer<P: Producer>(
    build: Build<P>,
    dispatch: Dispatch<P, P::Output>,
    policy: RestartPolicy<NoInput>,
    env: StageEnv,
    mut mailbox: Receiver<Mail<Infallible, P::Output>>,
) -> Box<Outcome> {
    let (mut stage, mut restarts) = Restarts::new(build, policy);
    let options = stage.producer_options();
    let Dispatch {
        dispatcher,
        partition,
    } = dispatch;
    let routed = partition.is_some();
    let mut outputs = Outputs::new(
        env.name.clone(),
        dispatcher,
        options,
        routed,
        env.cancels.clone(),
    );
    let mut state = ProducerState::default();
    state.set_demand(options.demand, &mut outputs);
    // Events the stage took in and dropped unemitted (see `Producer::__unemitted`).
    let mut unemitted = 0;
    // Events whose dispatch a panic in the stage's selector or partition function interrupted.
    let mut interrupted = 0;
    let exit = loop {
        state.restart_on_finish = restarts.on_finish();
        let stage_loop = produce(
            &mut stage,
            partition,
            &env,
            &mut mailbox,
            &mut outputs,
            &mut state,
        );
        let (exit, _) = exit_of(env.abort.guard(stage_loop).await);
        interrupted += outputs.take_interrupted().events;
        // A dispatcher that cannot dispatch (a partition function out of range) stays so.
        if outputs.failure().is_some() {
            break exit;
        }
        // A producer ends on its own when it has delivered its last events, unless the pipeline is
        // shutting down.
        let on_its_own = !state.shut_down;
        // A producer that decided to end is judged as of then (see `ProducerState::finished_at`).
        let judged_at = match exit {
            Exit::Finished => state.finished_at.take(),
            _ => None,
        };
        if !restarts.wanted_as_of(&env.name, &exit, on_its_own, None, judged_at) {
            break exit;
        }
        if !farewell(&env.abort, &exit, stage.terminate(&exit.status())).await {
            break Exit::Aborted;
        }
        unemitted += stage.__unemitted().await;
        // The runtime gets its thread back before each restart (see `Restarts::rebuild`).
        tokio::task::yield_now().await;
        match restarts.rebuild(&env.me) {
            Ok(restarted) => stage = restarted,
            Err(exit) => break exit,
        }
        state.exhausted = state.shut_down;
        state.reopen(&mailbox);
        outputs.announce_again();
    };
    // Ending, it refuses messages from outside from now on (`CallError::Ended`), rather than
    // accept them and drop them with its mailbox.
    mailbox.end_to_outside();
    let status = exit.status();
    let exit = terminated(&env, exit, stage.terminate(&status)).await;
    unemitted += stage.__unemitted().await;
    let buffered = outputs.abandon_buffer();
    let mut losses = close_and_count(
        &mut mailbox,
        &InHand::<NoInput>::new(None),
        interrupted,
        0,
        outputs.lost_to_gone_consumers(),
        buffered,
        |_, _| {},
    );
    if unemitted > 0 {
        losses.push(Loss {
            count: unemitted,
            reason: LossReason::NotEmitted,
        });
    }
    losses.extend(outputs.broken());
    Box::new(Outcome {
        exit,
        events_in: 0,
        events_out: outputs.events_out(),
        emitted: outputs.emitted() + unemitted,
        copies: outputs.copies(),
        discarded: outputs.discarded(),
        discards: outputs.discards(),
        excess: 0,
        losses,
        restarts: restarts.count,
        redelivered: 0,
        failures: restarts.failures.into(),
        gave_up: restarts.gave_up,
        sent: outputs.edges(),
        received: Vec::new(),
    })
}

/// A producer's state besides its event path.
#[derive(Default)]
struct ProducerState {
    /// `handle_demand` is not called again: it returned `Emit::last`, a message's callback did, or
    /// the pipeline is shutting down.
    exhausted: bool,
    /// The pipeline is shutting down.
    shut_down: bool,
    /// It has decided to finish and closed its mailbox to messages from outside
    /// ([`Receiver::end_to_outside`]): it takes in those accepted before, and drops its own,
    /// which could keep it going.
    ending: bool,
    /// A shutdown came while the producer could still emit, and it has not been told yet (see
    /// [`heed_shutdown`](Self::heed_shutdown)).
    shutdown_untold: bool,
    /// Calls, casts and infos that arrived while a callback ran, to open next, in order.
    letters: VecDeque<Letter>,
    /// Its demand mode, and the asks recorded while it accumulates.
    modes: DemandModes,
    /// Whether it is restarted if it finishes now: then it is not ending, and messages from
    /// outside are taken in by its next value.
    restart_on_finish: RestartOnFinish,
    /// When it decided to finish (and so to end, its restart not allowed then): however long
    /// what it accepted before takes, its restart is judged as of then, not when it finally
    /// finishes, so that a stage that has refused messages as ending is not made again for it.
    finished_at: Option<std::time::Instant>,
}

impl ProducerState {
    /// Takes messages from outside again, as a producer that is not ending: what it decided about
    /// ending (and when) is forgotten.
    fn reopen<M>(&mut self, mailbox: &Receiver<M>) {
        mailbox.reopen_to_outside();
        self.ending = false;
        self.finished_at = None;
    }

    /// Takes in a control message; says whether the running callback must stop (a shutdown).
    fn control<T: Send + 'static>(&mut self, control: Control, outputs: &mut Outputs<T>) -> bool {
        match control {
            // A producer shutting down takes no more messages, so that senders that keep sending
            // cannot keep it going. Those from outside are refused at its mailbox from the
            // shutdown on (`ControlPort::shut_down`), so their senders know; its own (`ctx.info`,
            // a timer's) are dropped here.
            Control::Letter(letter) => {
                // Once it has decided to end, its own are dropped too: they could keep it going.
                let dropped = self.ending && letter.generation().is_some();
                if !self.shut_down && !dropped {
                    self.letters.push_back(letter);
                }
                false
            }
            Control::Shutdown => {
                if self.shut_down {
                    return false;
                }
                self.shutdown_untold = !self.exhausted;
                self.exhausted = true;
                self.shut_down = true;
                // What the producer holds is delivered: an accumulating producer forwards.
                self.set_demand(DemandMode::Forward, outputs);
                true
            }
            Control::BufferedCount(reply) => {
                let _ = reply.send(outputs.buffered_count());
                false
            }
            Control::SetDemand(mode) => {
                // Once shut down, a producer forwards until it ends (a switch sent since is
                // refused at its mailbox).
                if !self.shut_down {
                    self.set_demand(mode, outputs);
                }
                false
            }
            Control::GetDemand(reply) => {
                let _ = reply.send(self.modes.mode());
                false
            }
        }
    }

    /// Tells the producer of a shutdown that came while it could still emit, once its callback has
    /// stopped: one that delivers what it has taken in (`from_channel`) is asked again until it
    /// emits its last events.
    #[inline]
    fn heed_shutdown<P: Producer>(&mut self, stage: &mut P) {
        // Read before written: this runs once per round of the producer's loop.
        if self.shutdown_untold {
            self.shutdown_untold = false;
            self.exhausted = !stage.__drain_on_shutdown();
        }
    }

    /// Switches the demand mode, holding or releasing the event path to match.
    fn set_demand<T: Send + 'static>(&mut self, mode: DemandMode, outputs: &mut Outputs<T>) {
        match self.modes.set(mode) {
            Switch::None => {}
            Switch::Hold => outputs.set_held(true),
            Switch::Release => outputs.set_held(false),
        }
    }

    /// Takes in a message from downstream; while the producer accumulates, an ask is recorded
    /// instead of given to the dispatcher.
    #[inline]
    fn downstream<T: Send + 'static>(&mut self, mail: Downstream<T>, outputs: &mut Outputs<T>) {
        if !self.modes.forwarding() {
            match mail {
                Downstream::Ask { sub, demand } if self.modes.record(sub, demand) => return,
                Downstream::Cancel { sub, .. } => self.modes.cancel(sub),
                _ => {}
            }
        }
        outputs.handle(mail);
    }

    /// Events the producer emitted: dispatched, or all buffered while it accumulates.
    #[inline]
    fn emit<T: Send + 'static>(
        &self,
        events: Vec<T>,
        outputs: &mut Outputs<T>,
        route: Route<'_, T>,
    ) {
        if self.modes.accumulating() {
            outputs.hold(events);
        } else {
            outputs.emit(events, route);
        }
    }

    /// The demand to call `handle_demand` with when the producer does not simply forward: none
    /// while it accumulates; after a switch to forward, the next recorded ask, given to the
    /// dispatcher now, less what the buffer served of it.
    #[cold]
    fn replay<T: Send + 'static>(&mut self, outputs: &mut Outputs<T>) -> usize {
        match self.modes.next_replay() {
            Some((sub, demand)) => outputs.replay(sub, demand),
            None => 0,
        }
    }
}

async fn produce<P: Producer>(
    stage: &mut P,
    partition: PartitionFn<P, P::Output>,
    env: &StageEnv,
    mailbox: &mut Receiver<Mail<Infallible, P::Output>>,
    outputs: &mut Outputs<P::Output>,
    // `&mut`, not owned: it outlives a restart of the stage.
    state: &mut ProducerState,
) -> Exit {
    stage.init(&mut env.context(None));
    let mut retry = Retry::default();
    // A producer whose partition function splits what it emits, or that broadcasts it, offers its
    // consumers its own wake-up (see `crate::mailbox`): its task's, the same for the task's whole
    // run.
    let own = if outputs.offers_own_wake() {
        Some(OwnWake::current().await)
    } else {
        None
    };
    // The pipeline wires its subscriptions before its stages start: the producer takes them all in,
    // with their first asks, before it first emits, so that no consumer gets the first events
    // only for having subscribed first (a broadcast starts with every consumer, a partition with
    // its consumer). It takes in what its mailbox held when it started, all of it: a message sent
    // before the pipeline ran (a cast) may be in front of the wiring, and only queues a letter
    // here. What comes later waits for the loop, so a sender that keeps casting cannot hold it.
    for _ in 0..mailbox.queued() {
        let Ok(mail) = mailbox.try_recv() else {
            break;
        };
        match mail {
            Mail::Downstream(mail) => state.downstream(mail, outputs),
            // A count sent behind a message that only queued a letter here is answered once that
            // letter is opened, below, so that it counts what the message emits: a cast then
            // `estimate_buffered_count` right after `start()` are taken in order, as GenStage's
            // mailbox takes them. (While `handle_demand` waits, a count is answered at once: a
            // waiting callback does not hold the control path.)
            Mail::Control(control) => match *control {
                Control::BufferedCount(reply) if !state.letters.is_empty() => {
                    state.letters.push_back(count_letter(reply));
                }
                control => {
                    state.control(control, outputs);
                }
            },
            Mail::Upstream(_) => {}
        }
    }
    loop {
        if let Err(exit) = settle(&*stage, partition, outputs) {
            return exit;
        }
        // Its consumers' comings and goings first, then messages, in the order they came: each may
        // emit, or give the producer work.
        // Checked here, not in the callee: an async call costs, on the hot path, even when idle.
        if outputs.has_notices() {
            if let Err(error) = tell_producer(stage, partition, env, outputs, state).await {
                return Exit::Failed(error);
            }
        }
        while let Some(mut letter) = state.letters.pop_front() {
            if let Some(reply) = letter.take_count() {
                let _ = reply.send(outputs.buffered_count());
                continue;
            }
            // An `info_after_buffered` waits behind the buffer (released below).
            let Some(letter) = outputs.place_info(letter) else {
                continue;
            };
            let emit = env.open::<P, P::Output>(stage, letter, None).await;
            match emit {
                Ok(emit) => {
                    state.exhausted |= emit.last;
                    routed(&*stage, partition, |route| {
                        state.emit(emit.events, outputs, route)
                    });
                    env.send_replies();
                    // It may have given the producer something to emit: ask at once.
                    retry.reset();
                }
                Err(error) => {
                    env.send_replies();
                    return Exit::Failed(error);
                }
            }
        }
        // Called after each message taken in (so once per ask while asks come one at a time, as
        // GenStage calls it), and again while the producer emits fewer events than its consumers
        // can take. After a switch from accumulate to forward, once per recorded ask first.
        let demand = if state.modes.forwarding() {
            outputs.demand()
        } else {
            // A replayed ask is new demand: asked for at once, even during a back-off.
            retry.reset();
            state.replay(outputs)
        };
        if demand > 0 && !state.exhausted && retry.due() {
            // While the callback waits, the stage takes in its mail, and stops waiting if its
            // consumers leave or the pipeline shuts down.
            let called = call_serving(stage.handle_demand(demand), mailbox, |mail| match mail {
                Mail::Downstream(mail) => {
                    state.downstream(mail, outputs);
                    outputs.abandoned()
                }
                Mail::Control(control) => state.control(*control, outputs),
                Mail::Upstream(_) => false,
            })
            .await;
            match called {
                Called::Returned(Ok(emit)) => {
                    state.exhausted |= emit.last;
                    if emit.events.is_empty() {
                        if !emit.last {
                            retry.empty(&env.name, demand);
                        }
                    } else {
                        retry.emitted();
                        // Offered once per wait: what the producer emits before it waits goes to
                        // consumers it has woken already, or wakes them.
                        let offer = !state.modes.accumulating() && !mailbox.awaits_hand_off();
                        if let Some(own) = own.as_ref().filter(|_| offer) {
                            let first = routed(&*stage, partition, |route| {
                                outputs.emit_offering(emit.events, own, route)
                            });
                            if let Some(first) = first {
                                mailbox.await_hand_off(own, first);
                            }
                        } else {
                            routed(&*stage, partition, |route| {
                                state.emit(emit.events, outputs, route)
                            });
                        }
                    }
                }
                Called::Returned(Err(error)) => return Exit::Failed(error),
                // Abandoned or shut down: both are read below.
                Called::Stopped => {}
            }
        }
        // A consumer that left is told of before the producer stops for want of consumers.
        if outputs.has_notices() {
            if let Err(error) = tell_producer(stage, partition, env, outputs, state).await {
                return Exit::Failed(error);
            }
        }
        if let Err(exit) = settle(&*stage, partition, outputs) {
            return exit;
        }
        // Infos whose events have gone out are opened as letters, before the producer may end.
        outputs.move_released(&mut state.letters);
        state.heed_shutdown(stage);
        if state.exhausted && outputs.buffered() == 0 && state.letters.is_empty() {
            // Restarted, it is not ending: what comes meanwhile waits for its next value. Once
            // it has decided to end, it does not change its mind (see `finished_at`).
            if !state.shut_down && !state.ending && state.restart_on_finish.now() {
                return Exit::Finished;
            }
            state
                .finished_at
                .get_or_insert_with(|| tokio::time::Instant::now().into_std());
            if last_look(mailbox, &mut state.ending) {
                return if state.shut_down {
                    Exit::ShutDown
                } else {
                    Exit::Finished
                };
            }
        }
        // Left by every consumer, it stops; the same last look first: what it accepted is opened
        // (what that emits has no consumer, and is counted lost as buffered).
        if outputs.abandoned() && last_look(mailbox, &mut state.ending) && state.letters.is_empty()
        {
            return Exit::Cancelled(None);
        }
        // It decided to end, but what its last look took in gave it events, which it holds while
        // it accumulates: it is not ending until it delivers them, and takes messages from outside
        // again, the switch to forward among them.
        if state.ending
            && !state.shut_down
            && state.modes.accumulating()
            && outputs.buffered() > 0
            && !outputs.abandoned()
        {
            state.reopen(mailbox);
        }
        if !state.letters.is_empty() {
            continue;
        }
        // A producer with no consumer to deliver to (it waits for consumers and has none, or none
        // ever subscribed to it): a shutdown ends it now, with what it holds lost, rather than
        // hold the pipeline open.
        if state.shut_down && outputs.alone() {
            return Exit::ShutDown;
        }
        // A round of this loop is a message or a call: either way it spends the task's budget like a
        // message, so that a producer asked for more than it emits per call still lets other tasks
        // run.
        mailbox.consume_budget().await;
        // Accumulating, only mail changes anything; forwarding, an ask (or a message) is what sets
        // a producer with no demand, or with nothing more to emit, going again. Waiting, it takes in
        // what is queued, or waits for it, under one lock.
        let waits_for_mail = if state.modes.forwarding() {
            state.exhausted || outputs.demand() == 0
        } else {
            state.modes.accumulating()
        };
        if waits_for_mail {
            mailbox.ready(true).await;
        }
        match mailbox.try_recv() {
            Ok(Mail::Downstream(mail)) => {
                // Left by its consumers, it decided to end, and a consumer subscribed through the
                // pipeline's handle meanwhile: it goes on, and takes messages from outside again
                // before the consumer hears of the subscription.
                if state.ending && !state.exhausted && matches!(mail, Downstream::Subscribe(_)) {
                    state.reopen(mailbox);
                }
                state.downstream(mail, outputs);
                // New demand is asked for at once, even during a back-off.
                retry.reset();
            }
            Ok(Mail::Control(control)) => {
                state.control(*control, outputs);
            }
            // A producer consumes nothing: the pipeline never subscribes it.
            Ok(Mail::Upstream(_)) => {}
            // Not waiting for mail: replaying, the next round replays the next recorded ask;
            // emitting, the next asks its callback again, after a back-off's pause if it is in one.
            Err(TryRecvError::Empty) => {
                if let Some(at) = retry.waiting_until().filter(|_| state.modes.forwarding()) {
                    tokio::select! {
                        () = mailbox.ready(true) => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
            }
            Err(TryRecvError::Disconnected) => return Exit::Cancelled(None),
        }
    }
}

/// Tells a producer's `handle_consumer_subscribe` and `handle_consumer_cancel` of the consumers that
/// subscribed or left since it last did.
async fn tell_producer<P: Producer>(
    stage: &mut P,
    partition: PartitionFn<P, P::Output>,
    env: &StageEnv,
    outputs: &mut Outputs<P::Output>,
    // `&mut`: a shared reference held across an `.await` would need the state to be `Sync`.
    state: &mut ProducerState,
) -> Result<(), StageError> {
    while let Some(notice) = outputs.next_notice() {
        let mut ctx = env.context(None);
        match notice {
            ConsumerNotice::Subscribed(subscriber) => {
                stage.handle_consumer_subscribe(&subscriber, &mut ctx);
            }
            ConsumerNotice::Cancelled(subscriber, reason) => {
                let events = stage
                    .handle_consumer_cancel(&subscriber, &reason, &mut ctx)
                    .await?;
                routed(&*stage, partition, |route| {
                    state.emit(events, outputs, route)
                });
            }
        }
    }
    Ok(())
}

/// [`tell_producer`] for a producer_consumer, whose callbacks may also ask on its subscriptions.
async fn tell_producer_consumer<S: ProducerConsumer>(
    stage: &mut S,
    partition: PartitionFn<S, S::Output>,
    env: &StageEnv,
    inputs: &mut Inputs<S::Input>,
    outputs: &mut Outputs<S::Output>,
) -> Result<(), StageError> {
    while let Some(notice) = outputs.next_notice() {
        let mut ctx = env.context(Some(&mut *inputs));
        match notice {
            ConsumerNotice::Subscribed(subscriber) => {
                stage.handle_consumer_subscribe(&subscriber, &mut ctx);
            }
            ConsumerNotice::Cancelled(subscriber, reason) => {
                let events = stage
                    .handle_consumer_cancel(&subscriber, &reason, &mut ctx)
                    .await?;
                routed(&*stage, partition, |route| outputs.emit(events, route));
            }
        }
    }
    Ok(())
}

pub(crate) async fn run_producer_consumer<S: ProducerConsumer>(
    build: Build<S>,
    dispatch: Dispatch<S, S::Output>,
    policy: RestartPolicy<S::Input>,
    env: StageEnv,
    mut mailbox: Receiver<Mail<S::Input, S::Output>>,
) -> Box<Outcome> {
    let (mut stage, mut restarts) = Restarts::new(build, policy);
    let options = stage.producer_options();
    if options.demand != DemandMode::Forward {
        tracing::warn!(stage = %env.name, "a producer_consumer has no demand mode (only producers do): its `ProducerOptions::demand` is ignored");
    }
    let mut inputs = Inputs::new(env.name.clone());
    let Dispatch {
        dispatcher,
        partition,
    } = dispatch;
    let routed = partition.is_some();
    let mut outputs = Outputs::new(
        env.name.clone(),
        dispatcher,
        options,
        routed,
        env.cancels.clone(),
    );
    let mut kept = Kept::new(restarts.redelivery());
    // Events emitted from the stage's messages whose dispatch a panic in its selector or partition
    // function interrupted.
    let mut interrupted = 0;
    let (exit, aborted) = loop {
        let stage_loop = transform(
            &mut stage,
            partition,
            &env,
            &mut mailbox,
            &mut inputs,
            &mut outputs,
            &mut kept,
        );
        let (exit, aborted) = exit_of(env.abort.guard(stage_loop).await);
        let dispatching = outputs.take_interrupted();
        if kept.in_hand.held().is_some() && dispatching.whole_emit {
            // The output of the batch in hand, none of it sent, which is lost, or handed again,
            // in its place.
            outputs.retract(dispatching.events);
        } else {
            if dispatching.events > 0 {
                // Part of the batch's output went out already, or the dispatch held events
                // emitted before it (the buffer's): the batch is handled, and the dispatch lost.
                kept.in_hand.done();
            }
            interrupted += dispatching.events;
        }
        // A dispatcher that cannot dispatch (a partition function out of range) stays so.
        if outputs.failure().is_some() {
            break (exit, aborted);
        }
        if kept.stopping || !restarts.wanted(&env.name, &exit, false, kept.in_hand.poison()) {
            break (exit, aborted);
        }
        // Aborted while the failed value says farewell: its batch was lost to its failure, not to
        // the abort.
        if !farewell(&env.abort, &exit, stage.terminate(&exit.status())).await {
            break (Exit::Aborted, false);
        }
        // The runtime gets its thread back before each restart (see `Restarts::rebuild`).
        tokio::task::yield_now().await;
        match restarts.rebuild(&env.me) {
            Ok(restarted) => stage = restarted,
            Err(exit) => break (exit, false),
        }
        kept.restarted(&inputs);
        mailbox.reopen_to_outside();
        outputs.announce_again();
    };
    // Ending, it refuses messages from outside from now on (see `run_producer`).
    mailbox.end_to_outside();
    kept.in_hand.interrupted |= aborted;
    let status = exit.status();
    let exit = terminated(&env, exit, stage.terminate(&status)).await;
    let buffered = outputs.abandon_buffer();
    let waiting = kept.redelivery.len();
    let mut losses = close_and_count(
        &mut mailbox,
        &kept.in_hand,
        kept.failed() + interrupted,
        inputs.unhandled() + waiting,
        outputs.lost_to_gone_consumers(),
        buffered,
        |sub, count| inputs.left(sub, count),
    );
    losses.extend(outputs.broken());
    Box::new(Outcome {
        exit,
        events_in: inputs.events_in - kept.in_hand.batch - kept.failed() - waiting,
        events_out: outputs.events_out(),
        emitted: outputs.emitted(),
        copies: outputs.copies(),
        discarded: outputs.discarded(),
        discards: outputs.discards(),
        excess: inputs.excess,
        losses,
        restarts: restarts.count,
        redelivered: kept.redelivery.count,
        failures: restarts.failures.into(),
        gave_up: restarts.gave_up,
        sent: outputs.edges(),
        received: inputs.edges(|sub| kept.not_handled(sub)),
    })
}

/// Takes in a control message for a stage that is not a producer: letters wait in `letters`. A
/// shutdown closes `inputs`: a stage in the middle ends when its input does, and one that has no
/// producer (added to a running pipeline, never subscribed) ends then. From then on, a
/// producer_consumer takes no more messages from outside, as a producer does, so that senders that
/// keep sending cannot keep its buffer full and its input from ending: its mailbox refuses them
/// from the shutdown on (`ControlPort::shut_down`), so that none reaches here after it, and their
/// senders get `CallError::ShuttingDown`. One with a manual subscription still takes those it
/// sends itself (`ctx.info`, a timer's), until its input has ended: it asks from their callbacks,
/// and without its asks its producers could not deliver what they hold, nor its input end. One in
/// automatic demand drops those too: its own messages could keep its buffer full, and its input
/// waiting for room, as those from outside could. `buffered` is the stage's buffered count; `None`
/// for a consumer, which has no buffer and keeps taking messages (they emit nothing, so they cannot
/// keep it going).
fn queue_control<T>(
    control: Control,
    letters: &mut VecDeque<Letter>,
    inputs: &mut Inputs<T>,
    buffered: Option<usize>,
    ending: bool,
) {
    match control {
        // A stage that has decided to finish drops its own messages, which could keep it going;
        // those from outside it accepted before its close are handled.
        Control::Letter(letter) if ending && letter.generation().is_some() => {}
        // Once a producer_consumer is shutting down, dropped if it asks on none of its
        // subscriptions (see above); from outside, none comes (refused at the mailbox).
        Control::Letter(letter)
            if buffered.is_some()
                && inputs.is_closed()
                && (letter.generation().is_none() || !inputs.has_manual()) => {}
        // A producer_consumer's `info_after_buffered` waits behind the input it has received (a
        // consumer's input is never queued when it takes its mail).
        Control::Letter(letter) if letter.is_after_buffered() && !inputs.is_idle() => {
            inputs.queue_info(letter)
        }
        Control::Letter(letter) => letters.push_back(letter),
        Control::Shutdown => inputs.close(),
        Control::BufferedCount(reply) => {
            let _ = reply.send(buffered.unwrap_or(0));
        }
        // Only producers have a demand mode, and only their references offer it; a dropped reply
        // is answered `NoReply`.
        Control::SetDemand(_) | Control::GetDemand(_) => {}
    }
}

async fn transform<S: ProducerConsumer>(
    stage: &mut S,
    partition: PartitionFn<S, S::Output>,
    env: &StageEnv,
    mailbox: &mut Receiver<Mail<S::Input, S::Output>>,
    inputs: &mut Inputs<S::Input>,
    outputs: &mut Outputs<S::Output>,
    kept: &mut Kept<S::Input>,
) -> Exit {
    stage.init(&mut env.context(Some(&mut *inputs)));
    announce_again(env, inputs, kept, |subscription, ctx| {
        stage.handle_subscribe(subscription, ctx)
    });
    let Kept {
        in_hand,
        letters,
        redelivery,
        stopping,
        ..
    } = kept;
    // Whether its mailbox refuses messages from outside because its input has ended (see below).
    let mut held_closed = false;
    // Whether it has decided to finish and closed its mailbox to outside (see `run_producer`'s
    // `produce`).
    let mut ending = false;
    'run: loop {
        if let Err(exit) = settle(&*stage, partition, outputs) {
            break exit;
        }
        if outputs.has_notices() {
            if let Err(error) = tell_producer_consumer(stage, partition, env, inputs, outputs).await
            {
                break Exit::Failed(error);
            }
        }
        // Once its input has ended, a producer_consumer delivers what it holds and ends, taking no
        // more messages, so that senders that keep sending cannot keep it going: its mailbox
        // refuses those from outside (below), and those it accepted before are opened; its own
        // are dropped, as they could keep it going too.
        if !letters.is_empty() && inputs.exhausted() {
            letters.retain(|letter| letter.generation().is_none());
        }
        // Infos whose events have gone out were taken in before: opened whatever the input.
        outputs.move_released(letters);
        while let Some(letter) = letters.pop_front() {
            // An `info_after_buffered` waits behind the buffer (released above).
            let Some(letter) = outputs.place_info(letter) else {
                continue;
            };
            let emit = env.open::<S, S::Output>(stage, letter, Some(inputs)).await;
            match emit {
                Ok(emit) => {
                    if emit.last {
                        tracing::warn!(stage = %env.name, "a producer_consumer's message callback returned `Emit::last`: a producer_consumer ends when its input does, so only its events are taken");
                    }
                    routed(&*stage, partition, |route| outputs.emit(emit.events, route));
                    env.send_replies();
                }
                Err(error) => {
                    env.send_replies();
                    break 'run Exit::Failed(error);
                }
            }
        }
        // A restarted stage first handles again, one at a time, what its failed value held, while
        // consumers downstream have demand.
        while outputs.capacity() > 0 {
            let Some((index, sub, event)) = redelivery.next() else {
                break;
            };
            let events = vec![event];
            in_hand.take(&events, sub, None, Some(index));
            stage.batch_from(SubscriptionTag(sub));
            let emitted = match stage.handle_events(events).await {
                Ok(emitted) => emitted,
                Err(error) => break 'run Exit::Failed(error),
            };
            // Handled once its output is dispatched, as a batch is (see below).
            routed(&*stage, partition, |route| outputs.emit(emitted, route));
            in_hand.done();
        }
        // Input is handled only while consumers downstream have demand (GenStage §1.8), also when
        // it is queued behind an end notice.
        while let Some(step) = inputs.next_step(outputs.capacity() > 0) {
            match step {
                Step::Subscribed(subscription) => {
                    // Given input again (through the pipeline's handle), it takes messages from
                    // outside again, before its `handle_subscribe` runs.
                    if held_closed || ending {
                        mailbox.reopen_to_outside();
                        (held_closed, ending) = (false, false);
                    }
                    tell_subscribed(env, inputs, &subscription, |subscription, ctx| {
                        stage.handle_subscribe(subscription, ctx)
                    });
                }
                Step::Cancelled {
                    subscription,
                    reason,
                    stop,
                } => {
                    // A stage stopping for its producer's failure stops, whatever its callback
                    // does: a failure there must not restart it.
                    *stopping = stop.is_some();
                    let mut ctx = env.context(Some(&mut *inputs));
                    match stage.handle_cancel(&subscription, &reason, &mut ctx).await {
                        Ok(emitted) => {
                            routed(&*stage, partition, |route| outputs.emit(emitted, route))
                        }
                        Err(error) => break 'run Exit::Failed(error),
                    }
                    if let Some(stop) = stop {
                        break 'run stop.exit();
                    }
                }
                Step::Handle {
                    sub,
                    events,
                    demand,
                } => {
                    // One message may hold many batches: each spends budget as a message does. In
                    // hand before the stage may yield for it: `next_step` counted the batch in, and
                    // an abort there must find it held, to count it lost.
                    in_hand.take(&events, sub, Some(demand), None);
                    if !mailbox.spend_share() {
                        mailbox.consume_budget().await;
                    }
                    stage.batch_from(SubscriptionTag(sub));
                    // While the callback waits, the stage takes in its mail, and stops if its
                    // consumers leave.
                    let called = call_serving(stage.handle_events(events), mailbox, |mail| {
                        match mail {
                            Mail::Upstream(mail) => inputs.handle(mail),
                            Mail::Downstream(mail) => outputs.handle(mail),
                            Mail::Control(control) => queue_control(
                                *control,
                                letters,
                                inputs,
                                Some(outputs.buffered_count()),
                                ending,
                            ),
                        }
                        outputs.abandoned()
                    })
                    .await;
                    let emitted = match called {
                        Called::Returned(Ok(emitted)) => emitted,
                        Called::Returned(Err(error)) => break 'run Exit::Failed(error),
                        Called::Stopped => {
                            in_hand.interrupted = true;
                            // Its consumers have all left: it is told of them before it stops.
                            if let Err(error) =
                                tell_producer_consumer(stage, partition, env, inputs, outputs).await
                            {
                                break 'run Exit::Failed(error);
                            }
                            break 'run Exit::Cancelled(None);
                        }
                    };
                    // The ask's wake-up goes with the output, to the consumer it wakes (see
                    // `crate::mailbox`, "Hand-offs"); failing that, the producer is woken before
                    // the consumer, so that it starts refilling while this stage's output waits
                    // its turn.
                    let producer = inputs.ask(sub, demand);
                    in_hand.asked();
                    routed(&*stage, partition, |route| {
                        outputs.emit_handing_off(emitted, producer, route)
                    });
                    // Handled once its output is dispatched: a selector or partition function
                    // that panics on the output fails the batch, which a redelivering stage
                    // handles again.
                    in_hand.done();
                    if !letters.is_empty() || outputs.has_notices() {
                        continue 'run;
                    }
                }
                // The input in front of it handled: behind the buffer now.
                Step::Info(info) => {
                    if let Some(letter) = outputs.place_info(info) {
                        letters.push_back(letter);
                    }
                }
            }
        }
        if outputs.has_notices() || outputs.has_released() || outputs.unsettled() {
            continue 'run;
        }
        if let Some(error) = outputs.failure() {
            break Exit::Failed(error);
        }
        // Events waiting to be handed again are input too: they wait for demand as the rest does.
        let waiting = redelivery.len() > 0;
        let exhausted = inputs.exhausted();
        if exhausted && !waiting && outputs.buffered() == 0 && last_look(mailbox, &mut ending) {
            break Exit::Finished;
        }
        if outputs.abandoned() {
            break Exit::Cancelled(None);
        }
        // One with no consumer (it waits for consumers and has none, or none ever subscribed to
        // it) can neither handle its input nor deliver its buffer: a shutdown ends it now, with
        // what it holds lost (its producers, left without it, end in turn).
        if inputs.is_closed() && outputs.alone() {
            break Exit::ShutDown;
        }
        // Its input has ended, and it waits to deliver what it holds: while so, a message from
        // outside is refused (`CallError::ShuttingDown`) rather than accepted and dropped (see
        // above), decided under the mailbox's lock, so that one accepted before is taken in. A
        // subscription made meanwhile (through the pipeline's handle) gives it input again, and
        // it takes them again, unless a shutdown has closed its mailbox for good.
        if held_closed != exhausted {
            mailbox.hold_closed_to_outside(exhausted);
            held_closed = exhausted;
            // Given input again, it is no longer ending (its mailbox was opened just now).
            ending &= exhausted;
        }
        // An ask only matters to a producer_consumer with input or output waiting for demand; one
        // with neither takes it in when events next wake it, before them, and is spared a wake-up
        // and a round of its loop per ask.
        let mail = next_mail!(
            mailbox,
            wake_on_ask: !inputs.is_idle() || waiting || outputs.buffered() > 0
        );
        match mail {
            Mail::Upstream(mail) => inputs.handle(mail),
            // Downstream demand reaches a producer_consumer as capacity, read above.
            Mail::Downstream(mail) => outputs.handle(mail),
            Mail::Control(control) => queue_control(
                *control,
                letters,
                inputs,
                Some(outputs.buffered_count()),
                ending,
            ),
        }
    }
}

pub(crate) async fn run_consumer<C: Consumer>(
    build: Build<C>,
    policy: RestartPolicy<C::Input>,
    env: StageEnv,
    mut mailbox: Receiver<Mail<C::Input, Infallible>>,
) -> Box<Outcome> {
    let (mut stage, mut restarts) = Restarts::new(build, policy);
    let mut inputs = Inputs::new(env.name.clone());
    let mut kept = Kept::new(restarts.redelivery());
    let mut children_lost = Vec::new();
    let (exit, aborted) = loop {
        let stage_loop = consume(&mut stage, &env, &mut mailbox, &mut inputs, &mut kept);
        let (exit, aborted) = exit_of(env.abort.guard(stage_loop).await);
        if kept.stopping || !restarts.wanted(&env.name, &exit, false, kept.in_hand.poison()) {
            break (exit, aborted);
        }
        // Aborted while the failed value says farewell: its batch was lost to its failure, not to
        // the abort.
        if !farewell(&env.abort, &exit, stage.terminate(&exit.status())).await {
            break (Exit::Aborted, false);
        }
        // A ConsumerSupervisor's children go with its value.
        children_lost.extend(stage.__child_losses().await);
        // The runtime gets its thread back before each restart (see `Restarts::rebuild`).
        tokio::task::yield_now().await;
        match restarts.rebuild(&env.me) {
            Ok(restarted) => stage = restarted,
            Err(exit) => break (exit, false),
        }
        kept.restarted(&inputs);
        mailbox.reopen_to_outside();
    };
    // Ending, it refuses messages from outside from now on (see `run_producer`).
    mailbox.end_to_outside();
    kept.in_hand.interrupted |= aborted;
    if aborted {
        let handled = stage
            .__handled_of_interrupted_batch()
            .min(kept.in_hand.batch);
        kept.in_hand.batch -= handled;
    }
    let status = exit.status();
    let exit = terminated(&env, exit, stage.terminate(&status)).await;
    let waiting = kept.redelivery.len();
    let mut losses = close_and_count(
        &mut mailbox,
        &kept.in_hand,
        kept.failed(),
        inputs.unhandled() + waiting,
        0,
        0,
        |sub, count| inputs.left(sub, count),
    );
    // A ConsumerSupervisor's events whose children failed, or were aborted: lost, not handled.
    children_lost.extend(stage.__child_losses().await);
    let mut child_losses = 0;
    for &(_, reason, count) in &children_lost {
        Loss::add(&mut losses, count, reason);
        child_losses += count;
    }
    let children_lost_on = |sub: SubscriptionId| -> u64 {
        children_lost
            .iter()
            .filter(|(tag, _, _)| *tag == Some(SubscriptionTag(sub)))
            .map(|&(_, _, count)| count)
            .sum()
    };
    Box::new(Outcome {
        exit,
        events_in: inputs.events_in - kept.in_hand.batch - kept.failed() - waiting - child_losses,
        events_out: 0,
        emitted: 0,
        copies: 0,
        discarded: 0,
        discards: Vec::new(),
        excess: inputs.excess,
        losses,
        restarts: restarts.count,
        redelivered: kept.redelivery.count,
        failures: restarts.failures.into(),
        gave_up: restarts.gave_up,
        sent: Vec::new(),
        received: inputs.edges(|sub| kept.not_handled(sub) + children_lost_on(sub)),
    })
}

/// Tells a restarted stage's new value of its subscriptions to producers, as `handle_subscribe`
/// tells of a new one, if `kept` says it is new; a subscription stays manual once made so.
fn announce_again<S: Send + 'static, T>(
    env: &StageEnv,
    inputs: &mut Inputs<T>,
    kept: &mut Kept<T>,
    mut handle_subscribe: impl FnMut(&crate::subscription::Subscription, &mut Context<'_, S>) -> Demand,
) where
    Inputs<T>: ManualAsks,
{
    if !std::mem::take(&mut kept.announce) {
        return;
    }
    for subscription in inputs.announced() {
        tell_subscribed(env, inputs, &subscription, &mut handle_subscribe);
    }
}

/// Tells the stage of `subscription` through its `handle_subscribe`, whose context may ask on it
/// before it is manual (see [`Context::ask`]), and makes it manual if the callback says so.
fn tell_subscribed<S: Send + 'static, T>(
    env: &StageEnv,
    inputs: &mut Inputs<T>,
    subscription: &crate::subscription::Subscription,
    handle_subscribe: impl FnOnce(&crate::subscription::Subscription, &mut Context<'_, S>) -> Demand,
) where
    Inputs<T>: ManualAsks,
{
    let tag = subscription.tag();
    let mut ctx = env.context(Some(&mut *inputs)).subscribing(tag);
    let demand = handle_subscribe(subscription, &mut ctx);
    let asked = ctx.asked_while_subscribing();
    if demand == Demand::Manual {
        inputs.set_manual(tag);
        // Made now, before the subscription's events are handled: GenStage's `ask/2` in
        // `handle_subscribe` reaches the producer before the callback returns. The subscription
        // is this stage's and manual: the ask cannot be refused.
        let _ = inputs.ask_manual(tag, asked);
    } else if asked > 0 {
        tracing::warn!(
            stage = %env.name,
            "handle_subscribe asked for {asked} events on subscription {} and returned \
             Demand::Automatic: the ask was dropped",
            tag.0
        );
    }
}

async fn consume<C: Consumer>(
    stage: &mut C,
    env: &StageEnv,
    mailbox: &mut Receiver<Mail<C::Input, Infallible>>,
    inputs: &mut Inputs<C::Input>,
    kept: &mut Kept<C::Input>,
) -> Exit {
    stage.init(&mut env.context(Some(&mut *inputs)));
    announce_again(env, inputs, kept, |subscription, ctx| {
        stage.handle_subscribe(subscription, ctx)
    });
    let Kept {
        in_hand,
        letters,
        redelivery,
        stopping,
        ..
    } = kept;
    // Whether it has decided to finish and closed its mailbox to outside (see `produce`).
    let mut ending = false;
    'run: loop {
        while let Some(letter) = letters.pop_front() {
            let opened = env.open::<C, Infallible>(stage, letter, Some(inputs)).await;
            env.send_replies();
            if let Err(error) = opened {
                // A `to_stream` sink told that its stream was dropped stops normally.
                if error.is::<StreamDropped>() {
                    break 'run Exit::Cancelled(None);
                }
                break 'run Exit::Failed(error);
            }
        }
        // A restarted stage first handles again, one at a time, what its failed value held.
        while let Some((index, sub, event)) = redelivery.next() {
            let events = vec![event];
            in_hand.take(&events, sub, None, Some(index));
            stage.batch_from(SubscriptionTag(sub));
            if let Err(error) = stage.handle_events(events).await {
                break 'run Exit::Failed(error);
            }
            in_hand.done();
        }
        while let Some(step) = inputs.next_step(true) {
            match step {
                Step::Subscribed(subscription) => {
                    // Given input again (through the pipeline's handle), it takes messages from
                    // outside again, before its `handle_subscribe` runs.
                    if ending {
                        mailbox.reopen_to_outside();
                        ending = false;
                    }
                    tell_subscribed(env, inputs, &subscription, |subscription, ctx| {
                        stage.handle_subscribe(subscription, ctx)
                    });
                }
                Step::Cancelled {
                    subscription,
                    reason,
                    stop,
                } => {
                    // As for a producer_consumer (see `transform`).
                    *stopping = stop.is_some();
                    let mut ctx = env.context(Some(&mut *inputs));
                    if let Err(error) = stage.handle_cancel(&subscription, &reason, &mut ctx).await
                    {
                        break 'run Exit::Failed(error);
                    }
                    if let Some(stop) = stop {
                        break 'run stop.exit();
                    }
                }
                Step::Handle {
                    sub,
                    events,
                    demand,
                } => {
                    // One message may hold many batches: each spends budget as a message does. In
                    // hand before the stage may yield for it: `next_step` counted the batch in, and
                    // an abort there must find it held, to count it lost.
                    in_hand.take(&events, sub, Some(demand), None);
                    if !mailbox.spend_share() {
                        mailbox.consume_budget().await;
                    }
                    stage.batch_from(SubscriptionTag(sub));
                    if let Err(error) = stage.handle_events(events).await {
                        // A `to_stream` sink whose stream was dropped stops normally; the events
                        // the stream yielded are handled, the rest of the batch is lost.
                        if let Some(dropped) = error.downcast_ref::<StreamDropped>() {
                            in_hand.batch = in_hand.batch.saturating_sub(dropped.delivered);
                            in_hand.interrupted = true;
                            break 'run Exit::Cancelled(None);
                        }
                        break 'run Exit::Failed(error);
                    }
                    in_hand.done();
                    // Dropped at once: the producer is woken if it waits for this ask.
                    drop(inputs.ask(sub, demand));
                }
                // Only a producer_consumer queues infos behind its input.
                Step::Info(letter) => letters.push_back(letter),
            }
        }
        // A ConsumerSupervisor finishes once its children have too (they message it as they end).
        if inputs.exhausted() && !stage.__busy() {
            if last_look(mailbox, &mut ending) {
                break Exit::Finished;
            }
        } else if ending {
            // Given input again (a subscription made through the pipeline's handle).
            mailbox.reopen_to_outside();
            ending = false;
        }
        // A consumer is never asked.
        let mail = next_mail!(mailbox, wake_on_ask: true);
        match mail {
            Mail::Upstream(mail) => inputs.handle(mail),
            // A consumer emits nothing: the pipeline never subscribes anything to it.
            Mail::Downstream(_) => {}
            Mail::Control(control) => queue_control(*control, letters, inputs, None, ending),
        }
    }
}
