//! What `#[stage]` expands to when it rejects its impl block (thiserror's `fallback.rs` idea).
//!
//! The macro still emits the role impl and the `Stage` impl, so that the one error under the
//! user's mistake is the only one: the stage keeps its role (when the attribute named one), its
//! events are [`Rejected`], and its handle is a [`RejectedRef`], which every `pipeline!` check
//! accepts silently. Nothing here ever runs: the crate does not compile while the error stands.

use std::fmt;
use std::marker::PhantomData;

use super::pipeline::{No, Wiring};
use crate::pipeline::ends::{SinkEnd, SourceEnd};

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
