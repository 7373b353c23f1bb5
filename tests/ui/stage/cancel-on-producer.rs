use genstage::prelude::*;
use genstage::CancelReason;

/// A producer that wants to hear of a consumer leaving, with the consumer's callback.
struct Feed;

#[stage(producer)]
impl Feed {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }

    fn handle_cancel(&mut self, subscription: &Subscription, reason: &CancelReason) {
        println!("{:?} ended: {reason:?}", subscription.tag());
    }
}

fn main() {}
