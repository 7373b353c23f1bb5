use genstage::prelude::*;
use genstage::CancelReason;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_cancel(&mut self, reason: &CancelReason) {
        println!("cancelled: {reason:?}");
    }
}

fn main() {}
