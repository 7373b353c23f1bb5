//! Faults injected into stages by the tests that `mod faults;` it: which events fail a stage, how
//! many times each, and how the failure shows (an error returned, or a panic); and a count that a
//! stage's values share, so that a value rebuilt by a restart goes on where the failed one was.

// Each test file uses what it needs of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use genstage::{Emit, StageResult};

/// How a fault shows: an error returned, or a panic.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Error,
    Panic,
}

/// Which events fail their stage, and how many more times each does (`u32::MAX`: always).
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<HashMap<u64, u32>>>);

impl Faults {
    pub fn on(events: &[(u64, u32)]) -> Self {
        Faults(Arc::new(Mutex::new(events.iter().copied().collect())))
    }

    /// Whether `event` fails now (and one time fewer from now on).
    pub fn strikes(&self, event: u64) -> bool {
        let mut faults = self.0.lock().unwrap();
        match faults.get_mut(&event) {
            Some(left) if *left > 0 => {
                if *left != u32::MAX {
                    *left -= 1;
                }
                true
            }
            _ => false,
        }
    }
}

pub fn fail(fault: Fault, stage: &str, event: u64) -> StageResult<()> {
    match fault {
        Fault::Error => Err(format!("{stage} failed on {event}").into()),
        Fault::Panic => panic!("{stage} panicked on {event}"),
    }
}

/// The next `demand` numbers of the count `next` (shared by a stage's values) below `end`; the
/// last ones end the producer.
pub fn count_on(next: &AtomicU64, demand: usize, end: u64) -> Emit<u64> {
    let start = next.load(Ordering::Relaxed);
    let stop = (start + demand as u64).min(end);
    next.store(stop, Ordering::Relaxed);
    let events = (start..stop).collect();
    if stop == end {
        Emit::last(events)
    } else {
        Emit::more(events)
    }
}
