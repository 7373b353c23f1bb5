use genstage::prelude::*;

/// A consumer in manual demand that keeps the subscription of each batch, taking the tag by
/// reference as `handle_subscribe` takes its `&Subscription`.
struct Merge {
    from: Option<SubscriptionTag>,
}

#[stage(consumer)]
impl Merge {
    fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand {
        let _ = subscription;
        Demand::Manual
    }

    fn batch_from(&mut self, subscription: &SubscriptionTag) {
        self.from = Some(*subscription);
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = (events, self.from);
    }
}

fn main() {}
