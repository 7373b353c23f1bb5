//! A job queue fed by other tasks, after GenStage's QueueBroadcaster: producers outside the
//! pipeline `call` the queue to push a job, and the call is answered once a worker has asked for the
//! job (it goes out as `handle_demand` returns). So while the four workers are busy, pushes wait: back-pressure reaches the pushers, and
//! no job is held in an unbounded queue.
//!
//! ```text
//! cargo run --example queue
//! ```
//!
//! The queue's `handle_demand` emits what is waiting, up to the demand, and `handle_call` adds a job
//! and emits nothing: the runtime keeps the demand it did not meet and asks again after each call
//! (GenStage's pending-demand pattern, with the runtime keeping the count).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use genstage::prelude::*;

/// A job to do.
#[derive(Debug)]
struct Job {
    pusher: usize,
    n: usize,
}

/// Pushes a job; answered once the job has been handed to a worker.
struct Push(Job);

/// The queue: jobs waiting for a worker, each with the call to answer when it goes out.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Job, ReplyTo<()>)>,
}

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, demand: usize) -> Vec<Job> {
        let take = demand.min(self.waiting.len());
        self.waiting
            .drain(..take)
            .map(|(job, pushed)| {
                pushed.reply(());
                job
            })
            .collect()
    }

    fn handle_call(&mut self, push: Push, pushed: ReplyTo<()>) -> Vec<Job> {
        self.waiting.push_back((push.0, pushed));
        Vec::new()
    }
}

/// Does one job at a time, for 20 ms.
struct Worker {
    id: usize,
}

impl Worker {
    fn next() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Worker {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

#[stage(consumer, max_demand = 1, min_demand = 0)]
impl Worker {
    async fn handle_events(&mut self, jobs: Vec<Job>) {
        for job in jobs {
            tokio::time::sleep(Duration::from_millis(20)).await;
            println!(
                "worker {} did job {} of pusher {}",
                self.id, job.n, job.pusher
            );
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = pipeline! { queue = Queue::default() -> [Worker::next(); 4] };
    let queue = pipeline.queue.clone();
    let running = pipeline.start();

    // Three pushers of 8 jobs each; each push waits until a worker has taken its job.
    let started = Instant::now();
    let pushers: Vec<_> = (1..=3)
        .map(|pusher| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut longest = Duration::ZERO;
                for n in 1..=8 {
                    let pushed = Instant::now();
                    queue
                        .call_timeout(Push(Job { pusher, n }), Duration::from_secs(60))
                        .await?;
                    longest = longest.max(pushed.elapsed());
                }
                Ok::<_, CallError>(longest)
            })
        })
        .collect();
    for (pusher, waited) in pushers.into_iter().enumerate() {
        let longest = waited.await??;
        println!("pusher {}: its longest push waited {longest:?}", pusher + 1);
    }
    println!("all 24 jobs pushed after {:?}", started.elapsed());

    // Every job has gone out; the shutdown lets the workers finish them.
    let report = running.shutdown().await?;
    println!("{report}");
    assert_eq!(report.totals().handled, 24);
    Ok(())
}
