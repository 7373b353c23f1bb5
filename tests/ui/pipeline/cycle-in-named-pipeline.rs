// A pipeline the macro rejects (here, for a cycle) still has its named stages' fields: the code
// that uses them gives no second error.
#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let p = pipeline! {
        numbers = Counter::new() -> first = Double -> second = Double -> first;
        second -> Printer;
    };
    let first = p.first.clone();
    let _ = first.name();
    let _ = p.stage_names();
    let _ = p.run();
}
