#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -> Double -> Counter::new() -> Printer };
}
