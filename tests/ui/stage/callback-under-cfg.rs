use genstage::prelude::*;

/// A consumer that prints its events only in debug builds, written with two definitions.
struct Printer;

#[stage(consumer)]
impl Printer {
    #[cfg(debug_assertions)]
    fn handle_events(&mut self, events: Vec<u64>) {
        println!("{events:?}");
    }

    #[cfg(not(debug_assertions))]
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {}
