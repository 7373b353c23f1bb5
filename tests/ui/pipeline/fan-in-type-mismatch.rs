#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let _ = pipeline! {
        numbers = from_iter(0..10u64);
        words = from_iter(vec![String::from("a")]);
        merge = Forward::new();
        numbers -> merge;
        words -> merge;
        merge -> Printer;
    };
}
