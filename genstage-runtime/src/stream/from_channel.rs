//! A producer fed through a bounded channel: the entry through which other tasks push events into
//! a running pipeline, with back-pressure.

use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::options::ProducerOptions;
use crate::pipeline::{Pipeline, ProducerRef, Stage};
use crate::stage::{Emit, Producer, StageResult};

/// How long a producer that stopped early waits for a sender to fill a place it holds in the
/// channel (see [`from_channel`]).
const PLACE_HELD: Duration = Duration::from_millis(100);

/// A producer fed by other tasks, and the sender that feeds it: a bounded
/// [`tokio::sync::mpsc`] channel of `capacity` events (at least 1: 0 means 1).
///
/// The producer takes events from the channel only as its consumers ask for them, so when the
/// pipeline is busy the channel fills up and `send(event).await` waits: back-pressure reaches
/// whoever feeds the pipeline. The producer ends, once it has delivered everything, when every
/// sender has been dropped.
///
/// An event that `send` accepted is never dropped unaccounted for:
/// - a graceful shutdown closes the channel, so that `send` fails from then on (giving its event
///   back), and delivers the events already in it before the producer ends (a sender holding a
///   permit from `reserve` may still send through it: the shutdown waits for the permit to be used
///   or dropped, and [`shutdown_within`](crate::PipelineHandle::shutdown_within) bounds the wait);
/// - if the producer stops before it has emitted them (the pipeline is aborted, a shutdown's
///   timeout passes, its consumers all leave), the events left in the channel are counted as
///   emitted and lost, with [`LossReason::NotEmitted`](crate::LossReason::NotEmitted), and so is
///   the event of a `send` completing on another thread at that moment. A permit from `reserve`
///   held then is waited for 100 ms: an event sent through it later goes into a channel that
///   nobody reads any more, and is not counted.
///
/// # Examples
///
/// ```
/// use genstage::{from_channel, Consumer, Pipeline, StageResult};
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
/// assert_eq!(report.stage("from_channel").unwrap().emitted, 3);
/// # Ok(()) }
/// ```
pub fn from_channel<T: Send + 'static>(capacity: usize) -> (mpsc::Sender<T>, FromChannel<T>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let producer = FromChannel {
        receiver,
        options: ProducerOptions::for_producer(),
    };
    (sender, producer)
}

/// The producer of [`from_channel`]: it emits what the channel's senders send, in order. Unnamed,
/// it is `from_channel` in a pipeline's report.
pub struct FromChannel<T> {
    receiver: mpsc::Receiver<T>,
    options: ProducerOptions,
}

impl<T> FromChannel<T> {
    /// The same producer with other buffer settings.
    ///
    /// ```
    /// use genstage::{from_channel, ProducerOptions};
    /// let (_jobs, producer) = from_channel::<u64>(8);
    /// let producer = producer.with_options(ProducerOptions::for_producer().buffer_size(100));
    /// # let _ = producer;
    /// ```
    pub fn with_options(mut self, options: ProducerOptions) -> Self {
        self.options = options;
        self
    }
}

impl<T> fmt::Debug for FromChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromChannel")
            .field("queued", &self.receiver.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Producer for FromChannel<T> {
    type Output = T;

    /// Waits for at least one event, then takes what the channel holds, up to `demand`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it waits only in `recv_many`, which takes nothing from the channel when it is
    /// dropped.
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<T>> {
        let mut events = Vec::with_capacity(self.receiver.len().min(demand));
        // 0 only once the channel is closed (every sender dropped, or a shutdown) and empty.
        Ok(if self.receiver.recv_many(&mut events, demand).await == 0 {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }

    const DEFAULT_NAME: Option<&'static str> = Some("from_channel");

    fn __drain_on_shutdown(&mut self) -> bool {
        self.receiver.close();
        // Drained only if the channel holds events, or a sender holds a permit it may still send
        // through (each takes one of the channel's places). An empty channel has nothing to
        // deliver: the producer might never be asked again (its consumers may have no demand
        // left), and the shutdown would wait for it.
        self.receiver.capacity() < self.receiver.max_capacity()
    }

    async fn __unemitted(&mut self) -> u64 {
        self.receiver.close();
        let mut left = 0;
        // Once closed, the channel ends (`None`) when it is empty and no sender holds a place in
        // it: one that does is filling it (the instant inside `send` that follows taking the
        // place), or holds a permit from `reserve`. The first is waited for, so that every event a
        // `send` accepted is counted; the second, only as long.
        while let Ok(Some(_)) = tokio::time::timeout(PLACE_HELD, self.receiver.recv()).await {
            left += 1;
        }
        left
    }
}

impl<T: Send + 'static> Stage for FromChannel<T> {
    type Ref = ProducerRef<Self>;

    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        // Unnamed, it is `from_channel`, through the builder as well (see `Producer::DEFAULT_NAME`).
        pipeline.add_producer_as(name, self)
    }
}
