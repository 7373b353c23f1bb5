use genstage::prelude::*;

/// A GenStage port taking two messages with two `handle_cast` clauses.
struct Log {
    lines: Vec<String>,
}

struct Note(String);
struct Clear;

#[stage(consumer)]
impl Log {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }

    fn handle_cast(&mut self, note: Note) {
        self.lines.push(note.0);
    }

    fn handle_cast(&mut self, _clear: Clear) {
        self.lines.clear();
    }
}

fn main() {}
