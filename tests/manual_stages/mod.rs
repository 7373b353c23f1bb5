//! The stages the tests of manual demand share (`asker.rs`, `probe_asker.rs`, `batch_from.rs`): a
//! producer of consecutive numbers that records every demand it is asked for, which the tests
//! assert exactly, and a consumer that asks through its `Asker` as it handles each batch and
//! fails once.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use genstage::{Asker, Consumer, Context, Demand, Emit, Producer, StageResult, Subscription};

/// Each demand a [`Numbers`] was asked for, in order.
pub type Demands = Arc<Mutex<Vec<usize>>>;

/// Emits `next..end` (or without end) as asked, exactly what it is asked for (saturating, so that
/// `usize::MAX` is fine), recording each demand.
pub struct Numbers {
    next: u64,
    end: Option<u64>,
    demands: Demands,
}

impl Numbers {
    /// `0..end`, or from 0 without end, and where it records its demands.
    pub fn new(end: Option<u64>) -> (Self, Demands) {
        let demands = Demands::default();
        (Numbers::recording(0, end, Arc::clone(&demands)), demands)
    }

    /// `start..end`, or from `start` without end, recording its demands in `demands`.
    pub fn recording(start: u64, end: Option<u64>, demands: Demands) -> Self {
        Numbers {
            next: start,
            end,
            demands,
        }
    }
}

impl Producer for Numbers {
    type Output = u64;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.demands.lock().unwrap().push(demand);
        let wanted = self.next.saturating_add(demand as u64);
        let stop = self.end.map_or(wanted, |end| end.min(wanted));
        // At most 10_000 events at once, so that a huge ask does not allocate them all.
        let stop = stop.min(self.next + 10_000);
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if Some(stop) == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
}

/// The batches a stage handled, in order.
pub type Batches = Arc<Mutex<Vec<Vec<u64>>>>;

/// A manual consumer that asks for as many events as each batch brought as it handles it, and
/// fails once, after asking, on event 4.
pub struct FailsOnce {
    pub asker: Option<Asker>,
    pub batches: Batches,
    pub failed: Arc<AtomicBool>,
}

impl Consumer for FailsOnce {
    type Input = u64;

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.asker = ctx.asker(subscription.tag()).ok();
        Demand::Manual
    }

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let asked = events.len();
        let fails = events.contains(&4) && !self.failed.swap(true, Ordering::SeqCst);
        self.batches.lock().unwrap().push(events);
        if let Some(asker) = &self.asker {
            asker.ask(asked)?;
        }
        if fails {
            return Err("event 4 fails once".into());
        }
        Ok(())
    }
}
