// A pipeline with a syntax error still has its named stages' fields: the code that uses them
// gives no second error.
#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    let p = pipeline! { numbers = Counter::new() -> Printer Printer; printers = [Printer; 2] };
    let numbers = p.numbers.clone();
    let _ = p.printers.len();
    let _ = numbers.name();
    let _ = p.start();
}
