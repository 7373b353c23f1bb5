//! What the `#[stage]` and `pipeline!` macros expand to. Not public API: no stability promise.
//!
//! The module is private; the crate exports it as `__private_<major>_<minor>_<patch>` (see build.rs),
//! and generated code names everything through `::genstage::__private_0_1_0::…` (for 0.1.0), so a
//! user who shadows `Vec`, `Result` or `Option` cannot break an expansion, and the macros of another
//! release cannot reach this one's items.

pub mod checked;
pub mod dispatch;
pub mod fallback;
pub mod pipeline;
pub mod stage;

pub use std::boxed::Box;
pub use std::future::Future;
pub use std::option::Option::{self, None, Some};
pub use std::result::Result::{self, Err, Ok};
pub use std::string::String;
pub use std::vec::Vec;
