#[allow(dead_code)]
mod stages {
    include!("dispatch-stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let _ = pipeline! { numbers = Plain -[selector = |n: &u64| n % 3 == 0]-> Tap };
}
