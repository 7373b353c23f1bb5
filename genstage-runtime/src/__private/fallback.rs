//! What `#[stage]` expands to when it rejects its impl block (thiserror's `fallback.rs` idea).
//!
//! The macro still emits the role impl and the `Stage` impl, so that the one error under the
//! user's mistake is the only one: the stage keeps its role (when the attribute named one), its
//! events are [`Rejected`], and its handle is a [`RejectedRef`], which every `pipeline!` check
//! accepts silently and which takes any message a stage's reference takes. Nothing here ever
//! runs: the crate does not compile while the error stands.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::pipeline::{No, Wiring};
use crate::messages::CallError;
use crate::options::DemandMode;
use crate::pipeline::ends::{SinkEnd, SourceEnd};
use crate::pipeline::{Call, StageId};

/// The event type of a stage whose `#[stage]` was rejected. Uninhabited: no event of it exists.
#[derive(Debug)]
pub enum Rejected {}

/// The role of a rejected stage whose attribute named no valid role: every node check of
/// `pipeline!` accepts it.
#[derive(Debug)]
pub enum AnyRole {}

/// The handle of a rejected stage, with the role `R` its attribute named (or [`AnyRole`]).
///
/// It neither emits nor accepts events as far as `pipeline!` is concerned, so every edge that
/// involves it is skipped rather than reported.
pub struct RejectedRef<R>(PhantomData<fn() -> R>);

impl<R> RejectedRef<R> {
    /// The handle; never made at run time, since the crate does not compile.
    #[inline]
    pub fn new() -> Self {
        RejectedRef(PhantomData)
    }

    // What a stage's reference offers (`StageRef`'s methods and the role handles' own), for any
    // message and any reply, so that code reaching the stage through a `pipeline!` name compiles
    // on: its messages are the rejected stage's, which cannot be told, and a missing method would
    // be a second error, naming this type.

    /// As [`StageRef::id`](crate::StageRef::id).
    pub fn id(&self) -> StageId {
        unreachable!()
    }

    /// As [`StageRef::name`](crate::StageRef::name).
    pub fn name(&self) -> String {
        unreachable!()
    }

    /// As [`StageRef::call`](crate::StageRef::call), for any request and reply.
    pub fn call<M, T>(&self, _request: M) -> Call<T> {
        unreachable!()
    }

    /// As [`StageRef::call_timeout`](crate::StageRef::call_timeout), for any request and reply.
    pub fn call_timeout<M, T>(&self, _request: M, _timeout: Duration) -> Call<T> {
        unreachable!()
    }

    /// As [`StageRef::cast`](crate::StageRef::cast), for any message.
    pub fn cast<M>(&self, _message: M) -> Result<(), CallError> {
        unreachable!()
    }

    /// As [`StageRef::info`](crate::StageRef::info), for any message.
    pub fn info<M>(&self, _message: M) -> Result<(), CallError> {
        unreachable!()
    }

    /// As [`StageRef::info_after_buffered`](crate::StageRef::info_after_buffered), for any
    /// message.
    pub fn info_after_buffered<M>(&self, _message: M) -> Result<(), CallError> {
        unreachable!()
    }

    /// As [`ProducerRef::estimate_buffered_count`](crate::ProducerRef::estimate_buffered_count).
    pub async fn estimate_buffered_count(&self) -> Result<usize, CallError> {
        unreachable!()
    }

    /// As [`ProducerRef::demand`](crate::ProducerRef::demand).
    pub fn demand(&self, _mode: DemandMode) -> Result<(), CallError> {
        unreachable!()
    }

    /// As [`ProducerRef::demand_mode`](crate::ProducerRef::demand_mode).
    pub async fn demand_mode(&self) -> Result<DemandMode, CallError> {
        unreachable!()
    }
}

impl<R> Default for RejectedRef<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Clone for RejectedRef<R> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<R> fmt::Debug for RejectedRef<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RejectedRef")
    }
}

impl<R> Wiring for RejectedRef<R> {
    type Role = R;
    type Emits = No;
    type Accepts = No;
    type Out = Rejected;
    type In = Rejected;
    fn source_end(&self) -> Option<SourceEnd<Rejected>> {
        None
    }
    fn sink_end(&self) -> Option<SinkEnd<Rejected>> {
        None
    }
}
