#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    // `from_iter` takes an iterable; `5u64` is not one. Reported once, under the call: not again
    // under `Printer`, whose edge reads the producer's events.
    let _ = pipeline! { from_iter(5u64) -> Printer };
}
