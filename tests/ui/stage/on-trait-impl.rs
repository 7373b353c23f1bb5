use genstage::prelude::*;

struct Printer;

#[stage(consumer)]
impl Consumer for Printer {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        let _ = events;
        Ok(())
    }
}

fn main() {}
