//! A consumer that hands each job to a task of its own and asks for another job only when a task
//! has finished one: manual demand, asked on through an `Asker` (GenStage's `from`, kept for
//! `ask/2`) by the tasks themselves.
//!
//! ```text
//! cargo run --example ask_when_done
//! ```
//!
//! The consumer's `handle_subscribe` takes control of the subscription's demand and keeps the
//! `Asker` that `ctx.asker` makes for it. The pipeline's first ask is `max_demand` (3) jobs, so
//! three tasks start; each asks for one more job as it finishes its own. So at most 3 jobs are in
//! work at once, however fast they come. It prints each job as it starts and ends, the most in
//! work at once, and the report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use tokio::task::JoinHandle;

/// Emits jobs `0..12` as asked.
struct Jobs {
    next: u64,
}

#[stage(producer)]
impl Jobs {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        let end = (self.next + demand as u64).min(12);
        let jobs: Vec<u64> = (self.next..end).collect();
        self.next = end;
        if end == 12 {
            Emit::last(jobs)
        } else {
            Emit::more(jobs)
        }
    }
}

/// Starts a task per job; each task asks for the next job when it is done.
struct Workers {
    asker: Option<Asker>,
    in_work: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

#[stage(consumer, max_demand = 3)]
impl Workers {
    fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand {
        // The pipeline has asked for the first `max_demand` jobs; the tasks ask for the rest.
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    fn handle_events(&mut self, jobs: Vec<u64>) {
        for job in jobs {
            let in_work = self.in_work.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(in_work, Ordering::SeqCst);
            println!("job {job:>2} starts ({in_work} in work)");
            let (asker, in_work) = (self.asker.clone(), Arc::clone(&self.in_work));
            let task = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 + 15 * (job % 3))).await;
                in_work.fetch_sub(1, Ordering::SeqCst);
                // Once the last jobs are out, the stage has ended: nothing more to ask for.
                let asked = asker.is_some_and(|asker| asker.ask(1).is_ok());
                println!(
                    "job {job:>2} done{}",
                    if asked { ", asks for one more" } else { "" }
                );
            });
            self.tasks.lock().expect("the task list").push(task);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), PipelineError> {
    let (most, tasks) = (Arc::new(AtomicUsize::new(0)), Arc::default());
    let workers = Workers {
        asker: None,
        in_work: Arc::default(),
        most: Arc::clone(&most),
        tasks: Arc::clone(&tasks),
    };
    let report = pipeline! { Jobs { next: 0 } -> workers }.run().await?;
    let tasks = std::mem::take(&mut *tasks.lock().expect("the task list"));
    for task in tasks {
        let _ = task.await;
    }
    println!(
        "at most {} jobs in work at once",
        most.load(Ordering::SeqCst)
    );
    println!("{report}");
    Ok(())
}
