//! What the benchmarks share: the runtime they run on, how a run is measured and summed up, and the
//! consumer that sums what it receives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use genstage::{Consumer, StageResult, StageStatus};

use tokio::runtime::Runtime;

/// tokio's multi-thread runtime with 2 worker threads, as every benchmark runs on.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// How quickly two threads can pass a cache line between them now: the round trip of one between
/// two threads spinning on it, printed as `placement crosscore_roundtrip_ns=<ns>`. On a virtual
/// machine it changes with where the host places the virtual cores, for seconds to minutes at a
/// time, and the benchmarks whose tasks talk most across cores move with it (see `dispatch.rs`); it
/// is also far higher while other processes keep the cores busy. A line printed before and after
/// the runs tells in which conditions they ran.
pub fn print_placement() {
    const TRIPS: u64 = 100_000;
    let flag = Arc::new(AtomicU64::new(0));
    let echo = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            for trip in 0..TRIPS {
                while flag.load(Ordering::Acquire) != 2 * trip + 1 {
                    std::hint::spin_loop();
                }
                flag.store(2 * trip + 2, Ordering::Release);
            }
        })
    };
    let start = std::time::Instant::now();
    for trip in 0..TRIPS {
        flag.store(2 * trip + 1, Ordering::Release);
        while flag.load(Ordering::Acquire) != 2 * trip + 2 {
            std::hint::spin_loop();
        }
    }
    let round_trip = start.elapsed().as_nanos() / u128::from(TRIPS);
    echo.join().expect("the echoing thread");
    println!("placement crosscore_roundtrip_ns={round_trip}");
}

/// Runs `f`, checks the sum it computed, and returns its `events` per second.
pub fn measure(events: u64, expected: u64, what: &str, f: impl FnOnce() -> (Duration, u64)) -> f64 {
    let (elapsed, result) = f();
    assert_eq!(result, expected, "{what} computed a wrong sum");
    events as f64 / elapsed.as_secs_f64()
}

/// The median of `values`.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// How a run's line starts: run 0 is the warm-up, not counted.
pub fn label(run: usize) -> String {
    if run == 0 {
        "warm-up".to_owned()
    } else {
        format!("run {run}")
    }
}

/// Sums what it receives, as the baselines' tasks do, and adds its sum to a shared total when it
/// ends (as a baseline's task returns its sum): adding each batch to the shared total would make
/// the consumers of a fan-out contend for one cache line, a cost of the benchmark, not of genstage.
// `heavy.rs` sums its own way, churning each event.
#[allow(dead_code)]
pub struct Sum {
    total: Arc<AtomicU64>,
    sum: u64,
}

#[allow(dead_code)]
impl Sum {
    /// A consumer that adds what it receives to `total` when it ends.
    pub fn new(total: &Arc<AtomicU64>) -> Self {
        Sum {
            total: total.clone(),
            sum: 0,
        }
    }
}

impl Consumer for Sum {
    type Input = u64;

    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.sum += events.iter().sum::<u64>();
        Ok(())
    }

    async fn terminate(&mut self, _status: &StageStatus) {
        self.total.fetch_add(self.sum, Ordering::Relaxed);
    }
}
