use genstage::prelude::*;

struct Split;

// The partition function is written, but `dispatcher = partition(2)` is forgotten: the stage
// would route by demand.
#[stage(producer)]
impl Split {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }

    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

fn main() {}
