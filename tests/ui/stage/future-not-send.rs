use std::rc::Rc;

use genstage::prelude::*;

struct Printer;

async fn flush() {}

#[stage(consumer)]
impl Printer {
    async fn handle_events(&mut self, events: Vec<u64>) {
        let shared = Rc::new(events);
        flush().await;
        let _ = shared;
    }
}

fn main() {}
