//! Typed handles to the stages of a pipeline, and the mailbox ends they carry.

use std::fmt;
use std::sync::Arc;

use crate::stage::{Consumer, Producer, ProducerConsumer};

use super::stage_ref::{StageLabel, StagePort};
use crate::protocol::{
    Downstream, EventSink, Mail, Mailbox, NewConsumer, ProducerPort, Subscribed, Upstream,
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

    pub use super::super::stage_ref::StagePort;

    /// Where consumers subscribe to a stage emitting `T`.
    pub struct SourceEnd<T> {
        pub(crate) id: StageId,
        pub(crate) label: Arc<StageLabel>,
        pub(crate) port: Arc<dyn SourcePort<T>>,
    }

    /// Where producers send a stage consuming `T` its events.
    pub struct SinkEnd<T> {
        pub(crate) id: StageId,
        pub(crate) label: Arc<StageLabel>,
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
                label: self.label.clone(),
                port: self.port.clone(),
            }
        }
    }

    impl<T> Clone for SinkEnd<T> {
        fn clone(&self) -> Self {
            SinkEnd {
                id: self.id,
                label: self.label.clone(),
                port: self.port.clone(),
            }
        }
    }
}

use ends::{SinkEnd, SourceEnd};

/// The typed producer side of a stage's mailbox.
pub(crate) trait SourcePort<T>: Send + Sync {
    fn subscribe(&self, consumer: NewConsumer<T>);
    fn producer(&self) -> Arc<dyn ProducerPort>;
}

/// The typed consumer side of a stage's mailbox.
pub(crate) trait SinkPort<T>: Send + Sync {
    fn consumer(&self) -> Box<dyn EventSink<T>>;
    fn subscribed(&self, subscribed: Subscribed);
}

impl<In: Send + 'static, Out: Send + 'static> SourcePort<Out> for Mailbox<In, Out> {
    fn subscribe(&self, consumer: NewConsumer<Out>) {
        let _ = self.send(Mail::Downstream(Downstream::Subscribe(Box::new(consumer))));
    }
    fn producer(&self) -> Arc<dyn ProducerPort> {
        Arc::new(self.clone())
    }
}

impl<In: Send + 'static, Out: Send + 'static> SinkPort<In> for Mailbox<In, Out> {
    fn consumer(&self) -> Box<dyn EventSink<In>> {
        Box::new(self.clone())
    }
    fn subscribed(&self, subscribed: Subscribed) {
        let _ = self.send(Mail::Upstream(Upstream::Subscribed(Box::new(subscribed))));
    }
}

// The references have no bound on `S` (their impls have it): a type naming `ProducerRef<S>`, as
// the future of `PipelineHandle::add_producer` does, would repeat the bound, and rustc its error,
// at every expression of that type (the call, its `.await`, its `?`) when `S` is not a producer.
// Each holds its mailbox's typed ends behind a trait object that names the stage only, not its
// `Input` or `Output`.

/// A producer of type `S` in a [`Pipeline`](super::Pipeline), emitting `S::Output`: what wires it
/// (as a [`Source`]) and what reaches it while it runs (through [`StageRef`](crate::StageRef)).
pub struct ProducerRef<S> {
    pub(super) source: Arc<dyn ProducerSource<S>>,
    pub(super) stage: StagePort<S>,
}

/// A producer_consumer of type `S` in a [`Pipeline`](super::Pipeline), consuming `S::Input` and
/// emitting `S::Output`: what wires it (as a [`Sink`] and a [`Source`]) and what reaches it while it
/// runs (through [`StageRef`](crate::StageRef)).
pub struct ProducerConsumerRef<S> {
    pub(super) ends: Arc<dyn ProducerConsumerEnds<S>>,
    pub(super) stage: StagePort<S>,
}

/// A consumer of type `S` in a [`Pipeline`](super::Pipeline), consuming `S::Input`: what wires it (as
/// a [`Sink`]) and what reaches it while it runs (through [`StageRef`](crate::StageRef)).
pub struct ConsumerRef<S> {
    pub(super) sink: Arc<dyn ConsumerSink<S>>,
    pub(super) stage: StagePort<S>,
}

/// A producer's [`SourceEnd`], held by its [`ProducerRef`].
pub(super) trait ProducerSource<S>: Send + Sync {
    fn source_end(&self) -> SourceEnd<S::Output>
    where
        S: Producer;
}

/// A producer_consumer's [`SinkEnd`] and [`SourceEnd`], held by its [`ProducerConsumerRef`].
pub(super) trait ProducerConsumerEnds<S>: Send + Sync {
    fn sink_end(&self) -> SinkEnd<S::Input>
    where
        S: ProducerConsumer;
    fn source_end(&self) -> SourceEnd<S::Output>
    where
        S: ProducerConsumer;
}

/// A consumer's [`SinkEnd`], held by its [`ConsumerRef`].
pub(super) trait ConsumerSink<S>: Send + Sync {
    fn sink_end(&self) -> SinkEnd<S::Input>
    where
        S: Consumer;
}

/// The [`ProducerSource`] of producer `S`.
pub(super) struct SourceOf<S: Producer>(pub(super) SourceEnd<S::Output>);

impl<S: Producer> ProducerSource<S> for SourceOf<S> {
    fn source_end(&self) -> SourceEnd<S::Output> {
        self.0.clone()
    }
}

/// The [`ProducerConsumerEnds`] of producer_consumer `S`.
pub(super) struct EndsOf<S: ProducerConsumer>(
    pub(super) SinkEnd<S::Input>,
    pub(super) SourceEnd<S::Output>,
);

impl<S: ProducerConsumer> ProducerConsumerEnds<S> for EndsOf<S> {
    fn sink_end(&self) -> SinkEnd<S::Input> {
        self.0.clone()
    }
    fn source_end(&self) -> SourceEnd<S::Output> {
        self.1.clone()
    }
}

/// The [`ConsumerSink`] of consumer `S`.
pub(super) struct SinkOf<S: Consumer>(pub(super) SinkEnd<S::Input>);

impl<S: Consumer> ConsumerSink<S> for SinkOf<S> {
    fn sink_end(&self) -> SinkEnd<S::Input> {
        self.0.clone()
    }
}

impl<S: Producer> Clone for ProducerRef<S> {
    fn clone(&self) -> Self {
        ProducerRef {
            source: self.source.clone(),
            stage: self.stage.clone(),
        }
    }
}
impl<S: ProducerConsumer> Clone for ProducerConsumerRef<S> {
    fn clone(&self) -> Self {
        ProducerConsumerRef {
            ends: self.ends.clone(),
            stage: self.stage.clone(),
        }
    }
}
impl<S: Consumer> Clone for ConsumerRef<S> {
    fn clone(&self) -> Self {
        ConsumerRef {
            sink: self.sink.clone(),
            stage: self.stage.clone(),
        }
    }
}

impl<S: Producer> fmt::Debug for ProducerRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerRef")
            .field("stage", &self.stage)
            .finish()
    }
}
impl<S: ProducerConsumer> fmt::Debug for ProducerConsumerRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConsumerRef")
            .field("stage", &self.stage)
            .finish()
    }
}
impl<S: Consumer> fmt::Debug for ConsumerRef<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerRef")
            .field("stage", &self.stage)
            .finish()
    }
}

impl<S: Producer> ends::Sealed for ProducerRef<S> {}
impl<S: ProducerConsumer> ends::Sealed for ProducerConsumerRef<S> {}
impl<S: Consumer> ends::Sealed for ConsumerRef<S> {}

impl<S: Producer> Source<S::Output> for ProducerRef<S> {
    fn source_end(&self) -> SourceEnd<S::Output> {
        self.source.source_end()
    }
}
impl<S: ProducerConsumer> Source<S::Output> for ProducerConsumerRef<S> {
    fn source_end(&self) -> SourceEnd<S::Output> {
        self.ends.source_end()
    }
}
impl<S: ProducerConsumer> Sink<S::Input> for ProducerConsumerRef<S> {
    fn sink_end(&self) -> SinkEnd<S::Input> {
        self.ends.sink_end()
    }
}
impl<S: Consumer> Sink<S::Input> for ConsumerRef<S> {
    fn sink_end(&self) -> SinkEnd<S::Input> {
        self.sink.sink_end()
    }
}

/// The ends of a new stage's mailbox, from which its reference is made.
pub(super) struct NewEnds<S, In, Out> {
    pub(super) id: StageId,
    pub(super) mailbox: Mailbox<In, Out>,
    pub(super) stage: StagePort<S>,
}

impl<S, In: Send + 'static, Out: Send + 'static> NewEnds<S, In, Out> {
    pub(super) fn source(&self) -> SourceEnd<Out> {
        SourceEnd {
            id: self.id,
            label: self.stage.label.clone(),
            port: Arc::new(self.mailbox.clone()),
        }
    }

    pub(super) fn sink(&self) -> SinkEnd<In> {
        SinkEnd {
            id: self.id,
            label: self.stage.label.clone(),
            port: Arc::new(self.mailbox.clone()),
        }
    }
}
