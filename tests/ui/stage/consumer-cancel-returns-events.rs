use genstage::prelude::*;
use genstage::{CancelReason, Subscription};

struct Collector {
    held: Vec<u64>,
}

#[stage(consumer)]
impl Collector {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.held.extend(events);
    }

    fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason) -> Vec<u64> {
        let _ = (subscription, reason);
        std::mem::take(&mut self.held)
    }
}

fn main() {}
