//! Compile-fail tests: one mistake per `tests/ui/<area>/<mistake>.rs`, with its reviewed `.stderr`.
//!
//! The `.stderr` files are rustc 1.95.0's output. Compiler messages drift between releases, so the
//! expectations live in this one place and one command refreshes them after a toolchain bump:
//! `TRYBUILD=overwrite cargo test --test ui`, then review the diff before committing it.

use std::path::Path;

#[test]
fn ui() {
    // The cases are compiled as a user's code is, against the `genstage` facade. trybuild takes the
    // crate under test (and the dependencies it gives the cases) from `CARGO_MANIFEST_DIR`, and
    // reads the cases and their `.stderr` files relative to the current folder, both read when the
    // test runs; cargo sets them to this package, `tests/`. Pointing both at the facade's folder
    // compiles the cases with the facade's dependencies only, and keeps the paths in the `.stderr`
    // files relative to the repository's root (`tests/ui/...`), as a user's paths are relative to
    // their crate. Both are process-wide: another test in this file must not read the current folder
    // or `CARGO_MANIFEST_DIR` at run time (`env!("CARGO_MANIFEST_DIR")`, fixed at compile time, is
    // this package's folder whatever this test does).
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(facade) = tests.parent() else {
        panic!("{} has no parent folder", tests.display());
    };
    std::env::set_var("CARGO_MANIFEST_DIR", facade);
    if let Err(error) = std::env::set_current_dir(facade) {
        panic!("cannot enter {}: {error}", facade.display());
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
