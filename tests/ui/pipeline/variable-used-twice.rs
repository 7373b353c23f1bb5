#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

// A variable holds one stage: fan-in through it needs a name, `double = double;`.
fn main() {
    let double = Double;
    let _ = pipeline! {
        Counter::new() -> double -> Printer;
        Counter::new() -> double -> Printer;
    };
}
