//! What the benchmarks share: the runtime they run on, and how a run is measured and summed up.

use std::time::Duration;

use tokio::runtime::Runtime;

/// tokio's multi-thread runtime with 2 worker threads, as every benchmark runs on.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
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
