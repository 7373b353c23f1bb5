//! The tokio task loops, one per role. Each owns a stage value and its mailbox, and drives the pure
//! parts ([`Inputs`](inputs) for the consumer side, [`Outputs`](outputs) for the producer side) with
//! the messages it receives. A loop returns when its stage is done; the pipeline then tells the
//! stage's neighbours (see [`crate::pipeline`]).

mod by_subscription;
mod inputs;
mod outputs;

use std::convert::Infallible;
use std::sync::Arc;

use crate::dispatcher::DemandDispatcher;
use crate::error::StageError;
use crate::mailbox::{Receiver, TryRecvError};
use crate::protocol::Mail;
use crate::stage::{Consumer, Producer, ProducerConsumer};
use inputs::{Inputs, Step};
use outputs::Outputs;

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
}

/// What a stage task reports when it ends.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) exit: Exit,
    pub(crate) events_in: u64,
    pub(crate) events_out: u64,
    pub(crate) discarded: u64,
    pub(crate) excess: u64,
}

pub(crate) async fn run_producer<P: Producer>(
    mut stage: P,
    name: Arc<str>,
    mut mailbox: Receiver<Mail<Infallible, P::Output>>,
) -> Outcome {
    let options = stage.producer_options();
    let mut outputs = Outputs::new(name, Box::new(DemandDispatcher::new()), options);
    // Demand asked of `handle_demand` and not yet met.
    let mut owed = 0usize;
    // An empty `handle_demand` parks `owed` until new demand arrives, so an idle producer is not polled.
    let mut parked = false;
    let mut exhausted = false;
    let exit = loop {
        if owed > 0 && !parked && !exhausted {
            let emitted = match stage.handle_demand(owed).await {
                Ok(emit) => emit,
                Err(error) => break Exit::Failed(error),
            };
            exhausted = emitted.last;
            parked = emitted.events.is_empty();
            owed = owed.saturating_sub(emitted.events.len());
            outputs.emit(emitted.events);
        }
        if exhausted && outputs.buffered() == 0 {
            break Exit::Finished;
        }
        if outputs.abandoned() {
            break Exit::Cancelled(None);
        }
        let mail = match mailbox.try_recv() {
            Ok(mail) => mail,
            Err(TryRecvError::Empty) => {
                // Demand still owed goes back to `handle_demand` at once; otherwise wait.
                if owed == 0 || parked || exhausted {
                    // An ask is what sets a producer going again.
                    mailbox.ready(true).await;
                }
                continue;
            }
            Err(TryRecvError::Disconnected) => break Exit::Cancelled(None),
        };
        let demand = match mail {
            Mail::Downstream(mail) => outputs.handle(mail),
            // A producer consumes nothing: the pipeline never subscribes it.
            Mail::Upstream(_) => 0,
        };
        if demand > 0 {
            owed += demand;
            parked = false;
        }
    };
    if !matches!(exit, Exit::Finished) {
        outputs.abandon_buffer();
    }
    Outcome {
        exit,
        events_in: 0,
        events_out: outputs.events_out,
        discarded: outputs.discarded,
        excess: 0,
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
                    match stage.handle_events(events).await {
                        Ok(emitted) => {
                            // The ask's wake-up goes with the output, to the consumer it wakes
                            // (see `crate::mailbox`, "Hand-offs"); failing that, the producer is
                            // woken before the consumer, so that it starts refilling while this
                            // stage's output waits its turn (+10% on the seed benchmark).
                            let producer = inputs.ask(sub, demand);
                            outputs.emit_handing_off(emitted, producer);
                        }
                        Err(error) => break 'run Exit::Failed(error),
                    }
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
            // Downstream demand reaches a producer_consumer as capacity, read above; the upstream
            // demand this returns is for producers' `handle_demand`.
            Mail::Downstream(mail) => {
                outputs.handle(mail);
            }
        }
    };
    if !matches!(exit, Exit::Finished) {
        outputs.abandon_buffer();
    }
    Outcome {
        exit,
        events_in: inputs.events_in,
        events_out: outputs.events_out,
        discarded: outputs.discarded,
        excess: inputs.excess,
    }
}

pub(crate) async fn run_consumer<C: Consumer>(
    mut stage: C,
    name: Arc<str>,
    mut mailbox: Receiver<Mail<C::Input, Infallible>>,
) -> Outcome {
    let mut inputs = Inputs::new(name);
    let exit = 'run: loop {
        while let Some(step) = inputs.next_step(true) {
            match step {
                Step::Stop { cause } => break 'run Exit::Cancelled(Some(cause)),
                Step::Handle {
                    sub,
                    events,
                    demand,
                } => {
                    if let Err(error) = stage.handle_events(events).await {
                        break 'run Exit::Failed(error);
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
    Outcome {
        exit,
        events_in: inputs.events_in,
        events_out: 0,
        discarded: 0,
        excess: inputs.excess,
    }
}
