//! Stage names in the report are unique and the same through the builder and `pipeline!`: the
//! instances of a group (`[C; n]`, `add_consumers`) are `C[0]`, `C[1]`, …; two unnamed stages of one type are `C` and `C#2`; a
//! name given explicitly that another stage also has is an error naming both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use genstage::prelude::*;

/// Passes its events on.
struct Tap;

#[stage(producer_consumer)]
impl Tap {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }
}

/// Counts the events it receives into a shared total.
struct Collect(Arc<AtomicU64>);

#[stage(consumer)]
impl Collect {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
    }
}

fn names(report: &Report) -> Vec<&str> {
    report.stages.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test]
async fn two_unnamed_stages_of_one_type_in_different_chains_are_told_apart() {
    let total = Arc::new(AtomicU64::new(0));
    let report = pipeline! {
        from_iter(0..10u64) -> Tap -> Collect(total.clone());
        from_iter(0..20u64) -> Tap -> Collect(total.clone());
    }
    .run()
    .await
    .unwrap();

    assert_eq!(
        names(&report),
        [
            "from_iter",
            "Tap",
            "Collect",
            "from_iter#2",
            "Tap#2",
            "Collect#2"
        ]
    );
    assert_eq!(report.stage("Tap").unwrap().events_in, 10);
    assert_eq!(report.stage("Tap#2").unwrap().events_in, 20);
    assert_eq!(total.load(Ordering::Relaxed), 30);
}

#[tokio::test]
async fn group_instances_keep_their_index_beside_a_single_stage_of_their_type() {
    let total = Arc::new(AtomicU64::new(0));
    let report = pipeline! {
        numbers = from_iter(0..100u64);
        numbers -> [Collect(total.clone()); 2];
        numbers -> Tap -> Collect(total.clone());
    }
    .run()
    .await
    .unwrap();

    assert_eq!(
        names(&report),
        ["numbers", "Collect[0]", "Collect[1]", "Tap", "Collect#2"]
    );
    assert_eq!(report.instances("Collect").count(), 2);
    let all: u64 = ["Collect[0]", "Collect[1]", "Collect#2"]
        .iter()
        .map(|name| report.stage(name).unwrap().events_in)
        .sum();
    assert_eq!(all, 100);
    assert_eq!(total.load(Ordering::Relaxed), 100);
}

#[tokio::test]
async fn a_group_added_through_the_builder_is_named_as_pipeline_names_one() {
    let total = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..100u64));
    let made = Arc::new(std::sync::Mutex::new(Vec::new()));
    let group = pipeline.add_consumers(2, |i| {
        made.lock().unwrap().push(i);
        Collect(total.clone())
    });
    let tap = pipeline.add_producer_consumer(Tap);
    let single = pipeline.add_consumer(Collect(total.clone()));
    for collect in &group {
        pipeline.subscribe(&numbers, collect);
    }
    pipeline.subscribe(&numbers, &tap).subscribe(&tap, &single);
    let before: Vec<String> = pipeline.stage_names().collect();
    let report = pipeline.run().await.unwrap();

    // As `group_instances_keep_their_index_beside_a_single_stage_of_their_type`'s `pipeline!`;
    // the pipeline names them so before it runs.
    assert_eq!(names(&report), before);
    assert_eq!(
        names(&report),
        ["numbers", "Collect[0]", "Collect[1]", "Tap", "Collect#2"]
    );
    assert_eq!(*made.lock().unwrap(), [0, 1]);
    assert_eq!(report.instances("Collect").count(), 2);
    assert_eq!(total.load(Ordering::Relaxed), 100);
}

#[tokio::test]
async fn a_named_group_through_the_builder_takes_its_name_with_each_index() {
    let total = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..30u64));
    let taps = pipeline.add_producer_consumers_named("taps", 3, |_| Tap);
    let sinks = pipeline.add_consumers_named("sinks", 1, |_| Collect(total.clone()));
    for tap in &taps {
        pipeline.subscribe(&numbers, tap).subscribe(tap, &sinks[0]);
    }
    let report = pipeline.run().await.unwrap();

    // A group of one is named as a single stage.
    assert_eq!(
        names(&report),
        ["numbers", "taps[0]", "taps[1]", "taps[2]", "sinks"]
    );
    let passed: u64 = (0..3)
        .map(|i| report.stage(&format!("taps[{i}]")).unwrap().events_out)
        .sum();
    assert_eq!(passed, 30);
    assert_eq!(report.stage("sinks").unwrap().events_in, 30);
    // None of `make`'s, for a group of none.
    let mut empty = Pipeline::new();
    assert!(empty
        .add_consumers(0, |_| Collect(total.clone()))
        .is_empty());
    assert_eq!(total.load(Ordering::Relaxed), 30);
}

#[tokio::test]
async fn from_iter_is_named_alike_through_the_builder_and_the_macro() {
    let total = Arc::new(AtomicU64::new(0));
    let by_macro = pipeline! { from_iter(0..3u64) -> Collect(total.clone()) }
        .run()
        .await
        .unwrap();

    let mut pipeline = Pipeline::new();
    let plain = pipeline.add_producer(from_iter(0..3u64));
    let as_none = pipeline.add_producer_as(None, from_iter(0..3u64));
    let sink = pipeline.add_consumer(Collect(total.clone()));
    pipeline.subscribe(&plain, &sink);
    pipeline.subscribe(&as_none, &sink);
    let by_builder = pipeline.run().await.unwrap();

    assert_eq!(names(&by_macro), ["from_iter", "Collect"]);
    assert_eq!(names(&by_builder), ["from_iter", "from_iter#2", "Collect"]);
    assert_eq!(total.load(Ordering::Relaxed), 9);
}

#[tokio::test]
async fn a_given_name_that_an_instance_of_a_group_has_is_an_error_naming_both() {
    let total = Arc::new(AtomicU64::new(0));
    let mut pipeline = pipeline! { from_iter(0..10u64) -> [Collect(total.clone()); 2] };
    let more = pipeline.add_producer(from_iter(0..5u64));
    let sink = pipeline.add_consumer_named("Collect[0]", Collect(total.clone()));
    pipeline.subscribe(&more, &sink);

    let error = pipeline.run().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "two stages are named `Collect[0]`: stage #1 (instance 0 of a group named after its type) and stage #4 (named explicitly); a name given explicitly must differ from every other stage's name"
    );
    match &error {
        PipelineError::DuplicateName { name, stages } => {
            assert_eq!(name, "Collect[0]");
            assert_eq!(
                stages,
                &[
                    "stage #1 (instance 0 of a group named after its type)".to_owned(),
                    "stage #4 (named explicitly)".to_owned(),
                ]
            );
        }
        other => panic!("expected DuplicateName, got {other}"),
    }
    assert_eq!(error.stage(), "Collect[0]");
    assert_eq!(total.load(Ordering::Relaxed), 0, "nothing ran");
}

#[tokio::test]
async fn a_name_given_twice_or_also_generated_is_an_error() {
    let total = Arc::new(AtomicU64::new(0));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("numbers", from_iter(0..3u64));
    let first = pipeline.add_consumer_named("sink", Collect(total.clone()));
    let second = pipeline.add_consumer_as(Some("sink".to_owned()), Collect(total.clone()));
    pipeline.subscribe(&numbers, &first);
    pipeline.subscribe(&numbers, &second);
    // Listed as given, since no name can be made unique.
    let listed: Vec<String> = pipeline.stage_names().collect();
    assert_eq!(listed, ["numbers", "sink", "sink"]);
    let error = pipeline.run().await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "two stages are named `sink`: stage #1 (named explicitly) and stage #2 (named explicitly); a name given explicitly must differ from every other stage's name"
    );

    // A given name equal to another stage's type name.
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_named("Collect", from_iter(0..3u64));
    let sink = pipeline.add_consumer(Collect(total.clone()));
    pipeline.subscribe(&numbers, &sink);
    let error = pipeline.run().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("two stages are named `Collect`: stage #0 (named explicitly) and stage #1 (named after its type)"),
        "{error}"
    );
    assert_eq!(total.load(Ordering::Relaxed), 0, "nothing ran");
}
