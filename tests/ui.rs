//! Compile-fail tests: one mistake per `tests/ui/<area>/<mistake>.rs`, with its reviewed `.stderr`.
//!
//! The `.stderr` files are rustc 1.95.0's output. Compiler messages drift between releases, so the
//! expectations live in this one place and one command refreshes them after a toolchain bump:
//! `TRYBUILD=overwrite cargo test --test ui`, then review the diff before committing it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
