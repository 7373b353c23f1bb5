//! Support for `#[stage]` expansions.
