//! A producer made from a [`Stream`]: a pipeline fed by a channel, a socket, another pipeline.

use std::any::Any;
use std::fmt;
use std::future::poll_fn;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::Poll;

use futures_core::Stream;

use crate::options::ProducerOptions;
use crate::pipeline::{Pipeline, ProducerRef, Stage};
use crate::stage::{Emit, Producer, StageResult};

/// A producer that emits the items of a [`Stream`], in order, and ends when the stream does.
///
/// Made by [`from_stream`], whose documentation describes how it pulls items. Unnamed, it is
/// `from_stream` in a pipeline's report:
///
/// ```
/// use genstage::{from_stream, FromStream, Pipeline};
///
/// let numbers: FromStream<_> = from_stream(futures::stream::iter(0..10u64));
/// let mut pipeline = Pipeline::new();
/// let _numbers = pipeline.add_producer(numbers);
/// assert_eq!(pipeline.stage_names().collect::<Vec<_>>(), ["from_stream"]);
/// ```
pub struct FromStream<S> {
    /// Pinned on the heap once, so that any stream works, `Unpin` or not.
    stream: Pin<Box<S>>,
    /// The stream has returned `None`: it must not be polled again.
    ended: bool,
    /// The stream panicked after yielding the items of the last batch, which were emitted: the
    /// panic goes on at the next call.
    panic: Option<Box<dyn Any + Send>>,
    options: ProducerOptions,
}

/// A producer of the items of `stream`: its consumers' demand is the number of items it pulls.
///
/// Asked for `n` events, it waits for the stream's next item, then takes the items that are ready
/// without waiting, up to `n` in all, and emits them: a stream that trickles is not held back until
/// `n` items have come, and a burst goes downstream as one batch. It pulls nothing while its
/// consumers ask for nothing, so a bounded source behind the stream (a
/// [`tokio::sync::mpsc`] channel) fills up and makes its senders wait: back-pressure reaches
/// whoever feeds the pipeline. It ends, once its events are delivered, when the stream returns
/// `None`. Unnamed, the stage is called `from_stream` in the report.
///
/// While it waits for an item, the stage still takes in its consumers' asks and cancels, and stops
/// if they all leave (see [`Producer::handle_demand`]); the stream is then dropped with the stage.
///
/// # Cancel safety
///
/// The stage may drop the future of [`handle_demand`](Producer::handle_demand) while it waits for
/// the stream's next item: when its consumers have all left, or the pipeline is dropped. Nothing is
/// lost then. The future only waits while it has taken no item (an item taken is returned in the
/// same poll, with those ready after it), and a `Stream`'s `poll_next` keeps its state in the
/// stream, which stays in this producer, not in the future: the item being waited for is returned
/// by a later call of `poll_next`, as if the first had not happened. (The stream itself is dropped
/// with the stage when the stage stops, like any stage's state.)
///
/// # Examples
///
/// A pipeline fed by another task through a bounded [`tokio::sync::mpsc`] channel (wrapped as a
/// `Stream` here with
/// [`futures::stream::poll_fn`](https://docs.rs/futures/0.3/futures/stream/fn.poll_fn.html);
/// `tokio-stream`'s `ReceiverStream` does the same):
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// use genstage::{from_stream, Consumer, Pipeline, StageResult};
///
/// struct Sum(Arc<AtomicU64>);
/// impl Consumer for Sum {
///     type Input = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
///         self.0.fetch_add(events.iter().sum(), Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), genstage::PipelineError> {
/// let (jobs, mut received) = tokio::sync::mpsc::channel::<u64>(4);
/// tokio::spawn(async move {
///     for job in 1..=20 {
///         // Waits while the channel is full: the pipeline pulls only what it can handle.
///         if jobs.send(job).await.is_err() {
///             break;
///         }
///     }
///     // `jobs` is dropped here: the stream ends, and so does the pipeline.
/// });
///
/// let total = Arc::new(AtomicU64::new(0));
/// let mut pipeline = Pipeline::new();
/// let source = pipeline.add_producer(from_stream(futures::stream::poll_fn(move |cx| {
///     received.poll_recv(cx)
/// })));
/// let sum = pipeline.add_consumer(Sum(total.clone()));
/// pipeline.subscribe(&source, &sum);
/// let report = pipeline.run().await?;
///
/// assert_eq!(total.load(Ordering::Relaxed), 210);
/// assert_eq!(report.stage("from_stream").unwrap().emitted, 20);
/// # Ok(()) }
/// ```
///
/// Called by hand, it returns what is ready, at most what is asked:
///
/// ```
/// use genstage::{from_stream, Producer};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut numbers = from_stream(futures::stream::iter(0..3u32));
/// let emitted = numbers.handle_demand(2).await.unwrap();
/// assert_eq!((emitted.events, emitted.last), (vec![0, 1], false));
/// let emitted = numbers.handle_demand(2).await.unwrap();
/// assert_eq!((emitted.events, emitted.last), (vec![2], true));
/// # }
/// ```
///
/// `stream` is a [`StreamSource`]: a `Stream` that is `Send + 'static`, and so are its items.
/// That is checked where the producer is added (its `Stage` and `Producer` impls ask it), not
/// here, so that a value of another type (`from_stream(0..3)`) is one error, under the call, in
/// `from_stream`'s words.
pub fn from_stream<S>(stream: S) -> FromStream<S> {
    FromStream {
        stream: Box::pin(stream),
        ended: false,
        panic: None,
        options: ProducerOptions::for_producer(),
    }
}

/// A `Stream` that [`from_stream`] takes: `Send + 'static`, and so are its items (its `Event`s).
/// Implemented for every such stream.
#[diagnostic::on_unimplemented(
    message = "`from_stream` takes a `Stream` of events, both `Send + 'static`, and `{Self}` is not one",
    label = "not a `Stream`, or it or its items are not `Send + 'static`",
    note = "an iterator or a collection becomes a producer by `from_iter`; a stream that holds or yields an `Rc`, a `RefCell` borrow or a reference is not `Send + 'static`"
)]
pub trait StreamSource: Stream<Item = <Self as StreamSource>::Event> + Send + 'static {
    /// The stream's items: the producer's events.
    type Event: Send + 'static;
}

// `do_not_recommend`: rustc reports the trait's sentence, not the bound beneath it that fails;
// the sentence must then hold for each of them (not a `Stream`, not `Send`, items not `Send`).
#[diagnostic::do_not_recommend]
impl<S> StreamSource for S
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
{
    type Event = S::Item;
}

impl<S> FromStream<S> {
    /// The same producer with other buffer settings.
    ///
    /// ```
    /// use genstage::{from_stream, ProducerOptions};
    /// let producer = from_stream(futures::stream::iter(0..10u64))
    ///     .with_options(ProducerOptions::for_producer().buffer_size(100));
    /// # let _ = producer;
    /// ```
    pub fn with_options(mut self, options: ProducerOptions) -> Self {
        self.options = options;
        self
    }
}

impl<S> fmt::Debug for FromStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromStream")
            .field("ended", &self.ended)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<S: StreamSource> Producer for FromStream<S> {
    type Output = S::Event;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<S::Event>> {
        if let Some(panic) = self.panic.take() {
            resume_unwind(panic);
        }
        if self.ended {
            return Ok(Emit::last(Vec::new()));
        }
        let stream = &mut self.stream;
        let mut events = Vec::new();
        let mut panic = None;
        // Pending only while nothing is taken (see the cancel safety above): the items a poll takes
        // leave in that poll's result. A panic in the stream after some items leaves with them
        // too, and goes on at the next call: the items it yielded are not lost with it.
        let ended = poll_fn(|cx| loop {
            if events.len() >= demand {
                return Poll::Ready(false);
            }
            match catch_unwind(AssertUnwindSafe(|| stream.as_mut().poll_next(cx))) {
                Ok(Poll::Ready(Some(item))) => events.push(item),
                Ok(Poll::Ready(None)) => return Poll::Ready(true),
                Ok(Poll::Pending) if events.is_empty() => return Poll::Pending,
                Ok(Poll::Pending) => return Poll::Ready(false),
                Err(payload) => {
                    panic = Some(payload);
                    return Poll::Ready(false);
                }
            }
        })
        .await;
        if let Some(payload) = panic {
            if events.is_empty() {
                resume_unwind(payload);
            }
            self.panic = Some(payload);
        }
        self.ended = ended;
        Ok(if ended {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }

    const DEFAULT_NAME: Option<&'static str> = Some("from_stream");
}

impl<S: StreamSource> Stage for FromStream<S> {
    type Ref = ProducerRef<Self>;

    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        // Unnamed, it is `from_stream`, through the builder as well (see `Producer::DEFAULT_NAME`).
        pipeline.add_producer_as(name, self)
    }
}
