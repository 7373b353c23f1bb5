//! Typed handles to the stages of a pipeline, and the mailbox ends they carry.

use std::fmt;
use std::sync::Arc;

use crate::demand::DemandLimits;
use crate::dispatcher::SubscriptionId;
use crate::options::CancelMode;
use crate::protocol::{
    Downstream, EventSink, Mail, Mailbox, ProducerPort, Subscribed, Subscriber, Upstream,
};

/// Identifies a stage within its pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StageId {
    pub(super) pipeline: u64,
    pub(super) index: usize,
}

/// A stage that emits events of type `T`: a producer or a producer_consumer.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be subscribed to as a source of `{T}`",
    note = "only producers and producer_consumers can be subscribed to, and their event type must match the consumer's"
)]
pub trait Source<T>: ends::Sealed {
    #[doc(hidden)]
    fn source_end(&self) -> ends::SourceEnd<T>;
}

/// A stage that consumes events of type `T`: a consumer or a producer_consumer.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot subscribe to a source of `{T}`",
    note = "only consumers and producer_consumers can subscribe, and their event type must match the producer's"
)]
pub trait Sink<T>: ends::Sealed {
    #[doc(hidden)]
    fn sink_end(&self) -> ends::SinkEnd<T>;
}

#[doc(hidden)]
pub mod ends {
    //! The opaque mailbox ends that stage handles carry.
    use super::*;

    pub trait Sealed {}

    /// Where consumers subscribe to a stage emitting `T`.
    pub struct SourceEnd<T> {
        pub(crate) id: StageId,
        pub(crate) port: Arc<dyn SourcePort<T>>,
    }

    /// Where producers send a stage consuming `T` its events.
    pub struct SinkEnd<T> {
        pub(crate) id: StageId,
        pub(crate) port: Arc<dyn SinkPort<T>>,
    }

    impl<T> fmt::Debug for SourceEnd<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SourceEnd").field("id", &self.id).finish()
        }
    }

    impl<T> fmt::Debug for SinkEnd<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SinkEnd").field("id", &self.id).finish()
        }
    }

    impl<T> Clone for SourceEnd<T> {
        fn clone(&self) -> Self {
            SourceEnd {
                id: self.id,
                port: self.port.clone(),
            }
        }
    }

    impl<T> Clone for SinkEnd<T> {
        fn clone(&self) -> Self {
            SinkEnd {
                id: self.id,
                port: self.port.clone(),
            }
        }
    }
}

use ends::{SinkEnd, SourceEnd};

/// The typed producer side of a stage's mailbox.
pub(crate) trait SourcePort<T>: Send + Sync {
    fn subscribe(&self, sub: SubscriptionId, consumer: Box<dyn EventSink<T>>);
    fn producer(&self) -> Arc<dyn ProducerPort>;
}

/// The typed consumer side of a stage's mailbox.
pub(crate) trait SinkPort<T>: Send + Sync {
    fn consumer(&self) -> Box<dyn EventSink<T>>;
    fn subscribed(
        &self,
        sub: SubscriptionId,
        producer: Arc<dyn ProducerPort>,
        limits: DemandLimits,
        cancel: CancelMode,
    );
}

impl<In: Send + 'static, Out: Send + 'static> SourcePort<Out> for Mailbox<In, Out> {
    fn subscribe(&self, sub: SubscriptionId, consumer: Box<dyn EventSink<Out>>) {
        let _ = self.send(Mail::Downstream(Downstream::Subscribe(Box::new(
            Subscriber { sub, consumer },
        ))));
    }
    fn producer(&self) -> Arc<dyn ProducerPort> {
        Arc::new(self.clone())
    }
}

impl<In: Send + 'static, Out: Send + 'static> SinkPort<In> for Mailbox<In, Out> {
    fn consumer(&self) -> Box<dyn EventSink<In>> {
        Box::new(self.clone())
    }
    fn subscribed(
        &self,
        sub: SubscriptionId,
        producer: Arc<dyn ProducerPort>,
        limits: DemandLimits,
        cancel: CancelMode,
    ) {
        let _ = self.send(Mail::Upstream(Upstream::Subscribed(Box::new(Subscribed {
            sub,
            producer,
            limits,
            cancel,
        }))));
    }
}

/// A producer in a [`Pipeline`](super::Pipeline), emitting `T`.
pub struct ProducerRef<T> {
    pub(super) source: SourceEnd<T>,
}

/// A producer_consumer in a [`Pipeline`](super::Pipeline), consuming `I` and emitting `O`.
pub struct ProducerConsumerRef<I, O> {
    pub(super) sink: SinkEnd<I>,
    pub(super) source: SourceEnd<O>,
}

/// A consumer in a [`Pipeline`](super::Pipeline), consuming `T`.
pub struct ConsumerRef<T> {
    pub(super) sink: SinkEnd<T>,
}

impl<T> ProducerRef<T> {
    /// This stage's id in its pipeline.
    pub fn id(&self) -> StageId {
        self.source.id
    }
}
impl<I, O> ProducerConsumerRef<I, O> {
    /// This stage's id in its pipeline.
    pub fn id(&self) -> StageId {
        self.source.id
    }
}
impl<T> ConsumerRef<T> {
    /// This stage's id in its pipeline.
    pub fn id(&self) -> StageId {
        self.sink.id
    }
}

impl<T> Clone for ProducerRef<T> {
    fn clone(&self) -> Self {
        ProducerRef {
            source: self.source.clone(),
        }
    }
}
impl<I, O> Clone for ProducerConsumerRef<I, O> {
    fn clone(&self) -> Self {
        ProducerConsumerRef {
            sink: self.sink.clone(),
            source: self.source.clone(),
        }
    }
}
impl<T> Clone for ConsumerRef<T> {
    fn clone(&self) -> Self {
        ConsumerRef {
            sink: self.sink.clone(),
        }
    }
}

impl<T> fmt::Debug for ProducerRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerRef")
            .field("id", &self.id())
            .finish()
    }
}
impl<I, O> fmt::Debug for ProducerConsumerRef<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConsumerRef")
            .field("id", &self.id())
            .finish()
    }
}
impl<T> fmt::Debug for ConsumerRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerRef")
            .field("id", &self.id())
            .finish()
    }
}

impl<T> ends::Sealed for ProducerRef<T> {}
impl<I, O> ends::Sealed for ProducerConsumerRef<I, O> {}
impl<T> ends::Sealed for ConsumerRef<T> {}

impl<T> Source<T> for ProducerRef<T> {
    fn source_end(&self) -> SourceEnd<T> {
        self.source.clone()
    }
}
impl<I, O> Source<O> for ProducerConsumerRef<I, O> {
    fn source_end(&self) -> SourceEnd<O> {
        self.source.clone()
    }
}
impl<I, O> Sink<I> for ProducerConsumerRef<I, O> {
    fn sink_end(&self) -> SinkEnd<I> {
        self.sink.clone()
    }
}
impl<T> Sink<T> for ConsumerRef<T> {
    fn sink_end(&self) -> SinkEnd<T> {
        self.sink.clone()
    }
}

/// The ends of a new stage's mailbox, from which its handle is made.
pub(super) struct NewEnds<In, Out> {
    pub(super) id: StageId,
    pub(super) mailbox: Mailbox<In, Out>,
}

impl<In: Send + 'static, Out: Send + 'static> NewEnds<In, Out> {
    pub(super) fn source(&self) -> SourceEnd<Out> {
        SourceEnd {
            id: self.id,
            port: Arc::new(self.mailbox.clone()),
        }
    }

    pub(super) fn sink(&self) -> SinkEnd<In> {
        SinkEnd {
            id: self.id,
            port: Arc::new(self.mailbox.clone()),
        }
    }
}
