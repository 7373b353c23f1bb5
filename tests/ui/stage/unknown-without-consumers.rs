use genstage::prelude::*;

struct Broadcaster;

#[stage(producer, dispatcher = broadcast, without_consumers = linger)]
impl Broadcaster {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let _ = demand;
        Vec::new()
    }
}

fn main() {}
