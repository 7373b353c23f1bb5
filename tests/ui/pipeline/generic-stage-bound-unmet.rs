#[allow(dead_code)]
mod stages {
    include!("stages.rs.in");
}
use genstage::prelude::*;
use std::fmt::Display;
use std::marker::PhantomData;
#[allow(unused_imports)]
use stages::*;

/// Shows events of any type that implements `Display`.
struct Show<T>(PhantomData<T>);

#[stage(producer_consumer)]
impl<T: Display + Send + 'static> Show<T> {
    fn handle_events(&mut self, events: Vec<T>) -> Vec<String> {
        events.iter().map(|event| event.to_string()).collect()
    }
}

/// No `Display`.
#[derive(Debug)]
struct Point(u64);

fn main() {
    // `Show<Point>` is not a stage, since `Point` is not `Display`: one error, under it, not a
    // second one saying that it is a consumer, nor a third under `Shout`.
    let _ = pipeline! {
        from_iter((0..3u64).map(Point)) -> Show::<Point>(PhantomData) -> Shout
    };
}
