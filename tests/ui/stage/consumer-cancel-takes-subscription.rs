use genstage::prelude::*;
use genstage::{CancelReason, Subscription};

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

    // The consumer side's `Subscription`, where the producer side is told of a `Subscriber`.
    fn handle_consumer_cancel(&mut self, subscription: &Subscription, reason: &CancelReason) {
        let _ = (subscription, reason);
    }
}

fn main() {}
