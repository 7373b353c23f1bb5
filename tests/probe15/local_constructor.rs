// A stage expression that calls a local closure: valid before restarts came (the value was
// added), it must still compile. `pipeline!` takes `make` for a function item and moves it into
// an `FnMut + Send + 'static` constructor: an `FnOnce` closure, or one that borrows a local, no
// longer compiles.
use std::sync::{Arc, Mutex};

use genstage::prelude::*;

struct Store(Arc<Mutex<Vec<u64>>>);

#[stage(consumer)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.0.lock().unwrap().extend(events);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    // Borrows `seen`.
    let make = || Store(seen.clone());
    let report = pipeline! { from_iter(0..10u64) -> make() }.run().await.unwrap();
    assert_eq!(report.stage("Store").unwrap().events_in, 10);
    // Moves its capture out: `FnOnce`.
    let s = seen.clone();
    let once = move || Store(s);
    let report = pipeline! { from_iter(0..10u64) -> once() }.run().await.unwrap();
    assert_eq!(report.stage("Store").unwrap().events_in, 10);
}
