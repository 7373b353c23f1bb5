//! # genstage
//!
//! GenStage for Rust: pipelines of stages that exchange typed events with demand-driven
//! back-pressure. Demand flows upstream, events flow downstream, and no stage ever receives more than
//! it asked for.
//!
//! A stage is a value with a callback: [`#[stage]`](macro@stage) on its impl block says its role and
//! options, and [`pipeline!`] wires stages with `->`, checking at compile time that each stage
//! consumes what the one before it emits. [`Pipeline::run`] runs every stage as a tokio task and
//! returns a [`Report`] once all of them have finished.
//!
//! ```
//! use genstage::prelude::*;
//!
//! /// Keeps the even numbers.
//! struct Evens;
//!
//! #[stage(producer_consumer)]
//! impl Evens {
//!     fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
//!         events.into_iter().filter(|n| n % 2 == 0).collect()
//!     }
//! }
//!
//! /// Adds up what it receives, asking for at most 10 events at a time.
//! struct Sum(u64);
//!
//! #[stage(consumer, max_demand = 10)]
//! impl Sum {
//!     fn handle_events(&mut self, events: Vec<u64>) {
//!         self.0 += events.iter().sum::<u64>();
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), PipelineError> {
//!     let report = pipeline! { from_iter(1..=100u64) -> Evens -> Sum(0) }.run().await?;
//!     assert_eq!(report.stage("Evens").map(|s| (s.events_in, s.events_out)), Some((100, 50)));
//!     assert_eq!(report.stage("Sum").map(|s| s.events_in), Some(50));
//!     Ok(())
//! }
//! ```
//!
//! `run()` returns a future, [`Run`]: nothing runs until it is `.await`ed, and rustc warns when a
//! call leaves it unused. It must be awaited inside a tokio runtime (`#[tokio::main]`,
//! `#[tokio::test]`, or a runtime built with `enable_all()`). Add tokio to your dependencies with
//! the features `#[tokio::main]` needs:
//!
//! ```toml
//! [dependencies]
//! genstage = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "time"] }
//! ```
//!
//! [`#[stage]`](macro@stage) describes the roles, callbacks and options; [`pipeline!`] the wiring
//! syntax (named stages for fan-in and fan-out, groups `[S; n]`, per-edge options) and the mistakes
//! it rejects.
//!
//! # Streams in and out
//!
//! [`from_stream`] makes a producer of any `Stream` (a channel's receiver, a socket's messages)
//! that is `Send + 'static`, as are its items ([`StreamSource`]): it pulls items only as its
//! consumers ask, and ends when the stream does. [`to_stream`] makes a consumer and the `Stream` of
//! what it receives, for the calling code to read at its own pace (GenStage's `stream/2`): the
//! consumer asks for more only as the stream is read, and dropping the stream stops the pipeline,
//! without an error. Run the pipeline in its own task while reading.
//!
//! ```
//! use futures::StreamExt;
//! use genstage::prelude::*;
//!
//! struct Double;
//!
//! #[stage(producer_consumer)]
//! impl Double {
//!     fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
//!         events.into_iter().map(|n| 2 * n).collect()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), PipelineError> {
//! let numbers = futures::stream::iter(1..=3u64);
//! let (sink, doubled) = to_stream::<u64>();
//! let run = tokio::spawn(pipeline! { from_stream(numbers) -> Double -> sink }.run());
//! assert_eq!(doubled.collect::<Vec<u64>>().await, [2, 4, 6]);
//! let report = run.await.expect("the pipeline's task")?;
//! assert_eq!(report.stage("to_stream").map(|s| s.events_in), Some(3));
//! # Ok(()) }
//! ```
//!
//! `examples/stream_in.rs` feeds a pipeline from a `tokio::sync::mpsc` channel that another task
//! sends into; `examples/stream_out.rs` collects a pipeline's results from a stream.
//!
//! # Without the macros
//!
//! The macros expand to the role traits [`Producer`], [`ProducerConsumer`] and [`Consumer`] and the
//! typed builder [`Pipeline`], which can also be used directly: `subscribe` only compiles when the
//! event types of both ends agree.
//!
//! ```
//! use genstage::prelude::*;
//!
//! struct Sum(u64);
//!
//! impl Consumer for Sum {
//!     type Input = u64;
//!     async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
//!         self.0 += events.iter().sum::<u64>();
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), PipelineError> {
//! let mut pipeline = Pipeline::new();
//! let numbers = pipeline.add_producer(from_iter(1..=100u64));
//! let sum = pipeline.add_consumer(Sum(0));
//! pipeline.subscribe(&numbers, &sum);
//! let report = pipeline.run().await?;
//! assert_eq!(report.stage("Sum").map(|s| s.events_in), Some(100));
//! # Ok(()) }
//! ```

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

pub use genstage_macros::{pipeline, stage};
pub use genstage_runtime::*;

/// Everything a pipeline author needs: `use genstage::prelude::*;`.
pub mod prelude {
    pub use genstage_macros::{pipeline, stage};
    pub use genstage_runtime::{
        from_channel, from_iter, from_stream, to_stream, AskError, Asker, BufferKeep, CallError,
        CancelMode, CancelReason, Child, ChildCounts, Consumer, ConsumerRef, ConsumerSupervisor,
        Context, CountChildren, Demand, DemandMode, DiscardReason, Dispatch, Emit, EventStream,
        FromChannel, HandleCall, HandleCast, HandleInfo, LossReason, Partition, Pipeline,
        PipelineError, PipelineHandle, Producer, ProducerConsumer, ProducerConsumerRef,
        ProducerOptions, ProducerRef, ReplyTo, Report, Restart, RestartPolicy, ShutdownHandle,
        Stage, StageError, StageRef, StageReport, StageResult, StageStatus, StreamSink,
        SubscribeOptions, Subscriber, Subscription, SubscriptionTag, Timer, WithoutConsumers,
    };
}
