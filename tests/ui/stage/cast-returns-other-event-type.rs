// A message callback returning events of another type than the stage emits: the error says which
// type it emits, and no help claims the conversion "is implemented" for the wrong one.
use genstage::prelude::*;

struct Line(String);
struct Flush;

struct Parse;

#[stage(producer_consumer)]
impl Parse {
    fn handle_events(&mut self, raw: Vec<String>) -> Vec<Line> {
        raw.into_iter().map(Line).collect()
    }

    fn handle_cast(&mut self, _flush: Flush) -> Vec<String> {
        Vec::new()
    }
}

fn main() {}
