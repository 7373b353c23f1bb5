use genstage::prelude::*;

struct Counter {
    next: u64,
}

// `manual` is a consumer's subscription mode (`handle_subscribe`), not a producer's demand mode.
#[stage(producer, demand = manual)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let start = self.next;
        self.next += demand as u64;
        (start..self.next).collect()
    }
}

fn main() {}
