//! A producer of consecutive numbers that records every demand it is asked for, which the tests
//! of manual demand (`probe_asker.rs`, `batch_from.rs`) assert exactly.

use std::sync::{Arc, Mutex};

use genstage::{Emit, Producer, StageResult};

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
    // `batch_from.rs` starts its producers elsewhere.
    #[allow(dead_code)]
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
