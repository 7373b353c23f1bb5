use genstage::prelude::*;
use genstage::{CancelReason, Subscriber};

struct Numbers {
    next: u64,
}

#[stage(producer)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let start = self.next;
        self.next += demand as u64;
        (start..self.next).collect()
    }

    // A producer ends from `handle_demand`, not when a consumer leaves: `Vec<T>` here.
    fn handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason) -> Emit<u64> {
        let _ = (subscriber, reason);
        Emit::last(vec![self.next])
    }
}

fn main() {}
