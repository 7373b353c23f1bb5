use genstage::prelude::*;

struct Scale {
    factor: u64,
}

#[stage(producer_consumer)]
impl Scale {
    fn handle_events(&mut self, events: Vec<u64>) -> Vec<u64> {
        events.into_iter().map(|n| n * self.factor).collect()
    }

    fn handle_cast(&mut self, numerator: u64, denominator: u64) {
        self.factor = numerator / denominator;
    }
}

fn main() {}

// The stage's one mistake is not reported again where it is cast to.
fn rescale(scale: &genstage::ProducerConsumerRef<Scale>) -> Result<(), CallError> {
    scale.cast(3u64)
}
