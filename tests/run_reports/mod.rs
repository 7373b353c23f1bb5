//! What tests read in a run's report, shared by the test files that `mod run_reports;` it: the run
//! guarded against hangs, the report of a run that failed, a stage's row, a loss by reason.

use std::future::Future;
use std::time::Duration;

use genstage::{LossReason, PipelineError, Report, StageReport};

/// Awaits a run; a run that has not ended within 60 s hangs. Not a timing assertion: the runs
/// take milliseconds.
pub async fn guard<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the pipeline hung (no end within 60 s)")
}

/// The report a run returned, or the one its error carries.
pub fn report_of(result: Result<Report, PipelineError>) -> (Report, Option<PipelineError>) {
    match result {
        Ok(report) => (report, None),
        Err(error) => {
            let report = error
                .report()
                .cloned()
                .unwrap_or_else(|| panic!("a run-time failure carries its report: {error}"));
            (report, Some(error))
        }
    }
}

/// The row of the stage `name`.
pub fn stage<'a>(report: &'a Report, name: &str) -> &'a StageReport {
    report
        .stage(name)
        .unwrap_or_else(|| panic!("no stage {name} in {report:?}"))
}

/// What `stage` lost for `reason`.
pub fn lost(stage: &StageReport, reason: LossReason) -> u64 {
    stage
        .losses
        .iter()
        .filter(|loss| loss.reason == reason)
        .map(|loss| loss.count)
        .sum()
}
