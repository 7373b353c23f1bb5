//! The mailbox's synchronisation, model-checked with loom: each test runs its threads in every
//! interleaving of the mailbox's lock operations and of the wake-ups it gives (up to
//! `LOOM_MAX_PREEMPTIONS` preemptions when set), and asserts in each what the mailbox promises: every
//! message accepted arrives once, the wake-up owed by a hand-off is given exactly once, and a receiver
//! that parks is woken. A receiver that is never woken shows as a deadlock: loom's `block_on` parks
//! its thread until the waker is called.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p genstage-runtime --release --lib mailbox::loom_tests`
//! (`.ci/run` does, in its own target directory).

use super::*;
use loom::future::block_on;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use std::task::Wake;

/// Counts its wake-ups in a loom atomic, so that loom orders them with everything else.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    /// A waker and its count.
    fn new() -> (std::sync::Arc<Self>, Waker) {
        let counter = std::sync::Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a stage loop receives: `ready`, which takes in what is queued or parks, then `try_recv`.
async fn recv<M>(receiver: &mut Receiver<M>, wake_on_lazy: bool) -> Option<M> {
    loop {
        receiver.ready(wake_on_lazy).await;
        match receiver.try_recv() {
            Ok(message) => return Some(message),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
    }
}

/// Asserts that nobody is parked and no hand-off waits: the slot is `Idle`, with no waker.
fn assert_idle<M>(receiver: &Receiver<M>) {
    let state = receiver.shared.lock();
    assert_eq!(state.slot, Slot::Idle);
    assert!(state.waker.is_none(), "an idle slot holds a waker");
}

/// A message that counts how many times it is dropped, in `drops[id]`.
struct Token {
    id: usize,
    drops: std::sync::Arc<[AtomicUsize; 2]>,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

/// A producer_consumer hands the wake-up its ask owes its producer to its consumer, while the
/// consumer parks or finds the events first. Quick or not, the owed wake-up is given exactly once,
/// and never stays in the slot once the consumer has seen the events; the consumer is woken.
#[test]
fn a_hand_off_racing_ready_is_given_once_and_the_receiver_wakes() {
    for quick in [true, false] {
        loom::model(move || {
            let (tx, mut rx) = mailbox::<u32>();
            rx.quick = quick;
            let (owed_to, owed_waker) = CountingWaker::new();
            let sender = thread::spawn(move || {
                let mut owed = DeferredWake::owed(Some(owed_waker));
                tx.send_handing_off(7, &mut owed).unwrap();
                // A hand-off the consumer did not take is given here.
                drop(owed);
            });
            assert_eq!(block_on(recv(&mut rx, true)), Some(7));
            // Running, the receiver is not `Parked`, and a hand-off left with it was given before it
            // looked at its messages.
            assert_idle(&rx);
            sender.join().unwrap();
            assert_eq!(owed_to.count(), 1, "the owed wake-up is given exactly once");
            // The sender is gone: the end of the queue wakes the receiver too.
            assert_eq!(block_on(recv(&mut rx, true)), None);
            assert_eq!(owed_to.count(), 1);
        });
    }
}

/// A broadcasting producer_consumer sends to two consumers, chained: the first one's wake-up goes
/// with the second one's batch, while both park or find their batches first. Quick or not, both
/// consumers are woken and receive their batch, and the wake-up owed to the producer_consumer's own
/// producer is given exactly once.
#[test]
fn a_chain_of_deferred_wake_ups_wakes_every_receiver() {
    for quick in [true, false] {
        loom::model(move || {
            let (first_tx, mut first_rx) = mailbox::<u32>();
            let (second_tx, mut second_rx) = mailbox::<u32>();
            first_rx.quick = quick;
            second_rx.quick = true;
            let (owed_to, owed_waker) = CountingWaker::new();
            let sender = thread::spawn(move || {
                let mut owed = DeferredWake::owed(Some(owed_waker));
                first_tx.send_deferring(1, &mut owed).unwrap();
                second_tx.send_handing_off(2, &mut owed).unwrap();
                // What the last consumer did not take is given here, as `Outputs::flush` does.
                drop(owed);
                (first_tx, second_tx)
            });
            let first = thread::spawn(move || {
                let received = block_on(recv(&mut first_rx, true));
                assert_idle(&first_rx);
                received
            });
            assert_eq!(block_on(recv(&mut second_rx, true)), Some(2));
            assert_idle(&second_rx);
            assert_eq!(first.join().unwrap(), Some(1));
            let _senders = sender.join().unwrap();
            assert_eq!(owed_to.count(), 1, "the owed wake-up is given exactly once");
        });
    }
}

/// A partitioned producer sends to two consumers, chained, offering its own wake-up with them, and
/// waits for it if one took it, while both consumers park or find their batches first. Each runs as
/// a stage's task does ([`GivesHeld`]): the producer holds the wake-up of the consumer to run
/// first, and each consumer the link it finds, until its poll ends. Quick or not, both consumers
/// receive their batch and the producer runs on: a wake-up it waits for is always given (a
/// producer never woken shows as a deadlock).
#[test]
fn a_producer_that_hands_off_its_own_wake_up_is_woken() {
    for quick in [true, false] {
        loom::model(move || {
            let (first_tx, mut first_rx) = mailbox::<u32>();
            let (second_tx, mut second_rx) = mailbox::<u32>();
            first_rx.quick = quick;
            second_rx.quick = true;
            let producer = thread::spawn(move || {
                let (_producer_tx, mut producer_rx) = mailbox::<u32>();
                block_on(GivesHeld::new(Box::pin(async move {
                    let own = OwnWake::current().await;
                    let mut hand_off = own.offer();
                    first_tx.send_deferring(1, &mut hand_off).unwrap();
                    second_tx.send_deferring(2, &mut hand_off).unwrap();
                    // Taken, what is left (the second consumer's wake-up, if it took one) is held
                    // until the producer waits, at its next budget.
                    if own.taken(&mut hand_off) {
                        producer_rx.await_hand_off(&own, hand_off);
                    } else {
                        drop(hand_off);
                    }
                    producer_rx.consume_budget().await;
                    (first_tx, second_tx)
                })))
            });
            let first = thread::spawn(move || {
                let received = block_on(GivesHeld::new(Box::pin(recv(&mut first_rx, true))));
                assert_idle(&first_rx);
                received
            });
            let second = block_on(GivesHeld::new(Box::pin(recv(&mut second_rx, true))));
            assert_eq!(second, Some(2));
            assert_idle(&second_rx);
            assert_eq!(first.join().unwrap(), Some(1));
            let _senders = producer.join().unwrap();
        });
    }
}

/// As [`a_chain_of_deferred_wake_ups_wakes_every_receiver`], with what may become of the second
/// consumer, the one left the first's wake-up: it is not quick (it is woken after the first's
/// wake-up is given), or it parks and is then dropped (gone: the send fails, or the wake-up left
/// with it is given as it closes). The first consumer is woken and receives its batch either way,
/// and the wake-up owed to the producer_consumer's producer is given exactly once.
#[test]
fn a_chain_wakes_its_first_receiver_whatever_becomes_of_the_second() {
    for (second_quick, second_gone) in [(false, false), (true, true), (false, true)] {
        loom::model(move || {
            let (first_tx, mut first_rx) = mailbox::<u32>();
            let (second_tx, mut second_rx) = mailbox::<u32>();
            first_rx.quick = true;
            second_rx.quick = second_quick;
            let (owed_to, owed_waker) = CountingWaker::new();
            let sender = thread::spawn(move || {
                let mut owed = DeferredWake::owed(Some(owed_waker));
                first_tx.send_deferring(1, &mut owed).unwrap();
                let sent = second_tx.send_handing_off(2, &mut owed).is_ok();
                drop(owed);
                (first_tx, second_tx, sent)
            });
            let second = thread::spawn(move || {
                if second_gone {
                    // Parks once, then its stage ends.
                    let (_woken, waker) = CountingWaker::new();
                    let mut cx = Context::from_waker(&waker);
                    let mut ready = std::pin::pin!(second_rx.ready(true));
                    let _ = ready.as_mut().poll(&mut cx);
                    drop(second_rx);
                    None
                } else {
                    let received = block_on(recv(&mut second_rx, true));
                    assert_idle(&second_rx);
                    received
                }
            });
            assert_eq!(block_on(recv(&mut first_rx, true)), Some(1));
            assert_idle(&first_rx);
            let received = second.join().unwrap();
            let (_first_tx, _second_tx, sent) = sender.join().unwrap();
            if !second_gone {
                assert!(sent);
                assert_eq!(received, Some(2));
            }
            assert_eq!(owed_to.count(), 1, "the owed wake-up is given exactly once");
        });
    }
}

/// The receiver parks, drops its wait, looks once more and is dropped while two senders send, one
/// handing off. A message accepted is received or dropped with the receiver, never stranded in the
/// queue; one refused comes back to its sender; the owed wake-up is given exactly once.
#[test]
fn a_receiver_dropped_while_senders_send_strands_no_message_and_no_wake_up() {
    loom::model(|| {
        let (tx, mut rx) = mailbox::<Token>();
        rx.quick = true;
        let tx2 = tx.clone();
        let drops = std::sync::Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let (owed_to, owed_waker) = CountingWaker::new();
        let token = |id| Token {
            id,
            drops: drops.clone(),
        };
        let (first, second) = (token(0), token(1));
        let handing_off = thread::spawn(move || {
            let mut owed = DeferredWake::owed(Some(owed_waker));
            let accepted = tx.send_handing_off(first, &mut owed).is_ok();
            drop(owed);
            // The sender is returned, so that the queue outlives the thread.
            (accepted, tx)
        });
        let plain = thread::spawn(move || (tx2.send(second).is_ok(), tx2));

        let (_, receiver_waker) = CountingWaker::new();
        {
            let mut cx = Context::from_waker(&receiver_waker);
            let _ = std::pin::pin!(rx.ready(true)).as_mut().poll(&mut cx);
        }
        // Its wait dropped, as a stage waiting on a callback does, the receiver looks once more: that
        // lock leaves nobody parked and no hand-off behind, whatever the senders did meanwhile.
        let received = rx.try_recv().ok().map(|token| token.id);
        assert_idle(&rx);
        drop(rx);

        let (first_accepted, _tx) = handing_off.join().unwrap();
        let (second_accepted, _tx2) = plain.join().unwrap();
        // Both senders still live, so the shared queue does too: a token accepted after the
        // receiver was gone would still sit in it, undropped.
        for id in 0..2 {
            assert_eq!(
                drops[id].load(Ordering::SeqCst),
                1,
                "token {id} was dropped other than once"
            );
        }
        if let Some(id) = received {
            assert!(
                [first_accepted, second_accepted][id],
                "token {id} received but refused"
            );
        }
        assert_eq!(owed_to.count(), 1, "the owed wake-up is given exactly once");
    });
}

/// Two senders send, one lazily, and are dropped while the receiver parks, waiting for lazy messages
/// or not: the end of the queue wakes it like a message, and it receives both messages, once each.
#[test]
fn the_last_sender_dropped_while_the_receiver_parks_wakes_it() {
    for wake_on_lazy in [true, false] {
        loom::model(move || {
            let (tx, mut rx) = mailbox::<u32>();
            let tx2 = tx.clone();
            let eager = thread::spawn(move || tx.send(1).unwrap());
            let lazy = thread::spawn(move || drop(tx2.send_lazy(2).unwrap()));
            let mut got = block_on(async {
                let mut got = Vec::new();
                while let Some(message) = recv(&mut rx, wake_on_lazy).await {
                    got.push(message);
                }
                got
            });
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
            eager.join().unwrap();
            lazy.join().unwrap();
        });
    }
}

/// A message from outside races the shutdown that closes the mailbox to it, while the receiver
/// parks and receives until every sender is gone. The outside message is either accepted, and then
/// received once and before the shutdown, or refused and given back to its sender, never received:
/// what a stage accepts is what it takes. A message of the stage's own, sent after the shutdown,
/// is never refused. The receiver is woken for each.
#[test]
fn a_message_from_outside_racing_a_closing_send_is_taken_before_it_or_refused() {
    loom::model(|| {
        let (tx, mut rx) = mailbox::<u32>();
        let outside = tx.clone();
        let closing = thread::spawn(move || {
            tx.send_closing(0).unwrap();
            // The stage's own message, after the shutdown: not refused.
            tx.send(2).unwrap();
        });
        let sending = thread::spawn(move || match outside.send_from_outside(1) {
            Ok(()) => true,
            Err(Refused::ClosedToOutside(1)) => false,
            Err(other) => panic!("unexpected refusal: {other:?}"),
        });
        let got = block_on(async {
            let mut got = Vec::new();
            while let Some(message) = recv(&mut rx, true).await {
                got.push(message);
            }
            got
        });
        let accepted = sending.join().unwrap();
        closing.join().unwrap();
        if accepted {
            assert_eq!(
                got,
                [1, 0, 2],
                "an accepted message comes before the shutdown"
            );
        } else {
            assert_eq!(got, [0, 2], "a refused message is never received");
        }
        assert_idle(&rx);
    });
}

/// A message from outside races the receiver closing its mailbox to such messages, as a stage
/// ending by itself does: accepted, it is received after the close; refused, it is given back and
/// never received.
#[test]
fn a_message_from_outside_racing_hold_closed_to_outside_is_received_or_refused() {
    loom::model(|| {
        let (tx, mut rx) = mailbox::<u32>();
        let sending = thread::spawn(move || match tx.send_from_outside(1) {
            Ok(()) => true,
            Err(Refused::ClosedToOutside(1)) => false,
            Err(other) => panic!("unexpected refusal: {other:?}"),
        });
        rx.hold_closed_to_outside(true);
        let got = block_on(recv(&mut rx, true));
        let accepted = sending.join().unwrap();
        assert_eq!(got, accepted.then_some(1));
    });
}

/// A message from outside races the receiver deciding to end, as a stage ending by itself does:
/// the close comes before the receiver's last look, so an accepted message is always found by that
/// look (`queued`), never left behind; a refused one is refused as ending and never received.
#[test]
fn a_message_from_outside_racing_end_to_outside_is_found_by_the_last_look_or_refused() {
    loom::model(|| {
        let (tx, mut rx) = mailbox::<u32>();
        let sending = thread::spawn(move || match tx.send_from_outside(1) {
            Ok(()) => true,
            Err(Refused::Ending(1)) => false,
            Err(other) => panic!("unexpected refusal: {other:?}"),
        });
        rx.end_to_outside();
        let found = rx.queued();
        let accepted = sending.join().unwrap();
        // Anything accepted is in the queue once the sender is done; the last look, after the
        // close, found it unless the sender had not yet sent, in which case it was refused.
        assert!(found <= 1);
        if found == 0 {
            assert!(
                !accepted,
                "accepted after the last look found the mailbox empty"
            );
        }
        let got = rx.try_recv().ok();
        assert_eq!(got, accepted.then_some(1));
    });
}
