//! The infos a stage may send itself through its [`Context`](super::Context), checked at compile
//! time as its handles check theirs: the stage handles the message, and the callback returns the
//! stage's events.
//!
//! A stage's handles know its role, and so its events
//! ([`StageRef::Emits`](crate::StageRef::Emits)); its [`Context<'_, S>`](super::Context) knows only
//! `S`. [`StageEvents<Role>`] gives `S`'s events for each role `S` plays, one blanket impl per role:
//! the `Role` marker keeps the three impls apart, and the compiler infers it from the one role a
//! stage has. [`InfoToSelf`] then checks a message against them, with [`InfoEmission`] making a
//! callback that returns other events one compile error that says so.

use std::convert::Infallible;

use super::letter::{typed_info_letter, Letter};
use super::{Emission, HandleInfo};
use crate::stage::{Consumer, Producer, ProducerConsumer};

/// A message that a stage of type `S`, running as `Role`, may send itself through its
/// [`Context`](super::Context): every `M` that `S` handles as an info with a `handle_info` that
/// returns `S`'s events ([`InfoEmission`]). [`Context::info`](super::Context::info) bounds its
/// message by it, as [`StageRef::info`](crate::StageRef::info) bounds its message by
/// [`InfoFor`](crate::InfoFor): a message the stage does not take is one compile error in
/// [`HandleInfo`]'s words, and one whose callback returns other events, in [`InfoEmission`]'s.
pub trait InfoToSelf<S, Role>: Send + Sized + 'static {
    #[doc(hidden)]
    fn __letter(self) -> SelfLetter;
}

impl<M, S, Role> InfoToSelf<S, Role> for M
where
    M: Send + 'static,
    S: HandleInfo<M> + StageEvents<Role>,
    S::Emitted: InfoEmission<S, M, <S as StageEvents<Role>>::Events>,
{
    #[doc(hidden)]
    fn __letter(self) -> SelfLetter {
        SelfLetter(typed_info_letter::<S, M, <S as StageEvents<Role>>::Events>(
            self,
        ))
    }
}

/// An info on its way to the stage that sent it. Not part of the API.
#[doc(hidden)]
pub struct SelfLetter(pub(crate) Letter);

impl std::fmt::Debug for SelfLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SelfLetter")
    }
}

/// The events a stage of type `S` emits when it runs as `Role` ([`AsProducer`],
/// [`AsProducerConsumer`] or [`AsConsumer`]): a producer's or producer_consumer's `Output`, and
/// `Infallible` for a consumer, which emits none (as [`StageRef::Emits`](crate::StageRef::Emits)).
///
/// Implemented for every stage, and sealed. [`InfoToSelf`] bounds its stage by it: the compiler
/// infers `Role` from the one role a stage type has. A type that is two stages at once (a
/// [`Producer`] and a [`Consumer`], say) names the role it sends as:
/// `ctx.info::<_, AsProducer>(message)`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stage, so it has no `Context` to send infos through",
    label = "`{Self}` is not a producer, producer_consumer or consumer",
    note = "a stage implements `genstage::Producer`, `genstage::ProducerConsumer` or `genstage::Consumer`, by hand or with `#[stage]`"
)]
pub trait StageEvents<Role>: sealed::Sealed<Role> + Send + 'static {
    /// The events the stage emits in that role.
    type Events: Send + 'static;
}

/// The role of a [`Producer`], for [`StageEvents`].
#[derive(Debug)]
pub enum AsProducer {}

/// The role of a [`ProducerConsumer`], for [`StageEvents`].
#[derive(Debug)]
pub enum AsProducerConsumer {}

/// The role of a [`Consumer`], for [`StageEvents`].
#[derive(Debug)]
pub enum AsConsumer {}

impl<P: Producer> StageEvents<AsProducer> for P {
    type Events = P::Output;
}

impl<S: ProducerConsumer> StageEvents<AsProducerConsumer> for S {
    type Events = S::Output;
}

impl<C: Consumer> StageEvents<AsConsumer> for C {
    type Events = Infallible;
}

mod sealed {
    use crate::stage::{Consumer, Producer, ProducerConsumer};

    /// Keeps [`StageEvents`](super::StageEvents) to the three roles: its impls are the runtime's.
    pub trait Sealed<Role> {}
    impl<P: Producer> Sealed<super::AsProducer> for P {}
    impl<S: ProducerConsumer> Sealed<super::AsProducerConsumer> for S {}
    impl<C: Consumer> Sealed<super::AsConsumer> for C {}
}

/// What the `handle_info` for `M` of a stage `S` emitting `E` may return: the stage's events, as
/// `Vec<E>` or [`Emit<E>`](crate::Emit), or `()` (always, for a consumer, whose `E` is `Infallible`). The
/// [`Emission`]s of `E`, named with the stage and the message, so that
/// [`Context::info`](super::Context::info) on an info whose callback returns other events is one
/// compile error that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not what `{S}` emits: its `handle_info` for `{M}` must return the stage's events (`{E}`)",
    label = "`{S}`'s `handle_info` for `{M}` returns `{Self}`",
    note = "a message callback returns its stage's events: `Vec<T>` or `Emit<T>` for a producer of `T`, `Vec<T>` for a producer_consumer of `T`, `()` for a consumer, which emits none (its events are `Infallible`)"
)]
pub trait InfoEmission<S, M, E>: Emission<E> {}

#[diagnostic::do_not_recommend]
impl<X: Emission<E>, S, M, E> InfoEmission<S, M, E> for X {}
