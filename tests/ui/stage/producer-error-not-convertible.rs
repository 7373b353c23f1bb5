use genstage::prelude::*;

struct Counter {
    next: u64,
}

#[derive(Debug)]
struct Exhausted;

#[stage(producer)]
impl Counter {
    fn handle_demand(&mut self, demand: usize) -> Result<Vec<u64>, Exhausted> {
        if self.next > 100 {
            return Err(Exhausted);
        }
        let start = self.next;
        self.next += demand as u64;
        Ok((start..self.next).collect())
    }
}

fn main() {}
