//! Pipelines run in the background (`Pipeline::start`): graceful shutdown with events in flight,
//! a shutdown's time limit, abort, `terminate`, and messages (call, cast, info) to running stages.
//! GenStage's scenario numbers (genstage-semantics.md §4) are given where a test rewrites one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    CallError, Consumer, Context, DemandMode, Emit, HandleCall, HandleCast, HandleInfo, Pipeline,
    PipelineError, Producer, ProducerConsumer, ReplyTo, StageRef, StageResult, StageStatus,
};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Counts up forever, emitting 1000 more than it is asked for the first time, so that its buffer
/// holds events.
struct Greedy {
    next: u64,
}

impl Producer for Greedy {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let extra = if self.next == 0 { 1000 } else { 0 };
        let end = self.next + demand as u64 + extra;
        let events = (self.next..end).collect::<Vec<_>>();
        self.next = end;
        Ok(events.into())
    }
}

/// Passes events on, yielding first, so that its input queues up.
struct Slow;

impl ProducerConsumer for Slow {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        tokio::task::yield_now().await;
        Ok(events)
    }
}

/// Records every event, tells the test when it has some (and then waits for the gate, if any), and
/// records how it ended.
struct Record {
    seen: Arc<Mutex<Vec<u64>>>,
    first: Option<mpsc::UnboundedSender<()>>,
    gate: Option<Arc<Semaphore>>,
    ended: Arc<Mutex<Option<StageStatus>>>,
}

impl Record {
    fn new() -> (Self, Arc<Mutex<Vec<u64>>>, mpsc::UnboundedReceiver<()>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (first, started) = mpsc::unbounded_channel();
        let record = Record {
            seen: seen.clone(),
            first: Some(first),
            gate: None,
            ended: Arc::default(),
        };
        (record, seen, started)
    }
}

impl Consumer for Record {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        tokio::task::yield_now().await;
        self.seen.lock().unwrap().extend(events);
        if let Some(first) = self.first.take() {
            let _ = first.send(());
            if let Some(gate) = self.gate.take() {
                gate.acquire().await?.forget();
            }
        }
        Ok(())
    }

    async fn terminate(&mut self, status: &StageStatus) {
        *self.ended.lock().unwrap() = Some(status.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_handles_every_event_in_flight_in_every_stage() {
    let (mut record, seen, mut started) = Record::new();
    let ended = record.ended.clone();
    let gate = Arc::new(Semaphore::new(0));
    record.gate = Some(gate.clone());
    let mut pipeline = Pipeline::new();
    let greedy = pipeline.add_producer(Greedy { next: 0 });
    let slow = pipeline.add_producer_consumer(Slow);
    let sink = pipeline.add_consumer(record);
    pipeline.subscribe_with(
        &greedy,
        &slow,
        genstage::SubscribeOptions::new().max_demand(10),
    );
    pipeline.subscribe_with(
        &slow,
        &sink,
        genstage::SubscribeOptions::new().max_demand(10),
    );
    let running = pipeline.start();
    started.recv().await.expect("the consumer starts");
    // The consumer holds its first batch, and waits: its mailbox, the producer_consumer's input and
    // buffer, and the producer's buffer fill up to their demand. The producer's buffer holds at
    // least the 1000 extra events less two stages' demand (10 each).
    assert!(greedy.estimate_buffered_count().await.unwrap() >= 980);

    let shutdown = tokio::spawn(running.shutdown());
    gate.add_permits(1);
    let report = shutdown.await.unwrap().expect("a clean shutdown");

    let totals = report.totals();
    assert!(totals.balanced(), "{report:?}");
    assert_eq!(totals.lost, 0, "{report:?}");
    let emitted = report.stage("Greedy").unwrap().emitted;
    assert_eq!(report.stage("Slow").unwrap().events_in, emitted);
    assert_eq!(report.stage("Record").unwrap().events_in, emitted);
    // Every event, once, in order.
    assert_eq!(*seen.lock().unwrap(), (0..emitted).collect::<Vec<_>>());
    assert_eq!(
        report.stage("Greedy").unwrap().status,
        StageStatus::ShutDown
    );
    assert_eq!(report.stage("Slow").unwrap().status, StageStatus::Finished);
    assert_eq!(
        report.stage("Record").unwrap().status,
        StageStatus::Finished
    );
    assert_eq!(*ended.lock().unwrap(), Some(StageStatus::Finished));
}

/// Takes one batch, says so, and never returns from it.
struct Stuck {
    entered: mpsc::UnboundedSender<()>,
}

impl Stuck {
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (entered, inside) = mpsc::unbounded_channel();
        (Stuck { entered }, inside)
    }
}

impl Consumer for Stuck {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        let _ = self.entered.send(());
        std::future::pending().await
    }
}

/// `from_iter(0..1000) -> stuck` (max_demand 10), started, with `stuck` inside its first batch.
async fn stuck_pipeline() -> genstage::PipelineHandle {
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(genstage::from_iter(0..1000u64));
    let (stuck, mut inside) = Stuck::new();
    let stuck = pipeline.add_consumer_named("stuck", stuck);
    pipeline.subscribe_with(
        &numbers,
        &stuck,
        genstage::SubscribeOptions::new().max_demand(10),
    );
    let running = pipeline.start();
    inside.recv().await.unwrap();
    running
}

#[tokio::test]
async fn a_shutdown_that_runs_out_of_time_names_the_busy_stages_and_counts_what_they_held() {
    let running = stuck_pipeline().await;

    let error = running
        .shutdown_within(Duration::from_secs(1))
        .await
        .expect_err("the consumer never finishes its batch");

    let PipelineError::ShutdownTimeout { busy, report } = error else {
        panic!("expected a shutdown timeout, got {error}");
    };
    assert_eq!(busy, ["stuck"]);
    assert!(report.balanced(), "{report:?}");
    let stuck = report.stage("stuck").unwrap();
    assert_eq!(stuck.status, StageStatus::Aborted);
    // It held one batch of 5 (max 10, min 5) in its callback, and 5 more in its queue.
    assert_eq!((stuck.events_in, stuck.lost), (0, 10));
    assert_eq!(report.stage("from_iter").unwrap().emitted, 10);
}

#[tokio::test]
async fn an_abort_stops_every_stage_and_counts_what_each_held() {
    let mut pipeline = Pipeline::new();
    let greedy = pipeline.add_producer(Greedy { next: 0 });
    let (stuck, mut inside) = Stuck::new();
    let stuck = pipeline.add_consumer(stuck);
    pipeline.subscribe_with(
        &greedy,
        &stuck,
        genstage::SubscribeOptions::new().max_demand(4),
    );
    let running = pipeline.start();
    inside.recv().await.unwrap();
    assert_eq!(greedy.estimate_buffered_count().await, Ok(1000));

    let report = running.abort().await.expect("an abort is not a failure");

    assert!(report.balanced(), "{report:?}");
    for stage in &report.stages {
        assert_eq!(stage.status, StageStatus::Aborted, "{report:?}");
    }
    // Greedy emitted 1004 for the first ask of 4: 4 sent (2 in the consumer's callback, 2 in its
    // queue), 1000 buffered, all lost.
    assert_eq!(report.stage("Greedy").unwrap().emitted, 1004);
    assert_eq!(report.stage("Greedy").unwrap().lost, 1000);
    assert_eq!(report.stage("Stuck").unwrap().lost, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_handle_drains_the_pipeline_from_another_task_while_the_handle_is_awaited() {
    let (mut record, seen, mut started) = Record::new();
    let gate = Arc::new(Semaphore::new(0));
    record.gate = Some(gate.clone());
    let mut pipeline = Pipeline::new();
    let greedy = pipeline.add_producer(Greedy { next: 0 });
    let sink = pipeline.add_consumer(record);
    pipeline.subscribe_with(
        &greedy,
        &sink,
        genstage::SubscribeOptions::new().max_demand(10),
    );
    let running = pipeline.start();
    let shutdown = running.shutdown_handle();
    // Another task (a signal handler, say) ends the service once the consumer holds a batch, with
    // the producer's buffer full.
    tokio::spawn(async move {
        started.recv().await.expect("the consumer starts");
        shutdown.shutdown().expect("the pipeline runs");
        gate.add_permits(1);
    });
    let report = running.await.expect("a clean shutdown");

    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.totals().lost, 0, "{report:?}");
    let emitted = report.stage("Greedy").unwrap().emitted;
    assert!(emitted >= 1000, "{report:?}");
    assert_eq!(*seen.lock().unwrap(), (0..emitted).collect::<Vec<_>>());
    assert_eq!(
        report.stage("Greedy").unwrap().status,
        StageStatus::ShutDown
    );
}

#[tokio::test]
async fn a_second_shutdown_only_brings_the_time_limit_closer() {
    let running = stuck_pipeline().await;
    let handle = running.shutdown_handle();
    handle
        .shutdown_within(Duration::from_secs(1))
        .expect("the pipeline runs");
    // Asked again without a limit, from elsewhere: the first limit stands.
    handle.clone().shutdown().expect("the pipeline runs");
    let error = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the limit still ends the shutdown")
        .expect_err("the consumer never finishes its batch");
    let PipelineError::ShutdownTimeout { busy, report } = error else {
        panic!("expected a shutdown timeout, got {error}");
    };
    assert_eq!(busy, ["stuck"]);
    assert!(report.balanced(), "{report:?}");

    // A limit asked for later, while a shutdown without one is under way, ends it.
    let running = stuck_pipeline().await;
    let handle = running.shutdown_handle();
    handle.shutdown().expect("the pipeline runs");
    handle
        .shutdown_within(Duration::from_secs(1))
        .expect("the pipeline runs");
    let error = running.await.expect_err("the consumer never finishes");
    assert!(
        matches!(&error, PipelineError::ShutdownTimeout { busy, .. } if busy == &["stuck"]),
        "{error}"
    );
}

#[tokio::test]
async fn an_abort_through_a_shutdown_handle_stops_a_shutdown_under_way() {
    let running = stuck_pipeline().await;
    let handle = running.shutdown_handle();
    handle.shutdown().expect("the pipeline runs");
    handle.abort().expect("the pipeline runs");
    // A limit asked for after the abort changes nothing: the abort's report, not a timeout.
    handle
        .shutdown_within(Duration::ZERO)
        .expect("the pipeline runs until its stages have stopped");
    let report = running.await.expect("an abort is not a failure");
    assert!(report.balanced(), "{report:?}");
    let stuck = report.stage("stuck").unwrap();
    assert_eq!(stuck.status, StageStatus::Aborted);
    assert_eq!((stuck.events_in, stuck.lost), (0, 10));
    // Once the pipeline has ended, there is nothing to ask.
    assert!(matches!(handle.shutdown(), Err(PipelineError::NotRunning)));
    assert!(matches!(handle.abort(), Err(PipelineError::NotRunning)));

    // Nor for a pipeline that never started (a producer without consumers).
    let mut pipeline = Pipeline::new();
    pipeline.add_producer(Greedy { next: 0 });
    let never = pipeline.start();
    assert!(matches!(
        never.shutdown_handle().shutdown(),
        Err(PipelineError::NotRunning)
    ));
}

/// Sets two timers when subscribed (`Ring(1)` in 100 ms, `Ring(2)` in 200 ms), records the rings,
/// and takes the first timer back when asked to snooze.
struct Alarm {
    first: Option<genstage::Timer>,
    rang: Arc<Mutex<Vec<u32>>>,
    subscribed: Option<oneshot::Sender<()>>,
}

struct Ring(u32);
struct Snooze;

impl Consumer for Alarm {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        _: &genstage::Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> genstage::Demand {
        self.first = Some(ctx.info_after(Duration::from_millis(100), Ring(1)));
        ctx.info_after(Duration::from_millis(200), Ring(2));
        if let Some(subscribed) = self.subscribed.take() {
            let _ = subscribed.send(());
        }
        genstage::Demand::Automatic
    }
    async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

impl HandleInfo<Ring> for Alarm {
    type Emitted = ();
    async fn handle_info(&mut self, Ring(n): Ring, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.rang.lock().unwrap().push(n);
        Ok(())
    }
}

impl HandleCall<Snooze> for Alarm {
    type Reply = Option<bool>;
    type Emitted = ();
    async fn handle_call(
        &mut self,
        _: Snooze,
        reply: ReplyTo<Option<bool>>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(self.first.as_ref().map(genstage::Timer::cancel));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_timer_taken_back_before_it_is_due_never_reaches_handle_info() {
    let rang = Arc::new(Mutex::new(Vec::new()));
    let (jobs, source) = genstage::from_channel::<u64>(1);
    let mut pipeline = Pipeline::new();
    let source = pipeline.add_producer(source);
    let (subscribed, timers_set) = oneshot::channel();
    let alarm = pipeline.add_consumer(Alarm {
        first: None,
        rang: rang.clone(),
        subscribed: Some(subscribed),
    });
    pipeline.subscribe(&source, &alarm);
    let running = pipeline.start();
    timers_set.await.expect("subscribed");
    // The first timer taken back before it is due.
    assert_eq!(alarm.call(Snooze).await, Ok(Some(true)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*rang.lock().unwrap(), [2]);
    // Taken back once; the second is sent and handled, and cannot be taken back.
    assert_eq!(alarm.call(Snooze).await, Ok(Some(false)));
    drop(jobs);
    let report = running.await.expect("the channel closed");
    assert!(report.balanced(), "{report:?}");
}

/// Logs its callbacks; its first value fails on its first batch.
struct Logged {
    log: Arc<Mutex<Vec<&'static str>>>,
    fail: bool,
}

/// Sent by `Logged::init` to itself.
struct Hello;

impl Consumer for Logged {
    type Input = u64;
    fn init(&mut self, ctx: &mut Context<'_, Self>) {
        self.log.lock().unwrap().push("init");
        ctx.info(Hello);
    }
    fn handle_subscribe(
        &mut self,
        _: &genstage::Subscription,
        _: &mut Context<'_, Self>,
    ) -> genstage::Demand {
        self.log.lock().unwrap().push("subscribe");
        genstage::Demand::Automatic
    }
    async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
        self.log.lock().unwrap().push("events");
        if std::mem::take(&mut self.fail) {
            return Err("the first value fails".into());
        }
        Ok(())
    }
}

impl HandleInfo<Hello> for Logged {
    type Emitted = ();
    async fn handle_info(&mut self, _: Hello, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.log.lock().unwrap().push("hello");
        Ok(())
    }
}

/// Logs `init` and its first `handle_demand`, which emits two events; then it has no more for now.
struct Opening {
    log: Arc<Mutex<Vec<&'static str>>>,
    opened: bool,
}

impl Producer for Opening {
    type Output = u64;
    fn init(&mut self, _: &mut Context<'_, Self>) {
        self.log.lock().unwrap().push("producer init");
    }
    async fn handle_demand(&mut self, _: usize) -> StageResult<Emit<u64>> {
        if std::mem::replace(&mut self.opened, true) {
            return Ok(Emit::more(Vec::new()));
        }
        self.log.lock().unwrap().push("producer demand");
        Ok(Emit::more(vec![1, 2]))
    }
}

#[tokio::test]
async fn init_runs_before_every_other_callback_and_again_in_a_restarted_value() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let consumer_log = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let opening = pipeline.add_producer(Opening {
        log: log.clone(),
        opened: false,
    });
    let first = std::sync::atomic::AtomicBool::new(true);
    let values_log = consumer_log.clone();
    let logged = pipeline.add_consumer_with(move || Logged {
        log: values_log.clone(),
        fail: first.swap(false, std::sync::atomic::Ordering::SeqCst),
    });
    pipeline.set_restart(&logged, genstage::RestartPolicy::transient());
    pipeline.subscribe_with(
        &opening,
        &logged,
        genstage::SubscribeOptions::new()
            .max_demand(2)
            .min_demand(1),
    );
    let running = pipeline.start();
    // Until the restarted value has handled the other event and its own `Hello`.
    let second_value = |log: &[&str]| {
        let restart = log.iter().rposition(|&call| call == "init").unwrap_or(0);
        restart > 0 && log[restart..].contains(&"hello") && log[restart..].contains(&"events")
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while !second_value(&consumer_log.lock().unwrap()) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the restarted value runs");
    let report = running.shutdown().await.expect("the restart recovered");

    assert_eq!(*log.lock().unwrap(), ["producer init", "producer demand"]);
    // Each value starts with `init`; the first fails on its batch of one, the second is told of
    // the subscription again and takes the other event. (Where a `Hello` falls among the others
    // depends on what was queued first; the failed value's is dropped with it if still queued.)
    let calls = consumer_log.lock().unwrap().clone();
    let values: Vec<&[&str]> = calls.split(|&call| call == "init").skip(1).collect();
    assert_eq!(calls[0], "init", "{calls:?}");
    assert_eq!(values.len(), 2, "{calls:?}");
    for value in &values {
        let mut rest: Vec<&str> = value.iter().copied().filter(|&c| c != "hello").collect();
        rest.dedup();
        assert_eq!(rest, ["subscribe", "events"], "{calls:?}");
    }
    assert!(values[1].contains(&"hello"), "{calls:?}");
    assert_eq!(report.stage("Logged").unwrap().restarts, 1);
    assert!(report.balanced(), "{report:?}");
}

/// A queue fed by calls (GenStage's QueueBroadcaster): a push is answered once its job is emitted,
/// so pushes wait while the workers have no demand.
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
        let jobs = self
            .waiting
            .drain(..take)
            .map(|(job, reply)| {
                reply.reply(());
                job
            })
            .collect::<Vec<_>>();
        Ok(jobs.into())
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
    type Emitted = ();
    async fn handle_call(
        &mut self,
        _: Waiting,
        reply: ReplyTo<usize>,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(self.waiting.len());
        Ok(())
    }
}

/// Handles one job at a time, each once the test lets it.
struct Worker {
    gate: Arc<Semaphore>,
    handled: mpsc::UnboundedSender<u64>,
}

impl Consumer for Worker {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        for job in events {
            self.handled.send(job)?;
            self.gate.acquire().await?.forget();
        }
        Ok(())
    }
}

#[tokio::test]
async fn pushes_to_a_queue_wait_while_the_workers_are_busy_and_every_job_is_handled_once() {
    let gate = Arc::new(Semaphore::new(0));
    let (handled, mut jobs) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer(Queue::default());
    for _ in 0..4 {
        let worker = pipeline.add_consumer(Worker {
            gate: gate.clone(),
            handled: handled.clone(),
        });
        pipeline.subscribe_with(
            &queue,
            &worker,
            genstage::SubscribeOptions::new()
                .max_demand(1)
                .min_demand(0),
        );
    }
    drop(handled);
    let running = pipeline.start();

    let pushes: Vec<_> = (0..5)
        .map(|job| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.call(Push(job)).await })
        })
        .collect();
    // Four workers with a demand of one each take four jobs, and block on the gate.
    let mut taken: Vec<u64> = Vec::new();
    for _ in 0..4 {
        taken.push(jobs.recv().await.unwrap());
    }
    // The fifth job waits in the queue, and so does its push.
    while queue.call(Waiting).await.unwrap() != 1 {
        tokio::task::yield_now().await;
    }
    let unanswered = pushes.iter().filter(|push| !push.is_finished()).count();
    assert_eq!(unanswered, 1);

    gate.add_permits(5);
    for push in pushes {
        push.await.unwrap().expect("every push is answered");
    }
    taken.push(jobs.recv().await.unwrap());
    taken.sort_unstable();
    assert_eq!(taken, [0, 1, 2, 3, 4]);

    let report = running.shutdown().await.unwrap();
    assert_eq!(report.stage("Queue").unwrap().emitted, 5);
    assert_eq!(report.totals().handled, 5);
    assert!(report.balanced());
}

#[tokio::test]
async fn a_call_to_a_stage_that_has_ended_is_an_error_naming_it() {
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer_named("jobs", Queue::default());
    let worker_log = mpsc::unbounded_channel();
    let worker = pipeline.add_consumer(Worker {
        gate: Arc::new(Semaphore::new(10)),
        handled: worker_log.0,
    });
    pipeline.subscribe(&queue, &worker);
    let running = pipeline.start();
    queue.call(Push(7)).await.unwrap();
    running.shutdown().await.unwrap();

    assert_eq!(
        queue.call(Waiting).await,
        Err(CallError::Ended {
            stage: "jobs".to_owned()
        })
    );
    assert_eq!(
        queue.cast(Tick),
        Err(CallError::Ended {
            stage: "jobs".to_owned()
        })
    );
}

/// Emits what it is cast, and ticks by itself: GenStage's Counter fed by cast and info.
#[derive(Default)]
struct Ticker {
    ticks: u64,
}

struct Tick;
struct Say(Vec<u64>);
struct StartTicking(u32);

impl Producer for Ticker {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        // Everything comes from messages.
        Ok(Vec::new().into())
    }
}

impl HandleCast<Say> for Ticker {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Say(events): Say,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

impl HandleCast<Tick> for Queue {
    type Emitted = ();
    async fn handle_cast(&mut self, _: Tick, _: &mut Context<'_, Self>) -> StageResult<()> {
        Ok(())
    }
}

impl HandleInfo<StartTicking> for Ticker {
    type Emitted = ();
    async fn handle_info(
        &mut self,
        StartTicking(n): StartTicking,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        for _ in 0..n {
            ctx.info(Tick);
        }
        Ok(())
    }
}

impl HandleInfo<Tick> for Ticker {
    type Emitted = Emit<u64>;
    async fn handle_info(
        &mut self,
        _: Tick,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Emit<u64>> {
        self.ticks += 1;
        let event = 1000 + self.ticks;
        if self.ticks == 3 {
            // The last tick ends the producer; one more after a delay would find it gone.
            ctx.info_after(Duration::from_millis(1), Tick);
            return Ok(Emit::last(vec![event]));
        }
        Ok(Emit::more(vec![event]))
    }
}

#[tokio::test]
async fn casts_and_infos_emit_events_and_an_info_can_end_a_producer() {
    let (record, seen, _started) = Record::new();
    let mut pipeline = Pipeline::new();
    let ticker = pipeline.add_producer(Ticker::default());
    let sink = pipeline.add_consumer(record);
    pipeline.subscribe(&ticker, &sink);
    let running = pipeline.start();

    ticker.cast(Say(vec![1, 2, 3])).unwrap();
    ticker.info(StartTicking(3)).unwrap();
    let report = running.await.expect("the third tick ends the pipeline");

    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 1001, 1002, 1003]);
    assert_eq!(
        report.stage("Ticker").unwrap().status,
        StageStatus::Finished
    );
    assert!(report.balanced());
}

#[tokio::test]
async fn a_pipeline_started_outside_a_runtime_says_so() {
    let handle = std::thread::spawn(|| {
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer(genstage::from_iter(0..3u64));
        let (record, _, _) = Record::new();
        let sink = pipeline.add_consumer(record);
        pipeline.subscribe(&numbers, &sink);
        pipeline.start()
    })
    .join()
    .unwrap();
    assert!(matches!(handle.await, Err(PipelineError::NoRuntime)));
}

/// Emits ten events when cast `Ten`; counts the `Mark`s it handles, cast or sent as infos; answers
/// `Ping`.
struct Feed {
    marks: Arc<std::sync::atomic::AtomicU64>,
}

struct Ten;
struct Mark;
struct Ping;

impl Producer for Feed {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Vec::new().into())
    }
}

impl HandleCast<Ten> for Feed {
    type Emitted = Vec<u64>;
    async fn handle_cast(&mut self, _: Ten, _: &mut Context<'_, Self>) -> StageResult<Vec<u64>> {
        Ok((0..10).collect())
    }
}

impl HandleCast<Mark> for Feed {
    type Emitted = ();
    async fn handle_cast(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.marks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl HandleInfo<Mark> for Feed {
    type Emitted = ();
    async fn handle_info(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.marks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl HandleCall<Ping> for Feed {
    type Reply = ();
    type Emitted = ();
    async fn handle_call(
        &mut self,
        _: Ping,
        reply: ReplyTo<()>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(());
        Ok(())
    }
}

/// Handles each batch once let through its gate.
struct Gated {
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
}

impl Consumer for Gated {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        let _ = self.entered.send(());
        self.gate.acquire().await.unwrap().forget();
        Ok(())
    }
}

/// How a `Mark` is sent in [`a_shutting_down_producer_refuses`].
#[derive(Clone, Copy)]
enum Way {
    Cast,
    Info,
}

/// `feed -> gated` (max_demand 2), started, `feed` cast ten events: `gated` holds two and waits at
/// its gate (the semaphore returned), and `feed` holds the other eight, so that a shutdown stays
/// open until the gate opens. Also returns the count of `Mark`s `feed` handles.
async fn feed_held_open() -> (
    genstage::PipelineHandle,
    genstage::ProducerRef<Feed>,
    Arc<std::sync::atomic::AtomicU64>,
    Arc<Semaphore>,
) {
    let marks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named(
        "feed",
        Feed {
            marks: marks.clone(),
        },
    );
    let gated = pipeline.add_consumer(Gated {
        gate: gate.clone(),
        entered,
    });
    pipeline.subscribe_with(
        &feed,
        &gated,
        genstage::SubscribeOptions::new().max_demand(2),
    );
    let running = pipeline.start();
    feed.cast(Ten).unwrap();
    inside.recv().await.unwrap();
    assert_eq!(feed.estimate_buffered_count().await, Ok(8));
    (running, feed, marks, gate)
}

/// Calls `feed` until it answers a call with an error, which it does once the shutdown has reached
/// it (a call is taken in order with the other messages); returns the error.
async fn until_refused(feed: &genstage::ProducerRef<Feed>) -> CallError {
    loop {
        if let Err(error) = feed.call(Ping).await {
            return error;
        }
    }
}

/// The report of a shutdown of [`feed_held_open`]: every event handled.
fn assert_all_handled(report: &genstage::Report) {
    assert!(report.balanced(), "{report:?}");
    assert_eq!(report.stage("feed").unwrap().emitted, 10);
    assert_eq!(report.stage("Gated").unwrap().events_in, 10);
    assert_eq!(report.stage("feed").unwrap().status, StageStatus::ShutDown);
}

/// [`feed_held_open`]: a `Mark` sent `way` just before the shutdown, and others while it comes,
/// are each refused (`ShuttingDown`, naming `feed`) or handled; once the shutdown has reached
/// `feed`, every message from outside is refused. Opened, the gate lets the shutdown end, having
/// handled every accepted `Mark` and every event.
async fn a_shutting_down_producer_refuses(way: Way) {
    let (running, feed, marks, gate) = feed_held_open().await;
    let send_mark = || match way {
        Way::Cast => feed.cast(Mark),
        Way::Info => feed.info(Mark),
    };
    let shutting_down = Err(CallError::ShuttingDown {
        stage: "feed".to_owned(),
    });

    // Accepted just before the shutdown: handled.
    send_mark().unwrap();
    let mut accepted = 1;
    let shutdown = tokio::spawn(running.shutdown());
    // Racing the shutdown: each accepted or refused, until a call is refused.
    loop {
        match send_mark() {
            Ok(()) => accepted += 1,
            refused => assert_eq!(refused, shutting_down),
        }
        if let Err(error) = feed.call(Ping).await {
            // Its message sent after that refused, the call too.
            assert_eq!(send_mark(), shutting_down);
            assert_eq!(Err(error), shutting_down);
            break;
        }
    }
    assert_eq!(feed.info_after_buffered(Mark), shutting_down);
    assert_eq!(
        shutting_down.clone().unwrap_err().to_string(),
        "stage `feed` is shutting down: it takes no more messages from outside"
    );
    // What it buffers still goes out, and it still answers a count.
    assert_eq!(feed.estimate_buffered_count().await, Ok(8));

    gate.add_permits(100);
    let report = shutdown.await.unwrap().expect("a clean shutdown");
    assert_eq!(
        marks.load(std::sync::atomic::Ordering::SeqCst),
        accepted,
        "every message accepted is handled, and no other"
    );
    assert_all_handled(&report);
}

#[tokio::test]
async fn a_cast_to_a_producer_shutting_down_is_refused_naming_it_and_one_accepted_is_handled() {
    a_shutting_down_producer_refuses(Way::Cast).await;
}

#[tokio::test]
async fn an_info_to_a_producer_shutting_down_is_refused_naming_it_and_one_accepted_is_handled() {
    a_shutting_down_producer_refuses(Way::Info).await;
}

#[tokio::test]
async fn a_demand_switch_to_a_producer_shutting_down_is_refused_naming_it() {
    let (running, feed, _, gate) = feed_held_open().await;
    // Accepted just before the shutdown: switched.
    feed.demand(DemandMode::Accumulate).unwrap();
    assert_eq!(feed.demand_mode().await, Ok(DemandMode::Accumulate));
    let shutdown = tokio::spawn(running.shutdown());
    let refused = until_refused(&feed).await;
    let shutting_down = CallError::ShuttingDown {
        stage: "feed".to_owned(),
    };
    for mode in [DemandMode::Accumulate, DemandMode::Forward] {
        assert_eq!(feed.demand(mode), Err(shutting_down.clone()));
    }
    assert_eq!(refused, shutting_down);
    // A producer shutting down forwards, to deliver what it holds; it still answers its mode.
    assert_eq!(feed.demand_mode().await, Ok(DemandMode::Forward));
    gate.add_permits(100);
    let report = shutdown.await.unwrap().expect("a clean shutdown");
    assert_all_handled(&report);
}

/// Passes its input on, each batch once let through its gate; says which batches it entered, and
/// counts the `Mark`s it handles.
struct Relay {
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<Vec<u64>>,
    marks: Arc<std::sync::atomic::AtomicU64>,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        let _ = self.entered.send(events.clone());
        self.gate.acquire().await.unwrap().forget();
        Ok(events)
    }
}

impl HandleInfo<Mark> for Relay {
    type Emitted = ();
    async fn handle_info(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.marks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// Emits four events when cast `Four`.
struct Four;

impl HandleCast<Four> for Feed {
    type Emitted = Vec<u64>;
    async fn handle_cast(&mut self, _: Four, _: &mut Context<'_, Self>) -> StageResult<Vec<u64>> {
        Ok((0..4).collect())
    }
}

/// `feed -> relay -> sink`, `relay` inside its first batch: infos accepted by `relay` before the
/// shutdown are handled; once the shutdown has reached `feed` it has reached `relay` too (the
/// pipeline tells every stage at once), and `relay` refuses infos, naming itself.
#[tokio::test]
async fn a_producer_consumer_shutting_down_refuses_infos_and_handles_those_accepted_before() {
    let marks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let feed = pipeline.add_producer_named(
        "feed",
        Feed {
            marks: Arc::default(),
        },
    );
    let relay = pipeline.add_producer_consumer_named(
        "relay",
        Relay {
            gate: gate.clone(),
            entered,
            marks: marks.clone(),
        },
    );
    let (record, seen, _started) = Record::new();
    let sink = pipeline.add_consumer(record);
    pipeline.subscribe_with(
        &feed,
        &relay,
        genstage::SubscribeOptions::new()
            .max_demand(4)
            .min_demand(2),
    );
    pipeline.subscribe(&relay, &sink);
    let running = pipeline.start();
    // `relay` takes all four in one message, and holds the second batch behind the first.
    feed.cast(Four).unwrap();
    assert_eq!(inside.recv().await.unwrap(), [0, 1]);
    relay.info(Mark).unwrap();
    relay.info_after_buffered(Mark).unwrap();

    let shutdown = tokio::spawn(running.shutdown());
    // `feed`, holding nothing, may have ended already.
    let refused = until_refused(&feed).await;
    assert!(
        matches!(&refused, CallError::ShuttingDown { stage } | CallError::Ended { stage } if stage == "feed"),
        "{refused:?}"
    );
    let shutting_down = Err(CallError::ShuttingDown {
        stage: "relay".to_owned(),
    });
    assert_eq!(relay.info(Mark), shutting_down);
    assert_eq!(relay.info_after_buffered(Mark), shutting_down);

    gate.add_permits(100);
    let report = shutdown.await.unwrap().expect("a clean shutdown");
    assert_eq!(marks.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(*seen.lock().unwrap(), [0, 1, 2, 3]);
    assert!(report.balanced(), "{report:?}");
}

/// Passes its input on; says when its input has ended; counts the `Mark`s it handles.
struct Draining {
    ended: mpsc::UnboundedSender<()>,
    marks: Arc<std::sync::atomic::AtomicU64>,
}

impl ProducerConsumer for Draining {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    async fn handle_cancel(
        &mut self,
        _: &genstage::Subscription,
        _: &genstage::CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        let _ = self.ended.send(());
        Ok(Vec::new())
    }
}

impl HandleInfo<Mark> for Draining {
    type Emitted = ();
    async fn handle_info(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.marks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

/// `from_iter(0..4) -> draining -> gated` (max_demand 2): `gated` holds two events at its gate,
/// `draining` the other two, after its input has ended; it refuses infos from then on, naming
/// itself, until it has delivered them and finished, where it took them and dropped them.
#[tokio::test]
async fn a_producer_consumer_whose_input_has_ended_refuses_infos_while_it_delivers_what_it_holds() {
    let marks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let (ended, mut input_ended) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(genstage::from_iter(0..4u64));
    let draining = pipeline.add_producer_consumer_named(
        "draining",
        Draining {
            ended,
            marks: marks.clone(),
        },
    );
    let gated = pipeline.add_consumer(Gated {
        gate: gate.clone(),
        entered,
    });
    pipeline.subscribe(&numbers, &draining);
    pipeline.subscribe_with(
        &draining,
        &gated,
        genstage::SubscribeOptions::new().max_demand(2),
    );
    let running = pipeline.start();
    inside.recv().await.unwrap();
    input_ended.recv().await.unwrap();
    assert_eq!(draining.estimate_buffered_count().await, Ok(2));
    assert_eq!(
        draining.info(Mark),
        Err(CallError::ShuttingDown {
            stage: "draining".to_owned()
        })
    );
    gate.add_permits(100);
    let report = running.await.expect("the run ends");
    assert_eq!(marks.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(report.stage("Gated").unwrap().events_in, 4);
    assert!(report.balanced(), "{report:?}");
}

/// As [`a_producer_consumer_whose_input_has_ended_refuses_infos_while_it_delivers_what_it_holds`],
/// then subscribed to another producer through the pipeline's handle while it still delivers: it
/// has input again, and takes infos again.
#[tokio::test]
async fn a_producer_consumer_given_input_again_while_it_delivers_takes_infos_again() {
    let marks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let (ended, mut input_ended) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(genstage::from_iter(0..4u64));
    let draining = pipeline.add_producer_consumer_named(
        "draining",
        Draining {
            ended,
            marks: marks.clone(),
        },
    );
    let gated = pipeline.add_consumer(Gated {
        gate: gate.clone(),
        entered,
    });
    pipeline.subscribe(&numbers, &draining);
    pipeline.subscribe_with(
        &draining,
        &gated,
        genstage::SubscribeOptions::new().max_demand(2),
    );
    // Another producer, emitting nothing, to subscribe `draining` to later.
    let feed = pipeline.add_producer_named(
        "feed",
        Feed {
            marks: Arc::default(),
        },
    );
    let (record, _, _) = Record::new();
    let other = pipeline.add_consumer(record);
    pipeline.subscribe(&feed, &other);
    let running = pipeline.start();
    inside.recv().await.unwrap();
    input_ended.recv().await.unwrap();
    assert_eq!(draining.estimate_buffered_count().await, Ok(2));
    assert_eq!(
        draining.info(Mark),
        Err(CallError::ShuttingDown {
            stage: "draining".to_owned()
        })
    );

    running.subscribe(&feed, &draining).await.unwrap();
    // The subscription is taken in before the count is answered.
    assert_eq!(draining.estimate_buffered_count().await, Ok(2));
    draining.info(Mark).unwrap();
    gate.add_permits(100);
    let report = running.shutdown().await.expect("a clean shutdown");
    assert_eq!(marks.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(report.stage("Gated").unwrap().events_in, 4);
    assert!(report.balanced(), "{report:?}");
}
