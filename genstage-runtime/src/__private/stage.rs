//! Support for `#[stage]` expansions.
//!
//! The conversions of a callback's argument and value (`DemandArg`, `IntoEmit`, `IntoEvents`,
//! `IntoDone`) are traits that each expansion defines for itself, inside its `const _` block and
//! named after its stage, so that rustc names them plainly in an error's `help:` line (it prints
//! the whole path of an item here, a `#[doc(hidden)]` module). What is left here is what every
//! expansion names through this path.

pub use std::marker::Send;
