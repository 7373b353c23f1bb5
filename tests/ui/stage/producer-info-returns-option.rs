use genstage::prelude::*;

struct Queue {
    jobs: Vec<u64>,
}

struct Refill(Vec<u64>);

#[stage(producer)]
impl Queue {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let take = demand.min(self.jobs.len());
        self.jobs.drain(..take).collect()
    }

    fn handle_info(&mut self, refill: Refill) -> Option<u64> {
        self.jobs.extend(refill.0);
        self.jobs.first().copied()
    }
}

fn main() {}
