//! A new user's chat room, written from the README and the rustdoc only: a broadcaster that
//! starts with nobody in the room (`without_consumers = wait`), users who join and leave through
//! the running pipeline's handle, one of them with a selector, messages said while the room is
//! empty kept for the next to join, and a graceful shutdown that drains with a balanced report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::prelude::*;

/// A line said in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    from: &'static str,
    text: &'static str,
}

/// Say something in the room: answered once the line is dispatched (to the users in the room,
/// or kept in the room's buffer while nobody is there).
struct Say(Line);

/// The room: it broadcasts what is said to every user in it, and keeps what is said while
/// nobody is in it.
struct Room;

#[stage(producer, dispatcher = broadcast, without_consumers = wait)]
impl Room {
    fn handle_demand(&mut self, _demand: usize) -> Vec<Line> {
        Vec::new() // the room only repeats what is said
    }

    fn handle_call(&mut self, request: Say, reply: ReplyTo<()>) -> Vec<Line> {
        reply.reply(());
        vec![request.0]
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// A user in the room: what it heard, as `from: text`.
struct User {
    heard: Log,
}

#[stage(consumer)]
impl User {
    fn handle_events(&mut self, lines: Vec<Line>) {
        let mut heard = self.heard.lock().expect("log poisoned");
        heard.extend(lines.iter().map(|l| format!("{}: {}", l.from, l.text)));
    }
}

fn line(from: &'static str, text: &'static str) -> Say {
    Say(Line { from, text })
}

fn heard(log: &Log) -> Vec<String> {
    log.lock().expect("log poisoned").clone()
}

/// Waits (within 5 s) until `log` holds `n` lines, and returns them.
async fn heard_n(log: &Log, n: usize) -> Vec<String> {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while log.lock().expect("log poisoned").len() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "expected {n} lines, heard {:?}", heard(log));
    heard(log)
}

/// Adds the user `name` to the running room; returns it, and what it will hear.
async fn user(
    running: &PipelineHandle,
    name: &str,
) -> Result<(ConsumerRef<User>, Log), PipelineError> {
    let heard = Log::default();
    let user = running
        .add_consumer_named(
            name,
            User {
                heard: heard.clone(),
            },
        )
        .await?;
    Ok((user, heard))
}

/// Why a stage discarded events, read with the prelude's names only.
fn discards(stage: &StageReport) -> Vec<(u64, DiscardReason)> {
    stage.discards.iter().map(|d| (d.count, d.reason)).collect()
}

/// Why a stage lost events, read with the prelude's names only.
fn losses(stage: &StageReport) -> Vec<(u64, LossReason)> {
    stage.losses.iter().map(|l| (l.count, l.reason)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_join_and_leave_a_running_room() -> Result<(), Box<dyn std::error::Error>> {
    let mut pipeline = Pipeline::new();
    let room = pipeline.add_producer_named("room", Room);
    // Nobody in the room: `start` accepts it, as the room waits for consumers.
    let running = pipeline.start();

    // Said while nobody is in the room: kept for the next to join.
    room.call(line("sys", "welcome")).await?;
    room.call(line("sys", "rules: be nice")).await?;
    assert_eq!(room.estimate_buffered_count().await?, 2);

    // Alice joins, and hears what was said before.
    let (alice, alice_log) = user(&running, "alice").await?;
    let alice_in = running.subscribe(&room, &alice).await?;
    assert_eq!(
        heard_n(&alice_log, 2).await,
        ["sys: welcome", "sys: rules: be nice"]
    );

    // Bob joins, hearing only what mentions him.
    let (bob, bob_log) = user(&running, "bob").await?;
    let bob_in = running
        .subscribe_selected(&room, &bob, SubscribeOptions::new(), |l: &Line| {
            l.text.contains("bob")
        })
        .await?;
    room.call(line("alice", "hi bob")).await?;
    room.call(line("alice", "anyone else?")).await?;
    assert_eq!(
        heard_n(&alice_log, 4).await,
        [
            "sys: welcome",
            "sys: rules: be nice",
            "alice: hi bob",
            "alice: anyone else?"
        ]
    );
    assert_eq!(heard_n(&bob_log, 1).await, ["alice: hi bob"]);

    // Alice leaves; what is said next reaches bob only (if it mentions him).
    running.cancel(alice_in).await?;
    room.call(line("carol", "bob, are you there?")).await?;
    room.call(line("carol", "hello?")).await?;
    assert_eq!(
        heard_n(&bob_log, 2).await,
        ["alice: hi bob", "carol: bob, are you there?"]
    );

    // Bob leaves too: the room is empty again, and keeps what is said.
    running.cancel(bob_in).await?;
    room.call(line("carol", "I'll wait")).await?;
    room.call(line("carol", "still waiting")).await?;
    assert_eq!(room.estimate_buffered_count().await?, 2);

    // Dave joins and hears what was said while the room was empty, in order.
    let (dave, dave_log) = user(&running, "dave").await?;
    running.subscribe(&room, &dave).await?;
    room.call(line("dave", "sorry, I'm late")).await?;

    // A graceful shutdown delivers everything said.
    let report = running.shutdown().await?;
    assert_eq!(
        heard(&dave_log),
        [
            "carol: I'll wait",
            "carol: still waiting",
            "dave: sorry, I'm late"
        ]
    );
    assert_eq!(heard(&alice_log).len(), 4);
    assert_eq!(heard(&bob_log).len(), 2);

    let room_report = report.stage("room").expect("room in the report");
    assert_eq!(room_report.emitted, 9);
    assert_eq!(room_report.status, StageStatus::ShutDown);
    // Handled: alice 4, bob 2, dave 3 = 9 deliveries; bob's selector rejected 2 lines while
    // alice heard them, and the 'hello?' that nobody but bob (who rejected it) was there for is
    // discarded.
    assert_eq!(report.stage("alice").map(|s| s.events_in), Some(4));
    assert_eq!(report.stage("bob").map(|s| s.events_in), Some(2));
    assert_eq!(report.stage("dave").map(|s| s.events_in), Some(3));
    assert_eq!(room_report.lost, 0);
    assert_eq!(room_report.discarded, 1);
    assert_eq!(discards(room_report), [(1, DiscardReason::Unrouted)]);
    assert_eq!(room_report.copies, 1); // 'hi bob' went to two users
    assert!(report.balanced(), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_with_nobody_in_the_room_counts_what_waits_as_lost(
) -> Result<(), Box<dyn std::error::Error>> {
    let mut pipeline = Pipeline::new();
    let room = pipeline.add_producer_named("room", Room);
    let running = pipeline.start();
    room.call(line("sys", "is anyone there?")).await?;
    room.call(line("sys", "hello?")).await?;

    let report = running.shutdown().await?;
    let room_report = report.stage("room").expect("room in the report");
    assert_eq!(room_report.emitted, 2);
    assert_eq!(room_report.lost, 2);
    assert_eq!(losses(room_report), [(2, LossReason::Buffered)]);
    assert_eq!(room_report.status, StageStatus::ShutDown);
    assert!(report.balanced(), "{report}");
    Ok(())
}

// The same room declared with `pipeline!`: a producer that waits for consumers may stand alone
// as a definition, its users joining through the running pipeline's handle. (Before, `pipeline!`
// refused it as never wired, and the room had to be added through the builder.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_declared_alone_with_pipeline() -> Result<(), Box<dyn std::error::Error>> {
    let chat = pipeline! { room = Room; };
    let room = chat.room.clone();
    let running = chat.start();
    room.call(line("sys", "welcome")).await?;
    let (alice, log) = user(&running, "alice").await?;
    running.subscribe(&room, &alice).await?;
    room.call(line("bob", "hi")).await?;
    assert_eq!(heard_n(&log, 2).await, ["sys: welcome", "bob: hi"]);
    let report = running.shutdown().await?;
    assert_eq!(report.stage("room").map(|s| s.emitted), Some(2));
    assert_eq!(report.stage("alice").map(|s| s.events_in), Some(2));
    assert!(report.balanced(), "{report:?}");
    Ok(())
}

/// Passes on what is said to every listener; waits for listeners, holding what comes meanwhile.
struct Relay;

#[stage(producer_consumer, dispatcher = broadcast, without_consumers = wait)]
impl Relay {
    fn handle_events(&mut self, lines: Vec<Line>) -> Vec<Line> {
        lines
    }
}

// A producer_consumer that waits for consumers may end a chain in `pipeline!`, its consumers
// subscribed through the handle. (Before, `pipeline!` refused it: "cannot end the pipeline".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_waits_may_end_a_chain() -> Result<(), Box<dyn std::error::Error>> {
    let chat = pipeline! { room = Room; room -> relay = Relay; };
    let (room, relay) = (chat.room.clone(), chat.relay.clone());
    let running = chat.start();
    // Said before anyone listens: the relay holds it for the first listener.
    room.call(line("sys", "welcome")).await?;
    let (alice, log) = user(&running, "alice").await?;
    running.subscribe(&relay, &alice).await?;
    room.call(line("bob", "hi")).await?;
    assert_eq!(heard_n(&log, 2).await, ["sys: welcome", "bob: hi"]);
    let report = running.shutdown().await?;
    assert_eq!(report.stage("relay").map(|s| s.events_out), Some(2));
    assert_eq!(report.stage("alice").map(|s| s.events_in), Some(2));
    assert!(report.balanced(), "{report:?}");
    Ok(())
}
