use genstage::prelude::*;

struct Numbers {
    next: u64,
}

#[stage(producer, restart = transient, redeliver)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let events = (self.next..self.next + demand as u64).collect();
        self.next += demand as u64;
        events
    }
}

fn main() {}
