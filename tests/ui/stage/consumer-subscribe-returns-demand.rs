// A producer never takes control of its consumers' demand. In GenStage a producer's
// `handle_subscribe(:consumer, …)` returning `{:manual, state}` compiles, and the producer is
// stopped at run time with a `bad_return_value` (scenarios 60 and 85 of
// genstage-semantics.md §4, for a producer and a producer_consumer); here it does not compile:
// `handle_consumer_subscribe` returns nothing.
use genstage::prelude::*;
use genstage::{Demand, Subscriber};

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

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber) -> Demand {
        let _ = subscriber;
        Demand::Manual
    }
}

fn main() {}
