// A rejected `#[stage]` named in `pipeline!` keeps a reference that takes messages (`call`, `cast`,
// ...) as a valid stage's does: the one error is under the stage's mistake, `&[u64]`, not a second
// one, naming genstage's hidden module, at each message sent through the name.
use std::time::Duration;

use genstage::prelude::*;

struct Total;
struct Reset;

struct Sum(u64);

#[stage(consumer)]
impl Sum {
    fn handle_events(&mut self, events: &[u64]) {
        self.0 += events.iter().sum::<u64>();
    }

    fn handle_call(&mut self, _: Total, reply: ReplyTo<u64>) {
        reply.reply(self.0);
    }

    fn handle_cast(&mut self, _: Reset) {
        self.0 = 0;
    }
}

async fn total() -> Result<(), Box<dyn std::error::Error>> {
    let p = pipeline! { from_iter(0..10u64) -> sum = Sum(0) };
    let sum = p.sum.clone();
    let _running = p.start();
    let so_far: u64 = sum.call_timeout(Total, Duration::from_secs(1)).await?;
    println!("{so_far}");
    sum.cast(Reset)?;
    Ok(())
}

fn main() {
    let _ = total();
}
