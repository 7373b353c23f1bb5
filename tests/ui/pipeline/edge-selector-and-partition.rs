#[allow(dead_code)]
mod stages {
    include!("dispatch-stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let _ = pipeline! { numbers = Numbers -[selector = |n: &u64| n % 3 == 0, partition = 0]-> Tap };
}
