//! A consumer whose events the calling code reads as a [`Stream`] (GenStage's `stream/2`).
//!
//! The sink's `handle_events` hands its batch to the stream through a channel of capacity one and
//! waits until the stream has yielded the batch's last event (or was dropped): the consumer asks
//! its producers for more only as the caller reads, exactly as a consumer whose `handle_events`
//! took that long. The stream tells the sink how many events of the batch it yielded, so that the
//! report counts as handled exactly the events the caller received.

use std::convert::Infallible;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::stream::FusedStream;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::StreamDropped;
use crate::messages::{typed_info_letter, Context as StageContext, HandleInfo};
use crate::options::SubscribeOptions;
use crate::pipeline::{ConsumerRef, Pipeline, Stage};
use crate::stage::{Consumer, StageResult};
use crate::subscription::{Demand, Subscription};

/// A batch on its way from the sink to the stream, and where the stream says how many of its events
/// it yielded.
struct Handoff<T> {
    events: Vec<T>,
    delivered: oneshot::Sender<usize>,
}

/// A consumer that passes its events to an [`EventStream`], at the pace the stream is read.
///
/// Made, with its stream, by [`to_stream`], whose documentation describes how the two work
/// together. Unnamed, the stage is called `to_stream` in the report:
///
/// ```
/// use genstage::{to_stream, Pipeline, StreamSink};
///
/// let (sink, _stream) = to_stream::<u64>();
/// let sink: StreamSink<u64> = sink;
/// let mut pipeline = Pipeline::new();
/// let _sink = pipeline.add_consumer(sink);
/// assert_eq!(pipeline.stage_names().collect::<Vec<_>>(), ["to_stream"]);
/// ```
pub struct StreamSink<T> {
    batches: mpsc::Sender<Handoff<T>>,
    /// How many events of the batch handed over last the stream has yielded.
    yielded: Arc<AtomicUsize>,
    options: SubscribeOptions,
    /// Tells the sink's stage when the stream is dropped, so that a sink that receives nothing more
    /// still stops; aborted when the sink is dropped, since it holds a sender of the batches.
    watch: Option<tokio::task::JoinHandle<()>>,
}

/// The stream of a [`StreamSink`] was dropped: the info its watcher sends the sink's stage.
struct StreamGone;

/// Set in the count of yielded events once an aborted sink's stage has counted its batch (its
/// `__handled_of_interrupted_batch`): the stream yields no more of that batch.
const ABORT_COUNTED: usize = 1 << (usize::BITS - 1);

impl<T> Drop for StreamSink<T> {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.take() {
            watch.abort();
        }
    }
}

/// The events a [`StreamSink`] consumes, as a [`Stream`] for the calling code.
///
/// Made, with its sink, by [`to_stream`]. It yields the events in the order the sink received them
/// and ends (`None`) when the sink's stage has ended. Dropping it stops the sink (see
/// [`to_stream`]). A sink that never runs (its pipeline is dropped, or refused by `run()`) ends the
/// stream at once:
///
/// ```
/// use genstage::{to_stream, EventStream};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (sink, mut stream): (_, EventStream<u64>) = to_stream();
/// drop(sink);
/// assert_eq!(stream.next().await, None);
/// # }
/// ```
pub struct EventStream<T> {
    batches: mpsc::Receiver<Handoff<T>>,
    /// How many events of the current batch it has yielded, for the sink's report if its stage is
    /// aborted meanwhile, and (`ABORT_COUNTED`) whether such a report has counted them: each event is
    /// claimed in it before it is yielded.
    yielded: Arc<AtomicUsize>,
    /// The batch being yielded, with how many events it had.
    current: Option<Current<T>>,
    /// The sink is gone: `None` from now on.
    ended: bool,
}

/// The batch an [`EventStream`] is yielding.
struct Current<T> {
    events: std::vec::IntoIter<T>,
    len: usize,
    delivered: oneshot::Sender<usize>,
}

impl<T> Current<T> {
    /// Tells the sink how many events of the batch were yielded: all of them, or those before the
    /// stream was dropped.
    fn finish(self) {
        let delivered = self.len - self.events.len();
        // The sink may be gone already (its pipeline was dropped): then no one needs the count.
        let _ = self.delivered.send(delivered);
    }
}

/// A consumer and the stream of the events it consumes: the calling code reads a pipeline's output
/// as a [`Stream`] (GenStage's `stream/2`).
///
/// The [`StreamSink`] is a consumer of `T`, used in `pipeline!` or the builder like any other; the
/// [`EventStream`] implements [`Stream<Item = T>`](Stream) (and has an inherent
/// [`next`](EventStream::next), so reading it needs no extension trait).
///
/// - **Back-pressure**: the sink's `handle_events` returns only once the stream has yielded the
///   last event of its batch, so the sink asks its producers for more only as the caller reads:
///   the stage that feeds it runs at most `max_demand` events ahead of the reader (each stage
///   further up adds its own demand and buffer, as in any pipeline). The sink's subscriptions take
///   their `max_demand`/`min_demand` from [`StreamSink::with_options`] (GenStage's stream options;
///   1000 and 500 by default, batches of `max - min` events), or from the edge.
/// - **End**: the stream returns `None` once the sink's stage has ended: its producers have all
///   ended and it has passed on every event, or it stopped early (a failure upstream, the pipeline
///   dropped). The pipeline's report tells which: the stream cannot.
/// - **Cancel**: dropping the stream stops the sink, normally (not as a failure), when it next has
///   events for the stream (at once if it is waiting for the stream to finish a batch): its status is
///   [`Cancelled`](crate::StageStatus::Cancelled), its subscriptions are cancelled, and producers
///   left without consumers stop, as when any consumer leaves. The events of the sink's batch that
///   the stream had not yielded are reported as lost
///   ([`Unhandled`](crate::LossReason::Unhandled)), those it yielded as handled. A sink that
///   receives nothing more never learns that its stream is gone: its pipeline runs on until its
///   producers end.
///
/// The pipeline must run while the stream is read: spawn it (`tokio::spawn(pipeline.run())`) or
/// join the two futures. Awaiting `run()` first, before reading, would wait forever once the sink
/// holds a batch that nobody reads.
///
/// # Examples
///
/// ```
/// use genstage::{from_iter, to_stream, Pipeline, ProducerConsumer, StageResult};
///
/// struct Evens;
/// impl ProducerConsumer for Evens {
///     type Input = u64;
///     type Output = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
///         Ok(events.into_iter().filter(|n| n % 2 == 0).collect())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), genstage::PipelineError> {
/// let (sink, mut evens) = to_stream::<u64>();
/// let mut pipeline = Pipeline::new();
/// let numbers = pipeline.add_producer(from_iter(0..10u64));
/// let filter = pipeline.add_producer_consumer(Evens);
/// let sink = pipeline.add_consumer(sink);
/// pipeline.subscribe(&numbers, &filter).subscribe(&filter, &sink);
///
/// let run = tokio::spawn(pipeline.run());
/// let mut seen = Vec::new();
/// while let Some(n) = evens.next().await {
///     seen.push(n);
/// }
/// assert_eq!(seen, [0, 2, 4, 6, 8]);
/// let report = run.await.expect("the pipeline's task")?;
/// assert_eq!(report.stage("to_stream").unwrap().events_in, 5);
/// # Ok(()) }
/// ```
///
/// Taking the first events of an endless producer, then dropping the stream (GenStage's
/// `Enum.take`): the pipeline stops, and nothing is left unaccounted for.
///
/// ```
/// use futures::StreamExt;
/// use genstage::{from_iter, to_stream, Pipeline, StageStatus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), genstage::PipelineError> {
/// let (sink, stream) = to_stream::<u64>();
/// let mut pipeline = Pipeline::new();
/// let numbers = pipeline.add_producer(from_iter(0u64..));
/// let sink = pipeline.add_consumer(sink);
/// pipeline.subscribe(&numbers, &sink);
///
/// let run = tokio::spawn(pipeline.run());
/// let first: Vec<u64> = stream.take(3).collect().await; // drops the stream
/// assert_eq!(first, [0, 1, 2]);
/// let report = run.await.expect("the pipeline's task")?;
/// assert!(matches!(report.stage("to_stream").unwrap().status, StageStatus::Cancelled { .. }));
/// assert!(report.totals().balanced());
/// # Ok(()) }
/// ```
pub fn to_stream<T: Send + 'static>() -> (StreamSink<T>, EventStream<T>) {
    let (sender, receiver) = mpsc::channel(1);
    let yielded = Arc::new(AtomicUsize::new(0));
    (
        StreamSink {
            batches: sender,
            yielded: yielded.clone(),
            options: SubscribeOptions::default(),
            watch: None,
        },
        EventStream {
            batches: receiver,
            yielded,
            current: None,
            ended: false,
        },
    )
}

impl<T> StreamSink<T> {
    /// The same sink, subscribing with these options (GenStage's stream options `max_demand`,
    /// `min_demand`, `cancel`); an edge's own options override them. Invalid values make
    /// [`Pipeline::run`] return [`PipelineError::InvalidSubscription`](crate::PipelineError::InvalidSubscription).
    ///
    /// ```
    /// use genstage::{to_stream, Consumer, SubscribeOptions};
    /// let (sink, _stream) = to_stream::<u64>();
    /// let sink = sink.with_options(SubscribeOptions::new().max_demand(100));
    /// assert_eq!(sink.subscribe_options().max_demand, Some(100));
    /// ```
    pub fn with_options(mut self, options: SubscribeOptions) -> Self {
        self.options = options;
        self
    }
}

impl<T> fmt::Debug for StreamSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSink")
            .field("options", &self.options)
            .field("stream_dropped", &self.batches.is_closed())
            .finish()
    }
}

/// How many events of the batch handed over last the stream yielded, once it has said so or is
/// gone; `None` if it took none of it.
///
/// The stream's end is watched as well as its answer: a batch sent as the stream is dropped (the
/// channel granted room before it closed, and the batch went in after the receiver had emptied it)
/// stays in the channel, with the sender of the answer, for as long as the sink holds its own
/// sender of batches. The answer would then never come.
async fn yielded_count<T>(
    batches: &mpsc::Sender<Handoff<T>>,
    mut yielded: oneshot::Receiver<usize>,
) -> Option<usize> {
    tokio::select! {
        // The answer first: a stream dropped with the batch in hand answers before it closes.
        biased;
        delivered = &mut yielded => delivered.ok(),
        () = batches.closed() => yielded.try_recv().ok(),
    }
}

impl<T: Send + 'static> Consumer for StreamSink<T> {
    type Input = T;

    /// Hands `events` to the stream and returns once it has yielded them all. Fails with a private
    /// error, which the consumer loop turns into a normal stop, when the stream was dropped first.
    async fn handle_events(&mut self, events: Vec<T>) -> StageResult<()> {
        let len = events.len();
        if len == 0 {
            return Ok(());
        }
        self.yielded.store(0, Ordering::Release);
        let (delivered, yielded) = oneshot::channel();
        // The channel is empty here (the stream took the last batch, and said it yielded it), so
        // this waits for nothing: it fails only if the stream is gone.
        if self
            .batches
            .send(Handoff { events, delivered })
            .await
            .is_err()
        {
            return Err(StreamDropped::after(0).into());
        }
        match yielded_count(&self.batches, yielded).await {
            Some(delivered) if delivered == len => Ok(()),
            Some(delivered) => Err(StreamDropped::after(delivered).into()),
            // Dropped with the batch still in the channel: the stream took none of it.
            None => Err(StreamDropped::after(0).into()),
        }
    }

    fn subscribe_options(&self) -> SubscribeOptions {
        self.options
    }

    /// Starts watching the stream, once: a stream dropped while no batch is on its way is noticed
    /// too, by a message to the sink's own stage.
    fn handle_subscribe(&mut self, _: &Subscription, ctx: &mut StageContext<'_, Self>) -> Demand {
        if self.watch.is_none() {
            let batches = self.batches.clone();
            let me = ctx.port();
            self.watch = Some(tokio::spawn(async move {
                batches.closed().await;
                drop(batches);
                me.post(typed_info_letter::<Self, StreamGone, Infallible>(
                    StreamGone,
                ));
            }));
        }
        Demand::Automatic
    }

    const DEFAULT_NAME: Option<&'static str> = Some("to_stream");

    /// Counts once and for all: the stream claims each event before it yields it, and can no more
    /// once this is done.
    fn __handled_of_interrupted_batch(&self) -> u64 {
        (self.yielded.fetch_or(ABORT_COUNTED, Ordering::AcqRel) & !ABORT_COUNTED) as u64
    }
}

// Internal: a user's info of the wrong type is not told of this impl.
#[diagnostic::do_not_recommend]
impl<T: Send + 'static> HandleInfo<StreamGone> for StreamSink<T> {
    type Emitted = ();

    /// Stops the sink normally (the consumer loop turns this error into a stop).
    async fn handle_info(
        &mut self,
        _: StreamGone,
        _: &mut StageContext<'_, Self>,
    ) -> StageResult<()> {
        Err(StreamDropped::after(0).into())
    }
}

impl<T: Send + 'static> Stage for StreamSink<T> {
    type Ref = ConsumerRef<Self>;

    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        // Unnamed, it is `to_stream`, through the builder as well (see `Consumer::DEFAULT_NAME`).
        pipeline.add_consumer_as(name, self)
    }
}

impl<T> EventStream<T> {
    /// The next event, or `None` once the sink's stage has ended: the same as
    /// [`StreamExt::next`](https://docs.rs/futures/0.3/futures/stream/trait.StreamExt.html#method.next),
    /// without importing it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event is taken only in the poll that returns it, so dropping the future
    /// before it completes loses nothing.
    ///
    /// ```
    /// use genstage::{from_iter, to_stream, Pipeline};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let (sink, mut stream) = to_stream::<u32>();
    /// let mut pipeline = Pipeline::new();
    /// let numbers = pipeline.add_producer(from_iter(0..2u32));
    /// let sink = pipeline.add_consumer(sink);
    /// pipeline.subscribe(&numbers, &sink);
    ///
    /// let run = tokio::spawn(pipeline.run());
    /// assert_eq!(stream.next().await, Some(0));
    /// assert_eq!(stream.next().await, Some(1));
    /// assert_eq!(stream.next().await, None);
    /// run.await.expect("the pipeline's task")?;
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            if let Some(current) = &mut self.current {
                // The sink's stage gave up waiting (aborted): the report counts the rest of the
                // batch lost, so the caller does not get it either.
                if current.delivered.is_closed() {
                    self.current = None;
                    continue;
                }
                if let Some(event) = current.events.next() {
                    // Claimed against an abort's count, which may come on another thread at any
                    // moment, also after the check above: an event the sink's report counted lost
                    // is not the caller's either.
                    let yielded = current.len - current.events.len();
                    let claimed = self.yielded.compare_exchange(
                        yielded - 1,
                        yielded,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    if claimed.is_err() {
                        self.current = None;
                        continue;
                    }
                    if current.events.as_slice().is_empty() {
                        // The batch's last event: the sink may ask for more while the caller
                        // handles it.
                        if let Some(current) = self.current.take() {
                            current.finish();
                        }
                    }
                    return Poll::Ready(Some(event));
                }
                // An empty batch (the sink sends none, but nothing is lost if one comes).
                if let Some(current) = self.current.take() {
                    current.finish();
                }
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match ready!(self.batches.poll_recv(cx)) {
                Some(Handoff { events, delivered }) => {
                    self.current = Some(Current {
                        len: events.len(),
                        events: events.into_iter(),
                        delivered,
                    });
                }
                None => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl<T> Stream for EventStream<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_event(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_hand = self.current.as_ref().map_or(0, |c| c.events.len());
        if self.ended {
            (in_hand, Some(in_hand))
        } else {
            (in_hand, None)
        }
    }
}

impl<T> FusedStream for EventStream<T> {
    fn is_terminated(&self) -> bool {
        self.ended && self.current.is_none()
    }
}

// Nothing in it is pinned: the batch is a plain `Vec`'s iterator, the channel's receiver is `Unpin`.
impl<T> Unpin for EventStream<T> {}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        // The sink waits for this count: the events the caller received count as handled, the rest
        // of the batch as lost.
        if let Some(current) = self.current.take() {
            current.finish();
        }
    }
}

impl<T> fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field(
                "in_hand",
                &self.current.as_ref().map_or(0, |c| c.events.len()),
            )
            .field("ended", &self.ended)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    /// An abort counts the events of the sink's batch that the stream has yielded as handled, the
    /// rest as lost; once it has counted, the stream yields no more of that batch, even before the
    /// sink's wait for the batch is dropped. (An abort on another thread counts while the caller
    /// may be in the middle of `next`, past its check that the wait is still there: the caller got
    /// an event that the report counted lost, about once in a thousand aborts of a stream being
    /// read.)
    #[tokio::test]
    async fn once_an_abort_has_counted_the_batch_the_stream_yields_no_more_of_it() {
        let (mut sink, mut stream) = to_stream::<u32>();
        // What the stage loop reads when it is aborted: the same sink's count.
        let counted = StreamSink {
            batches: sink.batches.clone(),
            yielded: sink.yielded.clone(),
            options: SubscribeOptions::default(),
            watch: None,
        };
        let handing = tokio::spawn(async move { sink.handle_events(vec![10, 11, 12, 13]).await });
        assert_eq!(stream.next().await, Some(10));
        assert_eq!(stream.next().await, Some(11));
        // The abort counts 2 handled, 2 lost; the sink's wait is still there.
        assert_eq!(counted.__handled_of_interrupted_batch(), 2);
        assert!(!handing.is_finished());
        assert_eq!(stream.next().now_or_never(), None, "12 was counted lost");
        handing.abort();
        drop(counted);
        assert_eq!(stream.next().await, None);
    }

    /// A batch that goes into the channel after the stream has dropped its end (a send that got
    /// room just before) stays there, with the sender of its answer, while the sink holds its
    /// sender: the sink's wait ends all the same, with none of the batch delivered. (Chaos seed
    /// 5 323 840: the sink waited for good, once in about 25 000 runs.)
    #[tokio::test]
    async fn the_wait_for_a_batch_ends_when_the_stream_is_gone_though_the_batch_is_stuck_in_the_channel(
    ) {
        let (sink, stream) = to_stream::<u32>();
        let room = sink.batches.reserve().await.expect("the stream is there");
        drop(stream);
        let (answer, yielded) = oneshot::channel();
        room.send(Handoff {
            events: vec![1, 2, 3],
            delivered: answer,
        });
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            yielded_count(&sink.batches, yielded),
        );
        assert_eq!(waited.await, Ok(None));
    }

    /// A stream dropped with the batch in hand answers how many events it yielded, though its end
    /// of the channel closes too.
    #[tokio::test]
    async fn a_stream_dropped_with_the_batch_in_hand_says_how_much_of_it_was_yielded() {
        let (mut sink, mut stream) = to_stream::<u32>();
        let handing = tokio::spawn(async move { sink.handle_events(vec![10, 11, 12]).await });
        assert_eq!(stream.next().await, Some(10));
        drop(stream);
        let handed = handing.await.expect("the sink's task");
        let dropped = handed.expect_err("the stream was dropped");
        let dropped = dropped
            .downcast_ref::<StreamDropped>()
            .expect("StreamDropped");
        assert_eq!(dropped.delivered, 1);
    }
}
