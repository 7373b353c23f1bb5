use genstage::prelude::*;

/// A producer of batches of any type: `Vec<T>` is `Clone` only if `T` is.
struct Batches<T> {
    items: Vec<Vec<T>>,
}

#[stage(producer, dispatcher = broadcast)]
impl<T: Send + 'static> Batches<T> {
    fn handle_demand(&mut self, demand: usize) -> Vec<Vec<T>> {
        let n = demand.min(self.items.len());
        self.items.drain(..n).collect()
    }
}

fn main() {}
