//! Compile-fail tests: one mistake per `tests/ui/<area>/<mistake>.rs`, with its reviewed `.stderr`.
//!
//! The `.stderr` files are rustc 1.95.0's output (pinned in rust-toolchain.toml). After a toolchain
//! bump, regenerate them with `TRYBUILD=overwrite cargo test --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
