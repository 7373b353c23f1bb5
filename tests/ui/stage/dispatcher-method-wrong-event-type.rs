use genstage::prelude::*;

struct Numbers;

#[stage(producer)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }

    fn dispatcher(&self) -> Dispatch<Self, String> {
        Dispatch::broadcast()
    }
}

fn main() {}
