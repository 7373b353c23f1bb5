//! Infos delivered after the events a stage buffers (GenStage's `sync_info`/`async_info`), end to
//! end: scenarios 32–35, 36 (on a producer_consumer), 40 and 42 of genstage-semantics.md §4,
//! rewritten for `StageRef::info_after_buffered` and `Context::info_after_buffered`. (Scenarios
//! 35–42 are also replayed without tokio on the event path, in the runtime's `event_path` tests.)
//!
//! Every test observes one consumer, [`Log`], through a channel fed in the order its callbacks run.
//! A producer or producer_consumer told an info [`Forward`]s it to the `Log` as a cast, from the
//! stage's own task: the cast reaches the `Log`'s mailbox after every batch the stage sent it before
//! it, so the order the `Log` sees is the order in which the stage dispatched events and delivered
//! the info, with no timing involved. `GenStage`'s `sync_info` and `async_info` differ only in what
//! the sender waits for, which `info_after_buffered` does not offer: both are infos here.

use genstage::{
    Consumer, Context, Demand, Emit, HandleCall, HandleCast, HandleInfo, Pipeline, Producer,
    ProducerConsumer, ReplyTo, StageRef, StageResult, StageStatus, SubscribeOptions, Subscription,
    SubscriptionTag,
};
use tokio::sync::mpsc;

/// What the [`Log`] consumer saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Events(Vec<u64>),
    Note(&'static str),
}

/// Reports its batches and the notes it is cast or told, in order; takes control of its demand
/// when `manual`.
struct Log {
    seen: mpsc::UnboundedSender<Seen>,
    manual: bool,
    tags: Vec<SubscriptionTag>,
}

impl Log {
    fn new(manual: bool) -> (Self, mpsc::UnboundedReceiver<Seen>) {
        let (seen, rx) = mpsc::unbounded_channel();
        let log = Log {
            seen,
            manual,
            tags: Vec::new(),
        };
        (log, rx)
    }

    fn see(&self, seen: Seen) {
        // The test may have stopped listening.
        let _ = self.seen.send(seen);
    }
}

impl Consumer for Log {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        self.tags.push(subscription.tag());
        if self.manual {
            Demand::Manual
        } else {
            Demand::Automatic
        }
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.see(Seen::Events(events));
        Ok(())
    }
}

/// A note, cast to the [`Log`] or sent to it as an info.
struct Note(&'static str);

impl HandleCast<Note> for Log {
    type Emitted = ();
    async fn handle_cast(
        &mut self,
        Note(note): Note,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.see(Seen::Note(note));
        Ok(())
    }
}

impl HandleInfo<Note> for Log {
    type Emitted = ();
    async fn handle_info(
        &mut self,
        Note(note): Note,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.see(Seen::Note(note));
        Ok(())
    }
}

/// Asks `n` more on every subscription of a manual [`Log`].
struct AskMore(usize);

impl HandleCast<AskMore> for Log {
    type Emitted = ();
    async fn handle_cast(
        &mut self,
        AskMore(n): AskMore,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        for &tag in &self.tags {
            ctx.ask(tag, n)?;
        }
        Ok(())
    }
}

/// An info for a producer or producer_consumer: cast `note` to the [`Log`] `to`.
struct Forward {
    note: &'static str,
    to: genstage::ConsumerRef<Log>,
}

fn forward(note: &'static str, to: &genstage::ConsumerRef<Log>) -> Forward {
    Forward {
        note,
        to: to.clone(),
    }
}

/// Emits only what it is cast or called with (GenStage's test `Counter` fed by `sync_queue`).
struct Told;

impl Producer for Told {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
}

/// Emit these.
struct Push(Vec<u64>);

impl HandleCast<Push> for Told {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Push(events): Push,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// Emit these, and answer once they are dispatched (to consumers or the buffer).
struct PushNow(Vec<u64>);

impl HandleCall<PushNow> for Told {
    type Reply = ();
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        PushNow(events): PushNow,
        reply: ReplyTo<()>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(());
        Ok(events)
    }
}

impl HandleInfo<Forward> for Told {
    type Emitted = ();
    async fn handle_info(&mut self, info: Forward, _: &mut Context<'_, Self>) -> StageResult<()> {
        info.to.cast(Note(info.note))?;
        Ok(())
    }
}

/// The final events: emitted, then the producer ends once they have gone out.
struct Last(Vec<u64>);

impl HandleCast<Last> for Told {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Last(events): Last,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        ctx.info_after_buffered(Stop);
        Ok(events)
    }
}

struct Stop;

impl HandleInfo<Stop> for Told {
    type Emitted = Emit<u64>;
    async fn handle_info(&mut self, _: Stop, _: &mut Context<'_, Self>) -> StageResult<Emit<u64>> {
        Ok(Emit::last(Vec::new()))
    }
}

/// Passes its events on; forwards its infos, and remembers them.
#[derive(Default)]
struct Pass {
    forwarded: Vec<&'static str>,
}

impl ProducerConsumer for Pass {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

impl HandleInfo<Forward> for Pass {
    type Emitted = ();
    async fn handle_info(&mut self, info: Forward, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.forwarded.push(info.note);
        info.to.cast(Note(info.note))?;
        Ok(())
    }
}

/// The infos a [`Pass`] has forwarded so far.
struct Forwarded;

impl HandleCall<Forwarded> for Pass {
    type Reply = Vec<&'static str>;
    type Emitted = ();
    async fn handle_call(
        &mut self,
        _: Forwarded,
        reply: ReplyTo<Vec<&'static str>>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(self.forwarded.clone());
        Ok(())
    }
}

/// The next thing the log saw.
async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    rx.recv().await.expect("the log stopped")
}

fn events(range: std::ops::Range<u64>) -> Seen {
    Seen::Events(range.collect())
}

/// Told → Log; the log manual when asked, with `max_demand`. A manual log has its initial ask of
/// `max_demand` in place (the pipeline makes it): this uses it up with `100..100 + max_demand`, so
/// that the producer has no demand, as GenStage's manual consumer that has not asked yet.
async fn told_to_log(
    manual: bool,
    max_demand: usize,
) -> (
    genstage::PipelineHandle,
    genstage::ProducerRef<Told>,
    genstage::ConsumerRef<Log>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (log, mut rx) = Log::new(manual);
    let mut pipeline = Pipeline::new();
    let told = pipeline.add_producer(Told);
    let log = pipeline.add_consumer(log);
    pipeline.subscribe_with(&told, &log, SubscribeOptions::new().max_demand(max_demand));
    let running = pipeline.start();
    if manual {
        let prime = 100..100 + max_demand as u64;
        told.cast(Push(prime.clone().collect())).unwrap();
        assert_eq!(next(&mut rx).await, events(prime));
    }
    (running, told, log, rx)
}

/// Ends the pipeline and checks that the log saw nothing more.
async fn shut_down(running: genstage::PipelineHandle, mut rx: mpsc::UnboundedReceiver<Seen>) {
    let report = running.shutdown().await.unwrap();
    assert!(report.balanced(), "{report:?}");
    assert_eq!(rx.recv().await, None, "nothing more was seen");
}

/// 32: on a consumer, an info is delivered at once (as `info`), in order with other messages.
#[tokio::test]
async fn scenario_32_a_consumers_info_is_delivered_at_once() {
    let (running, _told, log, mut rx) = told_to_log(false, 10).await;
    log.info_after_buffered(Note("sync")).unwrap();
    log.info(Note("plain")).unwrap();
    log.info_after_buffered(Note("async")).unwrap();
    assert_eq!(next(&mut rx).await, Seen::Note("sync"));
    assert_eq!(next(&mut rx).await, Seen::Note("plain"));
    assert_eq!(next(&mut rx).await, Seen::Note("async"));
    shut_down(running, rx).await;
}

/// Told → Pass → Log, the log manual with `max_demand` 5, its initial ask used up.
async fn through_pass() -> (
    genstage::PipelineHandle,
    genstage::ProducerRef<Told>,
    genstage::ProducerConsumerRef<Pass>,
    genstage::ConsumerRef<Log>,
    mpsc::UnboundedReceiver<Seen>,
) {
    let (log, mut rx) = Log::new(true);
    let mut pipeline = Pipeline::new();
    let told = pipeline.add_producer(Told);
    let pass = pipeline.add_producer_consumer(Pass::default());
    let log = pipeline.add_consumer(log);
    pipeline.subscribe(&told, &pass);
    pipeline.subscribe_with(&pass, &log, SubscribeOptions::new().max_demand(5));
    let running = pipeline.start();
    told.cast(Push((100..105).collect())).unwrap();
    assert_eq!(next(&mut rx).await, events(100..105));
    (running, told, pass, log, rx)
}

/// 33: on a producer_consumer with no input queued and nothing buffered, an info is delivered at
/// once.
#[tokio::test]
async fn scenario_33_a_producer_consumers_info_without_queued_input_is_delivered_at_once() {
    let (running, _told, pass, log, mut rx) = through_pass().await;
    pass.info_after_buffered(forward("sync", &log)).unwrap();
    pass.info_after_buffered(forward("async", &log)).unwrap();
    assert_eq!(next(&mut rx).await, Seen::Note("sync"));
    assert_eq!(next(&mut rx).await, Seen::Note("async"));
    shut_down(running, rx).await;
}

/// 34: on a producer_consumer with input queued (10 events it cannot hand on: no demand
/// downstream, GenStage's "no consumer"), an info waits behind that input; once the consumer
/// asks, the events go out, then both infos are delivered, in order.
#[tokio::test]
async fn scenario_34_a_producer_consumers_info_waits_behind_its_queued_input() {
    let (running, told, pass, log, mut rx) = through_pass().await;
    // Answered once the 10 events are on their way to Pass, so they reach it before the infos.
    told.call(PushNow((0..10).collect())).await.unwrap();
    pass.info_after_buffered(forward("sync", &log)).unwrap();
    pass.info_after_buffered(forward("async", &log)).unwrap();
    // Pass answers the call after taking in the infos: neither has been delivered.
    assert_eq!(pass.call(Forwarded).await.unwrap(), Vec::<&str>::new());
    assert_eq!(pass.estimate_buffered_count().await.unwrap(), 0);

    log.cast(AskMore(20)).unwrap();
    assert_eq!(next(&mut rx).await, events(0..10));
    assert_eq!(next(&mut rx).await, Seen::Note("sync"));
    assert_eq!(next(&mut rx).await, Seen::Note("async"));
    assert_eq!(pass.call(Forwarded).await.unwrap(), ["sync", "async"]);
    shut_down(running, rx).await;
}

/// 36 on a producer_consumer: it emits more than its consumer asked for, and buffers the rest; an
/// info is delivered once those buffered events have gone out.
#[tokio::test]
async fn scenario_36_a_producer_consumers_info_follows_its_buffered_events() {
    let (running, told, pass, log, mut rx) = through_pass().await;
    told.cast(Push((0..10).collect())).unwrap();
    // Demand for 2: Pass handles all 10, sends 2 and buffers 8.
    log.cast(AskMore(2)).unwrap();
    assert_eq!(next(&mut rx).await, events(0..2));
    assert_eq!(pass.estimate_buffered_count().await.unwrap(), 8);
    pass.info_after_buffered(forward("sync", &log)).unwrap();
    assert_eq!(pass.estimate_buffered_count().await.unwrap(), 8);
    assert_eq!(pass.call(Forwarded).await.unwrap(), Vec::<&str>::new());
    log.cast(AskMore(8)).unwrap();
    assert_eq!(next(&mut rx).await, events(2..10));
    assert_eq!(next(&mut rx).await, Seen::Note("sync"));
    shut_down(running, rx).await;
}

/// 35: on a producer whose buffer is empty, an info is delivered at once, after the events it
/// dispatched before.
#[tokio::test]
async fn scenario_35_a_producers_info_with_an_empty_buffer_is_delivered_at_once() {
    let (running, told, log, mut rx) = told_to_log(false, 10).await;
    told.cast(Push(vec![1, 2, 3])).unwrap();
    told.info_after_buffered(forward("sync", &log)).unwrap();
    told.info_after_buffered(forward("async", &log)).unwrap();
    assert_eq!(next(&mut rx).await, Seen::Events(vec![1, 2, 3]));
    assert_eq!(next(&mut rx).await, Seen::Note("sync"));
    assert_eq!(next(&mut rx).await, Seen::Note("async"));
    shut_down(running, rx).await;
}

/// 40: the info moves with the buffer: `[1,2,3]` + sync1; an ask of 2 gets `[1,2]` and no info;
/// `[4,5]` + sync2; an ask of 1 gets `[3]`, then sync1; an ask of 2 gets `[4,5]`, then sync2.
/// Infos are not counted as buffered events.
#[tokio::test]
async fn scenario_40_an_info_moves_with_the_buffer() {
    let (running, told, log, mut rx) = told_to_log(true, 5).await;
    told.cast(Push(vec![1, 2, 3])).unwrap();
    told.info_after_buffered(forward("sync1", &log)).unwrap();
    assert_eq!(told.estimate_buffered_count().await.unwrap(), 3);

    log.cast(AskMore(2)).unwrap();
    assert_eq!(next(&mut rx).await, Seen::Events(vec![1, 2]));

    told.cast(Push(vec![4, 5])).unwrap();
    told.info_after_buffered(forward("sync2", &log)).unwrap();
    assert_eq!(told.estimate_buffered_count().await.unwrap(), 3);
    log.cast(AskMore(1)).unwrap();
    // Had sync1 gone out with [1, 2], it would be seen before [3].
    assert_eq!(next(&mut rx).await, Seen::Events(vec![3]));
    assert_eq!(next(&mut rx).await, Seen::Note("sync1"));
    log.cast(AskMore(2)).unwrap();
    assert_eq!(next(&mut rx).await, Seen::Events(vec![4, 5]));
    assert_eq!(next(&mut rx).await, Seen::Note("sync2"));
    assert_eq!(told.estimate_buffered_count().await.unwrap(), 0);
    shut_down(running, rx).await;
}

/// 42: infos keep FIFO order among themselves and with events (a manual consumer): `[1,2,3]`,
/// infos d, e, f, `[7,8]`, info i, then an ask of 5: the events, then the infos, in that order.
#[tokio::test]
async fn scenario_42_infos_keep_fifo_order_with_events() {
    let (running, told, log, mut rx) = told_to_log(true, 5).await;
    told.cast(Push(vec![1, 2, 3])).unwrap();
    for note in ["d", "e", "f"] {
        told.info_after_buffered(forward(note, &log)).unwrap();
    }
    told.cast(Push(vec![7, 8])).unwrap();
    told.info_after_buffered(forward("i", &log)).unwrap();

    log.cast(AskMore(5)).unwrap();
    let seen = [
        Seen::Events(vec![1, 2, 3]),
        Seen::Events(vec![7, 8]),
        Seen::Note("d"),
        Seen::Note("e"),
        Seen::Note("f"),
        Seen::Note("i"),
    ];
    for expected in seen {
        assert_eq!(next(&mut rx).await, expected);
    }
    shut_down(running, rx).await;
}

/// GenStage's typical use: a producer emits its last events and `async_info(self(), :stop)`; it
/// ends once they have all gone out, and the pipeline with it. (Here `Emit::last` from any callback
/// would also let the buffer drain first; the info written in the callback that emits the events is
/// delivered after them all.)
#[tokio::test]
async fn a_producer_ends_once_its_last_events_are_out() {
    let (running, told, _log, mut rx) = told_to_log(false, 10).await;
    told.cast(Last((0..100).collect())).unwrap();
    for batch in 0..20 {
        // Batches of max - min = 5.
        assert_eq!(next(&mut rx).await, events(batch * 5..batch * 5 + 5));
    }
    let report = running.await.unwrap();
    assert_eq!(report.stage("Told").unwrap().status, StageStatus::Finished);
    assert_eq!(report.stage("Told").unwrap().events_out, 100);
    assert!(report.balanced(), "{report:?}");
    assert_eq!(rx.recv().await, None);
}

/// A graceful shutdown still delivers an info queued behind the buffer: the producer drains its
/// buffer before it ends.
#[tokio::test]
async fn a_graceful_shutdown_delivers_the_infos_behind_the_buffer() {
    let (running, told, log, mut rx) = told_to_log(true, 5).await;
    told.cast(Push((0..20).collect())).unwrap();
    told.info_after_buffered(forward("last", &log)).unwrap();
    assert_eq!(told.estimate_buffered_count().await.unwrap(), 20);
    let shutdown = tokio::spawn(running.shutdown());
    log.cast(AskMore(100)).unwrap();
    assert_eq!(next(&mut rx).await, events(0..20));
    assert_eq!(next(&mut rx).await, Seen::Note("last"));
    let report = shutdown.await.unwrap().unwrap();
    assert_eq!(report.stage("Told").unwrap().status, StageStatus::ShutDown);
    assert!(report.balanced(), "{report:?}");
    assert_eq!(rx.recv().await, None);
}

/// A stage that stops with an info behind its buffer: the info goes with it (never delivered), and
/// nothing waits on it.
#[tokio::test]
async fn an_info_behind_the_buffer_of_an_aborted_stage_goes_with_it() {
    let (running, told, log, mut rx) = told_to_log(true, 5).await;
    told.cast(Push(vec![1, 2])).unwrap();
    told.info_after_buffered(forward("never", &log)).unwrap();
    assert_eq!(told.estimate_buffered_count().await.unwrap(), 2);
    let report = running.abort().await.unwrap();
    assert_eq!(report.stage("Told").unwrap().status, StageStatus::Aborted);
    assert_eq!(rx.recv().await, None, "the info was not delivered");
    assert_eq!(
        told.info_after_buffered(forward("late", &log))
            .unwrap_err()
            .to_string(),
        "stage `Told` has ended"
    );
}
