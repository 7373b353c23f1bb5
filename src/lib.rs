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
        from_iter, BufferKeep, CallError, CancelMode, Consumer, Context, Emit, HandleCall,
        HandleCast, HandleInfo, Pipeline, PipelineError, PipelineHandle, Producer,
        ProducerConsumer, ProducerOptions, ReplyTo, Report, Stage, StageError, StageRef,
        StageResult, StageStatus, SubscribeOptions,
    };
}
