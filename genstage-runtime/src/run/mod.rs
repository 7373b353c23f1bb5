//! The tokio task loops, one per role. Each owns a stage value and its mailbox, and drives the pure
//! parts ([`Inputs`](inputs) for the consumer side, [`Outputs`](outputs) for the producer side) with
//! the messages it receives. A loop returns when its stage is done; the pipeline then tells the
//! stage's neighbours (see [`crate::pipeline`]).

mod by_subscription;
mod callback;
mod inputs;
mod outputs;
mod retry;

use std::convert::Infallible;
use std::sync::Arc;

use crate::dispatcher::DemandDispatcher;
use crate::error::StageError;
use crate::mailbox::{Receiver, TryRecvError};
use crate::protocol::{Mail, Upstream};
use crate::report::{Loss, LossReason};
use crate::stage::{Consumer, Producer, ProducerConsumer};
use callback::{call, call_serving, Called};
use inputs::{Inputs, Step};
use outputs::Outputs;
use retry::Retry;

pub(crate) use callback::panic_message;

/// The next message of a stage loop's mailbox. When none is queued, waits for one and `continue`s the
/// loop, which first does whatever the wait made possible; when every sender is gone, `break`s it.
/// A macro, not an async fn: the message must not pass through a future's output (see
/// [`crate::mailbox`]).
macro_rules! next_mail {
    ($mailbox:ident, wake_on_ask: $wake_on_ask:expr) => {
        match $mailbox.try_recv() {
            Ok(mail) => mail,
            Err(TryRecvError::Empty) => {
                $mailbox.ready($wake_on_ask).await;
                continue;
            }
            Err(TryRecvError::Disconnected) => break Exit::Cancelled(None),
        }
    };
}

/// How a stage task ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// It ran to completion: its input ended and everything it emitted was delivered.
    Finished,
    /// It stopped because the named stage failed upstream (a permanent or transient subscription), or
    /// because every consumer it had left.
    Cancelled(Option<Arc<str>>),
    /// Its callback returned an error.
    Failed(StageError),
    /// Its callback panicked with this message.
    Panicked(String),
}

/// What a stage task reports when it ends.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) exit: Exit,
    pub(crate) events_in: u64,
    pub(crate) events_out: u64,
    pub(crate) emitted: u64,
    pub(crate) discarded: u64,
    pub(crate) excess: u64,
    pub(crate) losses: Vec<Loss>,
}

/// The events a stage had in hand when it stopped, by reason.
#[derive(Debug, Default)]
struct InHand {
    /// The batch its callback failed, panicked or was dropped on.
    failed_batch: u64,
    /// Whether that batch was dropped because the stage had to stop, rather than failed.
    interrupted: bool,
}

impl InHand {
    /// Closes the mailbox and counts what the stage leaves behind: `unhandled` events already taken
    /// from the mailbox, every event still in it, what it sent to consumers that had gone, and its
    /// buffer.
    fn losses<In, Out>(
        &self,
        mailbox: &mut Receiver<Mail<In, Out>>,
        unhandled: u64,
        consumer_gone: u64,
        buffered: u64,
    ) -> Vec<Loss> {
        let in_mailbox: u64 = mailbox
            .close()
            .iter()
            .map(|mail| match mail {
                Mail::Upstream(Upstream::Events { events, .. }) => events.len() as u64,
                _ => 0,
            })
            .sum();
        let (failed, interrupted) = if self.interrupted {
            (0, self.failed_batch)
        } else {
            (self.failed_batch, 0)
        };
        [
            (failed, LossReason::FailedBatch),
            (unhandled + in_mailbox + interrupted, LossReason::Unhandled),
            (consumer_gone, LossReason::ConsumerGone),
            (buffered, LossReason::Buffered),
        ]
        .into_iter()
        .filter(|&(count, _)| count > 0)
        .map(|(count, reason)| Loss { count, reason })
        .collect()
    }
}

pub(crate) async fn run_producer<P: Producer>(
    mut stage: P,
    name: Arc<str>,
    mut mailbox: Receiver<Mail<Infallible, P::Output>>,
) -> Outcome {
    let options = stage.producer_options();
    let mut outputs = Outputs::new(name.clone(), Box::new(DemandDispatcher::new()), options);
    let mut retry = Retry::default();
    let mut exhausted = false;
    let exit = loop {
        // One call per ask, as GenStage makes it, or more while the producer emits fewer events than
        // its consumers can take.
        let demand = outputs.demand();
        if demand > 0 && !exhausted && retry.due() {
            // While the callback waits, the stage takes in its mail, and stops if its consumers
            // leave.
            let called = call_serving(stage.handle_demand(demand), &mut mailbox, |mail| {
                if let Mail::Downstream(mail) = mail {
                    outputs.handle(mail);
                }
                outputs.abandoned()
            })
            .await;
            match called {
                Called::Returned(Ok(emit)) => {
                    exhausted = emit.last;
                    if emit.events.is_empty() {
                        if !exhausted {
                            retry.empty(&name, demand);
                        }
                    } else {
                        retry.emitted();
                        outputs.emit(emit.events);
                    }
                }
                Called::Returned(Err(error)) => break Exit::Failed(error),
                Called::Panicked(message) => break Exit::Panicked(message),
                Called::Stopped => break Exit::Cancelled(None),
            }
        }
        if exhausted && outputs.buffered() == 0 {
            break Exit::Finished;
        }
        if outputs.abandoned() {
            break Exit::Cancelled(None);
        }
        match mailbox.try_recv() {
            Ok(Mail::Downstream(mail)) => {
                outputs.handle(mail);
                // New demand is asked for at once, even during a back-off.
                retry.reset();
            }
            // A producer consumes nothing: the pipeline never subscribes it.
            Ok(Mail::Upstream(_)) => {}
            Err(TryRecvError::Empty) => {
                if exhausted || outputs.demand() == 0 {
                    // An ask is what sets a producer going again.
                    mailbox.ready(true).await;
                } else if let Some(at) = retry.at().filter(|_| !retry.due()) {
                    tokio::select! {
                        () = mailbox.ready(true) => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
            }
            Err(TryRecvError::Disconnected) => break Exit::Cancelled(None),
        }
    };
    let buffered = outputs.abandon_buffer();
    let losses =
        InHand::default().losses(&mut mailbox, 0, outputs.lost_to_gone_consumers, buffered);
    Outcome {
        exit,
        events_in: 0,
        events_out: outputs.events_out,
        emitted: outputs.emitted(),
        discarded: outputs.discarded(),
        excess: 0,
        losses,
    }
}

pub(crate) async fn run_producer_consumer<S: ProducerConsumer>(
    mut stage: S,
    name: Arc<str>,
    mut mailbox: Receiver<Mail<S::Input, S::Output>>,
) -> Outcome {
    let options = stage.producer_options();
    let mut inputs = Inputs::new(name.clone());
    let mut outputs = Outputs::new(name, Box::new(DemandDispatcher::new()), options);
    let mut in_hand = InHand::default();
    let exit = 'run: loop {
        // Input is handled only while consumers downstream have demand (GenStage §1.8), also when
        // it is queued behind an end notice.
        while let Some(step) = inputs.next_step(outputs.capacity() > 0) {
            match step {
                Step::Stop { cause } => break 'run Exit::Cancelled(Some(cause)),
                Step::Handle {
                    sub,
                    events,
                    demand,
                } => {
                    let len = events.len() as u64;
                    // While the callback waits, the stage takes in its mail, and stops if its
                    // consumers leave.
                    let called = call_serving(stage.handle_events(events), &mut mailbox, |mail| {
                        match mail {
                            Mail::Upstream(mail) => inputs.handle(mail),
                            Mail::Downstream(mail) => outputs.handle(mail),
                        }
                        outputs.abandoned()
                    })
                    .await;
                    let emitted = match called {
                        Called::Returned(Ok(emitted)) => emitted,
                        Called::Returned(Err(error)) => {
                            in_hand.failed_batch = len;
                            break 'run Exit::Failed(error);
                        }
                        Called::Panicked(message) => {
                            in_hand.failed_batch = len;
                            break 'run Exit::Panicked(message);
                        }
                        Called::Stopped => {
                            in_hand.failed_batch = len;
                            in_hand.interrupted = true;
                            break 'run Exit::Cancelled(None);
                        }
                    };
                    // The ask's wake-up goes with the output, to the consumer it wakes (see
                    // `crate::mailbox`, "Hand-offs"); failing that, the producer is woken before
                    // the consumer, so that it starts refilling while this stage's output waits
                    // its turn.
                    let producer = inputs.ask(sub, demand);
                    outputs.emit_handing_off(emitted, producer);
                }
            }
        }
        if inputs.exhausted() && outputs.buffered() == 0 {
            break Exit::Finished;
        }
        if outputs.abandoned() {
            break Exit::Cancelled(None);
        }
        // An ask only matters to a producer_consumer with input or output waiting for demand; one
        // with neither takes it in when events next wake it, before them, and is spared a wake-up
        // and a round of its loop per ask.
        let mail = next_mail!(mailbox, wake_on_ask: !inputs.is_idle() || outputs.buffered() > 0);
        match mail {
            Mail::Upstream(mail) => inputs.handle(mail),
            // Downstream demand reaches a producer_consumer as capacity, read above.
            Mail::Downstream(mail) => outputs.handle(mail),
        }
    };
    let buffered = outputs.abandon_buffer();
    let losses = in_hand.losses(
        &mut mailbox,
        inputs.unhandled(),
        outputs.lost_to_gone_consumers,
        buffered,
    );
    Outcome {
        exit,
        events_in: inputs.events_in - in_hand.failed_batch,
        events_out: outputs.events_out,
        emitted: outputs.emitted(),
        discarded: outputs.discarded(),
        excess: inputs.excess,
        losses,
    }
}

pub(crate) async fn run_consumer<C: Consumer>(
    mut stage: C,
    name: Arc<str>,
    mut mailbox: Receiver<Mail<C::Input, Infallible>>,
) -> Outcome {
    let mut inputs = Inputs::new(name);
    let mut in_hand = InHand::default();
    let exit = 'run: loop {
        while let Some(step) = inputs.next_step(true) {
            match step {
                Step::Stop { cause } => break 'run Exit::Cancelled(Some(cause)),
                Step::Handle {
                    sub,
                    events,
                    demand,
                } => {
                    let len = events.len() as u64;
                    match call(stage.handle_events(events)).await {
                        Called::Returned(Ok(())) => {}
                        Called::Returned(Err(error)) => {
                            in_hand.failed_batch = len;
                            break 'run Exit::Failed(error);
                        }
                        Called::Panicked(message) => {
                            in_hand.failed_batch = len;
                            break 'run Exit::Panicked(message);
                        }
                        Called::Stopped => {}
                    }
                    // Dropped at once: the producer is woken if it waits for this ask.
                    drop(inputs.ask(sub, demand));
                }
            }
        }
        if inputs.exhausted() {
            break Exit::Finished;
        }
        // A consumer is never asked.
        let mail = next_mail!(mailbox, wake_on_ask: true);
        match mail {
            Mail::Upstream(mail) => inputs.handle(mail),
            // A consumer emits nothing: the pipeline never subscribes anything to it.
            Mail::Downstream(_) => {}
        }
    };
    let losses = in_hand.losses(&mut mailbox, inputs.unhandled(), 0, 0);
    Outcome {
        exit,
        events_in: inputs.events_in - in_hand.failed_batch,
        events_out: 0,
        emitted: 0,
        discarded: 0,
        excess: inputs.excess,
        losses,
    }
}
