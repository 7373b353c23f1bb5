//! # genstage
//!
//! GenStage for Rust: pipelines of stages that exchange typed events with demand-driven
//! back-pressure. Demand flows upstream, events flow downstream, and no stage ever receives more than
//! it asked for.
//!
//! ```
//! use genstage::prelude::*;
//!
//! struct Sum(u64);
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
//! assert_eq!(report.stage("Sum").unwrap().events_in, 100);
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
        from_iter, BufferKeep, CancelMode, Consumer, Emit, Pipeline, PipelineError, Producer,
        ProducerConsumer, ProducerOptions, Report, Stage, StageError, StageResult,
        SubscribeOptions,
    };
}
