//! `PartitionDispatcher` driven directly, without tokio, asserting exact states as GenStage's
//! `partition_dispatcher_test.exs` does.
//!
//! Ports GenStage's test items 137 to 143 and 147 to 150 (numbers from `genstage-semantics.md` §4).
//! GenStage's `{waiting, pending}` is read here through `waiting()` and `pending()`, each partition's
//! demand and backlog through `partition_state`, and the events the dispatcher keeps through
//! `held()` (for a consumer) and `stranded()` (for none). A subscription is identified by its id,
//! where GenStage has a pid and a reference, and a partition is an index `0..n`, given for each event
//! by the stage's partition function (`Outbox::with_partition`), where GenStage has a `:hash`
//! option and any names.
//!
//! The port differs from GenStage on purpose (see `PartitionDispatcher`'s docs), and the tests say
//! where:
//! - events for a partition with no consumer are kept for its next consumer and do not count against
//!   the shared demand (`waiting`), where GenStage counts them;
//! - a cancelled partition's backlog is kept for its next consumer (prepaid: serving it asks nothing
//!   upstream), where GenStage drops it;
//! - an out-of-range partition from the function is a `DispatchError` (the stage fails), and a bad
//!   subscription is refused, where GenStage raises inside the producer.
//!
//! Infos (items 143 to 146): the port's dispatcher sends no info itself. The producer's buffer
//! orders infos behind buffered events (see `tests/buffer.rs`), and an info whose events have left
//! the buffer for a partition's backlog waits behind that backlog through the dispatcher's
//! `mark()` (where the backlogs of the partitions with a consumer end now; `None`: the info may go at
//! once) and `passed(mark)` (they have all been sent, or their consumer left). Items 143 to 146 are
//! ported as those two answers; the event path that releases the infos is tested in
//! `src/event_path.rs`.
//!
//! Then a property: random subscribes, asks, cancels and dispatches, through a model of the loop that
//! drives a dispatcher (`EventPath`: leftover is buffered and served first, by `capacity()`).

use std::collections::BTreeMap;

use genstage_runtime::dispatcher::{
    Deliveries, DispatchError, DispatchOptions, Dispatcher, Outbox, PartitionDispatcher,
    SubscriptionId,
};
use proptest::prelude::*;

const R0: SubscriptionId = 10;
const R1: SubscriptionId = 11;
const R2: SubscriptionId = 12;

/// What one dispatch did: the batches sent, the leftover (or the error), and the discards.
#[derive(Debug, PartialEq, Eq)]
struct Dispatched {
    sent: Deliveries<u64>,
    leftover: Result<Vec<u64>, DispatchError>,
    discarded: usize,
}

/// Dispatches `events`, routed by `route`.
fn dispatch(
    dispatcher: &mut PartitionDispatcher<u64>,
    route: impl Fn(&u64) -> Option<usize>,
    events: &[u64],
) -> Dispatched {
    let mut sent = Vec::new();
    let mut out = Outbox::new(&mut sent).with_partition(&route);
    let leftover = dispatcher.dispatch(events.to_vec(), &mut out);
    let discarded = out.discarded();
    Dispatched {
        sent,
        leftover,
        discarded,
    }
}

/// Asks on behalf of `sub`: returns the upstream demand and what was sent from its backlog.
fn ask(
    dispatcher: &mut PartitionDispatcher<u64>,
    sub: SubscriptionId,
    demand: usize,
) -> (usize, Deliveries<u64>) {
    let mut sent = Vec::new();
    let upstream = dispatcher.ask(sub, demand, &mut Outbox::new(&mut sent));
    (upstream, sent)
}

fn subscribe(
    dispatcher: &mut PartitionDispatcher<u64>,
    sub: SubscriptionId,
    partition: usize,
) -> Result<usize, DispatchError> {
    dispatcher.subscribe(sub, &DispatchOptions::partition(partition))
}

/// GenStage's `{waiting, pending}`.
fn waiting_and_pending(dispatcher: &PartitionDispatcher<u64>) -> (usize, usize) {
    (dispatcher.waiting(), dispatcher.pending())
}

/// `(held, stranded)`: the events kept for a consumer, and for none.
fn kept(dispatcher: &PartitionDispatcher<u64>) -> (usize, usize) {
    (dispatcher.held(), dispatcher.stranded())
}

fn parity(n: &u64) -> Option<usize> {
    Some((n % 2) as usize)
}

fn error(message: &str) -> DispatchError {
    DispatchError(message.to_owned())
}

// Item 137. GenStage counts the four events dispatched with no consumer against `waiting`, which
// falls to 6; here they are kept for their partitions' next consumers and count against nothing.
#[test]
fn subscribes_asks_and_cancels() {
    let mut dispatcher = PartitionDispatcher::new(2);
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 10), (10, vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (10, 0));
    assert_eq!(dispatcher.capacity(), 10);
    assert_eq!(dispatcher.cancel(R0), 0);
    assert_eq!(waiting_and_pending(&dispatcher), (10, 10));
    assert_eq!(dispatcher.capacity(), 0);
    assert_eq!(dispatcher.consumers(), 0);

    // Subscribe again: the ask is covered by the demand already asked upstream.
    assert_eq!(subscribe(&mut dispatcher, R0, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 5), (0, vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (10, 5));
    assert_eq!(dispatcher.capacity(), 5);
    assert_eq!(dispatcher.cancel(R0), 0);
    assert_eq!(waiting_and_pending(&dispatcher), (10, 10));

    // No consumers: no leftover, the events are kept for their partitions.
    let dispatched = dispatch(&mut dispatcher, parity, &[0, 1, 2, 3]);
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![],
            leftover: Ok(vec![]),
            discarded: 0
        }
    );
    assert_eq!(waiting_and_pending(&dispatcher), (10, 10)); // GenStage: {6, 10}
    assert_eq!(kept(&dispatcher), (0, 4));
    assert_eq!(dispatcher.partition_state(0), Some((0, 2)));
    assert_eq!(dispatcher.partition_state(1), Some((0, 2)));
}

/// Item 138's steps, for a partition function that sends everything to `partition` of `partitions`
/// and a consumer of it; `events` are the seven of the second dispatch.
fn asks_and_dispatches(
    partitions: usize,
    partition: usize,
    route: impl Fn(&u64) -> Option<usize> + Copy,
    first: u64,
    events: [u64; 7],
) {
    let mut dispatcher = PartitionDispatcher::new(partitions);
    assert_eq!(subscribe(&mut dispatcher, R0, partition), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 3), (3, vec![]));
    let dispatched = dispatch(&mut dispatcher, route, &[first]);
    assert_eq!(dispatched.sent, vec![(R0, vec![first])]);
    assert_eq!(dispatched.leftover, Ok(vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (2, 0));

    assert_eq!(ask(&mut dispatcher, R0, 3), (3, vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0));

    let dispatched = dispatch(&mut dispatcher, route, &events);
    assert_eq!(dispatched.sent, vec![(R0, events[..5].to_vec())]);
    assert_eq!(dispatched.leftover, Ok(events[5..].to_vec()));
    assert_eq!(waiting_and_pending(&dispatcher), (0, 0));
    assert_eq!(dispatcher.partition_state(partition), Some((0, 0)));
    assert_eq!(kept(&dispatcher), (0, 0));
}

// Item 138.
#[test]
fn subscribes_asks_and_dispatches() {
    asks_and_dispatches(1, 0, |_| Some(0), 1, [2, 5, 6, 7, 8, 9, 11]);
}

// Item 139: GenStage's named partitions `[:odd, :even]` with a hash are, here, partitions 0 (odd) and
// 1 (even) of a partition function: the same numbers as item 138, with odd events.
#[test]
fn subscribes_asks_and_dispatches_to_the_partitions_of_a_function() {
    let odd_or_even = |n: &u64| Some(usize::from(n.is_multiple_of(2)));
    asks_and_dispatches(2, 0, odd_or_even, 1, [5, 7, 9, 11, 13, 15, 17]);
}

// Item 140: multiples of 3 go to no partition: discarded (counted, here), without using up demand.
#[test]
fn subscribes_asks_and_dispatches_to_partitions_or_none() {
    // 0: odd, 1: even.
    let route = |n: &u64| (!n.is_multiple_of(3)).then_some(usize::from(n.is_multiple_of(2)));
    let mut dispatcher = PartitionDispatcher::new(2);
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 4), (4, vec![]));
    assert_eq!(ask(&mut dispatcher, R0, 4), (4, vec![]));
    let dispatched = dispatch(&mut dispatcher, route, &(1..=12).collect::<Vec<_>>());
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R0, vec![1, 5, 7, 11]), (R1, vec![2, 4, 8, 10])],
            leftover: Ok(vec![12]),
            discarded: 3,
        }
    );
    assert_eq!(waiting_and_pending(&dispatcher), (0, 0));
}

// Item 141. GenStage's `phash2` puts 1, 2, 5, 6, 7 in partition 0; here the partition function
// says so. The events for partition 0, which has no consumer, are kept for its first consumer, as
// in GenStage, but do not use up partition 1's demand: `waiting` stays 5 (GenStage: 0), so the next
// events are not leftover but dispatched, and serving the kept events asks nothing upstream
// (GenStage: 5).
#[test]
fn events_for_a_partition_with_no_consumer_are_kept_for_its_first() {
    // Below 100: partition 0; from 100: partition 1.
    let route = |n: &u64| Some(usize::from(*n >= 100));
    let mut dispatcher = PartitionDispatcher::new(2);
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 5), (5, vec![]));

    let dispatched = dispatch(&mut dispatcher, route, &[1, 2, 5, 6, 7]);
    assert_eq!((dispatched.sent, dispatched.leftover), (vec![], Ok(vec![])));
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0)); // GenStage: {0, 0}
    assert_eq!(kept(&dispatcher), (0, 5));
    assert_eq!(dispatcher.capacity(), 5);

    // GenStage returns these as leftover (its `waiting` is 0); here they are kept too.
    let dispatched = dispatch(&mut dispatcher, route, &[8, 9]);
    assert_eq!((dispatched.sent, dispatched.leftover), (vec![], Ok(vec![])));
    assert_eq!(kept(&dispatcher), (0, 7));

    // Partition 0's first consumer is served what was kept, in order, first.
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(
        ask(&mut dispatcher, R0, 5),
        (0, vec![(R0, vec![1, 2, 5, 6, 7])])
    );
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0)); // GenStage: {5, 0}
    assert_eq!(kept(&dispatcher), (2, 0));
    assert_eq!(dispatcher.partition_state(0), Some((0, 2)));

    // Behind its backlog, and counted against the demand now that it has a consumer.
    let dispatched = dispatch(&mut dispatcher, route, &[1, 2]);
    assert_eq!((dispatched.sent, dispatched.leftover), (vec![], Ok(vec![])));
    assert_eq!(waiting_and_pending(&dispatcher), (3, 0)); // GenStage: {3, 0}
    assert_eq!(kept(&dispatcher), (4, 0));

    // Events beyond `waiting` are leftover.
    let dispatched = dispatch(&mut dispatcher, route, &[100, 101, 102, 103, 104]);
    assert_eq!(dispatched.sent, vec![(R1, vec![100, 101, 102])]);
    assert_eq!(dispatched.leftover, Ok(vec![103, 104]));
    assert_eq!(waiting_and_pending(&dispatcher), (0, 0));

    // Its backlog in order: the two kept while it had no consumer (prepaid) and the two it was
    // sent since (which count upstream when served).
    assert_eq!(ask(&mut dispatcher, R0, 3), (1, vec![(R0, vec![8, 9, 1])]));
    assert_eq!(dispatcher.partition_state(0), Some((0, 1)));
}

// Item 142: events beyond a partition's demand wait in its backlog and are served on its next ask.
#[test]
fn events_beyond_a_partitions_demand_are_kept_for_its_next_ask() {
    let route = |_: &u64| Some(0);
    let mut dispatcher = PartitionDispatcher::new(2);
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 5), (5, vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0));
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 5), (5, vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (10, 0));

    // All events to the same partition: half of them are kept.
    let dispatched = dispatch(&mut dispatcher, route, &[1, 2]);
    assert_eq!(dispatched.sent, vec![(R0, vec![1, 2])]);
    let dispatched = dispatch(&mut dispatcher, route, &[5, 6, 7, 1, 2, 5, 6, 7]);
    assert_eq!(dispatched.sent, vec![(R0, vec![5, 6, 7])]);
    assert_eq!(dispatched.leftover, Ok(vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (0, 0));
    assert_eq!(kept(&dispatcher), (5, 0));
    assert_eq!(dispatcher.partition_state(0), Some((0, 5)));
    // Partition 1's consumer still wants 5, which the backlog used up: the shared demand.
    assert_eq!(dispatcher.partition_state(1), Some((5, 0)));
    assert_eq!(dispatcher.capacity(), 0);

    assert_eq!(
        ask(&mut dispatcher, R0, 5),
        (5, vec![(R0, vec![1, 2, 5, 6, 7])])
    );
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0));
    assert_eq!(kept(&dispatcher), (0, 0));
}

// Item 143: cancelling a partition with a backlog returns its length as upstream demand, for the
// other partitions, as in GenStage, and an info behind the backlog no longer waits for it; but the
// backlog is kept (prepaid) for the partition's next consumer, where GenStage drops it.
#[test]
fn cancelling_a_partition_with_a_backlog_keeps_it_and_asks_again_for_the_others() {
    let route = |_: &u64| Some(0);
    let mut dispatcher = PartitionDispatcher::new(2);
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 5), (5, vec![]));
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0));
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    let dispatched = dispatch(&mut dispatcher, route, &[1, 2, 5, 6, 7]);
    assert_eq!((dispatched.sent, dispatched.leftover), (vec![], Ok(vec![])));
    assert_eq!(waiting_and_pending(&dispatcher), (0, 0));
    assert_eq!(kept(&dispatcher), (5, 0));
    // An info now waits behind partition 0's backlog.
    let mark = Dispatcher::<u64>::mark(&dispatcher).expect("a backlog to wait behind");
    assert!(!dispatcher.passed(&mark));

    assert_eq!(dispatcher.cancel(R0), 5);
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0));
    assert_eq!(kept(&dispatcher), (0, 5)); // GenStage: dropped
    assert!(dispatcher.passed(&mark), "the info is released");
    assert_eq!(Dispatcher::<u64>::mark(&dispatcher), None);
    assert_eq!(dispatcher.capacity(), 5);

    // The next consumer of partition 0 is served the backlog, which asks nothing upstream.
    assert_eq!(subscribe(&mut dispatcher, R2, 0), Ok(0));
    assert_eq!(
        ask(&mut dispatcher, R2, 5),
        (0, vec![(R2, vec![1, 2, 5, 6, 7])])
    );
    assert_eq!(waiting_and_pending(&dispatcher), (5, 0));
    assert_eq!(kept(&dispatcher), (0, 0));
}

// Item 144: with no backlog, an info goes at once (the events the consumers asked for are all
// sent).
#[test]
fn an_info_goes_at_once_without_a_backlog() {
    let mut dispatcher = PartitionDispatcher::<u64>::new(2);
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 3), (3, vec![]));
    assert_eq!(Dispatcher::<u64>::mark(&dispatcher), None);
    let dispatched = dispatch(&mut dispatcher, parity, &[1, 3]);
    assert_eq!(dispatched.sent, vec![(R1, vec![1, 3])]);
    assert_eq!(Dispatcher::<u64>::mark(&dispatcher), None);
}

// Item 145: with no consumers, an info goes at once; here also when events are kept for partitions
// with no consumer (they may never be sent).
#[test]
fn an_info_does_not_wait_for_partitions_without_a_consumer() {
    let mut dispatcher = PartitionDispatcher::<u64>::new(2);
    assert_eq!(Dispatcher::<u64>::mark(&dispatcher), None);
    // No demand at all: as in GenStage, nothing is taken.
    let dispatched = dispatch(&mut dispatcher, parity, &[0, 1, 2]);
    assert_eq!(
        (dispatched.sent, dispatched.leftover),
        (vec![], Ok(vec![0, 1, 2]))
    );
    // Demand asked for a consumer that left (item 137): events are kept for no consumer.
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 4), (4, vec![]));
    assert_eq!(dispatcher.cancel(R0), 0);
    let dispatched = dispatch(&mut dispatcher, parity, &[0, 1, 2]);
    assert_eq!((dispatched.sent, dispatched.leftover), (vec![], Ok(vec![])));
    assert_eq!(kept(&dispatcher), (0, 3));
    assert_eq!(Dispatcher::<u64>::mark(&dispatcher), None);
}

// Item 146: an info behind a partition's backlog waits until that partition's consumer asks and is
// sent the backlog; another partition's ask does not release it.
#[test]
fn an_info_waits_behind_a_backlog_until_its_consumer_asks() {
    let route = |_: &u64| Some(0);
    let mut dispatcher = PartitionDispatcher::<u64>::new(2);
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 3), (3, vec![]));
    let dispatched = dispatch(&mut dispatcher, route, &[1, 2, 5]);
    assert_eq!((dispatched.sent, dispatched.leftover), (vec![], Ok(vec![])));
    assert_eq!(kept(&dispatcher), (3, 0));

    let mark = Dispatcher::<u64>::mark(&dispatcher).expect("a backlog to wait behind");
    assert!(!dispatcher.passed(&mark));
    assert_eq!(ask(&mut dispatcher, R1, 2), (2, vec![]));
    assert!(
        !dispatcher.passed(&mark),
        "partition 1's ask does not release it"
    );
    // Partially sent: still waiting.
    assert_eq!(ask(&mut dispatcher, R0, 2), (2, vec![(R0, vec![1, 2])]));
    assert!(!dispatcher.passed(&mark));
    assert_eq!(ask(&mut dispatcher, R0, 3), (3, vec![(R0, vec![5])]));
    assert!(
        dispatcher.passed(&mark),
        "released once its backlog is sent"
    );
    // Events that come after the mark do not hold it back.
    let dispatched = dispatch(&mut dispatcher, route, &[6, 7, 8]);
    assert_eq!(dispatched.sent, vec![(R0, vec![6, 7])]);
    assert_eq!(kept(&dispatcher), (1, 0));
    assert!(dispatcher.passed(&mark));
}

// Not a GenStage item: at most `with_stranded_limit` events are kept for partitions with no
// consumer; beyond it the oldest are discarded, and counted.
#[test]
fn events_kept_for_no_consumer_are_bounded_and_the_oldest_discarded() {
    let mut dispatcher = PartitionDispatcher::new(2).with_stranded_limit(3);
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R1, 2), (2, vec![]));
    let dispatched = dispatch(&mut dispatcher, parity, &[0, 1, 2, 4, 6, 8]);
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![(R1, vec![1])],
            leftover: Ok(vec![]),
            discarded: 2,
        }
    );
    assert_eq!(kept(&dispatcher), (0, 3));
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 10), (7, vec![(R0, vec![4, 6, 8])]));
    assert_eq!(dispatcher.partition_state(0), Some((7, 0)));
}

// Not a GenStage item: the limit discards "the oldest" events kept for no consumer (the type's
// docs), across partitions: here partition 1's 1 and 3 were kept before partition 0's 4 and 6.
// Not a GenStage item: beyond the stranded limit, events kept for no consumer are discarded from
// the front of the partitions without a consumer, the lowest-numbered first.
#[test]
fn the_stranded_limit_discards_from_the_first_vacant_partition() {
    let mut dispatcher = PartitionDispatcher::new(3).with_stranded_limit(2);
    assert_eq!(subscribe(&mut dispatcher, R2, 2), Ok(0));
    assert_eq!(ask(&mut dispatcher, R2, 1), (1, vec![]));
    // Partition 1 first, then partition 0; both have no consumer.
    let route = |n: &u64| Some(usize::from(n % 2 == 1));
    let dispatched = dispatch(&mut dispatcher, route, &[1, 3]);
    assert_eq!((dispatched.leftover, dispatched.discarded), (Ok(vec![]), 0));
    let dispatched = dispatch(&mut dispatcher, route, &[4, 6]);
    assert_eq!((dispatched.leftover, dispatched.discarded), (Ok(vec![]), 2));
    assert_eq!(kept(&dispatcher), (0, 2));
    // Partition 0's 4 and 6 went; partition 1 keeps 1 and 3.
    assert_eq!(dispatcher.partition_state(0), Some((0, 0)));
    assert_eq!(dispatcher.partition_state(1), Some((0, 2)));
    // Within a partition, the oldest go first.
    let dispatched = dispatch(&mut dispatcher, route, &[5]);
    assert_eq!((dispatched.leftover, dispatched.discarded), (Ok(vec![]), 1));
    assert_eq!(dispatcher.partition_state(1), Some((0, 2)));
}

// Item 147: a partition out of range is an error naming the index and the count (GenStage raises
// "unknown partition"), and the dispatcher's state is as before: nothing of the batch is sent, even
// the events before the bad one.
#[test]
fn a_partition_out_of_range_is_an_error_and_changes_nothing() {
    let mut dispatcher = PartitionDispatcher::new(2);
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 3), (3, vec![]));
    let dispatched = dispatch(&mut dispatcher, |n| Some(*n as usize), &[0, 1, 2]);
    assert_eq!(
        dispatched,
        Dispatched {
            sent: vec![],
            leftover: Err(error(
                "its partition function returned partition 2, but it has 2 partitions (0..2)"
            )),
            discarded: 0,
        }
    );
    assert_eq!(waiting_and_pending(&dispatcher), (3, 0));
    assert_eq!(dispatcher.partition_state(0), Some((3, 0)));
    assert_eq!(dispatcher.partition_state(1), Some((0, 0)));
    assert_eq!(kept(&dispatcher), (0, 0));
}

// Item 148: a partition function cannot return anything but `Option<usize>` (the compiler sees to
// GenStage's "the :hash function should return {event, partition}"). What can go wrong instead is a
// dispatch without the partition function: an error, and nothing changes.
#[test]
fn a_dispatch_without_the_partition_function_is_an_error() {
    let mut dispatcher = PartitionDispatcher::new(1);
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, 3), (3, vec![]));
    let mut sent = Vec::new();
    let leftover = dispatcher.dispatch(vec![1, 2, 5], &mut Outbox::new(&mut sent));
    assert_eq!(
        leftover,
        Err(error(
            "a partition dispatcher needs the stage's partition function"
        ))
    );
    assert_eq!(sent, vec![]);
    assert_eq!(dispatcher.partition_state(0), Some((3, 0)));
    assert_eq!(waiting_and_pending(&dispatcher), (3, 0));
}

// Item 149: GenStage's init errors (no `:partitions`; named partitions without a `:hash`) have no
// counterpart: the count is an argument of `new`, and partitions are indexes. Zero partitions is
// possible (the pipeline refuses it before it runs, `DispatchSetupError::NoPartitions`), and then no
// subscription is taken.
#[test]
fn zero_partitions_take_no_subscription() {
    let mut dispatcher = PartitionDispatcher::<u64>::new(0);
    assert_eq!(Dispatcher::<u64>::partitions(&dispatcher), Some(0));
    assert_eq!(
        subscribe(&mut dispatcher, R0, 0),
        Err(error("partition 0 does not exist: there are 0 (0..0)"))
    );
    assert_eq!(dispatcher.consumers(), 0);
    assert_eq!(dispatcher.partition_state(0), None);
}

// Item 150: a subscription without a partition, to a partition already taken, or out of range is
// refused (GenStage raises inside the producer). GenStage's `-1` and `:oops` are not `usize`s. The
// port also refuses a selector, and an id already registered.
#[test]
fn bad_subscriptions_are_refused() {
    let mut dispatcher = PartitionDispatcher::<u64>::new(2);
    assert_eq!(
        dispatcher.subscribe(R0, &DispatchOptions::none()),
        Err(error(
            "a subscription to a partitioned stage must name its partition (0..2)"
        ))
    );
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(
        subscribe(&mut dispatcher, R1, 0),
        Err(error("partition 0 is already taken by subscription 10"))
    );
    assert_eq!(
        subscribe(&mut dispatcher, R1, 2),
        Err(error("partition 2 does not exist: there are 2 (0..2)"))
    );
    assert_eq!(
        subscribe(&mut dispatcher, R0, 1),
        Err(error("subscription 10 is already registered"))
    );
    assert_eq!(
        dispatcher.subscribe(R1, &DispatchOptions::selector(|_: &u64| true)),
        Err(error(
            "a partition dispatcher takes no selector: its partition function chooses each \
             event's consumer"
        ))
    );
    assert_eq!(dispatcher.consumers(), 1);
    assert_eq!(dispatcher.partition_state(1), Some((0, 0)));
    // An ask or a cancel for a subscription it does not hold changes nothing.
    assert_eq!(ask(&mut dispatcher, R1, 4), (0, vec![]));
    assert_eq!(dispatcher.cancel(R1), 0);
    assert_eq!(waiting_and_pending(&dispatcher), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Property: random subscribes, asks, cancels and dispatches.

/// What the property does, in order.
#[derive(Debug, Clone)]
enum Op {
    /// A new subscription, to partition `p` (possibly taken, or out of range: then refused).
    Subscribe(usize),
    /// The `n`th live subscription (modulo their number) asks for `demand`.
    Ask(usize, usize),
    /// The `n`th live subscription (modulo their number) leaves.
    Cancel(usize),
    /// The producer emits `count` new events.
    Emit(usize),
    /// The producer emits at most `capacity()` new events (`count` capped).
    EmitWithin(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..5).prop_map(Op::Subscribe),
        5 => (0usize..8, 1usize..12).prop_map(|(n, demand)| Op::Ask(n, demand)),
        1 => (0usize..8).prop_map(Op::Cancel),
        4 => (1usize..15).prop_map(Op::Emit),
        2 => (1usize..15).prop_map(Op::EmitWithin),
    ]
}

/// A partitioned producer's setup: the number of partitions, the partition of event `n` (the
/// `n % routes.len()`th route: `None` discards it), and the most events kept for no consumer.
#[derive(Debug, Clone)]
struct Setup {
    partitions: usize,
    routes: Vec<Option<usize>>,
    stranded_limit: usize,
}

fn setup() -> impl Strategy<Value = Setup> {
    (1usize..5)
        .prop_flat_map(|partitions| {
            (
                Just(partitions),
                proptest::collection::vec(
                    prop_oneof![1 => Just(None), 5 => (0..partitions).prop_map(Some)],
                    1..10,
                ),
                prop_oneof![(0usize..8), Just(10_000)],
            )
        })
        .prop_map(|(partitions, routes, stranded_limit)| Setup {
            partitions,
            routes,
            stranded_limit,
        })
}

/// One subscription, as the test sees it.
struct Consumer {
    partition: usize,
    asked: usize,
    received: usize,
}

/// A model of the producer's loop around the dispatcher (`EventPath`): leftover events wait in a
/// buffer, which is served first, up to `capacity()`, after every ask, cancel and emit.
struct Model {
    setup: Setup,
    dispatcher: PartitionDispatcher<u64>,
    /// Live subscriptions, by id.
    consumers: BTreeMap<SubscriptionId, Consumer>,
    next_id: SubscriptionId,
    next_event: u64,
    buffer: Vec<u64>,
    discarded: usize,
    delivered: usize,
    /// The events each partition delivered, to any of its consumers, in order.
    by_partition: Vec<Vec<u64>>,
}

impl Model {
    fn new(setup: Setup) -> Self {
        Model {
            dispatcher: PartitionDispatcher::new(setup.partitions)
                .with_stranded_limit(setup.stranded_limit),
            by_partition: vec![Vec::new(); setup.partitions],
            setup,
            consumers: BTreeMap::new(),
            next_id: 1,
            next_event: 0,
            buffer: Vec::new(),
            discarded: 0,
            delivered: 0,
        }
    }

    fn route(&self, event: u64) -> Option<usize> {
        self.setup.routes[event as usize % self.setup.routes.len()]
    }

    fn nth(&self, n: usize) -> Option<SubscriptionId> {
        let len = self.consumers.len();
        (len > 0)
            .then(|| n % len)
            .and_then(|at| self.consumers.keys().nth(at).copied())
    }

    /// Takes the batches sent, checking each against its consumer's partition and demand.
    fn received(&mut self, sent: Deliveries<u64>) {
        for (sub, batch) in sent {
            assert!(!batch.is_empty(), "an empty batch is never sent");
            let routes: Vec<Option<usize>> = batch.iter().map(|&e| self.route(e)).collect();
            let consumer = self
                .consumers
                .get_mut(&sub)
                .expect("events go only to live subscriptions");
            for (event, route) in batch.iter().zip(routes) {
                assert_eq!(
                    route,
                    Some(consumer.partition),
                    "event {event} sent to subscription {sub}"
                );
            }
            consumer.received += batch.len();
            assert!(
                consumer.received <= consumer.asked,
                "subscription {sub} was sent more than it asked for"
            );
            self.delivered += batch.len();
            self.by_partition[consumer.partition].extend(batch);
        }
    }

    /// Hands `events` to the dispatcher; returns the leftover.
    fn dispatch(&mut self, events: Vec<u64>) -> Vec<u64> {
        let mut sent = Vec::new();
        let routes = self.setup.routes.clone();
        let route = move |n: &u64| routes[*n as usize % routes.len()];
        let mut out = Outbox::new(&mut sent).with_partition(&route);
        let leftover = self
            .dispatcher
            .dispatch(events.clone(), &mut out)
            .expect("every route is in range");
        self.discarded += out.discarded();
        let taken = events.len() - leftover.len();
        assert_eq!(
            leftover,
            events[taken..],
            "leftover is the tail of the batch"
        );
        self.received(sent);
        leftover
    }

    /// Serves the buffer up to `capacity()`, as the loop does: at most `capacity()` events must
    /// all be taken.
    fn drain(&mut self) {
        loop {
            let capacity = self.dispatcher.capacity();
            if capacity == 0 || self.buffer.is_empty() {
                return;
            }
            let rest = self.buffer.split_off(capacity.min(self.buffer.len()));
            let taken = std::mem::replace(&mut self.buffer, rest);
            let leftover = self.dispatch(taken);
            assert_eq!(leftover, vec![], "capacity() events left some over");
        }
    }

    fn fresh(&mut self, count: usize) -> Vec<u64> {
        let events = (self.next_event..self.next_event + count as u64).collect();
        self.next_event += count as u64;
        events
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Subscribe(partition) => {
                let sub = self.next_id;
                self.next_id += 1;
                let taken = self.consumers.values().any(|c| c.partition == partition);
                let result = self
                    .dispatcher
                    .subscribe(sub, &DispatchOptions::partition(partition));
                if partition >= self.setup.partitions || taken {
                    assert!(result.is_err(), "partition {partition} refused");
                } else {
                    assert_eq!(result, Ok(0));
                    self.consumers.insert(
                        sub,
                        Consumer {
                            partition,
                            asked: 0,
                            received: 0,
                        },
                    );
                }
            }
            Op::Ask(n, demand) => {
                let Some(sub) = self.nth(n) else {
                    return;
                };
                if let Some(consumer) = self.consumers.get_mut(&sub) {
                    consumer.asked += demand;
                }
                let mut sent = Vec::new();
                self.dispatcher
                    .ask(sub, demand, &mut Outbox::new(&mut sent));
                self.received(sent);
                self.drain();
            }
            Op::Cancel(n) => {
                let Some(sub) = self.nth(n) else {
                    return;
                };
                self.dispatcher.cancel(sub);
                self.consumers.remove(&sub);
                self.drain();
            }
            Op::Emit(count) => {
                let events = self.fresh(count);
                if self.buffer.is_empty() {
                    let leftover = self.dispatch(events);
                    self.buffer.extend(leftover);
                } else {
                    self.buffer.extend(events);
                }
                self.drain();
            }
            Op::EmitWithin(count) => {
                if !self.buffer.is_empty() {
                    return;
                }
                let count = count.min(self.dispatcher.capacity());
                let events = self.fresh(count);
                let leftover = self.dispatch(events);
                assert_eq!(leftover, vec![], "capacity() events left some over");
            }
        }
        self.check();
    }

    fn check(&self) {
        let dispatcher = &self.dispatcher;
        // Every event handed in is delivered, discarded (counted), buffered, or kept by the
        // dispatcher for a consumer or for none.
        assert_eq!(
            self.next_event as usize,
            self.delivered
                + self.discarded
                + self.buffer.len()
                + dispatcher.held()
                + dispatcher.stranded(),
            "an event is lost or counted twice"
        );
        assert_eq!(dispatcher.consumers(), self.consumers.len());
        // Per-partition order, across its consumers: events are numbered in emission order.
        for (partition, events) in self.by_partition.iter().enumerate() {
            assert!(
                events.windows(2).all(|w| w[0] < w[1]),
                "partition {partition} out of order: {events:?}"
            );
        }
        // Each consumer's demand is what it asked and was not sent; a consumer with demand has no
        // backlog.
        let mut demand = 0;
        let mut backlog = 0;
        for (sub, consumer) in &self.consumers {
            let state = dispatcher.partition_state(consumer.partition);
            let (unmet, queued) = state.expect("a partition in range");
            assert_eq!(
                unmet,
                consumer.asked - consumer.received,
                "the demand of subscription {sub}"
            );
            assert!(unmet == 0 || queued == 0, "demand and a backlog at once");
            demand += unmet;
            backlog += queued;
        }
        assert_eq!(backlog, dispatcher.held());
        // An info waits exactly while a consumer has a backlog, and not yet past it.
        match Dispatcher::<u64>::mark(dispatcher) {
            None => assert_eq!(backlog, 0, "a backlog, yet an info would not wait"),
            Some(mark) => {
                assert!(backlog > 0, "no backlog, yet an info would wait");
                assert!(!dispatcher.passed(&mark), "a fresh mark is passed");
            }
        }
        // The producer is never asked for more than the consumers want; and their demand is never
        // lost: only a backlog (the shared demand it used up) holds it back.
        let capacity = dispatcher.capacity();
        assert!(capacity <= demand, "capacity {capacity} > demand {demand}");
        assert!(
            capacity + backlog >= demand,
            "capacity {capacity} + backlog {backlog} < demand {demand}: demand lost"
        );
        if backlog == 0 {
            assert_eq!(
                capacity, demand,
                "no backlog, yet the capacity is not the demand"
            );
        }
        // The buffer is served while the consumers can take something.
        assert!(self.buffer.is_empty() || capacity == 0);
    }
}

/// A consumer may ask for any `usize`, however many times: its partition's demand and the shared
/// demand saturate at `usize::MAX` (an overflow panicked in a debug build).
#[test]
fn asking_usize_max_twice_saturates() {
    const MAX: usize = usize::MAX;
    let mut dispatcher = PartitionDispatcher::new(2);
    assert_eq!(subscribe(&mut dispatcher, R0, 0), Ok(0));
    assert_eq!(subscribe(&mut dispatcher, R1, 1), Ok(0));
    assert_eq!(ask(&mut dispatcher, R0, MAX), (MAX, vec![]));
    assert_eq!(ask(&mut dispatcher, R0, MAX), (MAX, vec![]));
    assert_eq!(dispatcher.partition_state(0), Some((MAX, 0)));
    assert_eq!(waiting_and_pending(&dispatcher), (MAX, 0));
    assert_eq!(dispatcher.capacity(), MAX);
    assert_eq!(ask(&mut dispatcher, R1, MAX), (MAX, vec![]));
    assert_eq!(dispatcher.partition_state(1), Some((MAX, 0)));

    assert_eq!(
        dispatch(&mut dispatcher, parity, &[1, 2, 3, 4]),
        Dispatched {
            sent: vec![(R0, vec![2, 4]), (R1, vec![1, 3])],
            leftover: Ok(vec![]),
            discarded: 0,
        }
    );
    assert_eq!(dispatcher.partition_state(0), Some((MAX - 2, 0)));
    assert_eq!(dispatcher.partition_state(1), Some((MAX - 2, 0)));
    assert_eq!(waiting_and_pending(&dispatcher), (MAX - 4, 0));
    assert_eq!(ask(&mut dispatcher, R1, MAX), (MAX, vec![]));
    assert_eq!(dispatcher.partition_state(1), Some((MAX, 0)));
    assert_eq!(waiting_and_pending(&dispatcher), (MAX, 0));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_event_reaches_its_partitions_consumer_once_in_order(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let mut model = Model::new(setup);
        for op in &ops {
            model.apply(op);
        }
    }
}
