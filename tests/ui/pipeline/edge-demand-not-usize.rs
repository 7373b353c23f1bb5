#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let ten = 10u32;
    let _ = pipeline! { Counter::new() -[max_demand = ten]-> Printer };
}
