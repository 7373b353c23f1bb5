#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    // A bare identifier that names no stage of the pipeline is an ordinary expression (a local
    // variable or a unit struct), so rustc reports the misspelt name.
    let _ = pipeline! {
        numbers = Counter::new();
        numbers -> Printer;
        nubmers -> Printer;
    };
}
