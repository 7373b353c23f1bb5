//! `#[stage]` message callbacks, `init` and `terminate`, end to end: messages sent through the typed
//! handles (`call`, `cast`, `info`) of running stages, and `Context::info` from a stage to itself,
//! reach the callbacks the macro wired, with what they emit dispatched downstream and `terminate`
//! run once as the stage ends.
//!
//! Every ordering asserted here follows from one sender's messages reaching a stage in the order
//! sent, and from a call's reply coming once the call is handled: no test sleeps.

use std::sync::{Arc, Mutex};

use genstage::prelude::*;
use genstage::{CallError, Context, ReplyTo, StageStatus};

type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap().clone()
}

/// A job pushed into the queue.
struct Push(u64);

/// A producer fed from outside: it has nothing of its own, and emits each pushed job from
/// `handle_call`, answering with how many jobs it has taken once the job is dispatched.
struct Queue {
    pushed: u64,
    ended: Log<StageStatus>,
}

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    async fn handle_call(&mut self, request: Push, reply: ReplyTo<u64>) -> Emit<u64> {
        self.pushed += 1;
        reply.reply(self.pushed);
        Emit::more(vec![request.0])
    }

    fn terminate(&mut self, status: &StageStatus) {
        self.ended.lock().unwrap().push(status.clone());
    }
}

/// Sets a `Scale`'s factor.
struct SetFactor(u64);
/// Asks a `Scale` for its factor.
struct Factor;
/// Has a `Scale` emit `n * factor` itself.
struct Inject(u64);
/// Makes a `Scale` fail.
struct Fail;

/// Multiplies what goes through it by a factor that casts change.
struct Scale {
    factor: u64,
}

#[stage(producer_consumer)]
impl Scale {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().map(|n| n * self.factor).collect()
    }

    fn handle_cast(&mut self, message: SetFactor) {
        self.factor = message.0;
    }

    fn handle_call(&mut self, _request: Factor, reply: ReplyTo<u64>) -> Vec<u64> {
        reply.reply(self.factor);
        Vec::new()
    }

    async fn handle_info(
        &mut self,
        message: Inject,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        assert_eq!(ctx.name(), "Scale");
        Ok(vec![message.0 * self.factor])
    }
}

/// A producer_consumer that fails when cast `Fail`.
struct Fragile;

#[stage(producer_consumer)]
impl Fragile {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events
    }

    fn handle_cast(&mut self, _message: Fail) -> Result<(), String> {
        Err("told to fail".to_owned())
    }
}

/// Asks a `Collect` how many events and notes it has.
struct Count;
/// Has a `Collect` send itself a `Note`.
struct Mark;
/// What a `Collect` sends itself.
struct Note;

/// Records every event, the notes it sends itself, and how it ended.
struct Collect {
    events: Log<u64>,
    notes: Vec<&'static str>,
    ended: Log<StageStatus>,
}

impl Collect {
    fn new() -> Self {
        Collect {
            events: log(),
            notes: Vec::new(),
            ended: log(),
        }
    }
}

#[stage(consumer)]
impl Collect {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.events.lock().unwrap().extend(events);
    }

    fn handle_call(
        &mut self,
        _request: Count,
        reply: ReplyTo<(usize, usize)>,
        _ctx: &mut Context<Self>,
    ) {
        reply.reply((self.events.lock().unwrap().len(), self.notes.len()));
    }

    // `Context<Self>` in an `async fn` too: `#[stage]` writes out the lifetime Rust does not elide
    // there (E0726 otherwise).
    async fn handle_cast(&mut self, _message: Mark, ctx: &mut Context<Self>) {
        self.notes.push("mark");
        ctx.info(Note);
    }

    fn handle_info(&mut self, _message: Note) -> Result<(), std::io::Error> {
        self.notes.push("note");
        Ok(())
    }

    async fn terminate(&mut self, status: &StageStatus) {
        self.ended.lock().unwrap().push(status.clone());
    }
}

#[tokio::test]
async fn a_producer_emits_from_handle_call_and_replies_once_dispatched() {
    let ended = log();
    let collect = Collect::new();
    let (events, collected_ended) = (collect.events.clone(), collect.ended.clone());
    let mut pipeline = Pipeline::new();
    let queue = Queue {
        pushed: 0,
        ended: ended.clone(),
    }
    .add_to(&mut pipeline, None);
    let sink = collect.add_to(&mut pipeline, None);
    pipeline.subscribe(&queue, &sink);
    let running = pipeline.start();

    for job in 0..10 {
        assert_eq!(queue.call(Push(job)).await.unwrap(), job + 1);
    }
    let report = running.shutdown().await.unwrap();

    assert_eq!(taken(&events), (0..10).collect::<Vec<u64>>());
    assert_eq!(report.stage("Queue").unwrap().events_out, 10);
    assert_eq!(report.stage("Collect").unwrap().events_in, 10);
    assert_eq!(taken(&ended), [StageStatus::ShutDown]);
    assert_eq!(taken(&collected_ended).len(), 1);
}

#[tokio::test]
async fn casts_calls_and_infos_reach_a_producer_consumer_in_the_order_sent() {
    let collect = Collect::new();
    let events = collect.events.clone();
    let mut pipeline = Pipeline::new();
    let queue = Queue {
        pushed: 0,
        ended: log(),
    }
    .add_to(&mut pipeline, None);
    let scale = Scale { factor: 1 }.add_to(&mut pipeline, None);
    let sink = collect.add_to(&mut pipeline, None);
    pipeline.subscribe(&queue, &scale).subscribe(&scale, &sink);
    let running = pipeline.start();

    queue.call(Push(1)).await.unwrap();
    scale.cast(SetFactor(10)).unwrap();
    // Handled after the cast, which it follows.
    assert_eq!(scale.call(Factor).await.unwrap(), 10);
    queue.call(Push(2)).await.unwrap();
    // After event 2 in Scale's mailbox: its 50 follows 20.
    scale.info(Inject(5)).unwrap();
    let report = running.shutdown().await.unwrap();

    assert_eq!(taken(&events), [1, 20, 50]);
    assert_eq!(report.stage("Scale").unwrap().events_in, 2);
    assert_eq!(report.stage("Scale").unwrap().events_out, 3);
}

#[tokio::test]
async fn a_consumer_answers_calls_and_sends_itself_infos_through_its_context() {
    let collect = Collect::new();
    let mut pipeline = Pipeline::new();
    let queue = Queue {
        pushed: 0,
        ended: log(),
    }
    .add_to(&mut pipeline, None);
    let sink = collect.add_to(&mut pipeline, None);
    pipeline.subscribe(&queue, &sink);
    let running = pipeline.start();

    sink.cast(Mark).unwrap();
    // Handled after `Mark`, so after `Mark` sent `Note`...
    sink.call(Count).await.unwrap();
    // ...and this one after `Note`.
    assert_eq!(sink.call(Count).await.unwrap(), (0, 2));
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn terminate_runs_once_with_how_the_stage_ended() {
    let collect = Collect::new();
    let ended = collect.ended.clone();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(from_iter(0..100u64));
    let sink = collect.add_to(&mut pipeline, None);
    pipeline.subscribe(&numbers, &sink);

    let report = pipeline.run().await.unwrap();

    assert_eq!(report.stage("Collect").unwrap().events_in, 100);
    assert_eq!(taken(&ended), [StageStatus::Finished]);
    // The stage has ended: nothing answers.
    assert_eq!(
        sink.call(Count).await.unwrap_err(),
        CallError::Ended {
            stage: "Collect".to_owned()
        }
    );
}

#[tokio::test]
async fn an_error_returned_by_a_message_callback_fails_the_stage() {
    let mut pipeline = Pipeline::new();
    let queue = Queue {
        pushed: 0,
        ended: log(),
    }
    .add_to(&mut pipeline, None);
    let fragile = Fragile.add_to(&mut pipeline, None);
    let sink = Collect::new().add_to(&mut pipeline, None);
    pipeline
        .subscribe(&queue, &fragile)
        .subscribe(&fragile, &sink);
    let running = pipeline.start();

    fragile.cast(Fail).unwrap();
    let error = running.await.unwrap_err();

    assert_eq!(error.stage(), "Fragile");
    assert_eq!(error.to_string(), "stage `Fragile` failed: told to fail");
}

/// A producer that emits only on ticks, started by its `init`: `ticks` ticks of `per_tick` events.
struct Ticking {
    ticks: u64,
    per_tick: u64,
    next: u64,
    log: Log<&'static str>,
}

/// Emits a `Ticking`'s next events.
struct Tick;

#[stage(producer)]
impl Ticking {
    fn init(&mut self, ctx: &mut Context<Self>) {
        self.log.lock().unwrap().push("init");
        ctx.info(Tick);
    }

    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        self.log.lock().unwrap().push("demand");
        Vec::new()
    }

    fn handle_info(&mut self, _tick: Tick, ctx: &mut Context<Self>) -> Emit<u64> {
        self.log.lock().unwrap().push("tick");
        let events: Vec<u64> = (self.next..self.next + self.per_tick).collect();
        self.next += self.per_tick;
        self.ticks -= 1;
        if self.ticks == 0 {
            return Emit::last(events);
        }
        ctx.info(Tick);
        Emit::more(events)
    }
}

#[tokio::test]
async fn init_starts_a_producer_that_emits_from_its_own_messages() {
    let log = log();
    let sink = Collect::new();
    let seen = sink.events.clone();
    let report = pipeline! {
        Ticking { ticks: 3, per_tick: 2, next: 0, log: log.clone() } -> sink
    }
    .run()
    .await
    .expect("it ends after its last tick");

    assert_eq!(taken(&seen), [0, 1, 2, 3, 4, 5]);
    let calls = taken(&log);
    assert_eq!(calls[0], "init", "{calls:?}");
    assert_eq!(calls.iter().filter(|&&c| c == "tick").count(), 3);
    assert!(report.balanced(), "{report:?}");
}
