use genstage::prelude::*;

/// Two stages in one file, each with a `handle_call`: each expansion has its own conversion of the
/// call's value, and the error names this stage's.
struct Jobs;
struct Other;
struct Count;

#[stage(producer)]
impl Jobs {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }

    fn handle_call(&mut self, _count: Count, reply: ReplyTo<usize>) -> usize {
        reply.reply(0);
        0
    }
}

#[stage(producer)]
impl Other {
    fn handle_demand(&mut self, demand: usize) -> Vec<u64> {
        (0..demand as u64).collect()
    }

    fn handle_call(&mut self, _count: Count, reply: ReplyTo<usize>) {
        reply.reply(1);
    }
}

fn main() {}
