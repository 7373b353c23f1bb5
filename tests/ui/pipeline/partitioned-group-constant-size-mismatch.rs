// A partitioned stage wired to a group whose size is a constant of another value: the same
// compile-time error as for a literal size, naming the constant.
#[allow(dead_code)]
mod stages {
    include!("dispatch-stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

const TAPS: usize = 3;

fn main() {
    let _ = pipeline! { split = Split -> [Tap; TAPS] };
}
