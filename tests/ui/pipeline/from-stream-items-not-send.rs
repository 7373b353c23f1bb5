#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use std::rc::Rc;

use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

fn main() {
    // A `Stream` whose items are not `Send`: the error must not say that it is not a `Stream`.
    let _ = pipeline! { from_stream(futures::stream::iter(vec![Rc::new(1u64)])) -> Printer };
}
