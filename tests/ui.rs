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

/// Each case shows one mistake's one error, and no expected error names an item of the expansion:
/// every `.stderr` under `tests/ui` holds exactly one `error` and is free of `__private`,
/// `__CanWire`, `Pair<`, `opaque` and `_::` (an item of an expansion's `const _` block, which rustc
/// names so when two items of the crate share its name).
#[test]
fn one_error_per_case_naming_no_internal_item() {
    const INTERNAL: &[&str] = &["__private", "__CanWire", "Pair<", "opaque", "_::"];
    let mut checked = 0;
    // Not relative to the current folder, which the `ui` test changes.
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    for area in std::fs::read_dir(&ui).expect("tests/ui exists") {
        let area = area.expect("tests/ui is readable").path();
        if !area.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&area).expect("an area is readable") {
            let path = file.expect("an area is readable").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".stderr") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a .stderr is text");
            let errors = text
                .lines()
                .filter(|line| line.starts_with("error"))
                .count();
            assert_eq!(errors, 1, "{} holds {errors} errors", path.display());
            for internal in INTERNAL {
                assert!(
                    !text.contains(internal),
                    "{} mentions `{internal}`",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} .stderr files found");
}
