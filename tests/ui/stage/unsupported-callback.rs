use genstage::prelude::*;

struct Numbers {
    next: u64,
}

#[stage(producer, buffer_size = 10)]
impl Numbers {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        let start = self.next;
        self.next += demand as u64;
        (start..self.next).collect()
    }

    fn format_discarded(&mut self, discarded: usize) -> bool {
        eprintln!("discarded {discarded}");
        false
    }
}

struct Printer;

#[stage(consumer)]
impl Printer {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

fn main() {
    let _ = pipeline! { Numbers { next: 0 } -> Printer };
}
