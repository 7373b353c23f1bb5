// A consumer emits no events: the `handle_info` of an info it sends itself through its `Context`
// returns `()`, not events, or the send does not compile.
use genstage::prelude::*;

struct Tally;
struct Tick;
struct Begin;

impl Consumer for Tally {
    type Input = u64;
    async fn handle_events(&mut self, _events: Vec<u64>) -> StageResult<()> {
        Ok(())
    }
}

impl HandleInfo<Tick> for Tally {
    type Emitted = Vec<u64>;
    async fn handle_info(&mut self, _: Tick, _: &mut Context<'_, Self>) -> StageResult<Vec<u64>> {
        Ok(vec![1])
    }
}

impl HandleInfo<Begin> for Tally {
    type Emitted = ();
    async fn handle_info(&mut self, _: Begin, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        ctx.info_after(std::time::Duration::from_millis(10), Tick);
        Ok(())
    }
}

fn main() {}
