use genstage::prelude::*;

/// A producer of any event type: broadcasting needs `T: Clone`, which the block does not ask.
struct Source<T> {
    items: Vec<T>,
}

#[stage(producer, dispatcher = broadcast)]
impl<T: Send + 'static> Source<T> {
    fn handle_demand(&mut self, demand: usize) -> Vec<T> {
        let n = demand.min(self.items.len());
        self.items.drain(..n).collect()
    }
}

fn main() {}
