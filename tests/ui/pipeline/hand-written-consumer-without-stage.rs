#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
#[allow(unused_imports)]
use stages::*;

/// A consumer written against the role trait by hand, without `impl Stage`.
struct Sink;

impl Consumer for Sink {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

fn main() {
    let _ = pipeline! { Counter::new() -> Sink };
}
