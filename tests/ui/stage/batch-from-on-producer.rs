use genstage::prelude::*;

/// A producer that would like to know where its demand came from: that is its consumers' side.
struct Numbers {
    next: u64,
    last_from: Option<SubscriptionTag>,
}

#[stage(producer)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let start = self.next;
        self.next += demand as u64;
        (start..self.next).collect()
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.last_from = Some(subscription);
    }
}

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {
    let _ = pipeline! { Numbers { next: 0, last_from: None } -> Printer };
}
