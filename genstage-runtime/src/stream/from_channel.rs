//! A producer fed through a bounded channel: the entry through which other tasks push events into
//! a running pipeline, with back-pressure.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::from_stream::{from_stream, FromStream};

/// A producer fed by other tasks, and the sender that feeds it: a bounded
/// [`tokio::sync::mpsc`] channel of `capacity` events (at least 1: 0 means 1) whose receiving end
/// is a [`from_stream`] producer.
///
/// The producer takes events from the channel only as its consumers ask for them, so when the
/// pipeline is busy the channel fills up and `send(event).await` waits: back-pressure reaches
/// whoever feeds the pipeline. The producer ends, once it has delivered everything, when every
/// sender has been dropped; a graceful shutdown ends it too, and then `send` fails (the events
/// still in the channel were never emitted, and are given back by nobody: stop the senders first
/// when they matter).
///
/// # Examples
///
/// ```
/// use genstage_runtime::{from_channel, Consumer, Pipeline, StageResult};
///
/// struct Print;
/// impl Consumer for Print {
///     type Input = String;
///     async fn handle_events(&mut self, events: Vec<String>) -> StageResult<()> {
///         for event in events { println!("{event}"); }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (jobs, source) = from_channel::<String>(8);
/// let mut pipeline = Pipeline::new();
/// let source = pipeline.add_producer(source);
/// let print = pipeline.add_consumer(Print);
/// pipeline.subscribe(&source, &print);
/// let running = pipeline.start();
/// // Any task may feed it.
/// tokio::spawn(async move {
///     for n in 0..3 {
///         jobs.send(format!("job {n}")).await.expect("the pipeline runs");
///     }
///     // Dropping the last sender ends the producer, and so the pipeline.
/// });
/// let report = running.await?;
/// assert_eq!(report.stage("Print").unwrap().events_in, 3);
/// # Ok(()) }
/// ```
pub fn from_channel<T: Send + 'static>(
    capacity: usize,
) -> (mpsc::Sender<T>, FromStream<ChannelStream<T>>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (sender, from_stream(ChannelStream(receiver)))
}

/// The receiving end of [`from_channel`]'s channel, as a stream.
#[derive(Debug)]
pub struct ChannelStream<T>(mpsc::Receiver<T>);

impl<T> futures_core::Stream for ChannelStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
