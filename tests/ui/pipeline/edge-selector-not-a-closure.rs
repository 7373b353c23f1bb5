#[allow(dead_code)]
mod stages {
    include!("dispatch-stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let _ = pipeline! { numbers = Numbers -[selector = true]-> Tap };
}
