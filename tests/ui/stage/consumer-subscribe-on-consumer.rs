use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber) {
        println!("{} joined", subscriber.consumer());
    }
}

fn main() {}
