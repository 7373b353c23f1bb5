//! `#[stage(…, restart = …)]` and `pipeline!`'s re-evaluation of stage expressions, end to end:
//! the restart policy each option combination gives the role trait, that `#[stage]` stages are
//! rebuildable, that `pipeline!` adds a stage whose expression stands on its own with a
//! constructor (which `run()` accepts for a restarted stage) and any other as a value (which
//! `run()` refuses with `PipelineError::NotRebuildable`), and that a stage rebuilt by evaluating
//! its expression again is restarted for real.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use genstage::{ConsumerRef, NoInput};

/// Counts up to `end`, and ends; restarted after a failure.
struct Numbers {
    next: u64,
    end: u64,
}

#[stage(producer, restart = transient, max_restarts = 10)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let stop = self.end.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        }
    }
}

/// Counts forever; always restarted, even when it ends on its own (never run here: a producer
/// that ends would start again).
struct Forever {
    next: u64,
}

#[stage(producer, restart = permanent)]
impl Forever {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        events
    }
}

/// Forwards what it receives, redelivered after a failure.
struct Forward;

#[stage(producer_consumer, max_seconds = 60, restart = transient, redeliver)]
impl Forward {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }
}

/// Drops what it receives; never restarted (no option).
struct Drop1;

#[stage(consumer)]
impl Drop1 {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

/// `restart = temporary`, written out.
struct Temporary;

#[stage(consumer, restart = temporary)]
impl Temporary {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

/// Every option at once.
struct Strict;

#[stage(consumer, restart = permanent, max_restarts = 0, max_seconds = 1, redeliver)]
impl Strict {
    fn handle_events(&mut self, events: Vec<String>) {
        let _ = events;
    }
}

/// A generic stage that redelivers: its events must be `Clone`, which its bounds say.
struct Relay<T>(std::marker::PhantomData<T>);

#[stage(producer_consumer, restart = transient, redeliver)]
impl<T: Clone + Send + 'static> Relay<T> {
    fn handle_events(&mut self, events: Vec<T>) -> Vec<T> {
        events
    }
}

/// `(restart, limit, redelivers)` of a policy.
fn parts<T>(policy: RestartPolicy<T>) -> (Restart, (u32, Duration), bool) {
    (policy.restart(), policy.limit(), policy.redelivers())
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn each_option_combination_gives_its_restart_policy() {
    assert_eq!(
        parts(Producer::restart_policy(&Numbers { next: 0, end: 1 })),
        (Restart::Transient, (10, SECS(5)), false)
    );
    assert_eq!(
        parts(Producer::restart_policy(&Forever { next: 0 })),
        (Restart::Permanent, (3, SECS(5)), false)
    );
    assert_eq!(
        parts(ProducerConsumer::restart_policy(&Forward)),
        (Restart::Transient, (3, SECS(60)), true)
    );
    assert_eq!(
        parts(Consumer::restart_policy(&Drop1)),
        (Restart::Temporary, (3, SECS(5)), false)
    );
    assert_eq!(
        parts(Consumer::restart_policy(&Temporary)),
        (Restart::Temporary, (3, SECS(5)), false)
    );
    assert_eq!(
        parts(Consumer::restart_policy(&Strict)),
        (Restart::Permanent, (0, SECS(1)), true)
    );
    assert_eq!(
        parts(ProducerConsumer::restart_policy(&Relay::<Vec<u8>>(
            std::marker::PhantomData
        ))),
        (Restart::Transient, (3, SECS(5)), true)
    );
    // The policies are the builder's own values.
    let producer: RestartPolicy<NoInput> =
        RestartPolicy::transient().max_restarts(10, Duration::from_secs(5));
    assert_eq!(
        Producer::restart_policy(&Numbers { next: 0, end: 1 }),
        producer
    );
    assert_eq!(
        ProducerConsumer::restart_policy(&Forward),
        RestartPolicy::<u64>::transient()
            .max_restarts(3, Duration::from_secs(60))
            .redeliver()
    );
}

/// A consumer restarted after a failure, which keeps what it receives in `store`.
struct Store {
    store: Arc<Mutex<Vec<u64>>>,
}

#[stage(consumer, restart = transient)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.store.lock().unwrap().extend(events);
    }
}

/// A consumer restarted after a failure that keeps nothing.
struct Sink;

#[stage(consumer, restart = transient)]
impl Sink {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

#[tokio::test]
async fn a_restarted_stage_whose_expression_uses_a_local_is_not_rebuildable() {
    let store = Arc::new(Mutex::new(Vec::new()));
    let result = pipeline! {
        from_iter(0..10u64) -> sink = Store { store: store.clone() }
    }
    .run()
    .await;
    let error = result.expect_err("a restarted stage added as a value is refused");
    assert!(
        matches!(
            &error,
            PipelineError::NotRebuildable { stage, restart: Restart::Transient, constructor: "add_consumer_with" } if stage == "sink"
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stage `sink` is restarted (transient), but it was added as a value, which cannot be made again: add it with a constructor (`add_consumer_with(|| …)`), or, in `pipeline!`, write it as an expression that stands on its own (no local variable, no call by a bare name)"
    );
    // Refused before it ran.
    assert!(store.lock().unwrap().is_empty());

    // A local stage value, likewise.
    let sink = Sink;
    let error = pipeline! { from_iter(0..10u64) -> sink }
        .run()
        .await
        .expect_err("a local value is not rebuildable");
    assert!(
        matches!(&error, PipelineError::NotRebuildable { stage, .. } if stage == "Sink"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_restarted_stage_whose_expression_stands_alone_passes_runs_checks() {
    let report = pipeline! { from_iter(0..10u64) -> Sink }
        .run()
        .await
        .expect("a stage made by its expression can be rebuilt");
    assert_eq!(report.stage("Sink").map(|s| s.events_in), Some(10));

    // A closure parameter is bound inside the expression; every instance of a group has its own
    // constructor; a stage that is never restarted may be added either way.
    let report = pipeline! {
        numbers = Numbers { next: 0, end: 20 };
        numbers -> Forward -> [Sink; 2];
        from_iter((0..20u64).map(|n| 2 * n)) -> Drop1;
    }
    .run()
    .await
    .expect("every restarted stage stands alone");
    assert_eq!(report.stage("numbers").map(|s| s.events_out), Some(20));
    assert_eq!(report.stage("Forward").map(|s| s.events_in), Some(20));
    assert_eq!(report.stage("Drop1").map(|s| s.events_in), Some(20));
}

/// Counts its instances: `Counted::new()` is evaluated once per instance, and once per restart.
struct Counted;

static COUNTED: AtomicUsize = AtomicUsize::new(0);

impl Counted {
    fn new() -> Self {
        COUNTED.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

#[stage(consumer, restart = transient)]
impl Counted {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

#[tokio::test]
async fn a_rebuildable_expression_is_evaluated_once_per_instance_without_restarts() {
    pipeline! { from_iter(0..100u64) -> [Counted::new(); 3] }
        .run()
        .await
        .expect("it runs");
    assert_eq!(COUNTED.load(Ordering::SeqCst), 3);
}

/// A stage written by hand, restarted after a failure, whose `Stage` impl keeps the default
/// `add_with`: it cannot be rebuilt, whatever its expression.
struct ByHand;

impl Consumer for ByHand {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

impl Stage for ByHand {
    type Ref = ConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_as(name, self)
    }
}

#[tokio::test]
async fn a_hand_written_stage_without_add_with_is_not_rebuildable() {
    let error = pipeline! { from_iter(0..10u64) -> ByHand }
        .run()
        .await
        .expect_err("the default add_with builds once");
    assert!(
        matches!(&error, PipelineError::NotRebuildable { stage, .. } if stage == "ByHand"),
        "{error:?}"
    );
}

/// Fails once, on the event 3, the first time it sees it; counts its builds and keeps what it
/// handled.
struct FailOnce;

static FAIL_ONCE_BUILT: AtomicUsize = AtomicUsize::new(0);
static FAIL_ONCE_FAILED: AtomicBool = AtomicBool::new(false);
static FAIL_ONCE_HANDLED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

impl FailOnce {
    fn new() -> Self {
        FAIL_ONCE_BUILT.fetch_add(1, Ordering::SeqCst);
        FailOnce
    }
}

#[stage(consumer, restart = transient, redeliver)]
impl FailOnce {
    fn handle_events(&mut self, events: Vec<u64>) -> Result<(), String> {
        for event in events {
            if event == 3 && !FAIL_ONCE_FAILED.swap(true, Ordering::SeqCst) {
                return Err("event 3".to_owned());
            }
            FAIL_ONCE_HANDLED.lock().unwrap().push(event);
        }
        Ok(())
    }
}

#[tokio::test]

async fn a_failed_stage_is_rebuilt_by_evaluating_its_expression_again() {
    pipeline! { from_iter(0..10u64) -> FailOnce::new() }
        .run()
        .await
        .expect("the stage is restarted once, within its limit");
    assert_eq!(FAIL_ONCE_BUILT.load(Ordering::SeqCst), 2);
    assert!(FAIL_ONCE_FAILED.load(Ordering::SeqCst));
    // Redelivered: every event handled, those before the failure in its batch maybe twice.
    let mut handled = FAIL_ONCE_HANDLED.lock().unwrap().clone();
    handled.sort_unstable();
    handled.dedup();
    assert_eq!(handled, (0..10).collect::<Vec<u64>>());
}

/// Records what it handles; never restarted.
struct Kept(Arc<Mutex<Vec<u64>>>);

#[stage(consumer)]
impl Kept {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.0.lock().unwrap().extend(events);
    }
}

/// Found by a probe: a stage expression that calls a local closure compiled before restarts came,
/// and must still: a bare-named call may be of a local closure, so `pipeline!` evaluates it once,
/// as a value, whether the closure borrows a local or is `FnOnce`.
#[tokio::test]
async fn a_stage_made_by_a_local_closure_is_added_as_a_value() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    // Borrows `seen`.
    let make = || Kept(seen.clone());
    let report = pipeline! { from_iter(0..10u64) -> make() }
        .run()
        .await
        .unwrap();
    assert_eq!(report.stage("Kept").unwrap().events_in, 10);
    // Moves its capture out: `FnOnce`.
    let s = seen.clone();
    let once = move || Kept(s);
    let report = pipeline! { from_iter(0..10u64) -> once() }
        .run()
        .await
        .unwrap();
    assert_eq!(report.stage("Kept").unwrap().events_in, 10);
    assert_eq!(seen.lock().unwrap().len(), 20);
}
