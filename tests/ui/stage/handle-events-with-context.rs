// A manual-demand consumer wants to ask from `handle_events`, and gives it a context as the
// message callbacks have: it gets none, and the error says where its asks go instead.
use genstage::prelude::*;
use genstage::Subscription;

struct Limiter;

#[stage(consumer, max_demand = 3)]
impl Limiter {
    fn handle_subscribe(&mut self, subscription: &Subscription) -> Demand {
        let _ = subscription;
        Demand::Manual
    }

    fn handle_events(&mut self, events: Vec<String>, ctx: &mut Context<Self>) {
        let _ = (events, ctx);
    }
}

fn main() {}
