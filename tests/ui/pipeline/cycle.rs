#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let _ = pipeline! {
        first = Double;
        second = Double;
        Counter::new() -> first -> second -> first;
        second -> Printer;
    };
}
