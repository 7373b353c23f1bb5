//! The producer buffer with info markers (`genstage_runtime::buffer`), without tokio.
//!
//! Ports GenStage's test items (numbers from `genstage-semantics.md` §4):
//! - 151–160: `buffer_test.exs`, on the `Buffer` itself;
//! - 24–28 and 31: `gen_stage_test.exs` "buffer" (events kept with no demand, `buffer_size` with
//!   keep first/last, unbounded, one discard count per store, buffered count);
//! - 36–42: `gen_stage_test.exs` "info" on a producer (info markers delivered right after the events
//!   buffered before them, released when those are dropped, FIFO among themselves);
//! - GenStage #311 (§1.13) as the port fixes it: buffered events are drained by the dispatcher's
//!   capacity, so they do not get stuck behind demand pending for a departed consumer.
//!
//! Items 24–42 are scenarios of a whole producer. They are replayed here on a `Buffer` and a
//! `DemandDispatcher` wired as GenStage's producer wires them (`ProducerSide` below), with the
//! consumer's side driven by `ConsumerDemand` and `Batches`. Item 28's `format_discarded` callback
//! is not ported; what remains of it is that one store reports its discard count once.

use genstage_runtime::buffer::{Buffer, Stored, Taken};
use genstage_runtime::demand::{Batches, ConsumerDemand, DemandLimits};
use genstage_runtime::dispatcher::{DemandDispatcher, Dispatcher, Outbox, SubscriptionId};
use genstage_runtime::{BufferKeep, ProducerOptions};

fn sized(size: usize, keep: BufferKeep) -> ProducerOptions {
    ProducerOptions::for_producer()
        .buffer_size(size)
        .buffer_keep(keep)
}

fn unbounded() -> ProducerOptions {
    ProducerOptions::for_producer().unbounded()
}

fn taken<T, I>(events: Vec<T>, infos: Vec<I>, remaining: usize) -> Taken<T, I> {
    Taken {
        events,
        infos,
        remaining,
    }
}

fn stored<I>(discarded: usize, released: Vec<I>) -> Stored<I> {
    Stored {
        discarded,
        released,
    }
}

// Item 151.
#[test]
fn len_does_not_count_info_markers() {
    let mut buffer = Buffer::new(sized(10, BufferKeep::First));
    assert_eq!(buffer.store(vec!["temp1", "temp2"]), stored(0, vec![]));
    assert_eq!(buffer.store_info("perm3"), Ok(()));
    assert_eq!(buffer.store_info("perm4"), Ok(()));
    assert_eq!(buffer.len(), 2);
    assert!(!buffer.is_empty());
}

// Item 152.
#[test]
fn keep_first_discards_the_incoming_overflow() {
    let mut buffer = Buffer::<_, ()>::new(sized(3, BufferKeep::First));
    assert_eq!(buffer.store(vec!['a', 'b', 'c']), stored(0, vec![]));
    assert_eq!(buffer.store(vec!['d', 'e', 'f']), stored(3, vec![]));
    assert_eq!(buffer.len(), 3);
    assert_eq!(buffer.take(3), taken(vec!['a', 'b', 'c'], vec![], 0));
}

// Item 153.
#[test]
fn unbounded_buffer_discards_nothing() {
    let mut buffer = Buffer::<_, ()>::new(unbounded());
    assert_eq!(buffer.store((1..=1000).collect()), stored(0, vec![]));
    assert_eq!(buffer.len(), 1000);
    let all = buffer.take(2000);
    assert_eq!(all.events, (1..=1000).collect::<Vec<u32>>());
    assert_eq!(all.remaining, 1000);
}

// Item 154.
#[test]
fn keep_last_drops_the_oldest_events() {
    let mut buffer = Buffer::<_, ()>::new(sized(3, BufferKeep::Last));
    assert_eq!(buffer.store(vec!['a', 'b', 'c']), stored(0, vec![]));
    assert_eq!(buffer.store(vec!['d', 'e', 'f']), stored(3, vec![]));
    assert_eq!(buffer.take(3), taken(vec!['d', 'e', 'f'], vec![], 0));
}

// Item 155 (GenStage asserts only that some markers come back; these are the exact ones).
#[test]
fn keep_last_overflow_releases_the_markers_of_dropped_events() {
    let mut buffer = Buffer::new(sized(3, BufferKeep::Last));
    buffer.store(vec!["temp1", "temp2"]);
    buffer.store_info("perm3").unwrap();
    buffer.store_info("perm4").unwrap();
    assert_eq!(
        buffer.store(vec!["temp5", "temp6", "temp7"]),
        stored(2, vec!["perm3", "perm4"])
    );
    assert_eq!(
        buffer.take(5),
        taken(vec!["temp5", "temp6", "temp7"], vec![], 2)
    );
}

// Item 155, partial overflow: a marker stays while any event before it survives.
#[test]
fn keep_last_keeps_markers_whose_events_survive() {
    let mut buffer = Buffer::new(sized(3, BufferKeep::Last));
    buffer.store(vec!['a', 'b']);
    buffer.store_info("after b").unwrap();
    buffer.store(vec!['c']);
    buffer.store_info("after c").unwrap();
    // 'a' is dropped; 'b' survives, so "after b" is not released yet.
    assert_eq!(buffer.store(vec!['d']), stored(1, vec![]));
    assert_eq!(buffer.take(3), taken(vec!['b'], vec!["after b"], 2));
    assert_eq!(buffer.take(3), taken(vec!['c'], vec!["after c"], 2));
    assert_eq!(buffer.take(3), taken(vec!['d'], vec![], 2));
}

// Item 155's counterpart for keep first: dropping incoming events never releases a marker.
#[test]
fn keep_first_overflow_keeps_markers_in_place() {
    let mut buffer = Buffer::new(sized(3, BufferKeep::First));
    buffer.store(vec!['a', 'b']);
    buffer.store_info("sync").unwrap();
    assert_eq!(buffer.store(vec!['c', 'd', 'e']), stored(2, vec![]));
    assert_eq!(buffer.take(5), taken(vec!['a', 'b'], vec!["sync"], 3));
    assert_eq!(buffer.take(5), taken(vec!['c'], vec![], 4));
}

// Item 156.
#[test]
fn store_info_on_an_empty_buffer_gives_it_back() {
    let mut buffer = Buffer::<char, _>::new(sized(10, BufferKeep::Last));
    assert_eq!(buffer.store_info("perm1"), Err("perm1"));
    // Once the buffered events have all left, the buffer is empty again.
    buffer.store(vec!['a']);
    buffer.take(1);
    assert_eq!(buffer.store_info("perm2"), Err("perm2"));
}

// Item 157.
#[test]
fn take_from_an_empty_buffer_gives_nothing() {
    let mut buffer = Buffer::<char, &str>::new(sized(10, BufferKeep::Last));
    assert_eq!(buffer.take(5), taken(vec![], vec![], 5));
}

// Item 158.
#[test]
fn take_stops_at_an_info_marker() {
    let mut buffer = Buffer::new(sized(10, BufferKeep::First));
    buffer.store(vec!["temp1", "temp2"]);
    buffer.store_info("perm3").unwrap();
    buffer.store(vec!["temp4"]);
    // Asked 5, got 2 temporaries, stopped at the marker: 3 remain.
    assert_eq!(
        buffer.take(5),
        taken(vec!["temp1", "temp2"], vec!["perm3"], 3)
    );
    assert_eq!(buffer.take(5), taken(vec!["temp4"], vec![], 4));
}

// Item 159.
#[test]
fn markers_at_the_same_position_keep_fifo_order() {
    let mut buffer = Buffer::new(sized(10, BufferKeep::First));
    buffer.store(vec!["temp1", "temp2"]);
    for perm in ["perm3", "perm4", "perm5"] {
        buffer.store_info(perm).unwrap();
    }
    assert_eq!(
        buffer.take(5),
        taken(vec!["temp1", "temp2"], vec!["perm3", "perm4", "perm5"], 3)
    );
}

// Item 160.
#[test]
fn markers_interleave_with_events_across_positions() {
    let mut buffer = Buffer::new(sized(10, BufferKeep::First));
    buffer.store(vec!["temp1", "temp2"]);
    buffer.store_info("perm3").unwrap();
    buffer.store_info("perm4").unwrap();
    buffer.store(vec!["temp5", "temp6", "temp7"]);
    buffer.store_info("perm8").unwrap();
    buffer.store_info("perm9").unwrap();
    buffer.store(vec!["temp10"]);
    buffer.store_info("perm11").unwrap();

    assert_eq!(
        buffer.take(3),
        taken(vec!["temp1", "temp2"], vec!["perm3", "perm4"], 1)
    );
    assert_eq!(
        buffer.take(4),
        taken(vec!["temp5", "temp6", "temp7"], vec!["perm8", "perm9"], 1)
    );
    assert_eq!(buffer.take(2), taken(vec!["temp10"], vec!["perm11"], 1));
    assert!(buffer.is_empty());
}

// §1.6: a take smaller than the distance to the next marker releases nothing.
#[test]
fn take_short_of_a_marker_releases_nothing() {
    let mut buffer = Buffer::new(unbounded());
    buffer.store(vec![1, 2, 3]);
    buffer.store_info("sync").unwrap();
    assert_eq!(buffer.take(2), taken(vec![1, 2], vec![], 0));
    assert_eq!(buffer.take(2), taken(vec![3], vec!["sync"], 1));
}

// §1.6: infos are never lost, even when a stopping stage drops its buffer.
#[test]
fn clear_drops_every_event_and_releases_every_marker() {
    let mut buffer = Buffer::new(unbounded());
    buffer.store(vec![1, 2]);
    buffer.store_info("first").unwrap();
    buffer.store(vec![3]);
    buffer.store_info("second").unwrap();
    assert_eq!(buffer.clear(), (3, vec!["first", "second"]));
    assert!(buffer.is_empty());
    assert_eq!(buffer.take(1), taken(vec![], vec![], 1));
}

/// What a producer sends, in order: event messages to a consumer and info messages.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Events(SubscriptionId, Vec<String>),
    Info(&'static str),
}

fn events(sub: SubscriptionId, names: &[&str]) -> Out {
    Out::Events(sub, strings(names))
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// GenStage's producer around its buffer and `DemandDispatcher`, as the port's producer loop wires
/// them: emitted events go to the dispatcher unless events are already buffered (older events go
/// first), and the leftover is buffered; new demand drains the buffer up to the dispatcher's
/// capacity, and only the upstream demand left after that reaches `handle_demand`.
///
/// `handle_demand` is GenStage's test `Counter`: with `Some(counter)` it emits
/// `counter..counter + demand`; with `None` (the Counter started with a pid) it emits nothing.
struct ProducerSide {
    dispatcher: DemandDispatcher,
    buffer: Buffer<String, &'static str>,
    counter: Option<u64>,
    /// Everything sent, in order.
    out: Vec<Out>,
    /// The demand each `handle_demand` call received.
    handle_demand: Vec<usize>,
    /// The discard count of each store that discarded (each one is one warning in the log).
    discards: Vec<usize>,
}

impl ProducerSide {
    fn new(options: ProducerOptions, counter: Option<u64>) -> Self {
        ProducerSide {
            dispatcher: DemandDispatcher::new(),
            buffer: Buffer::new(options),
            counter,
            out: Vec::new(),
            handle_demand: Vec::new(),
            discards: Vec::new(),
        }
    }

    fn subscribe(&mut self, sub: SubscriptionId) {
        let upstream = self.dispatcher.subscribe(sub).unwrap();
        self.serve(upstream);
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize) {
        let upstream = self.dispatcher.ask(sub, demand);
        self.serve(upstream);
    }

    fn cancel(&mut self, sub: SubscriptionId) {
        let upstream = self.dispatcher.cancel(sub);
        self.serve(upstream);
    }

    /// Events emitted from a callback other than `handle_demand` (GenStage's `Counter.sync_queue`).
    fn queue(&mut self, names: &[&str]) {
        self.emit(strings(names));
    }

    /// `sync_info`/`async_info`: sent now when nothing is buffered, else after the buffered events.
    fn info(&mut self, message: &'static str) {
        if let Err(message) = self.buffer.store_info(message) {
            self.out.push(Out::Info(message));
        }
    }

    fn serve(&mut self, upstream: usize) {
        let drained = self.drain();
        let demand = upstream.saturating_sub(drained);
        if demand > 0 {
            self.handle_demand.push(demand);
            if let Some(counter) = self.counter.as_mut() {
                let emitted = (*counter..*counter + demand as u64)
                    .map(|n| n.to_string())
                    .collect();
                *counter += demand as u64;
                self.emit(emitted);
            }
        }
    }

    fn emit(&mut self, events: Vec<String>) {
        let leftover = if self.buffer.is_empty() {
            self.dispatch(events)
        } else {
            events
        };
        if !leftover.is_empty() {
            let Stored {
                discarded,
                released,
            } = self.buffer.store(leftover);
            if discarded > 0 {
                self.discards.push(discarded);
            }
            self.out.extend(released.into_iter().map(Out::Info));
            self.drain();
        }
    }

    /// Sends buffered events up to the dispatcher's capacity, each marker right after the events
    /// in front of it; returns how many events went out.
    fn drain(&mut self) -> usize {
        let mut drained = 0;
        loop {
            let capacity = Dispatcher::<String>::capacity(&self.dispatcher);
            if capacity == 0 || self.buffer.is_empty() {
                return drained;
            }
            let Taken { events, infos, .. } = self.buffer.take(capacity);
            drained += events.len();
            let leftover = self.dispatch(events);
            assert_eq!(leftover, Vec::<String>::new(), "capacity was honoured");
            self.out.extend(infos.into_iter().map(Out::Info));
        }
    }

    fn dispatch(&mut self, events: Vec<String>) -> Vec<String> {
        let mut deliveries = Vec::new();
        let leftover = Dispatcher::dispatch(
            &mut self.dispatcher,
            events,
            &mut Outbox::new(&mut deliveries),
        )
        .expect("a demand dispatcher always dispatches");
        self.out.extend(
            deliveries
                .into_iter()
                .map(|(sub, events)| Out::Events(sub, events)),
        );
        leftover
    }
}

/// A consumer in automatic demand mode, subscribed to a [`ProducerSide`].
struct ConsumerSide {
    sub: SubscriptionId,
    demand: ConsumerDemand,
    /// How much of the producer's `out` it has read.
    read: usize,
    /// The batches handed to `handle_events`.
    handled: Vec<Vec<String>>,
}

impl ConsumerSide {
    fn subscribe(producer: &mut ProducerSide, sub: SubscriptionId, limits: DemandLimits) -> Self {
        producer.subscribe(sub);
        let mut demand = ConsumerDemand::new(limits);
        producer.ask(sub, demand.initial_ask());
        ConsumerSide {
            sub,
            demand,
            read: 0,
            handled: Vec::new(),
        }
    }

    /// Handles the producer's messages in order until `batches` batches have been handled or no
    /// message is left.
    fn run(&mut self, producer: &mut ProducerSide, batches: usize) -> &[Vec<String>] {
        while self.handled.len() < batches && self.read < producer.out.len() {
            let message = producer.out[self.read].clone();
            self.read += 1;
            let Out::Events(sub, events) = message else {
                continue;
            };
            assert_eq!(sub, self.sub);
            let mut batches = Batches::new(events);
            while let Some(batch) = batches.next_batch(self.demand.limits().batch_size()) {
                let demand = self.demand.on_batch(batch.len());
                assert_eq!(demand.excess, 0);
                self.handled.push(batch);
                if demand.ask > 0 {
                    producer.ask(self.sub, demand.ask);
                }
            }
        }
        &self.handled
    }
}

fn strings_batches(batches: &[&[&str]]) -> Vec<Vec<String>> {
    batches.iter().map(|batch| strings(batch)).collect()
}

const C1: SubscriptionId = 1;
const C2: SubscriptionId = 2;

// Item 24.
#[test]
fn events_emitted_without_demand_wait_in_the_buffer() {
    let mut producer = ProducerSide::new(ProducerOptions::for_producer(), Some(0));
    producer.queue(&["a", "b", "c"]);
    producer.queue(&["d", "e"]);
    assert_eq!(producer.buffer.len(), 5);
    assert_eq!(producer.out, vec![]);

    let mut consumer = ConsumerSide::subscribe(&mut producer, C1, DemandLimits::new(4, 0).unwrap());
    assert_eq!(
        consumer.run(&mut producer, 4),
        strings_batches(&[
            &["a", "b", "c", "d"],
            &["e"],
            &["0", "1", "2"],
            &["3", "4", "5", "6"],
        ])
    );
    // The buffer served the first ask whole and one event of the second; the ask after the last
    // batch reached the Counter whole.
    assert_eq!(producer.handle_demand, vec![3, 4, 4]);
}

// Items 25 and 28: keep first drops the incoming overflow; the store reports 3 discards once.
#[test]
fn buffer_size_5_keep_first_delivers_the_first_five() {
    let mut producer = ProducerSide::new(sized(5, BufferKeep::First), Some(0));
    producer.queue(&["a", "b", "c", "d", "e"]);
    assert_eq!(producer.discards, vec![]);
    producer.queue(&["f", "g", "h"]);
    assert_eq!(producer.discards, vec![3]);

    let mut consumer = ConsumerSide::subscribe(&mut producer, C1, DemandLimits::new(4, 0).unwrap());
    assert_eq!(
        consumer.run(&mut producer, 3),
        strings_batches(&[&["a", "b", "c", "d"], &["e"], &["0", "1", "2"]])
    );
    assert_eq!(producer.discards, vec![3], "delivery discards nothing");
}

// Item 26.
#[test]
fn buffer_size_5_keep_last_delivers_the_last_five() {
    let mut producer = ProducerSide::new(sized(5, BufferKeep::Last), Some(0));
    producer.queue(&["a", "b", "c", "d", "e"]);
    producer.queue(&["f", "g", "h"]);
    assert_eq!(producer.discards, vec![3]);

    let mut consumer = ConsumerSide::subscribe(&mut producer, C1, DemandLimits::new(4, 0).unwrap());
    assert_eq!(
        consumer.run(&mut producer, 3),
        strings_batches(&[&["d", "e", "f", "g"], &["h"], &["0", "1", "2"]])
    );
}

// Item 27.
#[test]
fn unbounded_buffer_delivers_all_eight() {
    let mut producer = ProducerSide::new(unbounded(), Some(0));
    producer.queue(&["a", "b", "c", "d", "e"]);
    producer.queue(&["f", "g", "h"]);
    assert_eq!(producer.discards, vec![]);

    let mut consumer = ConsumerSide::subscribe(&mut producer, C1, DemandLimits::new(4, 0).unwrap());
    assert_eq!(
        consumer.run(&mut producer, 3),
        strings_batches(&[
            &["a", "b", "c", "d"],
            &["e", "f", "g", "h"],
            &["0", "1", "2", "3"]
        ])
    );
    // The buffer served the first two asks; the Counter answered the last two.
    assert_eq!(producer.handle_demand, vec![4, 4]);
}

// Item 28: a single store of 8 events into 5 slots reports one discard of 3, and 5 are delivered.
#[test]
fn one_store_reports_its_discards_once() {
    let mut producer = ProducerSide::new(sized(5, BufferKeep::First), None);
    producer.queue(&["a", "b", "c", "d", "e", "f", "g", "h"]);
    assert_eq!(producer.discards, vec![3]);

    let mut consumer = ConsumerSide::subscribe(&mut producer, C1, DemandLimits::new(5, 0).unwrap());
    assert_eq!(
        consumer.run(&mut producer, 1),
        strings_batches(&[&["a", "b", "c", "d", "e"]])
    );
    assert_eq!(producer.discards, vec![3]);
}

// Item 31: the buffered count is 5, then 8, then 0 once the consumer has them.
#[test]
fn buffered_count_follows_stores_and_deliveries() {
    let mut producer = ProducerSide::new(unbounded(), None);
    producer.queue(&["a", "b", "c", "d", "e"]);
    assert_eq!(producer.buffer.len(), 5);
    producer.queue(&["f", "g", "h"]);
    assert_eq!(producer.buffer.len(), 8);

    let mut consumer = ConsumerSide::subscribe(&mut producer, C1, DemandLimits::new(4, 0).unwrap());
    assert_eq!(
        consumer.run(&mut producer, 2),
        strings_batches(&[&["a", "b", "c", "d"], &["e", "f", "g", "h"]])
    );
    assert_eq!(producer.buffer.len(), 0);
}

// Item 35 (the base case of 36–39): an info with nothing buffered is sent at once.
#[test]
fn info_with_an_empty_buffer_is_sent_at_once() {
    let mut producer = ProducerSide::new(ProducerOptions::for_producer(), None);
    producer.info("sync");
    producer.info("async");
    assert_eq!(producer.out, vec![Out::Info("sync"), Out::Info("async")]);
}

/// Items 36–39: queue `names`, then an info, then subscribe a default consumer.
fn info_after_buffered_events(options: ProducerOptions, names: &[&str]) -> Vec<Out> {
    let mut producer = ProducerSide::new(options, None);
    producer.queue(names);
    producer.info("sync");
    assert_eq!(producer.out, vec![], "the info waits for the events");
    ConsumerSide::subscribe(&mut producer, C1, DemandLimits::default());
    producer.out
}

// Item 36.
#[test]
fn info_follows_buffered_events_with_an_unbounded_buffer() {
    assert_eq!(
        info_after_buffered_events(unbounded(), &["a", "b", "c"]),
        vec![events(C1, &["a", "b", "c"]), Out::Info("sync")]
    );
}

// Item 37.
#[test]
fn info_follows_one_buffered_event() {
    assert_eq!(
        info_after_buffered_events(ProducerOptions::for_producer().buffer_size(3), &["a"]),
        vec![events(C1, &["a"]), Out::Info("sync")]
    );
}

// Item 38.
#[test]
fn info_follows_two_buffered_events() {
    assert_eq!(
        info_after_buffered_events(ProducerOptions::for_producer().buffer_size(3), &["a", "b"]),
        vec![events(C1, &["a", "b"]), Out::Info("sync")]
    );
}

// Item 39.
#[test]
fn info_follows_a_full_buffer() {
    assert_eq!(
        info_after_buffered_events(
            ProducerOptions::for_producer().buffer_size(3),
            &["a", "b", "c"]
        ),
        vec![events(C1, &["a", "b", "c"]), Out::Info("sync")]
    );
}

// Item 40.
#[test]
fn info_moves_with_the_buffer() {
    let mut producer = ProducerSide::new(ProducerOptions::for_producer().buffer_size(3), None);
    producer.subscribe(C1);
    producer.queue(&["a", "b", "c"]);
    producer.info("sync1");

    producer.ask(C1, 2);
    assert_eq!(producer.out, vec![events(C1, &["a", "b"])]);

    producer.queue(&["d", "e"]);
    producer.info("sync2");
    assert_eq!(producer.out.len(), 1);

    producer.ask(C1, 1);
    producer.ask(C1, 2);
    assert_eq!(
        producer.out,
        vec![
            events(C1, &["a", "b"]),
            events(C1, &["c"]),
            Out::Info("sync1"),
            events(C1, &["d", "e"]),
            Out::Info("sync2"),
        ]
    );
    assert_eq!(producer.handle_demand, vec![]);
}

// Item 41.
#[test]
fn info_is_released_when_its_events_are_dropped() {
    let mut producer = ProducerSide::new(sized(3, BufferKeep::Last), None);
    producer.queue(&["a", "b"]);
    producer.info("sync");
    assert_eq!(producer.out, vec![]);

    producer.subscribe(C1); // no demand
    producer.queue(&["c", "d", "e"]);
    assert_eq!(producer.discards, vec![2]);
    assert_eq!(producer.out, vec![Out::Info("sync")]);
    assert_eq!(producer.buffer.len(), 3);
}

// Item 42.
#[test]
fn infos_keep_fifo_order_with_events() {
    let mut producer = ProducerSide::new(ProducerOptions::for_producer(), None);
    producer.subscribe(C1); // a manual consumer: no ask yet
    producer.queue(&["a", "b", "c"]);
    producer.info("d");
    producer.info("e");
    producer.info("f");
    producer.queue(&["g", "h"]);
    producer.info("i");
    assert_eq!(producer.out, vec![]);

    producer.ask(C1, 5);
    assert_eq!(
        producer.out,
        vec![
            events(C1, &["a", "b", "c"]),
            Out::Info("d"),
            Out::Info("e"),
            Out::Info("f"),
            events(C1, &["g", "h"]),
            Out::Info("i"),
        ]
    );
}

// GenStage #311 (§1.13), as the port fixes it: a consumer left with 10 unmet; 3 events were
// buffered meanwhile. A new consumer's ask of 5 brings no upstream demand (pending absorbs it), yet
// the buffer is drained by the dispatcher's capacity, so the 3 events are delivered, before any
// newer event.
#[test]
fn buffered_events_are_not_stuck_behind_pending_demand() {
    let mut producer = ProducerSide::new(ProducerOptions::for_producer(), Some(0));
    producer.subscribe(C1);
    producer.dispatcher.ask(C1, 10); // asked upstream; the Counter has not answered yet
    producer.cancel(C1);
    assert_eq!(producer.dispatcher.pending(), 10);

    producer.queue(&["a", "b", "c"]);
    assert_eq!(producer.buffer.len(), 3);
    assert_eq!(producer.dispatcher.pending(), 7);

    producer.subscribe(C2);
    producer.ask(C2, 5);
    assert_eq!(producer.dispatcher.pending(), 2);
    assert_eq!(producer.out, vec![events(C2, &["a", "b", "c"])]);
    assert!(producer.buffer.is_empty());
    assert_eq!(producer.handle_demand, vec![], "no upstream demand yet");

    // The next ask uses up pending 2 and asks for the rest: the Counter's events come after.
    producer.ask(C2, 4);
    assert_eq!(producer.handle_demand, vec![2]);
    assert_eq!(
        producer.out,
        vec![events(C2, &["a", "b", "c"]), events(C2, &["0", "1"])]
    );
}
