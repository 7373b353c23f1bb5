//! `pipeline!` builds pipelines that run: chains, groups `[S; n]`, named fan-in and fan-out, and
//! per-edge options, each checked with exact counts.
//!
//! The stages are written against the role traits by hand, so these tests do not depend on
//! `#[stage]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use genstage::{
    CallError, ConsumerRef, Context, HandleCall, ProducerConsumerRef, ProducerRef, ReplyTo,
    StageRef,
};

/// Keeps the even numbers.
struct Evens;

impl ProducerConsumer for Evens {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events.into_iter().filter(|n| n % 2 == 0).collect())
    }
}

impl Stage for Evens {
    type Ref = ProducerConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_producer_consumer_as(name, self)
    }
}

/// Passes events of any type on.
struct Forward<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Forward<T> {
    fn new() -> Self {
        Forward(std::marker::PhantomData)
    }
}

impl<T: Send + 'static> ProducerConsumer for Forward<T> {
    type Input = T;
    type Output = T;
    async fn handle_events(&mut self, events: Vec<T>) -> StageResult<Vec<T>> {
        Ok(events)
    }
}

impl<T: Send + 'static> Stage for Forward<T> {
    type Ref = ProducerConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_producer_consumer_as(name, self)
    }
}

/// Passes `u64` events on; `F` is only a tag, so a test can write a type with an arrow in it.
struct Tagged<F>(std::marker::PhantomData<F>);

impl<F> Tagged<F> {
    fn new() -> Self {
        Tagged(std::marker::PhantomData)
    }
}

impl<F: Send + 'static> ProducerConsumer for Tagged<F> {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

impl<F: Send + 'static> Stage for Tagged<F> {
    type Ref = ProducerConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_producer_consumer_as(name, self)
    }
}

/// Batches as their consumers got them: (instance id, batch).
type Batches = Vec<(usize, Vec<u64>)>;

/// Everything the consumers of one test saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Batches>>);

impl Seen {
    /// Every event, sorted.
    fn events(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, batch)| batch.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }

    /// The largest batch one `handle_events` call got.
    fn largest_batch(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.len())
            .max()
            .unwrap_or(0)
    }
}

/// Records every batch, with an instance id taken from a shared counter when it is made.
struct Collect {
    id: usize,
    seen: Seen,
}

impl Collect {
    fn new(seen: &Seen, ids: &AtomicUsize) -> Self {
        Collect {
            id: ids.fetch_add(1, Ordering::SeqCst),
            seen: seen.clone(),
        }
    }
}

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.0.lock().unwrap().push((self.id, events));
        Ok(())
    }
}

impl Stage for Collect {
    type Ref = ConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_as(name, self)
    }
}

/// A consumer that, on its first batch, waits until every instance sharing its barrier has one.
struct Rendezvous {
    barrier: Arc<tokio::sync::Barrier>,
    waited: bool,
    seen: Seen,
    id: usize,
}

impl Consumer for Rendezvous {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.0.lock().unwrap().push((self.id, events));
        if !self.waited {
            self.waited = true;
            self.barrier.wait().await;
        }
        Ok(())
    }
}

impl Stage for Rendezvous {
    type Ref = ConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_as(name, self)
    }
}

/// A producer that fails on its first demand.
struct Failing;

impl Producer for Failing {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Err("out of numbers".into())
    }
}

impl Stage for Failing {
    type Ref = ProducerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_producer_as(name, self)
    }
}

fn evens_below(n: u64) -> Vec<u64> {
    (0..n).filter(|n| n % 2 == 0).collect()
}

#[tokio::test]
async fn the_seed_pipeline_runs_to_completion_with_two_consumers() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let report = pipeline! { from_iter(0..1_000u64) -> Evens -> [Collect::new(&seen, &ids); 2] }
        .run()
        .await
        .unwrap();

    assert_eq!(
        seen.events(),
        evens_below(1_000),
        "every even number exactly once"
    );
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["from_iter", "Evens", "Collect[0]", "Collect[1]"]);
    assert_eq!(report.stage("from_iter").unwrap().events_out, 1_000);
    assert_eq!(report.stage("Evens").unwrap().events_in, 1_000);
    assert_eq!(report.stage("Evens").unwrap().events_out, 500);
    let consumed: u64 = report.instances("Collect").map(|s| s.events_in).sum();
    assert_eq!(consumed, 500);
    assert_eq!(
        ids.load(Ordering::SeqCst),
        2,
        "the expression ran once per instance"
    );
}

#[tokio::test]
async fn both_instances_of_a_group_receive_events() {
    // Each instance holds its first batch until the other has one too: the pipeline can only end
    // if the producer_consumer fed both. The timeout only turns a hang into a failure.
    let seen = Seen::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let ids = AtomicUsize::new(0);
    let pipeline = pipeline! {
        from_iter(0..200u64) -> Evens -[max_demand = 10, min_demand = 5]-> [Rendezvous {
            barrier: barrier.clone(),
            waited: false,
            seen: seen.clone(),
            id: ids.fetch_add(1, Ordering::SeqCst),
        }; 2]
    };
    let report = tokio::time::timeout(Duration::from_secs(60), pipeline.run())
        .await
        .expect("both instances got a batch")
        .unwrap();

    assert_eq!(seen.events(), evens_below(200));
    let per_instance: Vec<u64> = report
        .instances("Rendezvous")
        .map(|s| s.events_in)
        .collect();
    assert_eq!(per_instance.len(), 2);
    assert!(per_instance.iter().all(|&n| n > 0), "{per_instance:?}");
    assert_eq!(per_instance.iter().sum::<u64>(), 100);
    let instance_ids: std::collections::BTreeSet<usize> =
        seen.0.lock().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(instance_ids.into_iter().collect::<Vec<_>>(), [0, 1]);
}

#[tokio::test]
async fn the_instance_count_is_any_usize_expression() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let workers = [1usize, 2, 3];
    let report = pipeline! {
        from_iter(0..90u64) -> [Collect::new(&seen, &ids); workers.len()]
    }
    .run()
    .await
    .unwrap();

    assert_eq!(report.instances("Collect").count(), 3);
    assert_eq!(seen.events(), (0..90).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_consumer_subscribes_to_every_instance_of_a_producer_group() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let mut next = 0u64;
    let report = pipeline! {
        [{ next += 10; from_iter(next - 10..next) }; 3] -> Collect::new(&seen, &ids)
    }
    .run()
    .await
    .unwrap();

    assert_eq!(seen.events(), (0..30).collect::<Vec<u64>>());
    assert_eq!(report.stage("Collect").unwrap().events_in, 30);
    let produced: Vec<u64> = report
        .instances("from_iter")
        .map(|s| s.events_out)
        .collect();
    assert_eq!(produced, [10, 10, 10]);
}

#[tokio::test]
async fn group_to_group_wires_every_pair() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let pipeline = pipeline! {
        [from_iter(0..50u64); 2] -> [Forward::new(); 3] -> Collect::new(&seen, &ids)
    };
    // 2 producers × 3 forwarders, then 3 forwarders × 1 consumer.
    assert!(format!("{pipeline:?}").contains("edges: 9"), "{pipeline:?}");
    let report = pipeline.run().await.unwrap();

    let mut expected: Vec<u64> = (0..50).chain(0..50).collect();
    expected.sort_unstable();
    assert_eq!(seen.events(), expected);
    let forwarded: u64 = report.instances("Forward").map(|s| s.events_in).sum();
    assert_eq!(forwarded, 100);
}

#[tokio::test]
async fn named_stages_fan_in_and_fan_out() {
    let seen = Seen::default();
    let audit = Seen::default();
    let ids = AtomicUsize::new(0);
    let report = pipeline! {
        numbers = from_iter(0..100u64);
        letters = from_iter(100..200u64);
        merge = Forward::new();
        numbers -> merge;  letters -> merge;      // fan-in
        merge -> [Collect::new(&seen, &ids); 2];
        numbers -> audit_log;                     // fan-out to a different stage
        audit_log = Collect::new(&audit, &ids);
    }
    .run()
    .await
    .unwrap();

    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "numbers",
            "letters",
            "merge",
            "Collect[0]",
            "Collect[1]",
            "audit_log"
        ]
    );
    // `numbers` splits its events between `merge` and `audit_log` (demand dispatch); every event
    // arrives exactly once somewhere.
    let mut all = seen.events();
    all.extend(audit.events());
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<u64>>());
    assert!(audit.events().iter().all(|&n| n < 100));
    let merged = report.stage("merge").unwrap().events_in;
    let audited = report.stage("audit_log").unwrap().events_in;
    assert_eq!(merged + audited, 200);
    assert_eq!(report.stage("numbers").unwrap().events_out, 100);
    assert_eq!(report.stage("letters").unwrap().events_out, 100);
}

#[tokio::test]
async fn a_definition_may_stand_inside_a_chain_and_after_its_uses() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let report = pipeline! {
        evens -> Collect::new(&seen, &ids);
        from_iter(0..20u64) -> evens = Evens;
    }
    .run()
    .await
    .unwrap();

    assert_eq!(seen.events(), evens_below(20));
    let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Collect", "from_iter", "evens"]);
}

#[tokio::test]
async fn edge_demand_options_override_the_consumer_defaults() {
    // Batches are at most max_demand - min_demand events: 500 by default, 4 on this edge.
    let with_options = Seen::default();
    let ids = AtomicUsize::new(0);
    pipeline! { from_iter(0..100u64) -[max_demand = 8, min_demand = 4]-> Collect::new(&with_options, &ids) }
        .run()
        .await
        .unwrap();
    assert_eq!(with_options.events(), (0..100).collect::<Vec<u64>>());
    assert_eq!(with_options.largest_batch(), 4);

    let defaults = Seen::default();
    pipeline! { from_iter(0..100u64) -> Collect::new(&defaults, &ids) }
        .run()
        .await
        .unwrap();
    assert_eq!(defaults.largest_batch(), 100);
}

#[tokio::test]
async fn an_edge_option_may_be_any_expression() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let max = 6;
    pipeline! { from_iter(0..30u64) -[max_demand = max, min_demand = max - 3]-> Collect::new(&seen, &ids) }
        .run()
        .await
        .unwrap();
    assert_eq!(seen.events(), (0..30).collect::<Vec<u64>>());
    assert_eq!(seen.largest_batch(), 3);
}

#[tokio::test]
async fn invalid_demand_from_an_expression_is_reported_by_run_naming_both_stages() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let max = 0;
    let error =
        pipeline! { from_iter(0..3u64) -[max_demand = max]-> sink = Collect::new(&seen, &ids) }
            .run()
            .await
            .unwrap_err();
    match error {
        PipelineError::InvalidSubscription {
            producer, consumer, ..
        } => assert_eq!(
            (producer.as_str(), consumer.as_str()),
            ("from_iter", "sink")
        ),
        other => panic!("expected InvalidSubscription, got {other}"),
    }
}

#[tokio::test]
async fn a_temporary_edge_outlives_its_failing_producer() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let error = pipeline! {
        sink = Collect::new(&seen, &ids);
        broken = Failing;
        broken -[cancel = temporary]-> sink;
        from_iter(0..10u64) -> sink;
    }
    .run()
    .await
    .unwrap_err();

    assert_eq!(error.stage(), "broken");
    // The sink went on with its other producer and handled all of its events.
    assert_eq!(seen.events(), (0..10).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_local_variable_can_be_a_stage() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let sink = Collect::new(&seen, &ids);
    let report = pipeline! { from_iter(0..5u64) -> sink }
        .run()
        .await
        .unwrap();
    assert_eq!(report.stage("Collect").unwrap().events_in, 5);
    // A name may be the local variable's own name.
    let printer = Collect::new(&seen, &ids);
    let report = pipeline! { printer = printer; from_iter(0..5u64) -> printer }
        .run()
        .await
        .unwrap();
    assert_eq!(report.stage("printer").unwrap().events_in, 5);
}

#[tokio::test]
async fn the_crate_path_can_be_overridden() {
    mod renamed {
        pub use genstage as gs;
    }
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let report = pipeline! {
        crate = renamed::gs;
        from_iter(0..5u64) -> Collect::new(&seen, &ids)
    }
    .run()
    .await
    .unwrap();
    assert_eq!(report.stage("Collect").unwrap().events_in, 5);
    // With names, the value's type is made with the path too.
    let p = pipeline! {
        crate = renamed::gs;
        numbers = from_iter(0..5u64) -> Collect::new(&seen, &ids)
    };
    assert_eq!(p.numbers.name(), "numbers");
    let report = p.start().await.unwrap();
    assert_eq!(report.stage("numbers").unwrap().emitted, 5);
}

#[tokio::test]
async fn an_arrow_inside_a_stage_expression_is_part_of_it() {
    // `fn() -> u64` in a turbofish, and a closure with a return type: neither arrow is a link.
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let report = pipeline! {
        from_iter((0..6u64).map(|n| -> u64 { n * 10 }))
            -> Forward::<u64>::new()
            -> Tagged::<fn() -> u64>::new()
            -> Collect::new(&seen, &ids)
    }
    .run()
    .await
    .unwrap();
    assert_eq!(seen.events(), vec![0, 10, 20, 30, 40, 50]);
    assert_eq!(report.stage("Collect").unwrap().events_in, 6);
}

#[tokio::test]
async fn a_group_of_no_instance_at_run_time_fails_run_naming_the_group() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let workers = std::hint::black_box(0);
    let error = pipeline! {
        from_iter(0..5u64) -> sinks = [Collect::new(&seen, &ids); workers]
    }
    .run()
    .await
    .unwrap_err();
    assert!(
        matches!(&error, PipelineError::EmptyGroup { group } if group == "sinks"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the group `sinks` has 0 instances and starts no stage: the number of instances must be at least 1"
    );
    // Unnamed, the group is called by its stage expression.
    let error = pipeline! { from_iter(0..5u64) -> [Collect::new(&seen, &ids); workers] }
        .run()
        .await
        .unwrap_err();
    assert_eq!(error.stage(), "Collect::new(&seen, &ids)");
}

/// A queue fed by calls: each `Push` is kept until a consumer asks, and answered once its job is
/// emitted; `Waiting` answers how many jobs wait.
#[derive(Default)]
struct Queue {
    waiting: std::collections::VecDeque<(u64, ReplyTo<()>)>,
}

struct Push(u64);
struct Waiting;

impl Producer for Queue {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let take = demand.min(self.waiting.len());
        let jobs: Vec<u64> = self
            .waiting
            .drain(..take)
            .map(|(job, reply)| {
                reply.reply(());
                job
            })
            .collect();
        Ok(jobs.into())
    }
}

impl Stage for Queue {
    type Ref = ProducerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_producer_as(name, self)
    }
}

impl HandleCall<Push> for Queue {
    type Reply = ();
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        Push(job): Push,
        reply: ReplyTo<()>,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.waiting.push_back((job, reply));
        Ok(Vec::new())
    }
}

impl HandleCall<Waiting> for Queue {
    type Reply = usize;
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        _: Waiting,
        reply: ReplyTo<usize>,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(self.waiting.len());
        Ok(Vec::new())
    }
}

/// Named stages are fields of `pipeline!`'s value, holding their references: the queue is reached
/// through its field while the pipeline runs, with no type or name repeated.
#[tokio::test]
async fn a_named_stage_is_a_field_that_reaches_the_running_stage() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let p = pipeline! {
        queue = Queue::default() -> [Collect::new(&seen, &ids); 4]
    };
    let queue = p.queue.clone();
    assert_eq!(queue.name(), "queue");
    let running = p.start();
    for job in 0..10 {
        // Answered once the job is emitted.
        queue.call(Push(job)).await.unwrap();
    }
    assert_eq!(queue.call(Waiting).await.unwrap(), 0);
    let report = running.shutdown().await.unwrap();
    assert_eq!(seen.events(), (0..10).collect::<Vec<u64>>());
    assert_eq!(report.stage("queue").unwrap().emitted, 10);
    assert_eq!(report.totals().handled, 10);
    assert!(report.balanced());
    // The stage has ended: a call is an error naming it.
    assert_eq!(
        queue.call(Waiting).await.unwrap_err(),
        CallError::Ended {
            stage: "queue".to_owned()
        }
    );
}

/// A named group is a `Vec` of its instances' references, in order; unnamed stages have no field.
#[tokio::test]
async fn a_named_group_is_a_vec_of_its_references() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let p = pipeline! {
        numbers = from_iter(0..100u64);
        numbers -> Evens -> workers = [Collect::new(&seen, &ids); 3];
    };
    assert_eq!(p.workers.len(), 3);
    assert_eq!(p.numbers.name(), "numbers");
    let workers = p.workers.clone();
    let report = p.run().await.unwrap();
    assert_eq!(seen.events(), evens_below(100));
    // The references carry the names the pipeline gave the instances when it started.
    let names: Vec<String> = workers.iter().map(|w| w.name()).collect();
    assert_eq!(names, ["workers[0]", "workers[1]", "workers[2]"]);
    let handled: Vec<u64> = workers
        .iter()
        .map(|w| report.stage(&w.name()).unwrap().events_in)
        .collect();
    assert_eq!(handled.iter().sum::<u64>(), 50);
}

/// The value of a pipeline with names dereferences to its `Pipeline`: the builder's methods work
/// on it, and `into_pipeline` gives the `Pipeline` itself.
#[tokio::test]
async fn a_pipeline_with_names_dereferences_to_its_pipeline() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let mut p = pipeline! {
        numbers = from_iter(0..10u64) -> sink = Collect::new(&seen, &ids)
    };
    let names: Vec<String> = p.stage_names().collect();
    assert_eq!(names, ["numbers", "sink"]);
    // `DerefMut`: a stage added with the builder, and fed by a named stage.
    let extra = p.add_consumer_named("extra", Collect::new(&seen, &ids));
    let numbers = p.numbers.clone();
    p.subscribe(&numbers, &extra);
    let pipeline: Pipeline = p.into_pipeline();
    assert_eq!(pipeline.stage_names().count(), 3);
    let report = pipeline.run().await.unwrap();
    assert_eq!(seen.events(), (0..10).collect::<Vec<u64>>());
    let handled =
        report.stage("sink").unwrap().events_in + report.stage("extra").unwrap().events_in;
    assert_eq!(handled, 10);
}

/// `run()` and `start()` work the same on a pipeline with names as on one without, which is a
/// `Pipeline`.
#[tokio::test]
async fn run_and_start_work_with_and_without_names() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let unnamed: Pipeline = pipeline! { from_iter(0..10u64) -> Collect::new(&seen, &ids) };
    let report = unnamed.run().await.unwrap();
    assert_eq!(report.totals().handled, 10);
    let report = pipeline! { from_iter(0..10u64) -> Collect::new(&seen, &ids) }
        .start()
        .await
        .unwrap();
    assert_eq!(report.totals().handled, 10);

    let report = pipeline! { numbers = from_iter(0..10u64) -> Collect::new(&seen, &ids) }
        .run()
        .await
        .unwrap();
    assert_eq!(report.stage("numbers").unwrap().emitted, 10);
    let report = pipeline! { numbers = from_iter(0..10u64) -> Collect::new(&seen, &ids) }
        .start()
        .await
        .unwrap();
    assert_eq!(report.stage("numbers").unwrap().emitted, 10);
    assert_eq!(seen.events().len(), 40);
}

/// A stage may be named `__pipeline`, the name of the field that holds the pipeline (that field
/// then takes another name), or with a raw identifier, which names the stage without its `r#`.
#[tokio::test]
async fn a_stage_may_have_any_name() {
    let seen = Seen::default();
    let ids = AtomicUsize::new(0);
    let p = pipeline! {
        __pipeline = from_iter(0..3u64) -> r#type = Collect::new(&seen, &ids)
    };
    assert_eq!(p.__pipeline.name(), "__pipeline");
    assert_eq!(p.r#type.name(), "type");
    p.run().await.unwrap();
    assert_eq!(seen.events(), [0, 1, 2]);
}

/// Events the `Tally::Count` consumer has handled, and its largest batch.
static TALLIED: AtomicUsize = AtomicUsize::new(0);
static LARGEST_TALLY: AtomicUsize = AtomicUsize::new(0);

/// A consumer written as an enum's unit variant brought into scope (`use Tally::Count`).
enum Tally {
    Count,
}

use Tally::Count;

impl Consumer for Tally {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let Tally::Count = self;
        TALLIED.fetch_add(events.len(), Ordering::SeqCst);
        LARGEST_TALLY.fetch_max(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

impl Stage for Tally {
    type Ref = ConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_as(name, self)
    }
}

/// A literal demand limit on an edge into a unit variant: the compile-time check of the limit
/// names the stage by value, so the variant is accepted (named as a type, it was refused:
/// "expected type, found variant `Count`").
#[tokio::test]
async fn a_literal_demand_limit_into_an_enum_variant_compiles_and_applies() {
    let report = pipeline! { from_iter(0..10u64) -[max_demand = 3]-> Count }
        .run()
        .await
        .unwrap();
    assert_eq!(TALLIED.load(Ordering::SeqCst), 10);
    // Batches of at most max_demand - min_demand = 3 - 1 (min_demand defaults to max / 2).
    assert_eq!(LARGEST_TALLY.load(Ordering::SeqCst), 2);
    assert_eq!(report.stage("Tally").map(|s| s.events_in), Some(10));
}
