// A type that handles infos but is no stage (no `Producer`, `ProducerConsumer` or `Consumer`) has
// no events to check its `handle_info` against: sending itself an info does not compile.
use genstage::prelude::*;

struct Loose;
struct Tick;

impl HandleInfo<Tick> for Loose {
    type Emitted = ();
    async fn handle_info(&mut self, _: Tick, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        ctx.info(Tick);
        Ok(())
    }
}

fn main() {}
