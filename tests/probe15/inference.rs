// Stage expressions whose types rustc infers from the rest of the pipeline: they compiled before
// restarts came, and must still.
use genstage::prelude::*;

struct Count;

#[stage(consumer)]
impl Count {
    fn handle_events(&mut self, events: Vec<u64>) {
        let _ = events;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let report = pipeline! { from_iter(0..10) -> Count }.run().await.unwrap();
    assert_eq!(report.stage("Count").unwrap().events_in, 10);
    let report = pipeline! { from_iter([1, 2, 3]) -> Count }.run().await.unwrap();
    assert_eq!(report.stage("Count").unwrap().events_in, 3);
    let report = pipeline! { from_iter((0..4).map(|n| n * 2)) -> Count }.run().await.unwrap();
    assert_eq!(report.stage("Count").unwrap().events_in, 4);
}
