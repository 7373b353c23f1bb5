//! The runtime of [genstage](https://docs.rs/genstage): GenStage's demand protocol on tokio.
//!
//! Most users depend on the `genstage` facade crate instead, which re-exports this one together with
//! the `#[stage]` and `pipeline!` macros.
//!
//! The crate is two layers:
//! - the **protocol**, as plain data structures tested without tokio: `demand` (per-subscription
//!   accounting and batch splitting), `buffer` (the producer buffer), [`dispatcher`] (who gets which
//!   events). `demand` and `buffer` are public only for the runtime's own tests
//!   (`genstage-runtime/tests/`) and hidden from the documentation: they are not part of the API
//!   and may change in any release. [`dispatcher`] is public: a stage may dispatch with a
//!   dispatcher of its own;
//! - the **tasks** that drive them (`run`), wired by the typed builder [`Pipeline`].
//!
//! # Back-pressure
//! A consumer asks its producer for at most `max_demand` events; a producer never sends more than was
//! asked. Events travel in batches: one channel message carries every event of one dispatch.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

// Public for the runtime's tests only; not part of the API.
#[doc(hidden)]
pub mod buffer;
mod consumer_supervisor;
#[doc(hidden)]
pub mod demand;
pub mod dispatcher;
mod error;
mod event_path;
mod loom;
mod mailbox;
mod messages;
mod names;
mod options;
mod pipeline;
mod protocol;
mod report;
mod restart;
mod run;
mod stage;
mod stream;
mod subscription;

pub use consumer_supervisor::{Child, ChildCounts, ChildOutput, ConsumerSupervisor, CountChildren};
pub use demand::{DEFAULT_MAX_DEMAND, MAX_DEMAND_LIMIT};
pub use dispatcher::{Dispatch, Partition};
pub use error::{DemandError, DispatchSetupError, PipelineError, StageError, SubscriptionRefused};
pub use messages::{
    AsConsumer, AsProducer, AsProducerConsumer, Asker, CallError, Context, Emission, HandleCall,
    HandleCast, HandleInfo, InfoEmission, InfoToSelf, ReplyTo, StageEvents, Timer,
};
pub use options::{
    BufferKeep, CancelMode, DemandMode, ProducerOptions, SubscribeOptions, WithoutConsumers,
};
pub use pipeline::{
    ends, Adding, AddingConsumer, AddingProducer, AddingProducerConsumer, Call, CallFor, CastFor,
    ConsumerRef, InfoFor, Pipeline, PipelineHandle, ProducerConsumerRef, ProducerRef, Run,
    ShutdownHandle, Sink, Source, Stage, StageId, StageRef, Subscribing, DEFAULT_CALL_TIMEOUT,
};
pub use report::{
    Discard, DiscardReason, EdgeReport, Loss, LossReason, Report, StageReport, StageStatus, Totals,
};
pub use restart::{NoInput, Restart, RestartPolicy, DEFAULT_MAX_RESTARTS, DEFAULT_RESTART_WINDOW};
pub use stage::{Consumer, Emit, Producer, ProducerConsumer, StageResult};
pub use subscription::{AskError, CancelReason, Demand, Subscriber, Subscription, SubscriptionTag};

// What the macros expand to, exported only under a name that carries this release's version,
// `__private_<major>_<minor>_<patch>` (written by build.rs), so that the macros of another release
// cannot use it by accident.
mod __private;
include!(concat!(env!("OUT_DIR"), "/private.rs"));
pub use stream::{
    from_channel, from_iter, from_stream, to_stream, EventStream, FromChannel, FromIter,
    FromStream, StreamSink, StreamSource,
};
