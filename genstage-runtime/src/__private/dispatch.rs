//! Support for dispatchers in `#[stage]` and `pipeline!` expansions: what `pipeline!` knows at
//! compile time of the dispatcher of the stage before an arrow.
//!
//! `#[stage(producer, dispatcher = …)]` (and `producer_consumer`) implements [`Dispatched`] for
//! its stage, naming one of the kinds [`DemandDispatch`], [`BroadcastDispatch`] or
//! [`PartitionDispatch<N>`], and, for `partition(N)`, [`HasPartition<I>`] for each `I` below `N`.
//! A stage written by hand implements nothing of this: `pipeline!` then sees
//! [`UnknownDispatch`], passes every check, and leaves the wiring to `run()`
//! (`PipelineError::InvalidDispatch`).
//!
//! `pipeline!` cannot see a stage's type, so it reads the kind from the stage's handle by
//! autoref specialization at the call site ([`probe`], then `.dispatch_kind()` with
//! [`ProbeKnown`] and [`ProbeUnknown`] in scope): [`ProbeKnown`] applies to a `ProducerRef<S>` or
//! `ProducerConsumerRef<S>` whose `S` is [`Dispatched`], and [`ProbeUnknown`], one reference
//! further, to anything else.
//!
//! Each check of an edge is a trait generated inside the `pipeline!` expansion (with the stages'
//! names in its `on_unimplemented` message), implemented for [`Unchecked`] (any parameters) and,
//! where the check can pass for a partitioned stage, for the stage handles. Its `Self` is the
//! kind's subject for that check ([`Kind::Selects`], …): the producer's handle when the check
//! applies, [`Unchecked`] when it does not. So a failed check reads "the trait `Selector` is not
//! implemented for `ProducerRef<Numbers>`", naming the public handle, never an item of this
//! module. The partition count comes first, as a [`Count<N>`] argument, so that rustc knows the
//! check's parameter `N` (and prints it in the message) before it looks at the impls.

use std::marker::PhantomData;

use crate::pipeline::{ProducerConsumerRef, ProducerRef};
use crate::stage::{Producer, ProducerConsumer};
use crate::stream::{FromIter, FromStream};

/// The dispatcher a stage's `#[stage]` attribute names. Implemented by the expansion only.
pub trait Dispatched {
    /// [`DemandDispatch`], [`BroadcastDispatch`] or [`PartitionDispatch<N>`].
    type Kind: Kind;
}

/// The default dispatcher, `dispatcher = demand`.
#[derive(Debug, Clone, Copy)]
pub struct DemandDispatch;

/// `dispatcher = broadcast`.
#[derive(Debug, Clone, Copy)]
pub struct BroadcastDispatch;

/// `dispatcher = partition(N)`.
#[derive(Debug, Clone, Copy)]
pub struct PartitionDispatch<const N: usize>;

/// A stage whose dispatcher is not known at compile time: one written by hand, one whose
/// `#[stage]` was rejected, or a stage in the wrong role (its node check reported it). Every
/// check passes; `run()` checks the wiring.
#[derive(Debug, Clone, Copy)]
pub struct UnknownDispatch;

/// The subject of a check that does not apply: implemented for every check.
#[derive(Debug)]
pub enum Unchecked {}

/// A number of partitions, as a check's first argument: 0 for a stage that is not partitioned
/// (or not known to be).
#[derive(Debug, Clone, Copy)]
pub struct Count<const N: usize>;

/// `Count<N>: Is<M>` holds when `N` is `M`: the condition of a group's check.
pub trait Is<const M: usize> {}

impl<const N: usize> Is<N> for Count<N> {}

/// Implemented by `#[stage]` for a stage with `dispatcher = partition(N)`, for each `I` below `N`
/// (for every `I` when `N` is too large to list them: `run()` checks the index then).
pub trait HasPartition<const I: usize> {}

/// What the checks of an edge need of a dispatcher kind. `H` is the producer's handle.
pub trait Kind: Sized {
    /// The kind, as a value.
    const KIND: Self;
    /// `Count<N>` for `N` partitions, `Count<0>` otherwise.
    type Count;
    /// The subject of a `selector` check: the handle when the edge cannot take a selector (the
    /// stage does not broadcast), [`Unchecked`] when it can or may.
    type Selects<H>;
    /// The subject of a `partition = i` check: the handle when the stage is not partitioned,
    /// [`Unchecked`] when it is or may be.
    type Partitioned<H>;
    /// The subject of the checks that compare the partitions with the consumers (a group's size,
    /// an index, a single consumer without an index): the handle when the stage is partitioned,
    /// [`Unchecked`] otherwise.
    type Partitions<H>;
}

impl Kind for DemandDispatch {
    const KIND: Self = DemandDispatch;
    type Count = Count<0>;
    type Selects<H> = H;
    type Partitioned<H> = H;
    type Partitions<H> = Unchecked;
}

impl Kind for BroadcastDispatch {
    const KIND: Self = BroadcastDispatch;
    type Count = Count<0>;
    type Selects<H> = Unchecked;
    type Partitioned<H> = H;
    type Partitions<H> = Unchecked;
}

impl<const N: usize> Kind for PartitionDispatch<N> {
    const KIND: Self = PartitionDispatch;
    type Count = Count<N>;
    type Selects<H> = H;
    type Partitioned<H> = Unchecked;
    type Partitions<H> = H;
}

impl Kind for UnknownDispatch {
    const KIND: Self = UnknownDispatch;
    type Count = Count<0>;
    type Selects<H> = Unchecked;
    type Partitioned<H> = Unchecked;
    type Partitions<H> = Unchecked;
}

/// The producer handles of one node of a pipeline (`H`: its `Stage::Ref`), to read its dispatcher
/// kind from.
#[derive(Debug)]
pub struct Probe<H>(PhantomData<fn() -> H>);

/// The probe of a node's handles (one, or a group's).
#[inline]
pub fn probe<H>(_handles: &[H]) -> Probe<H> {
    Probe(PhantomData)
}

/// The kind of a stage that `#[stage]` made: found first, on `&Probe<H>`.
pub trait ProbeKnown {
    /// The kind.
    type Kind: Kind;
    /// The kind, as a value.
    #[inline]
    fn dispatch_kind(&self) -> Self::Kind {
        Self::Kind::KIND
    }
}

impl<S: Producer + Dispatched> ProbeKnown for Probe<ProducerRef<S>> {
    type Kind = S::Kind;
}

impl<S: ProducerConsumer + Dispatched> ProbeKnown for Probe<ProducerConsumerRef<S>> {
    type Kind = S::Kind;
}

/// The kind of any other stage: found one reference further, on `&&Probe<H>`.
pub trait ProbeUnknown {
    /// [`UnknownDispatch`].
    #[inline]
    fn dispatch_kind(&self) -> UnknownDispatch {
        UnknownDispatch
    }
}

impl<H> ProbeUnknown for &Probe<H> {}

/// The first argument of a check that compares partitions: the kind's `Count<N>`.
#[inline]
pub fn count<K: Kind>(_kind: &K) -> PhantomData<K::Count> {
    PhantomData
}

/// The subject of a `selector` check.
#[inline]
pub fn selects<K: Kind, H>(_kind: &K, _handles: &[H]) -> PhantomData<K::Selects<H>> {
    PhantomData
}

/// The subject of a `partition = i` check.
#[inline]
pub fn partitioned<K: Kind, H>(_kind: &K, _handles: &[H]) -> PhantomData<K::Partitioned<H>> {
    PhantomData
}

/// The subject of a check comparing the partitions with the consumers.
#[inline]
pub fn partitions<K: Kind, H>(_kind: &K, _handles: &[H]) -> PhantomData<K::Partitions<H>> {
    PhantomData
}

// The producers of the runtime use the default dispatcher.
impl<I> Dispatched for FromIter<I> {
    type Kind = DemandDispatch;
}

impl<S> Dispatched for FromStream<S> {
    type Kind = DemandDispatch;
}
