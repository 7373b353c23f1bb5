use genstage::prelude::*;

struct Split;

#[stage(producer, dispatcher = partition(2))]
impl Split {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }
}

fn main() {}
