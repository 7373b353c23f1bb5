use genstage::prelude::*;

struct Printer<'a> {
    prefix: &'a str,
}

#[stage(consumer)]
impl<'a> Printer<'a> {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = (self.prefix, events);
    }
}

fn main() {}
