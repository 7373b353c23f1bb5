use genstage::prelude::*;

struct Counter {
    next: u64,
}

#[stage(producer, buffer_size = infinite)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let start = self.next;
        self.next += demand as u64;
        (start..self.next).collect()
    }
}

fn main() {}
