// A call of a message the stage does not answer, through the field `pipeline!` gives a named stage.
use genstage::prelude::*;
use genstage::{Context, HandleCall, ProducerRef, ReplyTo, StageRef};

/// Answers `Push` and `Waiting`, and nothing else.
#[derive(Default)]
struct Queue;

struct Push(u64);
struct Waiting;
struct Foo;

impl Producer for Queue {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
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
        reply.reply(());
        Ok(vec![job])
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
        reply.reply(0);
        Ok(Vec::new())
    }
}

struct Worker;

impl Consumer for Worker {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

impl Stage for Worker {
    type Ref = genstage::ConsumerRef<Self>;
    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        pipeline.add_consumer_as(name, self)
    }
}

async fn push() -> Result<(), genstage::CallError> {
    let p = pipeline! { queue = Queue::default() -> [Worker; 4] };
    let queue = p.queue.clone();
    let _running = p.start();
    queue.call(Push(1)).await?;
    queue.call(Foo).await?;
    Ok(())
}

fn main() {
    let _ = push();
}
