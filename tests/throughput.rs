//! End-to-end throughput: a million events through producer -> producer_consumer -> 2 consumers,
//! each handled exactly once and in emission order on every producer/consumer path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_iter, Consumer, Pipeline, ProducerConsumer, StageResult, StageStatus, SubscribeOptions,
};

const EVENTS: u64 = 1_000_000;

/// Passes events through unchanged.
struct Forward;

impl ProducerConsumer for Forward {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// Appends every event it handles to a shared log, in the order handled.
struct Collect(Arc<Mutex<Vec<u64>>>);

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.lock().unwrap().extend_from_slice(&events);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_events_each_handled_once_in_order() {
    let logs = [
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    ];

    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..EVENTS));
    let forward = pipeline.add_producer_consumer_named("forward", Forward);
    let first = pipeline.add_consumer_named("first", Collect(logs[0].clone()));
    let second = pipeline.add_consumer_named("second", Collect(logs[1].clone()));
    pipeline.subscribe(&numbers, &forward);
    pipeline.subscribe(&forward, &first);
    // The second consumer asks in smaller steps, so the two take differently sized shares.
    pipeline.subscribe_with(
        &forward,
        &second,
        SubscribeOptions::new().max_demand(300).min_demand(100),
    );

    let report = tokio::time::timeout(Duration::from_secs(60), pipeline.run())
        .await
        .expect("pipeline did not finish within 60 s")
        .expect("pipeline failed");

    let logs: Vec<Vec<u64>> = logs
        .iter()
        .map(|log| std::mem::take(&mut *log.lock().unwrap()))
        .collect();
    for (name, log) in ["first", "second"].iter().zip(&logs) {
        // One producer, one path: each consumer sees a strictly increasing sequence.
        if let Some(i) = log.windows(2).position(|w| w[0] >= w[1]) {
            panic!(
                "`{name}` received {} after {} (position {})",
                log[i + 1],
                log[i],
                i + 1
            );
        }
        let stage = report.stage(name).unwrap();
        assert_eq!(stage.events_in, log.len() as u64, "{name}");
        assert_eq!(stage.status, StageStatus::Finished, "{name}");
        assert_eq!(stage.excess, 0, "{name}");
        // How the events split between the two is the dispatcher's choice, by demand at each
        // dispatch: one may get them all (this was once asserted, and failed about once in six
        // runs on a loaded machine).
    }

    let mut all: Vec<u64> = logs.concat();
    all.sort_unstable();
    assert_eq!(all.len() as u64, EVENTS, "events handled in total");
    assert!(
        all.iter().copied().eq(0..EVENTS),
        "not every event was handled exactly once"
    );

    let numbers = report.stage("numbers").unwrap();
    assert_eq!(
        (numbers.events_out, numbers.discarded, &numbers.status),
        (EVENTS, 0, &StageStatus::Finished)
    );
    let forward = report.stage("forward").unwrap();
    assert_eq!(
        (
            forward.events_in,
            forward.events_out,
            forward.discarded,
            forward.excess,
            &forward.status
        ),
        (EVENTS, EVENTS, 0, 0, &StageStatus::Finished)
    );
}
