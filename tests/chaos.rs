//! Chaos: thousands of random pipelines, each of which must end, account for every event it emitted,
//! and deliver none twice.
//!
//! A seed makes a [`Topology`]: 1–3 producers, 0–2 producer_consumers and 1–4 consumers, wired with
//! fan-in and fan-out, each edge with its own `max_demand`, `min_demand` and cancel mode. Each stage
//! follows a plan: producers emit exactly, fewer or more events than asked, return empty batches, or
//! take their events from a channel that a spawned task feeds late, or emit them from `handle_cast`,
//! cast to them by a task through the producer's reference (and `handle_demand` emits nothing); some
//! start in `DemandMode::Accumulate` and are switched to forward by a task after a random number of
//! yields (what they are asked meanwhile is replayed then, and what they are cast waits); some
//! stall for ever on a channel nobody feeds, but only where every consumer of theirs is also
//! subscribed, permanently or transiently, to a producer that fails at once, so that the run must
//! still end. Faults are an `Err` or a panic in any callback, at a random call. Some runs are started
//! in the background and shut down gracefully at a random moment: nothing already emitted may be
//! lost then; half of them are asked for twice through a `ShutdownHandle`, by a task of their own,
//! while the run's handle is awaited for the report. Some runs without a fault are started in the
//! background and aborted at a random moment instead: what the stages held then is lost, and must
//! be accounted for all the same. Each value of a stage runs `init` once, before its other
//! callbacks: a stage runs it once more than its report counts restarts. A quarter of the stages
//! have their failure dismissed, through the builder (`Pipeline::dismiss_failure`) or, in the runs
//! started in the background, through the handle as the run starts: the run fails only for a
//! stage that stopped for good and was not dismissed, and its error names such a stage.
//!
//! Some producers of the test's own (not one that stalls, nor a `from_channel` or `from_stream`
//! one) and producer_consumers in a run shut down or aborted wait for consumers
//! (`WithoutConsumers::Wait`): left without consumers, by a cancel through the handle or its
//! consumers' faults, they stay up, keeping their buffer (a producer_consumer its subscriptions,
//! and its input), until the shutdown ends them; only a stage left so may then lose its buffer (as
//! `Buffered`) or input (`Unhandled`), as it ends `ShutDown`, in a run without a fault.
//!
//! Some producers are `from_channel` producers, fed their events one at a time, with pauses, by a
//! spawned task that then drops its sender (the producer ends) or, in a run shut down gracefully,
//! sends until a send fails. Each event a `send` accepted is in the report as emitted, and lost (as
//! `NotEmitted`, the channel's tail, which no stage got) only if the producer stopped early (a fault,
//! an abort, its consumers leaving), never in a graceful shutdown; the event a failed `send` gave
//! back is neither emitted nor handled. They have no fault,
//! no callback of the test's, the demand dispatcher and no restart policy: a `FromChannel` is given
//! by value, and a value made again would have no sender.
//!
//! Manual demand: some consumers and producer_consumers take manual control (`Demand::Manual`) in
//! `handle_subscribe` of their subscriptions to the stages upstream that their plan names, and ask
//! on them, keeping within `max_demand` by their own count of what they asked and got on each:
//! after each batch, either with `Context::ask` (`handle_events`, which has no context, sends the
//! stage an info through its reference; told it, the stage asks) or from `handle_events` itself,
//! through the `Asker`s it made in `handle_subscribe`, each manual subscription for a random
//! amount, at least one where nothing is outstanding, so that it never waits on a subscription it
//! asked nothing on; or on a tick it sends itself every millisecond with `info_after` (then only on
//! subscriptions with a `max_demand` of 50 or more, each tick topping them up: GenStage's rate
//! limiter). A value made again after a failure, told of its subscriptions again, asks at once. A
//! producer_consumer in a run shut down gracefully asks on ticks or through its `Asker`s: shutting
//! down, it takes no messages from outside, but still those it sends itself, and an `Asker`'s asks
//! are those.
//!
//! Streams: some producers that need nothing a `FromStream` lacks are [`from_stream`] producers of
//! a stream that yields its events now at once, now after a `Pending` (a yield) or a 1 ms sleep, and
//! ends after them or, in two fifths of the runs shut down, never; a planned panic
//! becomes a panic of the stream, at an item, after a `Pending` there (so that it strikes a call
//! that took nothing yet). Some consumers without a planned fault are [`to_stream`] sinks, with
//! options of their own or their edges', whose stream a task of the test reads, with pauses (or,
//! for half of them, without), recording each event it gets as handled; two fifths of them drop the stream after a random
//! number of events (0 included), if it has not ended by then: the sink stops, as a consumer
//! leaving does, and its producers may stop, left without consumers.
//!
//! Some consumers without a planned fault are [`ConsumerSupervisor`]s (with options of their own
//! in half), whose children ([`Job`]) record their event handled, some after a yield; in two
//! thirds of them, children fail (an `Err`, or a panic) on some events, once each: temporary
//! children lose them (`ChildFailed`), transient ones are run again and succeed then.
//!
//! Restarts: some stages get a restart policy (temporary, transient or permanent, which for a stage
//! that takes events is transient, and restarts a producer also after it finishes on its own, each
//! value made after that saying at its first call that it has nothing more; 0 to 5 restarts in a
//! window longer than any run; redelivery for half of the consumers that have one) and are added
//! with a constructor (`add_*_with_as`), whose values share the stage's progress (calls counted,
//! sequence numbers, the producer's supply, what a failed `handle_cast` was cast), so that a value
//! made again goes on where the failed one was and a fault that struck does not strike again,
//! unless it is sticky: in `handle_events`, a sticky fault strikes again whenever the stage is
//! handed the event it struck on (with redelivery, until the restart limit names it the poison
//! event; without, the batch is lost and the event never comes back); in a producer, at every call
//! after its own. A fault in `handle_events` may strike after the callback has handled a few events
//! of its batch. A producer whose failure must make a stalling producer's consumers leave stops at
//! its first failure.
//!
//! Every producer and producer_consumer records what its `handle_consumer_subscribe` and
//! `handle_consumer_cancel` are told; some emit a few events of their own in `handle_consumer_cancel`
//! (counted as a callback call, so a planned fault may strike there), and some fail there at the
//! first cancel. Some of the runs started in the background cancel a subscription, or resubscribe its
//! consumer to another stage upstream of it, through the handle at a random moment (a race lost with
//! the run's end is no failure); half of those acting on a broadcast's subscription first subscribe
//! its consumer to the broadcast again, which must be refused as already subscribed. Some
//! message-fed producers send themselves an `info_after_buffered` after each chunk and, told it,
//! cast a mark to the consumers they feed directly (and only so); the mark follows their events in
//! each consumer's mailbox.
//!
//! Added stages: the runs started in the background with no such action (and no stalling producer) leave one stage of their
//! topology out of the pipeline they start (a consumer of any kind, a producer of the test's own,
//! or a producer_consumer), and add it through the handle after a few yields, then subscribe it
//! along its edges ([`Topology::plan_add`]). The run may end first: a refusal because the pipeline
//! or the stage at the other end has ended is a race lost (the stage is then missing from the
//! report, or lacks that subscription); any other error is a failure. An added stage is held to
//! every check a built one is (its events, its report, its edges, what its producers are told),
//! and the run to its strict accounting (no loss without a fault); a quarter are subscribed to
//! nothing. A consumer that never got a subscription ends as a built one ends. A producer or
//! producer_consumer with no consumer to deliver to ends `ShutDown` at a graceful shutdown only if
//! none of its subscriptions to consumers was made, or `Cancelled`, left without consumers (or,
//! waiting for consumers, `ShutDown` at the shutdown), only once each subscription it was told of
//! has ended (it was subscribed to consumers that were ending: a stage ending takes a
//! subscription and ends it as it ends); it then loses what it held
//! (`Buffered`, `Unhandled`), and what its producers sent it once it had ended (their
//! `ConsumerGone`), and nothing else, and the run's accounting allows exactly that.
//!
//! Refusals: a message-fed producer's feeder stops at the first cast refused, and an
//! accumulating producer's switch to forward may be refused; a refusal as `CallError::Ended`
//! means the stage has ended or is ending, so no value of it may be made after one, unless it
//! failed (on a message accepted before; a hang's message names a stage made again so).
//!
//! Producers and producer_consumers hand their events out with the demand dispatcher (half of them
//! with the test's own, `Rotating`, through `Dispatch::custom`, which the same checks hold), or
//! broadcast them (every consumer gets each, but for those its edge's selector, a residue of the
//! sequence number, rejects), or partition them (by a function of the event, some to `None`: discarded),
//! each partition taken by exactly one edge. Routing panics: in some runs not aborted, a stage
//! that broadcasts or partitions has a partition function, or selectors (one that accepts
//! everything is added to an edge where none has one), that panic when asked about the n-th
//! event they had not been asked about (1–60), once, or, sticky, at that event each time again.
//! The dispatch sends nothing of its events; the stage fails as for a callback's panic, under its
//! policy. A producer's events of the dispatch are lost (`FailedBatch`), and so are a
//! producer_consumer's but where the dispatch was of the whole output of its batch in hand: then
//! that batch is the failed batch, lost or handed again as if `handle_events` had failed on it
//! (its output not counted emitted). Which of the two the runtime saw is read from the batch
//! being handed again, or from the report's events in; the test then holds the report to it.
//! A producer_consumer appends itself to each event's route, so that the copies of a broadcast
//! that meet again downstream are told apart. A subscription to a partitioned stage that is
//! cancelled through the handle may be taken again: its consumer subscribes anew to the same
//! partition; no other subscription made through the handle goes to a partitioned stage, nor to a
//! broadcast that already feeds its consumer.
//!
//! The runs started in the background ask, as they start, for the end of each built stage
//! ([`PipelineHandle::stage_ended`]): each answer must be the stage's entry in the run's report.
//!
//! Each run has a tokio runtime of its own (current_thread, or 2 or 4 workers, from the seed) and
//! must end within [`time_bound`]. Events are unique `(producer, seq, route)` ids; the stages
//! record what they emit and handle in a [`Ledger`], and the run is checked against it: no event
//! handled twice by a stage (but for those a failed callback handled before it failed, handed again
//! by redelivery: the events of a failed batch are never handled again without redelivery, and with
//! it all are by the time the stage finishes), nor by two stages unless the stage that emitted it
//! last broadcasts, and then only by consumers whose selector accepts it; a partition's events only
//! by the consumer of their partition, and a `None`'s by none; each stage handles the events of a
//! route in order; the report's counts match the ledger's, and the report balances (`emitted +
//! copies = handled + discarded + lost`); each stage was restarted after each fault that struck it
//! but the one that stopped it for good (the first, for a temporary stage; the one past
//! `max_restarts` for another), its report counts those restarts and failures, the events handed
//! again (the batches its failed callbacks held, but the one it stopped on) and those lost in
//! failed batches (the others), and the run's error names a stage that stopped for good, by its
//! policy (`StageFailed`, `StagePanicked`, or `RestartLimit` with its limit, failures and poison
//! event; a permanent producer's failures are its faults and its ends, in order, each end one of
//! the times it said its events were the last; a routing panic counts as a fault, a batch in hand
//! it failed as a failed batch, a dispatch it lost as one event lost at least, and, in a run where
//! no stage stopped for good, nothing was done through the handle and nothing aborted, as one run
//! of the stage's events, in the order it emitted them, holding the event it struck on, none of
//! which reached a consumer, as long as the report says); every stage ends as its faults say (a
//! stage restarted after its faults, as if none had struck), and a run in which no stage stopped
//! for good succeeds and delivers everything but the failed batches that were not handed again (and
//! but for what a producer left without consumers by a cancel through the handle held, and what a
//! partition whose consumer was cancelled through the handle, or left, kept for no one: lost, and
//! counted). In a run with no fault and no action through the handle, every consumer of a broadcast
//! (that its selector lets) and of a partition gets each of the stage's events, and the stage's
//! report counts as copies and as discarded exactly what the consumers say. Each value of a stage
//! is told of each subscription at most once (never of one it ended before taking in; a value made
//! again after a failure, of those still running, never of one whose cancel was told), of its
//! cancel at most once and after it, and with the reason the test knows: `Cancelled` only for a
//! subscription cancelled or replaced through the handle, or whose consumer the test told to
//! cancel it (`Context::cancel`, half of the plain cancels, where the consumer answers calls),
//! `Failed` naming its consumer when that
//! consumer stopped for good for its fault, `Finished` never then (a consumer restarted after its
//! fault ends its subscriptions as if none had struck). The infos behind the buffer come in order,
//! and a consumer handles no event of a mark's producer below the mark after it (a partitioned
//! producer's too: its infos wait behind the partitions' backlogs).
//!
//! Manual demand is checked too: the runs end; `ask` refuses nothing but on a subscription that
//! has ended; each batch of a stage with manual demand is told its subscription by `batch_from`
//! (also when handed again), and a manual one holds only events of that subscription's producer
//! (no action through the handle); no stage gets more events on a manual subscription than it asked for (by its own
//! count, where it knows the subscription an event came on: no action through the handle), nor any
//! stage events in excess by its report. A `from_stream` producer's report counts as emitted each
//! event its stream yielded, and none other, and it loses only what a producer may (its buffer,
//! what it sent to consumers gone). A `to_stream` sink's report counts as handled exactly the
//! events the test's reader got; it ends cancelled only if its stream was dropped (or the run
//! aborted), and then loses only what it was sent and its stream did not yield (`Unhandled`), its
//! subscriptions balancing (`sent = handled + lost`); one read to the end loses nothing unless a
//! stage stopped for good or the run was aborted. A dropped stream counts, for what may be lost,
//! as a cancel through the handle. A `ConsumerSupervisor`'s report counts as handled the events
//! its children recorded (in any order: they run side by side), and as lost exactly those its
//! temporary children failed on, and else only, if it stopped early, what its children held then
//! (`Unhandled`), and the failures of transient children it took in as it stopped (`ChildFailed`).
//!
//! `cargo test --test chaos` runs 2 000 seeds. Knobs, for longer runs and for replaying a failure:
//! - `CHAOS_RUNS=100000`: how many seeds (from 0, or from `CHAOS_FIRST`);
//! - `CHAOS_SEED=1234`: only that seed, printed topology and all, `CHAOS_REPEAT` times (default 20),
//!   since the schedule of a run is not deterministic even when its plan is;
//! - `CHAOS_KEEP_GOING=1`: do not stop at the first failing seed, list them all;
//! - `CHAOS_TIMEOUT_MS=500`: the time bound of a run (default 5 000).
//!
//! The test prints how many runs restarted a stage, redelivered, reached a restart limit and named
//! a poison event, had a `from_channel` producer (refused a send, lost events never emitted), were
//! aborted, asked on manual subscriptions (through an `Asker`), told a consumer to cancel its own
//! subscription (which ended so), had a `from_stream` producer (whose stream panicked), a
//! `to_stream` consumer (stopped by dropping its stream, losing what it had not yielded), a
//! `ConsumerSupervisor` (whose temporary children lost events, whose transient children were run
//! again), and a routing panic (that lost its dispatch, that failed a producer_consumer's batch in
//! hand, whose batch was handed again, that stopped its stage for good), and a producer or
//! producer_consumer that waits for consumers (shut down holding events with no consumer), and
//! added a stage while running (a producer, one that emitted or handled events, or one added too
//! late for any subscription) (`-- --nocapture` shows it).
//!
//! `CHAOS_SEED=1234 cargo test --test chaos shrink -- --ignored --nocapture` simplifies a failing
//! seed's topology step by step, as long as it still fails the same way, and prints the result.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use genstage::{
    from_channel, from_stream, to_stream, AskError, Asker, BufferKeep, CallError, CancelMode,
    CancelReason, Child, Consumer, ConsumerRef, ConsumerSupervisor, Context, Demand, DemandMode,
    Dispatch, DispatchSetupError, Emit, EventStream, FromChannel, FromStream, HandleCall,
    HandleCast, HandleInfo, LossReason, Partition, Pipeline, PipelineError, PipelineHandle,
    Producer, ProducerConsumer, ProducerConsumerRef, ProducerOptions, ProducerRef, ReplyTo, Report,
    Restart, RestartPolicy, StageRef, StageReport, StageResult, StageStatus, StreamSink,
    SubscribeOptions, Subscriber, Subscription, SubscriptionTag, WithoutConsumers,
};
use tokio::sync::mpsc;

/// A run that has not ended after this long hangs (`CHAOS_TIMEOUT_MS` overrides it). The runs take
/// milliseconds.
fn time_bound() -> Duration {
    Duration::from_millis(env("CHAOS_TIMEOUT_MS").unwrap_or(5_000))
}

/// An event: the index of the producer that emitted it (or `MIDDLE_TAG + i` for `M{i}`'s own), its
/// sequence number there, and the producer_consumers it went through: each appends a digit, so
/// that the copies a broadcast makes are told apart by their route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Event {
    tag: usize,
    seq: u64,
    path: u32,
}

impl Event {
    fn new(tag: usize, seq: u64) -> Self {
        Event { tag, seq, path: 0 }
    }

    /// The event as `M{middle}` passes it on.
    fn via(self, middle: usize) -> Self {
        Event {
            path: self.path * PATH_BASE + middle as u32 + 1,
            ..self
        }
    }

    /// The stage that emitted it last: the one whose dispatcher chose who gets it.
    fn last_emitter(&self) -> Node {
        match (self.path % PATH_BASE, self.tag.checked_sub(MIDDLE_TAG)) {
            (0, None) => Node::Producer(self.tag),
            (0, Some(middle)) => Node::Middle(middle),
            (digit, _) => Node::Middle(digit as usize - 1),
        }
    }
}

/// The base of [`Event::path`]'s digits: more than the producer_consumers a topology has.
const PATH_BASE: u32 = 8;

/// Marks the panics this test injects, so that the panic hook keeps them quiet.
const INJECTED: &str = "chaos: injected panic";

// ---------------------------------------------------------------------------------------------
// Seeds

/// SplitMix64: a seed is all a run needs to be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// `true` with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)]
    }
}

// ---------------------------------------------------------------------------------------------
// Plans

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    Error,
    Panic,
}

/// A fault that strikes at the `at`-th call of a stage's callback (counting from 1).
#[derive(Debug, Clone, Copy)]
struct Strike {
    at: usize,
    fault: Fault,
    /// In `handle_events`, the callback handles this many events of its batch (all but one at
    /// most) before it fails.
    after: usize,
    /// Strikes again: in a stage that handles events, whenever it is handed again the event it
    /// struck on (with redelivery: until the restart limit makes it the poison event); in a
    /// producer, at every call after `at`. Otherwise it strikes once, whatever the restarts.
    sticky: bool,
}

/// A panic of a stage's routing: its partition function, or the selector of one of its edges,
/// panics when it is asked about the `at`-th event it has not been asked about before (counting
/// from 1, over every value of the stage and every selector of its edges), while the stage
/// dispatches. The dispatch sends nothing of its events; the stage fails, as a callback's panic
/// fails it. A producer's events of the dispatch are lost (`FailedBatch`); so are a
/// producer_consumer's when it emitted them with no batch in hand, and otherwise the batch in hand
/// whose output they are is the failed batch, lost or handed again, as if `handle_events` had
/// failed on it (its output is not counted emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoutingStrike {
    at: usize,
    /// Strikes again whenever it is asked about the event it struck on: a producer_consumer that
    /// redelivers emits it again when it handles its source again.
    sticky: bool,
}

/// A stage's restart policy ([`RestartPolicy`]), drawn from the seed; a stage without one keeps
/// its type's default (temporary) and is added as a value, one with one is added with a
/// constructor that makes each value share the stage's [`Progress`] and ledger with the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PolicyPlan {
    restart: Restart,
    max_restarts: u32,
    /// Only for stages that handle events.
    redeliver: bool,
}

impl PolicyPlan {
    /// In 60% of the stages: temporary (but rebuildable) in a sixth of those, permanent in a
    /// twelfth (for a stage that handles events, where it means transient: it never finishes on
    /// its own; for a producer, it is restarted also after it finishes, until its limit) and
    /// transient in the rest, with 0–5 restarts allowed and, for a stage that handles events,
    /// redelivery in half.
    fn generate(rng: &mut Rng, handles_events: bool) -> Option<Self> {
        let restart = match rng.range(0, 19) {
            0..=7 => return None,
            8 | 9 => Restart::Temporary,
            10 if handles_events => Restart::Permanent,
            11 if !handles_events => Restart::Permanent,
            _ => Restart::Transient,
        };
        Some(PolicyPlan {
            restart,
            max_restarts: rng.pick(&[0, 1, 1, 2, 3, 5]),
            redeliver: handles_events && rng.chance(50),
        })
    }

    /// The policy itself; a window of an hour, so that every restart of a run counts.
    fn policy<T: Clone>(self) -> RestartPolicy<T> {
        let policy = RestartPolicy::new(self.restart)
            .max_restarts(self.max_restarts, Duration::from_secs(3_600));
        match self.redeliver {
            true => policy.redeliver(),
            false => policy,
        }
    }

    /// How many failures a stage with `policy` is restarted after: one more stops it for good.
    fn allowed(policy: Option<Self>) -> usize {
        match policy {
            Some(p) if p.restart != Restart::Temporary => p.max_restarts as usize,
            _ => 0,
        }
    }

    /// Whether a stage with `policy` restarts after a failure (and so reports its failures).
    fn restarts(policy: Option<Self>) -> bool {
        policy.is_some_and(|p| p.restart != Restart::Temporary)
    }

    fn redelivers(policy: Option<Self>) -> bool {
        policy.is_some_and(|p| p.redeliver)
    }
}

/// How many events a producer emits for one `handle_demand(demand)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    /// Exactly `demand`.
    Exact,
    /// `max(1, demand / d)`: the runtime asks again for the rest.
    Fewer(usize),
    /// `demand + extra`: the excess is buffered.
    More(usize),
    /// An empty batch every `k`-th call, `demand` otherwise.
    EmptyEvery(usize),
}

/// Where a producer's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// It has them all at once, and ends with `Emit::last`.
    Ready,
    /// A task spawned beside the pipeline feeds them through a channel, in chunks and with pauses; the
    /// producer awaits the channel when it has none left, and ends when the channel closes.
    Late,
    /// A task spawned beside the pipeline casts them to the producer in chunks and with pauses, the
    /// last chunk marked last; the producer emits them from `handle_cast`, against demand or not
    /// (the excess is buffered), and its `handle_demand` emits nothing.
    Messages,
    /// It has them all at once, then awaits a channel that nobody ever feeds: it never ends by
    /// itself. Only planned where every consumer of it leaves (see [`Topology::plan_faults`]).
    Stall,
    /// Not a [`Chaotic`] producer: a [`from_channel`] producer whose channel holds `capacity`
    /// events, fed one event at a time, with pauses, by a task spawned beside the pipeline (see
    /// [`channel_feed`]), which then drops its sender or, if `endless` (only in a run shut down
    /// gracefully), sends until a send fails. See [`Topology::plan_channels`].
    Channel { capacity: usize, endless: bool },
    /// Not a [`Chaotic`] producer: a [`from_stream`] producer of a [`Trickle`], which yields its
    /// events now at once, now after a yield or a 1 ms sleep, and ends after them or, if
    /// `endless` (only in a run shut down), never. With `panic_at`, the stream panics when it is
    /// polled for that item (or for the end, if it has fewer), after saying `Pending` once, so
    /// that the panic strikes a call that took nothing yet. See [`Topology::plan_streams`].
    Stream {
        endless: bool,
        panic_at: Option<u64>,
    },
}

impl Source {
    fn is_channel(self) -> bool {
        matches!(self, Source::Channel { .. })
    }

    fn is_stream(self) -> bool {
        matches!(self, Source::Stream { .. })
    }

    /// A producer of the library's, not of the test's: it runs none of the test's callbacks, and is
    /// told of nothing.
    fn is_foreign(self) -> bool {
        self.is_channel() || self.is_stream()
    }
}

#[derive(Debug, Clone)]
struct ProducerPlan {
    events: u64,
    source: Source,
    shape: Shape,
    /// Ends with an empty `Emit::last` after its final events, rather than with them.
    last_separately: bool,
    /// A small buffer that may overflow, instead of the default 10 000 events.
    buffer: Option<(usize, BufferKeep)>,
    /// Starts in `DemandMode::Accumulate`; a task switches it to forward after this many yields.
    accumulate: Option<usize>,
    /// Waits for consumers (`WithoutConsumers::Wait`): stays up, keeping its buffer, when its
    /// consumers have all left. Only in a run shut down or aborted, which ends it then.
    waits: bool,
    strike: Option<Strike>,
    /// Only for a [`Fan::Broadcast`] or [`Fan::Partition`] producer.
    routing: Option<RoutingStrike>,
    policy: Option<PolicyPlan>,
    /// What its `handle_consumer_cancel` does besides recording the call.
    on_cancel: Option<OnCancel>,
    /// A [`Source::Messages`] producer that, after each chunk it is cast, sends itself an
    /// `info_after_buffered` ([`Confirm`]) and, told it, casts a [`Mark`] to its consumers.
    confirm: bool,
    fan: Fan,
    /// Its failure is dismissed: the run does not fail for it. Through the handle as the run starts,
    /// in a run started in the background (not on the stage added while it runs); through the
    /// builder in the others.
    dismissed: bool,
}

/// How a stage that emits hands its events to its consumers: its dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fan {
    /// Each event to one consumer (the default dispatcher).
    Demand,
    /// Every event to every consumer whose edge's selector (if any) accepts it.
    Broadcast,
    /// Each event to the consumer of its partition ([`Fan::route`]); its edges take the partitions
    /// `0..partitions`, one each.
    Partition {
        partitions: usize,
        /// The events whose `seq % d == d - 1` go nowhere (`None`: discarded).
        discard: Option<u64>,
    },
}

impl Fan {
    /// The partition of `event`, for [`Fan::Partition`]: runs of three sequence numbers, shifted
    /// by the emitter's tag.
    fn route(&self, event: &Event) -> Option<usize> {
        let Fan::Partition {
            partitions,
            discard,
        } = *self
        else {
            return None;
        };
        if discard.is_some_and(|d| event.seq % d == d - 1) {
            return None;
        }
        Some((event.seq as usize / 3 + event.tag) % partitions)
    }

    /// Demand in 70% of the stages, broadcast or partition in 15% each (the partitions are counted
    /// once the edges are known).
    fn generate(rng: &mut Rng) -> Self {
        match rng.range(0, 19) {
            0..=2 => Fan::Broadcast,
            3..=5 => Fan::Partition {
                partitions: 0,
                discard: rng.chance(35).then(|| rng.range(3, 7) as u64),
            },
            _ => Fan::Demand,
        }
    }
}

/// A broadcast edge's selector: the consumer takes the events whose `seq % modulus == residue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Selector {
    modulus: u64,
    residue: u64,
}

impl Selector {
    fn accepts(&self, event: &Event) -> bool {
        event.seq % self.modulus == self.residue
    }
}

/// A stage's `handle_consumer_cancel`: it emits `events` more events each time (unique ids, as any
/// of the stage's), and fails with `fault` the first time, after counting the call as a callback
/// call (so that a [`Strike`] may also fall on it).
#[derive(Debug, Clone, Copy)]
struct OnCancel {
    events: u64,
    fault: Option<Fault>,
}

/// Through the handle of a run started in the background, `after` yields after the first
/// subscription a producer was told of: cancel one of the subscriptions the producers were told of
/// so far, or resubscribe its consumer to another stage
/// (the choice is made by a generator seeded from the topology's seed).
#[derive(Debug, Clone, Copy)]
struct Action {
    after: usize,
    resubscribe: bool,
}

/// A stage of the topology that the run does not start with: after `after` yields of the caller,
/// it is added through the handle of the run (started in the background), then subscribed along
/// its edges, each a race with the run's end (see [`Topology::plan_add`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Added {
    node: Node,
    after: usize,
    /// Not subscribed at all: added and left so until the shutdown ends it (what it holds, a
    /// producer cast its events, is lost then).
    alone: bool,
}

#[derive(Debug, Clone)]
struct MiddlePlan {
    /// Drops the events whose `seq` is a multiple of this.
    filter: Option<u64>,
    strike: Option<Strike>,
    /// Only for a [`Fan::Broadcast`] or [`Fan::Partition`] producer_consumer.
    routing: Option<RoutingStrike>,
    policy: Option<PolicyPlan>,
    /// Its own events, `(MIDDLE_TAG + i, seq)`, come from here.
    on_cancel: Option<OnCancel>,
    fan: Fan,
    manual: Option<ManualPlan>,
    /// Waits for consumers, as a producer may ([`ProducerPlan::waits`]): keeps its subscriptions,
    /// holding its input, when its consumers have all left.
    waits: bool,
    /// Its failure is dismissed: the run does not fail for it. Through the handle as the run starts,
    /// in a run started in the background (not on the stage added while it runs); through the
    /// builder in the others.
    dismissed: bool,
}

#[derive(Debug, Clone)]
struct ConsumerPlan {
    /// Yields to the scheduler in every `n`-th batch.
    yield_every: Option<usize>,
    strike: Option<Strike>,
    policy: Option<PolicyPlan>,
    manual: Option<ManualPlan>,
    /// Not a [`Sink`]: a [`to_stream`] sink, whose stream the test's own task reads.
    stream: Option<StreamPlan>,
    /// Not a [`Sink`]: a [`ConsumerSupervisor`] of [`Job`]s.
    supervisor: Option<SupervisorPlan>,
    /// Its failure is dismissed: the run does not fail for it. Through the handle as the run starts,
    /// in a run started in the background (not on the stage added while it runs); through the
    /// builder in the others.
    dismissed: bool,
}

/// A [`ConsumerSupervisor`] consumer, whose children ([`Job`]) fail on the events whose
/// `seq % d == d - 1` (with `fail: Some(d)`), by an `Err` or a panic: `temporary` children lose
/// them; `transient` ones are run again with the same event, and succeed then (the restart
/// intensity allows them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SupervisorPlan {
    fail: Option<u64>,
    transient: bool,
    /// Its own `max_demand` and `min_demand`, which its edges then leave to it.
    options: Option<(usize, usize)>,
}

/// A stage that takes manual control (`Demand::Manual`) of some of its subscriptions in
/// `handle_subscribe`, and asks on them itself ([`Manual`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ManualPlan {
    /// The stages upstream whose subscriptions it takes: `P{i}` is bit `i`, `M{i}` bit `4 + i`.
    takes: u8,
    asks: Asks,
}

/// When a [`ManualPlan`]'s stage asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asks {
    /// After each batch: its `handle_events` sends it an [`AskNow`] info through its own
    /// reference, and told it, it asks each manual subscription for a random amount that keeps
    /// within `max_demand`, at least one where nothing is outstanding.
    AfterBatch,
    /// On a [`Tick`] it sends itself with `info_after` every millisecond, from its first manual
    /// subscription on: each tops its manual subscriptions up to `max_demand` (GenStage's rate
    /// limiter). Only subscriptions with a `max_demand` of 50 or more, so that a run takes few
    /// ticks.
    Ticks,
    /// After each batch, as [`AfterBatch`](Self::AfterBatch), but from `handle_events` itself,
    /// through the [`Asker`]s it made in `handle_subscribe`.
    Asker,
}

impl ManualPlan {
    /// In a quarter of the stages; taking every subscription in half of those.
    fn generate(rng: &mut Rng) -> Option<Self> {
        rng.chance(25).then(|| ManualPlan {
            takes: match rng.chance(50) {
                true => u8::MAX,
                false => rng.range(1, 255) as u8,
            },
            asks: match rng.range(0, 9) {
                0..=2 => Asks::Ticks,
                3..=5 => Asks::AfterBatch,
                _ => Asks::Asker,
            },
        })
    }

    /// Whether it takes manual control of a subscription to `producer` with this `max_demand`.
    fn takes(&self, producer: Node, max_demand: usize) -> bool {
        let bit = match producer {
            Node::Producer(i) => i,
            Node::Middle(i) => 4 + i,
            Node::Consumer(_) => return false,
        };
        self.takes & (1 << bit) != 0 && (self.asks != Asks::Ticks || max_demand >= 50)
    }
}

/// A [`to_stream`] consumer: the test's task reading its stream ([`read_stream`]) drops it after
/// `drop_after` events, if it has not ended by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamPlan {
    drop_after: Option<u64>,
    /// Its own `max_demand` and `min_demand` (`StreamSink::with_options`): its edges leave them to
    /// it.
    options: Option<(usize, usize)>,
    /// Read without pauses, as fast as the stream yields.
    eager: bool,
}

/// A stage of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Node {
    Producer(usize),
    Middle(usize),
    Consumer(usize),
}

#[derive(Debug, Clone)]
struct EdgePlan {
    from: Node,
    to: Node,
    max_demand: usize,
    min_demand: usize,
    cancel: CancelMode,
    /// Only from a [`Fan::Broadcast`] stage.
    selector: Option<Selector>,
    /// The partition it takes, from a [`Fan::Partition`] stage (and only then).
    partition: Option<usize>,
}

/// The tokio runtime a run gets: the schedules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    CurrentThread,
    MultiThread(usize),
}

/// A random pipeline and what each of its stages does.
#[derive(Debug, Clone)]
struct Topology {
    seed: u64,
    flavor: Flavor,
    /// Started in the background and shut down gracefully after this many yields of the caller.
    shutdown_after: Option<usize>,
    /// Only with `shutdown_after`, and in a run without faults: aborted then, not shut down.
    abort: bool,
    /// Only with a graceful shutdown: asked for twice through a `ShutdownHandle`, by a task of its
    /// own, while the run's `PipelineHandle` is awaited for the report.
    by_handle: bool,
    /// Only with `shutdown_after`: done before its yields (which count from the action's end).
    action: Option<Action>,
    /// Only with `shutdown_after`, and without an `action`.
    added: Option<Added>,
    producers: Vec<ProducerPlan>,
    middles: Vec<MiddlePlan>,
    consumers: Vec<ConsumerPlan>,
    edges: Vec<EdgePlan>,
}

impl Topology {
    fn generate(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let producers = (0..rng.range(1, 3))
            .map(|_| ProducerPlan::generate(&mut rng))
            .collect();
        let middles = (0..rng.range(0, 2))
            .map(|_| MiddlePlan {
                filter: rng.chance(25).then(|| rng.range(2, 5) as u64),
                strike: None,
                routing: None,
                policy: None,
                on_cancel: None,
                fan: Fan::Demand,
                manual: None,
                waits: false,
                dismissed: false,
            })
            .collect();
        let consumers = (0..rng.range(1, 4))
            .map(|_| ConsumerPlan {
                yield_every: rng.chance(30).then(|| rng.range(1, 3)),
                strike: None,
                policy: None,
                manual: None,
                stream: None,
                supervisor: None,
                dismissed: false,
            })
            .collect();
        let mut topology = Topology {
            seed,
            flavor: Flavor::MultiThread(2),
            shutdown_after: None,
            abort: false,
            by_handle: false,
            action: None,
            added: None,
            producers,
            middles,
            consumers,
            edges: Vec::new(),
        };
        topology.wire(&mut rng);
        topology.plan_faults(&mut rng);
        topology.flavor = rng.pick(&[
            Flavor::CurrentThread,
            Flavor::MultiThread(2),
            Flavor::MultiThread(4),
        ]);
        topology.shutdown_after = rng.chance(25).then(|| rng.range(0, 40));
        // Drawn last, so that the rest of a seed's topology is what it was before demand modes.
        for producer in &mut topology.producers {
            producer.accumulate = rng.chance(15).then(|| rng.range(0, 30));
        }
        // And the producer-side callbacks, infos behind the buffer and handle actions after that.
        for producer in &mut topology.producers {
            producer.on_cancel = OnCancel::generate(&mut rng);
            producer.confirm = producer.source == Source::Messages && rng.chance(50);
        }
        for middle in &mut topology.middles {
            middle.on_cancel = OnCancel::generate(&mut rng);
        }
        if topology.shutdown_after.is_some() && rng.chance(60) {
            topology.action = Some(Action {
                after: rng.range(0, 20),
                resubscribe: rng.chance(50),
            });
        }
        // And the dispatchers.
        topology.fan_out(&mut rng);
        // And the restart policies.
        topology.plan_restarts(&mut rng);
        // And the channel producers.
        topology.plan_channels(&mut rng);
        // And the aborts, last of all: half of the runs without a fault that are shut down, and a
        // fifth of the others, started in the background for that.
        let shut_down = topology.shutdown_after.is_some();
        if topology.faultless() && rng.chance(if shut_down { 50 } else { 20 }) {
            topology.abort = true;
            let yields = rng.range(0, 40);
            topology.shutdown_after.get_or_insert(yields);
        }
        // And, after everything else, half of the graceful shutdowns through a `ShutdownHandle`.
        topology.by_handle = topology.shutdown_after.is_some() && !topology.abort && rng.chance(50);
        // And, after all that, the streams and manual demand.
        topology.plan_streams(&mut rng);
        topology.plan_manual(&mut rng);
        topology.plan_supervisors(&mut rng);
        // And, last of all, the routing panics.
        topology.plan_routing(&mut rng);
        // And, after them, the producers that wait for consumers.
        topology.plan_waits(&mut rng);
        // And, on a generator of its own (the rest of a seed's topology is what it was), the stage
        // added while the run goes on.
        topology.plan_add(&mut Rng::new(seed ^ 0xADD5_0000_0000));
        // And, on another, the failures dismissed.
        topology.plan_dismissals(&mut Rng::new(seed ^ 0xD155_0000_0000));
        topology
    }

    /// A quarter of the stages built with the pipeline have their failure dismissed, whether or not
    /// they may fail ([`ProducerPlan::dismissed`]).
    fn plan_dismissals(&mut self, rng: &mut Rng) {
        let added = self.added.map(|added| added.node);
        for (i, producer) in self.producers.iter_mut().enumerate() {
            producer.dismissed = added != Some(Node::Producer(i)) && rng.chance(25);
        }
        for (i, middle) in self.middles.iter_mut().enumerate() {
            middle.dismissed = added != Some(Node::Middle(i)) && rng.chance(25);
        }
        for (i, consumer) in self.consumers.iter_mut().enumerate() {
            consumer.dismissed = added != Some(Node::Consumer(i)) && rng.chance(25);
        }
    }

    /// Whether `node`'s failure is dismissed as the run starts.
    fn dismissed(&self, node: Node) -> bool {
        match node {
            Node::Producer(i) => self.producers[i].dismissed,
            Node::Middle(i) => self.middles[i].dismissed,
            Node::Consumer(i) => self.consumers[i].dismissed,
        }
    }

    /// The runs started in the background without an [`Action`] add a stage while they
    /// run: a consumer, or a producer of the test's own, chosen among those whose removal from the
    /// built pipeline leaves every stage of it wired, and whose edges are plain (the demand
    /// dispatcher, no selector, no partition: a late consumer would miss a broadcast's or a
    /// partition's events, which the exact checks count). Its restart policy is dropped (a stage
    /// added through the handle has none but its own), and a producer of the test's own from `Ready`,
    /// `Late` or `Messages` supply, which casts no marks (it is cast its events from when it is
    /// added: what it holds if it never gets a consumer is lost at the shutdown, as `Buffered`).
    /// Not in runs with a stalling producer, which need their consumers' fuses.
    fn plan_add(&mut self, rng: &mut Rng) {
        let stalls = self.producers.iter().any(|p| p.source == Source::Stall);
        if self.shutdown_after.is_none() || self.action.is_some() || stalls {
            return;
        }
        let plain = |e: &EdgePlan| {
            e.selector.is_none() && e.partition.is_none() && self.fan(e.from) == Fan::Demand
        };
        let mut candidates = Vec::new();
        for i in 0..self.consumers.len() {
            let node = Node::Consumer(i);
            let mut ins = self.edges.iter().filter(|e| e.to == node);
            let fits = ins
                .all(|e| plain(e) && self.edges.iter().any(|o| o.from == e.from && o.to != node));
            if fits {
                candidates.push(node);
            }
        }
        for (i, plan) in self.middles.iter().enumerate() {
            let node = Node::Middle(i);
            let mut ins = self.edges.iter().filter(|e| e.to == node);
            let mut outs = self.edges.iter().filter(|e| e.from == node);
            let fits = plan.fan == Fan::Demand
                && plan.routing.is_none()
                && ins.all(|e| {
                    plain(e) && self.edges.iter().any(|o| o.from == e.from && o.to != node)
                })
                && outs
                    .all(|e| plain(e) && self.edges.iter().any(|o| o.to == e.to && o.from != node));
            if fits {
                candidates.push(node);
            }
        }
        for (i, plan) in self.producers.iter().enumerate() {
            let node = Node::Producer(i);
            let mut outs = self.edges.iter().filter(|e| e.from == node);
            let fits = matches!(plan.source, Source::Ready | Source::Late | Source::Messages)
                && plan.fan == Fan::Demand
                && plan.routing.is_none()
                && outs
                    .all(|e| plain(e) && self.edges.iter().any(|o| o.to == e.to && o.from != node));
            if fits {
                candidates.push(node);
            }
        }
        // Mostly, a rarer one where there is one: a producer_consumer, or a producer cast
        // its events.
        let rare = |n: &Node| match *n {
            Node::Middle(_) => true,
            Node::Producer(i) => self.producers[i].source == Source::Messages,
            Node::Consumer(_) => false,
        };
        if candidates.iter().any(rare) && rng.chance(65) {
            candidates.retain(rare);
        }
        if candidates.is_empty() {
            return;
        }
        let node = candidates[rng.range(0, candidates.len() - 1)];
        // A stage added through the handle has no restart policy but its own.
        match node {
            Node::Producer(i) => {
                self.producers[i].policy = None;
                // Its marks would go to consumers it is not subscribed to yet, behind events that
                // reach them only once it is.
                self.producers[i].confirm = false;
            }
            Node::Middle(i) => self.middles[i].policy = None,
            Node::Consumer(i) => self.consumers[i].policy = None,
        }
        self.added = Some(Added {
            node,
            after: rng.range(0, 8),
            alone: rng.chance(25),
        });
    }

    /// Whether `node` is the stage added while the run goes on.
    fn is_added(&self, node: Node) -> bool {
        self.added.is_some_and(|a| a.node == node)
    }

    /// A third of the producers of the test's own and of the producer_consumers in a run shut down
    /// or aborted wait for consumers: one whose consumers all leave stays up until that ends it. Not one that stalls,
    /// which only ends because its consumers leave; nor in a run that must end by itself, where
    /// one left alone would hold the run open (by design).
    fn plan_waits(&mut self, rng: &mut Rng) {
        let ended = self.shutdown_after.is_some();
        for producer in &mut self.producers {
            // Drawn for every producer, fit or not.
            let chosen = rng.chance(33);
            producer.waits = chosen
                && ended
                && !producer.source.is_foreign()
                && producer.source != Source::Stall;
        }
        for middle in &mut self.middles {
            let chosen = rng.chance(33);
            middle.waits = chosen && ended;
        }
    }

    /// A routing panic ([`RoutingStrike`]) for a third of the stages that broadcast or partition,
    /// in a run not aborted (an abort is planned only for runs without a fault), at one of the
    /// first 60 events they route, sticky in a fifth of them. A broadcasting stage none of whose
    /// edges has a selector gets one that accepts every event on its first edge, to panic in.
    fn plan_routing(&mut self, rng: &mut Rng) {
        let sources: Vec<Node> = (0..self.producers.len())
            .map(Node::Producer)
            .chain((0..self.middles.len()).map(Node::Middle))
            .collect();
        for source in sources {
            // Drawn for every stage, fit or not.
            let chosen = rng.chance(33);
            let strike = RoutingStrike {
                at: rng.range(1, 60),
                sticky: rng.chance(20),
            };
            let fan = self.fan(source);
            if !chosen || self.abort || fan == Fan::Demand {
                continue;
            }
            if fan == Fan::Broadcast
                && !self
                    .edges
                    .iter()
                    .any(|e| e.from == source && e.selector.is_some())
            {
                if let Some(edge) = self.edges.iter_mut().find(|e| e.from == source) {
                    edge.selector = Some(Selector {
                        modulus: 1,
                        residue: 0,
                    });
                }
            }
            match source {
                Node::Producer(i) => self.producers[i].routing = Some(strike),
                Node::Middle(i) => self.middles[i].routing = Some(strike),
                Node::Consumer(_) => {}
            }
        }
    }

    /// A tenth of the consumers without a planned fault that are not `to_stream` sinks become
    /// [`ConsumerSupervisor`]s ([`SupervisorPlan`]), losing their restart policy and manual demand;
    /// two thirds of them have children that fail on some events, half of those restarted.
    fn plan_supervisors(&mut self, rng: &mut Rng) {
        for consumer in &mut self.consumers {
            let chosen = rng.chance(10);
            let plan = SupervisorPlan {
                fail: rng.chance(66).then(|| rng.range(2, 7) as u64),
                transient: rng.chance(50),
                options: rng.chance(50).then(|| {
                    let edge = EdgePlan::generate(rng, Node::Consumer(0), Node::Consumer(0));
                    (edge.max_demand, edge.min_demand)
                }),
            };
            if chosen && consumer.strike.is_none() && consumer.stream.is_none() {
                consumer.supervisor = Some(plan);
                consumer.manual = None;
                consumer.policy = None;
                consumer.yield_every = None;
            }
        }
    }

    /// A fifth of the producers that need nothing a [`from_stream`] producer lacks (no planned
    /// fault but a panic that strikes once, the demand dispatcher; not stalling, not a channel
    /// producer) become one ([`Source::Stream`]), endless in two fifths of the runs shut down; a
    /// planned panic at call `at` becomes one at item `10 * (at - 1)`, so that a producer that must
    /// fail at its first call still does. It loses what a `FromStream`, given by value, cannot have:
    /// its restart policy, its `handle_consumer_cancel`'s events, its confirmations. And a fifth of
    /// the consumers without a planned fault become [`to_stream`] sinks, losing their restart
    /// policy; two fifths of those are dropped early, half have options of their own.
    fn plan_streams(&mut self, rng: &mut Rng) {
        let shut_down = self.shutdown_after.is_some();
        for producer in &mut self.producers {
            // Drawn for every producer, fit or not.
            let chosen = rng.chance(20);
            let endless = shut_down && rng.chance(40);
            let fits = matches!(
                producer.source,
                Source::Ready | Source::Late | Source::Messages
            ) && producer.fan == Fan::Demand
                && producer
                    .strike
                    .is_none_or(|s| s.fault == Fault::Panic && !s.sticky);
            if chosen && fits {
                let panic_at = producer.strike.map(|s| 10 * (s.at as u64 - 1));
                producer.source = Source::Stream { endless, panic_at };
                producer.shape = Shape::Exact;
                producer.last_separately = false;
                producer.policy = None;
                producer.on_cancel = None;
                producer.confirm = false;
            }
        }
        for consumer in &mut self.consumers {
            let chosen = rng.chance(20);
            let drop_after = rng.chance(40).then(|| match rng.range(0, 3) {
                0 => 0,
                1 => rng.range(1, 5) as u64,
                _ => rng.range(0, 300) as u64,
            });
            let options = rng.chance(50).then(|| {
                let edge = EdgePlan::generate(rng, Node::Consumer(0), Node::Consumer(0));
                (edge.max_demand, edge.min_demand)
            });
            let eager = rng.chance(50);
            if chosen && consumer.strike.is_none() {
                consumer.stream = Some(StreamPlan {
                    drop_after,
                    options,
                    eager,
                });
                consumer.policy = None;
                consumer.yield_every = None;
            }
        }
    }

    /// Manual demand ([`ManualPlan`]) for a quarter of the producer_consumers and of the consumers
    /// but the `to_stream` sinks. A producer_consumer in a run shut down gracefully that would ask
    /// after each batch on an [`AskNow`] asks through its [`Asker`]s instead: shutting down, it
    /// takes no messages from outside, so it would not be told to ask (`AskNow` comes through its
    /// reference), but it still takes those it sends itself, and an `Asker`'s asks are those.
    fn plan_manual(&mut self, rng: &mut Rng) {
        let graceful = self.shutdown_after.is_some() && !self.abort;
        for middle in &mut self.middles {
            middle.manual = ManualPlan::generate(rng);
            match &mut middle.manual {
                Some(manual) if graceful && manual.asks == Asks::AfterBatch => {
                    manual.asks = Asks::Asker
                }
                _ => {}
            }
        }
        for consumer in &mut self.consumers {
            let manual = ManualPlan::generate(rng);
            if consumer.stream.is_none() {
                consumer.manual = manual;
            }
        }
    }

    /// No fault is planned: no stage has a [`Strike`] or a [`RoutingStrike`], nor fails in a
    /// cancel.
    fn faultless(&self) -> bool {
        let producers = self.producers.iter();
        let middles = self.middles.iter();
        let routed = self.producers.iter().any(|p| p.routing.is_some())
            || self.middles.iter().any(|m| m.routing.is_some());
        !routed
            && producers
                .map(|p| (p.strike, p.on_cancel))
                .chain(middles.map(|m| (m.strike, m.on_cancel)))
                .chain(self.consumers.iter().map(|c| (c.strike, None)))
                .all(|(strike, on_cancel)| {
                    strike.is_none() && on_cancel.is_none_or(|o| o.fault.is_none())
                })
    }

    /// A quarter of the producers that need nothing a [`from_channel`] producer lacks (no planned
    /// fault, the demand dispatcher; not stalling) become one ([`Source::Channel`]), fed until it
    /// fails in half of the runs shut down gracefully. It loses its restart policy (a
    /// `FromChannel` is given by value, and could not be made again with its sender: it is
    /// temporary, and never fails), its `handle_consumer_cancel`'s events and its confirmations;
    /// it keeps its events (what its feeder sends before it drops its sender), its buffer and its
    /// demand mode. Drawn last, so that the rest of a seed's topology is what it was before.
    fn plan_channels(&mut self, rng: &mut Rng) {
        let shut_down = self.shutdown_after.is_some();
        for producer in &mut self.producers {
            // Drawn for every producer, fit or not.
            let chosen = rng.chance(25);
            let capacity = rng.pick(&[1, 1, 3, 16, 100]);
            let endless = shut_down && rng.chance(50);
            let fits = producer.strike.is_none()
                && producer.fan == Fan::Demand
                && producer.source != Source::Stall;
            if chosen && fits {
                producer.source = Source::Channel { capacity, endless };
                producer.shape = Shape::Exact;
                producer.last_separately = false;
                producer.policy = None;
                producer.on_cancel = None;
                producer.confirm = false;
            }
        }
    }

    /// Restart policies for some stages, and how each planned fault strikes: once, or again; in
    /// `handle_events`, after handling a few events of its batch or none. A producer whose failure
    /// must make a stalling producer's consumers leave (see [`Topology::plan_faults`]) stops for
    /// good at its first failure.
    fn plan_restarts(&mut self, rng: &mut Rng) {
        let strike = |rng: &mut Rng, strike: &mut Option<Strike>| {
            if let Some(strike) = strike {
                strike.sticky = rng.chance(35);
                strike.after = match rng.range(0, 3) {
                    0 | 1 => 0,
                    _ => rng.range(1, 4),
                };
            }
        };
        for producer in &mut self.producers {
            producer.policy = PolicyPlan::generate(rng, false);
            strike(rng, &mut producer.strike);
            // A producer's callbacks take no batch.
            if let Some(strike) = &mut producer.strike {
                strike.after = 0;
            }
        }
        for middle in &mut self.middles {
            middle.policy = PolicyPlan::generate(rng, true);
            strike(rng, &mut middle.strike);
        }
        for consumer in &mut self.consumers {
            consumer.policy = PolicyPlan::generate(rng, true);
            strike(rng, &mut consumer.strike);
        }
        for i in 0..self.producers.len() {
            if self.is_fuse(i) && PolicyPlan::allowed(self.producers[i].policy) > 0 {
                self.producers[i].policy = None;
            }
        }
    }

    /// Whether `P{producer}` is what makes a stalling producer's consumers leave: it fails at its
    /// first call, and a consumer of a stalling producer is subscribed to it, not temporarily.
    fn is_fuse(&self, producer: usize) -> bool {
        let first = self.producers[producer].strike.is_some_and(|s| s.at == 1);
        first
            && self.edges.iter().any(|e| {
                e.from == Node::Producer(producer)
                    && e.cancel != CancelMode::Temporary
                    && self.edges.iter().any(|s| {
                        s.to == e.to
                            && matches!(s.from, Node::Producer(i)
                                if self.producers[i].source == Source::Stall)
                    })
            })
    }

    /// The stages that `source` may feed: any later one.
    fn sinks_after(&self, source: Node) -> Vec<Node> {
        let first_middle = match source {
            Node::Middle(i) => i + 1,
            _ => 0,
        };
        (first_middle..self.middles.len())
            .map(Node::Middle)
            .chain((0..self.consumers.len()).map(Node::Consumer))
            .collect()
    }

    /// The planned fault of the stage named `name`, if it has one.
    fn strike_of(&self, name: &str) -> Option<Strike> {
        match parse_node(name)? {
            Node::Producer(i) => self.producers.get(i)?.strike,
            Node::Middle(i) => self.middles.get(i)?.strike,
            Node::Consumer(i) => self.consumers.get(i)?.strike,
        }
    }

    /// The routing panic planned for the stage named `name`, if it has one.
    fn routing_of(&self, name: &str) -> Option<RoutingStrike> {
        match parse_node(name)? {
            Node::Producer(i) => self.producers.get(i)?.routing,
            Node::Middle(i) => self.middles.get(i)?.routing,
            Node::Consumer(_) => None,
        }
    }

    /// The restart policy of the stage named `name`, if it has one.
    fn policy_of(&self, name: &str) -> Option<PolicyPlan> {
        match parse_node(name)? {
            Node::Producer(i) => self.producers.get(i)?.policy,
            Node::Middle(i) => self.middles.get(i)?.policy,
            Node::Consumer(i) => self.consumers.get(i)?.policy,
        }
    }

    /// Whether a stage waits for consumers (`WithoutConsumers::Wait`).
    fn waits(&self, node: Node) -> bool {
        match node {
            Node::Producer(i) => self.producers[i].waits,
            Node::Middle(i) => self.middles[i].waits,
            Node::Consumer(_) => false,
        }
    }

    /// The dispatcher of a stage that emits.
    fn fan(&self, node: Node) -> Fan {
        match node {
            Node::Producer(i) => self.producers[i].fan,
            Node::Middle(i) => self.middles[i].fan,
            Node::Consumer(_) => Fan::Demand,
        }
    }

    fn fan_mut(&mut self, node: Node) -> Option<&mut Fan> {
        match node {
            Node::Producer(i) => Some(&mut self.producers[i].fan),
            Node::Middle(i) => Some(&mut self.middles[i].fan),
            Node::Consumer(_) => None,
        }
    }

    /// Some stages broadcast, a third of their edges with a selector; some partition: those gain up
    /// to two edges to stages they did not feed (but a stalling producer, all of whose consumers
    /// must leave), and their edges take the partitions, one each, in a random order.
    fn fan_out(&mut self, rng: &mut Rng) {
        let sources: Vec<Node> = (0..self.producers.len())
            .map(Node::Producer)
            .chain((0..self.middles.len()).map(Node::Middle))
            .collect();
        for source in sources {
            let mut fan = Fan::generate(rng);
            match &mut fan {
                Fan::Demand => {}
                Fan::Broadcast => {
                    for edge in self.edges.iter_mut().filter(|e| e.from == source) {
                        edge.selector = rng.chance(35).then(|| {
                            let modulus = rng.range(2, 4) as u64;
                            Selector {
                                modulus,
                                residue: rng.range(0, modulus as usize - 1) as u64,
                            }
                        });
                    }
                }
                Fan::Partition { partitions, .. } => {
                    let stalls = matches!(source,
                        Node::Producer(i) if self.producers[i].source == Source::Stall);
                    if !stalls {
                        let mut free: Vec<Node> = self
                            .sinks_after(source)
                            .into_iter()
                            .filter(|&to| {
                                !self.edges.iter().any(|e| e.from == source && e.to == to)
                            })
                            .collect();
                        for _ in 0..rng.range(0, 2).min(free.len()) {
                            let to = free.remove(rng.range(0, free.len() - 1));
                            self.edges.push(EdgePlan::generate(rng, source, to));
                        }
                    }
                    let mut order: Vec<usize> =
                        (0..self.edges.iter().filter(|e| e.from == source).count()).collect();
                    for i in (1..order.len()).rev() {
                        order.swap(i, rng.range(0, i));
                    }
                    *partitions = order.len();
                    let edges = self.edges.iter_mut().filter(|e| e.from == source);
                    for (edge, partition) in edges.zip(order) {
                        edge.partition = Some(partition);
                    }
                }
            }
            if let Some(slot) = self.fan_mut(source) {
                *slot = fan;
            }
        }
    }

    /// Every stage that consumes subscribes to 1–3 stages upstream of it (fan-in); every stage that
    /// emits gets at least one consumer, and often several (fan-out). Producer_consumers feed only
    /// later ones, so there is no cycle.
    fn wire(&mut self, rng: &mut Rng) {
        let producers: Vec<Node> = (0..self.producers.len()).map(Node::Producer).collect();
        let middles: Vec<Node> = (0..self.middles.len()).map(Node::Middle).collect();
        let consumers = (0..self.consumers.len()).map(Node::Consumer);
        let sinks: Vec<Node> = middles.iter().copied().chain(consumers).collect();
        let upstream_of = |sink: Node| -> Vec<Node> {
            let before = match sink {
                Node::Middle(i) => i,
                _ => usize::MAX,
            };
            let earlier = middles[..before.min(middles.len())].iter();
            producers.iter().chain(earlier).copied().collect()
        };
        let mut pairs: Vec<(Node, Node)> = Vec::new();
        for &sink in &sinks {
            let mut candidates = upstream_of(sink);
            for _ in 0..rng.range(1, 3).min(candidates.len()) {
                let from = candidates.remove(rng.range(0, candidates.len() - 1));
                pairs.push((from, sink));
            }
        }
        for &source in producers.iter().chain(&middles) {
            if !pairs.iter().any(|&(from, _)| from == source) {
                let takers: Vec<Node> = sinks
                    .iter()
                    .copied()
                    .filter(|&sink| upstream_of(sink).contains(&source))
                    .collect();
                pairs.push((source, rng.pick(&takers)));
            }
        }
        self.edges = pairs
            .into_iter()
            .map(|(from, to)| EdgePlan::generate(rng, from, to))
            .collect();
    }

    /// No fault in 40% of the runs, one or two elsewhere, on any stage, at one of its first 8 calls.
    fn plan_faults(&mut self, rng: &mut Rng) {
        let faults = match rng.range(0, 9) {
            0..=3 => 0,
            4..=7 => 1,
            _ => 2,
        };
        let strike = |rng: &mut Rng, latest: usize| Strike {
            at: rng.range(1, latest),
            fault: rng.pick(&[Fault::Error, Fault::Panic]),
            after: 0,
            sticky: false,
        };
        for _ in 0..faults {
            let stages = self.producers.len() + self.middles.len() + self.consumers.len();
            let mut target = rng.range(0, stages - 1);
            let planned = Some(strike(rng, 8));
            if target < self.producers.len() {
                self.producers[target].strike = planned;
                continue;
            }
            target -= self.producers.len();
            if target < self.middles.len() {
                self.middles[target].strike = planned;
                continue;
            }
            self.consumers[target - self.middles.len()].strike = planned;
        }
        if faults == 0 || self.producers.len() < 2 || !rng.chance(35) {
            return;
        }
        // A producer stalls after a few events, and every consumer of it leaves because another
        // producer, which it is not subscribed to temporarily, fails at its first call.
        let staller = rng.range(0, self.producers.len() - 1);
        let fuse = (staller + rng.range(1, self.producers.len() - 1)) % self.producers.len();
        let plan = &mut self.producers[staller];
        plan.source = Source::Stall;
        plan.events = rng.range(0, 30) as u64;
        self.producers[fuse].strike = Some(strike(rng, 1));
        let takers: Vec<Node> = self
            .edges
            .iter()
            .filter(|e| e.from == Node::Producer(staller))
            .map(|e| e.to)
            .collect();
        for to in takers {
            let cancel = rng.pick(&[CancelMode::Permanent, CancelMode::Transient]);
            let from = Node::Producer(fuse);
            match self.edges.iter_mut().find(|e| e.from == from && e.to == to) {
                Some(edge) => edge.cancel = cancel,
                None => self.edges.push(EdgePlan {
                    cancel,
                    ..EdgePlan::generate(rng, from, to)
                }),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shrinking a failing topology

impl Topology {
    /// Every stage that emits has a consumer, every stage that consumes has a producer, and every
    /// consumer of a stalling producer leaves: it is subscribed, not temporarily, to a producer that
    /// fails at its first call.
    fn is_valid(&self) -> bool {
        let nodes = (0..self.producers.len())
            .map(Node::Producer)
            .chain((0..self.middles.len()).map(Node::Middle))
            .chain((0..self.consumers.len()).map(Node::Consumer));
        let wired = nodes.clone().all(|node| {
            let feeds = self.edges.iter().any(|e| e.from == node);
            let fed = self.edges.iter().any(|e| e.to == node);
            match node {
                Node::Producer(_) => feeds,
                Node::Middle(_) => feeds && fed,
                Node::Consumer(_) => fed,
            }
        });
        let fuses = |to: Node| {
            self.edges.iter().any(|e| {
                e.to == to
                    && e.cancel != CancelMode::Temporary
                    && matches!(e.from, Node::Producer(i)
                        if self.producers[i].strike.is_some_and(|s| s.at == 1)
                            && PolicyPlan::allowed(self.producers[i].policy) == 0)
            })
        };
        let stalls_end = self.edges.iter().all(|e| match e.from {
            Node::Producer(i) if self.producers[i].source == Source::Stall => fuses(e.to),
            _ => true,
        });
        let acts_while_running = self.action.is_none() || self.shutdown_after.is_some();
        let aborts_fit = !self.abort || self.shutdown_after.is_some() && self.faultless();
        // A channel producer has nothing a `FromChannel` lacks, and is fed for ever only in a run
        // that is shut down.
        let channels_fit = self.producers.iter().all(|p| match p.source {
            Source::Channel { endless, .. } => {
                p.strike.is_none()
                    && p.policy.is_none()
                    && p.on_cancel.is_none()
                    && !p.confirm
                    && p.fan == Fan::Demand
                    && (!endless || self.shutdown_after.is_some())
            }
            _ => true,
        });
        // A stream producer has nothing a `FromStream` lacks, and no end only in a run shut down;
        // a stream consumer has no fault, no policy, and asks as a `StreamSink` does.
        let streams_fit = self.producers.iter().all(|p| match p.source {
            Source::Stream { endless, panic_at } => {
                p.strike
                    .is_some_and(|s| s.fault == Fault::Panic && !s.sticky)
                    == panic_at.is_some()
                    && p.policy.is_none()
                    && p.on_cancel.is_none()
                    && !p.confirm
                    && p.fan == Fan::Demand
                    && (!endless || self.shutdown_after.is_some())
            }
            _ => true,
        }) && self.consumers.iter().all(|c| {
            (c.stream.is_none() || c.strike.is_none() && c.policy.is_none() && c.manual.is_none())
                && (c.supervisor.is_none()
                    || c.stream.is_none()
                        && c.strike.is_none()
                        && c.policy.is_none()
                        && c.manual.is_none())
        });
        // A producer_consumer shut down gracefully asks on the ticks it sends itself, or through
        // its `Asker`s.
        let graceful = self.shutdown_after.is_some() && !self.abort;
        let manual_fits = self.middles.iter().all(|m| {
            !graceful
                || m.manual
                    .is_none_or(|manual| manual.asks != Asks::AfterBatch)
        });
        // Each partition taken by one edge; selectors only from a broadcast.
        let fans_fit = self.edges.iter().all(|e| {
            let fan = self.fan(e.from);
            (e.selector.is_none() || fan == Fan::Broadcast)
                && e.partition.is_some() == matches!(fan, Fan::Partition { .. })
        }) && nodes.clone().all(|node| match self.fan(node) {
            Fan::Partition { partitions, .. } => {
                let mut taken: Vec<Option<usize>> = self
                    .edges
                    .iter()
                    .filter(|e| e.from == node)
                    .map(|e| e.partition)
                    .collect();
                taken.sort_unstable();
                taken == (0..partitions).map(Some).collect::<Vec<_>>()
            }
            _ => true,
        });
        // A routing panic only where the stage routes: by a partition function, or by a selector
        // of one of its edges; and not in a run aborted.
        let routes = |node: Node, routing: Option<RoutingStrike>| {
            routing.is_none()
                || !self.abort
                    && match self.fan(node) {
                        Fan::Demand => false,
                        Fan::Broadcast => self
                            .edges
                            .iter()
                            .any(|e| e.from == node && e.selector.is_some()),
                        Fan::Partition { .. } => true,
                    }
        };
        let routing_fits = (0..self.producers.len())
            .all(|i| routes(Node::Producer(i), self.producers[i].routing))
            && (0..self.middles.len()).all(|i| routes(Node::Middle(i), self.middles[i].routing));
        !self.producers.is_empty()
            && !self.consumers.is_empty()
            && wired
            && routing_fits
            && stalls_end
            && acts_while_running
            && fans_fit
            && channels_fit
            && streams_fit
            && manual_fits
            && aborts_fit
    }

    /// This topology without `node` and its edges.
    fn without(&self, node: Node) -> Topology {
        let mut t = self.clone();
        match node {
            Node::Producer(i) => drop(t.producers.remove(i)),
            Node::Middle(i) => drop(t.middles.remove(i)),
            Node::Consumer(i) => drop(t.consumers.remove(i)),
        }
        let renumber = |n: Node| match (n, node) {
            (Node::Producer(i), Node::Producer(gone))
            | (Node::Middle(i), Node::Middle(gone))
            | (Node::Consumer(i), Node::Consumer(gone)) => match i.cmp(&gone) {
                std::cmp::Ordering::Less => Some(n),
                std::cmp::Ordering::Equal => None,
                std::cmp::Ordering::Greater => Some(match n {
                    Node::Producer(_) => Node::Producer(i - 1),
                    Node::Middle(_) => Node::Middle(i - 1),
                    Node::Consumer(_) => Node::Consumer(i - 1),
                }),
            },
            _ => Some(n),
        };
        t.edges = self
            .edges
            .iter()
            .filter_map(|e| {
                Some(EdgePlan {
                    from: renumber(e.from)?,
                    to: renumber(e.to)?,
                    ..e.clone()
                })
            })
            .collect();
        t.renumber_partitions();
        t
    }

    /// Gives the edges of each partitioned stage the partitions `0..n` again, in the order of
    /// those they take, after some of them went.
    fn renumber_partitions(&mut self) {
        let sources = (0..self.producers.len())
            .map(Node::Producer)
            .chain((0..self.middles.len()).map(Node::Middle));
        for source in sources {
            let mut taken: Vec<usize> = self
                .edges
                .iter()
                .filter(|e| e.from == source)
                .filter_map(|e| e.partition)
                .collect();
            taken.sort_unstable();
            for edge in self.edges.iter_mut().filter(|e| e.from == source) {
                edge.partition = edge
                    .partition
                    .and_then(|p| taken.iter().position(|&q| q == p));
            }
            if let Some(Fan::Partition { partitions, .. }) = self.fan_mut(source) {
                *partitions = taken.len();
            }
        }
    }

    /// Valid topologies one step simpler than this one, the biggest steps first.
    fn simplifications(&self) -> Vec<Topology> {
        let mut out = Vec::new();
        for i in 0..self.producers.len() {
            out.push(self.without(Node::Producer(i)));
        }
        for i in 0..self.middles.len() {
            out.push(self.without(Node::Middle(i)));
        }
        for i in 0..self.consumers.len() {
            out.push(self.without(Node::Consumer(i)));
        }
        for i in 0..self.edges.len() {
            let mut t = self.clone();
            t.edges.remove(i);
            t.renumber_partitions();
            out.push(t);
        }
        let mut step = |change: &dyn Fn(&mut Topology)| {
            let mut t = self.clone();
            change(&mut t);
            out.push(t);
        };
        let calmer = |strike: &mut Option<Strike>| {
            if let Some(strike) = strike {
                strike.sticky = false;
                strike.after = 0;
            }
        };
        let calmer_routing = |routing: &mut Option<RoutingStrike>| {
            if let Some(routing) = routing {
                routing.sticky = false;
            }
        };
        for i in 0..self.producers.len() {
            step(&|t| t.producers[i].strike = None);
            step(&|t| t.producers[i].routing = None);
            step(&|t| calmer_routing(&mut t.producers[i].routing));
            step(&|t| t.producers[i].policy = None);
            step(&|t| calmer(&mut t.producers[i].strike));
            step(&|t| t.producers[i].events /= 2);
            step(&|t| t.producers[i].events = t.producers[i].events.saturating_sub(1));
            step(&|t| t.producers[i].shape = Shape::Exact);
            step(&|t| t.producers[i].last_separately = false);
            step(&|t| t.producers[i].buffer = None);
            step(&|t| t.producers[i].accumulate = None);
            step(&|t| t.producers[i].waits = false);
            step(&|t| t.producers[i].on_cancel = None);
            step(&|t| {
                if let Some(on_cancel) = &mut t.producers[i].on_cancel {
                    on_cancel.fault = None;
                }
            });
            step(&|t| t.producers[i].confirm = false);
            step(&|t| t.producers[i].dismissed = false);
            step(&|t| {
                if matches!(t.producers[i].source, Source::Late | Source::Channel { .. }) {
                    t.producers[i].source = Source::Ready;
                }
            });
            step(&|t| {
                if t.producers[i].source.is_stream() {
                    t.producers[i].source = Source::Ready;
                }
            });
            step(&|t| {
                if let Source::Stream { endless, .. } = &mut t.producers[i].source {
                    *endless = false;
                }
            });
            step(&|t| {
                if let Source::Channel { endless, .. } = &mut t.producers[i].source {
                    *endless = false;
                }
            });
        }
        for i in 0..self.middles.len() {
            step(&|t| t.middles[i].strike = None);
            step(&|t| t.middles[i].waits = false);
            step(&|t| t.middles[i].routing = None);
            step(&|t| calmer_routing(&mut t.middles[i].routing));
            step(&|t| t.middles[i].policy = None);
            step(&|t| calmer(&mut t.middles[i].strike));
            step(&|t| t.middles[i].filter = None);
            step(&|t| t.middles[i].dismissed = false);
            step(&|t| t.middles[i].manual = None);
            step(&|t| t.middles[i].on_cancel = None);
            step(&|t| {
                if let Some(on_cancel) = &mut t.middles[i].on_cancel {
                    on_cancel.fault = None;
                }
            });
        }
        for i in 0..self.consumers.len() {
            step(&|t| t.consumers[i].strike = None);
            step(&|t| t.consumers[i].policy = None);
            step(&|t| calmer(&mut t.consumers[i].strike));
            step(&|t| t.consumers[i].yield_every = None);
            step(&|t| t.consumers[i].manual = None);
            step(&|t| t.consumers[i].stream = None);
            step(&|t| t.consumers[i].supervisor = None);
            step(&|t| t.consumers[i].dismissed = false);
            step(&|t| {
                if let Some(supervisor) = &mut t.consumers[i].supervisor {
                    supervisor.fail = None;
                }
            });
            step(&|t| {
                if let Some(stream) = &mut t.consumers[i].stream {
                    stream.drop_after = None;
                }
            });
            step(&|t| {
                if let Some(stream) = &mut t.consumers[i].stream {
                    stream.options = None;
                }
            });
        }
        step(&|t| t.action = None);
        step(&|t| t.added = None);
        step(&|t| t.abort = false);
        step(&|t| t.by_handle = false);
        let sources = (0..self.producers.len())
            .map(Node::Producer)
            .chain((0..self.middles.len()).map(Node::Middle));
        for source in sources {
            step(&|t| {
                if let Some(fan) = t.fan_mut(source) {
                    *fan = Fan::Demand;
                }
                for edge in t.edges.iter_mut().filter(|e| e.from == source) {
                    edge.selector = None;
                    edge.partition = None;
                }
                match source {
                    Node::Producer(i) => t.producers[i].routing = None,
                    Node::Middle(i) => t.middles[i].routing = None,
                    Node::Consumer(_) => {}
                }
            });
            step(&|t| {
                if let Some(Fan::Partition { discard, .. }) = t.fan_mut(source) {
                    *discard = None;
                }
            });
        }
        for i in 0..self.edges.len() {
            step(&|t| t.edges[i].selector = None);
            step(&|t| {
                let e = &mut t.edges[i];
                e.max_demand = (e.max_demand / 2).max(1);
                e.min_demand = e.min_demand.min(e.max_demand - 1);
            });
            step(&|t| t.edges[i].min_demand /= 2);
            step(&|t| t.edges[i].cancel = CancelMode::Permanent);
        }
        out.retain(|t| t.is_valid() && t.to_string() != self.to_string());
        out
    }
}

impl EdgePlan {
    /// The options of its subscription: a `to_stream` consumer or a supervisor with options of
    /// its own gets them from itself.
    fn options(&self, topology: &Topology) -> SubscribeOptions {
        let own_options = match self.to {
            Node::Consumer(i) => {
                let plan = &topology.consumers[i];
                plan.stream.is_some_and(|s| s.options.is_some())
                    || plan.supervisor.is_some_and(|s| s.options.is_some())
            }
            _ => false,
        };
        let mut options = match own_options {
            true => SubscribeOptions::new(),
            false => SubscribeOptions::new()
                .max_demand(self.max_demand)
                .min_demand(self.min_demand),
        }
        .cancel(self.cancel);
        if let Some(partition) = self.partition {
            options = options.partition(partition);
        }
        options
    }

    fn generate(rng: &mut Rng, from: Node, to: Node) -> Self {
        let max_demand = match rng.range(0, 9) {
            0 => rng.range(1, 4),
            1..=5 => rng.range(5, 50),
            _ => rng.range(51, 300),
        };
        let min_demand = match rng.range(0, 4) {
            0 => 0,
            1 => max_demand - 1,
            _ => rng.range(0, max_demand - 1),
        };
        let cancel = rng.pick(&[
            CancelMode::Permanent,
            CancelMode::Transient,
            CancelMode::Temporary,
        ]);
        EdgePlan {
            from,
            to,
            max_demand,
            min_demand,
            cancel,
            selector: None,
            partition: None,
        }
    }
}

impl OnCancel {
    /// In a quarter of the stages; a fifth of those fail there.
    fn generate(rng: &mut Rng) -> Option<Self> {
        rng.chance(25).then(|| OnCancel {
            events: rng.range(0, 5) as u64,
            fault: rng
                .chance(20)
                .then(|| rng.pick(&[Fault::Error, Fault::Panic])),
        })
    }
}

impl ProducerPlan {
    /// Its buffer, demand mode and what it does without consumers.
    fn options(&self) -> ProducerOptions {
        let options = match self.buffer {
            Some((size, keep)) => ProducerOptions::for_producer()
                .buffer_size(size)
                .buffer_keep(keep),
            None => ProducerOptions::for_producer(),
        };
        let options = match self.accumulate {
            Some(_) => options.demand(DemandMode::Accumulate),
            None => options,
        };
        match self.waits {
            true => options.without_consumers(WithoutConsumers::Wait),
            false => options,
        }
    }

    fn generate(rng: &mut Rng) -> Self {
        let events = match rng.range(0, 9) {
            0 => 0,
            1 => rng.range(1, 5) as u64,
            _ => rng.range(20, 400) as u64,
        };
        let shape = match rng.range(0, 9) {
            0..=2 => Shape::Exact,
            3..=5 => Shape::Fewer(rng.range(2, 8)),
            6 | 7 => Shape::More(rng.range(1, 40)),
            _ => Shape::EmptyEvery(rng.range(2, 6)),
        };
        ProducerPlan {
            events,
            source: match rng.range(0, 19) {
                0..=2 => Source::Late,
                3..=5 => Source::Messages,
                _ => Source::Ready,
            },
            shape,
            last_separately: rng.chance(20),
            buffer: rng.chance(8).then(|| {
                (
                    rng.range(1, 60),
                    rng.pick(&[BufferKeep::First, BufferKeep::Last]),
                )
            }),
            accumulate: None,
            waits: false,
            strike: None,
            routing: None,
            policy: None,
            on_cancel: None,
            confirm: false,
            fan: Fan::Demand,
            dismissed: false,
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed {}, {:?}", self.seed, self.flavor)?;
        if let Some(yields) = self.shutdown_after {
            let ending = match (self.abort, self.by_handle) {
                (true, _) => "aborted",
                (false, true) => "shut down through a ShutdownHandle",
                (false, false) => "shut down",
            };
            write!(f, ", {ending} after {yields} yields")?;
        }
        if let Some(Action { after, resubscribe }) = self.action {
            let what = if resubscribe {
                "resubscribes"
            } else {
                "cancels"
            };
            write!(f, ", {what} a subscription after {after} yields")?;
        }
        if let Some(Added { node, after, alone }) = self.added {
            write!(f, ", adds {node} after {after} yields")?;
            if alone {
                write!(f, ", subscribing it to nothing")?;
            }
        }
        writeln!(f, ":")?;
        for (i, p) in self.producers.iter().enumerate() {
            match p.source {
                Source::Channel { capacity, endless } => {
                    write!(f, "  P{i}: from_channel({capacity}), fed ")?;
                    match endless {
                        true => write!(f, "until a send fails")?,
                        false => write!(f, "{} events", p.events)?,
                    }
                }
                Source::Stream { endless, panic_at } => {
                    write!(f, "  P{i}: from_stream, ")?;
                    match endless {
                        true => write!(f, "endless")?,
                        false => write!(f, "{} events", p.events)?,
                    }
                    if let Some(at) = panic_at {
                        write!(f, ", panics at item {at}")?;
                    }
                }
                _ => write!(
                    f,
                    "  P{i}: {} events, {:?}, {:?}",
                    p.events, p.source, p.shape
                )?,
            }
            if p.last_separately {
                write!(f, ", empty Emit::last")?;
            }
            if let Some((size, keep)) = p.buffer {
                write!(f, ", buffer {size} keep {keep:?}")?;
            }
            if let Some(yields) = p.accumulate {
                write!(f, ", accumulates for {yields} yields")?;
            }
            if p.waits {
                write!(f, ", waits for consumers")?;
            }
            if p.confirm {
                write!(f, ", confirms its chunks")?;
            }
            write!(f, "{}", p.fan)?;
            write!(f, "{}", OnCancelText(p.on_cancel))?;
            write!(f, "{}", StrikeText(p.strike))?;
            write!(f, "{}", RoutingText(p.routing, p.fan))?;
            write!(f, "{}", PolicyText(p.policy))?;
            writeln!(f, "{}", DismissedText(p.dismissed))?;
        }
        for (i, m) in self.middles.iter().enumerate() {
            write!(f, "  M{i}: producer_consumer{}", m.fan)?;
            if let Some(n) = m.filter {
                write!(f, ", drops seq % {n} == 0")?;
            }
            write!(f, "{}", ManualText(m.manual))?;
            if m.waits {
                write!(f, ", waits for consumers")?;
            }
            write!(f, "{}", OnCancelText(m.on_cancel))?;
            write!(f, "{}", StrikeText(m.strike))?;
            write!(f, "{}", RoutingText(m.routing, m.fan))?;
            write!(f, "{}", PolicyText(m.policy))?;
            writeln!(f, "{}", DismissedText(m.dismissed))?;
        }
        for (i, c) in self.consumers.iter().enumerate() {
            match c.stream {
                Some(StreamPlan {
                    drop_after,
                    options,
                    eager,
                }) => {
                    write!(f, "  C{i}: to_stream")?;
                    if let Some((max, min)) = options {
                        write!(f, " (max_demand {max}, min_demand {min})")?;
                    }
                    if eager {
                        write!(f, ", read without pauses")?;
                    }
                    if let Some(n) = drop_after {
                        write!(f, ", dropped after {n} events")?;
                    }
                }
                None => match c.supervisor {
                    Some(SupervisorPlan {
                        fail,
                        transient,
                        options,
                    }) => {
                        let restart = if transient { "transient" } else { "temporary" };
                        write!(f, "  C{i}: ConsumerSupervisor, {restart} children")?;
                        if let Some((max, min)) = options {
                            write!(f, " (max_demand {max}, min_demand {min})")?;
                        }
                        if let Some(d) = fail {
                            write!(f, ", failing on seq % {d} == {}", d - 1)?;
                        }
                    }
                    None => write!(f, "  C{i}: consumer")?,
                },
            }
            if let Some(n) = c.yield_every {
                write!(f, ", yields every {n} batches")?;
            }
            write!(f, "{}", ManualText(c.manual))?;
            write!(f, "{}", StrikeText(c.strike))?;
            write!(f, "{}", PolicyText(c.policy))?;
            writeln!(f, "{}", DismissedText(c.dismissed))?;
        }
        for e in &self.edges {
            write!(
                f,
                "  {} -> {}: max_demand {}, min_demand {}, {:?}",
                e.from, e.to, e.max_demand, e.min_demand, e.cancel
            )?;
            if let Some(partition) = e.partition {
                write!(f, ", partition {partition}")?;
            }
            match e.selector {
                Some(Selector { modulus, residue }) => {
                    writeln!(f, ", selects seq % {modulus} == {residue}")?
                }
                None => writeln!(f)?,
            }
        }
        Ok(())
    }
}

struct StrikeText(Option<Strike>);

struct ManualText(Option<ManualPlan>);

impl fmt::Display for ManualText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(ManualPlan { takes, asks }) = self.0 else {
            return Ok(());
        };
        let upstream = (0..3)
            .map(Node::Producer)
            .chain((0..2).map(Node::Middle))
            .filter(|&node| ManualPlan { takes, asks }.takes(node, usize::MAX))
            .map(|node| node.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        write!(f, ", manual demand from {upstream}")?;
        match asks {
            Asks::AfterBatch => write!(f, ", asking after each batch"),
            Asks::Ticks => write!(f, ", asking on ticks (max_demand >= 50)"),
            Asks::Asker => write!(f, ", asking after each batch through its Askers"),
        }
    }
}

impl fmt::Display for Fan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fan::Demand => Ok(()),
            Fan::Broadcast => write!(f, ", broadcasts"),
            Fan::Partition {
                partitions,
                discard,
            } => {
                write!(f, ", {partitions} partitions")?;
                match discard {
                    Some(d) => write!(f, " (seq % {d} == {} to none)", d - 1),
                    None => Ok(()),
                }
            }
        }
    }
}

struct OnCancelText(Option<OnCancel>);

impl fmt::Display for OnCancelText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(OnCancel { events, fault }) = self.0 else {
            return Ok(());
        };
        write!(f, ", emits {events} on a cancel")?;
        match fault {
            Some(fault) => write!(f, " and fails with {fault:?} at the first"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for StrikeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(Strike {
            at,
            fault,
            after,
            sticky,
        }) = self.0
        else {
            return Ok(());
        };
        write!(f, ", {fault:?} at call {at}")?;
        if after > 0 {
            write!(f, " after {after} events")?;
        }
        if sticky {
            write!(f, " and again")?;
        }
        Ok(())
    }
}

struct RoutingText(Option<RoutingStrike>, Fan);

impl fmt::Display for RoutingText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(RoutingStrike { at, sticky }) = self.0 else {
            return Ok(());
        };
        let routing = match self.1 {
            Fan::Broadcast => "a selector",
            _ => "its partition function",
        };
        write!(f, ", {routing} panics at the new event {at}")?;
        if sticky {
            write!(f, " and again")?;
        }
        Ok(())
    }
}

struct PolicyText(Option<PolicyPlan>);

impl fmt::Display for PolicyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(PolicyPlan {
            restart,
            max_restarts,
            redeliver,
        }) = self.0
        else {
            return Ok(());
        };
        write!(f, ", restart {restart} (max {max_restarts}")?;
        if redeliver {
            write!(f, ", redelivers")?;
        }
        write!(f, ")")
    }
}

/// A stage's [`ProducerPlan::dismissed`] (and its siblings'), as [`Topology`]'s `Display` shows it.
struct DismissedText(bool);

impl fmt::Display for DismissedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            true => write!(f, ", its failure dismissed"),
            false => Ok(()),
        }
    }
}

impl Node {
    /// The stages that handle events, as bits of a mask: `M{i}` is bit `i`, `C{i}` bit `8 + i`.
    fn bit(self) -> u32 {
        match self {
            Node::Middle(i) => 1 << i,
            Node::Consumer(i) => 1 << (PATH_BASE as usize + i),
            Node::Producer(_) => 0,
        }
    }

    /// The names of the stages in `mask` (of [`Node::bit`]s).
    fn named(mask: u32) -> Vec<String> {
        (0..32)
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| match b < PATH_BASE {
                true => Node::Middle(b as usize).to_string(),
                false => Node::Consumer((b - PATH_BASE) as usize).to_string(),
            })
            .collect()
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Producer(i) => write!(f, "P{i}"),
            Node::Middle(i) => write!(f, "M{i}"),
            Node::Consumer(i) => write!(f, "C{i}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the stages record

/// What the stages did, as they saw it, by stage name.
#[derive(Debug, Default)]
struct Ledger {
    /// The stages whose failure the pipeline took as dismissed, as the run started.
    dismissed: HashSet<String>,
    /// Events each producer or producer_consumer returned from its callback.
    emitted: HashMap<String, u64>,
    /// Events each consumer or producer_consumer handled successfully.
    handled: HashMap<String, u64>,
    /// The stages that handled each event successfully, as a mask of their [`Node::bit`]s: an
    /// event handled twice by one stage is a duplicate.
    handlers: HashMap<Event, u32>,
    /// Events handled successfully by consumers, which are the ends of the pipeline (a broadcast's
    /// copies each).
    delivered: u64,
    /// The events each producer or producer_consumer emitted, in order.
    out: HashMap<String, Vec<Event>>,
    /// Events producer_consumers filtered out.
    dropped: Vec<Event>,
    /// Events handled twice by one stage.
    duplicates: Vec<(String, Event)>,
    /// The faults that struck each stage, in order.
    blows: HashMap<String, Vec<Blow>>,
    /// Times each producer's callbacks said its events were the last (`Emit::last`).
    ends: HashMap<String, usize>,
    /// Events that a stage's `handle_events` handled before it failed on the same batch:
    /// `(stage, event)`. Not in `handled`, `handlers` nor `order`: the report does not count them,
    /// and with redelivery the stage handles them again.
    partial: Vec<(String, Event)>,
    /// What the producers and producer_consumers were told of their consumers, in the order each
    /// was told.
    told: Vec<Told>,
    /// Where the test's own task stands, for a hang's message.
    phase: String,
    /// The subscriptions that the test cancelled through the handle (`cancel` answered `Ok`).
    cancelled: HashSet<SubscriptionTag>,
    /// The subscriptions that the test replaced through the handle (`resubscribe` answered `Ok`):
    /// they end as cancelled if they were still running.
    replaced: HashSet<SubscriptionTag>,
    /// The subscriptions whose consumer the test told to cancel them itself (`Context::cancel`
    /// answered `Ok`): they may end as cancelled. The cancel reaches the pipeline after the answer,
    /// and finds the subscription ended if its producer ended first: then it ends as it would have.
    self_cancelled: HashSet<SubscriptionTag>,
    /// The subscriptions that the test made through the handle, by producer and consumer.
    made: HashMap<SubscriptionTag, (String, String)>,
    /// The stage of [`Topology::added`] was added, and this many of its subscriptions made.
    added: Option<usize>,
    /// The events each consumer or producer_consumer handled, in order.
    order: HashMap<String, Vec<Event>>,
    /// Each [`Confirm`] a producer was told, in order: `(producer, emitted when it was sent)`.
    confirmed: Vec<(usize, u64)>,
    /// Each [`Mark`] a consumer was cast: `(consumer, producer, emitted when the producer sent
    /// itself the confirmation, how many events the consumer had handled then)`.
    marks: Vec<(String, usize, u64, usize)>,
    /// What the feeder of each [`Source::Channel`] producer saw, by the producer's tag.
    fed: HashMap<usize, Fed>,
    /// The values of each stage that ran `init`.
    inits: HashMap<String, u64>,
    /// A callback that ran in a value before its `init`, or an `init` run twice: `(stage, what)`.
    misordered: Vec<(String, &'static str)>,
    /// Messages refused as `CallError::Ended`: the stage, the values of it made then, and its
    /// progress, which counts those made since. A stage that refuses so has ended, or is ending:
    /// it is not made again, unless it fails on a message it accepted before.
    refused_ended: Vec<(String, usize, Arc<Mutex<Progress>>)>,
    /// Asks on manual subscriptions that were taken, by stage and by what asked (`Context::ask`,
    /// or an [`Asker`]).
    asks: HashMap<(String, &'static str), u64>,
    /// Asks that `Context::ask` refused for another reason than the subscription's end.
    ask_errors: Vec<(String, AskError)>,
    /// Manual subscriptions on which a stage got more events than it had asked for: `(stage,
    /// producer, asked, got)`.
    overruns: Vec<(String, Node, u64, u64)>,
    /// The stages with a manual plan whose `handle_events` got a batch that `batch_from` had not
    /// told them of.
    untold_batches: Vec<String>,
    /// Events that `batch_from` said came on a manual subscription to another stage than the one
    /// that emitted them: `(stage, the subscription's producer, the event's last emitter)`.
    wrong_from: Vec<(String, Node, Node)>,
    /// The `to_stream` consumers whose stream the test dropped before it ended.
    streams_dropped: HashSet<usize>,
    /// The events on which a [`ConsumerSupervisor`]'s child failed, by consumer, and whether it was
    /// run again (transient) or lost (temporary).
    child_failures: Vec<(String, Event, bool)>,
}

/// What the task feeding a [`Source::Channel`] producer saw.
#[derive(Debug, Clone, Copy, Default)]
struct Fed {
    /// The events whose `send` returned `Ok`: `(tag, 0..accepted)`, in order (also in
    /// [`Ledger::emitted`] and [`Ledger::out`]).
    accepted: u64,
    /// The event a failed `send` gave back: the feeder stopped there.
    refused: Option<Event>,
    /// It dropped its sender, having sent what it planned.
    dropped: bool,
}

/// A fault that struck a stage.
#[derive(Debug, Clone)]
struct Blow {
    fault: Fault,
    /// Whether it struck in `handle_events`.
    in_events: bool,
    /// The batch `handle_events` held then.
    batch: Vec<Event>,
    /// When a sticky strike struck again on its event: the event's index in the batch it first
    /// came in.
    again: Option<usize>,
    /// A [`RoutingStrike`]'s panic.
    routing: Option<Routed>,
}

/// A [`RoutingStrike`] that struck: on `event`, in a dispatch whose events the test cannot see
/// (the stage's buffer and its dispatcher's demand decide them), but for the batch in hand.
#[derive(Debug, Clone)]
struct Routed {
    event: Event,
    /// The batch a producer_consumer's `handle_events` returned last, and its output, if no other
    /// callback of the stage ran since: the batch in hand, if the dispatch was of its output.
    pending: Option<(Vec<Event>, Vec<Event>)>,
    /// The runtime made `pending` the failed batch ([`Ledger::fail_pending`]): the blow is
    /// `in_events`, with it as its batch. Otherwise the dispatch's events are lost.
    in_hand: bool,
}

/// What a stage was told of one of its consumers.
#[derive(Debug, Clone)]
struct Told {
    producer: String,
    consumer: String,
    tag: SubscriptionTag,
    /// The value of the stage that was told: 0 for the first, 1 after a restart, …
    generation: usize,
    /// `None` for `handle_consumer_subscribe`.
    cancel: Option<CancelReason>,
}

type Shared = Arc<Mutex<Ledger>>;

fn lock<T>(ledger: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking stage never holds the lock, but a failed assertion elsewhere might.
    ledger
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Ledger {
    fn handle(&mut self, stage: &str, events: &[Event]) {
        *self.handled.entry(stage.to_owned()).or_default() += events.len() as u64;
        let bit = parse_node(stage).map_or(0, Node::bit);
        for &event in events {
            let handlers = self.handlers.entry(event).or_default();
            if *handlers & bit != 0 {
                self.duplicates.push((stage.to_owned(), event));
            }
            *handlers |= bit;
        }
        let order = self.order.entry(stage.to_owned()).or_default();
        order.extend_from_slice(events);
    }

    /// A [`ConsumerSupervisor`]'s child handled `event`: as [`Ledger::handle`], out of order
    /// (children run side by side).
    fn handle_unordered(&mut self, stage: &str, event: Event) {
        *self.handled.entry(stage.to_owned()).or_default() += 1;
        let bit = parse_node(stage).map_or(0, Node::bit);
        let handlers = self.handlers.entry(event).or_default();
        if *handlers & bit != 0 {
            self.duplicates.push((stage.to_owned(), event));
        }
        *handlers |= bit;
    }

    fn emit(&mut self, stage: &str, events: &[Event]) {
        *self.emitted.entry(stage.to_owned()).or_default() += events.len() as u64;
        self.out
            .entry(stage.to_owned())
            .or_default()
            .extend_from_slice(events);
    }

    fn tell(&mut self, fuse: &Fuse, subscriber: &Subscriber, cancel: Option<&CancelReason>) {
        self.told.push(Told {
            producer: fuse.stage.clone(),
            consumer: subscriber.consumer().to_owned(),
            tag: subscriber.tag(),
            generation: fuse.generation,
            cancel: cancel.cloned(),
        });
    }

    /// The stages that refused a message as `Ended` and were made again since: none, when the
    /// runtime keeps its word (see [`refused_ended`](Self::refused_ended)).
    fn remade_after_ended(&self) -> Vec<String> {
        self.refused_ended
            .iter()
            .filter(|(_, values, progress)| lock(progress).values != *values)
            .map(|(stage, _, _)| stage.clone())
            .collect()
    }

    /// The faults that struck, by stage, for a failure's message.
    fn struck(&self) -> Vec<(String, Vec<Fault>)> {
        let mut struck: Vec<(String, Vec<Fault>)> = self
            .blows
            .iter()
            .map(|(stage, blows)| (stage.clone(), blows.iter().map(|b| b.fault).collect()))
            .collect();
        struck.sort_by(|a, b| a.0.cmp(&b.0));
        struck
    }

    /// The faults that struck `stage`.
    fn blows(&self, stage: &str) -> &[Blow] {
        self.blows.get(stage).map_or(&[], Vec::as_slice)
    }

    /// The runtime made the batch `pending` in the routing blow `index` of `stage` its failed
    /// batch: the batch is not handled (as a failed `handle_events`' is not), nor its output
    /// emitted (the runtime takes it back), and the blow is one in `handle_events`, with that
    /// batch.
    fn fail_pending(&mut self, stage: &str, index: usize) {
        let Some(blow) = self.blows.get_mut(stage).and_then(|b| b.get_mut(index)) else {
            return;
        };
        let Some(routed) = blow.routing.as_mut().filter(|r| !r.in_hand) else {
            return;
        };
        let Some((batch, output)) = routed.pending.clone() else {
            return;
        };
        routed.in_hand = true;
        blow.in_events = true;
        blow.batch = batch.clone();
        let bit = parse_node(stage).map_or(0, Node::bit);
        *self.handled.entry(stage.to_owned()).or_default() -= batch.len() as u64;
        let order = self.order.entry(stage.to_owned()).or_default();
        for event in &batch {
            if let Some(handlers) = self.handlers.get_mut(event) {
                *handlers &= !bit;
            }
            if let Some(at) = order.iter().rposition(|e| e == event) {
                order.remove(at);
            }
            // Filtered out, if its stage dropped it.
            let passed = match parse_node(stage) {
                Some(Node::Middle(i)) => output.contains(&event.via(i)),
                _ => true,
            };
            if !passed {
                if let Some(at) = self.dropped.iter().rposition(|e| e == event) {
                    self.dropped.remove(at);
                }
            }
        }
        *self.emitted.entry(stage.to_owned()).or_default() -= output.len() as u64;
        let out = self.out.entry(stage.to_owned()).or_default();
        for event in &output {
            if let Some(at) = out.iter().position(|e| e == event) {
                out.remove(at);
            }
        }
    }

    /// The routing blows of `stage` whose events were lost with the dispatch (not a batch in
    /// hand): each lost at least the event it struck on.
    fn lost_dispatches(&self, stage: &str) -> Vec<Event> {
        self.blows(stage)
            .iter()
            .filter_map(|b| b.routing.as_ref().filter(|r| !r.in_hand))
            .map(|r| r.event)
            .collect()
    }
}

/// The routing of a stage with a [`RoutingStrike`]: its partition function, or the selectors of
/// its edges, ask it about each event they route, and it panics as the strike says. Shared by
/// every value of the stage and by its selectors, which the dispatcher keeps across restarts.
struct Router {
    stage: String,
    strike: RoutingStrike,
    ledger: Shared,
    state: Mutex<Routing>,
}

#[derive(Debug, Default)]
struct Routing {
    /// The events it was asked about.
    seen: HashSet<Event>,
    /// The event a sticky strike struck on.
    poison: Option<Event>,
    /// See [`Routed::pending`]: set by a producer_consumer's `handle_events` when it returns,
    /// cleared when any callback of the stage starts.
    pending: Option<(Vec<Event>, Vec<Event>)>,
}

impl Router {
    fn new(stage: String, strike: RoutingStrike, ledger: &Shared) -> Arc<Self> {
        Arc::new(Router {
            stage,
            strike,
            ledger: ledger.clone(),
            state: Mutex::default(),
        })
    }

    /// Asked about `event` by the stage's partition function or a selector: panics at the
    /// strike's new event, and, sticky, at that event again.
    fn route(&self, event: &Event) {
        let mut state = lock(&self.state);
        let new = state.seen.insert(*event);
        let strikes = new && state.seen.len() == self.strike.at || state.poison == Some(*event);
        if !strikes {
            return;
        }
        if self.strike.sticky {
            state.poison = Some(*event);
        }
        let pending = state.pending.clone();
        drop(state);
        let blow = Blow {
            fault: Fault::Panic,
            in_events: false,
            batch: Vec::new(),
            again: None,
            routing: Some(Routed {
                event: *event,
                pending,
                in_hand: false,
            }),
        };
        lock(&self.ledger)
            .blows
            .entry(self.stage.clone())
            .or_default()
            .push(blow);
        panic!("{INJECTED} in {} routing {event:?}", self.stage);
    }

    /// A callback of the stage starts: the batch `handle_events` returned last is done.
    fn settle(&self) {
        lock(&self.state).pending = None;
    }

    /// `handle_events` returned `output` for `batch`.
    fn returned(&self, batch: Vec<Event>, output: Vec<Event>) {
        lock(&self.state).pending = Some((batch, output));
    }

    /// `handle_events` is handed `events`: if they are of the batch pending at a routing blow,
    /// the runtime made that batch the failed one, and hands it again.
    fn handed(&self, events: &[Event]) {
        self.settle();
        let Some(first) = events.first() else {
            return;
        };
        let mut ledger = lock(&self.ledger);
        let index = ledger.blows(&self.stage).iter().rposition(|b| {
            b.routing.as_ref().is_some_and(|r| {
                !r.in_hand
                    && r.pending
                        .as_ref()
                        .is_some_and(|(batch, _)| batch.contains(first))
            })
        });
        if let Some(index) = index {
            ledger.fail_pending(&self.stage, index);
        }
    }
}

/// What a stage has done so far, shared by every value of it: a value made again after a
/// failure goes on where the failed one was, and a fault that struck once does not strike again
/// (unless it is sticky).
#[derive(Debug, Default)]
struct Progress {
    /// Values made.
    values: usize,
    /// Calls of its callbacks that count (see [`Fuse`]).
    calls: usize,
    /// Calls of `handle_consumer_cancel`.
    cancels: u64,
    /// The event a sticky strike in `handle_events` struck on, and its index in its batch.
    poison: Option<(Event, usize)>,
    /// A producer's next sequence number: `0..next` have been emitted.
    next: u64,
    /// How many of them its `handle_consumer_cancel` emitted, beyond the planned events.
    bonus: u64,
    /// Events cast to a [`Source::Messages`] producer and not emitted yet (its `handle_cast`
    /// failed on them), and whether the last were among them: the next value emits them.
    owed: u64,
    owed_last: bool,
    /// A producer emitted its last events: a value made again after that (a permanent producer's)
    /// has nothing more to emit, and says so at its first call.
    ended: bool,
    /// The events `M{i}` emitted of its own, `(MIDDLE_TAG + i, 0..own)`.
    own: u64,
    /// Its manual subscriptions, by tag.
    manual: HashMap<SubscriptionTag, ManualSub>,
    /// Every event handed to it, once: a batch handed again by redelivery was asked for once.
    seen: HashSet<Event>,
}

/// A manual subscription as its stage counts it, over every value of the stage.
#[derive(Debug, Clone, Copy)]
struct ManualSub {
    producer: Node,
    max_demand: u64,
    /// Events asked for on it: its initial `max_demand`, and what the stage asked since.
    asked: u64,
    /// Events it got on it (those of a stage it has two subscriptions to, after a resubscribe
    /// through the handle, count on both: it may ask for more than it should then, never less).
    got: u64,
}

/// Counts calls and fires the planned fault at its call, for one value of a stage.
struct Fuse {
    stage: String,
    strike: Option<Strike>,
    ledger: Shared,
    progress: Arc<Mutex<Progress>>,
    /// Which value of the stage this is: 0 for the first, 1 after its first restart, …
    generation: usize,
    /// A sticky strike fires at every call after its own (a producer's); otherwise on its event.
    sticks_to_calls: bool,
    /// Its `init` has run.
    inited: bool,
}

/// How a call of `handle_events` fails: after handling `handled` events of its batch; `again`
/// when a sticky strike strikes again (see [`Blow::again`]).
struct Fail {
    handled: usize,
    again: Option<usize>,
}

impl Fuse {
    /// The value of the stage whose progress is `progress`: counts it.
    fn new(
        stage: String,
        strike: Option<Strike>,
        ledger: &Shared,
        progress: &Arc<Mutex<Progress>>,
        sticks_to_calls: bool,
    ) -> Self {
        let generation = {
            let mut p = lock(progress);
            p.values += 1;
            p.values - 1
        };
        Fuse {
            stage,
            strike,
            ledger: ledger.clone(),
            progress: progress.clone(),
            generation,
            sticks_to_calls,
            inited: false,
        }
    }

    /// Records the value's `init`, which must be its first callback, once.
    fn init(&mut self) {
        let mut ledger = lock(&self.ledger);
        if std::mem::replace(&mut self.inited, true) {
            ledger.misordered.push((self.stage.clone(), "init twice"));
        }
        *ledger.inits.entry(self.stage.clone()).or_default() += 1;
    }

    /// Records a callback that ran before the value's `init`.
    fn after_init(&self, callback: &'static str) {
        if !self.inited {
            lock(&self.ledger)
                .misordered
                .push((self.stage.clone(), callback));
        }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        lock(&self.progress)
    }

    /// Counts a call of a callback that handles no events, and fails it at the planned call (and,
    /// sticky in a producer, at every call after it).
    fn burn(&self) -> StageResult<()> {
        self.after_init("a callback");
        let calls = {
            let mut progress = self.progress();
            progress.calls += 1;
            progress.calls
        };
        match self.strike {
            Some(s) if s.at == calls || s.sticky && self.sticks_to_calls && calls > s.at => {
                self.blow(s.fault, false, Vec::new(), None, &self.at_call())
            }
            _ => Ok(()),
        }
    }

    /// Counts a call of `handle_events` with `events`: whether it fails, and after how many.
    fn burn_events(&self, events: &[Event]) -> Option<Fail> {
        self.after_init("handle_events");
        let mut progress = self.progress();
        progress.calls += 1;
        let strike = self.strike?;
        if progress.calls == strike.at {
            let handled = strike.after.min(events.len().saturating_sub(1));
            if strike.sticky {
                progress.poison = events.get(handled).map(|&event| (event, handled));
            }
            return Some(Fail {
                handled,
                again: None,
            });
        }
        let (poison, index) = progress.poison?;
        let handled = events.iter().position(|&event| event == poison)?;
        Some(Fail {
            handled,
            again: Some(index),
        })
    }

    /// Records the fault and strikes, saying where (`at call 3`, `in a cancel`).
    fn blow<T>(
        &self,
        fault: Fault,
        in_events: bool,
        batch: Vec<Event>,
        again: Option<usize>,
        place: &str,
    ) -> StageResult<T> {
        let blow = Blow {
            fault,
            in_events,
            batch,
            again,
            routing: None,
        };
        let mut ledger = lock(&self.ledger);
        ledger
            .blows
            .entry(self.stage.clone())
            .or_default()
            .push(blow);
        drop(ledger);
        match fault {
            Fault::Error => Err(format!("{} failed {place}", self.stage).into()),
            Fault::Panic => panic!("{INJECTED} in {} {place}", self.stage),
        }
    }

    /// Where the stage's last call was, for a fault's message.
    fn at_call(&self) -> String {
        format!("at call {}", self.progress().calls)
    }

    /// `handle_events` with `events` fails as `fail` says, after handling the first events.
    fn fail_events<T>(&self, events: Vec<Event>, fail: Fail) -> StageResult<T> {
        let fault = self.strike.map_or(Fault::Error, |s| s.fault);
        let mut ledger = lock(&self.ledger);
        for &event in &events[..fail.handled] {
            ledger.partial.push((self.stage.clone(), event));
        }
        drop(ledger);
        self.blow(fault, true, events, fail.again, &self.at_call())
    }

    /// Counts a call to `handle_consumer_cancel` (as a callback call: a [`Strike`] may fall on it)
    /// and fails it as `on_cancel` says, the first time (over every value of the stage).
    fn burn_on_cancel(&self, on_cancel: OnCancel) -> StageResult<()> {
        self.burn()?;
        let cancels = {
            let mut progress = self.progress();
            progress.cancels += 1;
            progress.cancels
        };
        match on_cancel.fault {
            Some(fault) if cancels == 1 => self.blow(fault, false, Vec::new(), None, "in a cancel"),
            _ => Ok(()),
        }
    }
}

/// The tag of the events a producer_consumer emits itself: `MIDDLE_TAG + i` for `M{i}`.
const MIDDLE_TAG: usize = 1_000;

/// Sent to itself, through its own reference, by the `handle_events` of a stage that asks after
/// each batch ([`Asks::AfterBatch`]), which has no context to ask with: told it, the stage asks.
struct AskNow;

/// The clock of a stage that asks on ticks ([`Asks::Ticks`]).
struct Tick;

/// How often a [`Tick`] comes.
const TICK: Duration = Duration::from_millis(1);

/// Sends a stage an [`AskNow`]: set once the stage is added, through its reference.
type AskNowSender = Arc<std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>>;

/// What a value of a stage with a [`ManualPlan`] needs besides its [`Fuse`] (whose [`Progress`]
/// keeps the stage's manual subscriptions, over all its values).
struct Manual {
    plan: ManualPlan,
    ask_now: AskNowSender,
    /// This value's [`Asker`]s, by subscription, asking through them.
    askers: HashMap<SubscriptionTag, Asker>,
    /// The subscription of the batch `handle_events` is about to get, as `batch_from` told it;
    /// taken by [`received`](Self::received), so that each batch must be told its own.
    from: Option<SubscriptionTag>,
    /// This value has started its ticks.
    ticking: bool,
    rng: Rng,
}

impl Manual {
    /// Whether `handle_subscribe` takes `subscription` into manual mode: one it took before (this
    /// is a value made after a failure, told of it again: `Some(true)`), or one to a stage its plan
    /// takes, which it records as asked for `max_demand` (the initial ask, already in place).
    fn subscribe(&mut self, fuse: &Fuse, subscription: &Subscription) -> Option<bool> {
        let producer = parse_node(subscription.producer())?;
        let tag = subscription.tag();
        let mut progress = fuse.progress();
        if progress.manual.contains_key(&tag) {
            return Some(true);
        }
        if !self.plan.takes(producer, subscription.max_demand()) {
            return None;
        }
        let max_demand = subscription.max_demand() as u64;
        let sub = ManualSub {
            producer,
            max_demand,
            asked: max_demand,
            got: 0,
        };
        progress.manual.insert(tag, sub);
        Some(false)
    }

    /// At the start of `handle_events` (before a planned fault): records a batch `batch_from` did
    /// not tell the stage of, and events of a manual subscription that another stage emitted;
    /// counts the events of the batch on the manual subscriptions they came on (once, were they
    /// handed again), records any beyond what was asked, and, asking after each batch, sends the
    /// stage an [`AskNow`], or asks through its [`Asker`]s.
    fn received(&mut self, fuse: &Fuse, events: &[Event]) {
        let mut overran = Vec::new();
        let mut wrong_from = Vec::new();
        let from = self.from.take();
        let mut progress = fuse.progress();
        let Progress { manual, seen, .. } = &mut *progress;
        if let Some(sub) = from.and_then(|tag| manual.get(&tag)) {
            wrong_from.extend(
                events
                    .iter()
                    .map(Event::last_emitter)
                    .filter(|&emitter| emitter != sub.producer)
                    .map(|emitter| (fuse.stage.clone(), sub.producer, emitter)),
            );
        }
        for &event in events {
            if !seen.insert(event) {
                continue;
            }
            let from = event.last_emitter();
            for sub in manual.values_mut().filter(|sub| sub.producer == from) {
                sub.got += 1;
                if sub.got == sub.asked + 1 {
                    overran.push((fuse.stage.clone(), from, sub.asked, sub.got));
                }
            }
        }
        drop(progress);
        if !overran.is_empty() || !wrong_from.is_empty() || from.is_none() {
            let mut ledger = lock(&fuse.ledger);
            ledger.overruns.extend(overran);
            ledger.wrong_from.extend(wrong_from);
            if from.is_none() {
                ledger.untold_batches.push(fuse.stage.clone());
            }
        }
        match self.plan.asks {
            Asks::AfterBatch => {
                if let Some(ask_now) = self.ask_now.get() {
                    ask_now();
                }
            }
            Asks::Asker => self.ask_through_askers(fuse),
            Asks::Ticks => {}
        }
    }

    /// [`ask`](Self::ask)s, not topping up, through its [`Asker`]s, on the subscriptions this value
    /// has one for: one it was not told of (yet: it is told of them in turn, or they ended before
    /// a restart made it) it does not ask on. The asks are made in the stage's turn.
    fn ask_through_askers(&mut self, fuse: &Fuse) {
        let askers = &self.askers;
        let has_asker = |tag| askers.contains_key(&tag);
        Self::ask_each(
            &mut self.rng,
            fuse,
            false,
            ("Asker", &has_asker),
            |tag, amount| {
                let unknown = || AskError::Unknown {
                    stage: fuse.stage.clone(),
                    subscription: tag,
                };
                match askers.get(&tag) {
                    // The stage runs: it has not ended.
                    Some(asker) => asker.ask(amount).map_err(|_| unknown()),
                    None => Err(unknown()),
                }
            },
        );
    }

    /// Asks on each manual subscription: up to `max_demand` outstanding if `top_up`; otherwise a
    /// random amount within it, at least one where nothing is outstanding (so that the stage
    /// never waits on a subscription it asked nothing on). A subscription that has ended is
    /// forgotten; any other refusal is recorded.
    fn ask<S: Send + 'static>(&mut self, fuse: &Fuse, ctx: &mut Context<'_, S>, top_up: bool) {
        let every = |_| true;
        Self::ask_each(
            &mut self.rng,
            fuse,
            top_up,
            ("Context", &every),
            |tag, amount| ctx.ask(tag, amount),
        );
    }

    /// [`ask`](Self::ask), asking with `ask`, through `by` (what the ledger counts the asks of).
    fn ask_each(
        rng: &mut Rng,
        fuse: &Fuse,
        top_up: bool,
        (by, asks_on): (&'static str, &dyn Fn(SubscriptionTag) -> bool),
        mut ask: impl FnMut(SubscriptionTag, usize) -> Result<(), AskError>,
    ) {
        fuse.after_init("a manual ask");
        let subs: Vec<(SubscriptionTag, ManualSub)> = fuse
            .progress()
            .manual
            .iter()
            .filter(|&(&tag, _)| asks_on(tag))
            .map(|(&tag, &sub)| (tag, sub))
            .collect();
        for (tag, sub) in subs {
            let outstanding = sub.asked.saturating_sub(sub.got);
            let room = sub.max_demand.saturating_sub(outstanding) as usize;
            let amount = match (top_up, outstanding) {
                (true, _) => room,
                (false, 0) => rng.range(1, room.max(1)),
                (false, _) => rng.range(0, room),
            };
            if amount == 0 {
                continue;
            }
            match ask(tag, amount) {
                Ok(()) => {
                    if let Some(sub) = fuse.progress().manual.get_mut(&tag) {
                        sub.asked += amount as u64;
                    }
                    *lock(&fuse.ledger)
                        .asks
                        .entry((fuse.stage.clone(), by))
                        .or_default() += 1;
                }
                Err(AskError::Unknown { .. }) => drop(fuse.progress().manual.remove(&tag)),
                Err(error) => lock(&fuse.ledger)
                    .ask_errors
                    .push((fuse.stage.clone(), error)),
            }
        }
    }

    /// `handle_cancel`: the subscription is no longer asked on.
    fn cancel(&self, fuse: &Fuse, subscription: &Subscription) {
        fuse.progress().manual.remove(&subscription.tag());
    }

    /// Whether a value that got a [`Tick`] sends itself the next: while it has manual
    /// subscriptions (a subscription made later starts the ticks again).
    fn tick_again(&mut self, fuse: &Fuse) -> bool {
        self.ticking = !fuse.progress().manual.is_empty();
        self.ticking
    }
}

/// `handle_subscribe` of a stage with an optional [`Manual`] `$manual`, its [`Fuse`] `$fuse`:
/// starts its ticks at its first manual subscription, and asks at once for one it is told of
/// again after a failure (what its failed value was sent may have gone with it).
macro_rules! manual_subscribe {
    ($manual:expr, $fuse:expr, $subscription:expr, $ctx:expr) => {{
        let Some(manual) = $manual else {
            return Demand::Automatic;
        };
        let Some(again) = manual.subscribe($fuse, $subscription) else {
            return Demand::Automatic;
        };
        match manual.plan.asks {
            Asks::Ticks if !manual.ticking => {
                manual.ticking = true;
                drop($ctx.info_after(TICK, Tick));
            }
            Asks::Ticks => {}
            Asks::AfterBatch if again => $ctx.info(AskNow),
            Asks::AfterBatch => {}
            Asks::Asker => {
                let tag = $subscription.tag();
                match $ctx.asker(tag) {
                    Ok(asker) => drop(manual.askers.insert(tag, asker)),
                    Err(error) => lock(&$fuse.ledger)
                        .ask_errors
                        .push(($fuse.stage.clone(), error)),
                }
                if again {
                    manual.ask_through_askers($fuse);
                }
            }
        }
        Demand::Manual
    }};
}

// ---------------------------------------------------------------------------------------------
// The stages

/// Where a [`Chaotic`] producer takes its events from.
enum Supply {
    Ready,
    /// The feeder's channel, and how many of the events it announced are not emitted yet.
    Late(mpsc::UnboundedReceiver<u64>, u64),
    /// Never sent anything: its sender lives until the run ends.
    Stall(mpsc::UnboundedReceiver<()>),
    /// Cast its events: see [`Source::Messages`].
    Messages,
}

struct Chaotic {
    tag: usize,
    plan: ProducerPlan,
    /// Shared by every value of the producer, as its [`Progress`] is.
    supply: Arc<tokio::sync::Mutex<Supply>>,
    /// The consumers to cast a [`Mark`] to when told a [`Confirm`] (filled once they are added).
    marks_to: Arc<Mutex<Vec<ConsumerRef<Sink>>>>,
    fuse: Fuse,
    router: Option<Arc<Router>>,
}

impl Chaotic {
    /// Records an emit that says the producer's events are the last.
    fn ending(&self, emit: Emit<Event>) -> Emit<Event> {
        if emit.last {
            self.fuse.progress().ended = true;
            let mut ledger = lock(&self.fuse.ledger);
            *ledger.ends.entry(self.fuse.stage.clone()).or_default() += 1;
        }
        emit
    }

    /// Emits what a failed `handle_cast` was cast (and any chunk cast now, added to it first).
    fn emit_owed(&self) -> Emit<Event> {
        let mut progress = self.fuse.progress();
        let count = std::mem::take(&mut progress.owed);
        let last = std::mem::take(&mut progress.owed_last);
        let events: Vec<Event> = (progress.next..progress.next + count)
            .map(|seq| Event::new(self.tag, seq))
            .collect();
        progress.next += count;
        drop(progress);
        lock(&self.fuse.ledger).emit(&self.fuse.stage, &events);
        Emit { events, last }
    }
}

impl Partition<Event> for Chaotic {
    fn partition(&self, event: &Event) -> Option<usize> {
        if let Some(router) = &self.router {
            router.route(event);
        }
        self.plan.fan.route(event)
    }
}

/// The dispatcher of a stage whose events go out as `fan` says; `pick` chooses, for
/// [`Fan::Demand`], between the crate's dispatcher and the test's own ([`own_dispatcher`]).
fn dispatch<S: Partition<Event>>(fan: Fan, pick: u64) -> Dispatch<S, Event> {
    match fan {
        Fan::Demand if own_dispatcher(fan, pick) => Dispatch::custom(Rotating::default()),
        Fan::Demand => Dispatch::demand(),
        Fan::Broadcast => Dispatch::broadcast(),
        Fan::Partition { partitions, .. } => Dispatch::partition(partitions),
    }
}

/// Whether a stage whose events go out as `fan` says has the test's own dispatcher, [`Rotating`]:
/// half the [`Fan::Demand`] stages, by the parity of `pick`, a number of the stage's plan (not a
/// new draw of the seed's generator, so that each seed's runs stay as they were).
fn own_dispatcher(fan: Fan, pick: u64) -> bool {
    fan == Fan::Demand && pick % 2 == 1
}

/// A dispatcher of the test's own, through [`Dispatch::custom`]: each batch to the consumers that
/// have demand, in turn, as much as each asked for; what none can take goes back to the stage's
/// buffer. It keeps no events, and, as the crate's demand dispatcher, sends each event to one
/// consumer and counts what a departed consumer asked for against later asks, so the checks of a
/// [`Fan::Demand`] stage hold for it.
#[derive(Default)]
struct Rotating {
    /// Each consumer's subscription and unmet demand, in the order they subscribed.
    subscribers: Vec<(genstage::dispatcher::SubscriptionId, usize)>,
    /// Where the next dispatch starts.
    next: usize,
    /// Demand asked upstream for consumers that have left, which later asks use first.
    pending: usize,
}

impl genstage::dispatcher::Dispatcher<Event> for Rotating {
    fn subscribe(
        &mut self,
        sub: genstage::dispatcher::SubscriptionId,
        options: &genstage::dispatcher::DispatchOptions<Event>,
    ) -> Result<usize, genstage::dispatcher::DispatchError> {
        if options.partition.is_some() || options.selector.is_some() {
            return Err(genstage::dispatcher::DispatchError(
                "the rotating dispatcher takes neither a partition nor a selector".to_owned(),
            ));
        }
        self.subscribers.push((sub, 0));
        Ok(0)
    }

    fn cancel(&mut self, sub: genstage::dispatcher::SubscriptionId) -> usize {
        if let Some(at) = self.subscribers.iter().position(|&(s, _)| s == sub) {
            let (_, unmet) = self.subscribers.remove(at);
            self.pending = self.pending.saturating_add(unmet);
            if self.next > at {
                self.next -= 1;
            }
        }
        0
    }

    fn ask(
        &mut self,
        sub: genstage::dispatcher::SubscriptionId,
        demand: usize,
        _: &mut genstage::dispatcher::Outbox<'_, Event>,
    ) -> usize {
        let Some((_, unmet)) = self.subscribers.iter_mut().find(|(s, _)| *s == sub) else {
            return 0;
        };
        *unmet = unmet.saturating_add(demand);
        let covered = demand.min(self.pending);
        self.pending -= covered;
        demand - covered
    }

    fn dispatch(
        &mut self,
        mut events: Vec<Event>,
        out: &mut genstage::dispatcher::Outbox<'_, Event>,
    ) -> Result<Vec<Event>, genstage::dispatcher::DispatchError> {
        let count = self.subscribers.len();
        for _ in 0..count {
            if events.is_empty() {
                break;
            }
            let at = self.next % count;
            self.next = (at + 1) % count;
            let (sub, unmet) = &mut self.subscribers[at];
            if *unmet == 0 {
                continue;
            }
            let rest = events.split_off((*unmet).min(events.len()));
            *unmet -= events.len();
            out.send(*sub, std::mem::replace(&mut events, rest));
        }
        Ok(events)
    }

    fn capacity(&self) -> usize {
        self.subscribers
            .iter()
            .fold(0, |total, &(_, unmet)| total.saturating_add(unmet))
    }

    fn consumers(&self) -> usize {
        self.subscribers.len()
    }
}

impl Producer for Chaotic {
    type Output = Event;

    fn dispatcher(&self) -> Dispatch<Self, Event> {
        dispatch(self.plan.fan, self.plan.events)
    }

    fn init(&mut self, _: &mut Context<'_, Self>) {
        self.fuse.init();
    }

    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<Event>> {
        self.fuse.burn()?;
        let (calls, planned, ended) = {
            let progress = self.fuse.progress();
            (
                progress.calls,
                progress.next - progress.bonus,
                progress.ended,
            )
        };
        if ended {
            return Ok(self.ending(Emit::last(Vec::new())));
        }
        let want = match self.plan.shape {
            Shape::Exact => demand,
            Shape::Fewer(d) => (demand / d).max(1),
            Shape::More(extra) => demand + extra,
            Shape::EmptyEvery(k) if calls % k == 0 => 0,
            Shape::EmptyEvery(_) => demand,
        };
        let mut supply = self.supply.lock().await;
        let (available, closed) = match &mut *supply {
            Supply::Ready => (self.plan.events - planned, true),
            Supply::Late(feed, stock) => {
                if *stock == 0 && want > 0 {
                    match feed.recv().await {
                        Some(chunk) => *stock += chunk,
                        None => return Ok(self.ending(Emit::last(Vec::new()))),
                    }
                }
                (*stock, false)
            }
            Supply::Stall(never) => {
                if planned == self.plan.events && want > 0 {
                    never.recv().await;
                    return Err("the never-fed channel closed".into());
                }
                (self.plan.events - planned, false)
            }
            // What a failed `handle_cast` was cast, if anything.
            Supply::Messages => return Ok(self.ending(self.emit_owed())),
        };
        let count = (want as u64).min(available);
        if let Supply::Late(_, stock) = &mut *supply {
            *stock -= count;
        }
        drop(supply);
        let mut progress = self.fuse.progress();
        let events: Vec<Event> = (progress.next..progress.next + count)
            .map(|seq| Event::new(self.tag, seq))
            .collect();
        progress.next += count;
        let planned = progress.next - progress.bonus;
        drop(progress);
        lock(&self.fuse.ledger).emit(&self.fuse.stage, &events);
        let at_end = closed && planned == self.plan.events;
        let last = at_end && (!self.plan.last_separately || events.is_empty());
        Ok(self.ending(Emit { events, last }))
    }

    fn producer_options(&self) -> ProducerOptions {
        self.plan.options()
    }

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, _: &mut Context<'_, Self>) {
        lock(&self.fuse.ledger).tell(&self.fuse, subscriber, None);
    }

    async fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<Event>> {
        lock(&self.fuse.ledger).tell(&self.fuse, subscriber, Some(reason));
        let Some(on_cancel) = self.plan.on_cancel else {
            return Ok(Vec::new());
        };
        self.fuse.burn_on_cancel(on_cancel)?;
        let mut progress = self.fuse.progress();
        let events: Vec<Event> = (progress.next..progress.next + on_cancel.events)
            .map(|seq| Event::new(self.tag, seq))
            .collect();
        progress.next += on_cancel.events;
        progress.bonus += on_cancel.events;
        drop(progress);
        lock(&self.fuse.ledger).emit(&self.fuse.stage, &events);
        Ok(events)
    }
}

/// Sent by a producer that [`confirm`](ProducerPlan::confirm)s to itself with
/// `info_after_buffered`: how many events it had emitted then. Delivered once they have all been
/// dispatched (or dropped by its buffer).
struct Confirm(u64);

impl HandleInfo<Confirm> for Chaotic {
    type Emitted = ();

    async fn handle_info(
        &mut self,
        Confirm(emitted): Confirm,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        lock(&self.fuse.ledger).confirmed.push((self.tag, emitted));
        let marks_to = self
            .marks_to
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for consumer in marks_to {
            // It may have ended.
            let _ = consumer.cast(Mark {
                producer: self.tag,
                emitted,
            });
        }
        Ok(())
    }
}

/// Cast by a producer, from its own task, to a consumer it feeds directly (and only directly) when
/// told a [`Confirm`]: it reaches the consumer's mailbox behind every event the producer sent it
/// before, and those were all of `(producer, seq < emitted)` that it will ever get.
struct Mark {
    producer: usize,
    emitted: u64,
}

/// Events cast to a [`Source::Messages`] producer: `count` more, and whether they are the last.
struct Chunk {
    count: u64,
    last: bool,
}

impl HandleCast<Chunk> for Chaotic {
    type Emitted = Emit<Event>;

    async fn handle_cast(
        &mut self,
        Chunk { count, last }: Chunk,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Emit<Event>> {
        // Owed until emitted: if the call fails, the producer's next value emits them.
        {
            let mut progress = self.fuse.progress();
            progress.owed += count;
            progress.owed_last |= last;
        }
        self.fuse.burn()?;
        let emit = self.emit_owed();
        if self.plan.confirm {
            ctx.info_after_buffered(Confirm(self.fuse.progress().next));
        }
        Ok(self.ending(emit))
    }
}

/// Casts a [`Source::Messages`] producer its events in chunks of 1–50, with a yield or a 1 ms sleep
/// between them; stops when the producer has ended.
async fn cast_feed(
    mut rng: Rng,
    mut events: u64,
    producer: ProducerRef<Chaotic>,
    watch: Option<RefusalWatch>,
) {
    loop {
        if rng.chance(15) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
        let count = (rng.range(1, 50) as u64).min(events);
        events -= count;
        let last = events == 0;
        if let Err(error) = producer.cast(Chunk { count, last }) {
            refused(watch.as_ref(), &error);
            return;
        }
        if last {
            return;
        }
    }
}

/// Switches an accumulating producer to forward after `yields` yields.
async fn forward_after<P: Producer>(
    yields: usize,
    producer: ProducerRef<P>,
    watch: Option<RefusalWatch>,
) {
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
    // It may have ended already (its consumers failed, or left).
    if let Err(error) = producer.demand(DemandMode::Forward) {
        refused(watch.as_ref(), &error);
    }
}

/// Where a refusal of a message to a producer of the test's own is recorded: the ledger, the
/// producer's name and its progress.
type RefusalWatch = (Shared, String, Arc<Mutex<Progress>>);

/// Records a refusal as `Ended` (see [`Ledger::refused_ended`]).
fn refused(watch: Option<&RefusalWatch>, error: &CallError) {
    if let (Some((ledger, stage, progress)), CallError::Ended { .. }) = (watch, error) {
        let values = lock(progress).values;
        let refusal = (stage.clone(), values, progress.clone());
        lock(ledger).refused_ended.push(refusal);
    }
}

/// Feeds a late producer its events in chunks of 1–50, with a yield or a 1 ms sleep between them.
async fn feed(mut rng: Rng, mut events: u64, feeder: mpsc::UnboundedSender<u64>) {
    while events > 0 {
        if rng.chance(15) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
        let chunk = (rng.range(1, 50) as u64).min(events);
        if feeder.send(chunk).is_err() {
            return;
        }
        events -= chunk;
    }
}

/// How many events an endless feeder sends at most before it drops its sender anyway.
const ENDLESS: u64 = 200_000;

/// Feeds a [`Source::Channel`] producer its events, `(tag, 0..)`, one `send` at a time, pausing
/// before some (a yield, or now and then a 1 ms sleep): `events` of them, then drops its sender;
/// or, if `endless`, until a send fails. A send that fails gives its event back, and the feeder
/// stops there. Records what it saw in the ledger, each event once `send` has accepted it.
async fn channel_feed(
    mut rng: Rng,
    tag: usize,
    events: Option<u64>,
    sender: mpsc::Sender<Event>,
    ledger: Shared,
) {
    let stage = Node::Producer(tag).to_string();
    let planned = events.unwrap_or(ENDLESS);
    for seq in 0..planned {
        match rng.range(0, 99) {
            0..=1 => tokio::time::sleep(Duration::from_millis(1)).await,
            2..=39 => tokio::task::yield_now().await,
            _ => {}
        }
        let event = Event::new(tag, seq);
        let sent = sender.send(event).await;
        let mut ledger = lock(&ledger);
        match sent {
            Ok(()) => {
                ledger.emit(&stage, &[event]);
                ledger.fed.entry(tag).or_default().accepted += 1;
            }
            Err(mpsc::error::SendError(back)) => {
                ledger.fed.entry(tag).or_default().refused = Some(back);
                return;
            }
        }
    }
    lock(&ledger).fed.entry(tag).or_default().dropped = true;
}

/// The stream of a [`Source::Stream`] producer: `(tag, 0..events)`, each recorded as emitted when
/// it is yielded; before some it says `Pending` (waking its task at once: a yield), or now and
/// then sleeps 1 ms. With `panic_at`, it panics when polled for that item (or for its end, if it
/// has fewer), after a `Pending` there: `from_stream` then takes nothing in the call that polls it,
/// and the producer panics at once.
struct Trickle {
    tag: usize,
    next: u64,
    events: u64,
    panic_at: Option<u64>,
    /// It has said `Pending` at the item it panics at.
    primed: bool,
    nap: Option<Pin<Box<tokio::time::Sleep>>>,
    rng: Rng,
    ledger: Shared,
}

impl futures::Stream for Trickle {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        if let Some(nap) = &mut this.nap {
            if nap.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.nap = None;
        }
        let stage = Node::Producer(this.tag).to_string();
        if this
            .panic_at
            .is_some_and(|at| this.next >= at.min(this.events))
        {
            if !std::mem::replace(&mut this.primed, true) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let blow = Blow {
                fault: Fault::Panic,
                in_events: false,
                batch: Vec::new(),
                again: None,
                routing: None,
            };
            lock(&this.ledger)
                .blows
                .entry(stage.clone())
                .or_default()
                .push(blow);
            panic!("{INJECTED} in {stage}'s stream at item {}", this.next);
        }
        if this.next == this.events {
            return Poll::Ready(None);
        }
        match this.rng.range(0, 199) {
            0 => {
                let mut nap = Box::pin(tokio::time::sleep(Duration::from_millis(1)));
                if nap.as_mut().poll(cx).is_pending() {
                    this.nap = Some(nap);
                    return Poll::Pending;
                }
            }
            1..=50 => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            _ => {}
        }
        let event = Event::new(this.tag, this.next);
        this.next += 1;
        lock(&this.ledger).emit(&stage, &[event]);
        Poll::Ready(Some(event))
    }
}

/// Reads the stream of the [`to_stream`] consumer `C{consumer}`, pausing before some events (a
/// yield, or now and then a 1 ms sleep) unless it is `eager`, and records each event it yields as
/// handled by the consumer; drops the stream once it has read `drop_after` events, if it has not
/// ended by then.
async fn read_stream(
    mut rng: Rng,
    consumer: usize,
    mut stream: EventStream<Event>,
    StreamPlan {
        drop_after, eager, ..
    }: StreamPlan,
    ledger: Shared,
) {
    let stage = Node::Consumer(consumer).to_string();
    let mut read = 0;
    loop {
        if drop_after == Some(read) {
            lock(&ledger).streams_dropped.insert(consumer);
            drop(stream);
            return;
        }
        match rng.range(0, 199) {
            _ if eager => {}
            0 => tokio::time::sleep(Duration::from_millis(1)).await,
            1..=59 => tokio::task::yield_now().await,
            _ => {}
        }
        let Some(event) = stream.next().await else {
            return;
        };
        let mut ledger = lock(&ledger);
        ledger.handle(&stage, &[event]);
        ledger.delivered += 1;
        read += 1;
    }
}

/// A child of the [`ConsumerSupervisor`] `C{consumer}`: handles its event, after a yield now and
/// then (so that children run side by side), and records it handled; fails as its
/// [`SupervisorPlan`] says, by an `Err` on odd sequence numbers and a panic on even ones, once per
/// event (a transient child run again succeeds).
struct Job {
    consumer: usize,
    plan: SupervisorPlan,
    /// The events a child failed on.
    failed: Arc<Mutex<HashSet<Event>>>,
    ledger: Shared,
}

impl Child<Event> for Job {
    type Output = Result<(), String>;

    fn run(&self, event: Event) -> impl Future<Output = Result<(), String>> + Send {
        let stage = Node::Consumer(self.consumer).to_string();
        let fails = self.plan.fail.is_some_and(|d| event.seq % d == d - 1)
            && lock(&self.failed).insert(event);
        let transient = self.plan.transient;
        let ledger = self.ledger.clone();
        async move {
            if event.seq.is_multiple_of(3) {
                tokio::task::yield_now().await;
            }
            let mut ledger = lock(&ledger);
            if fails {
                ledger
                    .child_failures
                    .push((stage.clone(), event, transient));
                drop(ledger);
                if event.seq.is_multiple_of(2) {
                    panic!("{INJECTED} in a child of {stage}");
                }
                return Err(format!("a child of {stage} failed"));
            }
            ledger.handle_unordered(&stage, event);
            ledger.delivered += 1;
            Ok(())
        }
    }
}

/// A producer_consumer that passes events on, but for those its filter drops.
struct Middle {
    /// `i` of `M{i}`.
    index: usize,
    filter: Option<u64>,
    on_cancel: Option<OnCancel>,
    fan: Fan,
    fuse: Fuse,
    manual: Option<Manual>,
    router: Option<Arc<Router>>,
    waits: bool,
}

impl Middle {
    /// A callback starts: the batch `handle_events` returned last is done (see [`Router`]).
    fn settle(&self) {
        if let Some(router) = &self.router {
            router.settle();
        }
    }
}

impl Partition<Event> for Middle {
    fn partition(&self, event: &Event) -> Option<usize> {
        if let Some(router) = &self.router {
            router.route(event);
        }
        self.fan.route(event)
    }
}

impl ProducerConsumer for Middle {
    type Input = Event;
    type Output = Event;

    fn dispatcher(&self) -> Dispatch<Self, Event> {
        dispatch(self.fan, self.index as u64)
    }

    fn producer_options(&self) -> ProducerOptions {
        let options = ProducerOptions::for_producer_consumer();
        match self.waits {
            true => options.without_consumers(WithoutConsumers::Wait),
            false => options,
        }
    }

    fn init(&mut self, _: &mut Context<'_, Self>) {
        self.settle();
        self.fuse.init();
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        self.settle();
        if let Some(manual) = &mut self.manual {
            manual.from = Some(subscription);
        }
    }

    async fn handle_events(&mut self, events: Vec<Event>) -> StageResult<Vec<Event>> {
        if let Some(router) = &self.router {
            router.handed(&events);
        }
        if let Some(manual) = &mut self.manual {
            manual.received(&self.fuse, &events);
        }
        if let Some(fail) = self.fuse.burn_events(&events) {
            return self.fuse.fail_events(events, fail);
        }
        let batch = self.router.as_ref().map(|_| events.clone());
        let mut ledger = lock(&self.fuse.ledger);
        ledger.handle(&self.fuse.stage, &events);
        let (kept, dropped): (Vec<Event>, Vec<Event>) = events
            .into_iter()
            .partition(|e| self.filter.is_none_or(|n| e.seq % n != 0));
        ledger.dropped.extend(dropped);
        let kept: Vec<Event> = kept.into_iter().map(|e| e.via(self.index)).collect();
        ledger.emit(&self.fuse.stage, &kept);
        drop(ledger);
        if let (Some(router), Some(batch)) = (&self.router, batch) {
            router.returned(batch, kept.clone());
        }
        Ok(kept)
    }

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        self.settle();
        manual_subscribe!(&mut self.manual, &self.fuse, subscription, ctx)
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        _: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<Event>> {
        self.settle();
        if let Some(manual) = &self.manual {
            manual.cancel(&self.fuse, subscription);
        }
        Ok(Vec::new())
    }

    fn handle_consumer_subscribe(&mut self, subscriber: &Subscriber, _: &mut Context<'_, Self>) {
        self.settle();
        lock(&self.fuse.ledger).tell(&self.fuse, subscriber, None);
    }

    async fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<Vec<Event>> {
        self.settle();
        lock(&self.fuse.ledger).tell(&self.fuse, subscriber, Some(reason));
        let Some(on_cancel) = self.on_cancel else {
            return Ok(Vec::new());
        };
        self.fuse.burn_on_cancel(on_cancel)?;
        let mut progress = self.fuse.progress();
        let events: Vec<Event> = (progress.own..progress.own + on_cancel.events)
            .map(|seq| Event::new(MIDDLE_TAG + self.index, seq))
            .collect();
        progress.own += on_cancel.events;
        drop(progress);
        let mut ledger = lock(&self.fuse.ledger);
        ledger.emit(&self.fuse.stage, &events);
        *ledger.emitted.entry(own_events(self.index)).or_default() += on_cancel.events;
        Ok(events)
    }
}

impl HandleInfo<AskNow> for Middle {
    type Emitted = Vec<Event>;

    async fn handle_info(
        &mut self,
        _: AskNow,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<Event>> {
        self.settle();
        if let Some(manual) = &mut self.manual {
            manual.ask(&self.fuse, ctx, false);
        }
        Ok(Vec::new())
    }
}

impl HandleInfo<Tick> for Middle {
    type Emitted = Vec<Event>;

    async fn handle_info(
        &mut self,
        _: Tick,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<Event>> {
        self.settle();
        if let Some(manual) = &mut self.manual {
            manual.ask(&self.fuse, ctx, true);
            if manual.tick_again(&self.fuse) {
                drop(ctx.info_after(TICK, Tick));
            }
        }
        Ok(Vec::new())
    }
}

/// The ledger's key for the events `M{i}` emitted of its own.
fn own_events(middle: usize) -> String {
    format!("M{middle} own")
}

struct Sink {
    yield_every: Option<usize>,
    fuse: Fuse,
    manual: Option<Manual>,
}

impl Consumer for Sink {
    type Input = Event;

    fn init(&mut self, _: &mut Context<'_, Self>) {
        self.fuse.init();
    }

    fn batch_from(&mut self, subscription: SubscriptionTag) {
        if let Some(manual) = &mut self.manual {
            manual.from = Some(subscription);
        }
    }

    async fn handle_events(&mut self, events: Vec<Event>) -> StageResult<()> {
        if let Some(manual) = &mut self.manual {
            manual.received(&self.fuse, &events);
        }
        if let Some(fail) = self.fuse.burn_events(&events) {
            return self.fuse.fail_events(events, fail);
        }
        let calls = self.fuse.progress().calls;
        if self.yield_every.is_some_and(|n| calls.is_multiple_of(n)) {
            tokio::task::yield_now().await;
        }
        let mut ledger = lock(&self.fuse.ledger);
        ledger.handle(&self.fuse.stage, &events);
        ledger.delivered += events.len() as u64;
        Ok(())
    }

    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        ctx: &mut Context<'_, Self>,
    ) -> Demand {
        manual_subscribe!(&mut self.manual, &self.fuse, subscription, ctx)
    }

    async fn handle_cancel(
        &mut self,
        subscription: &Subscription,
        _: &CancelReason,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        if let Some(manual) = &self.manual {
            manual.cancel(&self.fuse, subscription);
        }
        Ok(())
    }
}

impl HandleInfo<AskNow> for Sink {
    type Emitted = ();

    async fn handle_info(&mut self, _: AskNow, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        if let Some(manual) = &mut self.manual {
            manual.ask(&self.fuse, ctx, false);
        }
        Ok(())
    }
}

impl HandleInfo<Tick> for Sink {
    type Emitted = ();

    async fn handle_info(&mut self, _: Tick, ctx: &mut Context<'_, Self>) -> StageResult<()> {
        if let Some(manual) = &mut self.manual {
            manual.ask(&self.fuse, ctx, true);
            if manual.tick_again(&self.fuse) {
                drop(ctx.info_after(TICK, Tick));
            }
        }
        Ok(())
    }
}

/// Tells a consumer or producer_consumer to cancel one of its own subscriptions
/// (`Context::cancel`); the answer is what that returned.
struct CancelOwn(SubscriptionTag);

impl HandleCall<CancelOwn> for Sink {
    type Reply = Result<(), AskError>;
    type Emitted = ();

    async fn handle_call(
        &mut self,
        CancelOwn(tag): CancelOwn,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        reply.reply(ctx.cancel(tag));
        Ok(())
    }
}

impl HandleCall<CancelOwn> for Middle {
    type Reply = Result<(), AskError>;
    type Emitted = Vec<Event>;

    async fn handle_call(
        &mut self,
        CancelOwn(tag): CancelOwn,
        reply: ReplyTo<Result<(), AskError>>,
        ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<Event>> {
        self.settle();
        reply.reply(ctx.cancel(tag));
        Ok(Vec::new())
    }
}

impl HandleCast<Mark> for Sink {
    type Emitted = ();

    async fn handle_cast(
        &mut self,
        Mark { producer, emitted }: Mark,
        _: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        let mut ledger = lock(&self.fuse.ledger);
        let handled = ledger.order.get(&self.fuse.stage).map_or(0, Vec::len);
        let consumer = self.fuse.stage.clone();
        ledger.marks.push((consumer, producer, emitted, handled));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Running a topology

enum SourceRef {
    Producer(ProducerRef<Chaotic>),
    Channel(ProducerRef<FromChannel<Event>>),
    Stream(ProducerRef<FromStream<Trickle>>),
    Middle(ProducerConsumerRef<Middle>),
}

enum SinkRef {
    Middle(ProducerConsumerRef<Middle>),
    Consumer(ConsumerRef<Sink>),
    Stream(ConsumerRef<StreamSink<Event>>),
    Supervisor(ConsumerRef<ConsumerSupervisor<Event, Job>>),
}

/// `$body` with `$p` the reference of `$source` (a [`SourceRef`]) and `$c` that of `$sink` (a
/// [`SinkRef`]), whatever their types.
macro_rules! with_refs {
    ($source:expr, $sink:expr, |$p:ident, $c:ident| $body:expr) => {
        match ($source, $sink) {
            (SourceRef::Producer($p), SinkRef::Middle($c)) => $body,
            (SourceRef::Producer($p), SinkRef::Consumer($c)) => $body,
            (SourceRef::Producer($p), SinkRef::Stream($c)) => $body,
            (SourceRef::Producer($p), SinkRef::Supervisor($c)) => $body,
            (SourceRef::Channel($p), SinkRef::Middle($c)) => $body,
            (SourceRef::Channel($p), SinkRef::Consumer($c)) => $body,
            (SourceRef::Channel($p), SinkRef::Stream($c)) => $body,
            (SourceRef::Channel($p), SinkRef::Supervisor($c)) => $body,
            (SourceRef::Stream($p), SinkRef::Middle($c)) => $body,
            (SourceRef::Stream($p), SinkRef::Consumer($c)) => $body,
            (SourceRef::Stream($p), SinkRef::Stream($c)) => $body,
            (SourceRef::Stream($p), SinkRef::Supervisor($c)) => $body,
            (SourceRef::Middle($p), SinkRef::Middle($c)) => $body,
            (SourceRef::Middle($p), SinkRef::Consumer($c)) => $body,
            (SourceRef::Middle($p), SinkRef::Stream($c)) => $body,
            (SourceRef::Middle($p), SinkRef::Supervisor($c)) => $body,
        }
    };
}

/// The stage of [`Topology::added`], made but not yet added: the test adds it through the run's
/// handle ([`add`]).
enum Pending {
    Producer(Chaotic, Option<usize>),
    Middle(Middle, AskNowSender),
    Consumer(Sink, AskNowSender),
    Stream(StreamSink<Event>),
    Supervisor(ConsumerSupervisor<Event, Job>),
}

/// What the run left behind: its result, and the senders that must outlive it.
struct Built {
    pipeline: Pipeline,
    /// The senders of the stalling producers' channels: kept, never used.
    never: Vec<mpsc::UnboundedSender<()>>,
    /// The tasks feeding the channel producers: each ends once its producer has (its channel is
    /// closed), if not before.
    feeders: Vec<tokio::task::JoinHandle<()>>,
    /// The tasks reading the `to_stream` consumers' streams: each ends once its consumer has (its
    /// stream ends), if it did not drop the stream before.
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// The stages' references, for the [`Action`].
    sources: HashMap<Node, SourceRef>,
    sinks: HashMap<Node, SinkRef>,
    /// The stage to add while the run goes on, if there is one.
    pending: Option<Pending>,
}

impl Topology {
    /// The consumers that `producer` feeds directly and only directly (through no
    /// producer_consumer), and always will: none when the run may resubscribe. None for a channel
    /// producer either, which casts no marks and is told of nothing.
    fn marked_by(&self, producer: usize) -> Vec<usize> {
        if self.action.is_some_and(|a| a.resubscribe)
            || self.producers[producer].source.is_foreign()
        {
            return Vec::new();
        }
        let mut reached: Vec<Node> = vec![Node::Producer(producer)];
        let mut through_middles: HashSet<Node> = HashSet::new();
        while let Some(node) = reached.pop() {
            for edge in self.edges.iter().filter(|e| e.from == node) {
                let via_middle = matches!(node, Node::Middle(_));
                if via_middle {
                    through_middles.insert(edge.to);
                }
                if matches!(edge.to, Node::Middle(_)) {
                    reached.push(edge.to);
                }
            }
        }
        (0..self.consumers.len())
            .filter(|&i| {
                let direct = self
                    .edges
                    .iter()
                    .any(|e| e.from == Node::Producer(producer) && e.to == Node::Consumer(i));
                direct && !through_middles.contains(&Node::Consumer(i))
            })
            .collect()
    }
}

/// Subscribes `to` to `from` with `options`, and `selector` if there is one, which asks `router`
/// (the [`Router`] of `from`, if it has one) about each event first.
fn wire(
    pipeline: &mut Pipeline,
    from: &impl genstage::Source<Event>,
    to: &impl genstage::Sink<Event>,
    options: SubscribeOptions,
    (selector, router): (Option<Selector>, Option<Arc<Router>>),
) {
    match selector {
        Some(selector) => pipeline.subscribe_selected(from, to, options, move |e| {
            if let Some(router) = &router {
                router.route(e);
            }
            selector.accepts(e)
        }),
        None => pipeline.subscribe_with(from, to, options),
    };
}

/// Builds the pipeline of `topology`. A stage with a restart policy is added with a constructor,
/// whose values share the stage's [`Progress`] (and a producer's [`Supply`]); one without is added
/// as a value.
fn build(topology: &Topology, ledger: &Shared) -> Built {
    let mut pipeline = Pipeline::new();
    let mut never = Vec::new();
    let mut sources: HashMap<Node, SourceRef> = HashMap::new();
    let mut sinks: HashMap<Node, SinkRef> = HashMap::new();
    let mut marks_to = Vec::new();
    let mut feeders = Vec::new();
    let mut readers = Vec::new();
    let mut routers: HashMap<Node, Arc<Router>> = HashMap::new();
    let mut pending = None;
    let nodes = (0..topology.producers.len())
        .map(|i| (Node::Producer(i), topology.producers[i].routing))
        .chain((0..topology.middles.len()).map(|i| (Node::Middle(i), topology.middles[i].routing)));
    for (node, routing) in nodes {
        if let Some(strike) = routing {
            routers.insert(node, Router::new(node.to_string(), strike, ledger));
        }
    }
    for (tag, plan) in topology.producers.iter().enumerate() {
        if let Source::Stream { endless, panic_at } = plan.source {
            // Added as a value, with no restart policy (see `Topology::plan_streams`).
            let trickle = Trickle {
                tag,
                next: 0,
                events: if endless { ENDLESS } else { plan.events },
                panic_at,
                primed: false,
                nap: None,
                rng: Rng::new(topology.seed ^ ((tag as u64 + 1) << 36)),
                ledger: ledger.clone(),
            };
            let name = Node::Producer(tag).to_string();
            let producer = from_stream(trickle).with_options(plan.options());
            let handle = pipeline.add_producer_named(name, producer);
            if let Some(yields) = plan.accumulate {
                tokio::spawn(forward_after(yields, handle.clone(), None));
            }
            // It casts no marks.
            marks_to.push(Arc::default());
            sources.insert(Node::Producer(tag), SourceRef::Stream(handle));
            continue;
        }
        if let Source::Channel { capacity, endless } = plan.source {
            // Added as a value, with no restart policy (see `Topology::plan_channels`).
            let (sender, producer) = from_channel::<Event>(capacity);
            let name = Node::Producer(tag).to_string();
            let handle = pipeline.add_producer_named(name, producer.with_options(plan.options()));
            let rng = Rng::new(topology.seed ^ ((tag as u64 + 1) << 32));
            let events = (!endless).then_some(plan.events);
            let feeder = channel_feed(rng, tag, events, sender, ledger.clone());
            feeders.push(tokio::spawn(feeder));
            if let Some(yields) = plan.accumulate {
                tokio::spawn(forward_after(yields, handle.clone(), None));
            }
            // It casts no marks.
            marks_to.push(Arc::default());
            sources.insert(Node::Producer(tag), SourceRef::Channel(handle));
            continue;
        }
        let supply = match plan.source {
            Source::Ready => Supply::Ready,
            Source::Late => {
                let (feeder, feed_rx) = mpsc::unbounded_channel();
                let rng = Rng::new(topology.seed ^ ((tag as u64 + 1) << 32));
                tokio::spawn(feed(rng, plan.events, feeder));
                Supply::Late(feed_rx, 0)
            }
            Source::Stall => {
                let (sender, receiver) = mpsc::unbounded_channel();
                never.push(sender);
                Supply::Stall(receiver)
            }
            Source::Messages => Supply::Messages,
            Source::Channel { .. } | Source::Stream { .. } => unreachable!("added above"),
        };
        let name = Node::Producer(tag).to_string();
        let marks = Arc::new(Mutex::new(Vec::new()));
        marks_to.push(marks.clone());
        let supply = Arc::new(tokio::sync::Mutex::new(supply));
        let progress: Arc<Mutex<Progress>> = Arc::default();
        let watch = (ledger.clone(), name.clone(), progress.clone());
        let (plan, stage, ledger) = (plan.clone(), name.clone(), ledger.clone());
        let router = routers.get(&Node::Producer(tag)).cloned();
        let make = move || Chaotic {
            tag,
            plan: plan.clone(),
            supply: supply.clone(),
            marks_to: marks.clone(),
            fuse: Fuse::new(stage.clone(), plan.strike, &ledger, &progress, true),
            router: router.clone(),
        };
        let plan = &topology.producers[tag];
        if topology.is_added(Node::Producer(tag)) {
            // No restart policy (see `Topology::plan_add`).
            pending = Some(Pending::Producer(make(), plan.accumulate));
            continue;
        }
        let handle = match plan.policy {
            Some(policy) => {
                let handle = pipeline.add_producer_with_as(Some(name), make);
                pipeline.set_restart(&handle, policy.policy());
                handle
            }
            None => pipeline.add_producer_named(name, make()),
        };
        if plan.source == Source::Messages {
            let rng = Rng::new(topology.seed ^ ((tag as u64 + 1) << 32));
            let watch = Some(watch.clone());
            tokio::spawn(cast_feed(rng, plan.events, handle.clone(), watch));
        }
        if let Some(yields) = plan.accumulate {
            tokio::spawn(forward_after(yields, handle.clone(), Some(watch)));
        }
        sources.insert(Node::Producer(tag), SourceRef::Producer(handle));
    }
    for (i, plan) in topology.middles.iter().enumerate() {
        let name = Node::Middle(i).to_string();
        let progress = Arc::default();
        let (plan, stage, ledger) = (plan.clone(), name.clone(), ledger.clone());
        let ask_now = AskNowSender::default();
        let asker = ask_now.clone();
        let seed = topology.seed ^ ((i as u64 + 1) << 40);
        let router = routers.get(&Node::Middle(i)).cloned();
        let make = move || {
            let fuse = Fuse::new(stage.clone(), plan.strike, &ledger, &progress, false);
            let manual = plan.manual.map(|plan| Manual {
                plan,
                ask_now: asker.clone(),
                askers: HashMap::new(),
                from: None,
                ticking: false,
                rng: Rng::new(seed ^ fuse.generation as u64),
            });
            Middle {
                index: i,
                filter: plan.filter,
                on_cancel: plan.on_cancel,
                fan: plan.fan,
                fuse,
                manual,
                router: router.clone(),
                waits: plan.waits,
            }
        };
        if topology.is_added(Node::Middle(i)) {
            // No restart policy (see `Topology::plan_add`).
            pending = Some(Pending::Middle(make(), ask_now));
            continue;
        }
        let handle = match topology.middles[i].policy {
            Some(policy) => {
                let handle = pipeline.add_producer_consumer_with_as(Some(name), make);
                pipeline.set_restart(&handle, policy.policy());
                handle
            }
            None => pipeline.add_producer_consumer_named(name, make()),
        };
        let me = handle.clone();
        let _ = ask_now.set(Box::new(move || drop(me.info(AskNow))));
        sources.insert(Node::Middle(i), SourceRef::Middle(handle.clone()));
        sinks.insert(Node::Middle(i), SinkRef::Middle(handle));
    }
    for (i, plan) in topology.consumers.iter().enumerate() {
        let name = Node::Consumer(i).to_string();
        if let Some(stream) = plan.stream {
            // Added as a value, with no restart policy (see `Topology::plan_streams`).
            let (sink, events) = to_stream::<Event>();
            let sink = match stream.options {
                Some((max, min)) => {
                    sink.with_options(SubscribeOptions::new().max_demand(max).min_demand(min))
                }
                None => sink,
            };
            let rng = Rng::new(topology.seed ^ ((i as u64 + 1) << 44));
            let reader = read_stream(rng, i, events, stream, ledger.clone());
            readers.push(tokio::spawn(reader));
            if topology.is_added(Node::Consumer(i)) {
                pending = Some(Pending::Stream(sink));
                continue;
            }
            let handle = pipeline.add_consumer_named(name, sink);
            sinks.insert(Node::Consumer(i), SinkRef::Stream(handle));
            continue;
        }
        if let Some(supervisor) = plan.supervisor {
            // Added as a value, with no restart policy (see `Topology::plan_supervisors`).
            let job = Job {
                consumer: i,
                plan: supervisor,
                failed: Arc::default(),
                ledger: ledger.clone(),
            };
            let mut stage = ConsumerSupervisor::new(job).max_restarts(u32::MAX);
            if supervisor.transient {
                stage = stage.transient();
            }
            if let Some((max, min)) = supervisor.options {
                stage = stage.max_demand(max).min_demand(min);
            }
            if topology.is_added(Node::Consumer(i)) {
                pending = Some(Pending::Supervisor(stage));
                continue;
            }
            let handle = pipeline.add_consumer_named(name, stage);
            sinks.insert(Node::Consumer(i), SinkRef::Supervisor(handle));
            continue;
        }
        let progress = Arc::default();
        let (plan, stage, ledger) = (plan.clone(), name.clone(), ledger.clone());
        let ask_now = AskNowSender::default();
        let asker = ask_now.clone();
        let seed = topology.seed ^ ((i as u64 + 1) << 48);
        let make = move || {
            let fuse = Fuse::new(stage.clone(), plan.strike, &ledger, &progress, false);
            let manual = plan.manual.map(|plan| Manual {
                plan,
                ask_now: asker.clone(),
                askers: HashMap::new(),
                from: None,
                ticking: false,
                rng: Rng::new(seed ^ fuse.generation as u64),
            });
            Sink {
                yield_every: plan.yield_every,
                fuse,
                manual,
            }
        };
        if topology.is_added(Node::Consumer(i)) {
            // No restart policy (see `Topology::plan_add`).
            pending = Some(Pending::Consumer(make(), ask_now));
            continue;
        }
        let handle = match topology.consumers[i].policy {
            Some(policy) => {
                let handle = pipeline.add_consumer_with_as(Some(name), make);
                pipeline.set_restart(&handle, policy.policy());
                handle
            }
            None => pipeline.add_consumer_named(name, make()),
        };
        let me = handle.clone();
        let _ = ask_now.set(Box::new(move || drop(me.info(AskNow))));
        sinks.insert(Node::Consumer(i), SinkRef::Consumer(handle));
    }
    for edge in &topology.edges {
        if topology.is_added(edge.from) || topology.is_added(edge.to) {
            // Subscribed once the stage is added.
            continue;
        }
        let options = edge.options(topology);
        let p = &mut pipeline;
        let selector = (edge.selector, routers.get(&edge.from).cloned());
        with_refs!(&sources[&edge.from], &sinks[&edge.to], |from, to| {
            wire(p, from, to, options, selector)
        });
    }
    for (tag, marks) in marks_to.iter().enumerate() {
        let mut marks = marks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for i in topology.marked_by(tag) {
            if let Some(SinkRef::Consumer(consumer)) = sinks.get(&Node::Consumer(i)) {
                marks.push(consumer.clone());
            }
        }
    }
    Built {
        pipeline,
        never,
        feeders,
        readers,
        sources,
        sinks,
        pending,
    }
}

/// Runs one topology on a runtime of its flavor within [`time_bound`] and checks what it did; the
/// error says what went wrong.
fn run_one(topology: &Topology) -> Result<(), String> {
    let runtime = match topology.flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    }
    .enable_all()
    .build()
    .map_err(|error| format!("no runtime: {error}"))?;
    runtime.block_on(run_within_bound(topology))
}

async fn run_within_bound(topology: &Topology) -> Result<(), String> {
    let ledger = Shared::default();
    let Built {
        mut pipeline,
        never,
        feeders,
        readers,
        mut sources,
        mut sinks,
        pending,
    } = build(topology, &ledger);
    let bound = time_bound();
    let mut ends = Vec::new();
    // Through the builder for a run that ends by itself; through the handle, as it starts, for one
    // started in the background.
    let mut dismissals = match topology.shutdown_after {
        None => dismissed_by_builder(topology, &mut pipeline, &sources, &sinks),
        Some(_) => Vec::new(),
    };
    let result = match topology.shutdown_after {
        None => tokio::time::timeout(bound, pipeline.run()).await,
        Some(yields) => {
            let running = pipeline.start();
            ends = ends_asked(&running, &sources, &sinks);
            dismissals = dismissals_asked(topology, &running, &sources, &sinks);
            let acted = async {
                if let Some(action) = topology.action {
                    let refs = (&sources, &sinks);
                    act(topology, action, &running, refs, &ledger).await?;
                }
                if let (Some(added), Some(pending)) = (topology.added, pending) {
                    let refs = (&mut sources, &mut sinks);
                    add(topology, added, pending, &running, refs, &ledger).await?;
                }
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
                Ok(())
            };
            match tokio::time::timeout(bound, acted).await {
                Ok(Err(failure)) => return Err(failure),
                Ok(Ok(())) => {}
                Err(_) => {
                    // Which stages were still running, if the pipeline answers at all.
                    let finished = running.is_finished();
                    let aborted = tokio::time::timeout(Duration::from_secs(1), running.abort());
                    let report = match aborted.await {
                        Ok(Ok(report)) => format!("{report:?}"),
                        Ok(Err(error)) => format!("{error:?}"),
                        Err(_) => "no answer to an abort either".to_owned(),
                    };
                    let ledger = lock(&ledger);
                    return Err(format!(
                        "hang: no end within {bound:?}, {}; told {:?}; cancelled {:?}, \
                         replaced {:?}, cancelled by their consumers {:?}, made {:?}; faults \
                         struck: {:?}; refused a message as Ended, then made again: {:?}; ended \
                         by then: {finished}, aborted: {report}",
                        ledger.phase,
                        ledger.told,
                        ledger.cancelled,
                        ledger.replaced,
                        ledger.self_cancelled,
                        ledger.made,
                        ledger.struck(),
                        ledger.remade_after_ended()
                    ));
                }
            }
            if topology.abort {
                lock(&ledger).phase = "aborting".to_owned();
                tokio::time::timeout(bound, running.abort()).await
            } else if topology.by_handle {
                lock(&ledger).phase = "shutting down through a handle".to_owned();
                // Asked twice, from another task: the second changes nothing.
                // (A request finding the run ended on its own is refused, `NotRunning`: no failure.)
                let handle = running.shutdown_handle();
                let asked = tokio::spawn(async move {
                    let _ = handle.shutdown();
                    tokio::task::yield_now().await;
                    let _ = handle.shutdown();
                });
                let result = tokio::time::timeout(bound, running).await;
                if let Err(error) = asked.await {
                    return Err(format!("the task asking for a shutdown: {error}"));
                }
                result
            } else {
                lock(&ledger).phase = "shutting down".to_owned();
                // Within the bound, so that a hang names the stages still busy.
                let shutdown = running.shutdown_within(bound);
                let result = tokio::time::timeout(2 * bound, shutdown).await;
                if let Ok(Err(PipelineError::ShutdownTimeout { busy, report })) = &result {
                    let ledger = lock(&ledger);
                    return Err(format!(
                        "hang: the shutdown did not end within {bound:?}, busy: {busy:?}; told \
                         {:?}; faults struck: {:?}; the report then: {report:?}",
                        ledger.told,
                        ledger.struck()
                    ));
                }
                result
            }
        }
    };
    drop(never);
    let result = result.map_err(|_| {
        let ledger = lock(&ledger);
        format!(
            "hang: no end within {bound:?}, {}; told {:?}; faults struck: {:?}; refused a \
             message as Ended, then made again: {:?}",
            ledger.phase,
            ledger.told,
            ledger.struck(),
            ledger.remade_after_ended()
        )
    })?;
    check_ends(&result, ends).await?;
    let dismissed = dismissals_taken(dismissals).await?;
    // The pipeline has ended, and dropped the channels' receivers: the feeders end.
    for feeder in feeders {
        match tokio::time::timeout(bound, feeder).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("a channel feeder failed: {error}")),
            Err(_) => {
                return Err(format!(
                    "hang: a channel feeder still runs {bound:?} after the run ended"
                ))
            }
        }
    }
    // And its `to_stream` consumers have ended: their streams end.
    for reader in readers {
        match tokio::time::timeout(bound, reader).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(format!("a stream reader failed: {error}")),
            Err(_) => {
                return Err(format!(
                    "hang: a stream reader still waits {bound:?} after the run ended"
                ))
            }
        }
    }
    let mut ledger = std::mem::take(&mut *lock(&ledger));
    ledger.dismissed = dismissed;
    check(topology, &result, &mut ledger)
}

/// A failure's dismissal, asked for through the handle: the stage's name, and the answer.
type Dismissal = (
    String,
    Pin<Box<dyn Future<Output = Result<(), PipelineError>> + Send>>,
);

/// `$body` with `$s` the reference of each built stage whose failure its plan dismisses
/// ([`ProducerPlan::dismissed`] and its siblings'), whatever its type.
macro_rules! for_each_dismissed {
    ($topology:expr, $sources:expr, $sinks:expr, |$s:ident| $body:expr) => {
        let nodes = (0..$topology.producers.len())
            .map(Node::Producer)
            .chain((0..$topology.middles.len()).map(Node::Middle))
            .chain((0..$topology.consumers.len()).map(Node::Consumer));
        for node in nodes.filter(|&node| $topology.dismissed(node)) {
            match ($sources.get(&node), $sinks.get(&node)) {
                (Some(SourceRef::Producer($s)), _) => $body,
                (Some(SourceRef::Channel($s)), _) => $body,
                (Some(SourceRef::Stream($s)), _) => $body,
                (Some(SourceRef::Middle($s)), _) | (None, Some(SinkRef::Middle($s))) => $body,
                (None, Some(SinkRef::Consumer($s))) => $body,
                (None, Some(SinkRef::Stream($s))) => $body,
                (None, Some(SinkRef::Supervisor($s))) => $body,
                (None, None) => {}
            }
        }
    };
}

/// Dismisses, through the handle and at once, the failure of each built stage whose plan says so.
fn dismissals_asked(
    topology: &Topology,
    running: &PipelineHandle,
    sources: &HashMap<Node, SourceRef>,
    sinks: &HashMap<Node, SinkRef>,
) -> Vec<Dismissal> {
    let mut asked: Vec<Dismissal> = Vec::new();
    for_each_dismissed!(topology, sources, sinks, |stage| {
        asked.push((stage.name(), Box::pin(running.dismiss_failure(stage))))
    });
    asked
}

/// Dismisses, through the builder, the failure of each built stage whose plan says so: each
/// counts, and is answered `Ok` at once.
fn dismissed_by_builder(
    topology: &Topology,
    pipeline: &mut Pipeline,
    sources: &HashMap<Node, SourceRef>,
    sinks: &HashMap<Node, SinkRef>,
) -> Vec<Dismissal> {
    let mut dismissed: Vec<Dismissal> = Vec::new();
    for_each_dismissed!(topology, sources, sinks, |stage| {
        pipeline.dismiss_failure(stage);
        dismissed.push((stage.name(), Box::pin(std::future::ready(Ok(())))))
    });
    dismissed
}

/// The stages whose dismissal the pipeline took: those answered `Ok`. One answered `NotRunning`
/// came after the pipeline had ended, and its failure, if any, fails the run.
async fn dismissals_taken(dismissals: Vec<Dismissal>) -> Result<HashSet<String>, String> {
    let mut taken = HashSet::new();
    for (name, dismissal) in dismissals {
        match dismissal.await {
            Ok(()) => drop(taken.insert(name)),
            Err(PipelineError::NotRunning) => {}
            Err(error) => return Err(format!("the dismissal of {name}'s failure: {error}")),
        }
    }
    Ok(taken)
}

/// The end of a stage, asked for through the handle.
type EndAsked = Pin<Box<dyn Future<Output = Result<StageReport, PipelineError>> + Send>>;

/// Asks the running pipeline for the end of each of its built stages, at once.
fn ends_asked(
    running: &PipelineHandle,
    sources: &HashMap<Node, SourceRef>,
    sinks: &HashMap<Node, SinkRef>,
) -> Vec<EndAsked> {
    let mut asked = HashSet::new();
    let mut ends: Vec<EndAsked> = Vec::new();
    let mut ask = |name: String, end: EndAsked| {
        if asked.insert(name) {
            ends.push(end);
        }
    };
    for source in sources.values() {
        match source {
            SourceRef::Producer(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
            SourceRef::Channel(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
            SourceRef::Stream(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
            SourceRef::Middle(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
        }
    }
    for sink in sinks.values() {
        match sink {
            SinkRef::Middle(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
            SinkRef::Consumer(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
            SinkRef::Stream(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
            SinkRef::Supervisor(stage) => ask(stage.name(), Box::pin(running.stage_ended(stage))),
        }
    }
    ends
}

/// Each end asked for at the start is the stage's entry in the run's report, even from a pipeline
/// that ended before the ask reached it (on workers); only one that never ran answers
/// `NotRunning`.
async fn check_ends(
    result: &Result<Report, PipelineError>,
    ends: Vec<EndAsked>,
) -> Result<(), String> {
    let report = match result {
        Ok(report) => Some(report),
        Err(error) => error.report(),
    };
    for end in ends {
        match end.await {
            Ok(ended) => {
                let entry = report.and_then(|report| report.stage(&ended.name));
                if report.is_some() && entry != Some(&ended) {
                    return Err(format!(
                        "stage_ended gave {ended:?}, the run's report {entry:?}"
                    ));
                }
            }
            Err(PipelineError::NotRunning) if report.is_none() => {}
            Err(error) => {
                return Err(format!(
                    "the end of a stage, asked for as the run started, gave {error:?}"
                ))
            }
        }
    }
    Ok(())
}

/// Does `action` through the handle of the running pipeline: cancels a subscription that a
/// producer was told of, or resubscribes its consumer to another stage upstream of it. The run may
/// be ending meanwhile: the subscription or a stage may have ended, or the pipeline; those answers
/// are a race lost, not a failure.
async fn act(
    topology: &Topology,
    action: Action,
    running: &PipelineHandle,
    (sources, sinks): (&HashMap<Node, SourceRef>, &HashMap<Node, SinkRef>),
    ledger: &Shared,
) -> Result<(), String> {
    let mut rng = Rng::new(topology.seed ^ 0xAC71_0000_0000);
    let subscribed = || -> Vec<Told> {
        let ledger = lock(ledger);
        ledger
            .told
            .iter()
            .filter(|t| t.cancel.is_none())
            .cloned()
            .collect()
    };
    // The producers are told of their subscriptions once their tasks run: wait for the first.
    // Channel producers are told nothing (they are not the test's), and one fed until a send fails
    // keeps the pipeline running: then the wait is bounded, and the action skipped if it ends
    // without one.
    lock(ledger).phase = "waiting for a subscription".to_owned();
    let endless = topology.producers.iter().any(|p| {
        matches!(
            p.source,
            Source::Channel { endless: true, .. } | Source::Stream { endless: true, .. }
        )
    });
    let mut waited = 0;
    while subscribed().is_empty() && !running.is_finished() && (!endless || waited < 10_000) {
        waited += 1;
        tokio::task::yield_now().await;
    }
    for _ in 0..action.after {
        tokio::task::yield_now().await;
    }
    let mut known = subscribed();
    if known.is_empty() {
        return Ok(());
    }
    // Half the time, one that took a partition, if there is one: rarer, and the trickiest.
    let partitioned = |told: &Told| {
        parse_node(&told.producer)
            .is_some_and(|node| matches!(topology.fan(node), Fan::Partition { .. }))
    };
    if known.iter().any(partitioned) && rng.chance(50) {
        known.retain(partitioned);
    }
    let chosen = &known[rng.range(0, known.len() - 1)];
    lock(ledger).phase = format!("acting on {chosen:?}");
    let (Some(from), Some(to)) = (parse_node(&chosen.producer), parse_node(&chosen.consumer))
    else {
        return Err(format!("act: unknown stages in {chosen:?}"));
    };
    let lost_race = |error: &PipelineError| {
        matches!(
            error,
            PipelineError::UnknownSubscription { .. }
                | PipelineError::StageEnded { .. }
                | PipelineError::NotRunning
                | PipelineError::ShuttingDown
        )
    };
    // Half the time, a broadcast's consumer first subscribes again, which is refused while its
    // subscription runs (GenStage's `:already_subscribed`), with or without a selector. (A
    // generator of its own, so that the other choices of each seed stay as they were.)
    let mut again = Rng::new(topology.seed ^ 0xD0B1_0000_0000);
    if topology.fan(from) == Fan::Broadcast && again.chance(50) {
        lock(ledger).phase = format!("subscribing {to} to {from} again, beside {chosen:?}");
        let r = running;
        let selected = again.chance(50);
        let made = with_refs!(&sources[&from], &sinks[&to], |p, c| {
            if selected {
                r.subscribe_selected(p, c, SubscribeOptions::new(), |_| true)
                    .await
            } else {
                r.subscribe(p, c).await
            }
        });
        let refused = match made {
            Err(PipelineError::InvalidDispatch {
                stage,
                error: DispatchSetupError::AlreadySubscribed { consumer },
            }) if stage == from.to_string() && consumer == to.to_string() => true,
            Err(error) if lost_race(&error) => false,
            made => {
                return Err(format!(
                    "act: {to} subscribed to {from} again, which broadcasts, beside {chosen:?}: \
                     {made:?}, not refused as already subscribed"
                ))
            }
        };
        tally(&DUPLICATES, &[true, refused]);
    }
    let cancel = || async {
        match running.cancel(chosen.tag).await {
            Ok(()) => {
                let mut ledger = lock(ledger);
                ledger.phase = "cancelled".to_owned();
                ledger.cancelled.insert(chosen.tag);
                Ok(true)
            }
            Err(error) if lost_race(&error) => {
                lock(ledger).phase = format!("cancelling {chosen:?}: {error}");
                Ok(false)
            }
            Err(error) => Err(format!("act: cancel of {chosen:?} failed: {error}")),
        }
    };
    // Another stage upstream of the consumer, if there is one: a producer, or an earlier
    // producer_consumer (a later one could make a cycle); not one that partitions (its partitions
    // are all taken), nor one that broadcasts to the consumer already (the consumer would get its
    // events twice, once on each subscription, as it should).
    let before = match to {
        Node::Middle(i) => i,
        _ => topology.middles.len(),
    };
    let feeds = |n: Node| topology.edges.iter().any(|e| e.from == n && e.to == to);
    let upstream: Vec<Node> = (0..topology.producers.len())
        .map(Node::Producer)
        .chain((0..before).map(Node::Middle))
        .filter(|&n| n != from)
        .filter(|&n| match topology.fan(n) {
            Fan::Demand => true,
            Fan::Broadcast => !feeds(n),
            Fan::Partition { .. } => false,
        })
        .collect();
    if !action.resubscribe || upstream.is_empty() && topology.fan(from) == Fan::Broadcast {
        // Half the time, the consumer cancels it itself, where it can be told to.
        let own = match &sinks[&to] {
            SinkRef::Middle(middle) if rng.chance(50) => Some(middle.call(CancelOwn(chosen.tag))),
            SinkRef::Consumer(sink) if rng.chance(50) => Some(sink.call(CancelOwn(chosen.tag))),
            _ => None,
        };
        let Some(own) = own else {
            return cancel().await.map(drop);
        };
        lock(ledger).phase = format!("telling {to} to cancel {chosen:?}");
        return match own.await {
            Ok(Ok(())) => {
                let mut ledger = lock(ledger);
                ledger.phase = "told to cancel".to_owned();
                ledger.self_cancelled.insert(chosen.tag);
                Ok(())
            }
            // Ended since, or the consumer has (or is failing, or its pipeline shutting down).
            Ok(Err(AskError::Unknown { .. })) | Err(_) => Ok(()),
            Ok(Err(error)) => Err(format!("act: {to} cannot cancel {chosen:?}: {error}")),
        };
    }
    // The partition the subscription took, which the consumer takes again.
    let partition = topology
        .edges
        .iter()
        .find(|e| e.from == from && e.to == to)
        .and_then(|e| e.partition);
    let target = if upstream.is_empty() || partition.is_some() {
        from
    } else {
        upstream[rng.range(0, upstream.len() - 1)]
    };
    let edge = EdgePlan::generate(&mut rng, target, to);
    let mut options = SubscribeOptions::new()
        .max_demand(edge.max_demand)
        .min_demand(edge.min_demand)
        .cancel(edge.cancel);
    let old = chosen.tag;
    let r = running;
    let made = if let Some(partition) = partition {
        // Cancelled, then taken again by a new subscription: the partition is free in between.
        if !cancel().await? {
            return Ok(());
        }
        lock(ledger).phase = format!("taking partition {partition} of {from} again for {to}");
        options = options.partition(partition);
        with_refs!(&sources[&target], &sinks[&to], |p, c| {
            r.subscribe_with(p, c, options).await
        })
    } else {
        lock(ledger).phase = format!("resubscribing {chosen:?} to {target}");
        with_refs!(&sources[&target], &sinks[&to], |p, c| {
            r.resubscribe(old, p, c, options).await
        })
    };
    match made {
        Ok(new) => {
            let mut ledger = lock(ledger);
            ledger.phase = "resubscribed".to_owned();
            if partition.is_none() {
                ledger.replaced.insert(old);
            }
            let names = (target.to_string(), to.to_string());
            ledger.made.insert(new, names);
            Ok(())
        }
        Err(error) if lost_race(&error) => {
            lock(ledger).phase = format!("resubscribing {chosen:?} to {target}: {error}");
            Ok(())
        }
        Err(error) => Err(format!(
            "act: resubscribing {chosen:?} to {target} failed: {error}"
        )),
    }
}

/// Adds the stage of `added` through the handle of the running pipeline, after its yields, then
/// subscribes it along its edges, in the topology's order. The run may be ending meanwhile: a
/// refusal because the pipeline or the stage at the other end of an edge has ended is a race
/// lost, not a failure (the stage is then left without that subscription, or not added at all).
async fn add(
    topology: &Topology,
    added: Added,
    pending: Pending,
    running: &PipelineHandle,
    (sources, sinks): (&mut HashMap<Node, SourceRef>, &mut HashMap<Node, SinkRef>),
    ledger: &Shared,
) -> Result<(), String> {
    for _ in 0..added.after {
        tokio::task::yield_now().await;
    }
    let node = added.node;
    let name = node.to_string();
    lock(ledger).phase = format!("adding {node}");
    let lost_race = |error: &PipelineError| {
        matches!(
            error,
            PipelineError::StageEnded { .. } | PipelineError::NotRunning
        )
    };
    let made = match pending {
        Pending::Producer(stage, accumulate) => {
            running.add_producer_named(name, stage).await.map(|handle| {
                if let Some(yields) = accumulate {
                    tokio::spawn(forward_after(yields, handle.clone(), None));
                }
                if let Node::Producer(tag) = node {
                    let plan = &topology.producers[tag];
                    if plan.source == Source::Messages {
                        let rng = Rng::new(topology.seed ^ ((tag as u64 + 1) << 32));
                        tokio::spawn(cast_feed(rng, plan.events, handle.clone(), None));
                    }
                }
                sources.insert(node, SourceRef::Producer(handle));
            })
        }
        Pending::Middle(stage, ask_now) => running
            .add_producer_consumer_named(name, stage)
            .await
            .map(|handle| {
                let me = handle.clone();
                let _ = ask_now.set(Box::new(move || drop(me.info(AskNow))));
                sources.insert(node, SourceRef::Middle(handle.clone()));
                sinks.insert(node, SinkRef::Middle(handle));
            }),
        Pending::Consumer(stage, ask_now) => {
            running.add_consumer_named(name, stage).await.map(|handle| {
                let me = handle.clone();
                let _ = ask_now.set(Box::new(move || drop(me.info(AskNow))));
                sinks.insert(node, SinkRef::Consumer(handle));
            })
        }
        Pending::Stream(stage) => running
            .add_consumer_named(name, stage)
            .await
            .map(|handle| drop(sinks.insert(node, SinkRef::Stream(handle)))),
        Pending::Supervisor(stage) => running
            .add_consumer_named(name, stage)
            .await
            .map(|handle| drop(sinks.insert(node, SinkRef::Supervisor(handle)))),
    };
    match made {
        Ok(()) => lock(ledger).added = Some(0),
        Err(error) if lost_race(&error) => {
            lock(ledger).phase = format!("adding {node}: {error}");
            return Ok(());
        }
        Err(error) => return Err(format!("add: adding {node} failed: {error}")),
    }
    let edges = topology
        .edges
        .iter()
        .filter(|e| !added.alone && (e.from == node || e.to == node));
    for edge in edges {
        let (from, to) = (edge.from, edge.to);
        lock(ledger).phase = format!("subscribing {to} to {from}");
        let options = edge.options(topology);
        let r = running;
        let made = with_refs!(&sources[&from], &sinks[&to], |p, c| {
            r.subscribe_with(p, c, options).await
        });
        match made {
            Ok(tag) => {
                let mut ledger = lock(ledger);
                ledger.phase = format!("subscribed {to} to {from}");
                ledger.made.insert(tag, (from.to_string(), to.to_string()));
                *ledger.added.get_or_insert(0) += 1;
            }
            Err(error) if lost_race(&error) => {
                lock(ledger).phase = format!("subscribing {to} to {from}: {error}");
            }
            Err(error) => return Err(format!("add: subscribing {to} to {from} failed: {error}")),
        }
    }
    Ok(())
}

/// Whether `stage` is a producer or producer_consumer added while the run went on that was left
/// with no consumer to deliver to, and ended so: a graceful shutdown found it never subscribed
/// to (none of its subscriptions to consumers made: `ShutDown`), or it was subscribed to
/// consumers that were ending (a stage ending takes a subscription and ends it as it ends), and
/// each subscription it was told of ended before it stopped (`Cancelled`, as any such stage
/// whose consumers have all left; `ShutDown` at the shutdown for one that waits for
/// consumers).
fn added_alone(topology: &Topology, ledger: &Ledger, stage: &genstage::StageReport) -> bool {
    let name = stage.name.as_str();
    let Some(node @ (Node::Producer(_) | Node::Middle(_))) = parse_node(name) else {
        return false;
    };
    let mine = || ledger.told.iter().filter(|t| t.producer == name);
    let all_left = || {
        mine()
            .filter(|t| t.cancel.is_none())
            .all(|t| mine().any(|c| c.tag == t.tag && c.cancel.is_some()))
    };
    let fed = ledger.made.values().any(|(from, _)| from == name);
    let waits = topology.waits(node);
    topology.is_added(node)
        && match stage.status {
            // One that waits for consumers stays up when they have all left, until then.
            StageStatus::ShutDown => (!fed || waits && all_left()) && !topology.abort,
            StageStatus::Cancelled { cause: None } => all_left(),
            _ => false,
        }
}

/// Whether `name` is the stage of [`Topology::added`], and the run ended before it was added: it
/// is not in the report.
fn never_added(topology: &Topology, ledger: &Ledger, name: &str) -> bool {
    parse_node(name).is_some_and(|node| topology.is_added(node)) && ledger.added.is_none()
}

/// Fails with `message` unless `condition` holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

fn check(
    topology: &Topology,
    result: &Result<Report, PipelineError>,
    ledger: &mut Ledger,
) -> Result<(), String> {
    ensure!(
        ledger.duplicates.is_empty(),
        "events handled twice: {:?}",
        &ledger.duplicates[..ledger.duplicates.len().min(10)]
    );
    let report = match result {
        Ok(report) => report,
        Err(error) => error
            .report()
            .ok_or_else(|| format!("run() failed without a report: {error}"))?,
    };
    resolve_routing(report, ledger);
    let ledger = &*ledger;
    // What each stage emitted; for a channel producer, what its channel accepted.
    let emitted_by = |stage: &str| ledger.emitted.get(stage).copied().unwrap_or(0);
    let mut emitted: HashMap<usize, u64> = HashMap::new();
    for (event, &handlers) in &ledger.handlers {
        let emitted = *emitted.entry(event.tag).or_insert_with(|| {
            emitted_by(&match event.tag.checked_sub(MIDDLE_TAG) {
                Some(middle) => own_events(middle),
                None => format!("P{}", event.tag),
            })
        });
        ensure!(
            event.seq < emitted,
            "{event:?} handled by {:?} but only {emitted} were emitted",
            Node::named(handlers)
        );
    }
    // The stages that stopped for good: their fault struck once more than their policy restarts
    // them after (a permanent producer's ends count too: see `check_permanent`).
    let mut fell: HashMap<String, Fault> = HashMap::new();
    let mut ended_for_good: HashSet<String> = HashSet::new();
    for i in 0..topology.producers.len() {
        let name = Node::Producer(i).to_string();
        match check_permanent(topology, ledger, report, &name)? {
            Some(Some(fault)) => drop(fell.insert(name, fault)),
            Some(None) => drop(ended_for_good.insert(name)),
            None => {}
        }
    }
    for (name, blows) in &ledger.blows {
        let policy = topology.policy_of(name);
        if is_permanent_producer(name, policy) {
            continue;
        }
        let allowed = PolicyPlan::allowed(policy);
        ensure!(
            blows.len() <= allowed + 1,
            "{name}{} failed {} times, though it stops for good at failure {}",
            PolicyText(policy),
            blows.len(),
            allowed + 1
        );
        if let Some(last) = blows.last().filter(|_| blows.len() > allowed) {
            fell.insert(name.clone(), last.fault);
        }
    }
    let fell_any = !fell.is_empty();
    if let Some(Added { node, .. }) = topology.added {
        let name = node.to_string();
        ensure!(
            report.stage(&name).is_some() != never_added(topology, ledger, &name),
            "{name}, added while the run went on ({:?}), is {}in the report",
            ledger.added,
            if report.stage(&name).is_some() {
                ""
            } else {
                "not "
            }
        );
    }
    count_routing(topology, ledger, &fell);
    count_waits(topology, report);
    // A subscription cancelled through the handle may leave a producer without consumers, which
    // stops with what it buffered: lost, without a fault. So may a `to_stream` consumer whose
    // stream the test dropped: it leaves, as if its subscriptions were cancelled.
    let dropped = |name: &str| matches!(parse_node(name), Some(Node::Consumer(i)) if ledger.streams_dropped.contains(&i));
    let acted = !ledger.cancelled.is_empty()
        || !ledger.replaced.is_empty()
        || !ledger.self_cancelled.is_empty()
        || !ledger.streams_dropped.is_empty();
    // The run fails for a stage that stopped for good, unless its failure was dismissed.
    let failing = |stage: &String| !ledger.dismissed.contains(stage);
    let fails = fell.keys().any(failing) || ended_for_good.iter().any(failing);
    match result {
        Ok(_) => ensure!(
            !fails,
            "{fell:?} stopped for their faults and {ended_for_good:?} at their restart limit \
             (struck: {:?}; dismissed: {:?}), but run() succeeded",
            ledger.struck(),
            ledger.dismissed
        ),
        Err(error) => {
            ensure!(
                fails,
                "no stage stopped for good but those dismissed, {:?} (struck: {:?}), but run() \
                 failed: {error}",
                ledger.dismissed,
                ledger.struck()
            );
            check_error(topology, ledger, report, &fell, &ended_for_good, error)?;
        }
    }
    tally(
        &DISMISSALS,
        &[
            !ledger.dismissed.is_empty(),
            fell.keys()
                .chain(&ended_for_good)
                .any(|s| ledger.dismissed.contains(s)),
            fell_any && !fails,
        ],
    );
    // A broadcasting stage's selectors are asked about its events only while their consumers are
    // subscribed: one that left early (its stream dropped, it stopped, a subscription cancelled or
    // replaced through the handle) takes its selector, and a sticky strike in it, away.
    let selector_left = |name: &str| {
        let Some(node) = parse_node(name) else {
            return false;
        };
        topology.fan(node) == Fan::Broadcast
            && (!ledger.cancelled.is_empty()
                || !ledger.replaced.is_empty()
                || topology
                    .edges
                    .iter()
                    .filter(|e| e.from == node && e.selector.is_some())
                    .any(|e| {
                        report
                            .stage(&e.to.to_string())
                            .is_some_and(|to| to.status != StageStatus::Finished)
                    }))
    };
    // Whether `name` is a producer added while the run went on, and each of its subscriptions that
    // it was told of ended before it did.
    let added_alone = |stage: &genstage::StageReport| added_alone(topology, ledger, stage);
    for stage in &report.stages {
        let name = &stage.name;
        let handled = ledger.handled.get(name).copied().unwrap_or(0);
        ensure!(
            stage.events_in == handled,
            "{name}: the report says {} events in, the stage handled {handled}",
            stage.events_in
        );
        ensure!(
            stage.emitted == emitted_by(name),
            "{name}: the report says {} emitted, the stage emitted {}; routing panics: {:?}",
            stage.emitted,
            emitted_by(name),
            ledger
                .blows(name)
                .iter()
                .filter_map(|b| b.routing.as_ref())
                .collect::<Vec<_>>()
        );
        ensure!(
            stage.lost == stage.losses.iter().map(|l| l.count).sum::<u64>(),
            "{name}: lost {} is not the sum of {:?}",
            stage.lost,
            stage.losses
        );
        check_restarts(
            topology,
            ledger,
            stage,
            fell.contains_key(name),
            selector_left(name),
        )?;
        // A stage restarted after its failure stops none of its neighbours.
        if let StageStatus::Cancelled { cause: Some(cause) } = &stage.status {
            ensure!(
                fell.contains_key(cause),
                "{name} ended {:?}, but {cause} did not stop for good; faults struck: {:?}",
                stage.status,
                ledger.struck()
            );
        }
        let expected = match fell.get(name) {
            Some(Fault::Error) => matches!(stage.status, StageStatus::Failed(_)),
            Some(Fault::Panic) => matches!(stage.status, StageStatus::Panicked(_)),
            None if fell_any => !stage.failed(),
            // A stage added while the run went on may have been left with no consumer.
            None if added_alone(stage) => true,
            // An abort stops the stages that had not finished, where they stand.
            None if topology.abort => {
                matches!(stage.status, StageStatus::Finished | StageStatus::Aborted)
                    || acted && stage.status == StageStatus::Cancelled { cause: None }
            }
            // A `to_stream` consumer whose stream was dropped stops, if it had not finished.
            None if dropped(name) => matches!(
                stage.status,
                StageStatus::Finished | StageStatus::Cancelled { cause: None }
            ),
            // A stage left without consumers by a cancel through the handle stops.
            None if acted && !name.starts_with('C') => matches!(
                stage.status,
                StageStatus::Finished
                    | StageStatus::ShutDown
                    | StageStatus::Cancelled { cause: None }
            ),
            // A shutdown ends producers that had not finished by themselves.
            None if topology.shutdown_after.is_some() && name.starts_with('P') => {
                matches!(stage.status, StageStatus::Finished | StageStatus::ShutDown)
            }
            None => stage.status == StageStatus::Finished,
        };
        ensure!(
            expected,
            "{name} ended {:?}; faults struck: {:?}, stopped for good: {fell:?}; added {:?}, \
             {}\n{report}",
            stage.status,
            ledger.struck(),
            ledger.added,
            ledger.phase
        );
    }
    check_failed_batches(topology, report, ledger, &fell)?;
    check_manual(topology, report, ledger)?;
    check_streams(topology, report, ledger, fell_any)?;
    check_supervisors(topology, report, ledger)?;
    count_restarts(report, result);
    // The batches that failed callbacks held, and were not handed again.
    // (And the events of the supervisors' temporary children that failed: see `check_supervisors`.)
    let failed_batches: u64 = report
        .stages
        .iter()
        .flat_map(|s| &s.losses)
        .filter(|l| matches!(l.reason, LossReason::FailedBatch | LossReason::ChildFailed))
        .map(|l| l.count)
        .sum();
    let totals = report.totals();
    ensure!(totals.balanced(), "unbalanced: {totals:?}\n{report}");
    ensure!(
        report.balanced(),
        "unbalanced edges: {:?}",
        report.unbalanced_edges().collect::<Vec<_>>()
    );
    let delivered: u64 = (0..topology.consumers.len())
        .filter_map(|i| report.stage(&format!("C{i}")))
        .map(|c| c.events_in)
        .sum();
    ensure!(
        delivered == ledger.delivered,
        "the consumers' reports say {delivered} events in, they handled {}",
        ledger.delivered
    );
    // An abort stops the stages where they stand: what they held is lost, for any reason.
    let aborted = topology.abort;
    if !fell_any && acted && !aborted {
        // Only what a stage left without consumers held when it stopped (its buffer, its input),
        // or what was sent to it after: the events sent on a cancelled subscription are handled.
        let left = |name: &str| {
            report
                .stage(name)
                .is_some_and(|s| s.status == StageStatus::Cancelled { cause: None })
        };
        // A stage that waits for consumers, left without them by such a cancel (of a subscription
        // to it, or of its consumer's, which then left or was itself left so), keeps its buffer
        // (and a producer_consumer its input) until the shutdown ends it: lost then, and only
        // then. Found from the consumers up (the stages form no cycle).
        let mut alone: HashSet<String> = HashSet::new();
        loop {
            let before = alone.len();
            for stage in &report.stages {
                let waits = parse_node(&stage.name).is_some_and(|node| topology.waits(node));
                if !waits || stage.status != StageStatus::ShutDown || alone.contains(&stage.name) {
                    continue;
                }
                let consumer_left = topology.edges.iter().any(|e| {
                    let to = e.to.to_string();
                    e.from.to_string() == stage.name
                        && (left(&to) || dropped(&to) || alone.contains(&to))
                });
                let cancelled = ledger.told.iter().any(|t| {
                    t.producer == stage.name
                        && (ledger.cancelled.contains(&t.tag)
                            || ledger.replaced.contains(&t.tag)
                            || ledger.self_cancelled.contains(&t.tag))
                });
                if consumer_left || cancelled {
                    alone.insert(stage.name.clone());
                }
            }
            if alone.len() == before {
                break;
            }
        }
        let alone = |name: &str| alone.contains(name);
        // A partition whose consumer was cancelled through the handle, or left (it stopped, left
        // without consumers by such a cancel, or was left alone so while it waited for
        // consumers), keeps its events for no one: lost when the producer ends, unless a consumer
        // takes the partition again.
        let stranded = |name: &str| {
            let Some(node) = parse_node(name) else {
                return false;
            };
            let consumer_left = topology.edges.iter().any(|e| {
                let to = e.to.to_string();
                e.from == node && (left(&to) || alone(&to))
            });
            let cancelled = ledger.told.iter().any(|t| {
                t.producer == name
                    && (ledger.cancelled.contains(&t.tag) || ledger.self_cancelled.contains(&t.tag))
            });
            matches!(topology.fan(node), Fan::Partition { .. }) && (consumer_left || cancelled)
        };
        for stage in &report.stages {
            let name = stage.name.as_str();
            for loss in &stage.losses {
                let allowed = match loss.reason {
                    LossReason::Buffered => {
                        left(name) || stranded(name) || alone(name) || added_alone(stage)
                    }
                    LossReason::Unhandled => left(name) || alone(name) || added_alone(stage),
                    LossReason::ConsumerGone => report
                        .stages
                        .iter()
                        .any(|s| left(&s.name) || alone(&s.name)),
                    // What a channel producer left without consumers held in its channel.
                    LossReason::NotEmitted => left(name),
                    // Counted exactly by `check_restarts`, and by `check_supervisors`.
                    LossReason::FailedBatch | LossReason::ChildFailed => true,
                    _ => false,
                };
                let acts: Vec<&Told> = ledger
                    .told
                    .iter()
                    .filter(|t| {
                        ledger.cancelled.contains(&t.tag)
                            || ledger.replaced.contains(&t.tag)
                            || ledger.self_cancelled.contains(&t.tag)
                    })
                    .collect();
                ensure!(
                    allowed,
                    "{} lost {loss:?} without a fault ({:?}); acted on {acts:?}, made {:?}; {}",
                    stage.name,
                    stage.status,
                    ledger.made,
                    ledger.phase
                );
            }
        }
    }
    // A stage added while the run went on and left with no consumer (see `added_alone`) loses
    // what it held then (a producer what it was cast, a producer_consumer its input), as
    // `Buffered` or `Unhandled`; its producers lose what they sent it once it had ended (a
    // shutdown ends it at once), as `ConsumerGone`; nothing else is lost.
    let held = |stage: &genstage::StageReport| {
        lost_in(stage, LossReason::Buffered) + lost_in(stage, LossReason::Unhandled)
    };
    // Its producers: those told of a subscription to it, and those the test subscribed it to (a
    // `from_channel` or `from_stream` producer is told nothing).
    let sent_it = |added: &str| -> u64 {
        report
            .stages
            .iter()
            .filter(|p| {
                let feeds = |t: &Told| t.producer == p.name && t.consumer == added;
                let made = |(from, to): &(String, String)| *from == p.name && to == added;
                ledger.told.iter().any(feeds) || ledger.made.values().any(made)
            })
            .map(|p| lost_in(p, LossReason::ConsumerGone))
            .sum()
    };
    let added_lost = match topology
        .added
        .and_then(|a| report.stage(&a.node.to_string()))
    {
        Some(stage) if added_alone(stage) && !fell_any && !aborted => {
            held(stage) + sent_it(&stage.name)
        }
        _ => 0,
    };
    count_adds(topology, report, ledger, added_lost);
    if !fell_any {
        // Nothing lost but the batches of failed callbacks that were not handed again (and what
        // an added producer held with no consumer).
        if !acted && !aborted {
            ensure!(
                totals.lost == failed_batches + added_lost,
                "{} events lost, {failed_batches} of them in failed batches, {added_lost} with an \
                 added stage that had no consumer, and no stage stopped for a fault",
                totals.lost
            );
            ensure!(
                totals.handled + totals.discarded + failed_batches + added_lost == totals.emitted,
                "no stage stopped for a fault, yet not everything emitted was handled but the \
                 failed batches ({failed_batches}) and what was lost with an added stage that had \
                 no consumer ({added_lost}): {totals:?}"
            );
        }
        let from_producers: u64 = (0..topology.producers.len())
            .map(|tag| emitted_by(&format!("P{tag}")))
            .chain((0..topology.middles.len()).map(|i| emitted_by(&own_events(i))))
            .sum();
        // Each event of a producer ends once, but for the copies a broadcast made of it.
        let copies: u64 = report.stages.iter().map(|s| s.copies).sum();
        let ends = ledger.delivered + ledger.dropped.len() as u64;
        ensure!(
            from_producers + copies == ends + totals.discarded + totals.lost,
            "producers (and producer_consumers, of their own) emitted {from_producers} and \
             broadcasts copied {copies}, consumers got {} and producer_consumers dropped {}, {} \
             discarded, {} lost",
            ledger.delivered,
            ledger.dropped.len(),
            totals.discarded,
            totals.lost
        );
    }
    check_channels(topology, report, ledger, fell_any, acted)?;
    check_inits(
        topology,
        report,
        ledger,
        fell_any || aborted || result.is_err(),
    )?;
    check_order(ledger)?;
    let exact = !fell_any && !acted && !aborted && failed_batches == 0;
    check_fans(
        topology,
        report,
        ledger,
        exact,
        !fell_any && !acted && !aborted,
    )?;
    check_told(topology, ledger, &fell)?;
    check_confirms(ledger)
}

/// The last routing blow of each producer_consumer that had a batch pending (see
/// [`Routed::pending`]) and that no redelivery of the batch showed in hand (its stage stopped on
/// it, or does not redeliver): the runtime made the batch the failed one if the report's events in
/// leave it out (then the ledger is told so: [`Ledger::fail_pending`]), or lost the dispatch's
/// events; the checks that follow hold the report to what it chose.
fn resolve_routing(report: &Report, ledger: &mut Ledger) {
    let stages: Vec<String> = ledger.blows.keys().cloned().collect();
    for name in stages {
        let Some(stage) = report.stage(&name) else {
            continue;
        };
        let blows = ledger.blows(&name);
        let last = blows.iter().rposition(|b| {
            b.routing
                .as_ref()
                .is_some_and(|r| !r.in_hand && r.pending.is_some())
        });
        let Some(index) = last else {
            continue;
        };
        let batch = blows[index]
            .routing
            .as_ref()
            .and_then(|r| r.pending.as_ref())
            .map_or(0, |(batch, _)| batch.len() as u64);
        let handled = ledger.handled.get(&name).copied().unwrap_or(0);
        if batch > 0 && stage.events_in + batch == handled {
            ledger.fail_pending(&name, index);
        }
    }
}

/// How many of the runs so far had a routing panic, one that lost the events of its dispatch,
/// one that failed a producer_consumer's batch in hand, one whose batch was handed again, and one
/// that stopped its stage for good.
static ROUTING: [std::sync::atomic::AtomicU64; 5] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 5];

/// Runs that added a stage while they ran; of those, runs that added a producer (and, last, a
/// producer_consumer), runs whose added
/// stage emitted or handled events, runs that ended before the stage was added, or before it
/// had any of its subscriptions, and runs whose added producer lost what it held with no consumer.
static ADDS: [std::sync::atomic::AtomicU64; 6] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 6];

fn count_adds(topology: &Topology, report: &Report, ledger: &Ledger, alone_lost: u64) {
    let Some(Added { node, .. }) = topology.added else {
        return;
    };
    let busy = report
        .stage(&node.to_string())
        .is_some_and(|s| s.emitted > 0 || s.events_in > 0);
    let seen = [
        ledger.added.is_some(),
        ledger.added.is_some() && matches!(node, Node::Producer(_)),
        busy,
        ledger.added.unwrap_or(0) == 0,
        alone_lost > 0,
        ledger.added.is_some() && matches!(node, Node::Middle(_)),
    ];
    tally(&ADDS, &seen);
}

/// Runs with a producer or producer_consumer that waits for consumers; of those, runs where one
/// was shut down still holding events with no consumer to take them (lost, `Buffered` or
/// `Unhandled`, as it ended `ShutDown`).
static WAITS: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

fn count_waits(topology: &Topology, report: &Report) {
    let producers = topology.producers.iter().map(|p| p.waits);
    let middles = topology.middles.iter().map(|m| m.waits);
    let names = (0..topology.producers.len())
        .map(|i| format!("P{i}"))
        .chain((0..topology.middles.len()).map(|i| format!("M{i}")));
    let waiting: Vec<&genstage::StageReport> = producers
        .chain(middles)
        .zip(names)
        .filter(|&(waits, _)| waits)
        .filter_map(|(_, name)| report.stage(&name))
        .collect();
    let seen = [
        !waiting.is_empty(),
        waiting.iter().any(|s| {
            s.status == StageStatus::ShutDown
                && s.losses
                    .iter()
                    .any(|l| matches!(l.reason, LossReason::Buffered | LossReason::Unhandled))
        }),
    ];
    tally(&WAITS, &seen);
}

fn count_routing(topology: &Topology, ledger: &Ledger, fell: &HashMap<String, Fault>) {
    let routed = || {
        ledger
            .blows
            .iter()
            .flat_map(|(name, blows)| blows.iter().map(move |b| (name, b)))
            .filter_map(|(name, b)| Some((name, b.routing.as_ref()?)))
    };
    let seen = [
        routed().next().is_some(),
        routed().any(|(_, r)| !r.in_hand),
        routed().any(|(_, r)| r.in_hand),
        routed().any(|(name, r)| r.in_hand && PolicyPlan::redelivers(topology.policy_of(name))),
        fell.keys().any(|name| {
            ledger
                .blows(name)
                .last()
                .is_some_and(|b| b.routing.is_some())
        }),
    ];
    tally(&ROUTING, &seen);
}

/// Each value of the test's stages ran `init` once, before its other callbacks; the report counts
/// the values made again (`restarts`), so a stage ran it `restarts + 1` times. Where the run was
/// aborted or failed, a value made may have been stopped before it started: one fewer then.
fn check_inits(
    topology: &Topology,
    report: &Report,
    ledger: &Ledger,
    stopped: bool,
) -> Result<(), String> {
    ensure!(
        ledger.misordered.is_empty(),
        "{} callbacks before init, or init run twice, by one value: {:?}",
        ledger.misordered.len(),
        &ledger.misordered[..ledger.misordered.len().min(5)]
    );
    // A stage that decided to end may still fail on a message it accepted before, and be
    // restarted for it: only a restart for finishing is wrong after a refusal.
    let remade: Vec<String> = ledger
        .remade_after_ended()
        .into_iter()
        .filter(|name| {
            report
                .stage(name)
                .is_some_and(|stage| stage.failures.iter().all(|f| f == "finished"))
        })
        .collect();
    ensure!(
        remade.is_empty(),
        "{remade:?} refused a message as Ended, then were made again, having failed never: a \
         stage that is restarted when it finishes is not ending"
    );
    let producers = topology
        .producers
        .iter()
        .enumerate()
        .filter(|(_, plan)| !plan.source.is_foreign())
        .map(|(tag, _)| Node::Producer(tag));
    let middles = (0..topology.middles.len()).map(Node::Middle);
    let consumers = (0..topology.consumers.len())
        .filter(|&i| topology.consumers[i].stream.is_none())
        .filter(|&i| topology.consumers[i].supervisor.is_none())
        .map(Node::Consumer);
    for node in producers.chain(middles).chain(consumers) {
        let name = node.to_string();
        let Some(stage) = report.stage(&name) else {
            continue;
        };
        let inits = ledger.inits.get(&name).copied().unwrap_or(0);
        let values = stage.restarts + 1;
        ensure!(
            inits == values || stopped && inits + 1 == values,
            "{name} ran init {inits} times, but {values} values of it ran ({:?})",
            stage.status
        );
    }
    Ok(())
}

/// How many of the runs so far dismissed a stage's failure, had a dismissed stage stop for good,
/// and succeeded only because of dismissals (printed at the end).
static DISMISSALS: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];

/// How many of the runs so far had a broadcast's consumer subscribe again while its subscription
/// ran, and had it refused as already subscribed (the others lost a race with an end; printed at
/// the end).
static DUPLICATES: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

/// How many of the runs so far restarted a stage, redelivered events, reached a restart limit, and
/// named a poison event: printed at the end, so that a change that makes them rare shows.
static RESTARTS: [std::sync::atomic::AtomicU64; 4] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 4];

/// Counts a run in each of `counters` (one of the statics above or below) whose kind of chaos it
/// had, as `seen` says, in the same order.
fn tally<const N: usize>(counters: &[std::sync::atomic::AtomicU64; N], seen: &[bool; N]) {
    for (counter, &seen) in counters.iter().zip(seen) {
        if seen {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// What [`tally`] has counted in `counters` so far.
fn tallied<const N: usize>(counters: &[std::sync::atomic::AtomicU64; N]) -> [u64; N] {
    counters
        .each_ref()
        .map(|counter| counter.load(std::sync::atomic::Ordering::Relaxed))
}

fn count_restarts(report: &Report, result: &Result<Report, PipelineError>) {
    let limit = |poison: bool| matches!(result, Err(PipelineError::RestartLimit { poison: p, .. }) if !poison || p.is_some());
    let seen = [
        report.stages.iter().any(|s| s.restarts > 0),
        report.stages.iter().any(|s| s.redelivered > 0),
        limit(false),
        limit(true),
    ];
    tally(&RESTARTS, &seen);
}

/// How many of the runs so far had a channel producer, had one whose feeder was refused (a send
/// failed), had one that lost events it never emitted (`NotEmitted`), and were aborted.
static CHANNELS: [std::sync::atomic::AtomicU64; 4] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 4];

/// The [`Source::Channel`] producers against what their feeders saw: each feeder ended (it dropped
/// its sender, or a send failed and gave back the next event); the report counts as emitted each
/// event a `send` accepted, and none other; a producer loses only what a producer may (its buffer,
/// sends to consumers gone, and as `NotEmitted` the tail of its channel, which no stage got), and
/// nothing of its channel unless it stopped early, for a fault, an abort or its consumers leaving: a graceful
/// shutdown delivers what its channel held (nothing at all unless it stopped early or a consumer
/// of its left, after a cancel through the handle). A run that is not shut down and where no stage stopped for good
/// ends only once the feeders have sent all their events. Where no stage stopped for good and
/// nothing was done through the handle, each accepted event reached a stage the producer feeds,
/// but for those in a batch that stage failed on and those its buffer discarded.
fn check_channels(
    topology: &Topology,
    report: &Report,
    ledger: &Ledger,
    fell_any: bool,
    acted: bool,
) -> Result<(), String> {
    let mut seen = [false, false, false, topology.abort];
    for (tag, plan) in topology.producers.iter().enumerate() {
        let Source::Channel { endless, .. } = plan.source else {
            continue;
        };
        seen[0] = true;
        let name = Node::Producer(tag).to_string();
        let Some(stage) = report.stage(&name) else {
            if never_added(topology, ledger, &name) {
                continue;
            }
            return Err(format!("{name} is not in the report"));
        };
        let fed = ledger.fed.get(&tag).copied().unwrap_or_default();
        seen[1] |= fed.refused.is_some();
        ensure!(
            fed.dropped != fed.refused.is_some()
                && fed
                    .refused
                    .is_none_or(|back| back == Event::new(tag, fed.accepted)),
            "{name}'s feeder ended as {fed:?}: it drops its sender or is refused the event after \
             those accepted"
        );
        ensure!(
            stage.emitted == fed.accepted,
            "{name}: the report says {} emitted, its channel accepted {} ({fed:?})",
            stage.emitted,
            fed.accepted
        );
        let unemitted = lost_in(stage, LossReason::NotEmitted);
        seen[2] |= unemitted > 0;
        ensure!(
            stage.losses.iter().all(|l| matches!(
                l.reason,
                LossReason::NotEmitted | LossReason::Buffered | LossReason::ConsumerGone
            )) && unemitted <= fed.accepted,
            "{name} lost {:?}, its channel accepted {}",
            stage.losses,
            fed.accepted
        );
        // What it never emitted is what its channel held last: the tail of what it accepted.
        let emitted = stage.emitted - unemitted;
        let got = ledger
            .handlers
            .keys()
            .chain(ledger.partial.iter().map(|(_, event)| event))
            .find(|e| e.tag == tag && e.seq >= emitted);
        ensure!(
            got.is_none(),
            "{name} emitted {emitted} of the {} events its channel accepted ({unemitted} never), \
             yet a stage got {got:?}",
            fed.accepted
        );
        // It stopped early: a stage stopped for good, the run was aborted, or its consumers left
        // (a cancel through the handle).
        if fell_any || topology.abort || matches!(stage.status, StageStatus::Cancelled { .. }) {
            continue;
        }
        // A consumer of its may have left, after a cancel through the handle: then what it sent
        // there is lost (see `check`), but never what its channel held. So is what it sent a stage
        // added while the run went on and left with no consumer, once that had ended.
        let fed_added_alone = topology
            .added
            .and_then(|added| report.stage(&added.node.to_string()))
            .is_some_and(|added| {
                added_alone(topology, ledger, added)
                    && ledger
                        .made
                        .values()
                        .any(|(from, to)| *from == name && *to == added.name)
            });
        let sent_added = if fed_added_alone {
            lost_in(stage, LossReason::ConsumerGone)
        } else {
            0
        };
        ensure!(
            unemitted == 0 && (acted || stage.lost == sent_added),
            "{name} ended {:?} and lost {:?}, though no stage stopped for good and its consumers \
             stayed ({fed:?})",
            stage.status,
            stage.losses
        );
        if topology.shutdown_after.is_none() {
            ensure!(
                !endless && fed.dropped && fed.accepted == plan.events,
                "{name} ended {:?} before its feeder was done ({fed:?}, {} planned), and the run \
                 was not shut down",
                stage.status,
                plan.events
            );
        }
        if fell_any || acted {
            continue;
        }
        let node = Node::Producer(tag);
        let first_hop = topology
            .edges
            .iter()
            .filter(|e| e.from == node)
            .fold(0, |mask, e| mask | e.to.bit());
        let failed: HashSet<Event> = topology
            .edges
            .iter()
            .filter(|e| e.from == node)
            .flat_map(|e| ledger.blows(&e.to.to_string()))
            .filter(|b| b.in_events)
            .flat_map(|b| b.batch.iter().copied())
            .chain(
                ledger
                    .child_failures
                    .iter()
                    .filter(|&&(_, _, transient)| !transient)
                    .map(|&(_, event, _)| event),
            )
            .collect();
        let missing: Vec<Event> = (0..fed.accepted)
            .map(|seq| Event::new(tag, seq))
            .filter(|e| ledger.handlers.get(e).copied().unwrap_or(0) & first_hop == 0)
            .filter(|e| !failed.contains(e))
            .collect();
        // Or held by a stage added while the run went on, left with no consumer, which lost it,
        // or sent it once it had ended (`sent_added`).
        let held_alone: u64 = topology
            .edges
            .iter()
            .filter(|e| e.from == node && topology.is_added(e.to))
            .filter_map(|e| report.stage(&e.to.to_string()))
            .filter(|added| added_alone(topology, ledger, added))
            .map(|added| lost_in(added, LossReason::Unhandled))
            .sum();
        let missing_count = missing.len() as u64;
        ensure!(
            stage.discarded <= missing_count
                && missing_count <= stage.discarded + held_alone + sent_added,
            "{name} discarded {} events, yet {} of those its channel accepted reached none of its \
             consumers, nor a batch one failed on, nor an added stage that lost {held_alone} held \
             with no consumer and {sent_added} sent it once it had ended: {:?}",
            stage.discarded,
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    tally(&CHANNELS, &seen);
    Ok(())
}

/// Manual demand: `Context::ask` refused no ask on a manual subscription but for its end; each
/// batch of a stage with a manual plan was told its subscription by `batch_from`, and one told a
/// manual subscription held only events its producer emitted (with no action through the handle,
/// which may replace a subscription); no stage got more events on one than it had asked for (where
/// the test knows which subscription an event came on: one subscription per pair of stages, with
/// no action through the handle), nor, by the report, on any subscription (`excess`).
fn check_manual(topology: &Topology, report: &Report, ledger: &Ledger) -> Result<(), String> {
    ensure!(
        ledger.ask_errors.is_empty(),
        "asks refused: {:?}",
        ledger.ask_errors
    );
    ensure!(
        ledger.untold_batches.is_empty(),
        "batches handed to handle_events without batch_from, by stage: {:?}",
        ledger.untold_batches
    );
    ensure!(
        topology.action.is_some() || ledger.wrong_from.is_empty(),
        "events batch_from said came on a manual subscription to another stage (stage, producer, emitter): {:?}",
        ledger.wrong_from
    );
    ensure!(
        topology.action.is_some() || ledger.overruns.is_empty(),
        "manual subscriptions sent more than was asked on them (stage, producer, asked, got): {:?}",
        ledger.overruns
    );
    for stage in &report.stages {
        ensure!(
            stage.excess == 0,
            "{} received {} events in excess",
            stage.name,
            stage.excess
        );
    }
    let through_asker = ledger.asks.keys().any(|&(_, by)| by == "Asker");
    tally(&MANUAL, &[!ledger.asks.is_empty(), through_asker]);
    Ok(())
}

/// How many of the runs so far had a stage that asked on a manual subscription, and one that
/// asked through an [`Asker`].
static MANUAL: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

/// How many of the runs so far told a consumer to cancel one of its own subscriptions, and had
/// one end so (its producer was told `Cancelled`).
static OWN_CANCELS: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

/// How many of the runs so far had a from_stream producer, one whose stream panicked, a to_stream
/// consumer, one whose stream was dropped while it ran (it ended cancelled), and one that lost
/// events its stream did not yield.
static STREAMS: [std::sync::atomic::AtomicU64; 5] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 5];

/// The streams in and out. A [`Source::Stream`] producer emitted what its stream yielded (see
/// [`check`]) and lost only what a producer may: its buffer, and what it sent to consumers gone.
/// A `to_stream` consumer handled what its reader got (see [`check`]); it ends cancelled only if
/// its stream was dropped, and then (unless the run was aborted) it loses only the events it was
/// sent and did not pass on, [`Unhandled`](LossReason::Unhandled): its subscriptions balance
/// (`sent = handled + lost`). Where no stage stopped for good, a consumer whose stream was not
/// dropped lost nothing unless the run was aborted.
fn check_streams(
    topology: &Topology,
    report: &Report,
    ledger: &Ledger,
    fell_any: bool,
) -> Result<(), String> {
    let mut seen = [false; 5];
    for (tag, plan) in topology.producers.iter().enumerate() {
        if !plan.source.is_stream() {
            continue;
        }
        seen[0] = true;
        let name = Node::Producer(tag).to_string();
        seen[1] |= !ledger.blows(&name).is_empty();
        let Some(stage) = report.stage(&name) else {
            if never_added(topology, ledger, &name) {
                continue;
            }
            return Err(format!("{name} is not in the report"));
        };
        ensure!(
            stage
                .losses
                .iter()
                .all(|l| matches!(l.reason, LossReason::Buffered | LossReason::ConsumerGone)),
            "{name}, a from_stream producer, lost {:?}",
            stage.losses
        );
    }
    for (i, plan) in topology.consumers.iter().enumerate() {
        if plan.stream.is_none() {
            continue;
        }
        seen[2] = true;
        let name = Node::Consumer(i).to_string();
        let Some(stage) = report.stage(&name) else {
            if never_added(topology, ledger, &name) {
                continue;
            }
            return Err(format!("{name} is not in the report"));
        };
        let was_dropped = ledger.streams_dropped.contains(&i);
        let cut = stage.status == StageStatus::Cancelled { cause: None };
        seen[3] |= cut;
        seen[4] |= cut && stage.lost > 0;
        ensure!(
            !cut || was_dropped || topology.abort,
            "{name}, a to_stream consumer, ended {:?} though its stream was read to the end",
            stage.status
        );
        if topology.abort {
            continue;
        }
        if was_dropped {
            ensure!(
                stage
                    .losses
                    .iter()
                    .all(|l| l.reason == LossReason::Unhandled),
                "{name}, a to_stream consumer whose stream was dropped, lost {:?}",
                stage.losses
            );
        } else if !fell_any {
            ensure!(
                stage.lost == 0,
                "{name}, a to_stream consumer read to the end, lost {:?}",
                stage.losses
            );
        }
        let edges = report.edges.iter().filter(|e| e.consumer == name);
        let (sent, handled, lost) = edges.fold((0, 0, 0), |(s, h, l), e| {
            (s + e.sent, h + e.handled, l + e.lost)
        });
        ensure!(
            handled == stage.events_in && sent == handled + lost && stage.lost <= lost,
            "{name}, a to_stream consumer, handled {} and lost {}; its subscriptions sent it \
             {sent}, of which {handled} handled and {lost} lost",
            stage.events_in,
            stage.lost
        );
    }
    tally(&STREAMS, &seen);
    Ok(())
}

/// How many of the runs so far had a [`ConsumerSupervisor`], one whose temporary children lost
/// events, and one whose transient children were run again.
static SUPERVISORS: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];

/// The [`ConsumerSupervisor`]s: each lost exactly the events its temporary children failed on
/// (`ChildFailed`), none for its transient children (run again) unless it stopped early (then the
/// failures it took in as it stopped are not run again: `ChildFailed` too), and else only what it
/// held when it stopped early (`Unhandled`: its children aborted, their events never handled); its
/// handled events are those its children recorded (see [`check`]).
fn check_supervisors(topology: &Topology, report: &Report, ledger: &Ledger) -> Result<(), String> {
    let mut seen = [false; 3];
    for (i, plan) in topology.consumers.iter().enumerate() {
        let Some(supervisor) = plan.supervisor else {
            continue;
        };
        seen[0] = true;
        let name = Node::Consumer(i).to_string();
        let Some(stage) = report.stage(&name) else {
            if never_added(topology, ledger, &name) {
                continue;
            }
            return Err(format!("{name} is not in the report"));
        };
        let failures = ledger.child_failures.iter().filter(|(c, _, _)| *c == name);
        let (restarted, lost) =
            failures.fold((0, 0), |(r, l), &(_, _, transient)| match transient {
                true => (r + 1, l),
                false => (r, l + 1),
            });
        seen[1] |= lost > 0;
        seen[2] |= restarted > 0;
        let child_failed = lost_in(stage, LossReason::ChildFailed);
        let unhandled = lost_in(stage, LossReason::Unhandled);
        let finished = stage.status == StageStatus::Finished;
        let failed_right = match supervisor.transient {
            false => child_failed == lost,
            true => child_failed == 0 || !finished && child_failed <= restarted,
        };
        ensure!(
            failed_right && child_failed + unhandled == stage.lost && (unhandled == 0 || !finished),
            "{name}, a ConsumerSupervisor with {} children ({:?}), ended {:?} and lost {:?}; its \
             children failed on {lost} events lost and {restarted} run again",
            if supervisor.transient {
                "transient"
            } else {
                "temporary"
            },
            supervisor.fail,
            stage.status,
            stage.losses
        );
    }
    tally(&SUPERVISORS, &seen);
    Ok(())
}

/// The error names a stage that stopped for good, as its policy says: `StageFailed` or
/// `StagePanicked` for a temporary stage, `RestartLimit` for one that restarts, with its limit,
/// its failures and, where it redelivers and failed on the same event again, the poison event's
/// index.
fn check_error(
    topology: &Topology,
    ledger: &Ledger,
    report: &Report,
    fell: &HashMap<String, Fault>,
    ended_for_good: &HashSet<String>,
    error: &PipelineError,
) -> Result<(), String> {
    let named = |stage: &str| fell.get(stage).copied();
    let dismissed = |stage: &str| ledger.dismissed.contains(stage);
    let right = match error {
        PipelineError::StageFailed { stage, .. } => {
            named(stage) == Some(Fault::Error) && !PolicyPlan::restarts(topology.policy_of(stage))
        }
        PipelineError::StagePanicked { stage, .. } => {
            named(stage) == Some(Fault::Panic) && !PolicyPlan::restarts(topology.policy_of(stage))
        }
        PipelineError::RestartLimit {
            stage,
            max_restarts,
            failures,
            poison,
            ..
        } => {
            let blows = ledger.blows(stage);
            let policy = topology.policy_of(stage);
            let again = match named(stage) {
                Some(_) if PolicyPlan::redelivers(policy) => blows
                    .last()
                    .filter(|b| b.in_events)
                    .and_then(|b| handed_again_at(blows).or(b.again)),
                Some(_) => blows.last().and_then(|b| b.again),
                None => None,
            };
            (named(stage).is_some() || ended_for_good.contains(stage.as_str()))
                && PolicyPlan::restarts(policy)
                && policy.is_some_and(|p| p.max_restarts == *max_restarts)
                && report.stage(stage).is_some_and(|s| s.failures == *failures)
                && *poison == again
        }
        _ => false,
    };
    let stage = match error {
        PipelineError::StageFailed { stage, .. }
        | PipelineError::StagePanicked { stage, .. }
        | PipelineError::RestartLimit { stage, .. } => Some(stage.as_str()),
        _ => None,
    };
    ensure!(
        right && !stage.is_some_and(dismissed),
        "run() failed with {error:?}; stopped for good: {fell:?}, faults struck: {:?}, \
         dismissed: {:?}",
        ledger.struck(),
        ledger.dismissed
    );
    Ok(())
}

/// The events `stage` lost for `reason`.
fn lost_in(stage: &genstage::StageReport, reason: LossReason) -> u64 {
    stage
        .losses
        .iter()
        .filter(|l| l.reason == reason)
        .map(|l| l.count)
        .sum()
}

fn is_permanent_producer(name: &str, policy: Option<PolicyPlan>) -> bool {
    name.starts_with('P') && policy.is_some_and(|p| p.restart == Restart::Permanent)
}

/// A permanent producer is restarted after it finishes on its own too, within the same limit: its
/// report's failures are, in order, the faults that struck it and its ends (`finished`), each end
/// one of the times it said its events were the last (once it has, each value made again says so
/// at its first call); it was restarted after each but the one it stopped on, if it stopped. Says
/// whether `name` is such a producer and stopped for good: on a fault (with it), or on an end.
fn check_permanent(
    topology: &Topology,
    ledger: &Ledger,
    report: &Report,
    name: &str,
) -> Result<Option<Option<Fault>>, String> {
    let policy = topology.policy_of(name);
    let Some(policy) = policy.filter(|_| is_permanent_producer(name, policy)) else {
        return Ok(None);
    };
    let Some(stage) = report.stage(name) else {
        return Err(format!("{name} is not in the report"));
    };
    let blows = ledger.blows(name);
    let ends = ledger.ends.get(name).copied().unwrap_or(0);
    let faults: Vec<&String> = stage
        .failures
        .iter()
        .filter(|f| f.as_str() != "finished")
        .collect();
    let finishes = stage.failures.len() - faults.len();
    let kinds_match = faults.len() == blows.len()
        && faults
            .iter()
            .zip(blows)
            .all(|(failure, blow)| match blow.fault {
                Fault::Error => failure.starts_with("failed: "),
                Fault::Panic => failure.starts_with("panicked: chaos: injected panic"),
            });
    // An abort may come between an end and the restart after it, or, once it stopped at its
    // limit, while it ends (then its status is `Aborted` too): only the second leaves it with as
    // many restarts as its limit allows.
    let aborted = stage.status == StageStatus::Aborted;
    let stopped = stage.failures.len() as u64 == stage.restarts + 1
        && (!aborted || stage.restarts == u64::from(policy.max_restarts));
    let right = kinds_match
        && finishes <= ends
        && (stopped
            || stage.failures.len() as u64 == stage.restarts
            || aborted && stage.failures.len() as u64 == stage.restarts + 1)
        && stage.restarts <= u64::from(policy.max_restarts)
        && stage.redelivered == 0
        && match ledger.lost_dispatches(name).len() as u64 {
            // A routing panic loses its dispatch, one event at least.
            0 => lost_in(stage, LossReason::FailedBatch) == 0,
            routed => lost_in(stage, LossReason::FailedBatch) >= routed,
        };
    ensure!(
        right,
        "{name}{}: the report says {} restarts and the failures {:?}; faults struck: {:?}, it \
         said {ends} times that its events were the last",
        PolicyText(Some(policy)),
        stage.restarts,
        stage.failures,
        blows.iter().map(|b| b.fault).collect::<Vec<_>>()
    );
    Ok(Some(match stage.failures.last() {
        Some(last) if stopped && last == "finished" => None,
        _ if stopped => blows.last().map(|b| b.fault),
        _ => return Ok(None),
    }))
}

/// A stage's restarts, failures and redelivered events, against the faults that struck it and
/// its policy: restarted after each but the one that stopped it for good; the batches its
/// `handle_events` failed on handed again (with redelivery, but the last if it stopped) or lost.
fn check_restarts(
    topology: &Topology,
    ledger: &Ledger,
    stage: &genstage::StageReport,
    fell: bool,
    selector_left: bool,
) -> Result<(), String> {
    let name = &stage.name;
    let policy = topology.policy_of(name);
    if is_permanent_producer(name, policy) {
        // See `check_permanent`.
        return Ok(());
    }
    let blows = ledger.blows(name);
    let restarts = blows.len().min(PolicyPlan::allowed(policy)) as u64;
    let failures = match PolicyPlan::restarts(policy) {
        true => blows.len().min(10),
        false => 0,
    };
    let redelivers = PolicyPlan::redelivers(policy);
    let (again, failed) = batch_losses(topology, ledger, name, fell);
    // The routing blows that lost their dispatch: at least the event each struck on.
    let dispatches = ledger.lost_dispatches(name).len() as u64;
    let failed_batch = lost_in(stage, LossReason::FailedBatch);
    let dispatched_lost = match dispatches {
        0 => failed_batch == failed,
        _ => failed_batch >= failed + dispatches,
    };
    ensure!(
        (stage.restarts, stage.failures.len(), stage.redelivered) == (restarts, failures, again)
            && dispatched_lost,
        "{name}{}: the report says {} restarts, {} failures, {} redelivered, {failed_batch} lost \
         in failed batches; {} faults struck it, which make {restarts}, {failures}, {again} and \
         {failed} (and {dispatches} routing panics that lost their dispatch, one event at \
         least each); its failures: {:?}",
        PolicyText(policy),
        stage.restarts,
        stage.failures.len(),
        stage.redelivered,
        blows.len(),
        stage.failures
    );
    // Its last failures (10 at most), as they struck.
    if PolicyPlan::restarts(policy) {
        let struck = blows[blows.len() - failures..].iter();
        for (failure, blow) in stage.failures.iter().zip(struck) {
            let kind = match blow.fault {
                Fault::Error => "failed: ",
                Fault::Panic => "panicked: chaos: injected panic",
            };
            ensure!(
                failure.starts_with(kind) && failure.contains(name.as_str()),
                "{name}: its failures {:?} are not the faults that struck it, {:?}",
                stage.failures,
                blows.iter().map(|b| b.fault).collect::<Vec<_>>()
            );
        }
    }
    // A sticky fault in `handle_events` with redelivery strikes again on its event each time the
    // event is handed again: the stage stops for good (unless it was stopped before, by a
    // producer's failure, its consumers leaving, or a shutdown while it waited for consumers). A routing panic that failed the batch in hand
    // is not that fault (see below).
    let poisoned = redelivers
        && blows
            .iter()
            .any(|b| b.in_events && b.routing.is_none() && !b.batch.is_empty())
        && topology.strike_of(name).is_some_and(|s| s.sticky);
    // Waiting for consumers, a shutdown found it with none (they had gone, taken down by a
    // producer's failure) and ended it with what it held, the events to hand again among them.
    let shut_down_alone = parse_node(name).is_some_and(|node| topology.waits(node))
        && stage.status == StageStatus::ShutDown
        && lost_in(stage, LossReason::Unhandled) + lost_in(stage, LossReason::Buffered) > 0;
    ensure!(
        !poisoned
            || fell
            || shut_down_alone
            || matches!(stage.status, StageStatus::Cancelled { .. }),
        "{name}{}: a sticky fault struck it in handle_events, yet it did not stop ({:?}); \
         {} faults struck",
        PolicyText(policy),
        stage.status,
        blows.len()
    );
    // So does a sticky routing panic that failed a batch in hand last: the source of the event it
    // struck on is handed again, and its output routed again (but not through a selector whose
    // consumer has left: `selector_left`; nor, as above, in a stage shut down alone). (One that
    // struck a dispatch with no batch in hand lost the event.)
    let poisoned = redelivers
        && blows
            .iter()
            .rev()
            .find_map(|b| b.routing.as_ref())
            .is_some_and(|r| r.in_hand)
        && topology.routing_of(name).is_some_and(|r| r.sticky);
    ensure!(
        !poisoned
            || fell
            || selector_left
            || shut_down_alone
            || matches!(stage.status, StageStatus::Cancelled { .. }),
        "{name}{}: a sticky routing panic failed its batch in hand, yet it did not stop ({:?}); \
         {} faults struck",
        PolicyText(policy),
        stage.status,
        blows.len()
    );
    Ok(())
}

/// The events of the batches in hand when faults struck `name`, in `handle_events` or routing its
/// output: handed again (with redelivery, but the last if it stopped for good on it) or lost.
fn batch_losses(topology: &Topology, ledger: &Ledger, name: &str, fell: bool) -> (u64, u64) {
    let blows = ledger.blows(name);
    let redelivers = PolicyPlan::redelivers(topology.policy_of(name));
    let (mut again, mut failed) = (0, 0);
    for (i, blow) in blows.iter().enumerate().filter(|(_, b)| b.in_events) {
        let stopped_on_it = fell && i + 1 == blows.len();
        match redelivers && !stopped_on_it {
            true => again += blow.batch.len() as u64,
            false => failed += blow.batch.len() as u64,
        }
    }
    (again, failed)
}

/// Where the last fault that struck a stage that redelivers struck an event handed again alone:
/// its index in the batch it first came in, in which a fault struck before (the runtime hands
/// the events of a failed batch again one at a time).
fn handed_again_at(blows: &[Blow]) -> Option<usize> {
    let (last, before) = blows.split_last()?;
    let [event] = last.batch.as_slice() else {
        return None;
    };
    before
        .iter()
        .filter(|b| b.in_events)
        .find_map(|b| b.batch.iter().position(|e| e == event))
}

/// The events of the batches a stage's `handle_events` failed on: without redelivery, never
/// handled again (those the failed callback handled are in [`Ledger::partial`], not
/// [`Ledger::handlers`]); with it, each handled (once: the duplicates check sees to that) by the
/// time the stage finished, unless it stopped for good. So only the events a failed callback
/// handled before it failed are ever handled twice.
fn check_failed_batches(
    topology: &Topology,
    report: &Report,
    ledger: &Ledger,
    fell: &HashMap<String, Fault>,
) -> Result<(), String> {
    for (name, blows) in &ledger.blows {
        let bit = parse_node(name).map_or(0, Node::bit);
        let redelivers = PolicyPlan::redelivers(topology.policy_of(name));
        let finished = report
            .stage(name)
            .is_some_and(|s| s.status == StageStatus::Finished);
        let covered = redelivers && finished && !fell.contains_key(name);
        for blow in blows.iter().filter(|b| b.in_events) {
            for event in &blow.batch {
                let handled = ledger.handlers.get(event).is_some_and(|h| h & bit != 0);
                ensure!(
                    redelivers || !handled,
                    "{name} handled {event:?}, of a batch it failed on, without redelivery"
                );
                ensure!(
                    !covered || handled,
                    "{name} redelivers and finished, but never handled {event:?}, of a batch it \
                     failed on"
                );
            }
        }
    }
    for (name, event) in &ledger.partial {
        ensure!(
            ledger
                .blows(name)
                .iter()
                .any(|b| b.in_events && b.batch.contains(event)),
            "{name} handled {event:?} partially, in no batch it failed on"
        );
    }
    Ok(())
}

/// Each stage handled the events of one route (one producer, through the same producer_consumers)
/// in the order they were emitted.
fn check_order(ledger: &Ledger) -> Result<(), String> {
    for (stage, events) in &ledger.order {
        let mut last: HashMap<(usize, u32), u64> = HashMap::new();
        for event in events {
            let before = last.insert((event.tag, event.path), event.seq);
            ensure!(
                before.is_none_or(|seq| seq < event.seq),
                "{stage} handled {event:?} after seq {before:?} of the same route"
            );
        }
    }
    Ok(())
}

/// A subscription as [`check_fans`] sees it: its consumer's [`Node::bit`], its selector and its
/// partition.
type Taker = (u32, Option<Selector>, Option<usize>);

/// Who handled each event, against the dispatcher of the stage that emitted it last: one stage at
/// most, subscribed to it, for the demand dispatcher; the consumer of its partition only, and none
/// for a `None`, for a partition; any consumer whose selector accepts it, once, for a broadcast.
/// When `exact` (no fault struck, nothing was done through the handle), a broadcast's and a
/// partition's events reached every consumer they should have, the stage's report counts as
/// discarded those that went nowhere (unless its buffer may overflow), and as copies the rest.
/// When `clean` (no stage stopped for good, nothing was done through the handle, no abort), the
/// events a routing panic lost with its dispatch are one run of the stage's events, in the order
/// it emitted them, that holds the event it struck on, reached no consumer, and is as long as the
/// report says (see [`check_routed`]).
fn check_fans(
    topology: &Topology,
    report: &Report,
    ledger: &Ledger,
    exact: bool,
    clean: bool,
) -> Result<(), String> {
    let (bit, names) = (Node::bit, Node::named);
    // The subscriptions of each stage: `(consumer, selector, partition)`, those made through the
    // handle with the partition of the consumer's edge, which they take again.
    let mut consumers: HashMap<Node, Vec<Taker>> = HashMap::new();
    for edge in &topology.edges {
        let subs = consumers.entry(edge.from).or_default();
        subs.push((bit(edge.to), edge.selector, edge.partition));
    }
    for (from, to) in ledger.made.values() {
        let (Some(from), Some(to)) = (parse_node(from), parse_node(to)) else {
            return Err(format!(
                "made a subscription of unknown stages {to} to {from}"
            ));
        };
        let subs = consumers.entry(from).or_default();
        let partition = subs
            .iter()
            .find(|&&(consumer, _, _)| consumer == bit(to))
            .and_then(|&(_, _, partition)| partition);
        subs.push((bit(to), None, partition));
    }
    // The stages that may get `event` of `emitter`: for a partition or a broadcast, those that
    // should.
    let takers = |emitter: Node, event: &Event| -> u32 {
        let Some(subs) = consumers.get(&emitter) else {
            return 0;
        };
        let fan = topology.fan(emitter);
        let partition = fan.route(event);
        subs.iter()
            .filter(|&&(_, selector, p)| match fan {
                Fan::Demand => true,
                Fan::Broadcast => selector.is_none_or(|s| s.accepts(event)),
                Fan::Partition { .. } => p.is_some() && p == partition,
            })
            .fold(0, |mask, &(consumer, _, _)| mask | consumer)
    };
    let handlers = &ledger.handlers;
    for (event, &got) in handlers {
        let emitter = event.last_emitter();
        let takers = takers(emitter, event);
        let fan = topology.fan(emitter);
        ensure!(
            got & !takers == 0 && (fan == Fan::Broadcast || got.count_ones() <= 1),
            "{event:?} of {emitter} ({fan:?}) handled by {:?}, which may go only to {:?}{}",
            names(got),
            names(takers),
            match fan {
                Fan::Broadcast => "",
                _ => ", one of them",
            }
        );
    }
    if clean {
        check_routed(topology, report, ledger, &takers)?;
    }
    if !exact {
        return Ok(());
    }
    for (emitter, events) in &ledger.out {
        let Some(node) = parse_node(emitter) else {
            continue;
        };
        let fan = topology.fan(node);
        if fan == Fan::Demand {
            continue;
        }
        // A producer whose small buffer overflows discards some events before they are dispatched.
        let overflows = matches!(node, Node::Producer(i) if topology.producers[i].buffer.is_some());
        let (mut discarded, mut copies) = (0, 0);
        for event in events {
            let takers = takers(node, event);
            let got = handlers.get(event).copied().unwrap_or(0);
            ensure!(
                got == takers || overflows && got == 0,
                "{event:?} of {emitter} ({fan:?}) handled by {:?}, not by {:?}",
                names(got),
                names(takers)
            );
            match takers.count_ones() {
                0 => discarded += 1,
                n => copies += u64::from(n) - 1,
            }
        }
        let Some(stage) = report.stage(emitter) else {
            return Err(format!("{emitter} is not in the report"));
        };
        ensure!(
            overflows || (stage.discarded, stage.copies) == (discarded, copies),
            "{emitter} ({fan:?}): the report says {} discarded and {} copies, the consumers say \
             {discarded} and {copies}",
            stage.discarded,
            stage.copies
        );
    }
    Ok(())
}

/// A routing panic that lost its dispatch (not a batch in hand), in a run where nothing else loses
/// what a stage emitted but the batches its consumers failed on: the stage's events that reached
/// none of the consumers they were for (`takers`), but for those, are one run of its events in
/// the order it emitted them, which holds the event the panic struck on, and is no longer than
/// what the report counts as lost with it (`FailedBatch`, less the batches in hand its callbacks
/// failed on), which is no longer than the run of events around it that reached no consumer (the
/// dispatch may have held some that went to no one).
fn check_routed(
    topology: &Topology,
    report: &Report,
    ledger: &Ledger,
    takers: &dyn Fn(Node, &Event) -> u32,
) -> Result<(), String> {
    for name in ledger.blows.keys() {
        let [struck] = ledger.lost_dispatches(name)[..] else {
            continue;
        };
        let (Some(node), Some(stage)) = (parse_node(name), report.stage(name)) else {
            return Err(format!("{name} is not in the report"));
        };
        // A producer whose small buffer overflows discards some events before they are dispatched.
        if matches!(node, Node::Producer(i) if topology.producers[i].buffer.is_some()) {
            continue;
        }
        let (_, failed) = batch_losses(topology, ledger, name, false);
        let lost = lost_in(stage, LossReason::FailedBatch).saturating_sub(failed) as usize;
        let out = ledger.out.get(name).map_or(&[][..], Vec::as_slice);
        let failed_downstream: HashSet<Event> = topology
            .edges
            .iter()
            .filter(|e| e.from == node)
            .flat_map(|e| ledger.blows(&e.to.to_string()))
            .filter(|b| b.in_events)
            .flat_map(|b| b.batch.iter().copied())
            .chain(ledger.child_failures.iter().map(|&(_, event, _)| event))
            .collect();
        let reached =
            |e: &Event| ledger.handlers.get(e).copied().unwrap_or(0) & takers(node, e) != 0;
        let Some(at) = out.iter().position(|e| *e == struck) else {
            return Err(format!(
                "{name}'s routing panicked at {struck:?}, which it did not emit"
            ));
        };
        let missing = out.iter().enumerate().filter(|&(_, e)| {
            takers(node, e) != 0 && !reached(e) && !failed_downstream.contains(e)
        });
        let (lo, hi) = missing.fold((at, at), |(lo, hi), (i, _)| (lo.min(i), hi.max(i)));
        let delivered: Vec<&Event> = out[lo..=hi].iter().filter(|e| reached(e)).collect();
        let mut run = lo..hi + 1;
        while run.start > 0 && !reached(&out[run.start - 1]) {
            run.start -= 1;
        }
        while run.end < out.len() && !reached(&out[run.end]) {
            run.end += 1;
        }
        ensure!(
            delivered.is_empty() && hi + 1 - lo <= lost && lost <= run.len(),
            "{name}'s routing panicked at {struck:?} (its event {at}), and it lost {lost} events \
             with the dispatch; its events {lo}..={hi} reached no consumer ({:?} of them did), \
             those {:?} around them",
            &delivered[..delivered.len().min(5)],
            run
        );
    }
    Ok(())
}

/// The node named `name` (`P0`, `M1`, `C2`).
fn parse_node(name: &str) -> Option<Node> {
    let index = name.get(1..)?.parse().ok()?;
    match name.get(..1)? {
        "P" => Some(Node::Producer(index)),
        "M" => Some(Node::Middle(index)),
        "C" => Some(Node::Consumer(index)),
        _ => None,
    }
}

/// What the producers and producer_consumers were told of their consumers: each subscription once,
/// its cancel at most once and after it, with the reason the test knows.
fn check_told(
    topology: &Topology,
    ledger: &Ledger,
    fell: &HashMap<String, Fault>,
) -> Result<(), String> {
    let ended_by_consumer = ledger.told.iter().any(|t| {
        ledger.self_cancelled.contains(&t.tag) && t.cancel == Some(CancelReason::Cancelled)
    });
    tally(
        &OWN_CANCELS,
        &[!ledger.self_cancelled.is_empty(), ended_by_consumer],
    );
    let mut subscribed: HashMap<(&str, SubscriptionTag), &Told> = HashMap::new();
    let mut ended: HashSet<(&str, SubscriptionTag)> = HashSet::new();
    // Each value of a stage is told of each subscription once: the first when it is made, a value
    // made again after a failure of those still running then.
    let mut told_values: HashSet<(&str, SubscriptionTag, usize)> = HashSet::new();
    for told in &ledger.told {
        let key = (told.producer.as_str(), told.tag);
        let Some(reason) = &told.cancel else {
            ensure!(
                told_values.insert((key.0, key.1, told.generation)),
                "{} (value {}) told twice of the subscription {:?} of {}",
                told.producer,
                told.generation,
                told.tag,
                told.consumer
            );
            ensure!(
                !ended.contains(&key),
                "{} (value {}) told of the subscription {:?} of {} after its cancel",
                told.producer,
                told.generation,
                told.tag,
                told.consumer
            );
            let first = *subscribed.entry(key).or_insert(told);
            ensure!(
                first.consumer == told.consumer,
                "{}: the subscription {:?} was {}'s, then {}'s",
                told.producer,
                told.tag,
                first.consumer,
                told.consumer
            );
            continue;
        };
        let Some(subscription) = subscribed.get(&key) else {
            return Err(format!(
                "{} told of the cancel of {:?} ({}, {reason:?}) before, or without, its subscribe",
                told.producer, told.tag, told.consumer
            ));
        };
        ensure!(
            subscription.consumer == told.consumer,
            "{}: the subscription {:?} was {}'s, its cancel names {}",
            told.producer,
            told.tag,
            subscription.consumer,
            told.consumer
        );
        ensure!(
            ended.insert(key),
            "{} told twice of the cancel of {:?} ({})",
            told.producer,
            told.tag,
            told.consumer
        );
        let by_handle = ledger.cancelled.contains(&told.tag)
            || ledger.replaced.contains(&told.tag)
            || ledger.self_cancelled.contains(&told.tag);
        let consumer = told.consumer.as_str();
        // A consumer that failed but was restarted ends its subscriptions as if it had not.
        let consumer_failed = fell.contains_key(consumer);
        let failed_itself = matches!(reason, CancelReason::Failed { cause } if cause == consumer);
        let right = match reason {
            CancelReason::Cancelled => by_handle,
            CancelReason::Finished => !consumer_failed,
            CancelReason::Failed { cause } => fell.contains_key(cause),
            _ => false,
        } && (!ledger.cancelled.contains(&told.tag)
            || *reason == CancelReason::Cancelled
            || consumer_failed && failed_itself)
            && (!consumer_failed || by_handle || failed_itself);
        ensure!(
            right,
            "{} told that {consumer}'s subscription {:?} ended with {reason:?}; faults struck: \
             {:?}, stopped for good: {fell:?}, cancelled through the handle: {}",
            told.producer,
            told.tag,
            ledger.struck(),
            by_handle
        );
    }
    // Each subscription made when the pipeline was built, and each made through the handle, once.
    // The edges of the stage added while the run went on are those of its subscriptions that the
    // test made through the handle: counted as the pipeline's own here.
    let of_added = |from: &str, to: &str| {
        [from, to]
            .iter()
            .any(|name| parse_node(name).is_some_and(|node| topology.is_added(node)))
    };
    let mut expected: HashMap<(String, String), usize> = HashMap::new();
    let built = topology
        .edges
        .iter()
        .map(|e| (e.from.to_string(), e.to.to_string()));
    let added = ledger.made.values().cloned();
    for (from, to) in built.filter(|(from, to)| !of_added(from, to)) {
        *expected.entry((from, to)).or_default() += 1;
    }
    for (from, to) in added.filter(|(from, to)| of_added(from, to)) {
        *expected.entry((from, to)).or_default() += 1;
    }
    let mut told_of: HashMap<(String, String), usize> = HashMap::new();
    for (&(producer, tag), told) in &subscribed {
        match ledger.made.get(&tag) {
            Some((from, to)) => {
                ensure!(
                    from == producer && *to == told.consumer,
                    "{producer} told of {}'s subscription {tag:?}, made for {to} to {from}",
                    told.consumer
                );
                if of_added(from, to) {
                    *told_of.entry((from.clone(), to.clone())).or_default() += 1;
                }
            }
            None => {
                *told_of
                    .entry((producer.to_owned(), told.consumer.clone()))
                    .or_default() += 1
            }
        }
    }
    // At most once: a stage that ends (it emitted its last events, or failed) before it has taken
    // in a consumer's subscription is never told of it (the consumer sees it end).
    for (pair, &told) in &told_of {
        let edges = expected.get(pair).copied().unwrap_or(0);
        ensure!(
            told <= edges,
            "{} was told of {told} subscriptions of {}, the pipeline has {edges}",
            pair.0,
            pair.1
        );
    }
    // Exactly once where the producer surely took the subscription in: it sent events on it (a
    // consumer that it feeds only directly handled some of its events), and it did not fail (in a
    // callback, it may fail before it tells the consumers it took in meanwhile).
    for producer in 0..topology.producers.len() {
        if fell.contains_key(&format!("P{producer}")) {
            continue;
        }
        for consumer in topology.marked_by(producer) {
            let pair = (format!("P{producer}"), format!("C{consumer}"));
            let got_some = ledger
                .order
                .get(&pair.1)
                .is_some_and(|events| events.iter().any(|e| e.tag == producer));
            let told = told_of.get(&pair).copied().unwrap_or(0);
            let edges = expected.get(&pair).copied().unwrap_or(0);
            ensure!(
                !got_some || told == edges,
                "{} handled events of {}, which was told of {told} of its {edges} subscriptions",
                pair.1,
                pair.0
            );
        }
    }
    Ok(())
}

/// The infos a producer sent itself behind its buffer came in order, each once every event it had
/// emitted before had gone out: a consumer fed by it directly (and only so), cast a [`Mark`] then,
/// had been sent, before the mark, every event of the producer's below the mark that it ever
/// handled.
fn check_confirms(ledger: &Ledger) -> Result<(), String> {
    let mut last: HashMap<usize, u64> = HashMap::new();
    for &(producer, emitted) in &ledger.confirmed {
        let before = last.insert(producer, emitted).unwrap_or(0);
        ensure!(
            before <= emitted,
            "P{producer} was told that {emitted} were out after it was told {before}"
        );
    }
    for (consumer, producer, emitted, handled) in &ledger.marks {
        let order = ledger.order.get(consumer).map_or(&[][..], Vec::as_slice);
        let late = order[(*handled).min(order.len())..]
            .iter()
            .find(|e| e.tag == *producer && e.seq < *emitted);
        ensure!(
            late.is_none(),
            "{consumer} got P{producer}'s mark that {emitted} were out after {handled} events, \
             then handled {late:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests

fn env(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

/// Keeps the injected panics off stderr; any other panic is printed as usual.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if !message.is_some_and(|m| m.starts_with(INJECTED)) {
                default(info);
            }
        }));
    });
}

#[test]
fn random_pipelines_end_and_account_for_every_event() {
    quiet_injected_panics();
    let seeds: Vec<u64> = match env("CHAOS_SEED") {
        Some(seed) => {
            println!("{}", Topology::generate(seed));
            vec![seed; env("CHAOS_REPEAT").unwrap_or(20) as usize]
        }
        None => {
            let first = env("CHAOS_FIRST").unwrap_or(0);
            (first..first + env("CHAOS_RUNS").unwrap_or(2_000)).collect()
        }
    };
    let keep_going = env("CHAOS_KEEP_GOING").is_some_and(|v| v != 0);
    let mut failures = Vec::new();
    let mut ran = 0;
    for &seed in &seeds {
        ran += 1;
        let topology = Topology::generate(seed);
        if let Err(failure) = run_one(&topology) {
            println!("FAILED {failure}\n{topology}");
            failures.push((seed, failure));
            if !keep_going {
                break;
            }
        }
    }
    let [restarted, redelivered, limit, poison] = tallied(&RESTARTS);
    let [channels, refused, unemitted, aborted] = tallied(&CHANNELS);
    let [manual, through_asker] = tallied(&MANUAL);
    let [own_cancels, own_cancelled] = tallied(&OWN_CANCELS);
    let [from_streams, panicked, to_streams, cut, unhandled] = tallied(&STREAMS);
    let [supervisors, children_lost, children_again] = tallied(&SUPERVISORS);
    let [routed, routed_dispatch, routed_batch, routed_again, routed_fell] = tallied(&ROUTING);
    let [waits, waited_alone] = tallied(&WAITS);
    let [added, added_producers, added_busy, added_late, added_alone, added_middles] =
        tallied(&ADDS);
    let [dismissing, dismissed_fell, dismissed_ok] = tallied(&DISMISSALS);
    let [again, again_refused] = tallied(&DUPLICATES);
    println!(
        "{ran} runs: {restarted} restarted a stage, {redelivered} redelivered events, {limit} \
         reached a restart limit, {poison} of them on a poison event; {channels} had a \
         from_channel producer, {refused} refused a send, {unemitted} lost events never emitted; \
         {aborted} were aborted; {manual} asked on manual subscriptions, {through_asker} through \
         an Asker; {own_cancels} told a consumer to cancel its own subscription, {own_cancelled} \
         had one end so; {from_streams} had a \
         from_stream producer, {panicked} one whose stream panicked; {to_streams} had a \
         to_stream consumer, {cut} one stopped by dropping its stream, {unhandled} one that lost \
         what its dropped stream had not yielded; {supervisors} had a ConsumerSupervisor, \
         {children_lost} one whose temporary children failed, {children_again} one whose \
         transient children were run again; {routed} had a routing panic, {routed_dispatch} one \
         that lost its dispatch, {routed_batch} one that failed a producer_consumer's batch in \
         hand, {routed_again} one whose batch was handed again, {routed_fell} one that stopped \
         its stage for good; {waits} had a producer or producer_consumer that waits for \
         consumers, {waited_alone} one shut down holding events with no consumer; {added} added \
         a stage while running, {added_producers} of them a producer, {added_middles} a \
         producer_consumer, {added_busy} one that emitted or handled events, {added_alone} one \
         that lost what it held with no consumer; {added_late} ended before a stage was added or \
         subscribed; {dismissing} dismissed a stage's failure, {dismissed_fell} had such a stage \
         stop for good, {dismissed_ok} succeeded because of it; {again} subscribed a broadcast's \
         consumer again, {again_refused} had it refused as already subscribed"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} runs failed (replay one with CHAOS_SEED=<seed>): {failures:?}",
        failures.len()
    );
}

/// A tool, not a test: `CHAOS_SEED=<seed> cargo test --test chaos shrink -- --ignored --nocapture`
/// prints the simplest topology, one step at a time from the seed's, whose runs still fail the same
/// way (the same first word: `hang`, `unbalanced`, …) at least once in `CHAOS_REPEAT` runs (default
/// 10).
#[test]
#[ignore = "a tool: shrinks the topology of a failing CHAOS_SEED"]
fn shrink() {
    quiet_injected_panics();
    let seed = env("CHAOS_SEED").expect("set CHAOS_SEED to the seed to shrink");
    let tries = env("CHAOS_REPEAT").unwrap_or(10);
    let fails = |topology: &Topology| (0..tries).find_map(|_| run_one(topology).err());
    let mut topology = Topology::generate(seed);
    let Some(failure) = fails(&topology) else {
        panic!("seed {seed} did not fail in {tries} runs");
    };
    let kind = |failure: &str| failure.split(':').next().unwrap_or("").to_owned();
    println!("seed {seed} fails with {failure}\n{topology}");
    'shrinking: loop {
        for simpler in topology.simplifications() {
            if let Some(f) = fails(&simpler) {
                if kind(&f) == kind(&failure) {
                    topology = simpler;
                    continue 'shrinking;
                }
            }
        }
        break;
    }
    println!("shrunk to:\n{topology}");
    if let Some(failure) = fails(&topology) {
        println!("which fails with {failure}");
    }
}

/// The generator makes valid topologies, and covers what the chaos test promises in its first 2 000
/// seeds.
#[test]
fn the_first_seeds_cover_every_kind_of_chaos() {
    let topologies: Vec<Topology> = (0..2_000).map(Topology::generate).collect();
    for topology in &topologies {
        assert!(topology.is_valid(), "an invalid topology:\n{topology}");
    }
    let count = |what: &dyn Fn(&Topology) -> bool| topologies.iter().filter(|t| what(t)).count();
    let mut missing = Vec::new();
    let mut expect = |name: &str, n: usize| {
        if n < 20 {
            missing.push(format!("{name}: {n}"));
        }
    };
    for n in 1..=3 {
        expect(
            &format!("{n} producers"),
            count(&|t| t.producers.len() == n),
        );
    }
    for n in 0..=2 {
        expect(&format!("{n} middles"), count(&|t| t.middles.len() == n));
    }
    for n in 1..=4 {
        expect(
            &format!("{n} consumers"),
            count(&|t| t.consumers.len() == n),
        );
    }
    let fan_in = |t: &Topology| {
        let mut sinks = t.edges.iter().map(|e| e.to).collect::<Vec<_>>();
        sinks.sort_by_key(|n| n.to_string());
        sinks.windows(2).any(|w| w[0] == w[1])
    };
    let fan_out = |t: &Topology| {
        let mut sources = t.edges.iter().map(|e| e.from).collect::<Vec<_>>();
        sources.sort_by_key(|n| n.to_string());
        sources.windows(2).any(|w| w[0] == w[1])
    };
    expect("fan-in", count(&fan_in));
    expect("fan-out", count(&fan_out));
    expect(
        "middle feeding a middle",
        count(&|t| {
            t.edges
                .iter()
                .any(|e| matches!((e.from, e.to), (Node::Middle(_), Node::Middle(_))))
        }),
    );
    expect(
        "graceful shutdown",
        count(&|t| t.shutdown_after.is_some() && !t.abort),
    );
    expect("abort", count(&|t| t.abort));
    expect(
        "graceful shutdown through a ShutdownHandle",
        count(&|t| t.by_handle),
    );
    for resubscribe in [false, true] {
        expect(
            &format!("abort after an action, resubscribe {resubscribe}"),
            count(&|t| t.abort && t.action.is_some_and(|a| a.resubscribe == resubscribe)),
        );
    }
    expect(
        "graceful shutdown of a message-fed producer",
        count(&|t| {
            t.shutdown_after.is_some() && t.producers.iter().any(|p| p.source == Source::Messages)
        }),
    );
    let accumulating = |t: &Topology, source: Source| {
        t.producers
            .iter()
            .any(|p| p.accumulate.is_some() && p.source == source)
    };
    expect(
        "accumulating producer",
        count(&|t| t.producers.iter().any(|p| p.accumulate.is_some())),
    );
    expect(
        "accumulating producer fed by casts",
        count(&|t| accumulating(t, Source::Messages)),
    );
    expect(
        "producer that waits for consumers",
        count(&|t| t.producers.iter().any(|p| p.waits)),
    );
    expect(
        "producer_consumer that waits for consumers",
        count(&|t| t.middles.iter().any(|m| m.waits)),
    );
    expect(
        "producer that waits for consumers, in a run that cancels a subscription",
        count(&|t| t.action.is_some() && t.producers.iter().any(|p| p.waits)),
    );
    expect(
        "graceful shutdown of an accumulating producer",
        count(&|t| {
            t.shutdown_after.is_some() && t.producers.iter().any(|p| p.accumulate.is_some())
        }),
    );
    for source in [Source::Ready, Source::Late, Source::Messages, Source::Stall] {
        expect(
            &format!("{source:?}"),
            count(&|t| t.producers.iter().any(|p| p.source == source)),
        );
    }
    let channel = |t: &Topology, what: &dyn Fn(&ProducerPlan) -> bool| {
        t.producers.iter().any(|p| p.source.is_channel() && what(p))
    };
    let endless = |p: &ProducerPlan| matches!(p.source, Source::Channel { endless: true, .. });
    expect("channel producer", count(&|t| channel(t, &|_| true)));
    expect(
        "channel producer fed until a send fails",
        count(&|t| channel(t, &endless)),
    );
    expect(
        "channel producer fed a number of events, shut down",
        count(&|t| t.shutdown_after.is_some() && !t.abort && channel(t, &|p| !endless(p))),
    );
    expect(
        "channel producer fed until a send fails, shut down",
        count(&|t| !t.abort && channel(t, &endless)),
    );
    expect(
        "channel producer, aborted",
        count(&|t| t.abort && channel(t, &|_| true)),
    );
    expect(
        "channel producer with room for one event",
        count(&|t| {
            channel(t, &|p| {
                matches!(p.source, Source::Channel { capacity: 1, .. })
            })
        }),
    );
    expect(
        "accumulating channel producer",
        count(&|t| channel(t, &|p| p.accumulate.is_some())),
    );
    expect(
        "channel producer with a small buffer",
        count(&|t| channel(t, &|p| p.buffer.is_some())),
    );
    expect(
        "channel producer with an action",
        count(&|t| t.action.is_some() && channel(t, &|_| true)),
    );
    let added = |t: &Topology, what: &dyn Fn(Node) -> bool| t.added.is_some_and(|a| what(a.node));
    expect(
        "added consumer",
        count(&|t| added(t, &|n| matches!(n, Node::Consumer(_)))),
    );
    expect(
        "added producer",
        count(&|t| added(t, &|n| matches!(n, Node::Producer(_)))),
    );
    expect(
        "added producer cast its events",
        count(&|t| {
            added(
                t,
                &|n| matches!(n, Node::Producer(i) if t.producers[i].source == Source::Messages),
            )
        }),
    );
    expect(
        "added producer_consumer",
        count(&|t| added(t, &|n| matches!(n, Node::Middle(_)))),
    );
    expect(
        "added stage subscribed to nothing",
        count(&|t| t.added.is_some_and(|a| a.alone)),
    );
    expect(
        "added stage in an abort",
        count(&|t| t.added.is_some() && t.abort),
    );
    expect(
        "channel producer feeding a faulty stage",
        count(&|t| {
            t.edges.iter().any(|e| {
                matches!(e.from, Node::Producer(i) if t.producers[i].source.is_channel())
                    && match e.to {
                        Node::Middle(i) => t.middles[i].strike.is_some(),
                        Node::Consumer(i) => t.consumers[i].strike.is_some(),
                        Node::Producer(_) => false,
                    }
            })
        }),
    );
    for flavor in [
        Flavor::CurrentThread,
        Flavor::MultiThread(2),
        Flavor::MultiThread(4),
    ] {
        expect(&format!("{flavor:?}"), count(&|t| t.flavor == flavor));
    }
    for shape in ["Exact", "Fewer", "More", "EmptyEvery"] {
        expect(
            shape,
            count(&|t| {
                t.producers
                    .iter()
                    .any(|p| format!("{:?}", p.shape).starts_with(shape))
            }),
        );
    }
    expect(
        "small buffer",
        count(&|t| t.producers.iter().any(|p| p.buffer.is_some())),
    );
    expect(
        "no fault",
        count(&|t| {
            t.producers.iter().all(|p| p.strike.is_none())
                && t.middles.iter().all(|m| m.strike.is_none())
                && t.consumers.iter().all(|c| c.strike.is_none())
        }),
    );
    for fault in [Fault::Error, Fault::Panic] {
        let struck = |s: &Option<Strike>| s.is_some_and(|s| s.fault == fault);
        expect(
            &format!("{fault:?} in a producer"),
            count(&|t| t.producers.iter().any(|p| struck(&p.strike))),
        );
        expect(
            &format!("{fault:?} in a producer_consumer"),
            count(&|t| t.middles.iter().any(|m| struck(&m.strike))),
        );
        expect(
            &format!("{fault:?} in a consumer"),
            count(&|t| t.consumers.iter().any(|c| struck(&c.strike))),
        );
    }
    for cancel in [
        CancelMode::Permanent,
        CancelMode::Transient,
        CancelMode::Temporary,
    ] {
        expect(
            &format!("{cancel:?} edge out of a faulty stage"),
            count(&|t| {
                t.edges.iter().any(|e| {
                    e.cancel == cancel
                        && match e.from {
                            Node::Producer(i) => t.producers[i].strike.is_some(),
                            Node::Middle(i) => t.middles[i].strike.is_some(),
                            Node::Consumer(_) => false,
                        }
                })
            }),
        );
    }
    let on_cancel = |o: &Option<OnCancel>, fault: Option<Fault>| {
        o.is_some_and(|o| o.events > 0 && o.fault == fault)
    };
    for fault in [None, Some(Fault::Error), Some(Fault::Panic)] {
        expect(
            &format!("producer emitting on a cancel, {fault:?}"),
            count(&|t| t.producers.iter().any(|p| on_cancel(&p.on_cancel, fault))),
        );
        expect(
            &format!("producer_consumer emitting on a cancel, {fault:?}"),
            count(&|t| t.middles.iter().any(|m| on_cancel(&m.on_cancel, fault))),
        );
    }
    expect(
        "producer confirming its chunks to consumers it feeds directly",
        count(&|t| {
            (0..t.producers.len()).any(|i| t.producers[i].confirm && !t.marked_by(i).is_empty())
        }),
    );
    for resubscribe in [false, true] {
        expect(
            &format!("action, resubscribe {resubscribe}"),
            count(&|t| t.action.is_some_and(|a| a.resubscribe == resubscribe)),
        );
    }
    let emitters = |t: &Topology| -> Vec<Node> {
        (0..t.producers.len())
            .map(Node::Producer)
            .chain((0..t.middles.len()).map(Node::Middle))
            .collect()
    };
    let partitioned = |fan: Fan| matches!(fan, Fan::Partition { .. });
    let broadcast = |fan: Fan| fan == Fan::Broadcast;
    for (what, fan) in [
        ("broadcast", &broadcast as &dyn Fn(Fan) -> bool),
        ("partition", &partitioned),
    ] {
        expect(
            &format!("{what} producer"),
            count(&|t| t.producers.iter().any(|p| fan(p.fan))),
        );
        expect(
            &format!("{what} producer_consumer"),
            count(&|t| t.middles.iter().any(|m| fan(m.fan))),
        );
        expect(
            &format!("{what} with a fault downstream"),
            count(&|t| {
                t.edges.iter().any(|e| {
                    fan(t.fan(e.from))
                        && match e.to {
                            Node::Middle(i) => t.middles[i].strike.is_some(),
                            Node::Consumer(i) => t.consumers[i].strike.is_some(),
                            Node::Producer(_) => false,
                        }
                })
            }),
        );
        expect(
            &format!("{what}, shut down"),
            count(&|t| t.shutdown_after.is_some() && emitters(t).iter().any(|&n| fan(t.fan(n)))),
        );
        for resubscribe in [false, true] {
            expect(
                &format!("{what} with an action, resubscribe {resubscribe}"),
                count(&|t| {
                    t.action.is_some_and(|a| a.resubscribe == resubscribe)
                        && emitters(t).iter().any(|&n| fan(t.fan(n)))
                }),
            );
        }
        expect(
            &format!("{what} accumulating"),
            count(&|t| {
                t.producers
                    .iter()
                    .any(|p| fan(p.fan) && p.accumulate.is_some())
            }),
        );
        expect(
            &format!("{what} fed by casts"),
            count(&|t| {
                t.producers
                    .iter()
                    .any(|p| fan(p.fan) && p.source == Source::Messages)
            }),
        );
        expect(
            &format!("{what} emitting on a cancel"),
            count(&|t| {
                t.producers
                    .iter()
                    .any(|p| fan(p.fan) && p.on_cancel.is_some_and(|o| o.events > 0))
            }),
        );
    }
    // Restart policies on stages whose fault may strike.
    let policies = |t: &Topology| -> Vec<(Node, Option<PolicyPlan>, Option<Strike>)> {
        let producers = t.producers.iter().enumerate();
        let middles = t.middles.iter().enumerate();
        let consumers = t.consumers.iter().enumerate();
        producers
            .map(|(i, p)| (Node::Producer(i), p.policy, p.strike))
            .chain(middles.map(|(i, m)| (Node::Middle(i), m.policy, m.strike)))
            .chain(consumers.map(|(i, c)| (Node::Consumer(i), c.policy, c.strike)))
            .collect()
    };
    let faulty = |what: &dyn Fn(Node, PolicyPlan, Strike) -> bool| {
        count(&|t| {
            policies(t)
                .into_iter()
                .any(|(node, policy, strike)| match (policy, strike) {
                    (Some(policy), Some(strike)) => what(node, policy, strike),
                    _ => false,
                })
        })
    };
    let role = |node: Node| match node {
        Node::Producer(_) => "producer",
        Node::Middle(_) => "producer_consumer",
        Node::Consumer(_) => "consumer",
    };
    for name in ["producer", "producer_consumer", "consumer"] {
        for restart in [Restart::Temporary, Restart::Transient] {
            expect(
                &format!("{restart} {name} with a fault"),
                faulty(&|n, p, _| role(n) == name && p.restart == restart),
            );
        }
        expect(
            &format!("restarting {name} with a sticky fault"),
            faulty(&|n, p, s| role(n) == name && p.restart != Restart::Temporary && s.sticky),
        );
        expect(
            &format!("{name} restarted at most once, with a fault"),
            faulty(&|n, p, _| {
                role(n) == name && p.restart == Restart::Transient && p.max_restarts <= 1
            }),
        );
    }
    for max in [0, 1] {
        expect(
            &format!("transient with max_restarts {max} and a fault"),
            faulty(&|_, p, _| p.restart == Restart::Transient && p.max_restarts == max),
        );
    }
    expect(
        "permanent stage that takes events, with a fault",
        faulty(&|_, p, _| p.restart == Restart::Permanent),
    );
    expect(
        "redelivering consumer with a fault after part of its batch",
        faulty(&|n, p, s| role(n) == "consumer" && p.redeliver && s.after > 0),
    );
    expect(
        "redelivering consumer with a poison event",
        faulty(&|n, p, s| role(n) == "consumer" && p.redeliver && s.sticky && p.max_restarts > 0),
    );
    expect(
        "restarting producer_consumer without redelivery, a fault after part of its batch",
        faulty(&|n, p, s| {
            role(n) == "producer_consumer"
                && p.restart != Restart::Temporary
                && !p.redeliver
                && s.after > 0
        }),
    );
    for sources in [&[Source::Ready][..], &[Source::Late, Source::Messages]] {
        expect(
            &format!("permanent producer, {sources:?}"),
            count(&|t| {
                t.producers.iter().any(|p| {
                    sources.contains(&p.source)
                        && p.policy.is_some_and(|p| p.restart == Restart::Permanent)
                })
            }),
        );
    }
    expect(
        "restarting message-fed producer with a fault",
        count(&|t| {
            t.producers.iter().any(|p| {
                p.source == Source::Messages && p.strike.is_some() && PolicyPlan::restarts(p.policy)
            })
        }),
    );
    expect(
        "restarting producer_consumer emitting on a cancel, failing there",
        count(&|t| {
            t.middles.iter().any(|m| {
                PolicyPlan::restarts(m.policy) && m.on_cancel.is_some_and(|o| o.fault.is_some())
            })
        }),
    );
    expect(
        "broadcast edge with a selector",
        count(&|t| t.edges.iter().any(|e| e.selector.is_some())),
    );
    expect(
        "broadcast copies meeting again downstream",
        count(&|t| {
            t.edges.iter().any(|a| {
                broadcast(t.fan(a.from))
                    && matches!(a.to, Node::Middle(_))
                    && t.edges.iter().any(|b| {
                        b.from == a.from
                            && b.to != a.to
                            && t.edges.iter().any(|c| c.from == a.to && c.to == b.to)
                    })
            })
        }),
    );
    expect(
        "partition discarding",
        count(&|t| {
            emitters(t).iter().any(|&n| {
                matches!(
                    t.fan(n),
                    Fan::Partition {
                        discard: Some(_),
                        ..
                    }
                )
            })
        }),
    );
    for n in 1..=3 {
        expect(
            &format!("{n}+ partitions"),
            count(&|t| {
                emitters(t)
                    .iter()
                    .any(|&node| matches!(t.fan(node), Fan::Partition { partitions, .. } if partitions >= n))
            }),
        );
    }
    // Manual demand.
    let manual = |t: &Topology, what: &dyn Fn(ManualPlan) -> bool| {
        let middles = t.middles.iter().map(|m| m.manual);
        let consumers = t.consumers.iter().map(|c| c.manual);
        middles.chain(consumers).flatten().any(what)
    };
    for asks in [Asks::AfterBatch, Asks::Ticks, Asks::Asker] {
        expect(
            &format!("manual consumer asking {asks:?}"),
            count(&|t| {
                t.consumers
                    .iter()
                    .any(|c| c.manual.is_some_and(|m| m.asks == asks))
            }),
        );
        expect(
            &format!("manual producer_consumer asking {asks:?}"),
            count(&|t| {
                t.middles
                    .iter()
                    .any(|m| m.manual.is_some_and(|m| m.asks == asks))
            }),
        );
    }
    expect(
        "manual demand on some subscriptions only",
        count(&|t| manual(t, &|m| m.takes != u8::MAX)),
    );
    expect(
        "manual demand, shut down",
        count(&|t| t.shutdown_after.is_some() && !t.abort && manual(t, &|_| true)),
    );
    expect(
        "manual producer_consumer asking through its Askers, shut down",
        count(&|t| {
            t.shutdown_after.is_some()
                && !t.abort
                && t.middles
                    .iter()
                    .any(|m| m.manual.is_some_and(|m| m.asks == Asks::Asker))
        }),
    );
    expect(
        "manual demand, aborted",
        count(&|t| t.abort && manual(t, &|_| true)),
    );
    expect(
        "manual demand with an action",
        count(&|t| t.action.is_some() && manual(t, &|_| true)),
    );
    expect(
        "manual stage with a fault and a restart policy",
        count(&|t| {
            let middles = t.middles.iter().map(|m| (m.manual, m.strike, m.policy));
            let consumers = t.consumers.iter().map(|c| (c.manual, c.strike, c.policy));
            middles.chain(consumers).any(|(manual, strike, policy)| {
                manual.is_some() && strike.is_some() && PolicyPlan::restarts(policy)
            })
        }),
    );
    expect(
        "manual stage fed by a broadcast",
        count(&|t| {
            t.edges.iter().any(|e| {
                t.fan(e.from) == Fan::Broadcast
                    && match e.to {
                        Node::Middle(i) => t.middles[i].manual.is_some(),
                        Node::Consumer(i) => t.consumers[i].manual.is_some(),
                        Node::Producer(_) => false,
                    }
            })
        }),
    );
    // Streams in.
    let stream = |t: &Topology, what: &dyn Fn(&ProducerPlan) -> bool| {
        t.producers.iter().any(|p| p.source.is_stream() && what(p))
    };
    let endless_stream =
        |p: &ProducerPlan| matches!(p.source, Source::Stream { endless: true, .. });
    expect("from_stream producer", count(&|t| stream(t, &|_| true)));
    expect(
        "from_stream producer that panics",
        count(&|t| {
            stream(t, &|p| {
                matches!(
                    p.source,
                    Source::Stream {
                        panic_at: Some(_),
                        ..
                    }
                )
            })
        }),
    );
    expect(
        "endless from_stream producer, shut down",
        count(&|t| stream(t, &endless_stream)),
    );
    expect(
        "from_stream producer, aborted",
        count(&|t| t.abort && stream(t, &|_| true)),
    );
    expect(
        "accumulating from_stream producer",
        count(&|t| stream(t, &|p| p.accumulate.is_some())),
    );
    // Streams out.
    let sink = |t: &Topology, what: &dyn Fn(StreamPlan) -> bool| {
        t.consumers.iter().filter_map(|c| c.stream).any(what)
    };
    expect("to_stream consumer", count(&|t| sink(t, &|_| true)));
    expect(
        "to_stream consumer dropped early",
        count(&|t| sink(t, &|s| s.drop_after.is_some())),
    );
    expect(
        "to_stream consumer dropped before its first event",
        count(&|t| sink(t, &|s| s.drop_after == Some(0))),
    );
    expect(
        "to_stream consumer with options of its own",
        count(&|t| sink(t, &|s| s.options.is_some())),
    );
    expect(
        "to_stream consumer of a producer_consumer",
        count(&|t| {
            t.edges.iter().any(|e| {
                matches!(e.from, Node::Middle(_))
                    && matches!(e.to, Node::Consumer(i) if t.consumers[i].stream.is_some())
            })
        }),
    );
    expect(
        "to_stream consumer with a fault upstream",
        count(&|t| !t.faultless() && sink(t, &|_| true)),
    );
    expect(
        "to_stream consumer, shut down",
        count(&|t| t.shutdown_after.is_some() && !t.abort && sink(t, &|_| true)),
    );
    expect(
        "to_stream consumer, aborted",
        count(&|t| t.abort && sink(t, &|_| true)),
    );
    expect(
        "to_stream consumer read without pauses, aborted",
        count(&|t| t.abort && sink(t, &|s| s.eager)),
    );
    expect(
        "to_stream consumer dropped early, with an action",
        count(&|t| t.action.is_some() && sink(t, &|s| s.drop_after.is_some())),
    );
    expect(
        "from_stream into to_stream",
        count(&|t| {
            t.edges.iter().any(|e| {
                matches!(e.from, Node::Producer(i) if t.producers[i].source.is_stream())
                    && matches!(e.to, Node::Consumer(i) if t.consumers[i].stream.is_some())
            })
        }),
    );
    // ConsumerSupervisors.
    let supervisor = |t: &Topology, what: &dyn Fn(SupervisorPlan) -> bool| {
        t.consumers.iter().filter_map(|c| c.supervisor).any(what)
    };
    for transient in [false, true] {
        expect(
            &format!("ConsumerSupervisor with failing children, transient {transient}"),
            count(&|t| supervisor(t, &|s| s.fail.is_some() && s.transient == transient)),
        );
    }
    expect(
        "ConsumerSupervisor with options of its own",
        count(&|t| supervisor(t, &|s| s.options.is_some())),
    );
    expect(
        "ConsumerSupervisor with a fault upstream",
        count(&|t| !t.faultless() && supervisor(t, &|_| true)),
    );
    expect(
        "ConsumerSupervisor, shut down",
        count(&|t| t.shutdown_after.is_some() && !t.abort && supervisor(t, &|_| true)),
    );
    expect(
        "ConsumerSupervisor, aborted",
        count(&|t| t.abort && supervisor(t, &|_| true)),
    );
    expect(
        "ConsumerSupervisor with an action",
        count(&|t| t.action.is_some() && supervisor(t, &|_| true)),
    );
    // Routing panics.
    for (what, fan) in [
        ("broadcast", &broadcast as &dyn Fn(Fan) -> bool),
        ("partition", &partitioned),
    ] {
        expect(
            &format!("routing panic in a {what} producer"),
            count(&|t| {
                t.producers
                    .iter()
                    .any(|p| fan(p.fan) && p.routing.is_some())
            }),
        );
        expect(
            &format!("routing panic in a {what} producer_consumer"),
            count(&|t| t.middles.iter().any(|m| fan(m.fan) && m.routing.is_some())),
        );
    }
    let routed = |t: &Topology, what: &dyn Fn(Option<PolicyPlan>, RoutingStrike) -> bool| {
        let producers = t.producers.iter().map(|p| (p.policy, p.routing));
        let middles = t.middles.iter().map(|m| (m.policy, m.routing));
        producers
            .chain(middles)
            .any(|(policy, routing)| routing.is_some_and(|r| what(policy, r)))
    };
    expect(
        "routing panic in a stage that restarts",
        count(&|t| routed(t, &|p, _| PolicyPlan::restarts(p))),
    );
    expect(
        "routing panic in a stage that does not restart",
        count(&|t| routed(t, &|p, _| !PolicyPlan::restarts(p))),
    );
    expect(
        "sticky routing panic",
        count(&|t| routed(t, &|_, r| r.sticky)),
    );
    expect(
        "routing panic in a redelivering producer_consumer",
        count(&|t| {
            t.middles.iter().any(|m| {
                m.routing.is_some()
                    && PolicyPlan::restarts(m.policy)
                    && PolicyPlan::redelivers(m.policy)
            })
        }),
    );
    expect(
        "routing panic with another fault",
        count(&|t| {
            routed(t, &|_, _| true)
                && (t.producers.iter().any(|p| p.strike.is_some())
                    || t.middles.iter().any(|m| m.strike.is_some())
                    || t.consumers.iter().any(|c| c.strike.is_some()))
        }),
    );
    expect(
        "routing panic, shut down",
        count(&|t| t.shutdown_after.is_some() && routed(t, &|_, _| true)),
    );
    expect(
        "routing panic with an action",
        count(&|t| t.action.is_some() && routed(t, &|_, _| true)),
    );
    expect(
        "a producer with a dispatcher of the test's own",
        count(&|t| t.producers.iter().any(|p| own_dispatcher(p.fan, p.events))),
    );
    expect(
        "a producer_consumer with a dispatcher of the test's own",
        count(&|t| (t.middles.iter().enumerate()).any(|(i, m)| own_dispatcher(m.fan, i as u64))),
    );
    assert!(missing.is_empty(), "too rare in 2 000 seeds: {missing:?}");
}
