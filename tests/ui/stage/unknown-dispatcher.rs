use genstage::prelude::*;

struct Numbers;

#[stage(producer, dispatcher = round_robin)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }
}

fn main() {}
