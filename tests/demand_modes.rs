//! GenStage's demand modes (genstage-semantics.md §1.7): a producer that accumulates demand instead
//! of forwarding it, switched through its reference. Scenarios 18 and 20–23 of §4, rewritten for
//! `DemandMode`, `ProducerRef::demand` and `demand_mode`, assert the exact events and the exact
//! `handle_demand` calls. Scenario 19 (accumulating with the broadcast dispatcher: consumers that
//! subscribe while events cast to the producer wait) needs `BroadcastDispatcher`, which genstage does
//! not have yet.

use std::sync::{Arc, Mutex};

use genstage::prelude::*;
use genstage::{ConsumerRef, ProducerRef};
use tokio::sync::Semaphore;

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// Counts from 0 to `end`, emitting exactly what it is asked (less at the end, then `Emit::last`),
/// and records every `handle_demand` call.
struct Counter {
    next: u64,
    end: u64,
    calls: Shared<usize>,
    mode: DemandMode,
}

impl Counter {
    fn new(end: u64, mode: DemandMode) -> (Self, Shared<usize>) {
        let calls = Shared::default();
        let counter = Counter {
            next: 0,
            end,
            calls: calls.clone(),
            mode,
        };
        (counter, calls)
    }
}

impl Producer for Counter {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.calls.lock().unwrap().push(demand);
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer().demand(self.mode)
    }
}

/// Records its batches; each waits for a gate permit first, if gated, so that it asks again only
/// once the test lets it.
struct Log {
    seen: Shared<Vec<u64>>,
    gate: Option<Arc<Semaphore>>,
}

impl Log {
    fn new(gate: Option<Arc<Semaphore>>) -> (Self, Shared<Vec<u64>>) {
        let seen = Shared::default();
        (
            Log {
                seen: seen.clone(),
                gate,
            },
            seen,
        )
    }
}

impl Consumer for Log {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.lock().unwrap().push(events);
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        Ok(())
    }
}

/// Returns once the producer has taken in its subscriptions and their initial asks: the first
/// answer may come from before the pipeline wired them, the second comes after.
async fn wired<S: Producer>(producer: &ProducerRef<S>) {
    producer.estimate_buffered_count().await.unwrap();
    producer.estimate_buffered_count().await.unwrap();
}

/// Waits until `seen` holds `n` batches.
async fn batches(seen: &Shared<Vec<u64>>, n: usize) {
    while seen.lock().unwrap().len() < n {
        tokio::task::yield_now().await;
    }
}

/// A `Counter` feeding one `Log`, and what both recorded.
struct CounterToLog {
    pipeline: Pipeline,
    counter: ProducerRef<Counter>,
    calls: Shared<usize>,
    seen: Shared<Vec<u64>>,
}

fn counter_to_log(end: u64, mode: DemandMode, options: SubscribeOptions) -> CounterToLog {
    let (counter, calls) = Counter::new(end, mode);
    let (log, seen) = Log::new(None);
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(counter);
    let log: ConsumerRef<Log> = pipeline.add_consumer(log);
    pipeline.subscribe_with(&counter, &log, options);
    CounterToLog {
        pipeline,
        counter,
        calls,
        seen,
    }
}

fn max_4() -> SubscribeOptions {
    SubscribeOptions::new().max_demand(4).min_demand(0)
}

/// 20: accumulate set through the reference, then forward: the consumer (max 4, min 0) gets
/// `[0, 1, 2, 3]`, from one `handle_demand(4)`, and nothing before the switch.
#[tokio::test]
async fn scenario_20_accumulate_set_through_the_reference_then_forward() {
    let CounterToLog {
        pipeline,
        counter,
        calls,
        seen,
    } = counter_to_log(4, DemandMode::Forward, max_4());
    // Sent before `start`: it reaches the producer before its subscriptions.
    counter.demand(DemandMode::Accumulate).unwrap();
    let running = pipeline.start();
    wired(&counter).await;
    assert_eq!(counter.demand_mode().await, Ok(DemandMode::Accumulate));
    assert_eq!(*calls.lock().unwrap(), [] as [usize; 0]);
    assert_eq!(counter.estimate_buffered_count().await, Ok(0));

    counter.demand(DemandMode::Forward).unwrap();
    let report = running.await.unwrap();
    assert_eq!(*calls.lock().unwrap(), [4]);
    assert_eq!(*seen.lock().unwrap(), [vec![0, 1, 2, 3]]);
    assert_eq!(report.stage("Log").unwrap().events_in, 4);
}

/// 21: forward set before any subscription: events flow as usual, one `handle_demand` per ask.
#[tokio::test]
async fn scenario_21_forward_before_any_subscription_just_works() {
    let CounterToLog {
        pipeline,
        counter,
        calls,
        seen,
    } = counter_to_log(8, DemandMode::Accumulate, max_4());
    counter.demand(DemandMode::Forward).unwrap();
    running_to_end(pipeline).await;
    assert_eq!(*calls.lock().unwrap(), [4, 4]);
    assert_eq!(*seen.lock().unwrap(), [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    // Once it has ended, its reference says so.
    let ended = Err(CallError::Ended {
        stage: "Counter".to_owned(),
    });
    assert_eq!(counter.demand_mode().await, ended);
    assert_eq!(counter.demand(DemandMode::Accumulate), ended.map(drop));
}

async fn running_to_end(pipeline: Pipeline) {
    let report = pipeline.start().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// 22: setting accumulate while accumulating keeps the demand recorded so far: the initial ask of 4
/// is still replayed on forward.
#[tokio::test]
async fn scenario_22_accumulate_again_keeps_the_recorded_demand() {
    let CounterToLog {
        pipeline,
        counter,
        calls,
        seen,
    } = counter_to_log(4, DemandMode::Accumulate, max_4());
    let running = pipeline.start();
    wired(&counter).await;
    counter.demand(DemandMode::Accumulate).unwrap();
    assert_eq!(counter.demand_mode().await, Ok(DemandMode::Accumulate));
    assert_eq!(*calls.lock().unwrap(), [] as [usize; 0]);

    counter.demand(DemandMode::Forward).unwrap();
    running.await.unwrap();
    assert_eq!(*calls.lock().unwrap(), [4]);
    assert_eq!(*seen.lock().unwrap(), [vec![0, 1, 2, 3]]);
}

/// 23: demands are not combined while accumulating. Two consumers with max 2 asked 2 each: on
/// forward, `handle_demand(2)` runs twice, not `handle_demand(4)` once, and each consumer gets the
/// 2 events of its own call. (GenStage's producer then emits `[1]` from a re-ask of the demand it
/// kept; here the producer emits exactly what it is asked, so there is no shortfall to ask again
/// for, and the runtime asks again for one itself: see the README's deliberate differences.) Each
/// consumer holds its batch until the calls are checked, so that neither asks again before.
#[tokio::test]
async fn scenario_23_recorded_demands_are_replayed_one_call_each() {
    let (counter, calls) = Counter::new(4, DemandMode::Accumulate);
    let gate = Arc::new(Semaphore::new(0));
    let (first, first_seen) = Log::new(Some(gate.clone()));
    let (second, second_seen) = Log::new(Some(gate.clone()));
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(counter);
    let first = pipeline.add_consumer_named("first", first);
    let second = pipeline.add_consumer_named("second", second);
    let options = SubscribeOptions::new().max_demand(2).min_demand(0);
    pipeline.subscribe_with(&counter, &first, options);
    pipeline.subscribe_with(&counter, &second, options);
    let running = pipeline.start();
    wired(&counter).await;
    assert_eq!(*calls.lock().unwrap(), [] as [usize; 0]);

    counter.demand(DemandMode::Forward).unwrap();
    batches(&first_seen, 1).await;
    batches(&second_seen, 1).await;
    assert_eq!(*calls.lock().unwrap(), [2, 2]);
    assert_eq!(*first_seen.lock().unwrap(), [vec![0, 1]]);
    assert_eq!(*second_seen.lock().unwrap(), [vec![2, 3]]);

    gate.add_permits(2);
    let report = running.await.unwrap();
    assert_eq!(*calls.lock().unwrap(), [2, 2]);
    assert_eq!(report.stage("first").unwrap().events_in, 2);
    assert_eq!(report.stage("second").unwrap().events_in, 2);
}

/// Emits only what it is cast; `handle_demand` records its demand and ends the producer.
struct Fed {
    calls: Shared<usize>,
}

/// Emit these now.
struct Say(Vec<u64>);

impl Producer for Fed {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.calls.lock().unwrap().push(demand);
        Ok(Emit::last(Vec::new()))
    }

    fn producer_options(&self) -> ProducerOptions {
        ProducerOptions::for_producer().demand(DemandMode::Accumulate)
    }
}

impl HandleCast<Say> for Fed {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Say(events): Say,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// Starts a `Fed` producer, accumulating, feeding one `Log` with `options`; casts it `1..=6` in two
/// messages, checks that all six wait in its buffer, and switches it to forward. Returns the
/// `handle_demand` calls and the batches once the pipeline has ended.
async fn fed_then_forward(options: SubscribeOptions) -> (Vec<usize>, Vec<Vec<u64>>) {
    let calls = Shared::default();
    let (log, seen) = Log::new(None);
    let mut pipeline = Pipeline::new();
    let fed = pipeline.add_producer(Fed {
        calls: calls.clone(),
    });
    let log = pipeline.add_consumer(log);
    pipeline.subscribe_with(&fed, &log, options);
    let running = pipeline.start();
    wired(&fed).await;

    fed.cast(Say(vec![1, 2, 3])).unwrap();
    fed.cast(Say(vec![4, 5, 6])).unwrap();
    // Answered after both casts: nothing went out, although the consumer asked.
    assert_eq!(fed.estimate_buffered_count().await, Ok(6));
    assert_eq!(*calls.lock().unwrap(), [] as [usize; 0]);

    fed.demand(DemandMode::Forward).unwrap();
    let report = running.await.unwrap();
    assert_eq!(report.stage("Fed").unwrap().emitted, 6);
    assert_eq!(report.stage("Log").unwrap().events_in, 6);
    let calls = calls.lock().unwrap().clone();
    let seen = seen.lock().unwrap().clone();
    (calls, seen)
}

/// Events cast while accumulating wait in the buffer, and go out in order on forward. The replayed
/// ask of 10 is served 6 from the buffer first, so `handle_demand` is called with the 4 left.
#[tokio::test]
async fn events_cast_while_accumulating_are_buffered_and_delivered_in_order_on_forward() {
    let (calls, seen) =
        fed_then_forward(SubscribeOptions::new().max_demand(10).min_demand(0)).await;
    assert_eq!(calls, [4]);
    assert_eq!(seen, [vec![1, 2, 3, 4, 5, 6]]);
}

/// A replayed ask that the buffer serves whole calls no `handle_demand` (as GenStage, which calls
/// it only for what the buffer did not serve): the ask of 4 takes `1..=4`; the consumer's next ask
/// takes the 2 left and `handle_demand` is called for the other 2.
#[tokio::test]
async fn a_replayed_ask_the_buffer_serves_whole_calls_no_handle_demand() {
    let (calls, seen) = fed_then_forward(max_4()).await;
    assert_eq!(calls, [2]);
    assert_eq!(seen, [vec![1, 2, 3, 4], vec![5, 6]]);
}

/// A graceful shutdown of an accumulating producer delivers what it holds.
#[tokio::test]
async fn a_shutdown_delivers_what_an_accumulating_producer_holds() {
    let calls = Shared::default();
    let (log, seen) = Log::new(None);
    let mut pipeline = Pipeline::new();
    let fed = pipeline.add_producer(Fed {
        calls: calls.clone(),
    });
    let log = pipeline.add_consumer(log);
    pipeline.subscribe_with(&fed, &log, max_4());
    let running = pipeline.start();
    wired(&fed).await;
    fed.cast(Say(vec![1, 2, 3, 4, 5, 6])).unwrap();
    assert_eq!(fed.estimate_buffered_count().await, Ok(6));

    let report = running.shutdown().await.unwrap();
    assert_eq!(*calls.lock().unwrap(), [] as [usize; 0]);
    assert_eq!(*seen.lock().unwrap(), [vec![1, 2, 3, 4], vec![5, 6]]);
    assert_eq!(report.stage("Fed").unwrap().status, StageStatus::ShutDown);
    assert_eq!(report.totals().lost, 0, "{report:?}");
}

/// A `#[stage]` counter that starts accumulating, and records its `handle_demand` calls.
struct Accumulating {
    next: u64,
    calls: Shared<usize>,
}

#[stage(producer, demand = accumulate)]
impl Accumulating {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        self.calls.lock().unwrap().push(demand);
        let events: Vec<u64> = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        Emit::last(events)
    }
}

/// 18: `demand = accumulate` from the start: `demand_mode` says `Accumulate`, and nothing is
/// consumed (max 4, min 0) until the producer is switched to forward; then the consumer gets
/// `[0, 1, 2, 3]` from one `handle_demand(4)`.
#[tokio::test]
async fn scenario_18_a_producer_started_accumulating_emits_only_once_forwarded() {
    let calls = Shared::default();
    let (log, seen) = Log::new(None);
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer(Accumulating {
        next: 0,
        calls: calls.clone(),
    });
    let log = pipeline.add_consumer_named("log", log);
    pipeline.subscribe_with(&counter, &log, max_4());
    let running = pipeline.start();
    wired(&counter).await;
    assert_eq!(counter.demand_mode().await, Ok(DemandMode::Accumulate));
    assert_eq!(*calls.lock().unwrap(), [] as [usize; 0]);
    assert_eq!(*seen.lock().unwrap(), [] as [Vec<u64>; 0]);

    counter.demand(DemandMode::Forward).unwrap();
    let report = running.await.unwrap();
    assert_eq!(*calls.lock().unwrap(), [4]);
    assert_eq!(*seen.lock().unwrap(), [vec![0, 1, 2, 3]]);
    assert_eq!(report.stage("log").unwrap().events_in, 4);
}
