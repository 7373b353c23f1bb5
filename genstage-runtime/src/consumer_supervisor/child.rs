//! What a [`ConsumerSupervisor`](super::ConsumerSupervisor) runs for each event: a [`Child`], and
//! the task that runs it, catching its panic and reporting how it ended.

use std::fmt::Display;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

use super::accounting::ChildExit;
use crate::run::panic_message;

/// The work a [`ConsumerSupervisor`](super::ConsumerSupervisor) starts for each event: GenStage's
/// child template, whose `start_link` gets the event appended to its arguments.
///
/// Implemented by every `Fn(T) -> impl Future` (an `async fn`, or a closure returning an `async`
/// block) whose future is `Send + 'static` and ends with `()` or `Result<(), E>` where `E:
/// Display`; and by any type that implements it, with an `async fn run(&self, event: T)`. One
/// value serves every child: it is shared (behind an `Arc`) by their tasks.
///
/// # Examples
///
/// ```
/// use genstage::Child;
///
/// /// Fetches a URL; holds what every fetch needs.
/// struct Fetch { base: String }
///
/// impl Child<String> for Fetch {
///     type Output = Result<(), String>;
///     async fn run(&self, path: String) -> Result<(), String> {
///         let url = format!("{}/{path}", self.base);
///         if url.is_empty() { Err("no url".into()) } else { Ok(()) }
///     }
/// }
/// ```
pub trait Child<T>: Send + Sync + 'static {
    /// What a run returns: `()`, or `Result<(), E>` (an `Err` is a failure).
    type Output: ChildOutput;

    /// Handles one event. A failure (an `Err`, or a panic) makes the child `transient`'s restart
    /// run it again with the same event, or loses the event if it is `temporary`.
    ///
    /// # Cancel safety
    ///
    /// The future is dropped where it stands when the supervisor is aborted, or stops because it
    /// failed (its restart intensity, or a subscription of its refused by a producer's dispatcher)
    /// or a producer failed: its event is then reported lost.
    fn run(&self, event: T) -> impl Future<Output = Self::Output> + Send;
}

impl<T, F, Fut> Child<T> for F
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
    Fut::Output: ChildOutput,
{
    type Output = Fut::Output;

    fn run(&self, event: T) -> impl Future<Output = Self::Output> + Send {
        self(event)
    }
}

/// What a [`Child`]'s run may return: `()` (it cannot fail, short of panicking) or
/// `Result<(), E>` with an error that can be displayed (`String`, `std::io::Error`,
/// `anyhow::Error`, …), which the supervisor logs and reports.
pub trait ChildOutput: Send + 'static {
    /// `Ok`, or the failure's message.
    #[doc(hidden)]
    fn into_failure(self) -> Result<(), String>;
}

impl ChildOutput for () {
    fn into_failure(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display + Send + 'static> ChildOutput for Result<(), E> {
    fn into_failure(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// Runs `child` to its end, catching a panic in it: how it ended.
pub(crate) async fn run_child<O: ChildOutput>(child: impl Future<Output = O>) -> ChildExit {
    let mut child = pin!(child);
    let ended = std::future::poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| child.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    })
    .await;
    match ended.map(ChildOutput::into_failure) {
        Ok(Ok(())) => ChildExit::Succeeded,
        Ok(Err(error)) => ChildExit::Failed(error),
        Err(panic) => ChildExit::Failed(format!("panicked: {panic}")),
    }
}
