use genstage::prelude::*;

/// A GenStage port answering two requests with two `handle_call` clauses.
struct Queue {
    jobs: Vec<u64>,
}

struct Push(u64);
struct Len;

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let keep = self.jobs.len().saturating_sub(demand);
        self.jobs.split_off(keep)
    }

    fn handle_call(&mut self, push: Push, reply: ReplyTo<()>) {
        self.jobs.push(push.0);
        reply.reply(());
    }

    fn handle_call(&mut self, _len: Len, reply: ReplyTo<usize>) {
        reply.reply(self.jobs.len());
    }
}

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

#[tokio::main]
async fn main() {
    let mut pipeline = Pipeline::new();
    let queue = pipeline.add_producer(Queue { jobs: Vec::new() });
    let printer = pipeline.add_consumer(Printer);
    pipeline.subscribe(&queue, &printer);
    let _running = pipeline.start();
    let _ = queue.call(Push(1)).await;
    // The second definition's request is not reported again where it is sent.
    let _: Result<usize, CallError> = queue.call(Len).await;
}
