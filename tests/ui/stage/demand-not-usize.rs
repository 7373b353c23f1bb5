use genstage::prelude::*;

struct Counter {
    next: u64,
}

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: u32) -> Vec<u64> {
        let start = self.next;
        self.next += u64::from(demand);
        (start..self.next).collect()
    }
}

fn main() {}
