// `SubscribeOptions` and `ProducerOptions` are `#[non_exhaustive]`, so that options can be added
// later: they are built with `SubscribeOptions::new()` and the setters, not with a struct literal.
use genstage::{CancelMode, SubscribeOptions};

fn main() {
    let _ = SubscribeOptions {
        max_demand: Some(10),
        min_demand: Some(5),
        cancel: Some(CancelMode::Temporary),
    };
}
