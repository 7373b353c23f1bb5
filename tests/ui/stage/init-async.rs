use genstage::prelude::*;

/// A consumer that connects to its database as it starts, written as GenStage's `init` would be.
struct Store {
    connected: bool,
}

#[stage(consumer)]
impl Store {
    async fn init(&mut self) {
        self.connected = true;
    }

    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = (events, self.connected);
    }
}

fn main() {}
