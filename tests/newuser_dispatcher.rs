//! A GenStage user writes their own dispatchers from the public docs alone (the README and the
//! `genstage::dispatcher` rustdoc), as `GenStage.Dispatcher` lets them: a round-robin one, a
//! "sticky key" one that rebalances when a consumer leaves, and broken ones, each first as a pure
//! state machine and then in a running pipeline.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::dispatcher::{
    ContractBreach, Deliveries, DispatchError, DispatchOptions, Dispatcher, Outbox, SubscriptionId,
};
use genstage::prelude::*;
use genstage::{Discard, DispatchSetupError, Loss};
use tokio::sync::watch;

/// Long enough for any of these pipelines; only a hang reaches it.
const HANG: Duration = Duration::from_secs(20);

/// Shuts the pipeline down, failing the test on a hang or an error, and gives its report.
async fn shut_down(running: PipelineHandle) -> Report {
    tokio::time::timeout(HANG, running.shutdown())
        .await
        .expect("no hang")
        .expect("a clean run")
}

/// Waits, failing the test on a hang, until the dispatcher's probe shows what `until` accepts;
/// gives what it shows then.
async fn shows(
    holding: &mut watch::Receiver<Holding>,
    until: impl FnMut(&Holding) -> bool,
) -> Holding {
    *tokio::time::timeout(HANG, holding.wait_for(until))
        .await
        .expect("no hang")
        .expect("the probe lives")
}

/// Refuses the options neither dispatcher here uses, as the `DispatchOptions` docs ask.
fn plain<T>(name: &str, options: &DispatchOptions<T>) -> Result<(), DispatchError> {
    if options.partition.is_some() || options.selector.is_some() {
        return Err(DispatchError(format!(
            "{name} takes no partition or selector"
        )));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// 1. Round robin

/// Each batch to the next consumer with demand, in turn: the turn moves past the consumer served,
/// and a consumer without demand is skipped. A batch larger than that consumer's demand goes on to
/// the next one with demand.
#[derive(Debug, Default)]
struct RoundRobin {
    /// Subscriptions in the order they came, each with what it asked for and was not sent.
    consumers: Vec<(SubscriptionId, usize)>,
    /// The index in `consumers` whose turn it is.
    turn: usize,
}

impl<T: Send + 'static> Dispatcher<T> for RoundRobin {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError> {
        plain("RoundRobin", options)?;
        self.consumers.push((sub, 0));
        Ok(0)
    }

    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        if let Some(i) = self.consumers.iter().position(|&(s, _)| s == sub) {
            self.consumers.remove(i);
            // The turn stays with the consumer that had it (or the one after the leaver).
            if i < self.turn {
                self.turn -= 1;
            }
            if self.turn >= self.consumers.len() {
                self.turn = 0;
            }
        }
        0
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, T>) -> usize {
        match self.consumers.iter_mut().find(|(s, _)| *s == sub) {
            Some((_, wants)) => {
                *wants = wants.saturating_add(demand);
                demand
            }
            None => 0,
        }
    }

    fn dispatch(
        &mut self,
        mut events: Vec<T>,
        out: &mut Outbox<'_, T>,
    ) -> Result<Vec<T>, DispatchError> {
        let n = self.consumers.len();
        while !events.is_empty() {
            let Some(i) = (0..n)
                .map(|k| (self.turn + k) % n)
                .find(|&i| self.consumers[i].1 > 0)
            else {
                break;
            };
            let (sub, wants) = &mut self.consumers[i];
            let rest = events.split_off((*wants).min(events.len()));
            *wants -= events.len();
            out.send(*sub, std::mem::replace(&mut events, rest));
            self.turn = (i + 1) % n;
        }
        Ok(events)
    }

    fn capacity(&self) -> usize {
        self.consumers
            .iter()
            .fold(0usize, |sum, &(_, wants)| sum.saturating_add(wants))
    }

    fn consumers(&self) -> usize {
        self.consumers.len()
    }
}

/// One step of a scripted dispatcher session.
fn dispatch_into<T, D: Dispatcher<T>>(
    dispatcher: &mut D,
    events: Vec<T>,
) -> (Deliveries<T>, Vec<T>) {
    let mut deliveries = Vec::new();
    let mut out = Outbox::new(&mut deliveries);
    let leftover = dispatcher
        .dispatch(events, &mut out)
        .expect("these dispatchers never fail a dispatch");
    (deliveries, leftover)
}

fn ask_into<T, D: Dispatcher<T>>(
    dispatcher: &mut D,
    sub: SubscriptionId,
    demand: usize,
) -> (usize, Deliveries<T>) {
    let mut deliveries = Vec::new();
    let mut out = Outbox::new(&mut deliveries);
    let upstream = dispatcher.ask(sub, demand, &mut out);
    (upstream, deliveries)
}

#[test]
fn round_robin_as_a_pure_state_machine() {
    let mut rr = RoundRobin::default();
    for sub in [1, 2, 3] {
        assert_eq!(
            Dispatcher::<u32>::subscribe(&mut rr, sub, &DispatchOptions::none()),
            Ok(0)
        );
    }
    assert_eq!(
        Dispatcher::<u32>::subscribe(&mut rr, 4, &DispatchOptions::partition(0)),
        Err(DispatchError(
            "RoundRobin takes no partition or selector".into()
        ))
    );
    assert_eq!(Dispatcher::<u32>::consumers(&rr), 3);
    assert_eq!(ask_into::<u32, _>(&mut rr, 1, 2), (2, vec![]));
    assert_eq!(ask_into::<u32, _>(&mut rr, 2, 3), (3, vec![]));
    assert_eq!(ask_into::<u32, _>(&mut rr, 3, 1), (1, vec![]));
    assert_eq!(Dispatcher::<u32>::capacity(&rr), 6);

    // 1 has the turn: its 2, then 2's 3 take the batch; the turn goes to 3.
    assert_eq!(
        dispatch_into(&mut rr, vec![0u32, 1, 2, 3, 4]),
        (vec![(1, vec![0, 1]), (2, vec![2, 3, 4])], vec![])
    );
    // 3 has the turn and takes 1; nobody else has demand: handed back.
    assert_eq!(
        dispatch_into(&mut rr, vec![5u32, 6]),
        (vec![(3, vec![5])], vec![6])
    );
    assert_eq!(Dispatcher::<u32>::capacity(&rr), 0);
    // The turn is 1's, which has no demand: 2 is next with demand.
    assert_eq!(ask_into::<u32, _>(&mut rr, 2, 4), (4, vec![]));
    assert_eq!(
        dispatch_into(&mut rr, vec![6u32, 7]),
        (vec![(2, vec![6, 7])], vec![])
    );
    // 2 leaves with 2 unmet: the capacity goes with it; the turn stays with 3.
    assert_eq!(Dispatcher::<u32>::cancel(&mut rr, 2), 0);
    assert_eq!(Dispatcher::<u32>::capacity(&rr), 0);
    assert_eq!(Dispatcher::<u32>::consumers(&rr), 2);
    // An ask on the cancelled subscription changes nothing.
    assert_eq!(ask_into::<u32, _>(&mut rr, 2, 9), (0, vec![]));
    assert_eq!(ask_into::<u32, _>(&mut rr, 1, 1), (1, vec![]));
    assert_eq!(ask_into::<u32, _>(&mut rr, 3, 1), (1, vec![]));
    assert_eq!(
        dispatch_into(&mut rr, vec![8u32, 9, 10]),
        (vec![(3, vec![8]), (1, vec![9])], vec![10])
    );
    // Demand adds up without overflowing.
    assert_eq!(
        ask_into::<u32, _>(&mut rr, 1, usize::MAX),
        (usize::MAX, vec![])
    );
    assert_eq!(
        ask_into::<u32, _>(&mut rr, 3, usize::MAX),
        (usize::MAX, vec![])
    );
    assert_eq!(Dispatcher::<u32>::capacity(&rr), usize::MAX);
}

/// Emits, on each `Feed(n)` call, the next `n` numbers; nothing on demand.
struct Feeder {
    next: u64,
}

/// Emit this many more numbers.
struct Feed(u64);

#[stage(producer)]
impl Feeder {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_call(&mut self, request: Feed, reply: ReplyTo<()>) -> Vec<u64> {
        let events = (self.next..self.next + request.0).collect();
        self.next += request.0;
        reply.reply(());
        events
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(RoundRobin::default())
    }
}

/// Keeps every batch it handles, as it got it.
struct Batches {
    seen: Arc<Mutex<Vec<Vec<u64>>>>,
}

#[stage(consumer, max_demand = 100, min_demand = 50)]
impl Batches {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.seen.lock().unwrap().push(events);
    }
}

#[tokio::test]
async fn round_robin_in_a_pipeline_hands_each_batch_to_the_next_consumer() {
    let seen: Vec<Arc<Mutex<Vec<Vec<u64>>>>> = (0..3).map(|_| Arc::default()).collect();
    let mut pipeline = Pipeline::new();
    let feeder = pipeline.add_producer(Feeder { next: 0 });
    let consumers = pipeline.add_consumers(3, |i| Batches {
        seen: seen[i].clone(),
    });
    for consumer in &consumers {
        pipeline.subscribe(&feeder, consumer);
    }
    let running = pipeline.start();
    // 30 batches of 3: each consumer gets 30 events, within its first ask of 100, so no batch
    // ever waits for demand and the turn alone decides.
    for _ in 0..30 {
        feeder.call(Feed(3)).await.expect("the feeder runs");
    }
    let report = shut_down(running).await;

    let mut all: Vec<u64> = Vec::new();
    let mut firsts = BTreeSet::new();
    for (i, seen) in seen.iter().enumerate() {
        let batches = seen.lock().unwrap().clone();
        // Each consumer got every third batch, whole: 10 batches of 3.
        assert_eq!(batches.len(), 10, "consumer {i}: {batches:?}");
        let first = batches[0][0] / 3;
        firsts.insert(first);
        for (k, batch) in batches.iter().enumerate() {
            let b = first + 3 * k as u64;
            assert_eq!(batch, &vec![3 * b, 3 * b + 1, 3 * b + 2], "consumer {i}");
        }
        all.extend(batches.into_iter().flatten());
        let name = format!("Batches[{i}]");
        let stage = report.stage(&name).expect("each consumer is reported");
        assert_eq!(stage.events_in, 30, "{name}");
    }
    assert_eq!(firsts, BTreeSet::from([0, 1, 2]));
    all.sort_unstable();
    assert_eq!(all, (0..90).collect::<Vec<_>>(), "every event exactly once");
    let feeder = report.stage("Feeder").expect("the producer is reported");
    assert_eq!((feeder.emitted, feeder.events_out), (90, 90));
    assert_eq!(feeder.status, StageStatus::ShutDown);
    assert!(report.balanced(), "{report}");
    for edge in &report.edges {
        assert_eq!(
            (edge.sent, edge.handled, edge.lost),
            (30, 30, 0),
            "{edge:?}"
        );
    }
}

/// `count` numbers, as fast as they are asked for, then the end: by a [`RoundRobin`], or to every
/// consumer through a [`Mirror`].
struct Numbers {
    next: u64,
    count: u64,
    mirror: bool,
}

impl Numbers {
    fn round_robin(count: u64) -> Self {
        Numbers {
            next: 0,
            count,
            mirror: false,
        }
    }

    fn mirrored(count: u64) -> Self {
        Numbers {
            next: 0,
            count,
            mirror: true,
        }
    }
}

#[stage(producer)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.count.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == self.count {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        if self.mirror {
            Dispatch::custom(Mirror::default())
        } else {
            Dispatch::custom(RoundRobin::default())
        }
    }
}

/// Counts what it handles, with a small demand so that the round robin runs out of it often.
struct Tally {
    got: Arc<Mutex<Vec<u64>>>,
}

#[stage(consumer, max_demand = 4, min_demand = 1)]
impl Tally {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.got.lock().unwrap().extend(events);
    }
}

#[tokio::test]
async fn round_robin_under_back_pressure_loses_nothing() {
    let got: Vec<Arc<Mutex<Vec<u64>>>> = (0..3).map(|_| Arc::default()).collect();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(Numbers::round_robin(5_000));
    let tallies = pipeline.add_consumers(3, |i| Tally {
        got: got[i].clone(),
    });
    for tally in &tallies {
        pipeline.subscribe(&numbers, tally);
    }
    let report = tokio::time::timeout(HANG, pipeline.run())
        .await
        .expect("no hang")
        .expect("a clean run");
    let mut all = Vec::new();
    for (i, got) in got.iter().enumerate() {
        let got = got.lock().unwrap().clone();
        // In order from the one producer.
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "Tally[{i}] out of order"
        );
        let stage = report.stage(&format!("Tally[{i}]")).unwrap();
        assert_eq!(stage.events_in, got.len() as u64);
        assert_eq!(report.edges[i].sent, got.len() as u64);
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..5_000).collect::<Vec<_>>(),
        "every event exactly once"
    );
    assert_eq!(report.stage("Numbers").unwrap().emitted, 5_000);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
}

// ------------------------------------------------------------------------------------------------
// 2. Sticky key

/// What a [`StickyKey`] holds after its last call, for a test to read from outside the stage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Holding {
    held: usize,
    stranded: usize,
    consumers: usize,
}

/// One subscription of a [`StickyKey`].
#[derive(Debug)]
struct Lane<T> {
    sub: SubscriptionId,
    /// Asked for and not sent.
    wants: usize,
    /// Held for it, with their keys, in order: sent before anything newer of theirs.
    backlog: VecDeque<(u64, T)>,
}

/// Where a [`StickyKey`] reads an event's key.
#[derive(Debug, Clone, Copy)]
enum KeyFrom<T> {
    /// A function of its own.
    Fn(fn(&T) -> u64),
    /// The stage's `Partition` function, lent through the `Outbox` (the stage gives it with
    /// `Dispatch::custom_partitioned`): `Some(key)`, or `None` to discard the event.
    Partition,
}

/// Each event to the consumer that its key picks among the current subscribers (`key %
/// subscribers`, in subscription order): all the events of a key to one consumer, in order, while
/// the subscribers stay. A subscribe (or a cancel, unless told otherwise) moves every key to its new
/// consumer, and with it the events held for that key. An event whose consumer has no demand is held
/// for it (its backlog); demand is pooled, as a GenStage `PartitionDispatcher`'s is, so the backlogs
/// are bounded by what the consumers asked for.
#[derive(Debug)]
struct StickyKey<T> {
    key: KeyFrom<T>,
    lanes: Vec<Lane<T>>,
    /// Held for no consumer: none was subscribed, or a cancel left them so.
    stranded: VecDeque<(u64, T)>,
    /// Where a test reads [`Holding`].
    probe: Option<watch::Sender<Holding>>,
    /// What a cancel does with the leaver's backlog.
    on_cancel: OnCancel,
}

/// What a [`StickyKey`]'s cancel does with what it held for the consumer that left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnCancel {
    /// Moves it to the key's new consumer.
    Move,
    /// Strands it until a consumer subscribes.
    Strand,
    /// Drops it and returns its count as upstream demand, as GenStage's `PartitionDispatcher`
    /// does: a breach of this crate's contract.
    Drop,
}

impl<T> StickyKey<T> {
    fn new(key: KeyFrom<T>) -> Self {
        StickyKey {
            key,
            lanes: Vec::new(),
            stranded: VecDeque::new(),
            probe: None,
            on_cancel: OnCancel::Move,
        }
    }

    fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.on_cancel = on_cancel;
        self
    }

    fn probed(mut self, probe: watch::Sender<Holding>) -> Self {
        self.probe = Some(probe);
        self
    }

    fn held_now(&self) -> usize {
        self.lanes.iter().map(|lane| lane.backlog.len()).sum()
    }

    fn room(&self) -> usize {
        let wants = self
            .lanes
            .iter()
            .fold(0usize, |sum, lane| sum.saturating_add(lane.wants));
        wants.saturating_sub(self.held_now() + self.stranded.len())
    }

    fn owner(&self, key: u64) -> Option<usize> {
        let n = self.lanes.len() as u64;
        (n > 0).then(|| (key % n) as usize)
    }

    /// Moves every held event to its key's consumer now: each key's events sit in one backlog,
    /// in order, so they stay in order.
    fn rebalance(&mut self) {
        let mut held = std::mem::take(&mut self.stranded);
        for lane in &mut self.lanes {
            held.extend(lane.backlog.drain(..));
        }
        for (key, event) in held {
            match self.owner(key) {
                Some(i) => self.lanes[i].backlog.push_back((key, event)),
                None => self.stranded.push_back((key, event)),
            }
        }
    }

    /// Takes from each backlog what its consumer has demand for, oldest first: one batch per
    /// lane, in lane order.
    fn flush(&mut self) -> Vec<Vec<T>> {
        self.lanes
            .iter_mut()
            .map(|lane| {
                let take = lane.wants.min(lane.backlog.len());
                lane.wants -= take;
                lane.backlog.drain(..take).map(|(_, event)| event).collect()
            })
            .collect()
    }

    /// Sends each lane its batch, one message per consumer.
    fn send(&self, batches: Vec<Vec<T>>, out: &mut Outbox<'_, T>) {
        for (lane, batch) in self.lanes.iter().zip(batches) {
            out.send(lane.sub, batch);
        }
    }

    /// Each event's key, `None` for one to discard; before any change of state, as the
    /// `dispatch` docs ask, since the stage's function may panic.
    fn keys(&self, events: &[T], out: &Outbox<'_, T>) -> Result<Vec<Option<u64>>, DispatchError> {
        match self.key {
            KeyFrom::Fn(key) => Ok(events.iter().map(|event| Some(key(event))).collect()),
            KeyFrom::Partition => {
                let mut routes = Vec::with_capacity(events.len());
                if !out.partitions_of(events, &mut routes) {
                    return Err(DispatchError(
                        "StickyKey by partition needs Dispatch::custom_partitioned".into(),
                    ));
                }
                Ok(routes.into_iter().map(|r| r.map(|k| k as u64)).collect())
            }
        }
    }

    fn report(&self) {
        if let Some(probe) = &self.probe {
            probe.send_replace(Holding {
                held: self.held_now(),
                stranded: self.stranded.len(),
                consumers: self.lanes.len(),
            });
        }
    }
}

impl<T: Send + 'static> Dispatcher<T> for StickyKey<T> {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError> {
        plain("StickyKey", options)?;
        self.lanes.push(Lane {
            sub,
            wants: 0,
            backlog: VecDeque::new(),
        });
        self.rebalance();
        self.report();
        Ok(0)
    }

    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        let before = self.room();
        if let Some(i) = self.lanes.iter().position(|lane| lane.sub == sub) {
            let lane = self.lanes.remove(i);
            // Its backlog is still ours to deliver: to the key's new consumer, or stranded.
            match self.on_cancel {
                OnCancel::Move => {
                    self.stranded.extend(lane.backlog);
                    self.rebalance();
                }
                OnCancel::Strand => self.stranded.extend(lane.backlog),
                OnCancel::Drop => {
                    self.report();
                    return lane.backlog.len();
                }
            }
        }
        self.report();
        self.room().saturating_sub(before)
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, T>) -> usize {
        let before = self.room();
        let Some(lane) = self.lanes.iter_mut().find(|lane| lane.sub == sub) else {
            return 0;
        };
        lane.wants = lane.wants.saturating_add(demand);
        // Any consumer may have events waiting (moved to it by a cancel): all are served.
        let batches = self.flush();
        self.send(batches, out);
        self.report();
        self.room().saturating_sub(before)
    }

    fn dispatch(
        &mut self,
        events: Vec<T>,
        out: &mut Outbox<'_, T>,
    ) -> Result<Vec<T>, DispatchError> {
        let keys = self.keys(&events, out)?;
        // What a rebalance left with a consumer that has demand goes first.
        let mut batches = self.flush();
        let mut room = self.room();
        let mut discarded = 0;
        let mut events = events.into_iter();
        let mut rest = Vec::new();
        for (event, key) in (&mut events).zip(keys) {
            let Some(key) = key else {
                discarded += 1;
                continue;
            };
            // No room: nor any consumer (room() is 0 without one).
            let Some(i) = self.owner(key).filter(|_| room > 0) else {
                rest.push(event);
                break;
            };
            room -= 1;
            let lane = &mut self.lanes[i];
            if lane.wants > 0 && lane.backlog.is_empty() {
                lane.wants -= 1;
                batches[i].push(event);
            } else {
                lane.backlog.push_back((key, event));
            }
        }
        rest.extend(events);
        out.discard(discarded);
        self.send(batches, out);
        self.report();
        Ok(rest)
    }

    fn capacity(&self) -> usize {
        self.room()
    }

    fn consumers(&self) -> usize {
        self.lanes.len()
    }

    fn held(&self) -> usize {
        self.held_now()
    }

    fn stranded(&self) -> usize {
        self.stranded.len()
    }
}

/// An event with a key: `(key, seq)`.
type Keyed = (u64, u64);

fn key_of(event: &Keyed) -> u64 {
    event.0
}

#[test]
fn sticky_key_as_a_pure_state_machine() {
    let mut sticky = StickyKey::new(KeyFrom::Fn(key_of));
    for sub in [1, 2, 3] {
        assert_eq!(sticky.subscribe(sub, &DispatchOptions::none()), Ok(0));
    }
    assert_eq!(ask_into(&mut sticky, 1, 2), (2, vec![]));
    assert_eq!(ask_into(&mut sticky, 2, 2), (2, vec![]));
    assert_eq!(ask_into(&mut sticky, 3, 1), (1, vec![]));
    assert_eq!(sticky.capacity(), 5);

    // Keys 0..5 over 3 consumers: 0 and 3 to 1, 1 and 4 to 2, 2 to 3. Five fit; two go back.
    let events: Vec<Keyed> = vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (2, 1)];
    assert_eq!(
        dispatch_into(&mut sticky, events),
        (
            vec![
                (1, vec![(0, 0), (3, 0)]),
                (2, vec![(1, 0), (4, 0)]),
                (3, vec![(2, 0)]),
            ],
            vec![(5, 0), (2, 1)]
        )
    );
    assert_eq!(sticky.capacity(), 0);

    // 1 asks for 3: key 2's events wait for 3, which has no demand; 1 takes key 0's.
    assert_eq!(ask_into(&mut sticky, 1, 3), (3, vec![]));
    assert_eq!(
        dispatch_into(&mut sticky, vec![(5, 0), (2, 1), (0, 1)]),
        (vec![(1, vec![(0, 1)])], vec![])
    );
    assert_eq!(
        (sticky.held(), sticky.stranded(), sticky.capacity()),
        (2, 0, 0)
    );
    // 3 asks for 1: the oldest of its held events goes at once.
    assert_eq!(ask_into(&mut sticky, 3, 1), (1, vec![(3, vec![(5, 0)])]));
    assert_eq!((sticky.held(), sticky.capacity()), (1, 1));

    // 3 leaves while (2, 1) is held for it: key 2 moves to 1 (2 % 2 == 0), and so does the event.
    assert_eq!(sticky.cancel(3), 0);
    assert_eq!((sticky.held(), sticky.stranded()), (1, 0));
    // 1 still wants 2; the event held for it counts against that.
    assert_eq!(sticky.capacity(), 1);
    // The next dispatch sends it first, ahead of key 2's newer event.
    assert_eq!(
        dispatch_into(&mut sticky, vec![(2, 2), (7, 0)]),
        (vec![(1, vec![(2, 1), (2, 2)])], vec![(7, 0)])
    );
    assert_eq!((sticky.held(), sticky.capacity()), (0, 0));

    // The last two leave: what is held then is stranded, and a new consumer takes it.
    assert_eq!(ask_into(&mut sticky, 2, 1), (1, vec![]));
    assert_eq!(dispatch_into(&mut sticky, vec![(0, 2)]), (vec![], vec![]));
    assert_eq!(sticky.held(), 1);
    assert_eq!(sticky.cancel(1), 0);
    assert_eq!(sticky.cancel(2), 0);
    assert_eq!(
        (sticky.held(), sticky.stranded(), sticky.consumers()),
        (0, 1, 0)
    );
    assert_eq!(sticky.subscribe(9, &DispatchOptions::none()), Ok(0));
    assert_eq!((sticky.held(), sticky.stranded()), (1, 0));
    assert_eq!(ask_into(&mut sticky, 9, 5), (4, vec![(9, vec![(0, 2)])]));

    // Keys from the stage's partition function: `None` discards, without using up demand.
    let mut sticky = StickyKey::new(KeyFrom::Partition);
    for sub in [1, 2] {
        assert_eq!(sticky.subscribe(sub, &DispatchOptions::none()), Ok(0));
    }
    assert_eq!(ask_into(&mut sticky, 1, 1), (1, vec![]));
    assert_eq!(ask_into(&mut sticky, 2, 1), (1, vec![]));
    let mut deliveries = Vec::new();
    let mut out = Outbox::new(&mut deliveries);
    assert_eq!(
        sticky.dispatch(vec![(4, 0)], &mut out),
        Err(DispatchError(
            "StickyKey by partition needs Dispatch::custom_partitioned".into()
        ))
    );
    let key = |event: &Keyed| (event.0 != 99).then_some(event.0 as usize);
    let mut out = Outbox::new(&mut deliveries).with_partition(&key);
    assert_eq!(
        sticky.dispatch(vec![(99, 0), (4, 0), (99, 1), (7, 0), (8, 0)], &mut out),
        Ok(vec![(8, 0)])
    );
    assert_eq!(out.discarded(), 2);
    assert_eq!(deliveries, vec![(1, vec![(4, 0)]), (2, vec![(7, 0)])]);
}

/// Emits the events each `FeedKeys` call gives it; nothing on demand. Its `partition` method
/// gives the sticky dispatcher each event's key (not a partition: the dispatcher has none).
struct KeyFeeder {
    probe: watch::Sender<Holding>,
    on_cancel: OnCancel,
}

/// Emit these.
struct FeedKeys(Vec<Keyed>);

#[stage(producer)]
impl KeyFeeder {
    fn handle_demand(&mut self, _demand: usize) -> Vec<Keyed> {
        Vec::new()
    }

    fn handle_call(&mut self, request: FeedKeys, reply: ReplyTo<()>) -> Vec<Keyed> {
        reply.reply(());
        request.0
    }

    /// The key, for the dispatcher; key 99 is discarded.
    fn partition(&self, event: &Keyed) -> Option<usize> {
        (event.0 != 99).then_some(event.0 as usize)
    }

    fn dispatcher(&self) -> Dispatch<Self, Keyed> {
        Dispatch::custom_partitioned(
            StickyKey::new(KeyFrom::Partition)
                .probed(self.probe.clone())
                .on_cancel(self.on_cancel),
        )
    }
}

/// Who handled what: `(consumer, event)`, in the order handled.
type Handled = Arc<Mutex<Vec<(String, Keyed)>>>;

/// Records what it handles.
struct Recorder {
    name: String,
    handled: Handled,
}

#[stage(consumer, max_demand = 10, min_demand = 5)]
impl Recorder {
    fn handle_events(&mut self, events: Vec<Keyed>) {
        let mut handled = self.handled.lock().unwrap();
        handled.extend(events.into_iter().map(|e| (self.name.clone(), e)));
    }
}

/// Takes its first 2 events and never asks again.
struct Lazy {
    handled: Handled,
}

#[stage(consumer, max_demand = 2, min_demand = 1)]
impl Lazy {
    fn handle_subscribe(&mut self, _subscription: &Subscription) -> Demand {
        Demand::Manual
    }

    fn handle_events(&mut self, events: Vec<Keyed>) {
        let mut handled = self.handled.lock().unwrap();
        handled.extend(events.into_iter().map(|e| ("Lazy".to_string(), e)));
    }
}

/// Two recorders subscribed from the start, then `Lazy` through the handle (the third subscriber:
/// keys 2 and 5 of `0..6` are its), fed keys `0..6` twice: Lazy takes `(2, 0)` and `(5, 0)`, and
/// `(2, 1)` and `(5, 1)` are held for it. Returns the running pipeline, the feeder, Lazy's
/// subscription and the probe.
async fn sticky_with_two_held(
    handled: &Handled,
    on_cancel: OnCancel,
) -> (
    PipelineHandle,
    ProducerRef<KeyFeeder>,
    SubscriptionTag,
    watch::Receiver<Holding>,
) {
    let (probe, mut holding) = watch::channel(Holding::default());
    let mut pipeline = Pipeline::new();
    let feeder = pipeline.add_producer(KeyFeeder { probe, on_cancel });
    let recorders = pipeline.add_consumers(2, |i| Recorder {
        name: format!("Recorder[{i}]"),
        handled: handled.clone(),
    });
    for recorder in &recorders {
        pipeline.subscribe(&feeder, recorder);
    }
    let running = pipeline.start();
    let lazy = running
        .add_consumer(Lazy {
            handled: handled.clone(),
        })
        .await
        .expect("added");
    let tag = running.subscribe(&feeder, &lazy).await.expect("subscribed");
    let first: Vec<Keyed> = (0..2)
        .flat_map(|seq| (0..6).map(move |key| (key, seq)))
        .collect();
    feeder.call(FeedKeys(first)).await.expect("fed");
    let now = shows(&mut holding, |h| h.held == 2).await;
    assert_eq!(
        now,
        Holding {
            held: 2,
            stranded: 0,
            consumers: 3
        }
    );
    (running, feeder, tag, holding)
}

/// Each consumer's events, in the order it handled them.
fn by_consumer(handled: &Handled) -> BTreeMap<String, Vec<Keyed>> {
    let mut by = BTreeMap::<String, Vec<Keyed>>::new();
    for (name, event) in handled.lock().unwrap().iter() {
        by.entry(name.clone()).or_default().push(*event);
    }
    by
}

#[tokio::test]
async fn sticky_key_moves_held_events_to_the_keys_new_consumer_when_one_leaves() {
    let handled = Handled::default();
    let (running, feeder, lazy, mut holding) = sticky_with_two_held(&handled, OnCancel::Move).await;

    // Lazy leaves while two events are held for it: its keys move to the recorders, with them,
    // and the stage's dispatch of no events after the cancel sends them to the recorders, which
    // have demand.
    running.cancel(lazy).await.expect("cancelled");
    let now = shows(&mut holding, |h| h.consumers == 2).await;
    assert_eq!(
        now,
        Holding {
            held: 0,
            stranded: 0,
            consumers: 2
        }
    );
    // They were sent ahead of the new event of key 2.
    feeder
        .call(FeedKeys(vec![(99, 0), (2, 2)]))
        .await
        .expect("fed");
    let report = shut_down(running).await;

    let by = by_consumer(&handled);
    assert_eq!(by["Lazy"], vec![(2, 0), (5, 0)]);
    // Keys 0..6 over 3 subscribers: the first recorder to subscribe takes keys 0 and 3, the
    // second 1 and 4 (which recorder subscribes first is not said); then over 2, key 2 goes to
    // the first and key 5 to the second, with what was held for them.
    let (first, second) = if by["Recorder[0]"][0].0 == 0 {
        ("Recorder[0]", "Recorder[1]")
    } else {
        ("Recorder[1]", "Recorder[0]")
    };
    assert_eq!(
        by[first],
        vec![(0, 0), (3, 0), (0, 1), (3, 1), (2, 1), (2, 2)]
    );
    assert_eq!(by[second], vec![(1, 0), (4, 0), (1, 1), (4, 1), (5, 1)]);
    let feeder = report.stage("KeyFeeder").unwrap();
    assert_eq!(
        (feeder.emitted, feeder.events_out, feeder.discarded),
        (14, 13, 1)
    );
    assert_eq!(
        feeder.discards,
        vec![Discard {
            count: 1,
            reason: DiscardReason::Unrouted
        }]
    );
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn sticky_key_strands_the_leavers_held_events_for_the_next_subscriber() {
    let handled = Handled::default();
    let (running, feeder, lazy, mut holding) =
        sticky_with_two_held(&handled, OnCancel::Strand).await;
    running.cancel(lazy).await.expect("cancelled");
    let now = shows(&mut holding, |h| h.consumers == 2).await;
    assert_eq!(
        now,
        Holding {
            held: 0,
            stranded: 2,
            consumers: 2
        }
    );
    // A third consumer subscribes: keys 2 and 5 are its again, and so are the stranded events,
    // which its first ask takes.
    let late = running
        .add_consumer_named(
            "Late",
            Recorder {
                name: "Late".into(),
                handled: handled.clone(),
            },
        )
        .await
        .expect("added");
    running.subscribe(&feeder, &late).await.expect("subscribed");
    let now = shows(&mut holding, |h| h.consumers == 3 && h.held == 0).await;
    assert_eq!(now.stranded, 0);
    let report = shut_down(running).await;
    assert_eq!(by_consumer(&handled)["Late"], vec![(2, 1), (5, 1)]);
    let feeder = report.stage("KeyFeeder").unwrap();
    assert_eq!(
        (feeder.emitted, feeder.events_out, feeder.lost),
        (12, 12, 0)
    );
    assert!(report.balanced(), "{report}");
}

#[tokio::test]
async fn sticky_key_loses_what_is_stranded_when_the_producer_stops() {
    let handled = Handled::default();
    let (running, _feeder, lazy, mut holding) =
        sticky_with_two_held(&handled, OnCancel::Strand).await;
    running.cancel(lazy).await.expect("cancelled");
    shows(&mut holding, |h| h.stranded == 2).await;
    // Nobody takes keys 2 and 5 again: a graceful shutdown loses the two events, and says so.
    let report = shut_down(running).await;
    let feeder = report.stage("KeyFeeder").unwrap();
    assert_eq!(
        (feeder.emitted, feeder.events_out, feeder.lost),
        (12, 10, 2),
        "{report}"
    );
    assert_eq!(
        feeder.losses,
        vec![Loss {
            count: 2,
            reason: LossReason::Buffered
        }]
    );
    assert_eq!(feeder.status, StageStatus::ShutDown);
    let by = by_consumer(&handled);
    assert_eq!(by["Lazy"], vec![(2, 0), (5, 0)]);
    assert_eq!(by["Recorder[0]"].len() + by["Recorder[1]"].len(), 8);
    assert!(report.balanced(), "{report}");
}

/// Found by this trial: `Dispatcher::cancel` has no `Outbox`, so events that a cancel moves to a
/// consumer that already has demand waited for that consumer's next ask or the next dispatch.
/// Here neither comes (the consumers wait for what they asked for, the producer has nothing more):
/// the producer never ended, and the graceful shutdown waited for ever. The stage now offers the
/// dispatcher a dispatch of no events after a cancel, in which it sends them.
#[tokio::test]
async fn sticky_key_moved_held_events_reach_their_consumer_without_a_further_dispatch() {
    let handled = Handled::default();
    let (running, _feeder, lazy, mut holding) =
        sticky_with_two_held(&handled, OnCancel::Move).await;
    running.cancel(lazy).await.expect("cancelled");
    shows(&mut holding, |h| h.consumers == 2).await;
    // Before the fix, it hung here: the held events were never sent.
    let report = shut_down(running).await;
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
}

// ------------------------------------------------------------------------------------------------
// 3. Broken dispatchers

/// How a [`Broken`] round robin breaks the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaks {
    /// `dispatch` sends the first half of what it is handed and drops the rest.
    Drops,
    /// `dispatch` sends everything to subscription 424242, which does not exist.
    UnknownSub,
    /// `dispatch` hands everything back, though `capacity()` said it fits.
    HandsBack,
}

/// A [`RoundRobin`] broken as `breaks` says.
#[derive(Debug)]
struct Broken {
    breaks: Breaks,
    rr: RoundRobin,
}

impl Dispatcher<u64> for Broken {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<u64>,
    ) -> Result<usize, DispatchError> {
        self.rr.subscribe(sub, options)
    }

    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        Dispatcher::<u64>::cancel(&mut self.rr, sub)
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, u64>) -> usize {
        self.rr.ask(sub, demand, out)
    }

    fn dispatch(
        &mut self,
        mut events: Vec<u64>,
        out: &mut Outbox<'_, u64>,
    ) -> Result<Vec<u64>, DispatchError> {
        match self.breaks {
            Breaks::Drops => {
                events.truncate(events.len() / 2);
                self.rr.dispatch(events, out)
            }
            Breaks::UnknownSub => {
                out.send(424_242, events);
                Ok(Vec::new())
            }
            Breaks::HandsBack => Ok(events),
        }
    }

    fn capacity(&self) -> usize {
        Dispatcher::<u64>::capacity(&self.rr)
    }

    fn consumers(&self) -> usize {
        Dispatcher::<u64>::consumers(&self.rr)
    }
}

/// `0..100`, as asked, through a [`Broken`] dispatcher.
struct BrokenSource {
    next: u64,
    breaks: Breaks,
}

#[stage(producer)]
impl BrokenSource {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = 100.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == 100 {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }

    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(Broken {
            breaks: self.breaks,
            rr: RoundRobin::default(),
        })
    }
}

/// Runs `BrokenSource` into one `Tally` (max_demand 4) and returns the run's error.
async fn run_broken(breaks: Breaks) -> (PipelineError, Vec<u64>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer_named("source", BrokenSource { next: 0, breaks });
    let tally = pipeline.add_consumer(Tally { got: got.clone() });
    pipeline.subscribe(&source, &tally);
    let error = tokio::time::timeout(HANG, pipeline.run())
        .await
        .expect("a broken dispatcher hangs nothing")
        .expect_err("a broken dispatcher fails its stage");
    let got = got.lock().unwrap().clone();
    (error, got)
}

/// The breach the run failed with, checking that it names `stage` and that the report counts
/// `lost` events as lost to the broken dispatcher, and balances.
fn breach_of(error: &PipelineError, name: &str, lost: u64) -> ContractBreach {
    let PipelineError::StageFailed {
        stage,
        error: cause,
        report,
    } = error
    else {
        panic!("expected StageFailed, got {error:?}");
    };
    assert_eq!(stage, name);
    let source = report.stage(name).unwrap();
    assert_eq!(
        source.losses,
        vec![Loss {
            count: lost,
            reason: LossReason::BrokenDispatcher
        }],
        "{report}"
    );
    assert!(report.balanced(), "{report}");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(message.contains(&format!("`{name}`")), "{message}");
    assert!(
        message.contains("its dispatcher broke its contract"),
        "{message}"
    );
    cause
        .downcast_ref::<ContractBreach>()
        .expect("the stage's error is the breach")
        .clone()
}

#[tokio::test]
async fn a_dispatcher_that_drops_events_fails_its_stage() {
    let (error, got) = run_broken(Breaks::Drops).await;
    // The first dispatch, of the first ask's 4 events, is the breach: none of it goes out.
    assert_eq!(
        breach_of(&error, "source", 4),
        ContractBreach::Unaccounted {
            call: "dispatch",
            handed: 4,
            held: 0,
            accounted: 2
        }
    );
    assert_eq!(got, Vec::<u64>::new());
}

#[tokio::test]
async fn a_dispatcher_that_sends_to_an_unknown_subscription_fails_its_stage() {
    let (error, got) = run_broken(Breaks::UnknownSub).await;
    assert_eq!(
        breach_of(&error, "source", 4),
        ContractBreach::UnknownSubscription {
            sub: 424_242,
            events: 4
        }
    );
    assert_eq!(got, Vec::<u64>::new());
}

#[tokio::test]
async fn a_dispatcher_that_hands_back_what_fits_fails_its_stage() {
    let (error, got) = run_broken(Breaks::HandsBack).await;
    assert_eq!(
        breach_of(&error, "source", 4),
        ContractBreach::Capacity {
            capacity: 4,
            handed: 4,
            leftover: 4
        }
    );
    assert_eq!(got, Vec::<u64>::new());
}

#[tokio::test]
async fn a_dispatcher_that_drops_held_events_on_cancel_as_genstage_does_fails_its_stage() {
    let handled = Handled::default();
    let (running, _feeder, lazy, _holding) = sticky_with_two_held(&handled, OnCancel::Drop).await;
    running.cancel(lazy).await.expect("cancelled");
    let error = tokio::time::timeout(HANG, running)
        .await
        .expect("a broken dispatcher hangs nothing")
        .expect_err("a broken dispatcher fails its stage");
    assert_eq!(
        breach_of(&error, "KeyFeeder", 2),
        ContractBreach::Unaccounted {
            call: "cancel",
            handed: 0,
            held: 2,
            accounted: 0
        }
    );
}

// ------------------------------------------------------------------------------------------------
// 4. A broadcast of one's own: `broadcasts()` and `selects()`

/// Every event to every consumer, once all have demand for it (GenStage's broadcast, without
/// selectors): says so through `broadcasts()`.
#[derive(Debug, Default)]
struct Mirror {
    consumers: Vec<(SubscriptionId, usize)>,
}

impl Dispatcher<u64> for Mirror {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<u64>,
    ) -> Result<usize, DispatchError> {
        plain("Mirror", options)?;
        self.consumers.push((sub, 0));
        Ok(0)
    }

    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        self.consumers.retain(|&(s, _)| s != sub);
        0
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, u64>) -> usize {
        let before = self.capacity();
        if let Some((_, wants)) = self.consumers.iter_mut().find(|(s, _)| *s == sub) {
            *wants = wants.saturating_add(demand);
        }
        self.capacity().saturating_sub(before)
    }

    fn dispatch(
        &mut self,
        mut events: Vec<u64>,
        out: &mut Outbox<'_, u64>,
    ) -> Result<Vec<u64>, DispatchError> {
        let rest = events.split_off(self.capacity().min(events.len()));
        if !events.is_empty() {
            out.copied(events.len() * (self.consumers.len() - 1));
            for (sub, wants) in &mut self.consumers {
                *wants -= events.len();
                out.send(*sub, events.clone());
            }
        }
        Ok(rest)
    }

    fn capacity(&self) -> usize {
        self.consumers
            .iter()
            .map(|&(_, wants)| wants)
            .min()
            .unwrap_or(0)
    }

    fn consumers(&self) -> usize {
        self.consumers.len()
    }

    fn broadcasts(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_broadcast_of_ones_own_copies_every_event_and_refuses_a_second_subscription() {
    let got: Vec<Arc<Mutex<Vec<u64>>>> = (0..2).map(|_| Arc::default()).collect();
    let mut pipeline = Pipeline::new();
    let mirrored = pipeline.add_producer_named("Mirrored", Numbers::mirrored(1_000));
    let tallies = pipeline.add_consumers(2, |i| Tally {
        got: got[i].clone(),
    });
    for tally in &tallies {
        pipeline.subscribe(&mirrored, tally);
    }
    let report = tokio::time::timeout(HANG, pipeline.run())
        .await
        .expect("no hang")
        .expect("a clean run");
    for got in &got {
        assert_eq!(*got.lock().unwrap(), (0..1_000).collect::<Vec<_>>());
    }
    let stage = report.stage("Mirrored").unwrap();
    assert_eq!(
        (stage.emitted, stage.copies, stage.events_out),
        (1_000, 1_000, 2_000)
    );
    assert!(report.balanced(), "{report}");

    // `broadcasts()` says every subscription gets every event: a second one is refused.
    let mut pipeline = Pipeline::new();
    let mirrored = pipeline.add_producer_named("Mirrored", Numbers::mirrored(10));
    let tally = pipeline.add_consumer(Tally {
        got: Arc::default(),
    });
    pipeline
        .subscribe(&mirrored, &tally)
        .subscribe(&mirrored, &tally);
    let error = pipeline.run().await.expect_err("subscribed twice");
    let PipelineError::InvalidDispatch { stage, error } = &error else {
        panic!("expected InvalidDispatch, got {error:?}");
    };
    assert_eq!(stage, "Mirrored");
    assert_eq!(
        *error,
        DispatchSetupError::AlreadySubscribed {
            consumer: "Tally".into()
        }
    );
}

#[tokio::test]
async fn a_selector_on_a_broadcast_that_does_not_select_is_refused() {
    let mut pipeline = Pipeline::new();
    let mirrored = pipeline.add_producer_named("Mirrored", Numbers::mirrored(10));
    let tally = pipeline.add_consumer(Tally {
        got: Arc::default(),
    });
    pipeline.subscribe_selected(&mirrored, &tally, SubscribeOptions::new(), |n: &u64| {
        n.is_multiple_of(2)
    });
    let error = pipeline.run().await.expect_err("Mirror takes no selector");
    // The stage broadcasts (`broadcasts()`), but its dispatcher does not `selects()`: the error
    // must not say that it does not broadcast.
    assert_eq!(
        error.to_string(),
        "the subscriptions to `Mirrored` do not fit its dispatcher: `Tally` has a selector, but \
         the stage's dispatcher takes none (a broadcast's does)"
    );
    let PipelineError::InvalidDispatch { stage, error } = &error else {
        panic!("expected InvalidDispatch, got {error:?}");
    };
    assert_eq!(stage, "Mirrored");
    assert_eq!(
        *error,
        DispatchSetupError::NotBroadcast {
            consumer: "Tally".into()
        }
    );
}

// ------------------------------------------------------------------------------------------------
// Who is who: a dispatcher sees subscription numbers; its stage knows the consumers' names.

/// What the stage learns of its consumers and shares with its dispatcher: each subscription's
/// number and the consumer's name.
type Names = Arc<Mutex<BTreeMap<SubscriptionId, String>>>;

/// A round robin that keeps, for each batch it sends, the name of the consumer it went to, looked
/// up in what its stage shares.
struct NamingRoundRobin {
    inner: RoundRobin,
    names: Names,
    sent_to: Arc<Mutex<Vec<String>>>,
}

impl Dispatcher<u64> for NamingRoundRobin {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<u64>,
    ) -> Result<usize, DispatchError> {
        self.inner.subscribe(sub, options)
    }
    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        Dispatcher::<u64>::cancel(&mut self.inner, sub)
    }
    fn ask(&mut self, sub: SubscriptionId, demand: usize, out: &mut Outbox<'_, u64>) -> usize {
        self.inner.ask(sub, demand, out)
    }
    fn dispatch(
        &mut self,
        events: Vec<u64>,
        out: &mut Outbox<'_, u64>,
    ) -> Result<Vec<u64>, DispatchError> {
        let mut deliveries: Deliveries<u64> = Vec::new();
        let leftover = {
            let mut mine = Outbox::new(&mut deliveries);
            self.inner.dispatch(events, &mut mine)?
        };
        let names = self.names.lock().unwrap();
        for (sub, batch) in deliveries {
            let name = names
                .get(&sub)
                .cloned()
                .unwrap_or_else(|| format!("#{sub}?"));
            self.sent_to.lock().unwrap().push(name);
            out.send(sub, batch);
        }
        Ok(leftover)
    }
    fn capacity(&self) -> usize {
        Dispatcher::<u64>::capacity(&self.inner)
    }
    fn consumers(&self) -> usize {
        Dispatcher::<u64>::consumers(&self.inner)
    }
}

/// Numbers through a [`NamingRoundRobin`] it shares its consumers' names with.
struct NamedNumbers {
    numbers: Numbers,
    names: Names,
    sent_to: Arc<Mutex<Vec<String>>>,
}

impl Producer for NamedNumbers {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(self.numbers.handle_demand(demand))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(NamingRoundRobin {
            inner: RoundRobin::default(),
            names: self.names.clone(),
            sent_to: self.sent_to.clone(),
        })
    }
    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, _ctx: &mut Context<'_, Self>) {
        self.names
            .lock()
            .unwrap()
            .insert(subscriber.tag().id(), subscriber.consumer().to_owned());
    }
}

#[tokio::test]
async fn a_dispatcher_names_the_consumers_it_sends_to_through_what_its_stage_shares() {
    let names = Names::default();
    let sent_to = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(NamedNumbers {
        numbers: Numbers::round_robin(40),
        names: names.clone(),
        sent_to: sent_to.clone(),
    });
    for name in ["left", "right"] {
        let tally = pipeline.add_consumer_named(
            name,
            Tally {
                got: Arc::default(),
            },
        );
        pipeline.subscribe(&numbers, &tally);
    }
    let report = tokio::time::timeout(HANG, pipeline.run())
        .await
        .expect("no hang")
        .expect("a clean run");
    assert_eq!(report.totals().handled, 40);
    let named: BTreeSet<String> = names.lock().unwrap().values().cloned().collect();
    assert_eq!(
        named,
        BTreeSet::from(["left".to_owned(), "right".to_owned()])
    );
    // Every batch's subscription number was one the stage had named.
    let sent_to = sent_to.lock().unwrap();
    assert!(sent_to.len() >= 2, "{sent_to:?}");
    let sent_to: BTreeSet<&str> = sent_to.iter().map(String::as_str).collect();
    assert_eq!(sent_to, BTreeSet::from(["left", "right"]));
}
