use genstage::prelude::*;
use genstage::{CancelReason, Subscriber};

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_consumer_cancel(&mut self, subscriber: &Subscriber, reason: &CancelReason) {
        println!("{} left: {reason:?}", subscriber.consumer());
    }
}

fn main() {}
