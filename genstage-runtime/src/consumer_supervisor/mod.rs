//! [`ConsumerSupervisor`]: a consumer that runs one task per event, with its concurrency bounded by
//! demand (GenStage's `ConsumerSupervisor`).
//!
//! Here: the public type and its builder; [`Child`] (what runs per event) in `child.rs`;
//! [`ChildCounts`] and [`CountChildren`] in `counts.rs`; the demand and child accounting, a plain
//! state machine tested without tokio, in `accounting.rs`, with the restart intensity of
//! `crate::restart`; the stage itself (the tokio side: spawning, completions, the end) in `stage.rs`.

mod accounting;
mod child;
mod counts;
mod stage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::options::SubscribeOptions;
use crate::restart::{Intensity, DEFAULT_MAX_RESTARTS, DEFAULT_RESTART_WINDOW};
use crate::subscription::SubscriptionTag;
use accounting::{ChildId, Restart, Supervision};
use stage::{Note, Wake};

pub use child::{Child, ChildOutput};
pub use counts::{ChildCounts, CountChildren};

/// A consumer that starts one task per event, a [`Child`], and asks its producers for more events
/// only as its children end: at most `max_demand` of them run at once (GenStage's
/// `ConsumerSupervisor`).
///
/// Built from an `async fn` or closure taking the event (or a type implementing [`Child`]), then
/// used as any consumer, in `pipeline!` or the builder:
/// `queue -> jobs = ConsumerSupervisor::new(handle_job).max_demand(8)`. An edge's options
/// (`-[max_demand = 8, min_demand = 0]->`) override the builder's.
///
/// # Demand and concurrency
///
/// Each subscription is in manual demand ([`Demand::Manual`](crate::Demand::Manual)). Per producer:
/// - subscribing asks for `max_demand` events;
/// - each event received starts a child at once;
/// - a child that ends for good (succeeds; or fails and is not restarted) frees its slot: the slot
///   goes to a `pending` count, and once `pending >= min_demand` the supervisor asks that producer
///   for `pending` events and sets `pending` to 0;
/// - a `transient` child that fails keeps its slot while it restarts: nothing is asked for it.
///
/// So at most `max_demand` children of each producer are alive (running or restarting) at once,
/// and with several producers at most the sum of their `max_demand`s. `min_demand` is how many slots
/// may idle before the supervisor asks again, not a minimum of children (GenStage issue 190): children
/// plus the demand on its way stay between `max_demand - min_demand + 1` and `max_demand`. For the
/// most concurrency, use `min_demand` 0 (or 1, the same): one ask per child that ends. The
/// defaults are GenStage's: `max_demand` 1000, `min_demand` half of it.
///
/// # Children
///
/// - A child **succeeds** when its run returns `()` or `Ok(())`: its event counts as handled in the
///   report (`events_in`).
/// - It **fails** when it returns `Err`, or panics (the panic is caught and does not reach the
///   stage). A failure is logged through `tracing` (warn) with its message; then:
///   - `temporary` children (the default) are not restarted: the event is lost, reported as
///     [`LossReason::ChildFailed`](crate::LossReason::ChildFailed);
///   - [`transient`](Self::transient) children are restarted with (a clone of) the same event,
///     after [`restart_delay`](Self::restart_delay) (none by default), still holding their slot.
///     More than [`max_restarts`](Self::max_restarts) restarts (3) within
///     [`max_seconds`](Self::max_seconds) (5; 0 is a window of under a second, as in GenStage),
///     over all children, is the restart intensity
///     exceeded: the child's event is lost, and the supervisor **fails** with an error that says
///     "restart intensity reached" and gives the last failure;
///   - `permanent` children (restarted even after succeeding) are not offered: a child per event
///     that never ends would take its slot forever (GenStage rejects them too, since issues
///     195 and 231).
///
/// # Ending
///
/// - When its input ends (every producer has finished, or the pipeline shuts down gracefully), the
///   supervisor waits for its children to end, as it ran before: restarting `transient` ones,
///   failing if the restart intensity is exceeded, answering calls. Then it finishes. A graceful
///   shutdown's timeout ([`PipelineHandle::shutdown_within`](crate::PipelineHandle::shutdown_within))
///   aborts it, with its children, if they take longer.
/// - A producer whose subscription ends, or fails with a `temporary` subscription, leaves the
///   children of its events running; they just ask it for nothing more.
/// - When the supervisor fails (its restart intensity, or a producer's dispatcher refused one of
///   its `permanent` or `transient` subscriptions), is cancelled (a producer failed on a
///   `permanent` or `transient` subscription), panics or is aborted, its children are aborted
///   where they stand. Their events are reported lost, as
///   [`LossReason::Unhandled`](crate::LossReason::Unhandled); those of children that had already
///   failed, their failure not yet acted on (a `transient` child not yet run again), as
///   [`LossReason::ChildFailed`](crate::LossReason::ChildFailed).
///
/// So the report accounts for every event it received, per stage and per edge: `events_in`
/// (handled) are the children that succeeded, and the others are lost with a reason.
///
/// A stage restart policy ([`RestartPolicy`](crate::RestartPolicy)) on the supervisor itself
/// rebuilds it afresh when it fails: the failed value's children are aborted (their events lost)
/// and the new value has its own counts (and its own [`watch_counts`](Self::watch_counts)).
///
/// # Introspection
///
/// `jobs.call(CountChildren).await` answers the [`ChildCounts`] (active, restarting, handled,
/// failed, restarts) between the stage's callbacks; [`watch_counts`](Self::watch_counts) follows
/// them at any time, up to the end.
///
/// # Examples
///
/// ```
/// use genstage::{from_iter, ConsumerSupervisor, Pipeline};
///
/// async fn handle_job(n: u64) -> Result<(), String> {
///     tokio::task::yield_now().await; // some I/O
///     if n == 13 { Err(format!("job {n} failed")) } else { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), genstage::PipelineError> {
/// let mut pipeline = Pipeline::new();
/// let queue = pipeline.add_producer(from_iter(0..20u64));
/// let jobs = pipeline.add_consumer(ConsumerSupervisor::new(handle_job).max_demand(4));
/// pipeline.subscribe(&queue, &jobs);
/// let report = pipeline.run().await?;
///
/// let jobs = report.stage("ConsumerSupervisor").unwrap();
/// assert_eq!(jobs.events_in, 19); // handled
/// assert_eq!(jobs.lost, 1); // job 13
/// assert!(report.totals().balanced());
/// # Ok(()) }
/// ```
pub struct ConsumerSupervisor<T, C> {
    child: Arc<C>,
    options: SubscribeOptions,
    restart_delay: Duration,
    /// Clones an event for a `transient` child's restarts; set by [`transient`](Self::transient).
    clone_event: Option<fn(&T) -> T>,
    supervision: Supervision<SubscriptionTag>,
    /// A copy of the event of each `transient` child alive, for its restarts; empty otherwise.
    events: HashMap<ChildId, T>,
    /// The task of each child alive, running or waiting to restart.
    tasks: HashMap<ChildId, JoinHandle<()>>,
    /// Where children's tasks tell how they ended (and when a delayed restart runs).
    notes: mpsc::UnboundedReceiver<Note>,
    notes_to: mpsc::UnboundedSender<Note>,
    /// Wakes the stage when notes arrive.
    wake: Arc<Wake>,
    /// The subscription the batch in hand comes from.
    from: Option<SubscriptionTag>,
    /// The stage's name, for its logs; known from its first subscription.
    name: String,
    counts: watch::Sender<ChildCounts>,
}

impl<T, C> ConsumerSupervisor<T, C>
where
    T: Send + 'static,
    C: Child<T>,
{
    /// A supervisor that runs `child` once per event, `temporary` (a failed child is not
    /// restarted), with GenStage's defaults: `max_demand` 1000, `min_demand` half of it, at most 3
    /// restarts in 5 seconds.
    ///
    /// ```
    /// use genstage::{Consumer, ConsumerSupervisor};
    /// async fn send_email(to: String) -> Result<(), std::io::Error> { Ok(()) }
    /// let mailer = ConsumerSupervisor::new(send_email).max_demand(8).min_demand(0);
    /// assert_eq!(mailer.subscribe_options().max_demand, Some(8));
    /// ```
    pub fn new(child: C) -> Self {
        let (notes_to, notes) = mpsc::unbounded_channel();
        ConsumerSupervisor {
            child: Arc::new(child),
            options: SubscribeOptions::default(),
            restart_delay: Duration::ZERO,
            clone_event: None,
            supervision: Supervision::new(
                Restart::Temporary,
                Intensity::new(DEFAULT_MAX_RESTARTS, DEFAULT_RESTART_WINDOW),
            ),
            events: HashMap::new(),
            tasks: HashMap::new(),
            notes,
            notes_to,
            wake: Arc::new(Wake::new::<T, C>()),
            from: None,
            name: String::new(),
            counts: watch::Sender::new(ChildCounts::default()),
        }
    }
}

impl<T, C> ConsumerSupervisor<T, C> {
    /// At most `max_demand` children per producer at once: what it asks each producer for when
    /// it subscribes. An edge's `max_demand` overrides it.
    pub fn max_demand(mut self, max_demand: usize) -> Self {
        self.options = self.options.max_demand(max_demand);
        self
    }

    /// How many children of a producer must have ended before the supervisor asks it for as many
    /// events (see the type's docs). An edge's `min_demand` overrides it.
    pub fn min_demand(mut self, min_demand: usize) -> Self {
        self.options = self.options.min_demand(min_demand);
        self
    }

    /// The supervisor's subscription options (`max_demand`, `min_demand`, `cancel`); an edge's
    /// own options override them. Invalid values make [`Pipeline::run`](crate::Pipeline::run)
    /// return [`PipelineError::InvalidSubscription`](crate::PipelineError::InvalidSubscription).
    pub fn with_options(mut self, options: SubscribeOptions) -> Self {
        self.options = options;
        self
    }

    /// Failed children are not restarted: their events are lost (the default; OTP's
    /// `restart: :temporary`).
    pub fn temporary(mut self) -> Self {
        self.supervision.set_restart(Restart::Temporary);
        self.clone_event = None;
        self
    }

    /// A child that fails is restarted with the same event (a clone, kept while the child is
    /// alive), within the restart intensity (OTP's `restart: :transient`). It keeps its slot
    /// meanwhile: nothing is asked for it until it succeeds, or is given up.
    ///
    /// ```
    /// use genstage::ConsumerSupervisor;
    /// async fn upload(file: String) -> Result<(), String> { Ok(()) }
    /// let uploads = ConsumerSupervisor::new(upload).transient().max_restarts(10).max_seconds(60);
    /// # let _ = uploads;
    /// ```
    pub fn transient(mut self) -> Self
    where
        T: Clone,
    {
        self.supervision.set_restart(Restart::Transient);
        self.clone_event = Some(T::clone);
        self
    }

    /// At most `max_restarts` restarts within [`max_seconds`](Self::max_seconds), over all
    /// children; one more fails the supervisor (OTP's `max_restarts`; 3 by default; 0 allows
    /// none).
    pub fn max_restarts(mut self, max_restarts: u32) -> Self {
        let period = self.supervision.intensity().within();
        self.supervision
            .set_intensity(Intensity::new(max_restarts, period));
        self
    }

    /// The window of [`max_restarts`](Self::max_restarts), in seconds (OTP's `max_seconds`; 5 by
    /// default).
    ///
    /// `0` is accepted, as GenStage's `ConsumerSupervisor` accepts it (its scenario 177,
    /// "`max_seconds: 0`: shutdown"): the window then holds the restarts less than a second old
    /// (OTP counts time in whole seconds, and its window of 0 holds the restarts of the same
    /// second). So children that fail at once, again and again, reach the restart intensity within
    /// moments, and the supervisor fails as it does past any limit, with the error "restart
    /// intensity reached: more than `max_restarts` restarts of its children within a second";
    /// they are not restarted for ever.
    ///
    /// ```
    /// use genstage::{from_iter, ConsumerSupervisor, Pipeline};
    /// async fn always_fail(_: u64) -> Result<(), String> { Err("nope".into()) }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut pipeline = Pipeline::new();
    /// let queue = pipeline.add_producer(from_iter(0..1u64));
    /// let jobs = ConsumerSupervisor::new(always_fail).transient().max_seconds(0);
    /// let jobs = pipeline.add_consumer_named("jobs", jobs);
    /// pipeline.subscribe(&queue, &jobs);
    /// let error = pipeline.run().await.unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "stage `jobs` failed: restart intensity reached: more than 3 restarts of its children \
    ///      within a second (max_restarts = 3, max_seconds = 0); last failure: nope"
    /// );
    /// assert!(error.report().unwrap().balanced());
    /// # }
    /// ```
    pub fn max_seconds(mut self, max_seconds: u64) -> Self {
        let max_restarts = self.supervision.intensity().max_restarts();
        self.supervision.set_intensity(Intensity::new(
            max_restarts,
            Duration::from_secs(max_seconds),
        ));
        self
    }

    /// How long a failed `transient` child waits before it runs again (none by default, as in
    /// GenStage): a back-off for work that fails for a while, such as a service that is down. It
    /// is counted as `restarting` meanwhile, and keeps its slot.
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.restart_delay = delay;
        self
    }

    /// A receiver of the supervisor's [`ChildCounts`], updated as children start and end, readable
    /// at any time (also while it waits for its last children, and after it has ended: the last
    /// counts stay). [`watch::Receiver::changed`] waits for the next change.
    ///
    /// ```
    /// use genstage::{from_iter, ConsumerSupervisor, Pipeline};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), genstage::PipelineError> {
    /// let jobs = ConsumerSupervisor::new(|_: u32| async {}).max_demand(2);
    /// let counts = jobs.watch_counts();
    /// let mut pipeline = Pipeline::new();
    /// let queue = pipeline.add_producer(from_iter(0..5u32));
    /// let jobs = pipeline.add_consumer(jobs);
    /// pipeline.subscribe(&queue, &jobs);
    /// pipeline.run().await?;
    /// assert_eq!(counts.borrow().handled, 5);
    /// assert_eq!(counts.borrow().active, 0);
    /// # Ok(()) }
    /// ```
    pub fn watch_counts(&self) -> watch::Receiver<ChildCounts> {
        self.counts.subscribe()
    }
}

impl<T, C> std::fmt::Debug for ConsumerSupervisor<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSupervisor")
            .field("options", &self.options)
            .field("restart", &self.supervision.restart())
            .field("intensity", self.supervision.intensity())
            .field("restart_delay", &self.restart_delay)
            .field("counts", &self.supervision.counts())
            .finish_non_exhaustive()
    }
}

impl<T, C> Drop for ConsumerSupervisor<T, C> {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}
