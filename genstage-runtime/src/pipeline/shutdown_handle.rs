//! Ending a running pipeline from anywhere: [`ShutdownHandle`].

use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::PipelineError;

use super::supervise::{send_request, Request};
use super::PipelineHandle;

/// Ends a running pipeline from another task (a signal handler, an admin endpoint, a health
/// check) while its [`PipelineHandle`] is awaited for the report: made by
/// [`PipelineHandle::shutdown_handle`], and cloned freely (as tokio's `AbortHandle` is taken from a
/// `JoinHandle`).
///
/// Its methods only ask: the report is what awaiting the [`PipelineHandle`] gives. Asking again is
/// harmless. A second graceful shutdown may only bring its time limit closer, and an abort stops
/// a graceful shutdown under way where it stands (Ctrl-C pressed twice).
///
/// # Examples
///
/// ```
/// use genstage::{from_iter, Consumer, Pipeline, StageResult, StageStatus};
///
/// struct Sink;
/// impl Consumer for Sink {
///     type Input = u64;
///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), genstage::PipelineError> {
/// let mut pipeline = Pipeline::new();
/// let numbers = pipeline.add_producer(from_iter(0u64..)); // endless
/// let sink = pipeline.add_consumer(Sink);
/// pipeline.subscribe(&numbers, &sink);
/// let running = pipeline.start();
/// let shutdown = running.shutdown_handle();
/// // Another task decides when the service stops (here at once; a service would await a signal).
/// tokio::spawn(async move { shutdown.shutdown() });
/// let report = running.await?;
/// assert_eq!(report.stage("from_iter").unwrap().status, StageStatus::ShutDown);
/// assert!(report.totals().balanced());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ShutdownHandle {
    /// `None` when the pipeline never started, or its handle had already asked it to end.
    requests: Option<mpsc::UnboundedSender<Request>>,
}

impl ShutdownHandle {
    pub(super) fn of(handle: &PipelineHandle) -> Self {
        ShutdownHandle {
            requests: handle.requests().cloned(),
        }
    }

    /// Asks the pipeline to shut down gracefully, as [`PipelineHandle::shutdown`] does: the
    /// producers stop, and every event already emitted is handled.
    ///
    /// # Errors
    ///
    /// [`PipelineError::NotRunning`] when the pipeline has ended, never started, or its
    /// [`PipelineHandle`] had already asked it to end before this handle was made.
    pub fn shutdown(&self) -> Result<(), PipelineError> {
        send_request(self.requests.as_ref(), Request::Shutdown { deadline: None })
    }

    /// Asks the pipeline to shut down gracefully, aborting the stages still busy after `timeout`
    /// (counted from this call), as [`PipelineHandle::shutdown_within`] does.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Self::shutdown).
    pub fn shutdown_within(&self, timeout: Duration) -> Result<(), PipelineError> {
        send_request(self.requests.as_ref(), Request::shutdown_within(timeout))
    }

    /// Asks the pipeline to stop every stage where it stands, as [`PipelineHandle::abort`] does.
    ///
    /// # Errors
    ///
    /// As [`shutdown`](Self::shutdown).
    pub fn abort(&self) -> Result<(), PipelineError> {
        send_request(self.requests.as_ref(), Request::Abort)
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field(
                "running",
                &self.requests.as_ref().is_some_and(|r| !r.is_closed()),
            )
            .finish()
    }
}
