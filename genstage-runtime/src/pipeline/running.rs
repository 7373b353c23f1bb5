//! A pipeline running in the background: [`Pipeline::start`] and its [`PipelineHandle`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::PipelineError;
use crate::report::Report;

use super::supervise::Request;
use super::Pipeline;

impl Pipeline {
    /// Starts the pipeline in the background, as a tokio task, and returns its handle: await the
    /// handle for the report, or end the pipeline with [`PipelineHandle::shutdown`] (gracefully),
    /// [`PipelineHandle::shutdown_within`] (gracefully, with a time limit) or
    /// [`PipelineHandle::abort`].
    ///
    /// Must be called within a tokio runtime with its time driver enabled; elsewhere the handle
    /// resolves to [`PipelineError::NoRuntime`]. The stage references taken while building reach
    /// the running stages ([`StageRef`](crate::StageRef)).
    ///
    /// # Examples
    ///
    /// A pipeline that runs until it is shut down, as a service does on Ctrl-C:
    ///
    /// ```
    /// use genstage_runtime::{from_iter, Consumer, Pipeline, StageResult, StageStatus};
    ///
    /// struct Sink;
    /// impl Consumer for Sink {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> { Ok(()) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage_runtime::PipelineError> {
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer(from_iter(0u64..)); // endless
    /// let sink = pipeline.add_consumer(Sink);
    /// pipeline.subscribe(&numbers, &sink);
    /// let running = pipeline.start();
    /// tokio::task::yield_now().await; // (a service would await Ctrl-C here)
    /// let report = running.shutdown().await?;
    /// assert_eq!(report.stage("from_iter").unwrap().status, StageStatus::ShutDown);
    /// assert!(report.totals().balanced()); // every event emitted was handled
    /// # Ok(()) }
    /// ```
    pub fn start(self) -> PipelineHandle {
        if tokio::runtime::Handle::try_current().is_err() {
            return PipelineHandle {
                state: State::Ended(Some(Err(PipelineError::NoRuntime))),
                requests: None,
            };
        }
        let (requests, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(self.run_to_end(Some(receiver)));
        PipelineHandle {
            state: State::Running(task),
            requests: Some(requests),
        }
    }
}

/// A running pipeline, returned by [`Pipeline::start`].
///
/// Awaiting it waits for the pipeline to end by itself and gives its report, as
/// [`Pipeline::run`] does. It may also be awaited by `&mut` (in a `tokio::select!`), and then still
/// shut down. Dropping it leaves the pipeline running, detached, as dropping a tokio `JoinHandle`
/// does.
///
/// # Shutting down
/// A graceful [`shutdown`](Self::shutdown) stops the producers (a producer's `handle_demand` is not
/// called again, and one that is waiting in it is dropped at its `.await`, see
/// [`Producer::handle_demand`](crate::Producer::handle_demand)), delivers every event already
/// emitted, buffered ones included, lets every stage downstream handle them and end, and runs each
/// stage's `terminate`. Producers end with [`StageStatus::ShutDown`](crate::StageStatus::ShutDown),
/// the stages after them as when their input ends. Nothing already emitted is lost.
pub struct PipelineHandle {
    state: State,
    /// `None` once the pipeline has been asked to end, or when it never started.
    requests: Option<mpsc::UnboundedSender<Request>>,
}

enum State {
    Running(JoinHandle<Result<Report, PipelineError>>),
    /// Ended before it started (`Some`), or its result has been taken.
    Ended(Option<Result<Report, PipelineError>>),
}

impl PipelineHandle {
    /// Whether the pipeline has ended (its result is ready).
    pub fn is_finished(&self) -> bool {
        match &self.state {
            State::Running(task) => task.is_finished(),
            State::Ended(_) => true,
        }
    }

    /// Shuts the pipeline down gracefully (see the type's docs) and returns its report.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::run`]: the first stage that failed, with the report.
    ///
    /// # Cancel safety
    ///
    /// The shutdown is asked for when `shutdown` is called, not when the future is first polled:
    /// dropping the future, polled or not, leaves the shutdown going, detached.
    pub fn shutdown(self) -> impl Future<Output = Result<Report, PipelineError>> + Send {
        self.request(Request::Shutdown { deadline: None })
    }

    /// Shuts the pipeline down gracefully, but aborts the stages still busy after `timeout`.
    ///
    /// # Errors
    ///
    /// [`PipelineError::ShutdownTimeout`] naming the stages that were still busy, with the report
    /// (what they held is counted as lost); otherwise as [`shutdown`](Self::shutdown).
    ///
    /// # Cancel safety
    ///
    /// As [`shutdown`](Self::shutdown): the shutdown, and its time limit (counted from the call),
    /// go on if the future is dropped.
    pub fn shutdown_within(
        self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Report, PipelineError>> + Send {
        // A limit too far to count (`Duration::MAX`) is no limit.
        let deadline = Instant::now().checked_add(timeout);
        self.request(Request::Shutdown { deadline })
    }

    /// Stops every stage where it stands and returns the report: what the stages held (a batch in a
    /// callback, their mailboxes, their buffers) is counted as lost, and their status is
    /// [`StageStatus::Aborted`](crate::StageStatus::Aborted). `terminate` is not called.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::run`], when a stage had failed before.
    ///
    /// # Cancel safety
    ///
    /// As [`shutdown`](Self::shutdown): the abort is asked for when `abort` is called, and goes on
    /// if the future is dropped.
    pub fn abort(self) -> impl Future<Output = Result<Report, PipelineError>> + Send {
        self.request(Request::Abort)
    }

    /// Sends `request` now, and gives back the handle to await the pipeline's result.
    fn request(mut self, request: Request) -> Self {
        if let Some(requests) = self.requests.take() {
            // The pipeline may have ended already: its result is what awaiting gives.
            let _ = requests.send(request);
        }
        self
    }
}

impl Future for PipelineHandle {
    type Output = Result<Report, PipelineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match &mut self.state {
            State::Running(task) => match Pin::new(task).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(result)) => result,
                Poll::Ready(Err(error)) => Err(PipelineError::Internal {
                    message: if error.is_cancelled() {
                        "the pipeline's task was cancelled (its runtime shut down)".to_owned()
                    } else {
                        format!(
                            "the pipeline's task panicked: {}",
                            crate::run::panic_message(&*error.into_panic())
                        )
                    },
                }),
            },
            State::Ended(result) => result.take().unwrap_or(Err(PipelineError::Internal {
                message: "the pipeline's result was already taken".to_owned(),
            })),
        };
        self.state = State::Ended(None);
        Poll::Ready(result)
    }
}

impl fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
