// A producer standing alone that does not wait for consumers (`without_consumers = stop`, the
// default): its events would go nowhere, and it would stop at once.
use genstage::prelude::*;

struct Ticks;

#[stage(producer)]
impl Ticks {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }
}

fn main() {
    let _ = pipeline! { ticks = Ticks };
}
