// A borrowed event type: one error from #[stage], under the borrow, and none where the stage is
// used (left to rustc, it was "missing lifetime in associated type", in genstage's source).
use genstage::prelude::*;

struct Line(String);

struct Print;

#[stage(consumer)]
impl Print {
    fn handle_events(&mut self, lines: Vec<&Line>) {
        let _ = lines;
    }
}

fn main() {
    let _ = pipeline! { from_iter(vec![Line(String::new())]) -> Print };
}
