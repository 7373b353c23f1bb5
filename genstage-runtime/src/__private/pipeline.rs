//! Support for `pipeline!` expansions.
