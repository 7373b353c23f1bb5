//! A `ConsumerSupervisor` job runner ported from GenStage (`genstage-semantics.md` §3, scenarios
//! 185–189): a counter producer feeds a supervisor whose children the test releases one by one,
//! some failing (an `Err` or a panic), and the test checks, after each, which children have
//! started, the supervisor's counts, and exactly what it has asked its producer for.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use genstage::prelude::*;
use genstage::{Loss, LossReason};
use tokio::sync::{watch, Semaphore};

/// Emits `next..` for each demand, up to `end`, and logs each demand.
struct Counter {
    next: u64,
    end: u64,
    demands: Arc<Mutex<Vec<usize>>>,
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Emit<u64> {
        self.demands.lock().unwrap().push(demand);
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

/// How a child's run ends.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Ok,
    Err,
    Panic,
}

/// A job per event: logs its start, waits for the test to release it, then ends as `plan` says
/// for that event and attempt (0 for the first run, 1 for the first restart, …).
struct Jobs {
    gates: Vec<Arc<Semaphore>>,
    plan: fn(u64, u32) -> Outcome,
    started: Arc<Mutex<Vec<u64>>>,
    attempts: Mutex<HashMap<u64, u32>>,
}

impl Child<u64> for Jobs {
    type Output = Result<(), String>;
    async fn run(&self, event: u64) -> Result<(), String> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let attempt = attempts.entry(event).or_insert(0);
            *attempt += 1;
            *attempt - 1
        };
        self.started.lock().unwrap().push(event);
        let gate = self.gates[event as usize].clone();
        gate.acquire().await.map_err(|e| e.to_string())?.forget();
        match (self.plan)(event, attempt) {
            Outcome::Ok => Ok(()),
            Outcome::Err => Err(format!("job {event} failed")),
            Outcome::Panic => panic!("job {event} panicked"),
        }
    }
}

/// The test's view of a running supervisor.
struct Harness {
    gates: Vec<Arc<Semaphore>>,
    started: Arc<Mutex<Vec<u64>>>,
    demands: Arc<Mutex<Vec<usize>>>,
    counts: watch::Receiver<ChildCounts>,
}

impl Harness {
    fn release(&self, event: u64) {
        self.gates[event as usize].add_permits(1);
    }

    /// The events whose children have started, sorted: children are tasks of their own, so
    /// those started together start in any order.
    fn started(&self) -> Vec<u64> {
        let mut started = self.started.lock().unwrap().clone();
        started.sort_unstable();
        started
    }

    fn demands(&self) -> Vec<usize> {
        self.demands.lock().unwrap().clone()
    }

    /// Waits until the counts are `(active, restarting, handled, failed, restarts)` and `started`
    /// children have started.
    async fn reach(&mut self, counts: (usize, usize, u64, u64, u64), started: usize) {
        let of = |c: &ChildCounts| (c.active, c.restarting, c.handled, c.failed, c.restarts);
        let wanted = counts;
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if of(&self.counts.borrow_and_update()) == wanted && self.started().len() == started
                {
                    return;
                }
                tokio::select! {
                    _ = self.counts.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "wanted {wanted:?} and {started} started, have {:?} and {:?}",
            of(&self.counts.borrow()),
            self.started()
        );
    }
}

/// A pipeline `Counter(0..end) -> ConsumerSupervisor(jobs)`, started.
fn start(
    end: u64,
    plan: fn(u64, u32) -> Outcome,
    supervisor: impl FnOnce(Jobs) -> ConsumerSupervisor<u64, Jobs>,
) -> (PipelineHandle, Harness) {
    let gates: Vec<_> = (0..end).map(|_| Arc::new(Semaphore::new(0))).collect();
    let started = Arc::new(Mutex::new(Vec::new()));
    let demands = Arc::new(Mutex::new(Vec::new()));
    let jobs = supervisor(Jobs {
        gates: gates.clone(),
        plan,
        started: started.clone(),
        attempts: Mutex::new(HashMap::new()),
    });
    let counts = jobs.watch_counts();
    let mut pipeline = Pipeline::new();
    let counter = pipeline.add_producer_named(
        "counter",
        Counter {
            next: 0,
            end,
            demands: demands.clone(),
        },
    );
    let jobs = pipeline.add_consumer_named("jobs", jobs);
    pipeline.subscribe(&counter, &jobs);
    let harness = Harness {
        gates,
        started,
        demands,
        counts,
    };
    (pipeline.start(), harness)
}

/// Scenario 188 with failures: max 3, min 2. Three children start; a child that fails (an `Err` or
/// a panic) frees its slot as one that succeeds does, and the supervisor asks for 2 only once two
/// slots are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_children_failing_free_their_slots_and_asks_come_in_pairs() {
    fn plan(event: u64, _: u32) -> Outcome {
        match event {
            0 => Outcome::Err,
            2 => Outcome::Panic,
            _ => Outcome::Ok,
        }
    }
    let (running, mut h) = start(8, plan, |jobs| {
        ConsumerSupervisor::new(jobs).max_demand(3).min_demand(2)
    });

    h.reach((3, 0, 0, 0, 0), 3).await;
    assert_eq!(h.started(), [0, 1, 2]);
    assert_eq!(h.demands(), [3]);

    // 0 fails: one slot free, below min 2, no ask.
    h.release(0);
    h.reach((2, 0, 0, 1, 0), 3).await;
    assert_eq!(h.demands(), [3]);
    // 1 succeeds: two free, ask 2: 3 and 4 start.
    h.release(1);
    h.reach((3, 0, 1, 1, 0), 5).await;
    assert_eq!(h.demands(), [3, 2]);
    assert_eq!(h.started(), [0, 1, 2, 3, 4]);
    // 2 panics: one free, no ask.
    h.release(2);
    h.reach((2, 0, 1, 2, 0), 5).await;
    assert_eq!(h.demands(), [3, 2]);
    // 3 succeeds: ask 2: 5 and 6 start.
    h.release(3);
    h.reach((3, 0, 2, 2, 0), 7).await;
    assert_eq!(h.demands(), [3, 2, 2]);
    h.release(4);
    h.reach((2, 0, 3, 2, 0), 7).await;
    h.release(5);
    // Ask 2: the counter has only 7 left, and ends.
    h.reach((2, 0, 4, 2, 0), 8).await;
    assert_eq!(h.demands(), [3, 2, 2, 2]);
    h.release(6);
    h.release(7);

    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the pipeline ends")
        .unwrap();
    assert_eq!(h.started(), (0..8).collect::<Vec<_>>());
    assert_eq!(h.demands(), [3, 2, 2, 2]);
    let jobs = report.stage("jobs").unwrap();
    assert_eq!(jobs.events_in, 6);
    assert_eq!(jobs.lost, 2);
    assert_eq!(
        jobs.losses,
        [Loss {
            count: 2,
            reason: LossReason::ChildFailed
        }]
    );
    assert!(report.balanced(), "{report}");
}

/// Scenarios 185 and 186 with transient children: max 1, min 0, one child at a time; a failing
/// child restarts with its event and keeps its slot (no ask while it restarts), and the next
/// event starts only once it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_transient_child_keeps_its_slot() {
    fn plan(event: u64, attempt: u32) -> Outcome {
        match (event, attempt) {
            (1, 0) => Outcome::Err,
            (1, 1) => Outcome::Panic,
            _ => Outcome::Ok,
        }
    }
    let (running, mut h) = start(3, plan, |jobs| {
        ConsumerSupervisor::new(jobs)
            .max_demand(1)
            .min_demand(0)
            .transient()
    });

    h.reach((1, 0, 0, 0, 0), 1).await;
    h.release(0);
    h.reach((1, 0, 1, 0, 0), 2).await;
    assert_eq!(h.demands(), [1, 1]);
    // 1 fails twice: restarted each time, nothing asked.
    h.release(1);
    h.reach((1, 0, 1, 0, 1), 3).await;
    h.release(1);
    h.reach((1, 0, 1, 0, 2), 4).await;
    assert_eq!(h.started(), [0, 1, 1, 1]);
    assert_eq!(h.demands(), [1, 1]);
    h.release(1);
    h.reach((1, 0, 2, 0, 2), 5).await;
    assert_eq!(h.demands(), [1, 1, 1]);
    h.release(2);

    let report = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the pipeline ends")
        .unwrap();
    assert_eq!(h.started(), [0, 1, 1, 1, 2]);
    let jobs = report.stage("jobs").unwrap();
    assert_eq!(jobs.events_in, 3);
    assert_eq!(jobs.lost, 0);
    assert!(report.balanced(), "{report}");
}

/// More failures than `max_restarts` within the window: the supervisor fails, naming the
/// intensity, its running children are aborted and their events reported lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_intensity_fails_the_supervisor_and_accounts_for_its_children() {
    fn plan(event: u64, _: u32) -> Outcome {
        if event == 0 {
            Outcome::Err
        } else {
            Outcome::Ok
        }
    }
    let (running, mut h) = start(10, plan, |jobs| {
        ConsumerSupervisor::new(jobs)
            .max_demand(2)
            .min_demand(0)
            .transient()
            .max_restarts(1)
    });
    h.reach((2, 0, 0, 0, 0), 2).await;
    h.release(0);
    h.reach((2, 0, 0, 0, 1), 3).await;
    h.release(0);

    let error = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the pipeline ends")
        .unwrap_err();
    assert!(
        error.to_string().contains("restart intensity reached"),
        "{error}"
    );
    let report = error.report().unwrap();
    let jobs = report.stage("jobs").unwrap();
    // Event 0 lost for good, event 1 aborted while running.
    assert_eq!(jobs.events_in, 0);
    assert_eq!(jobs.lost, 2);
    assert_eq!(h.started(), [0, 0, 1]);
    assert!(report.balanced(), "{report}");
}

/// Pushes a job; answered once a child slot has taken it.
struct Push(u64);

/// GenStage's QueueBroadcaster in front of the supervisor: jobs wait, with their callers, until
/// the supervisor asks for them.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<(u64, ReplyTo<()>)>,
}

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let take = demand.min(self.waiting.len());
        self.waiting
            .drain(..take)
            .map(|(job, caller)| {
                caller.reply(());
                job
            })
            .collect()
    }

    fn handle_call(&mut self, push: Push, caller: ReplyTo<()>) -> Vec<u64> {
        self.waiting.push_back((push.0, caller));
        Vec::new()
    }
}

/// A queue producer feeding a supervisor of at most 2 children: pushes return while a slot is
/// free, the third waits until a child ends (its failure frees the slot too), and the queue hands
/// out no job the supervisor did not ask for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_producer_holds_pushes_until_a_child_slot_frees() {
    fn plan(event: u64, _: u32) -> Outcome {
        if event == 0 {
            Outcome::Err
        } else {
            Outcome::Ok
        }
    }
    let gates: Vec<_> = (0..4).map(|_| Arc::new(Semaphore::new(0))).collect();
    let started = Arc::new(Mutex::new(Vec::new()));
    let jobs = ConsumerSupervisor::new(Jobs {
        gates: gates.clone(),
        plan,
        started: started.clone(),
        attempts: Mutex::new(HashMap::new()),
    })
    .max_demand(2)
    .min_demand(0);
    let mut h = Harness {
        gates,
        started,
        demands: Arc::default(),
        counts: jobs.watch_counts(),
    };
    let p = pipeline! { queue = Queue::default() -> jobs = jobs };
    let queue = p.queue.clone();
    let running = p.start();

    queue.call(Push(0)).await.unwrap();
    queue.call(Push(1)).await.unwrap();
    h.reach((2, 0, 0, 0, 0), 2).await;
    let mut third = queue.call(Push(2)).boxed();
    assert!((&mut third).now_or_never().is_none());
    let mut fourth = queue.call(Push(3)).boxed();
    assert!((&mut fourth).now_or_never().is_none());
    // Both pushes taken in, neither handed out: the two slots are taken.
    assert_eq!(queue.estimate_buffered_count().await.unwrap(), 0);
    assert!((&mut third).now_or_never().is_none());
    assert_eq!(h.started(), [0, 1]);

    // Job 0 fails: its slot goes to job 2, and job 3 still waits.
    h.release(0);
    third.await.unwrap();
    h.reach((2, 0, 0, 1, 0), 3).await;
    assert!((&mut fourth).now_or_never().is_none());
    h.release(1);
    fourth.await.unwrap();
    h.reach((2, 0, 1, 1, 0), 4).await;
    h.release(2);
    h.release(3);
    h.reach((0, 0, 3, 1, 0), 4).await;

    let report = running.shutdown().await.unwrap();
    let jobs = report.stage("jobs").unwrap();
    assert_eq!(jobs.events_in, 3);
    assert_eq!(jobs.lost, 1);
    assert!(report.balanced(), "{report}");
}
