//! Support for `#[stage]` expansions.
//!
//! The conversions of a callback's argument and value (`DemandArg`, `IntoEmit`, `IntoEvents`,
//! `IntoDone`) are traits that each expansion defines for itself, inside its `const _` block, so
//! that rustc names them plainly in an error's `help:` line. What is left here is what every
//! expansion names through this path.

pub use std::marker::Send;
