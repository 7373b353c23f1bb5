//! Messages from outside to a stage that ends by itself (its events or its input ran out, or it
//! failed): from the moment it decides to end, a cast is refused with `CallError::Ended` naming it,
//! and every cast accepted before is handled. `Ok` never means a message dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use genstage::{
    CallError, Consumer, Context, Emit, HandleCast, Pipeline, PipelineError, Producer,
    ProducerConsumer, StageRef, StageResult, StageStatus,
};
use tokio::sync::{mpsc, Semaphore};

/// Cast to count a message handled.
struct Mark;

/// Casts `Mark` to `stage` until it is refused; returns how many it accepted and the refusal.
fn cast_until_refused<R>(stage: R) -> tokio::task::JoinHandle<(u64, CallError)>
where
    R: StageRef + Send,
    Mark: genstage::CastFor<R::Stage, R::Emits>,
{
    tokio::spawn(async move {
        let mut accepted = 0;
        loop {
            match stage.cast(Mark) {
                Ok(()) => accepted += 1,
                Err(error) => return (accepted, error),
            }
            tokio::task::yield_now().await;
        }
    })
}

fn ended(stage: &str) -> CallError {
    CallError::Ended {
        stage: stage.to_owned(),
    }
}

/// Where a stage's `terminate` says it has been called, with its status, and waits for a permit.
type Hold = Option<(mpsc::UnboundedSender<StageStatus>, Arc<Semaphore>)>;

async fn held(hold: &Hold, status: &StageStatus) {
    if let Some((ending, permits)) = hold {
        let _ = ending.send(status.clone());
        permits.acquire().await.unwrap().forget();
    }
}

/// Counts the `Mark`s it is cast; fails on `fail_at`; its `terminate` waits at `hold`.
struct Sink {
    marks: Arc<AtomicU64>,
    fail_at: Option<u64>,
    hold: Hold,
}

impl Sink {
    fn counting(marks: &Arc<AtomicU64>) -> Self {
        Sink {
            marks: marks.clone(),
            fail_at: None,
            hold: None,
        }
    }
}

impl Consumer for Sink {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.iter().any(|&event| Some(event) == self.fail_at) {
            return Err("sink failed on purpose".into());
        }
        Ok(())
    }

    async fn terminate(&mut self, status: &StageStatus) {
        held(&self.hold, status).await;
    }
}

impl HandleCast<Mark> for Sink {
    type Emitted = ();
    async fn handle_cast(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.marks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Emits `0..count`, the last batch with `Emit::last`; counts the `Mark`s it is cast; its
/// `terminate` waits at `hold`.
struct Counted {
    next: u64,
    count: u64,
    marks: Arc<AtomicU64>,
    hold: Hold,
}

impl Producer for Counted {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let end = (self.next + demand as u64).min(self.count);
        let events: Vec<u64> = (self.next..end).collect();
        self.next = end;
        Ok(if end == self.count {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    async fn terminate(&mut self, status: &StageStatus) {
        held(&self.hold, status).await;
    }
}

impl HandleCast<Mark> for Counted {
    type Emitted = ();
    async fn handle_cast(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.marks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Passes its input on; counts the `Mark`s it is cast; its `terminate` waits at `hold`.
struct Relay {
    marks: Arc<AtomicU64>,
    hold: Hold,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }

    async fn terminate(&mut self, status: &StageStatus) {
        held(&self.hold, status).await;
    }
}

impl HandleCast<Mark> for Relay {
    type Emitted = ();
    async fn handle_cast(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.marks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// How many times each race is run: enough that, without the close before the last look, casts
/// accepted as the stage ends are lost in some run.
const RUNS: usize = 200;

/// `from_iter(0..64) -> sink`, `sink` cast `Mark`s from another task as its producer ends: every
/// cast accepted is handled, and the first refused is refused as `Ended`, naming `sink`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_finishing_handles_every_cast_it_accepted_and_refuses_the_rest_as_ended() {
    for _ in 0..RUNS {
        let marks = Arc::new(AtomicU64::new(0));
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer(genstage::from_iter(0..64u64));
        let sink = pipeline.add_consumer_named("sink", Sink::counting(&marks));
        pipeline.subscribe(&numbers, &sink);
        let running = pipeline.start();
        let casting = cast_until_refused(sink);
        let report = running.await.expect("the run ends");
        let (accepted, refused) = casting.await.unwrap();
        assert_eq!(refused, ended("sink"));
        assert_eq!(marks.load(Ordering::SeqCst), accepted);
        assert_eq!(report.stage("sink").unwrap().status, StageStatus::Finished);
        assert_eq!(report.stage("sink").unwrap().events_in, 64);
        assert!(report.balanced(), "{report:?}");
    }
}

/// `counted -> sink` (max_demand 10), `counted` (which ends with `Emit::last`) cast `Mark`s from another task as
/// it ends: every cast accepted is handled, and the first refused is refused as `Ended`, naming
/// `counted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_finishing_handles_every_cast_it_accepted_and_refuses_the_rest_as_ended() {
    for _ in 0..RUNS {
        let marks = Arc::new(AtomicU64::new(0));
        let mut pipeline = Pipeline::new();
        let counted = pipeline.add_producer_named(
            "counted",
            Counted {
                next: 0,
                count: 1000,
                marks: marks.clone(),
                hold: None,
            },
        );
        let sink = pipeline.add_consumer_named("sink", Sink::counting(&Arc::default()));
        // Ten events an ask, so that `counted` is still emitting once casts come.
        pipeline.subscribe_with(
            &counted,
            &sink,
            genstage::SubscribeOptions::new().max_demand(10),
        );
        let running = pipeline.start();
        let casting = cast_until_refused(counted);
        let report = running.await.expect("the run ends");
        let (accepted, refused) = casting.await.unwrap();
        assert_eq!(refused, ended("counted"));
        assert_eq!(marks.load(Ordering::SeqCst), accepted);
        assert_eq!(
            report.stage("counted").unwrap().status,
            StageStatus::Finished
        );
        assert_eq!(report.stage("sink").unwrap().events_in, 1000);
        assert!(report.balanced(), "{report:?}");
    }
}

/// `from_iter(0..64) -> relay -> sink`, `relay` cast `Mark`s from another task as its input ends:
/// every cast accepted is handled, and the first refused is refused naming `relay`: as
/// `ShuttingDown` if it came while `relay` still delivered what it held, as `Ended` if once it had
/// decided to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_finishing_handles_every_cast_it_accepted_and_refuses_the_rest() {
    for _ in 0..RUNS {
        let marks = Arc::new(AtomicU64::new(0));
        let mut pipeline = Pipeline::new();
        let numbers = pipeline.add_producer(genstage::from_iter(0..64u64));
        let relay = pipeline.add_producer_consumer_named(
            "relay",
            Relay {
                marks: marks.clone(),
                hold: None,
            },
        );
        let sink = pipeline.add_consumer_named("sink", Sink::counting(&Arc::default()));
        pipeline.subscribe(&numbers, &relay);
        pipeline.subscribe(&relay, &sink);
        let running = pipeline.start();
        let casting = cast_until_refused(relay);
        let report = running.await.expect("the run ends");
        let (accepted, refused) = casting.await.unwrap();
        let shutting_down = CallError::ShuttingDown {
            stage: "relay".to_owned(),
        };
        assert!(
            refused == ended("relay") || refused == shutting_down,
            "{refused:?}"
        );
        assert_eq!(marks.load(Ordering::SeqCst), accepted);
        assert_eq!(report.stage("relay").unwrap().status, StageStatus::Finished);
        assert_eq!(report.stage("sink").unwrap().events_in, 64);
        assert!(report.balanced(), "{report:?}");
    }
}

/// `from_iter(0..4) -> sink`, `sink` held in its `terminate`: a cast then is refused as `Ended`,
/// naming `sink`, where it was accepted and dropped with the mailbox. `fail_at` makes `sink` fail
/// on that event first.
async fn a_consumer_in_terminate_refuses_casts(fail_at: Option<u64>) -> Result<u64, PipelineError> {
    let marks = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(Semaphore::new(0));
    let (ending, mut in_terminate) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer(genstage::from_iter(0..4u64));
    let sink = pipeline.add_consumer_named(
        "sink",
        Sink {
            marks: marks.clone(),
            fail_at,
            hold: Some((ending, hold.clone())),
        },
    );
    pipeline.subscribe(&numbers, &sink);
    let running = pipeline.start();
    let status = in_terminate.recv().await.unwrap();
    assert_eq!(
        matches!(status, StageStatus::Failed(_)),
        fail_at.is_some(),
        "{status:?}"
    );
    assert_eq!(sink.cast(Mark), Err(ended("sink")));
    hold.add_permits(1);
    running.await?;
    Ok(marks.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_cast_to_a_consumer_that_has_finished_and_is_in_terminate_is_refused_as_ended() {
    assert_eq!(
        a_consumer_in_terminate_refuses_casts(None).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn a_cast_to_a_consumer_that_has_failed_and_is_in_terminate_is_refused_as_ended() {
    match a_consumer_in_terminate_refuses_casts(Some(2)).await {
        Err(PipelineError::StageFailed { stage, report, .. }) => {
            assert_eq!(stage, "sink");
            assert!(report.balanced(), "{report:?}");
        }
        other => panic!("expected sink to fail: {other:?}"),
    }
}

/// `counted -> relay -> sink`, `counted` and `relay` each held in its `terminate` once finished: a
/// cast to either then is refused as `Ended`, naming it, where it was accepted and dropped.
#[tokio::test]
async fn a_cast_to_a_producer_or_producer_consumer_that_has_finished_and_is_in_terminate_is_refused_as_ended(
) {
    let marks = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(Semaphore::new(0));
    let (ending, mut in_terminate) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let counted = pipeline.add_producer_named(
        "counted",
        Counted {
            next: 0,
            count: 4,
            marks: marks.clone(),
            hold: Some((ending.clone(), hold.clone())),
        },
    );
    let relay = pipeline.add_producer_consumer_named(
        "relay",
        Relay {
            marks: marks.clone(),
            hold: Some((ending, hold.clone())),
        },
    );
    let sink = pipeline.add_consumer_named("sink", Sink::counting(&Arc::default()));
    pipeline.subscribe(&counted, &relay);
    pipeline.subscribe(&relay, &sink);
    let running = pipeline.start();
    assert_eq!(in_terminate.recv().await, Some(StageStatus::Finished));
    assert_eq!(counted.cast(Mark), Err(ended("counted")));
    hold.add_permits(1);
    assert_eq!(in_terminate.recv().await, Some(StageStatus::Finished));
    assert_eq!(relay.cast(Mark), Err(ended("relay")));
    hold.add_permits(1);
    let report = running.await.expect("the run ends");
    assert_eq!(marks.load(Ordering::SeqCst), 0);
    assert_eq!(report.stage("sink").unwrap().events_in, 4);
    assert!(report.balanced(), "{report:?}");
}

/// Takes `leave_after` events, then cancels its subscription (from `handle_events`, through an
/// `Asker`).
struct Leaver {
    leave_after: usize,
    taken: usize,
    asker: Option<genstage::Asker>,
}

impl Consumer for Leaver {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &genstage::Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> genstage::Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        genstage::Demand::Automatic
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let before = self.taken;
        self.taken += events.len();
        if before < self.leave_after && self.taken >= self.leave_after {
            if let Some(asker) = &self.asker {
                asker.cancel()?;
            }
        }
        Ok(())
    }
}

/// `counted -> leaver` (max_demand 10), `leaver` leaving after 500 events, so that `counted`,
/// left without consumers, stops, cast `Mark`s from another task meanwhile: every cast accepted is
/// handled, and the first refused is refused as `Ended`, naming `counted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_its_consumers_left_handles_every_cast_it_accepted_and_refuses_the_rest() {
    for _ in 0..RUNS {
        let marks = Arc::new(AtomicU64::new(0));
        let mut pipeline = Pipeline::new();
        let counted = pipeline.add_producer_named(
            "counted",
            Counted {
                next: 0,
                count: u64::MAX,
                marks: marks.clone(),
                hold: None,
            },
        );
        let leaver = pipeline.add_consumer_named(
            "leaver",
            Leaver {
                leave_after: 500,
                taken: 0,
                asker: None,
            },
        );
        pipeline.subscribe_with(
            &counted,
            &leaver,
            genstage::SubscribeOptions::new().max_demand(10),
        );
        let running = pipeline.start();
        let casting = cast_until_refused(counted);
        let report = running.await.expect("the run ends");
        let (accepted, refused) = casting.await.unwrap();
        assert_eq!(refused, ended("counted"));
        assert_eq!(marks.load(Ordering::SeqCst), accepted);
        assert_eq!(
            report.stage("counted").unwrap().status,
            StageStatus::Cancelled { cause: None }
        );
        assert!(report.balanced(), "{report:?}");
    }
}

/// Cast to hold a stage in its callback until its gate gives a permit (see [`Stalls`]).
struct Block;

/// `Block` and `Mark` for a stage whose field is its [`Stalls`], emitting `$none`.
macro_rules! stalls_casts {
    ($stage:ty, $emitted:ty, $none:expr) => {
        impl HandleCast<Block> for $stage {
            type Emitted = $emitted;
            async fn handle_cast(
                &mut self,
                _: Block,
                _: &mut Context<'_, Self>,
            ) -> StageResult<$emitted> {
                self.0.stall().await?;
                Ok($none)
            }
        }

        impl HandleCast<Mark> for $stage {
            type Emitted = $emitted;
            async fn handle_cast(
                &mut self,
                _: Mark,
                _: &mut Context<'_, Self>,
            ) -> StageResult<$emitted> {
                self.0.marks.fetch_add(1, Ordering::SeqCst);
                Ok($none)
            }
        }
    };
}

/// A producer that emits nothing; `Block` holds it in its callback, `Mark`s are counted.
struct Gated(Stalls);

impl Producer for Gated {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
}

stalls_casts!(Gated, (), ());

/// A consumer that tells the test when its `handle_subscribe` runs.
struct Told(mpsc::UnboundedSender<()>);

impl Consumer for Told {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }

    fn handle_subscribe(
        &mut self,
        _: &genstage::Subscription,
        _: &mut Context<'_, Self>,
    ) -> genstage::Demand {
        let _ = self.0.send(());
        genstage::Demand::Automatic
    }
}

/// `gated -> first`; while `gated` is held in a callback, `first`'s subscription is cancelled and
/// `second` is subscribed through the handle. Left without consumers, `gated` decides to end, but
/// its last look finds `second`'s subscription: it takes it and runs on, and from then on takes
/// messages from outside again (it refused them for good before the fix).
#[tokio::test]
async fn a_producer_its_consumers_left_that_takes_a_new_one_before_it_ends_takes_messages_again() {
    let gate = Arc::new(Semaphore::new(0));
    let marks = Arc::new(AtomicU64::new(0));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let (stalls, _) = Stalls::new(&gate, entered, &marks);
    let gated = pipeline.add_producer_named("gated", Gated(stalls));
    let first = pipeline.add_consumer_named("first", Sink::counting(&Arc::default()));
    pipeline.subscribe(&gated, &first);
    let running = pipeline.start();
    gated.estimate_buffered_count().await.unwrap();

    gated.cast(Block).unwrap();
    inside.recv().await.unwrap();
    let tags = running.subscriptions(&gated, &first).await.unwrap();
    running.cancel(tags[0]).await.unwrap();
    let (subscribed, mut told) = mpsc::unbounded_channel();
    let second = running
        .add_consumer_named("second", Told(subscribed))
        .await
        .unwrap();
    running.subscribe(&gated, &second).await.unwrap();
    gate.add_permits(1);

    told.recv().await.unwrap();
    // Once it has taken in what the handle sent (a count is answered in its turn), it is open.
    for round in 1..=3 {
        assert_eq!(gated.estimate_buffered_count().await, Ok(0));
        assert_eq!(gated.cast(Mark), Ok(()));
        assert_eq!(gated.estimate_buffered_count().await, Ok(0));
        assert_eq!(marks.load(Ordering::SeqCst), round);
    }
    let first_report = running.stage_ended(&first).await.unwrap();
    assert_eq!(first_report.status, StageStatus::Finished);

    let report = running.shutdown().await.unwrap();
    assert_eq!(report.stage("gated").unwrap().status, StageStatus::ShutDown);
    assert!(report.balanced(), "{report:?}");
}

/// What [`Gated`], [`GatedSink`] and [`GatedRelay`] share: their casts `Block` and their batches
/// each wait for a permit of `gate`, telling the test first; `Mark`s are counted. The
/// `handle_subscribe` of a second subscription tells the test and blocks its thread until `go`.
struct Stalls {
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
    marks: Arc<AtomicU64>,
    subscribed: usize,
    go: std::sync::mpsc::Receiver<()>,
}

impl Stalls {
    /// Stalls at `gate`, telling `entered`, counting into `marks`; with the sender of `go`.
    fn new(
        gate: &Arc<Semaphore>,
        entered: mpsc::UnboundedSender<()>,
        marks: &Arc<AtomicU64>,
    ) -> (Self, std::sync::mpsc::Sender<()>) {
        let (go, went) = std::sync::mpsc::channel();
        let stalls = Stalls {
            gate: gate.clone(),
            entered,
            marks: marks.clone(),
            subscribed: 0,
            go: went,
        };
        (stalls, go)
    }

    async fn stall(&mut self) -> StageResult<()> {
        let _ = self.entered.send(());
        self.gate.acquire().await?.forget();
        Ok(())
    }

    fn subscribed(&mut self) -> genstage::Demand {
        self.subscribed += 1;
        if self.subscribed == 2 {
            let _ = self.entered.send(());
            let _ = self.go.recv();
        }
        genstage::Demand::Automatic
    }
}

struct GatedSink(Stalls);

impl Consumer for GatedSink {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        self.0.stall().await
    }

    fn handle_subscribe(
        &mut self,
        _: &genstage::Subscription,
        _: &mut Context<'_, Self>,
    ) -> genstage::Demand {
        self.0.subscribed()
    }
}

stalls_casts!(GatedSink, (), ());

struct GatedRelay(Stalls);

impl ProducerConsumer for GatedRelay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        self.0.stall().await?;
        Ok(events)
    }

    fn handle_subscribe(
        &mut self,
        _: &genstage::Subscription,
        _: &mut Context<'_, Self>,
    ) -> genstage::Demand {
        self.0.subscribed()
    }
}

stalls_casts!(GatedRelay, Vec<u64>, Vec::new());

/// Emits `[10, 11, 12]` as its last events; tells the test when a consumer subscribes (by then
/// the consumer's mailbox holds the subscription).
struct Three(mpsc::UnboundedSender<()>);

impl Producer for Three {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last(vec![10, 11, 12]))
    }

    fn handle_consumer_subscribe(&mut self, _: &genstage::Subscriber, _: &mut Context<'_, Self>) {
        let _ = self.0.send(());
    }
}

/// `gated -> stage` (a [`GatedSink`] or a [`GatedRelay`] into a sink, added by `add`); while
/// `stage` is held in a callback, its subscription is cancelled and `three` is subscribed to it
/// through the handle. Its input ended, `stage` decides to end, but its last look finds the new
/// subscription: it takes it, and from its `handle_subscribe` on, it takes messages from outside
/// again (until its loop came round, it refused them as `Ended`). The test casts while `stage`'s
/// `handle_subscribe` blocks its thread: on a runtime of two threads.
async fn given_a_new_producer_once_its_input_ended<R>(add: impl FnOnce(&mut Pipeline, Stalls) -> R)
where
    R: genstage::Sink<u64> + StageRef + Send,
    Block: genstage::CastFor<R::Stage, R::Emits>,
    Mark: genstage::CastFor<R::Stage, R::Emits>,
{
    let gate = Arc::new(Semaphore::new(0));
    let marks = Arc::new(AtomicU64::new(0));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let (idle, _) = Stalls::new(&gate, mpsc::unbounded_channel().0, &Arc::default());
    let gated = pipeline.add_producer_named("gated", Gated(idle));
    let (stalls, go) = Stalls::new(&gate, entered, &marks);
    let stage = add(&mut pipeline, stalls);
    pipeline.subscribe(&gated, &stage);
    let running = pipeline.start();
    gated.estimate_buffered_count().await.unwrap();

    stage.cast(Block).unwrap();
    inside.recv().await.unwrap();
    let tags = running.subscriptions(&gated, &stage).await.unwrap();
    running.cancel(tags[0]).await.unwrap();
    // `gated` tells `stage` of the cancel before it ends.
    let gated_report = running.stage_ended(&gated).await.unwrap();
    assert_eq!(gated_report.status, StageStatus::Cancelled { cause: None });
    let (subscribed, mut told) = mpsc::unbounded_channel();
    let three = running
        .add_producer_named("three", Three(subscribed))
        .await
        .unwrap();
    running.subscribe(&three, &stage).await.unwrap();
    told.recv().await.unwrap();
    gate.add_permits(1);

    // In its `handle_subscribe` of `three`'s subscription.
    inside.recv().await.unwrap();
    assert_eq!(stage.cast(Mark), Ok(()));
    go.send(()).unwrap();
    // Held in its batch from `three`.
    inside.recv().await.unwrap();
    gate.add_permits(1);
    let report = running.await.unwrap();
    assert_eq!(report.stage("stage").unwrap().status, StageStatus::Finished);
    assert_eq!(report.stage("stage").unwrap().events_in, 3);
    assert_eq!(marks.load(Ordering::SeqCst), 1);
    assert!(report.balanced(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_given_a_new_producer_once_its_input_ended_takes_messages_from_then_on() {
    given_a_new_producer_once_its_input_ended(|pipeline, stalls| {
        pipeline.add_consumer_named("stage", GatedSink(stalls))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_consumer_given_a_new_producer_once_its_input_ended_takes_messages_from_then_on()
{
    given_a_new_producer_once_its_input_ended(|pipeline, stalls| {
        let relay = pipeline.add_producer_consumer_named("stage", GatedRelay(stalls));
        let sink = pipeline.add_consumer(Sink::counting(&Arc::default()));
        pipeline.subscribe(&relay, &sink);
        relay
    })
    .await;
}

/// A permanent producer: each value emits its number and finishes; the first value's `terminate`
/// tells the test and waits for a permit of `gate`. `Mark`s are recorded with the number of the
/// value that took them.
struct Again {
    value: u64,
    gate: Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
    marks: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl Producer for Again {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::last(vec![self.value]))
    }

    async fn terminate(&mut self, _: &StageStatus) {
        if self.value == 0 {
            let _ = self.entered.send(());
            self.gate.acquire().await.unwrap().forget();
        }
    }
}

impl HandleCast<Mark> for Again {
    type Emitted = Emit<u64>;
    async fn handle_cast(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<Emit<u64>> {
        self.marks.lock().unwrap().push(self.value);
        Ok(Emit::more(Vec::new()))
    }
}

/// A permanent producer that finishes is restarted: it is not ending, and a message sent while its
/// value says farewell is taken by the next value, not refused as `Ended` (chaos seed 3280632: a
/// switch to forward refused so left the next value accumulating, and the run hung).
#[tokio::test]
async fn a_permanent_producer_that_finishes_takes_messages_for_its_next_value() {
    let gate = Arc::new(Semaphore::new(0));
    let marks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let mut values = 0..;
    let again = {
        let (gate, marks) = (gate.clone(), marks.clone());
        pipeline.add_producer_with(move || Again {
            value: values.next().unwrap_or(u64::MAX),
            gate: gate.clone(),
            entered: entered.clone(),
            marks: marks.clone(),
        })
    };
    let seen = Arc::new(AtomicU64::new(0));
    let sink = pipeline.add_consumer(Sink::counting(&seen));
    pipeline.subscribe(&again, &sink);
    pipeline.set_restart(
        &again,
        genstage::RestartPolicy::permanent().max_restarts(1, std::time::Duration::from_secs(60)),
    );
    let running = pipeline.start();

    inside.recv().await.unwrap();
    assert_eq!(again.cast(Mark), Ok(()));
    gate.add_permits(1);
    let error = running.await.unwrap_err();
    assert!(
        matches!(error, PipelineError::RestartLimit { ref stage, .. } if stage == "Again"),
        "{error:?}"
    );
    assert_eq!(*marks.lock().unwrap(), [1]);
    let report = error.report().unwrap();
    assert_eq!(report.stage("Again").unwrap().restarts, 1);
    assert!(report.balanced(), "{report:?}");
}

/// Cast to make a [`Holding`] producer emit its last events: none.
struct Last;

/// An accumulating producer that emits only what it is told: nothing, and `Emit::last`, when cast
/// `Last`; `[42]` when a consumer leaves, telling the test. `Block` holds it (see [`Stalls`]).
struct Holding(Stalls, mpsc::UnboundedSender<()>);

impl Producer for Holding {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }

    async fn handle_consumer_cancel(
        &mut self,
        _: &genstage::Subscriber,
        _: &genstage::CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        let _ = self.1.send(());
        Ok(vec![42])
    }

    fn producer_options(&self) -> genstage::ProducerOptions {
        genstage::ProducerOptions::for_producer().demand(genstage::DemandMode::Accumulate)
    }
}

stalls_casts!(Holding, (), ());

impl HandleCast<Last> for Holding {
    type Emitted = Emit<u64>;
    async fn handle_cast(&mut self, _: Last, _: &mut Context<'_, Self>) -> StageResult<Emit<u64>> {
        Ok(Emit::last(Vec::new()))
    }
}

/// `holding -> [left, stays]`, accumulating; while `holding` is held in a callback, it is cast
/// `Last` and `left`'s subscription is cancelled through the handle. With its last events emitted
/// and none buffered, it decides to end; its last look takes in the cancel, for which it emits
/// `[42]`, held as it accumulates. It is no longer ending: it takes the switch to forward, which
/// it refused as `Ended` before the fix (chaos seed 3789828, where the run then hung), and
/// delivers `42` to `stays` before it finishes.
#[tokio::test]
async fn an_accumulating_producer_given_events_in_its_last_look_takes_the_switch_to_forward() {
    let gate = Arc::new(Semaphore::new(0));
    let (entered, mut inside) = mpsc::unbounded_channel();
    let (told, mut cancelled) = mpsc::unbounded_channel();
    let mut pipeline = Pipeline::new();
    let (stalls, _) = Stalls::new(&gate, entered, &Arc::default());
    let holding = pipeline.add_producer_named("holding", Holding(stalls, told));
    let left = pipeline.add_consumer_named("left", Sink::counting(&Arc::default()));
    let stays = pipeline.add_consumer_named("stays", Sink::counting(&Arc::default()));
    pipeline
        .subscribe(&holding, &left)
        .subscribe(&holding, &stays);
    let running = pipeline.start();
    holding.estimate_buffered_count().await.unwrap();

    holding.cast(Block).unwrap();
    inside.recv().await.unwrap();
    holding.cast(Last).unwrap();
    let tags = running.subscriptions(&holding, &left).await.unwrap();
    running.cancel(tags[0]).await.unwrap();
    gate.add_permits(1);
    cancelled.recv().await.unwrap();

    assert_eq!(holding.demand(genstage::DemandMode::Forward), Ok(()));
    let report = running.await.unwrap();
    assert_eq!(
        report.stage("holding").unwrap().status,
        StageStatus::Finished
    );
    assert_eq!(report.stage("stays").unwrap().events_in, 1);
    assert_eq!(report.stage("left").unwrap().events_in, 0);
    assert!(report.balanced(), "{report:?}");
}
