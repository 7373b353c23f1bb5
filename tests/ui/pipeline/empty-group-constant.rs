#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

const Z: usize = 0;

fn main() {
    let _ = pipeline! { Counter::new() -> [Printer; Z] };
}
