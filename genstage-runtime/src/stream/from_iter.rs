//! Producers made from iterators (GenStage's `from_enumerable`).

use crate::options::ProducerOptions;
use crate::pipeline::Stage;
use crate::pipeline::{Pipeline, ProducerRef};
use crate::stage::{Emit, Producer, StageResult};

/// A producer that emits the items of an iterator, in order, and ends when the iterator does.
///
/// Made by [`from_iter`].
#[derive(Debug)]
pub struct FromIter<I> {
    iter: I,
    options: ProducerOptions,
}

/// A producer of the items of `iterable` (GenStage's `from_enumerable`). It takes from the iterator
/// only as many items as its consumers ask for, and ends after the last one has been delivered.
///
/// ```
/// use genstage::{from_iter, Producer};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut numbers = from_iter(0..3u32);
/// let emitted = numbers.handle_demand(2).await.unwrap();
/// assert_eq!(emitted.events, vec![0, 1]);
/// let emitted = numbers.handle_demand(2).await.unwrap();
/// assert_eq!((emitted.events, emitted.last), (vec![2], true));
/// # }
/// ```
pub fn from_iter<I>(iterable: I) -> FromIter<I::IntoIter>
where
    I: IntoIterator,
    I::IntoIter: Send + 'static,
    I::Item: Send + 'static,
{
    FromIter {
        iter: iterable.into_iter(),
        options: ProducerOptions::for_producer(),
    }
}

impl<I> FromIter<I> {
    /// The same producer with other buffer settings.
    pub fn with_options(mut self, options: ProducerOptions) -> Self {
        self.options = options;
        self
    }
}

impl<I> Producer for FromIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type Output = I::Item;

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<I::Item>> {
        let mut events = Vec::with_capacity(demand.min(4096));
        events.extend(self.iter.by_ref().take(demand));
        // Fewer than asked means the iterator is done (`take` stops only at its end).
        Ok(if events.len() < demand {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }

    const DEFAULT_NAME: Option<&'static str> = Some("from_iter");
}

impl<I> Stage for FromIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type Ref = ProducerRef<Self>;

    fn add_to(self, pipeline: &mut Pipeline, name: Option<String>) -> Self::Ref {
        // Unnamed, it is `from_iter`, through the builder as well (see `Producer::DEFAULT_NAME`).
        pipeline.add_producer_as(name, self)
    }
}
