use genstage::prelude::*;

struct Printer;

#[derive(Debug)]
struct Full;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) -> Result<(), Full> {
        let _ = events;
        Err(Full)
    }
}

fn main() {}
