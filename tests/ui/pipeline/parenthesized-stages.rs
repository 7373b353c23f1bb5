// Two stages in parentheses after an arrow, as if that fanned out to both: one error, saying how
// a fan-out is written.
#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let _ = pipeline! { Counter::new() -> (Printer; Printer) };
}
