use genstage::prelude::*;
use genstage::StageStatus;

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn terminate(&mut self, status: StageStatus) {
        println!("ended: {status:?}");
    }
}

fn main() {}
