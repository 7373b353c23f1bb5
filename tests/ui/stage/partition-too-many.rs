use genstage::prelude::*;

struct Split;

#[stage(producer, dispatcher = partition(100000))]
impl Split {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }

    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

fn main() {}
