use genstage::prelude::*;

/// A consumer that keeps the subscription of each batch, written `async` as `handle_events` may be.
struct Merge {
    from: Option<SubscriptionTag>,
}

#[stage(consumer)]
impl Merge {
    async fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.from = Some(subscription);
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = (events, self.from);
    }
}

fn main() {}
