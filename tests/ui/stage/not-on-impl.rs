use genstage::prelude::*;

#[stage(consumer)]
struct Printer;

fn main() {}
