//! What a node of `pipeline!` shows its checks: its stage's handle when its expression is a
//! stage, a [`RejectedRef`] when it is not.
//!
//! A node's expression goes through `Stage::add_to`, which reports an expression that is not a
//! stage (or a generic stage whose bounds its type arguments miss: `Show<Point>` without
//! `Point: Display`; an adapter given the wrong argument: `from_stream(0..3u64)`). Its handle type
//! is still the one its `Stage` impl names, since rustc takes an impl's associated types even when
//! the impl's bounds fail, and every later check of the node (its role, its edges, its dispatcher)
//! would fail on it again, under other tokens, some with a false message ("is a consumer"). So
//! the expansion hands the handle through [`CheckedStage::checked`] (found first, on
//! `&StageProbe<S>`, when `S: Stage` may hold) or [`UncheckedStage::checked`] (found one
//! reference further, when it cannot): the checks then see a `RejectedRef`, which every check
//! accepts, and the one error is the one under the expression.

use std::marker::PhantomData;

use super::fallback::{AnyRole, RejectedRef};
use crate::pipeline::Stage;

/// The type of a node's stage, to choose what its checks see.
#[derive(Debug)]
pub struct StageProbe<S>(PhantomData<fn() -> S>);

/// The probe of a stage, taken before it is added.
#[inline]
pub fn stage_probe<S>(_stage: &S) -> StageProbe<S> {
    StageProbe(PhantomData)
}

/// A node whose expression is a stage: its checks see its handle.
pub trait CheckedStage {
    /// The stage.
    type Stage: Stage;
    /// The handle itself.
    #[inline]
    fn checked(&self, handle: <Self::Stage as Stage>::Ref) -> <Self::Stage as Stage>::Ref {
        handle
    }
    /// The stage's demand limits, for [`max_demand_of`] and [`min_demand_of`].
    #[inline]
    fn known_demand(&self) -> StageDemand<Self::Stage> {
        StageDemand(PhantomData)
    }
}

impl<S: Stage> CheckedStage for StageProbe<S> {
    type Stage = S;
}

/// A node whose expression is not a stage, reported by its `Stage::add_to`: its checks see a
/// handle that every check accepts.
pub trait UncheckedStage {
    /// A handle of no stage, in place of `_handle`.
    #[inline]
    fn checked<H>(&self, _handle: H) -> RejectedRef<AnyRole> {
        RejectedRef::new()
    }
    /// No demand limits.
    #[inline]
    fn known_demand(&self) -> NoDemand {
        NoDemand
    }
}

impl<S> UncheckedStage for &StageProbe<S> {}

/// The demand limits a node's `#[stage]` records (`Stage::__MAX_DEMAND`, `Stage::__MIN_DEMAND`),
/// which `pipeline!` checks an edge's literal limit against; none for an expression that is not a
/// stage, which its `Stage::add_to` reports.
pub trait KnownDemand {
    /// The stage's `max_demand`, and whether it is GenStage's default.
    const MAX: Option<(usize, bool)>;
    /// The `min_demand` its attribute sets.
    const MIN: Option<usize>;
}

/// The limits of a stage, `S`.
#[derive(Debug)]
pub struct StageDemand<S>(PhantomData<fn() -> S>);

impl<S: Stage> KnownDemand for StageDemand<S> {
    const MAX: Option<(usize, bool)> = S::__MAX_DEMAND;
    const MIN: Option<usize> = S::__MIN_DEMAND;
}

/// The limits of an expression that is not a stage: none.
#[derive(Debug)]
pub struct NoDemand;

impl KnownDemand for NoDemand {
    const MAX: Option<(usize, bool)> = None;
    const MIN: Option<usize> = None;
}

/// The limits of a node's stage, chosen as [`CheckedStage::checked`] is: `probe` is never called,
/// only its return type is read, so that the node's expression is named by value (a unit struct,
/// an enum's unit variant, a constant), not as a type, and one that is not a stage is not
/// reported again here.
pub const fn max_demand_of<D: KnownDemand>(_probe: fn() -> D) -> Option<(usize, bool)> {
    D::MAX
}

/// As [`max_demand_of`], for the `min_demand`.
pub const fn min_demand_of<D: KnownDemand>(_probe: fn() -> D) -> Option<usize> {
    D::MIN
}
