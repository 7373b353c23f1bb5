//! Iterators and streams in and out of a pipeline (GenStage's `from_enumerable` and `stream/2`,
//! genstage-semantics §1.12):
//!
//! - [`from_iter`]: a producer of an iterator's items;
//! - [`from_stream`]: a producer of a [`Stream`](futures_core::Stream)'s items, pulled as
//!   consumers ask;
//! - [`from_channel`]: a producer fed by other tasks through a bounded channel's sender;
//! - [`to_stream`]: a consumer whose events the calling code reads as a
//!   [`Stream`](futures_core::Stream), at its own pace.

mod from_channel;
mod from_iter;
mod from_stream;
mod to_stream;

pub use from_channel::{from_channel, FromChannel};
pub use from_iter::{from_iter, FromIter};
pub use from_stream::{from_stream, FromStream, StreamSource};
pub use to_stream::{to_stream, EventStream, StreamSink};
