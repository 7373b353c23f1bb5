use genstage::prelude::*;

/// An event that cannot be copied.
struct Job(u64);

struct Jobs;

#[stage(producer, dispatcher = broadcast)]
impl Jobs {
    fn handle_demand(&mut self, demand: usize) -> Vec<Job> {
        (0..demand as u64).map(Job).collect()
    }
}

fn main() {}
