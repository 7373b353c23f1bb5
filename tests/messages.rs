//! GenStage's scenarios for messages into running stages (genstage-semantics.md §4), rewritten for
//! typed references: a call's reply after its events are dispatched (63) or before them (64), and
//! `estimate_buffered_count` (31). The stages are written against the traits, without macros.

use std::sync::{Arc, Mutex};

use genstage::{
    Consumer, Context, Emit, HandleCall, HandleCast, Pipeline, Producer, ReplyTo, StageRef,
    StageResult, SubscribeOptions,
};
use tokio::sync::{oneshot, Semaphore};

/// What a [`Log`] consumer saw, in order: batches of events, and marks cast to it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Events(Vec<u64>),
    Mark,
}

/// Logs its batches and the marks it is cast; each batch waits for a gate permit, if gated.
struct Log {
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Option<Arc<Semaphore>>,
}

struct Mark;

impl Consumer for Log {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        self.seen.lock().unwrap().push(Seen::Events(events));
        Ok(())
    }
}

impl HandleCast<Mark> for Log {
    type Emitted = ();
    async fn handle_cast(&mut self, _: Mark, _: &mut Context<'_, Self>) -> StageResult<()> {
        self.seen.lock().unwrap().push(Seen::Mark);
        Ok(())
    }
}

/// Emits only what it is told to through calls and casts (GenStage's test `Counter` fed by call).
struct Told;

impl Producer for Told {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
}

/// Emit these, and reply after they are dispatched.
struct EmitThenReply(Vec<u64>);

impl HandleCall<EmitThenReply> for Told {
    type Reply = ();
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        EmitThenReply(events): EmitThenReply,
        reply: ReplyTo<()>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(());
        Ok(events)
    }
}

/// Reply at once, then wait for `go` before returning the events.
struct ReplyThenEmit(Vec<u64>, oneshot::Receiver<()>);

impl HandleCall<ReplyThenEmit> for Told {
    type Reply = ();
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        ReplyThenEmit(events, go): ReplyThenEmit,
        reply: ReplyTo<()>,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply_now(());
        go.await?;
        Ok(events)
    }
}

/// Emit these now.
struct Say(Vec<u64>);

impl HandleCast<Say> for Told {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Say(events): Say,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// A `Told` producer feeding a `Log` consumer, and what the consumer saw.
struct ToldToLog {
    pipeline: Pipeline,
    told: genstage::ProducerRef<Told>,
    log: genstage::ConsumerRef<Log>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn told_to_log(gate: Option<Arc<Semaphore>>, options: SubscribeOptions) -> ToldToLog {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut pipeline = Pipeline::new();
    let told = pipeline.add_producer(Told);
    let log = pipeline.add_consumer(Log {
        seen: seen.clone(),
        gate,
    });
    pipeline.subscribe_with(&told, &log, options);
    ToldToLog {
        pipeline,
        told,
        log,
        seen,
    }
}

/// Returns once the pipeline is wired: a message sent before `start()` has wired it reaches its
/// stage before the stage's subscriptions, and one sent after any answer comes after them.
async fn wired(told: &genstage::ProducerRef<Told>) {
    told.estimate_buffered_count().await.unwrap();
}

/// 63: `{:reply, reply, events, state}` dispatches the events before the reply is sent. The mark
/// is cast once the reply is in, so the consumer's mailbox holds the events before it.
#[tokio::test]
async fn scenario_63_a_reply_goes_after_the_events_the_call_emitted() {
    let ToldToLog {
        pipeline,
        told,
        log,
        seen,
    } = told_to_log(None, SubscribeOptions::new());
    let running = pipeline.start();
    wired(&told).await;

    told.call(EmitThenReply(vec![1, 2, 3])).await.unwrap();
    log.cast(Mark).unwrap();

    while seen.lock().unwrap().len() < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [Seen::Events(vec![1, 2, 3]), Seen::Mark]
    );
    running.shutdown().await.unwrap();
}

/// 64: `GenStage.reply/2` before `{:noreply, events, state}` answers before the events go out.
/// The producer holds its events until the mark has been cast, which it can only be once the reply
/// is in.
#[tokio::test]
async fn scenario_64_reply_now_goes_before_the_events_the_call_emits() {
    let ToldToLog {
        pipeline,
        told,
        log,
        seen,
    } = told_to_log(None, SubscribeOptions::new());
    let running = pipeline.start();
    wired(&told).await;

    let (go, wait) = oneshot::channel();
    told.call(ReplyThenEmit(vec![1, 2, 3], wait)).await.unwrap();
    log.cast(Mark).unwrap();
    go.send(()).unwrap();

    while seen.lock().unwrap().len() < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [Seen::Mark, Seen::Events(vec![1, 2, 3])]
    );
    running.shutdown().await.unwrap();
}

/// 31: `estimate_buffered_count` gives 5, then 8, then 0 once the events are consumed. Here the
/// consumer takes one event at a time (max_demand 1) and holds the first until the gate opens, so
/// the rest wait in the producer's buffer.
#[tokio::test]
async fn scenario_31_the_buffered_count_follows_the_buffer() {
    let gate = Arc::new(Semaphore::new(0));
    let options = SubscribeOptions::new().max_demand(1).min_demand(0);
    let ToldToLog {
        pipeline,
        told,
        seen,
        ..
    } = told_to_log(Some(gate.clone()), options);
    let running = pipeline.start();
    wired(&told).await;

    told.cast(Say(vec![1, 2, 3, 4, 5, 6])).unwrap();
    // One went to the consumer, which holds it.
    assert_eq!(told.estimate_buffered_count().await, Ok(5));
    told.cast(Say(vec![7, 8, 9])).unwrap();
    assert_eq!(told.estimate_buffered_count().await, Ok(8));

    gate.add_permits(9);
    while seen.lock().unwrap().len() < 9 {
        tokio::task::yield_now().await;
    }
    assert_eq!(told.estimate_buffered_count().await, Ok(0));
    let events: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|seen| match seen {
            Seen::Events(events) => events.clone(),
            Seen::Mark => Vec::new(),
        })
        .collect();
    assert_eq!(events, (1..=9).collect::<Vec<_>>());
    let report = running.shutdown().await.unwrap();
    assert_eq!(report.stage("Told").unwrap().emitted, 9);
    assert_eq!(report.stage("Log").unwrap().events_in, 9);
}
