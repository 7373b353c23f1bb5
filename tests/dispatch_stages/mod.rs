//! The stages the dispatcher tests share (`dispatchers.rs`, `probe14.rs` and others): a consumer
//! that keeps its batches, a broadcasting `from_iter`, a counter partitioned by a function, a
//! consumer that records the marks cast to it among its events, and what a counting producer
//! emits (`count_up`).
// Each test file uses a part of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use genstage::{Consumer, Dispatch, Emit, FromIter, Partition, Producer, Report, StageResult};
use tokio::sync::Semaphore;

pub type Batches = Arc<Mutex<Vec<Vec<u64>>>>;

pub fn flat(batches: &Batches) -> Vec<u64> {
    batches.lock().unwrap().concat()
}

/// `next, next + 1, …`, as many as `demand` asks for, up to (not including) `end`, with `next`
/// moved past them: the last batch is marked last. What a counting producer's `handle_demand`
/// returns.
pub fn count_up(next: &mut u64, end: u64, demand: usize) -> Emit<u64> {
    let stop = end.min(next.saturating_add(demand as u64));
    let events = (*next..stop).collect();
    *next = stop;
    if stop == end {
        Emit::last(events)
    } else {
        Emit::more(events)
    }
}

pub fn balanced(report: &Report) {
    let totals = report.totals();
    assert!(totals.balanced(), "{totals:?} in {report:#?}");
    assert_eq!(report.unbalanced_edges().count(), 0, "{report}");
}

/// Keeps every batch; fails (`Err`) on batch number `fail_at` (0-based), if any; waits for a
/// permit of `gate` before each batch, if any.
pub struct Collect {
    batches: Batches,
    fail_at: Option<usize>,
    gate: Option<Arc<Semaphore>>,
    seen: usize,
}

impl Collect {
    pub fn new() -> (Self, Batches) {
        let batches: Batches = Arc::default();
        (
            Collect {
                batches: batches.clone(),
                fail_at: None,
                gate: None,
                seen: 0,
            },
            batches,
        )
    }

    pub fn failing_at(batch: usize) -> (Self, Batches) {
        let (mut collect, batches) = Self::new();
        collect.fail_at = Some(batch);
        (collect, batches)
    }

    pub fn gated(gate: &Arc<Semaphore>) -> (Self, Batches) {
        let (mut collect, batches) = Self::new();
        collect.gate = Some(gate.clone());
        (collect, batches)
    }
}

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate closed").forget();
        }
        if self.fail_at == Some(self.seen) {
            return Err(format!("collect failed on batch {}", self.seen).into());
        }
        self.seen += 1;
        self.batches.lock().unwrap().push(events);
        Ok(())
    }
}

/// `from_iter(0..end)`, broadcasting.
pub struct Broadcast(pub FromIter<std::ops::Range<u64>>);

impl Producer for Broadcast {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.0.handle_demand(demand).await
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// `0..end`, partitioned by `route`.
pub struct Split {
    next: u64,
    end: u64,
    partitions: usize,
    route: fn(u64) -> Option<usize>,
}

impl Split {
    pub fn new(end: u64, partitions: usize, route: fn(u64) -> Option<usize>) -> Self {
        Split {
            next: 0,
            end,
            partitions,
            route,
        }
    }
}

impl Partition<u64> for Split {
    fn partition(&self, event: &u64) -> Option<usize> {
        (self.route)(*event)
    }
}

impl Producer for Split {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_up(&mut self.next, self.end, demand))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(self.partitions)
    }
}

/// Cast to a [`Marked`] consumer, which records it.
pub struct Mark;

/// Records its events and, as `u64::MAX`, the [`Mark`] cast to it, in the order it gets them;
/// fails on batch `fail_at`, if any.
pub struct Marked {
    log: Arc<Mutex<Vec<u64>>>,
    fail_at: Option<usize>,
    batches: usize,
}

impl Marked {
    pub fn new(fail_at: Option<usize>) -> (Self, Arc<Mutex<Vec<u64>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (
            Marked {
                log: log.clone(),
                fail_at,
                batches: 0,
            },
            log,
        )
    }
}

impl Consumer for Marked {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if self.fail_at == Some(self.batches) {
            return Err("marked failed".into());
        }
        self.batches += 1;
        self.log.lock().unwrap().extend(events);
        Ok(())
    }
}

impl genstage::HandleCast<Mark> for Marked {
    type Emitted = ();
    async fn handle_cast(
        &mut self,
        _: Mark,
        _: &mut genstage::Context<'_, Self>,
    ) -> StageResult<()> {
        self.log.lock().unwrap().push(u64::MAX);
        Ok(())
    }
}
