use genstage::prelude::*;
use genstage::ReplyTo;

struct Store {
    events: Vec<u64>,
}

#[stage(consumer)]
impl Store {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.events.extend(events);
    }

    fn handle_call<M: std::fmt::Debug>(&mut self, request: M, reply: ReplyTo<usize>) {
        println!("{request:?}");
        reply.reply(self.events.len());
    }
}

fn main() {}
