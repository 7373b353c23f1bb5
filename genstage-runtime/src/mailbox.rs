//! A stage's mailbox: an unbounded multi-producer, single-consumer FIFO that wakes one task.
//!
//! tokio's `mpsc` would do, but a mailbox needs less than a general channel: one receiver, which
//! drains it from one task. A mutex around a `VecDeque` plus the receiver's waker costs one
//! uncontended lock per send, and the receiver takes every queued message under one lock. Every
//! message costs a stage one mailbox round, so this is the runtime's hot path: on the seed benchmark
//! (`benches/seed.rs`, 2 cores) it raised genstage's median throughput by 16% over
//! `tokio::sync::mpsc::unbounded_channel` (48 alternated runs each: 370 vs 320 M events/s).
//!
//! All state sits under the one mutex and the waker is called after the lock is released, so there is
//! no lost wake-up: the receiver registers its waker in the same critical section in which it finds
//! the queue empty, and a sender takes it in the same critical section in which it pushes.
//!
//! # Receiving
//! A stage loop takes messages with `try_recv` and, when it finds none, waits with `ready`; the message
//! itself never passes through a future's output, which on the hot path costs several copies of it.
//!
//! # Lazy messages
//! A message sent with `send_lazy` wakes a waiting receiver only if it waits with `wake_on_lazy`;
//! otherwise it stays queued, in order, until another message wakes the receiver. Asks are sent so:
//! a producer_consumer with no input and no buffered output has nothing to do with an ask but count
//! it, so it waits for events alone and takes the ask in before them. That spares it a wake-up and a
//! round of its loop per ask; on the seed benchmark (2 cores, 20 alternated rounds of 30 runs) the
//! workers parked 20% less, stole 45% less, and the median throughput rose 5% (393 vs 374 M
//! events/s).
//!
//! # Disconnection
//! `send` fails, giving the message back, once the receiver is dropped. `try_recv` says
//! `Disconnected` once every sender is dropped and the queue is empty.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

struct State<M> {
    queue: VecDeque<M>,
    /// The receiver's waker while it waits on an empty queue.
    waker: Option<Waker>,
    /// Live senders; when this drops to zero the receiver sees the end of the queue. A `u32` keeps
    /// `Shared` to one cache line; a pipeline holds a few senders per subscription.
    senders: u32,
    /// Whether the receiver still exists: sends fail once it is gone.
    receiving: bool,
    /// Whether lazy messages wake the receiver while it waits (see [`Sender::send_lazy`]).
    wake_on_lazy: bool,
}

/// A sender and the receiver meet on this one cache line (a test keeps it to one): aligned, so that it
/// shares its line with nothing else, and small, so that a send from another core misses once here,
/// not twice (alternated runs of the seed benchmark on the multi-thread runtime: +2 to +8%).
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
    /// Messages already taken from the shared queue, in order: the receiver swaps the whole queue
    /// out under one lock, so a burst of messages costs one lock, not one each.
    taken: VecDeque<M>,
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
            senders: 1,
            receiving: true,
            wake_on_lazy: true,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver {
            shared,
            taken: VecDeque::new(),
        },
    )
}

impl<M> Sender<M> {
    /// Queues `message`, waking the receiver; gives it back when the receiver is gone.
    pub(crate) fn send(&self, message: M) -> Result<(), M> {
        self.push(message, true)
    }

    /// Queues `message`, waking the receiver only if it waits with `wake_on_lazy` (see
    /// [`Receiver::ready`]); otherwise the message waits for whatever wakes the receiver next, and is
    /// taken in before anything queued after it. Gives it back when the receiver is gone.
    pub(crate) fn send_lazy(&self, message: M) -> Result<(), M> {
        self.push(message, false)
    }

    fn push(&self, message: M, wake: bool) -> Result<(), M> {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiving {
                return Err(message);
            }
            state.queue.push_back(message);
            if wake || state.wake_on_lazy {
                state.waker.take()
            } else {
                None
            }
        };
        // Woken outside the lock, so the receiver never finds it held.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
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
                state.waker.take()
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
    /// `wake_on_lazy`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes nothing.
    pub(crate) async fn ready(&mut self, wake_on_lazy: bool) {
        if !self.taken.is_empty() {
            return;
        }
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if !state.queue.is_empty() {
                std::mem::swap(&mut state.queue, &mut self.taken);
                return Poll::Ready(());
            }
            if state.senders == 0 {
                return Poll::Ready(());
            }
            match &mut state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            state.wake_on_lazy = wake_on_lazy;
            Poll::Pending
        })
        .await
    }

    /// The next message if one is queued now.
    #[inline]
    pub(crate) fn try_recv(&mut self) -> Result<M, TryRecvError> {
        if let Some(message) = self.taken.pop_front() {
            return Ok(message);
        }
        self.take_queued()
    }

    /// Takes every queued message under one lock; returns the first.
    fn take_queued(&mut self) -> Result<M, TryRecvError> {
        let mut state = self.shared.lock();
        std::mem::swap(&mut state.queue, &mut self.taken);
        match self.taken.pop_front() {
            Some(message) => Ok(message),
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<M> Drop for Receiver<M> {
    fn drop(&mut self) {
        let dropped = {
            let mut state = self.shared.lock();
            state.receiving = false;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Messages (and the senders they may hold) are dropped outside the lock.
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    /// Counts its wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// How a stage loop receives: `try_recv`, and `ready` while it finds the mailbox empty.
    async fn recv<M>(receiver: &mut Receiver<M>) -> Option<M> {
        loop {
            match receiver.try_recv() {
                Ok(message) => return Some(message),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => receiver.ready(true).await,
            }
        }
    }

    /// Polls `future` once with `waker`.
    fn poll_once<F: Future>(future: F, waker: &Arc<CountingWaker>) -> Poll<F::Output> {
        let waker = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        future.as_mut().poll(&mut cx)
    }

    fn poll_recv<M>(receiver: &mut Receiver<M>, waker: &Arc<CountingWaker>) -> Poll<Option<M>> {
        poll_once(recv(receiver), waker)
    }

    /// Polls `ready` once.
    fn poll_ready<M>(
        receiver: &mut Receiver<M>,
        waker: &Arc<CountingWaker>,
        wake_on_lazy: bool,
    ) -> Poll<()> {
        poll_once(receiver.ready(wake_on_lazy), waker)
    }

    #[test]
    fn a_lazy_send_waits_for_the_next_eager_one_and_keeps_its_place() {
        let (tx, mut rx) = mailbox();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert_eq!(poll_ready(&mut rx, &waker, false), Poll::Pending);
        tx.send_lazy(1).unwrap();
        tx.send_lazy(2).unwrap();
        assert_eq!(waker.0.load(Ordering::SeqCst), 0);
        tx.send(3).unwrap();
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_ready(&mut rx, &waker, false), Poll::Ready(()));
        let got: Vec<i32> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
        assert_eq!(got, vec![1, 2, 3]);
    }

    #[test]
    fn a_lazy_send_wakes_a_receiver_that_waits_for_it() {
        let (tx, mut rx) = mailbox();
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert_eq!(poll_ready(&mut rx, &waker, true), Poll::Pending);
        tx.send_lazy(1).unwrap();
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll_ready(&mut rx, &waker, false), Poll::Ready(()));
        assert_eq!(rx.try_recv(), Ok(1));
    }

    #[test]
    fn a_lazy_send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = mailbox();
        drop(rx);
        assert_eq!(tx.send_lazy(5), Err(5));
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
