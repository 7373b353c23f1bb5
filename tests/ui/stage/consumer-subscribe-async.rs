use genstage::prelude::*;

/// A producer told of its consumers, written as if `handle_consumer_subscribe` could wait.
struct Feed;

#[stage(producer)]
impl Feed {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }

    async fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber) {
        println!("{} joined", subscriber.consumer());
    }
}

fn main() {}
