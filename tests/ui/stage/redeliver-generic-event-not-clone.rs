use genstage::prelude::*;

/// A consumer of any event type: redelivery needs `T: Clone`, which the block does not ask.
struct Store<T>(std::marker::PhantomData<T>);

#[stage(consumer, restart = transient, redeliver)]
impl<T: Send + 'static> Store<T> {
    fn handle_events(&mut self, events: Vec<T>) {
        drop(events);
    }
}

fn main() {}
