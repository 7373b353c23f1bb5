//! The `#[stage]` and `pipeline!` macros of genstage. Use them through the `genstage` crate.
