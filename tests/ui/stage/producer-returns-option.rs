use genstage::prelude::*;

struct Counter {
    next: u64,
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Option<Vec<u64>> {
        let start = self.next;
        self.next += demand as u64;
        Some((start..self.next).collect())
    }
}

fn main() {}
