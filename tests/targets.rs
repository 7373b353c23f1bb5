//! The integration tests are the package `genstage-tests`, whose root is `tests/`; cargo discovers
//! test files only under `tests/tests/`, so each file here is declared as a `[[test]]` in
//! `tests/Cargo.toml`. This test fails when a file is not, so a new test file cannot go unrun.

use std::path::Path;

#[test]
fn every_test_file_is_a_test_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("tests/Cargo.toml");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("the tests folder")
        .map(|entry| entry.expect("a tests folder entry").file_name())
        .filter_map(|name| name.into_string().ok())
        .filter(|name| name.ends_with(".rs"))
        .collect();
    files.sort();
    assert!(files.contains(&"targets.rs".to_owned()), "{files:?}");
    let missing: Vec<&String> = files
        .iter()
        .filter(|file| !manifest.contains(&format!("path = \"{file}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "add a [[test]] to tests/Cargo.toml for each of {missing:?}"
    );
}
