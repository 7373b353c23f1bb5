//! Names the module the macros expand to after this release.
//!
//! `src/__private/` is private to the crate; this script writes `$OUT_DIR/private.rs`, which
//! `lib.rs` includes, exporting it as `__private_<major>_<minor>_<patch>` (for 0.1.0:
//! `__private_0_1_0`). `genstage-macros` computes the same name from its own version (all crates
//! of the workspace share one version, and the facade pins both exactly), so expanded code names
//! `::genstage::__private_0_1_0::…`: a macro crate of another release cannot compile against this
//! runtime's hidden items by accident; it fails to find the module instead. A pre-release suffix
//! (`-alpha.1`) is not part of the name.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("cargo did not set OUT_DIR")?);
    let mut name = String::from("__private");
    for part in ["MAJOR", "MINOR", "PATCH"] {
        let key = format!("CARGO_PKG_VERSION_{part}");
        let number = env::var(&key).map_err(|error| format!("{key}: {error}"))?;
        name.push('_');
        name.push_str(&number);
    }
    let module = format!(
        "/// What the `#[stage]` and `pipeline!` macros of this release expand to. Not public API.\n\
         #[doc(hidden)]\n\
         pub mod {name} {{\n    \
             #[doc(hidden)]\n    \
             pub use crate::__private::*;\n\
         }}\n"
    );
    fs::write(out_dir.join("private.rs"), module)?;
    Ok(())
}
