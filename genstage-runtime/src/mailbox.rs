//! A stage's mailbox: an unbounded multi-producer, single-consumer FIFO that wakes one task.
//!
//! tokio's `mpsc` would do, but a mailbox needs less than a general channel: one receiver, which
//! drains it from one task. A mutex around a queue plus the receiver's waker costs one uncontended
//! lock per send, and the receiver takes every queued message under one lock. Every message costs a
//! stage one mailbox round, so this is the runtime's hot path, and the mailbox is measured against
//! `tokio::sync::mpsc::unbounded_channel` on the seed benchmark (see `benches/seed.rs`).
//!
//! All state sits under the one mutex and wakers are called after the lock is released, so there is
//! no lost wake-up: the receiver parks (leaves its waker in the mailbox's [`Slot`]) in the same
//! critical section in which it finds the queue empty, and a sender takes that waker in the same
//! critical section in which it pushes. The slot says who is owed a wake-up; the rule it rests on is
//! written on [`Receiver::ready`], and `mailbox/loom_tests.rs` model-checks it with loom.
//!
//! # Receiving
//! A stage loop waiting for its next message awaits `ready`, which takes in what is queued or, finding
//! nothing, parks, under one lock, and then takes the message with `try_recv`; the message itself never
//! passes through a future's output, which on the hot path costs several copies of it.
//!
//! A stage in steady flow always finds a message, so it would never return `Pending` and could
//! starve the other tasks of its worker. So before each `try_recv` it awaits
//! [`Receiver::consume_budget`], which spends tokio's cooperative budget, as tokio's own channels do
//! per receive, and yields to the runtime once the budget is spent.
//!
//! # Lazy messages
//! A message sent with `send_lazy` is owed a wake-up only if its receiver waits with `wake_on_lazy`;
//! otherwise it stays queued, in order, until another message wakes the receiver. Asks are sent so:
//! a producer_consumer with no input and no buffered output has nothing to do with an ask but count
//! it, so it waits for events alone and takes the ask in before them. That spares it a wake-up and a
//! round of its loop per ask, and spares the runtime the work of scheduling it. The wake-up owed
//! comes back to the sender as a [`DeferredWake`], given when dropped, so that it can be handed off.
//!
//! # Hand-offs
//! A producer_consumer's turn usually wakes two stages: its ask wakes its producer, its events its
//! consumer. tokio runs the last task a worker woke next, from a slot that other workers cannot
//! steal from, and moves the one it displaces to its run queue, unparking an idle worker to take
//! it. For quick stages that is a futex wake-up and a move to another core per batch, with no
//! parallel work worth having. So the ask's wake-up goes with the events instead:
//! [`Sender::send_handing_off`] leaves it with the consumer it wakes, and the consumer gives it as
//! soon as it runs, before it looks at its messages. Each stage is then woken by the one before it,
//! on the same worker.
//!
//! A broadcast chains its consumers the same way: [`Sender::send_deferring`] leaves the wake-up of
//! one consumer with the next one sent the same events, so that they run one after the other on the
//! producer's worker, where a producer that wakes two tasks at once has tokio move one of them to
//! another worker, with a futex wake-up and the events' cache lines (see `run/outputs.rs`).
//!
//! A producer that broadcasts, or whose partition function splits each batch among its consumers,
//! also offers them its own wake-up ([`OwnWake`]): when one takes it, the producer waits for it
//! rather than take its next ask at once, so that the consumers read their events on the core
//! where the producer wrote them, and the producer writes its next batch into memory they freed
//! there. Otherwise a producer with asks queued runs on by itself on one worker and its consumers on
//! the other, and every batch crosses between the cores, twice; and a broadcast's producer, parked,
//! is woken by the first consumer's ask for nothing (it emits once every consumer has asked). It
//! goes on with the asks it has taken in before it waits ([`Receiver::await_hand_off`]), so that
//! one wait covers all its consumers' asks of one turn.
//!
//! Such a chain has nothing to do beside the task that holds it, so each of its wake-ups is given
//! only as that task stops, at the end of its poll ([`Give::AsItWaits`], `mailbox/held.rs`): the
//! producer holds the wake-up of the consumer to run first, and each consumer the next one's, or
//! the producer's. tokio runs at most three woken tasks in a row from its unstealable slot and
//! sends the next through its run queue, waking the other worker, which may take it, and the
//! chain with it: a wake-up given while its holder goes on gives that worker the holder's whole
//! turn to do so, one given as it stops next to none (`benches/dispatch.rs` gives the figures).
//!
//! A hand-off holds the owed task back for the consumer's whole turn, in tokio's unstealable slot:
//! a producer that could run alongside a busy consumer would wait for it. So only a consumer whose
//! last timed busy spell (from being woken to waiting again) lasted at most [`QUICK_SPELL`] takes a
//! hand-off; the owed task of any other is woken at once and first, as without hand-offs, and
//! another worker can take it. `benches/heavy.rs`, whose stages spend tens of microseconds per
//! batch, is the benchmark that checks this.
//!
//! # Disconnection
//! `send` fails, giving the message back, once the receiver is dropped. `try_recv` says
//! `Disconnected` once every sender is dropped and the queue is empty.
//!
//! # Closing to outside
//! A stage shutting down takes no more messages from outside, and its senders must learn so when
//! they send, not find their message dropped later. [`Sender::send_closing`] queues a message (the
//! shutdown) and, in the same critical section, closes the mailbox to
//! [`Sender::send_from_outside`], which is refused from then on: a message from outside is either
//! queued before the shutdown, and taken before it, or refused. A producer_consumer delivering what
//! it holds once its input has ended closes it for as long as that lasts with
//! [`Receiver::hold_closed_to_outside`]. A stage that decides to end closes it with
//! [`Receiver::end_to_outside`] before its last look at its queue ([`Receiver::queued`]): a
//! message from outside is then found by that look, or refused as [`Refused::Ending`]. Other
//! sends (events, asks, the stage's own messages) are not affected and do not read the flag.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::loom::sync::atomic::{AtomicBool, Ordering};
use crate::loom::sync::{Arc, Mutex, MutexGuard};

/// The longest busy spell after which a receiver still takes a hand-off (see the module docs), and so
/// about the longest a hand-off holds back the task it is owed to. A quick stage (a filter, a sum)
/// spends far less per wake-up; a stage whose batches take longer gains more from running alongside
/// its producer than from sharing its worker with it.
pub(crate) const QUICK_SPELL: Duration = Duration::from_micros(10);

/// A stage spends one unit of tokio's cooperative budget per this many messages (see
/// [`Receiver::consume_budget`]): a unit per message cost the seed benchmark measurably (see
/// `benches/seed.rs`), for the thread-local access and the await it takes each time, and a stage's
/// messages are batches, heavier than what a unit stands for in tokio's channels. A stage in steady
/// flow still yields after at most 128 × this many messages.
const MESSAGES_PER_BUDGET_UNIT: u32 = 8;

/// A receiver times one busy spell in this many: reading the clock twice per spell would cost a
/// quick pipeline a noticeable part of its time, and a stage's spells change slowly enough for a
/// sample to tell.
const TIMED_SPELL_EVERY: u32 = 16;

/// Who the mailbox owes a wake-up to, with [`State::waker`]. Senders and the receiver pass it between
/// them under the lock; the rule it encodes is written on [`Receiver::ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Nobody: the receiver is not parked, and no hand-off waits for it. No waker.
    Idle,
    /// The receiver parked in [`Receiver::ready`] and has not locked the mailbox since: it has seen
    /// nothing sent since then, and it locks the mailbox before it sees anything. The waker is the
    /// receiver's task: the sender whose message is to wake it takes it and wakes it, leaving `Idle`,
    /// or a `HandOff` when `takes_hand_off`.
    Parked {
        /// Whether messages sent with [`Sender::send_lazy`] wake it.
        wake_on_lazy: bool,
        /// Whether its last timed busy spell was short enough for it to take a hand-off.
        takes_hand_off: bool,
    },
    /// A hand-off: the waker is another task's, left by the sender that took the receiver's `Parked`
    /// waker and woke it, for the receiver to give at its next lock (before it looks at its
    /// messages) as [`Give`] says, or when it closes. At most one at a time: it replaces only
    /// `Parked`.
    HandOff(Give),
}

/// When a receiver gives a hand-off it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Give {
    /// As soon as it runs: the wake-up of a producer_consumer's producer, which can work beside
    /// the receiver.
    AsItRuns,
    /// As its task's poll ends ([`held::hold`]): a link of the chain of a producer that waits for
    /// its consumers, whose next task has nothing to do beside it (see the module docs).
    AsItWaits,
}

/// What a receiver found in the slot as it cleared it: a hand-off to give, or a stale waker of its own
/// (it runs again) to drop, both outside the lock.
#[must_use = "a hand-off found must be given"]
struct Found {
    slot: Slot,
    waker: Option<Waker>,
}

impl Found {
    /// Gives the hand-off found, if any, as it says; drops a stale waker.
    #[inline]
    fn give(self) {
        match (self.slot, self.waker) {
            (Slot::HandOff(Give::AsItRuns), Some(waker)) => waker.wake(),
            (Slot::HandOff(Give::AsItWaits), Some(waker)) => held::hold(waker),
            _ => {}
        }
    }
}

struct State<M> {
    /// Messages sent and not yet taken, oldest first.
    queue: VecDeque<M>,
    /// The waker `slot` speaks of: `Some` exactly while the slot is not `Idle`. Only the slot's methods
    /// below change either. It sits beside the slot rather than in it because an enum carrying a
    /// waker is 8 bytes larger, and `Shared` would no longer fit one cache line.
    waker: Option<Waker>,
    /// Who is owed a wake-up.
    slot: Slot,
    /// Live senders; when this drops to zero the receiver sees the end of the queue. A `u32` keeps
    /// `Shared` to one cache line; a pipeline holds a few senders per subscription.
    senders: u32,
    /// Whether the receiver still exists: sends fail once it is gone.
    receiving: bool,
    /// Whether [`Sender::send_from_outside`] is taken.
    outside: Outside,
}

/// Whether a mailbox takes messages from outside ([`Sender::send_from_outside`]). One byte, so that
/// `Shared` stays one cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outside {
    /// Taken.
    Open,
    /// Refused for now, by the receiver ([`Receiver::hold_closed_to_outside`]), which may open it
    /// again.
    Held,
    /// Refused for good: set by [`Sender::send_closing`] in the critical section that queues its
    /// message, never left.
    Closed,
    /// Refused because the stage is ending ([`Receiver::end_to_outside`]): opened again only if it
    /// is restarted or given input again.
    Ending,
}

impl<M> State<M> {
    /// The receiver's waker and whether it takes a hand-off, if it is parked and the message (eager,
    /// or lazy) is to wake it; the slot is left `Idle` then, untouched otherwise.
    #[inline]
    fn unpark(&mut self, eager: bool) -> Option<(Waker, bool)> {
        match self.slot {
            Slot::Parked {
                wake_on_lazy,
                takes_hand_off,
            } if eager || wake_on_lazy => {
                self.slot = Slot::Idle;
                self.waker.take().map(|waker| (waker, takes_hand_off))
            }
            _ => None,
        }
    }

    /// Leaves `owed` with the receiver just unparked, for it to give at its next lock, as `give`
    /// says.
    #[inline]
    fn leave_hand_off(&mut self, owed: Waker, give: Give) {
        debug_assert_eq!(self.slot, Slot::Idle);
        self.slot = Slot::HandOff(give);
        self.waker = Some(owed);
    }

    /// Empties the slot as the receiver, running, finds it.
    #[inline]
    fn clear(&mut self) -> Found {
        Found {
            slot: std::mem::replace(&mut self.slot, Slot::Idle),
            waker: self.waker.take(),
        }
    }

    /// Parks the receiver with `waker`, clearing what the slot held.
    #[inline]
    fn park(&mut self, waker: &Waker, wake_on_lazy: bool, takes_hand_off: bool) -> Found {
        let found = match (self.slot, self.waker.take()) {
            // Polled again while parked (woken by something else): the same task, most likely.
            (Slot::Parked { .. }, Some(same)) if same.will_wake(waker) => {
                self.waker = Some(same);
                Found {
                    slot: Slot::Idle,
                    waker: None,
                }
            }
            (slot, old) => {
                self.waker = Some(waker.clone());
                Found { slot, waker: old }
            }
        };
        self.slot = Slot::Parked {
            wake_on_lazy,
            takes_hand_off,
        };
        found
    }
}

/// A wake-up owed to a waiting receiver, taken from its mailbox by [`Sender::send_lazy`]. Dropping it
/// wakes the receiver; [`Sender::send_handing_off`] may instead leave it with another receiver, which
/// gives it as soon as it runs, or, for the chain of a producer that waits for its consumers
/// ([`OwnWake::offer`]), as its task's poll ends. Either way it is given once.
#[must_use = "dropping a DeferredWake wakes its receiver at once"]
pub(crate) struct DeferredWake {
    waker: Option<Waker>,
    /// How a receiver it is left with gives it; the chain it starts passes it on.
    give: Give,
}

impl Default for DeferredWake {
    fn default() -> Self {
        DeferredWake::owed(None)
    }
}

impl DeferredWake {
    /// `waker`, if any, owed as soon as its receiver runs.
    fn owed(waker: Option<Waker>) -> Self {
        DeferredWake {
            waker,
            give: Give::AsItRuns,
        }
    }

    /// Gives it as the poll of the stage's task in progress ends ([`held::hold`]).
    pub(crate) fn hold(mut self) {
        if let Some(waker) = self.waker.take() {
            held::hold(waker);
        }
    }
}

/// A task's own wake-up, offered to the receivers it sends to as a hand-off: a task that sees it
/// taken waits for it ([`Receiver::await_hand_off`]) instead of running on, and runs next after
/// the receiver that gives it, on that receiver's worker (see the module docs). The wake-up it
/// offers records that it was given, so that a task does not wait for a wake-up that came before
/// the wait (while it awaited something else, whose poll it then answered).
pub(crate) struct OwnWake {
    handed: std::sync::Arc<Handed>,
    /// A waker of `handed`, made once: offering it is a reference count's increment.
    waker: Waker,
}

/// The task's waker, and whether the wake-up offered last was given.
struct Handed {
    task: Waker,
    given: AtomicBool,
}

impl std::task::Wake for Handed {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.given.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl OwnWake {
    /// The current task's wake-up.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it completes at its first poll.
    pub(crate) async fn current() -> Self {
        std::future::poll_fn(|cx| {
            let handed = std::sync::Arc::new(Handed {
                task: cx.waker().clone(),
                given: AtomicBool::new(false),
            });
            let waker = Waker::from(handed.clone());
            Poll::Ready(OwnWake { handed, waker })
        })
        .await
    }

    /// The wake-up, not given yet, to hand off with [`Sender::send_handing_off`] or
    /// [`Sender::send_deferring`].
    pub(crate) fn offer(&self) -> DeferredWake {
        self.handed.given.store(false, Ordering::Release);
        DeferredWake {
            waker: Some(self.waker.clone()),
            give: Give::AsItWaits,
        }
    }

    /// Whether a receiver took the offered wake-up, given what is left of the hand-off: if it is
    /// still this task's own, nobody took it, and it is withdrawn without waking the task. What
    /// else is left (the wake-up of the last receiver deferred) stays, for the caller to give.
    pub(crate) fn taken(&self, left: &mut DeferredWake) -> bool {
        match &left.waker {
            Some(waker) if waker.will_wake(&self.waker) => {
                left.waker = None;
                false
            }
            _ => true,
        }
    }
}

impl Drop for DeferredWake {
    #[inline]
    fn drop(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// A sender and the receiver meet on this one cache line (a test keeps it to one): aligned, so that it
/// shares its line with nothing else, and small, so that a send from another core misses once here,
/// not twice.
#[repr(align(64))]
struct Shared<M> {
    state: Mutex<State<M>>,
}

impl<M> Shared<M> {
    fn lock(&self) -> MutexGuard<'_, State<M>> {
        // No code runs user callbacks under this lock, so a poisoned lock still holds a
        // consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending end; cheap to clone.
pub(crate) struct Sender<M> {
    shared: Arc<Shared<M>>,
}

/// The receiving end, owned by the stage's task.
pub(crate) struct Receiver<M> {
    shared: Arc<Shared<M>>,
    /// Messages already taken from the shared queue, in order: the receiver takes the whole queue
    /// under one lock, so a burst of messages costs one lock, not one each.
    taken: VecDeque<M>,
    /// Busy spells so far, counted to time one in [`TIMED_SPELL_EVERY`].
    spells: u32,
    /// When the current busy spell began, if it is timed.
    busy_since: Option<Instant>,
    /// Whether the last timed busy spell lasted at most [`QUICK_SPELL`]; published in the slot each
    /// time the receiver parks.
    quick: bool,
    /// Whether it parked since it last took messages in through [`ready`](Self::ready) (a new one
    /// counts as parked: its task starts as if woken): the next take there begins a busy spell.
    parked: bool,
    /// Messages taken since the task's budget was last spent, below [`MESSAGES_PER_BUDGET_UNIT`].
    unbudgeted: u32,
    /// A receiver took the task's own wake-up ([`OwnWake`]): the next
    /// [`consume_budget`](Self::consume_budget) waits for it, unless it was given already.
    awaits_hand_off: Option<std::sync::Arc<Handed>>,
}

/// Why [`Sender::send_from_outside`] gave its message back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused<M> {
    /// The receiver is gone.
    Gone(M),
    /// The mailbox was closed to messages from outside (see [`Sender::send_closing`]).
    ClosedToOutside(M),
    /// The stage is ending (see [`Receiver::end_to_outside`]).
    Ending(M),
}

/// Why `try_recv` returned no message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and every sender is gone.
    Disconnected,
}

/// A new mailbox.
pub(crate) fn mailbox<M>() -> (Sender<M>, Receiver<M>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waker: None,
            slot: Slot::Idle,
            senders: 1,
            receiving: true,
            outside: Outside::Open,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            taken: VecDeque::new(),
            spells: 0,
            busy_since: None,
            quick: false,
            parked: true,
            unbudgeted: 0,
            awaits_hand_off: None,
        },
    )
}

impl<M> Sender<M> {
    /// Queues `message`, waking the receiver; gives it back when the receiver is gone.
    pub(crate) fn send(&self, message: M) -> Result<(), M> {
        // Woken outside the lock, so the receiver never finds it held.
        if let Some(waker) = self.push(message, true)? {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `message`, waking the receiver; when that wakes a quick receiver, leaves `hand_off`
    /// with it, to be given as soon as the receiver runs (see the module docs). When the receiver is
    /// woken but not quick, `hand_off` is given first; when it is not woken (it is not parked),
    /// `hand_off` stays with the caller. Gives the message back when the receiver is gone.
    pub(crate) fn send_handing_off(
        &self,
        message: M,
        hand_off: &mut DeferredWake,
    ) -> Result<(), M> {
        if hand_off.waker.is_none() {
            return self.send(message);
        }
        self.pass(message, hand_off, false)
    }

    /// Like [`send_handing_off`](Self::send_handing_off), but a quick receiver is not woken: its
    /// wake-up takes the place of `hand_off`, for the caller to hand to the next receiver it sends
    /// to (see the module docs). A receiver that is not quick is woken at once, after `hand_off`.
    /// Gives the message back when the receiver is gone.
    pub(crate) fn send_deferring(&self, message: M, hand_off: &mut DeferredWake) -> Result<(), M> {
        self.pass(message, hand_off, true)
    }

    /// Queues `message` and passes `hand_off` on to a quick receiver it unparks, which is woken,
    /// or, when `defer`, whose wake-up takes `hand_off`'s place (see the two callers).
    #[inline]
    fn pass(&self, message: M, hand_off: &mut DeferredWake, defer: bool) -> Result<(), M> {
        let waker = {
            let mut state = self.enqueue(message)?;
            let Some((waker, quick)) = state.unpark(true) else {
                return Ok(());
            };
            if quick {
                if let Some(owed) = hand_off.waker.take() {
                    state.leave_hand_off(owed, hand_off.give);
                }
                if defer {
                    hand_off.waker = Some(waker);
                    return Ok(());
                }
            }
            waker
        };
        // A hand-off still held here was refused: the owed task goes first, so that tokio's
        // unstealable slot holds the receiver and another worker may take the owed task.
        drop(std::mem::take(hand_off));
        waker.wake();
        Ok(())
    }

    /// Queues `message`; the receiver is owed a wake-up only if it waits with `wake_on_lazy` (see
    /// [`Receiver::ready`]), otherwise the message waits for whatever wakes the receiver next and is
    /// taken in before anything queued after it. The wake-up owed, if any, is returned for the caller
    /// to give or hand off. Gives the message back when the receiver is gone.
    pub(crate) fn send_lazy(&self, message: M) -> Result<DeferredWake, M> {
        self.push(message, false).map(DeferredWake::owed)
    }

    /// Queues `message`, waking the receiver, and closes the mailbox to messages from outside in
    /// the same critical section: every later [`send_from_outside`](Self::send_from_outside) is
    /// refused, and every earlier one is queued in front of `message`. Gives the message back when
    /// the receiver is gone.
    pub(crate) fn send_closing(&self, message: M) -> Result<(), M> {
        let waker = {
            let mut state = self.enqueue(message)?;
            state.outside = Outside::Closed;
            state.unpark(true).map(|(waker, _)| waker)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues a message from outside the receiver's stage, waking the receiver, unless the mailbox
    /// has been closed to such messages ([`send_closing`](Self::send_closing)) or the receiver is
    /// gone, which the error tells, giving the message back. Only messages that may be refused go
    /// this way: the hot ones (events, asks) never read the flag.
    pub(crate) fn send_from_outside(&self, message: M) -> Result<(), Refused<M>> {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiving {
                return Err(Refused::Gone(message));
            }
            match state.outside {
                Outside::Open => {}
                Outside::Ending => return Err(Refused::Ending(message)),
                Outside::Held | Outside::Closed => return Err(Refused::ClosedToOutside(message)),
            }
            state.queue.push_back(message);
            state.unpark(true).map(|(waker, _)| waker)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the receiver still takes messages: false once it has closed or is gone.
    pub(crate) fn is_receiving(&self) -> bool {
        self.shared.lock().receiving
    }

    /// Queues `message`; returns the receiver's waker if the message is to wake it.
    #[inline]
    fn push(&self, message: M, eager: bool) -> Result<Option<Waker>, M> {
        let mut state = self.enqueue(message)?;
        Ok(state.unpark(eager).map(|(waker, _)| waker))
    }

    /// Queues `message` and returns the lock still held, for the caller to take what wakes the
    /// receiver; gives the message back when the receiver is gone.
    #[inline]
    fn enqueue(&self, message: M) -> Result<MutexGuard<'_, State<M>>, M> {
        let mut state = self.shared.lock();
        if !state.receiving {
            return Err(message);
        }
        state.queue.push_back(message);
        Ok(state)
    }
}

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<M> Drop for Sender<M> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 {
                // The end of the queue wakes the receiver like a message would.
                state.unpark(true).map(|(waker, _)| waker)
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<M> Receiver<M> {
    /// Waits until [`try_recv`](Self::try_recv) has an answer other than `Empty`: a message, or the
    /// end of the queue. While it waits, messages sent with [`Sender::send_lazy`] wake it only if
    /// `wake_on_lazy`. With nothing taken in yet, its first poll takes in what is queued or parks,
    /// under one lock: a loop that waits for its next message awaits it first and then calls
    /// `try_recv`, which finds the messages taken in without locking again.
    ///
    /// # The slot's rule
    ///
    /// The mailbox's [`Slot`] is `Parked` only from a poll of this future that returns `Pending` (and
    /// so finds the queue empty) until the first of: a sender takes the waker to wake the receiver's
    /// task, or the receiver locks the mailbox again (this future polled again, or a new one,
    /// `try_recv`, `close`). Each of those locks clears the slot, giving a hand-off found there. So a
    /// sender that finds `Parked` knows that
    /// - the receiver has seen nothing sent since it parked, and will not before it locks again:
    ///   waking its task is owed (if the task dropped this future and runs on, the wake-up is spurious
    ///   and costs one poll);
    /// - whatever the task does next with its mailbox begins with a lock: a hand-off left in the slot
    ///   is given then, before the receiver sees the message that came with it, and only then.
    ///
    /// The slot is `Parked` only while nothing is taken in: the receiver parks with nothing taken
    /// in, and every lock that takes messages in clears the slot. So a poll that finds messages
    /// taken in answers at once, without the lock, and the rule still holds.
    ///
    /// A stage loop that waits on this future alone is parked exactly while the slot says so; one
    /// that polls it beside a callback and drops it (see `run/callback.rs`) runs on with the slot
    /// still `Parked`, which the rule allows for, and [`unpark`](Self::unpark)s once the callback
    /// has returned: a hand-off left with it before its next `try_recv` would otherwise wait for
    /// whatever it awaits next.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes nothing.
    #[inline]
    pub(crate) fn ready(&mut self, wake_on_lazy: bool) -> Ready<'_, M> {
        Ready {
            receiver: self,
            wake_on_lazy,
        }
    }

    /// A poll of [`ready`](Self::ready) with nothing taken in: takes in what is queued, or parks.
    fn poll_ready(&mut self, cx: &mut Context<'_>, wake_on_lazy: bool) -> Poll<()> {
        let mut state = self.shared.lock();
        if !state.queue.is_empty() || state.senders == 0 {
            std::mem::swap(&mut state.queue, &mut self.taken);
            // A hand-off is given at the receiver's first lock after it was left.
            let found = state.clear();
            drop(state);
            found.give();
            // Messages that came while it ran continue its spell.
            if std::mem::take(&mut self.parked) {
                self.start_spell();
            }
            return Poll::Ready(());
        }
        // The busy spell ends as the receiver parks (a timed one: see `start_spell`).
        if let Some(since) = self.busy_since.take() {
            self.quick = since.elapsed() <= QUICK_SPELL;
        }
        let found = state.park(cx.waker(), wake_on_lazy, self.quick);
        drop(state);
        self.parked = true;
        // Gives a hand-off, or drops a stale waker, outside the lock.
        found.give();
        Poll::Pending
    }

    /// Counts a busy spell beginning now, and times one in [`TIMED_SPELL_EVERY`].
    #[inline]
    fn start_spell(&mut self) {
        if self.spells.is_multiple_of(TIMED_SPELL_EVERY) {
            self.busy_since = crate::loom::spell_clock();
        }
        self.spells = self.spells.wrapping_add(1);
    }

    /// Counts the message the caller is about to take against its share of the task's budget, when
    /// that share is not spent yet: `true`, and nothing is left to do; otherwise `false`, and the
    /// caller spends it with [`consume_budget`](Self::consume_budget), which may yield.
    #[inline]
    pub(crate) fn spend_share(&mut self) -> bool {
        if self.unbudgeted + 1 < MESSAGES_PER_BUDGET_UNIT {
            self.unbudgeted += 1;
            return true;
        }
        false
    }

    /// Makes [`consume_budget`](Self::consume_budget) return `Pending` once, for a task whose own
    /// wake-up a receiver took ([`OwnWake::taken`]): that receiver wakes it, at its next look at
    /// its mailbox or as it closes. `first` is the wake-up of the receiver to run first (the one
    /// that hands on to the others), held until the task's poll ends ([`held`]), however it ends:
    /// woken earlier, that receiver would wait in tokio's run queue while the task goes on, where
    /// another worker may take it, and the whole chain with it.
    ///
    /// The task first goes on with the messages it has taken in already (those queued at its last
    /// look), and sends what they give to receivers that are not woken yet: a producer whose two
    /// consumers asked in the same turn emits for both asks, and its consumers take both batches in
    /// one turn, where waiting after each ask doubles the turns of all three. What comes later
    /// waits, so that the task does not run on by itself (see the module docs).
    ///
    /// When `own` was given by the time the task waits, the task wakes itself (it yields once, as
    /// that wake-up would have had it do): given while the task awaited something else on the way,
    /// the wake-up woke that await, and waiting for it again would wait for good, with nothing to
    /// wake the task (it is not parked in its mailbox). Yielding rather than running on measured
    /// faster (the partition with the baselines' batches, 1.09 of its baseline against 0.89). (It
    /// waits at an await its loop has anyway rather than at one of its own: an await more in a
    /// stage's loop cost the ping-pong benchmark 3%.)
    #[inline]
    pub(crate) fn await_hand_off(&mut self, own: &OwnWake, first: DeferredWake) {
        self.awaits_hand_off = Some(own.handed.clone());
        first.hold();
    }

    /// Whether the task is to wait for a wake-up of its own that a receiver took
    /// ([`await_hand_off`](Self::await_hand_off)) and has not waited yet: it does not offer it
    /// again meanwhile, since a new offer forgets whether the one taken was given.
    #[inline]
    pub(crate) fn awaits_hand_off(&self) -> bool {
        self.awaits_hand_off.is_some()
    }

    /// Spends the task's cooperative budget (tokio's `task::coop`) on the message the caller is about
    /// to take with [`try_recv`](Self::try_recv): one unit per [`MESSAGES_PER_BUDGET_UNIT`]
    /// messages. Once the budget is spent, first yields to the runtime, which runs the worker's other
    /// tasks and then this one with a fresh budget. tokio grants a task 128 units each time it is
    /// scheduled, and its channels spend one per receive; a stage spends them a little more slowly,
    /// since each of its messages is a batch, so that one whose mailbox never runs dry still lets the
    /// tasks beside it run. Outside a tokio task the budget is unlimited.
    ///
    /// A task to wait for a hand-off ([`await_hand_off`](Self::await_hand_off)) waits here instead,
    /// once it has nothing taken in.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes nothing.
    #[inline]
    pub(crate) fn consume_budget(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            // A task to wait for a hand-off waits once it has done what it has taken in.
            if self.taken.is_empty() {
                if let Some(handed) = self.awaits_hand_off.take() {
                    if handed.given.load(Ordering::Acquire) {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
            }
            if self.spend_share() {
                return Poll::Ready(());
            }
            let restore = std::task::ready!(tokio::task::coop::poll_proceed(cx));
            restore.made_progress();
            self.unbudgeted = 0;
            Poll::Ready(())
        })
    }

    /// How many messages are queued now: the next `queued()` calls of
    /// [`try_recv`](Self::try_recv) return them, in order.
    pub(crate) fn queued(&self) -> usize {
        self.taken.len() + self.shared.lock().queue.len()
    }

    /// The next message if one is queued now.
    #[inline]
    pub(crate) fn try_recv(&mut self) -> Result<M, TryRecvError> {
        if let Some(message) = self.taken.pop_front() {
            return Ok(message);
        }
        self.take_queued()
    }

    /// Unparks the receiver of a task that polled [`ready`](Self::ready) beside other work and
    /// runs on without it (see `run/callback.rs`): a `Parked` slot left behind would let a sender
    /// leave it a hand-off (the wake-up of a producer that then waits for it) that it gives only at
    /// its next lock, which a callback awaited meanwhile may put off for as long as it waits, or
    /// for good, if it waits for that producer. A hand-off already left is given now. Nothing is
    /// taken in: what is queued is found at the next lock.
    pub(crate) fn unpark(&mut self) {
        let found = {
            let mut state = self.shared.lock();
            if state.slot == Slot::Idle {
                return;
            }
            state.clear()
        };
        found.give();
    }

    /// Takes every queued message under one lock; returns the first.
    fn take_queued(&mut self) -> Result<M, TryRecvError> {
        let mut state = self.shared.lock();
        std::mem::swap(&mut state.queue, &mut self.taken);
        // A `Parked` found here was left by a `ready` that was dropped: the receiver runs on.
        let found = state.clear();
        let disconnected = state.senders == 0;
        drop(state);
        found.give();
        match self.taken.pop_front() {
            Some(message) => Ok(message),
            None if disconnected => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<M> Receiver<M> {
    /// Closes the mailbox to messages from outside, as [`Sender::send_closing`] does, while
    /// `closed`, for a stage that is ending by itself: every later
    /// [`Sender::send_from_outside`] is refused, and every earlier one is queued. Opened again
    /// (`closed` false), it takes them as before, unless a `send_closing` closed it for good; an
    /// ending stage ([`end_to_outside`](Self::end_to_outside)) held closed stays ending.
    pub(crate) fn hold_closed_to_outside(&self, closed: bool) {
        self.turn_to_outside(if closed { Outside::Held } else { Outside::Open });
    }

    /// Closes the mailbox to messages from outside for a stage that has decided to end: every
    /// later [`Sender::send_from_outside`] is refused with [`Refused::Ending`] (unless a
    /// `send_closing` closed it for good), and every earlier one is queued, for the stage's last
    /// look at its mailbox ([`queued`](Self::queued)) to find.
    pub(crate) fn end_to_outside(&self) {
        self.turn_to_outside(Outside::Ending);
    }

    /// Opens the mailbox to messages from outside again for a stage restarted (or given input
    /// again) after it decided to end, unless a `send_closing` closed it for good.
    pub(crate) fn reopen_to_outside(&self) {
        self.turn_to_outside(Outside::Open);
    }

    /// The receiver's one rule for what it asks of messages from outside: a `send_closing`'s
    /// `Closed` is for good, and an ending stage held closed stays ending; otherwise `to`.
    fn turn_to_outside(&self, to: Outside) {
        let mut state = self.shared.lock();
        state.outside = match (state.outside, to) {
            (Outside::Closed, _) => Outside::Closed,
            (Outside::Ending, Outside::Held) => Outside::Ending,
            (_, to) => to,
        };
    }

    /// Stops receiving: every later send fails and gives its message back to its sender. Returns
    /// every message not yet received, in order, so that the stage can account for them. Idempotent.
    pub(crate) fn close(&mut self) -> VecDeque<M> {
        let (queued, found) = {
            let mut state = self.shared.lock();
            state.receiving = false;
            (std::mem::take(&mut state.queue), state.clear())
        };
        // A hand-off the receiver never gave is given now, outside the lock.
        found.give();
        let mut left = std::mem::take(&mut self.taken);
        left.extend(queued);
        left
    }
}

/// The future of [`Receiver::ready`].
pub(crate) struct Ready<'a, M> {
    receiver: &'a mut Receiver<M>,
    wake_on_lazy: bool,
}

impl<M> Future for Ready<'_, M> {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Messages already taken in answer at once, without a call: the common case in steady flow.
        if !this.receiver.taken.is_empty() {
            return Poll::Ready(());
        }
        this.receiver.poll_ready(cx, this.wake_on_lazy)
    }
}

impl<M> Drop for Receiver<M> {
    fn drop(&mut self) {
        // Messages (and the senders they may hold) are dropped outside the lock.
        drop(self.close());
    }
}

mod held;
pub(crate) use held::GivesHeld;

#[cfg(all(test, loom))]
mod loom_tests;

// Under loom these would run outside a loom model, which loom's primitives refuse.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::Wake;

    /// Counts its wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How a stage loop receives: `ready`, which takes in what is queued or parks, then `try_recv`.
    async fn recv<M>(receiver: &mut Receiver<M>) -> Option<M> {
        loop {
            receiver.ready(true).await;
            match receiver.try_recv() {
                Ok(message) => return Some(message),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
        }
    }

    /// Polls `future` once with `waker`.
    fn poll_once<F: Future>(future: F, waker: &Waker) -> Poll<F::Output> {
        let mut cx = Context::from_waker(waker);
        std::pin::pin!(future).as_mut().poll(&mut cx)
    }

    fn poll_recv<M>(receiver: &mut Receiver<M>, waker: &Arc<CountingWaker>) -> Poll<Option<M>> {
        poll_once(recv(receiver), &Waker::from(waker.clone()))
    }

    /// Polls `ready` once.
    fn poll_ready<M>(
        receiver: &mut Receiver<M>,
        waker: &Arc<CountingWaker>,
        wake_on_lazy: bool,
    ) -> Poll<()> {
        poll_once(receiver.ready(wake_on_lazy), &Waker::from(waker.clone()))
    }

    #[test]
    fn a_lazy_send_waits_for_the_next_eager_one_and_keeps_its_place() {
        let (tx, mut rx) = mailbox();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert_eq!(poll_ready(&mut rx, &waker, false), Poll::Pending);
        drop(tx.send_lazy(1).unwrap());
        drop(tx.send_lazy(2).unwrap());
        assert_eq!(waker.0.load(Ordering::SeqCst), 0);
        tx.send(3).unwrap();
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_ready(&mut rx, &waker, false), Poll::Ready(()));
        let got: Vec<i32> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn a_lazy_send_owes_a_wake_up_to_a_receiver_that_waits_for_it() {
        let (tx, mut rx) = mailbox();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert_eq!(poll_ready(&mut rx, &waker, true), Poll::Pending);
        let owed = tx.send_lazy(1).unwrap();
        assert_eq!(waker.0.load(Ordering::SeqCst), 0);
        drop(owed);
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_ready(&mut rx, &waker, false), Poll::Ready(()));
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[test]
    fn a_lazy_send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox();
        drop(rx);
        assert!(matches!(tx.send_lazy(5), Err(5)));
    }

    /// Appends its name to a shared log when woken, to tell the order of wake-ups.
    struct LoggingWaker {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Wake for LoggingWaker {
        fn wake(self: Arc<Self>) {
            self.log.lock().unwrap().push(self.name);
        }
    }

    /// A waker that appends `name` to `log` when woken ([`LoggingWaker`]).
    pub(super) fn logging_waker(log: &Arc<Mutex<Vec<&'static str>>>, name: &'static str) -> Waker {
        Waker::from(Arc::new(LoggingWaker {
            name,
            log: log.clone(),
        }))
    }

    /// The wake-up of the task that `waker` wakes, as [`OwnWake::current`] takes it.
    fn current_own_wake(waker: &Waker) -> OwnWake {
        let Poll::Ready(own) = poll_once(OwnWake::current(), waker) else {
            panic!("the current task's wake-up is taken at once");
        };
        own
    }

    /// A producer's mailbox and a consumer's, both waiting, and the wake-up owed to the producer by
    /// an ask: the state in which a producer_consumer emits. The log records wake-ups.
    struct HandOffScene {
        consumer_tx: Sender<&'static str>,
        consumer_rx: Receiver<&'static str>,
        consumer_waker: Waker,
        owed: DeferredWake,
        log: Arc<Mutex<Vec<&'static str>>>,
        _producer_rx: Receiver<&'static str>,
    }

    fn hand_off_scene(consumer_quick: bool) -> HandOffScene {
        let log = Arc::new(Mutex::new(Vec::new()));
        let waker = |name| logging_waker(&log, name);
        let (producer_tx, mut producer_rx) = mailbox();
        let (consumer_tx, mut consumer_rx) = mailbox();
        let consumer_waker = waker("consumer");
        let producer_waker = waker("producer");
        consumer_rx.quick = consumer_quick;
        assert_eq!(
            poll_once(producer_rx.ready(true), &producer_waker),
            Poll::Pending
        );
        assert_eq!(
            poll_once(consumer_rx.ready(true), &consumer_waker),
            Poll::Pending
        );
        let owed = producer_tx.send_lazy("ask").unwrap();
        assert!(
            log.lock().unwrap().is_empty(),
            "the ask's wake-up is owed, not given"
        );
        HandOffScene {
            consumer_tx,
            consumer_rx,
            consumer_waker,
            owed,
            log,
            _producer_rx: producer_rx,
        }
    }

    #[test]
    fn a_quick_receiver_takes_a_hand_off_and_gives_it_when_it_runs() {
        let mut scene = hand_off_scene(true);
        scene
            .consumer_tx
            .send_handing_off("events", &mut scene.owed)
            .unwrap();
        drop(scene.owed);
        assert_eq!(*scene.log.lock().unwrap(), ["consumer"]);
        // The consumer runs: the producer is woken before the consumer sees its events.
        let mut cx = Context::from_waker(&scene.consumer_waker);
        let ready = std::pin::pin!(scene.consumer_rx.ready(true))
            .as_mut()
            .poll(&mut cx);
        assert_eq!(ready, Poll::Ready(()));
        assert_eq!(*scene.log.lock().unwrap(), ["consumer", "producer"]);
        assert_eq!(scene.consumer_rx.try_recv(), Ok("events"));
    }

    #[test]
    fn a_receiver_that_is_not_quick_takes_no_hand_off_and_the_owed_task_goes_first() {
        let mut scene = hand_off_scene(false);
        scene
            .consumer_tx
            .send_handing_off("events", &mut scene.owed)
            .unwrap();
        assert_eq!(*scene.log.lock().unwrap(), ["producer", "consumer"]);
        drop(scene.owed);
        assert_eq!(
            scene.log.lock().unwrap().len(),
            2,
            "each wake-up is given once"
        );
    }

    #[test]
    fn a_hand_off_stays_with_the_sender_when_the_receiver_is_already_awake() {
        let mut scene = hand_off_scene(true);
        scene.consumer_tx.send("first").unwrap();
        assert_eq!(*scene.log.lock().unwrap(), ["consumer"]);
        scene
            .consumer_tx
            .send_handing_off("second", &mut scene.owed)
            .unwrap();
        assert_eq!(*scene.log.lock().unwrap(), ["consumer"]);
        drop(scene.owed);
        assert_eq!(*scene.log.lock().unwrap(), ["consumer", "producer"]);
    }

    #[test]
    fn a_receiver_dropped_before_it_runs_gives_its_hand_off() {
        let mut scene = hand_off_scene(true);
        scene
            .consumer_tx
            .send_handing_off("events", &mut scene.owed)
            .unwrap();
        drop(scene.consumer_rx);
        assert_eq!(*scene.log.lock().unwrap(), ["consumer", "producer"]);
    }

    /// Two consumers waiting, quick or not, and a producer's own wake-up, as a partitioned
    /// producer holds them when it emits; the log records wake-ups.
    struct OwnWakeScene {
        first: (Sender<&'static str>, Receiver<&'static str>, Waker),
        second: (Sender<&'static str>, Receiver<&'static str>, Waker),
        own: OwnWake,
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    fn own_wake_scene(quick: bool) -> OwnWakeScene {
        let log = Arc::new(Mutex::new(Vec::new()));
        let waker = |name| logging_waker(&log, name);
        let consumer = |name| {
            let (tx, mut rx) = mailbox();
            let waker = waker(name);
            rx.quick = quick;
            assert_eq!(poll_once(rx.ready(true), &waker), Poll::Pending);
            (tx, rx, waker)
        };
        let (first, second) = (consumer("first"), consumer("second"));
        let own = current_own_wake(&waker("producer"));
        OwnWakeScene {
            first,
            second,
            own,
            log,
        }
    }

    /// Whether `receiver`, running, finds a message at once, as a stage's loop does.
    fn runs<M>(receiver: &mut Receiver<M>, waker: &Waker) -> bool {
        poll_once(receiver.ready(true), waker).is_ready()
    }

    #[test]
    fn an_own_wake_up_goes_down_a_chain_of_quick_receivers_and_wakes_its_task_after_them() {
        let mut scene = own_wake_scene(true);
        let mut hand_off = scene.own.offer();
        scene.first.0.send_deferring("a", &mut hand_off).unwrap();
        scene.second.0.send_handing_off("b", &mut hand_off).unwrap();
        assert!(scene.own.taken(&mut hand_off));
        drop(hand_off);
        assert_eq!(*scene.log.lock().unwrap(), ["second"], "one task woken");
        assert!(runs(&mut scene.second.1, &scene.second.2));
        assert_eq!(*scene.log.lock().unwrap(), ["second", "first"]);
        assert!(runs(&mut scene.first.1, &scene.first.2));
        assert_eq!(*scene.log.lock().unwrap(), ["second", "first", "producer"]);
    }

    #[test]
    fn an_own_wake_up_that_nobody_takes_is_withdrawn_without_waking_its_task() {
        let scene = own_wake_scene(true);
        // Both consumers are awake already: neither is owed a wake-up, so neither takes one.
        scene.first.0.send("woken").unwrap();
        scene.second.0.send("woken").unwrap();
        let mut hand_off = scene.own.offer();
        scene.first.0.send_deferring("a", &mut hand_off).unwrap();
        scene.second.0.send_handing_off("b", &mut hand_off).unwrap();
        assert!(!scene.own.taken(&mut hand_off));
        drop(hand_off);
        assert_eq!(*scene.log.lock().unwrap(), ["first", "second"]);
    }

    #[test]
    fn an_own_wake_up_refused_by_a_busy_receiver_wakes_its_task_at_once() {
        let scene = own_wake_scene(false);
        let mut hand_off = scene.own.offer();
        scene.first.0.send_handing_off("a", &mut hand_off).unwrap();
        assert!(scene.own.taken(&mut hand_off), "not left with the task");
        assert_eq!(*scene.log.lock().unwrap(), ["producer", "first"]);
        // Given at once: the task yields once, woken at once, rather than wait for it.
        let (mut rx, _, woken, waker) = task_awaiting_hand_offs();
        rx.await_hand_off(&scene.own, DeferredWake::default());
        assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Pending);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
    }

    /// A task's mailbox, its own wake-up, and the count of its wake-ups with the waker that counts
    /// them.
    fn task_awaiting_hand_offs() -> (Receiver<u32>, OwnWake, Arc<CountingWaker>, Waker) {
        let (_, rx) = mailbox::<u32>();
        let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let own = current_own_wake(&waker);
        (rx, own, woken, waker)
    }

    #[test]
    fn an_unparked_receiver_takes_no_hand_off_and_is_not_woken() {
        let scene = own_wake_scene(true);
        let (tx, mut rx, _) = scene.first;
        // Parked by a `ready` polled beside a callback, which returned: the stage runs on.
        rx.unpark();
        let mut hand_off = scene.own.offer();
        tx.send_handing_off("a", &mut hand_off).unwrap();
        assert!(!scene.own.taken(&mut hand_off), "nobody took it");
        drop(hand_off);
        assert!(scene.log.lock().unwrap().is_empty(), "nobody woken");
        assert_eq!(rx.try_recv(), Ok("a"));
    }

    #[test]
    fn unparking_gives_a_hand_off_left_meanwhile() {
        let scene = own_wake_scene(true);
        let (tx, mut rx, _) = scene.first;
        let mut hand_off = scene.own.offer();
        tx.send_handing_off("a", &mut hand_off).unwrap();
        assert!(scene.own.taken(&mut hand_off));
        assert_eq!(*scene.log.lock().unwrap(), ["first"]);
        rx.unpark();
        assert_eq!(*scene.log.lock().unwrap(), ["first", "producer"]);
    }

    #[test]
    fn a_task_that_awaits_a_hand_off_waits_once_at_its_next_budget_and_wakes_nobody() {
        let (mut rx, own, woken, waker) = task_awaiting_hand_offs();
        let offered = own.offer();
        rx.await_hand_off(&own, DeferredWake::default());
        {
            let mut cx = Context::from_waker(&waker);
            let mut budget = std::pin::pin!(rx.consume_budget());
            assert_eq!(budget.as_mut().poll(&mut cx), Poll::Pending);
            assert_eq!(budget.as_mut().poll(&mut cx), Poll::Ready(()));
        }
        assert!(rx.awaits_hand_off.is_none());
        assert_eq!(
            poll_once(rx.consume_budget(), &waker),
            Poll::Ready(()),
            "it waits once"
        );
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "it wakes nobody");
        drop(offered);
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "the hand-off wakes the task"
        );
    }

    /// Polls `task` once as a stage's task is polled ([`GivesHeld`]), with a waker that does
    /// nothing.
    pub(super) fn poll_as_a_stage<T>(task: impl Future<Output = T>) -> Poll<T> {
        let mut task = GivesHeld::new(Box::pin(task));
        Pin::new(&mut task).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_producer_s_chain_starts_as_its_poll_ends_and_each_link_is_given_as_its_receiver_s_ends() {
        let mut scene = own_wake_scene(true);
        let (mut rx, _, woken, waker) = task_awaiting_hand_offs();
        let log = scene.log.clone();
        let producer = poll_as_a_stage(std::future::poll_fn(|_| {
            let mut hand_off = scene.own.offer();
            scene.first.0.send_deferring("a", &mut hand_off).unwrap();
            scene.second.0.send_deferring("b", &mut hand_off).unwrap();
            assert!(scene.own.taken(&mut hand_off));
            rx.await_hand_off(&scene.own, hand_off);
            assert!(
                log.lock().unwrap().is_empty(),
                "held while the producer runs"
            );
            assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Pending);
            Poll::<()>::Pending
        }));
        assert_eq!(producer, Poll::Pending);
        assert_eq!(
            *scene.log.lock().unwrap(),
            ["second"],
            "given as its poll ends"
        );
        let second = &mut scene.second;
        let log = scene.log.clone();
        let second_ran = poll_as_a_stage(std::future::poll_fn(|_| {
            assert!(runs(&mut second.1, &second.2));
            assert_eq!(
                *log.lock().unwrap(),
                ["second"],
                "held while the receiver runs"
            );
            Poll::Ready(())
        }));
        assert_eq!(second_ran, Poll::Ready(()));
        assert_eq!(*scene.log.lock().unwrap(), ["second", "first"]);
        // Outside a stage's poll, a receiver gives its link at its first look, as before.
        assert!(runs(&mut scene.first.1, &scene.first.2));
        assert_eq!(*scene.log.lock().unwrap(), ["second", "first", "producer"]);
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            0,
            "the task's own waker is not this one"
        );
    }

    #[test]
    fn a_producer_consumer_s_hand_off_is_given_as_soon_as_its_receiver_runs() {
        let mut scene = hand_off_scene(true);
        scene
            .consumer_tx
            .send_handing_off("events", &mut scene.owed)
            .unwrap();
        let log = scene.log.clone();
        let consumer = &mut scene.consumer_rx;
        let waker = scene.consumer_waker.clone();
        let ran = poll_as_a_stage(std::future::poll_fn(|_| {
            assert!(runs(consumer, &waker));
            assert_eq!(
                *log.lock().unwrap(),
                ["consumer", "producer"],
                "given at once"
            );
            Poll::Ready(())
        }));
        assert_eq!(ran, Poll::Ready(()));
    }

    #[test]
    fn a_task_awaiting_a_hand_off_goes_on_with_the_messages_it_took_in_first() {
        let (tx, mut rx) = mailbox::<u32>();
        let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let own = current_own_wake(&waker);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(rx.try_recv(), Ok(1), "both taken in, one left");
        let offered = own.offer();
        rx.await_hand_off(&own, DeferredWake::default());
        // What came after its last look waits for the hand-off.
        tx.send(3).unwrap();
        assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Ready(()));
        assert!(rx.awaits_hand_off());
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Pending);
        assert!(!rx.awaits_hand_off());
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            0,
            "it waits for the hand-off"
        );
        drop(offered);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Ready(()));
        assert_eq!(rx.try_recv(), Ok(3));
    }

    /// The hand-off was given while the task awaited something else on its way to the wait (a
    /// callback, a restart's yield), which that wake-up let run on: waiting for it once more
    /// would wait for good. (Found by the chaos test, seed 7 296 223: a partitioned producer
    /// restarted after its partition function panicked hung the shutdown.)
    #[test]
    fn a_task_does_not_wait_for_a_hand_off_given_already() {
        let (mut rx, own, woken, waker) = task_awaiting_hand_offs();
        let offered = own.offer();
        rx.await_hand_off(&own, DeferredWake::default());
        drop(offered);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        // It yields once, as the wake-up it got would have had it do, and wakes itself for it.
        assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Pending);
        assert_eq!(woken.0.load(Ordering::SeqCst), 2, "it woke itself");
        assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Ready(()));
        // A new offer is not given yet: waited for, without a wake-up of its own.
        let offered = own.offer();
        rx.await_hand_off(&own, DeferredWake::default());
        assert_eq!(poll_once(rx.consume_budget(), &waker), Poll::Pending);
        assert_eq!(woken.0.load(Ordering::SeqCst), 2);
        drop(offered);
        assert_eq!(woken.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_long_busy_spell_makes_a_receiver_not_quick() {
        let (tx, mut rx) = mailbox();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        rx.quick = true;
        tx.send(1).unwrap();
        // The first spell is timed: it starts when `ready` finds the message and ends when the
        // receiver next waits.
        assert_eq!(poll_ready(&mut rx, &waker, true), Poll::Ready(()));
        assert_eq!(rx.try_recv(), Ok(1));
        std::thread::sleep(QUICK_SPELL * 100);
        assert_eq!(poll_ready(&mut rx, &waker, true), Poll::Pending);
        assert!(!rx.quick);
        assert!(matches!(
            rx.shared.lock().slot,
            Slot::Parked {
                takes_hand_off: false,
                ..
            }
        ));
    }

    #[test]
    fn a_receiver_that_stopped_waiting_is_unparked_at_its_next_lock() {
        let (tx, mut rx) = mailbox();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        // Polled once and dropped, as a stage waiting on a callback does.
        assert_eq!(poll_ready(&mut rx, &waker, true), Poll::Pending);
        assert!(matches!(rx.shared.lock().slot, Slot::Parked { .. }));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert!(matches!(rx.shared.lock().slot, Slot::Idle));
        tx.send(1).unwrap();
        assert_eq!(
            waker.0.load(Ordering::SeqCst),
            0,
            "a receiver that no longer waits is not woken"
        );
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[test]
    fn a_hand_off_left_with_a_receiver_that_stopped_waiting_is_given_at_its_next_try_recv() {
        let mut scene = hand_off_scene(true);
        // The consumer's task was polled and dropped its wait, as a stage waiting on a callback
        // does; the hand-off comes with events, and the consumer's next look at its mailbox gives
        // it before returning them.
        scene
            .consumer_tx
            .send_handing_off("events", &mut scene.owed)
            .unwrap();
        assert_eq!(*scene.log.lock().unwrap(), ["consumer"]);
        assert_eq!(scene.consumer_rx.try_recv(), Ok("events"));
        assert_eq!(*scene.log.lock().unwrap(), ["consumer", "producer"]);
        drop(scene.owed);
        assert_eq!(
            scene.log.lock().unwrap().len(),
            2,
            "each wake-up is given once"
        );
    }

    #[test]
    fn a_mailbox_is_one_cache_line() {
        assert_eq!(
            std::mem::size_of::<Shared<crate::protocol::Mail<u64, u64>>>(),
            64
        );
    }

    #[test]
    fn messages_come_out_in_order() {
        let (tx, mut rx) = mailbox();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        let got: Vec<i32> = (0..5).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_send_wakes_a_waiting_receiver_once() {
        let (tx, mut rx) = mailbox();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert_eq!(poll_recv(&mut rx, &waker), Poll::Pending);
        tx.send(7).unwrap();
        tx.send(8).unwrap();
        // The first send takes the waker; the second finds none registered.
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_recv(&mut rx, &waker), Poll::Ready(Some(7)));
        assert_eq!(poll_recv(&mut rx, &waker), Poll::Ready(Some(8)));
    }

    #[test]
    fn recv_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = mailbox();
        let second = tx.clone();
        tx.send(1).unwrap();
        drop(tx);
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert_eq!(poll_recv(&mut rx, &waker), Poll::Ready(Some(1)));
        assert_eq!(poll_recv(&mut rx, &waker), Poll::Pending);
        drop(second);
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_recv(&mut rx, &waker), Poll::Ready(None));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn a_sender_sees_whether_the_receiver_still_receives() {
        let (sender, mut receiver) = mailbox::<u8>();
        assert!(sender.is_receiving());
        drop(receiver.close());
        assert!(!sender.is_receiving());
        let (sender, receiver) = mailbox::<u8>();
        drop(receiver);
        assert!(!sender.is_receiving());
    }

    #[test]
    fn a_send_closing_refuses_later_sends_from_outside_and_no_other() {
        let (tx, mut rx) = mailbox();
        tx.send_from_outside("before").unwrap();
        tx.send_closing("shutdown").unwrap();
        assert_eq!(
            tx.send_from_outside("after"),
            Err(Refused::ClosedToOutside("after"))
        );
        tx.send("own").unwrap();
        drop(tx.send_lazy("ask").unwrap());
        let got: Vec<_> = (0..4).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, ["before", "shutdown", "own", "ask"]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(rx.close());
        assert_eq!(tx.send_from_outside("late"), Err(Refused::Gone("late")));
    }

    #[test]
    fn a_receiver_holds_its_mailbox_closed_to_outside_until_it_opens_it_but_not_after_a_closing() {
        let (tx, mut rx) = mailbox();
        rx.hold_closed_to_outside(true);
        assert_eq!(
            tx.send_from_outside("held"),
            Err(Refused::ClosedToOutside("held"))
        );
        tx.send("own").unwrap();
        rx.hold_closed_to_outside(false);
        tx.send_from_outside("open again").unwrap();
        tx.send_closing("shutdown").unwrap();
        rx.hold_closed_to_outside(false);
        assert_eq!(
            tx.send_from_outside("after"),
            Err(Refused::ClosedToOutside("after"))
        );
        let got: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, ["own", "open again", "shutdown"]);
    }

    #[test]
    fn a_receiver_ending_refuses_messages_from_outside_until_it_reopens_but_not_after_a_closing() {
        let (tx, mut rx) = mailbox();
        tx.send_from_outside("before").unwrap();
        rx.end_to_outside();
        assert_eq!(tx.send_from_outside("late"), Err(Refused::Ending("late")));
        // Held closed while ending, it stays ending; opened, it takes them again.
        rx.hold_closed_to_outside(true);
        assert_eq!(tx.send_from_outside("held"), Err(Refused::Ending("held")));
        rx.reopen_to_outside();
        tx.send_from_outside("reopened").unwrap();
        tx.send_closing("shutdown").unwrap();
        rx.end_to_outside();
        assert_eq!(
            tx.send_from_outside("after"),
            Err(Refused::ClosedToOutside("after"))
        );
        rx.reopen_to_outside();
        assert_eq!(
            tx.send_from_outside("after"),
            Err(Refused::ClosedToOutside("after"))
        );
        let got: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, ["before", "reopened", "shutdown"]);
    }

    #[test]
    fn send_gives_the_message_back_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox();
        tx.send(String::from("queued")).unwrap();
        drop(rx);
        assert_eq!(tx.send(String::from("late")), Err(String::from("late")));
    }

    #[test]
    fn every_message_from_many_threads_arrives_once_in_per_sender_order() {
        const SENDERS: u64 = 4;
        const EACH: u64 = 20_000;
        let (tx, mut rx) = mailbox::<(u64, u64)>();
        let threads: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        tx.send((sender, i)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut next = [0u64; SENDERS as usize];
        runtime.block_on(async {
            while let Some((sender, i)) = recv(&mut rx).await {
                assert_eq!(i, next[sender as usize], "sender {sender} out of order");
                next[sender as usize] += 1;
            }
        });
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(next, [EACH; SENDERS as usize]);
    }
}
