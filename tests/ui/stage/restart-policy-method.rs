use std::time::Duration;

use genstage::prelude::*;

struct Store;

// The policy belongs in the attribute (`restart = transient, max_restarts = 10`); a method by the
// role trait's name would never be called, and the stage would keep the default, temporary.
#[stage(consumer)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) -> Result<(), String> {
        let _ = events;
        Ok(())
    }

    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient().max_restarts(10, Duration::from_secs(5))
    }
}

fn main() {}
