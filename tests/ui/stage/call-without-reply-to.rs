use genstage::prelude::*;

struct Counter {
    count: u64,
}

struct Get;

#[stage(consumer)]
impl Counter {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.count += events.len() as u64;
    }

    fn handle_call(&mut self, request: Get) -> u64 {
        let _ = request;
        self.count
    }
}

fn main() {
    let _ = pipeline! { from_iter(0..10u64) -> Counter { count: 0 } };
}

// The stage's one mistake is not reported again where it is called: the answer is what
// `handle_call` returns.
async fn ask(counter: genstage::ConsumerRef<Counter>) -> Result<u64, CallError> {
    counter.call(Get).await
}
