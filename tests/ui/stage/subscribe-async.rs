use genstage::prelude::*;

/// A consumer that asks for its events itself, written as if `handle_subscribe` could wait.
struct Manual;

#[stage(consumer)]
impl Manual {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    async fn handle_subscribe(&mut self, subscription: &Subscription, ctx: &mut Context<Self>) -> Demand {
        let _ = ctx.ask(subscription.tag(), 10);
        Demand::Manual
    }
}

fn main() {}
