#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    // `from_stream` takes a `Stream`; a range is an iterator (`from_iter` takes it). Reported
    // once, under the call: not again under the argument, nor under `Printer`.
    let _ = pipeline! { from_stream(0..3u64) -> Printer };
}
