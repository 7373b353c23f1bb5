//! Support for `#[stage]` expansions.
//!
//! `#[stage]` reads a stage's event types from its callbacks' signatures (`Vec<T>`, `Emit<T>`, maybe
//! inside a `Result`) and converts what the user's callback gives into what the role trait returns
//! through these traits. Each conversion is spanned at the user's type, so a wrong type is reported
//! there by rustc, with the sentence in the trait's `on_unimplemented` message. Every impl is
//! `do_not_recommend`, so the error is that sentence rather than a list of impls.
//!
//! | callback | parameter | returns |
//! |---|---|---|
//! | producer `handle_demand` | `usize` ([`DemandArg`]) | `Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>`, `Result<Emit<T>, E>` ([`IntoEmit`]) |
//! | producer_consumer `handle_events` | `Vec<I>` | `Vec<O>`, `Result<Vec<O>, E>` ([`IntoEvents`]) |
//! | consumer `handle_events` | `Vec<I>` | `()`, `Result<(), E>` ([`IntoDone`]) |
//!
//! `E` is any error that converts into [`StageError`].

use crate::error::StageError;
use crate::stage::{Emit, StageResult};

pub use std::marker::Send;

/// The parameter of a producer's `handle_demand`: the number of events asked for.
#[diagnostic::on_unimplemented(
    message = "a producer's `handle_demand` takes the demand as a `usize`, not `{Self}`",
    label = "expected `usize`",
    note = "write it `fn handle_demand(&mut self, demand: usize) -> Vec<T>`"
)]
pub trait DemandArg {
    /// The demand, as the callback takes it.
    fn from_demand(demand: usize) -> Self;
}

#[diagnostic::do_not_recommend]
impl DemandArg for usize {
    #[inline]
    fn from_demand(demand: usize) -> Self {
        demand
    }
}

/// What a producer's `handle_demand` returns: the events it emits (of type `T`), maybe with an end
/// marker or an error.
#[diagnostic::on_unimplemented(
    message = "a producer's `handle_demand` cannot return `{Self}`",
    label = "expected `Vec<T>`, `Emit<T>`, or a `Result` of either whose error converts into `genstage::StageError`",
    note = "`handle_demand` returns `Vec<T>`, `Emit<T>`, `Result<Vec<T>, E>` or `Result<Emit<T>, E>`, where `T` is the event type",
    note = "`E` converts into `genstage::StageError` when it is a `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`"
)]
pub trait IntoEmit<T> {
    /// The value as the runtime takes it.
    fn into_emit(self) -> StageResult<Emit<T>>;
}

#[diagnostic::do_not_recommend]
impl<T> IntoEmit<T> for Vec<T> {
    #[inline]
    fn into_emit(self) -> StageResult<Emit<T>> {
        Ok(Emit::more(self))
    }
}

#[diagnostic::do_not_recommend]
impl<T> IntoEmit<T> for Emit<T> {
    #[inline]
    fn into_emit(self) -> StageResult<Emit<T>> {
        Ok(self)
    }
}

#[diagnostic::do_not_recommend]
impl<T, E: Into<StageError>> IntoEmit<T> for Result<Vec<T>, E> {
    #[inline]
    fn into_emit(self) -> StageResult<Emit<T>> {
        self.map(Emit::more).map_err(Into::into)
    }
}

#[diagnostic::do_not_recommend]
impl<T, E: Into<StageError>> IntoEmit<T> for Result<Emit<T>, E> {
    #[inline]
    fn into_emit(self) -> StageResult<Emit<T>> {
        self.map_err(Into::into)
    }
}

/// What a producer_consumer's `handle_events` returns: the events it emits (of type `T`), maybe
/// with an error.
#[diagnostic::on_unimplemented(
    message = "a producer_consumer's `handle_events` cannot return `{Self}`",
    label = "expected `Vec<T>` or a `Result<Vec<T>, E>` whose error converts into `genstage::StageError`",
    note = "a producer_consumer's `handle_events` returns `Vec<T>` or `Result<Vec<T>, E>`, where `T` is the event type it emits",
    note = "`E` converts into `genstage::StageError` when it is a `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`"
)]
pub trait IntoEvents<T> {
    /// The value as the runtime takes it.
    fn into_events(self) -> StageResult<Vec<T>>;
}

#[diagnostic::do_not_recommend]
impl<T> IntoEvents<T> for Vec<T> {
    #[inline]
    fn into_events(self) -> StageResult<Vec<T>> {
        Ok(self)
    }
}

#[diagnostic::do_not_recommend]
impl<T, E: Into<StageError>> IntoEvents<T> for Result<Vec<T>, E> {
    #[inline]
    fn into_events(self) -> StageResult<Vec<T>> {
        self.map_err(Into::into)
    }
}

/// What a consumer's `handle_events` returns: nothing, maybe an error.
#[diagnostic::on_unimplemented(
    message = "a consumer's `handle_events` returns `()` or `Result<(), E>`, not `{Self}`",
    label = "expected `()` or a `Result<(), E>` whose error converts into `genstage::StageError`",
    note = "`E` converts into `genstage::StageError` when it is a `std::error::Error + Send + Sync + 'static`, a `String` or a `&str`",
    note = "a consumer emits no events; a stage that does is a producer_consumer: `#[stage(producer_consumer)]`"
)]
pub trait IntoDone {
    /// The value as the runtime takes it.
    fn into_done(self) -> StageResult<()>;
}

#[diagnostic::do_not_recommend]
impl IntoDone for () {
    #[inline]
    fn into_done(self) -> StageResult<()> {
        Ok(())
    }
}

#[diagnostic::do_not_recommend]
impl<E: Into<StageError>> IntoDone for Result<(), E> {
    #[inline]
    fn into_done(self) -> StageResult<()> {
        self.map_err(Into::into)
    }
}
