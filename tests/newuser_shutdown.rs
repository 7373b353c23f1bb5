//! A new user's client that keeps casting to a stage while its pipeline shuts down, written from
//! the README and the rustdoc only: what the client gets back, whether every accepted message is
//! handled, and whether the error names the stage.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;
use tokio::sync::Semaphore;

/// Add a number to the counter's output.
struct Add(u64);

/// Ask how many numbers the counter took.
struct HowMany;

/// A producer fed only by casts.
#[derive(Default)]
struct Counter {
    took: usize,
}

#[stage(producer, buffer_size = infinity)]
impl Counter {
    fn handle_demand(&mut self, _demand: usize) -> Vec<u64> {
        Vec::new()
    }

    fn handle_cast(&mut self, add: Add) -> Vec<u64> {
        self.took += 1;
        vec![add.0]
    }

    fn handle_call(&mut self, _request: HowMany, reply: ReplyTo<usize>) {
        reply.reply(self.took);
    }
}

/// A note cast to the sink.
struct Note(&'static str);

/// A consumer that handles a batch only once the test lets it (one permit per batch).
struct Sink {
    gate: Arc<Semaphore>,
    got: Arc<Mutex<Vec<u64>>>,
    notes: Arc<Mutex<Vec<&'static str>>>,
}

// A small demand, so that the counter holds what the sink has not asked for yet.
#[stage(consumer, max_demand = 2, min_demand = 1)]
impl Sink {
    async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), String> {
        let permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
        permit.forget();
        self.got.lock().expect("poisoned").extend(events);
        Ok(())
    }

    fn handle_cast(&mut self, note: Note) {
        self.notes.lock().expect("poisoned").push(note.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_casting_through_a_shutdown() -> Result<(), Box<dyn std::error::Error>> {
    let gate = Arc::new(Semaphore::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let notes = Arc::new(Mutex::new(Vec::new()));
    let p = pipeline! {
        counter = Counter::default()
            -> sink = Sink { gate: gate.clone(), got: got.clone(), notes: notes.clone() }
    };
    let counter = p.counter.clone();
    let sink = p.sink.clone();
    let running = p.start();

    // The client casts until it is refused, and keeps what was accepted.
    let accepted_count = Arc::new(AtomicUsize::new(0));
    let client = tokio::spawn({
        let counter = counter.clone();
        let accepted_count = accepted_count.clone();
        async move {
            let mut accepted = Vec::new();
            for n in 0u64.. {
                match counter.cast(Add(n)) {
                    Ok(()) => {
                        accepted.push(n);
                        accepted_count.store(accepted.len(), Ordering::Release);
                    }
                    Err(refused) => return (accepted, refused),
                }
                tokio::task::yield_now().await;
            }
            unreachable!("the counter refuses a cast once it shuts down")
        }
    });

    while accepted_count.load(Ordering::Acquire) < 200 {
        tokio::task::yield_now().await;
    }
    // The sink is held in its first batch and asks for 2 at a time, so the counter holds the
    // rest and cannot finish delivering: the shutdown stays under way until the gate opens.
    let shutdown = tokio::spawn(running.shutdown());
    let (accepted, refused) = tokio::time::timeout(Duration::from_secs(5), client).await??;
    assert_eq!(
        refused,
        CallError::ShuttingDown {
            stage: "counter".into()
        }
    );
    assert_eq!(
        refused.to_string(),
        "stage `counter` is shutting down: it takes no more messages from outside"
    );
    // A call is refused the same way.
    assert_eq!(
        counter.call(HowMany).await,
        Err(CallError::ShuttingDown {
            stage: "counter".into()
        })
    );
    // The sink, a consumer, takes messages until it ends.
    sink.cast(Note("still there?"))?;

    gate.add_permits(1_000_000);
    let report = shutdown.await??;

    // Every accepted cast was handled, in order.
    assert_eq!(*got.lock().expect("poisoned"), accepted);
    assert_eq!(*notes.lock().expect("poisoned"), ["still there?"]);
    let counter_report = report.stage("counter").expect("counter in the report");
    assert_eq!(counter_report.emitted, accepted.len() as u64);
    assert_eq!(counter_report.status, StageStatus::ShutDown);
    assert_eq!(report.totals().lost, 0);
    assert!(report.balanced(), "{report}");

    // Once ended, the stages say so.
    assert_eq!(
        counter.cast(Add(0)),
        Err(CallError::Ended {
            stage: "counter".into()
        })
    );
    assert_eq!(
        sink.cast(Note("gone")),
        Err(CallError::Ended {
            stage: "sink".into()
        })
    );
    Ok(())
}

/// A consumer that keeps up: it asks for 1000 at a time, so the counter holds nothing.
struct Quick {
    got: Arc<Mutex<Vec<u64>>>,
}

#[stage(consumer)]
impl Quick {
    fn handle_events(&mut self, events: Vec<u64>) {
        self.got.lock().expect("poisoned").extend(events);
    }
}

/// A counter that holds nothing ends as soon as the shutdown reaches it: its client then sees
/// `Ended` as often as `ShuttingDown`, both naming it, and every cast it got accepted is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_a_counter_that_holds_nothing() -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..20 {
        let got = Arc::new(Mutex::new(Vec::new()));
        let p = pipeline! { counter = Counter::default() -> Quick { got: got.clone() } };
        let counter = p.counter.clone();
        let running = p.start();
        let accepted_count = Arc::new(AtomicUsize::new(0));
        let client = tokio::spawn({
            let accepted_count = accepted_count.clone();
            async move {
                let mut accepted = Vec::new();
                for n in 0u64.. {
                    match counter.cast(Add(n)) {
                        Ok(()) => {
                            accepted.push(n);
                            accepted_count.store(accepted.len(), Ordering::Release);
                        }
                        Err(refused) => return (accepted, refused),
                    }
                    tokio::task::yield_now().await;
                }
                unreachable!("the counter refuses a cast once it shuts down")
            }
        });
        while accepted_count.load(Ordering::Acquire) < 20 {
            tokio::task::yield_now().await;
        }
        let report = running.shutdown().await?;
        let (accepted, refused) = tokio::time::timeout(Duration::from_secs(5), client).await??;
        let stage = "counter".to_string();
        assert!(
            refused
                == CallError::ShuttingDown {
                    stage: stage.clone()
                }
                || refused == CallError::Ended { stage },
            "{refused:?}"
        );
        assert_eq!(*got.lock().expect("poisoned"), accepted);
        assert_eq!(
            report.stage("counter").map(|s| s.emitted),
            Some(accepted.len() as u64)
        );
        assert!(report.balanced(), "{report}");
    }
    Ok(())
}
