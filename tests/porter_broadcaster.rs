//! GenStage's `Broadcaster` example ported: a producer that callers `call` with an event
//! (`GenStage.call(pid, {:notify, event})`), answered once the event is taken for dispatch, that
//! keeps the events (and their callers waiting) while there is no demand, and broadcasts them to
//! consumers of different demand settings.
//!
//! The port differs from the Elixir in one documented way: the Elixir keeps `pending_demand` in its
//! state, and the runtime here keeps it (README, "Deliberate differences"), so `handle_call` only
//! queues and `handle_demand` takes what its demand allows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use genstage::prelude::*;
use tokio::sync::Semaphore;

/// `{:notify, event}`: answered once the event has been handed to the dispatcher.
struct Notify(u64);

/// How many events wait in the broadcaster's queue.
struct Queued;

/// The events waiting for demand, each with the call to answer when it goes out.
#[derive(Default)]
struct Broadcaster {
    queue: VecDeque<(u64, ReplyTo<()>)>,
}

#[stage(producer, dispatcher = broadcast)]
impl Broadcaster {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let take = demand.min(self.queue.len());
        self.queue
            .drain(..take)
            .map(|(event, caller)| {
                caller.reply(());
                event
            })
            .collect()
    }

    fn handle_call(&mut self, notify: Notify, caller: ReplyTo<()>) -> Vec<u64> {
        self.queue.push_back((notify.0, caller));
        Vec::new()
    }
}

impl HandleCall<Queued> for Broadcaster {
    type Reply = usize;
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        _: Queued,
        reply: ReplyTo<usize>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(self.queue.len());
        Ok(Vec::new())
    }
}

/// Records each batch it handles; when it has a gate, takes a permit before each batch.
struct Printer {
    batches: Arc<Mutex<Vec<Vec<u64>>>>,
    gate: Option<Arc<Semaphore>>,
    tag: Arc<Mutex<Option<SubscriptionTag>>>,
}

impl Printer {
    fn new(gate: Option<Arc<Semaphore>>) -> (Self, Arc<Mutex<Vec<Vec<u64>>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let printer = Printer {
            batches: batches.clone(),
            gate,
            tag: Arc::default(),
        };
        (printer, batches)
    }
}

#[stage(consumer)]
impl Printer {
    fn handle_subscribe(&mut self, subscription: &Subscription) {
        *self.tag.lock().unwrap() = Some(subscription.tag());
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), String> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.map_err(|e| e.to_string())?.forget();
        }
        self.batches.lock().unwrap().push(events);
        Ok(())
    }
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn batches_of(log: &Arc<Mutex<Vec<Vec<u64>>>>) -> Vec<Vec<u64>> {
    log.lock().unwrap().clone()
}

/// The slow consumer (max 2, min 0, gated) paces both: two events go out against its first ask,
/// then callers wait, their events queued in the broadcaster, until it has handled both and asks
/// again; then the two waiting events go out together to both consumers, and both calls return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_waits_for_the_slowest_consumer_and_both_consumers_get_every_event() {
    let gate = Arc::new(Semaphore::new(0));
    let (fast, fast_log) = Printer::new(None);
    let (slow, slow_log) = Printer::new(Some(gate.clone()));
    let p = pipeline! {
        broadcaster = Broadcaster::default();
        broadcaster -[max_demand = 10, min_demand = 5]-> fast;
        broadcaster -[max_demand = 2, min_demand = 0]-> slow;
    };
    let broadcaster = p.broadcaster.clone();
    let running = p.start();

    // Demand for 2 (the slow consumer's), so the first two notifies return at once.
    broadcaster.call(Notify(1)).await.unwrap();
    until("the fast consumer's [1]", || {
        batches_of(&fast_log).len() == 1
    })
    .await;
    broadcaster.call(Notify(2)).await.unwrap();
    until("the fast consumer's [2]", || {
        batches_of(&fast_log).len() == 2
    })
    .await;

    // No demand left: the next two are queued, their callers waiting.
    let mut third = broadcaster.call(Notify(3)).boxed();
    assert!((&mut third).now_or_never().is_none());
    let mut fourth = broadcaster.call(Notify(4)).boxed();
    assert!((&mut fourth).now_or_never().is_none());
    // The mailbox is FIFO: by the time `Queued` is answered, both notifies have been taken in.
    assert_eq!(broadcaster.call(Queued).await.unwrap(), 2);
    assert!((&mut third).now_or_never().is_none());
    assert!((&mut fourth).now_or_never().is_none());
    assert_eq!(batches_of(&slow_log), Vec::<Vec<u64>>::new());

    // The slow consumer handles [1]: 1 still outstanding, above its min 0, so no ask.
    gate.add_permits(1);
    until("the slow consumer's [1]", || {
        batches_of(&slow_log).len() == 1
    })
    .await;
    assert_eq!(broadcaster.call(Queued).await.unwrap(), 2);
    // It handles [2] and asks 2: both waiting events go out, in one batch each.
    gate.add_permits(2);
    third.await.unwrap();
    fourth.await.unwrap();
    until("the slow consumer's [3, 4]", || {
        batches_of(&slow_log).len() == 3
    })
    .await;
    assert_eq!(broadcaster.call(Queued).await.unwrap(), 0);

    let expected = vec![vec![1], vec![2], vec![3, 4]];
    until("the fast consumer's [3, 4]", || {
        batches_of(&fast_log).len() == 3
    })
    .await;
    assert_eq!(batches_of(&fast_log), expected);
    assert_eq!(batches_of(&slow_log), expected);

    gate.add_permits(100);
    let report = running.shutdown().await.unwrap();
    let totals = report.totals();
    assert_eq!(report.stage("broadcaster").unwrap().emitted, 4);
    assert_eq!(report.stage("broadcaster").unwrap().events_out, 8);
    // Each event goes to both: one copy beyond the first.
    assert_eq!(report.stage("broadcaster").unwrap().copies, 4);
    assert_eq!(totals.handled, 8);
    assert_eq!(totals.lost, 0);
    assert!(report.balanced(), "{report}");
}

/// Many callers at once, consumers of different demand settings: every event reaches both, in
/// the order the broadcaster took the calls, and every call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_notifies_reach_both_consumers_in_call_order() {
    let (small, small_log) = Printer::new(None);
    let (large, large_log) = Printer::new(None);
    let p = pipeline! {
        broadcaster = Broadcaster::default();
        broadcaster -[max_demand = 1, min_demand = 0]-> small;
        broadcaster -[max_demand = 7, min_demand = 3]-> large;
    };
    let broadcaster = p.broadcaster.clone();
    let running = p.start();

    // Each notify is sent when first polled: send them all, in order, before any is answered.
    let mut waiting = Vec::new();
    for n in 0..50 {
        let mut call = broadcaster.call(Notify(n)).boxed();
        match (&mut call).now_or_never() {
            Some(answer) => answer.unwrap(),
            None => waiting.push(call),
        }
    }
    for call in waiting {
        call.await.unwrap();
    }
    let report = running.shutdown().await.unwrap();

    let flat = |log: &Arc<Mutex<Vec<Vec<u64>>>>| batches_of(log).concat();
    assert_eq!(flat(&small_log), (0..50).collect::<Vec<_>>());
    assert_eq!(flat(&large_log), (0..50).collect::<Vec<_>>());
    // The consumer with max_demand 1 paces both: every batch is one event.
    assert!(batches_of(&small_log).iter().all(|b| b.len() == 1));
    assert!(batches_of(&large_log).iter().all(|b| b.len() == 1));
    assert_eq!(report.totals().handled, 100);
    assert!(report.balanced(), "{report}");
}

/// Cancelling the slow consumer's subscription while callers wait releases them: the broadcast's
/// demand is then the fast consumer's alone (GenStage's cancel runs `sync_demands`), so the queued
/// events go out to it, and both calls return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_slowest_consumer_releases_the_waiting_notifies() {
    let gate = Arc::new(Semaphore::new(0));
    let (fast, fast_log) = Printer::new(None);
    let (slow, slow_log) = Printer::new(Some(gate.clone()));
    let slow_tag = slow.tag.clone();
    let p = pipeline! {
        broadcaster = Broadcaster::default();
        broadcaster -[max_demand = 10, min_demand = 5]-> fast;
        broadcaster -[max_demand = 1, min_demand = 0]-> slow;
    };
    let broadcaster = p.broadcaster.clone();
    let running = p.start();

    broadcaster.call(Notify(1)).await.unwrap();
    let mut second = broadcaster.call(Notify(2)).boxed();
    let mut third = broadcaster.call(Notify(3)).boxed();
    assert!((&mut second).now_or_never().is_none());
    assert!((&mut third).now_or_never().is_none());
    assert_eq!(broadcaster.call(Queued).await.unwrap(), 2);

    // Its `handle_subscribe` runs in its own task, which the events need not have woken yet.
    until("the slow consumer's handle_subscribe", || {
        slow_tag.lock().unwrap().is_some()
    })
    .await;
    let tag = slow_tag.lock().unwrap().expect("subscribed");
    running.cancel(tag).await.unwrap();
    second.await.unwrap();
    third.await.unwrap();
    until("the fast consumer's [2, 3]", || {
        batches_of(&fast_log).concat() == [1, 2, 3]
    })
    .await;
    gate.add_permits(1);
    let report = running.shutdown().await.unwrap();
    // The slow consumer handled the one event it had been sent.
    assert_eq!(batches_of(&slow_log), [vec![1]]);
    assert_eq!(batches_of(&fast_log).concat(), [1, 2, 3]);
    assert_eq!(report.stage("broadcaster").unwrap().emitted, 3);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");
}

/// Events to emit now.
struct Cast(Vec<u64>);

/// Emits only what it is cast; ends when asked for more.
struct Caster;

#[stage(producer, dispatcher = broadcast, demand = accumulate)]
impl Caster {
    fn handle_demand(&mut self, _demand: usize) -> Emit<u64> {
        Emit::last(Vec::new())
    }

    fn handle_cast(&mut self, cast: Cast) -> Vec<u64> {
        cast.0
    }
}

/// Records each batch it handles, three events at a time.
struct Three(Arc<Mutex<Vec<Vec<u64>>>>);

#[stage(consumer, max_demand = 3, min_demand = 0)]
impl Three {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.0.lock().unwrap().push(events);
    }
}

/// GenStage's advice for a broadcast (§2): start accumulating, subscribe every consumer, then
/// forward, so that a late subscriber misses nothing. The second consumer joins the running
/// pipeline after events were cast; on forward both get every event, in the same batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_subscribed_while_accumulating_misses_nothing() {
    let first = Arc::new(Mutex::new(Vec::new()));
    let second = Arc::new(Mutex::new(Vec::new()));
    let p = pipeline! { caster = Caster -> Three(first.clone()) };
    let caster = p.caster.clone();
    let running = p.start();
    caster.cast(Cast(vec![1, 2])).unwrap();
    let late = running.add_consumer(Three(second.clone())).await.unwrap();
    running.subscribe(&caster, &late).await.unwrap();
    caster.cast(Cast(vec![3, 4, 5, 6])).unwrap();
    assert_eq!(caster.estimate_buffered_count().await.unwrap(), 6);
    caster.demand(DemandMode::Forward).unwrap();
    let report = running.shutdown().await.unwrap();

    let expected = vec![vec![1, 2, 3], vec![4, 5, 6]];
    assert_eq!(batches_of(&first), expected);
    assert_eq!(batches_of(&second), expected);
    assert_eq!(report.stage("caster").unwrap().emitted, 6);
    assert_eq!(report.stage("caster").unwrap().copies, 6);
    assert!(report.balanced(), "{report}");
}
