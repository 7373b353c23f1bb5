use genstage::prelude::*;

/// An event that cannot be copied.
struct Job(u64);

struct Worker;

#[stage(consumer, restart = transient, redeliver)]
impl Worker {
    fn handle_events(&mut self, jobs: Vec<Job>) {
        for Job(id) in jobs {
            let _ = id;
        }
    }
}

fn main() {}
