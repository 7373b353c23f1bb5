use genstage::prelude::*;

struct Ticker;

struct Tick;

#[stage(consumer)]
impl Ticker {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_info(&self, tick: Tick) {
        let _ = tick;
    }
}

fn main() {}

// The stage's one mistake is not reported again where it is sent an info.
fn tick(ticker: &genstage::ConsumerRef<Ticker>) -> Result<(), CallError> {
    ticker.info(Tick)
}
