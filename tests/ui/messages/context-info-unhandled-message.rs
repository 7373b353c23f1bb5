// A stage that sends itself, through its `Context`, an info of a type it does not handle gets the
// same error as through its handle, also when it handles infos of exactly one other type: the error
// is the stage's, not a mismatch with that type.
use genstage::prelude::*;

struct Ticker;
struct Tick;
struct Other;

impl Producer for Ticker {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
}

impl HandleInfo<Tick> for Ticker {
    type Emitted = ();
    async fn handle_info(&mut self, _: Tick, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        ctx.info(Other);
        Ok(())
    }
}

fn main() {}
