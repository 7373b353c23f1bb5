// A broadcaster that waits for its first consumer, written alone in `pipeline!` (a chat room that
// users join later): the macro refuses a stage with no consumer, and says where such a producer is
// written instead.
use genstage::prelude::*;

#[derive(Clone)]
struct Line(String);

struct Room;

#[stage(producer, dispatcher = broadcast, without_consumers = wait)]
impl Room {
    fn handle_demand(&mut self, _demand: usize) -> Vec<Line> {
        Vec::new()
    }
}

fn main() {
    let _ = pipeline! { room = Room };
}
