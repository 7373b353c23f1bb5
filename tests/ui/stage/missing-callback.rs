use genstage::prelude::*;

struct Counter {
    next: u64,
}

#[stage(producer)]
impl Counter {
    fn new() -> Self {
        Counter { next: 0 }
    }
}

fn main() {
    let _ = Counter::new().next;
}
