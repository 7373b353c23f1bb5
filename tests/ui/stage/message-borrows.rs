use genstage::prelude::*;

struct Log {
    lines: Vec<String>,
}

#[stage(consumer)]
impl Log {
    fn handle_events(&mut self, events: Vec<String>) {
        self.lines.extend(events);
    }

    fn handle_cast(&mut self, line: &str) {
        self.lines.push(line.to_owned());
    }
}

fn main() {}
