// A unit struct that is not a stage, behind an edge whose literal `max_demand` is checked against
// the consumer's `min_demand`: reported once, by the node, not again by the demand check.
use genstage::prelude::*;

struct Printer;

fn main() {
    let _ = pipeline! { from_iter(0..3u64) -[max_demand = 4]-> Printer };
}
