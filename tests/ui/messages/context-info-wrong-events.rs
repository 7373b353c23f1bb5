// A stage that sends itself an info through its `Context` must handle it with a `handle_info` that
// returns the stage's events: here a producer of `u64` whose hand-written `handle_info` for `Wrong`
// returns `String`s. Its handle refuses `info(Wrong)`; so does its context, at compile time.
use genstage::prelude::*;

struct Mistyped;
struct Wrong;
struct Start;

impl Producer for Mistyped {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
}

impl HandleInfo<Wrong> for Mistyped {
    type Emitted = Vec<String>;
    async fn handle_info(
        &mut self,
        _: Wrong,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<String>> {
        Ok(vec!["not a u64".to_owned()])
    }
}

impl HandleCast<Start> for Mistyped {
    type Emitted = Emit<u64>;
    async fn handle_cast(
        &mut self,
        _: Start,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Emit<u64>> {
        ctx.info(Wrong);
        Ok(Emit::more(Vec::new()))
    }
}

fn main() {}
