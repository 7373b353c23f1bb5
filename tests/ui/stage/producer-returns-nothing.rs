use genstage::prelude::*;

struct Counter {
    next: u64,
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) {
        self.next += demand as u64;
    }
}

fn main() {}
