//! The future [`Pipeline::run`](super::Pipeline::run) returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::PipelineError;
use crate::report::Report;

/// The run of a pipeline, returned by [`Pipeline::run`](crate::Pipeline::run): nothing starts until
/// it is `.await`ed (or polled), inside a tokio runtime with its time driver enabled.
///
/// A named type rather than an `async fn`'s anonymous future so that forgetting the `.await` is
/// reported with this type's message, once.
///
/// # Cancel safety
///
/// Dropping it aborts every stage of the pipeline.
#[must_use = "a pipeline does nothing until its `run()` future is `.await`ed"]
pub struct Run {
    future: Pin<Box<dyn Future<Output = Result<Report, PipelineError>> + Send>>,
}

impl Run {
    pub(super) fn new(
        future: impl Future<Output = Result<Report, PipelineError>> + Send + 'static,
    ) -> Self {
        Run {
            future: Box::pin(future),
        }
    }
}

impl Future for Run {
    type Output = Result<Report, PipelineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run").finish_non_exhaustive()
    }
}
