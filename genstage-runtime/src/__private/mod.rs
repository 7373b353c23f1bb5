//! What the `#[stage]` and `pipeline!` macros expand to. Not public API: no stability promise.
//!
//! Generated code names everything through `::genstage::__private::…`, so a user who shadows `Vec`,
//! `Result` or `Option` cannot break an expansion.

pub mod fallback;
pub mod pipeline;
pub mod stage;

pub use std::boxed::Box;
pub use std::future::Future;
pub use std::option::Option::{self, None, Some};
pub use std::result::Result::{self, Err, Ok};
pub use std::string::String;
pub use std::vec::Vec;
