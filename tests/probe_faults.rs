//! Probe: fault paths in combination. Panics in every side callback (`init`, `handle_subscribe`,
//! `batch_from`, `handle_cancel`, `terminate`, and a producer's `handle_consumer_subscribe` and
//! `handle_consumer_cancel`) under each restart policy; broadcasts (with selectors) and partitions
//! whose consumer, producer or producer_consumer fails and restarts, with and without
//! redelivery, also in their partition function or a selector; graceful shutdowns and aborts
//! arriving while pushed events wait in the buffer, while a producer accumulates, while a manual
//! consumer asks for nothing, while a redelivered batch is handled, while a consumer fails;
//! ConsumerSupervisor children failing during a shutdown; consumers added, cancelled and
//! resubscribed at run time while another fails. Every run is under a timeout, and every report
//! is checked for exact counts, the reasons of its losses and its balance.
//!
//! It found a selector panicking in a restarted broadcasting stage that stalled the broadcast
//! for ever, or unbalanced the report (fixed in `dispatcher/broadcast.rs`); one defect is left
//! as an ignored test: the batch a restarted stage's partition function panicked on is lost as
//! `Buffered` ("in its buffer when it stopped"), even with `redeliver`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    from_iter, Consumer, ConsumerSupervisor, Context, Demand, DemandMode, Dispatch, Emit,
    HandleCall, HandleCast, LossReason, NoInput, Partition, Pipeline, PipelineError, Producer,
    ProducerConsumer, ProducerOptions, ReplyTo, Report, RestartPolicy, StageRef, StageResult,
    StageStatus, SubscribeOptions, Subscriber, Subscription, SubscriptionTag,
};
use tokio::sync::Semaphore;

mod faults;
mod run_reports;

use faults::{count_on, fail, Fault, Faults};
// Every run is awaited under `guard`'s time limit: a run that does not end is a hang.
use run_reports::{guard as within, lost, report_of, stage};

fn options(max: usize, min: usize) -> SubscribeOptions {
    SubscribeOptions::new().max_demand(max).min_demand(min)
}

/// Partitioned by parity into two, or broadcast: how the stages of this file fan out.
fn by_parity_or_to_all<S: Partition<u64>>(partitioned: bool) -> Dispatch<S, u64> {
    if partitioned {
        Dispatch::partition(2)
    } else {
        Dispatch::broadcast()
    }
}

/// The report balances in total and on every edge, and its totals add up as the stages do.
fn balanced(report: &Report) {
    assert!(report.balanced(), "{report}");
    let totals = report.totals();
    assert_eq!(
        totals.emitted,
        totals.handled + totals.discarded + totals.lost,
        "{report}"
    );
}

type Seen = Arc<Mutex<Vec<u64>>>;

fn taken(seen: &Seen) -> Vec<u64> {
    seen.lock().unwrap().clone()
}

// ---------------------------------------------------------------------------------------------
// Panics in a consumer's side callbacks, under each restart policy.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Init,
    Subscribe,
    BatchFrom,
    Cancel,
    Terminate,
}

/// Records what it handles; panics once (its values share `armed`) in the callback `at`.
struct SideConsumer {
    at: Side,
    armed: Arc<AtomicBool>,
    policy: RestartPolicy<u64>,
    seen: Seen,
}

impl SideConsumer {
    fn strike(&self, here: Side) {
        if self.at == here && self.armed.swap(false, Ordering::SeqCst) {
            panic!("SideConsumer panicked in {here:?}");
        }
    }
}

impl Consumer for SideConsumer {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn init(&mut self, _ctx: &mut Context<'_, Self>) {
        self.strike(Side::Init);
    }
    fn handle_subscribe(&mut self, _: &Subscription, _ctx: &mut Context<'_, Self>) -> Demand {
        self.strike(Side::Subscribe);
        Demand::Automatic
    }
    fn batch_from(&mut self, _: SubscriptionTag) {
        self.strike(Side::BatchFrom);
    }
    async fn handle_cancel(
        &mut self,
        _: &Subscription,
        _: &genstage::CancelReason,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<()> {
        self.strike(Side::Cancel);
        Ok(())
    }
    async fn terminate(&mut self, _: &StageStatus) {
        self.strike(Side::Terminate);
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

fn side_run(at: Side, policy: RestartPolicy<u64>) -> (Pipeline, Seen) {
    let seen = Seen::default();
    let armed = Arc::new(AtomicBool::new(true));
    let mut pipeline = Pipeline::new();
    let numbers = pipeline.add_producer_as(Some("numbers".into()), from_iter(0..50u64));
    let s = seen.clone();
    let side = pipeline.add_consumer_with_as(Some("side".into()), move || SideConsumer {
        at,
        armed: armed.clone(),
        policy,
        seen: s.clone(),
    });
    pipeline.subscribe(&numbers, &side);
    (pipeline, seen)
}

/// A temporary consumer that panics in a side callback fails the run, naming it and the
/// callback's panic; what it had not handled is lost, and the report balances.
#[tokio::test]
async fn a_panic_in_a_temporary_consumers_side_callback_fails_it_and_balances() {
    for at in [
        Side::Init,
        Side::Subscribe,
        Side::BatchFrom,
        Side::Cancel,
        Side::Terminate,
    ] {
        let (pipeline, seen) = side_run(at, RestartPolicy::temporary());
        let (report, error) = report_of(within(pipeline.run()).await);
        balanced(&report);
        let side = stage(&report, "side");
        let error = error.unwrap_or_else(|| panic!("{at:?}: the run fails\n{report}"));
        assert_eq!(error.stage(), "side", "{at:?}: {error:?}");
        assert!(
            error.to_string().contains(&format!("panicked in {at:?}")),
            "{at:?}: {error}"
        );
        assert!(side.failed(), "{at:?}: {report}");
        match at {
            Side::Init | Side::Subscribe => {
                assert_eq!(side.events_in, 0, "{at:?}: {report}");
                assert!(taken(&seen).is_empty());
            }
            Side::BatchFrom => {
                assert_eq!(side.events_in, 0, "{at:?}: {report}");
                assert_eq!(lost(side, LossReason::FailedBatch), 5, "{at:?}: {report}");
            }
            Side::Cancel | Side::Terminate => {
                assert_eq!(side.events_in, 50, "{at:?}: {report}");
                assert_eq!(report.totals().lost, 0, "{at:?}: {report}");
                assert_eq!(taken(&seen), (0..50).collect::<Vec<_>>());
            }
        }
        // What the producer emitted and the consumer did not handle is lost, nothing more.
        let numbers = stage(&report, "numbers");
        assert_eq!(
            numbers.emitted,
            side.events_in + report.totals().lost,
            "{at:?}: {report}"
        );
    }
}

/// A transient consumer that panics once in a side callback before the end is restarted and
/// handles everything but the batch it held (none, but in `batch_from`: that batch, unless
/// redelivered).
#[tokio::test]
async fn a_panic_in_a_transient_consumers_side_callback_restarts_it() {
    for redeliver in [false, true] {
        for at in [Side::Init, Side::Subscribe, Side::BatchFrom, Side::Cancel] {
            let policy = if redeliver {
                RestartPolicy::transient().redeliver()
            } else {
                RestartPolicy::transient()
            };
            let case = format!("{at:?} redeliver {redeliver}");
            let (pipeline, seen) = side_run(at, policy);
            let (report, error) = report_of(within(pipeline.run()).await);
            balanced(&report);
            assert!(error.is_none(), "{case}: {error:?}\n{report}");
            let side = stage(&report, "side");
            assert_eq!(side.restarts, 1, "{case}: {report}");
            assert_eq!(side.status, StageStatus::Finished, "{case}: {report}");
            let (handled, failed, redelivered) = match (at, redeliver) {
                (Side::BatchFrom, false) => (45, 5, 0),
                (Side::BatchFrom, true) => (50, 0, 5),
                _ => (50, 0, 0),
            };
            assert_eq!(
                (
                    side.events_in,
                    lost(side, LossReason::FailedBatch),
                    side.lost,
                    side.redelivered
                ),
                (handled, failed, failed, redelivered),
                "{case}: {report}"
            );
            let expected: Vec<u64> = if failed > 0 {
                (5..50).collect()
            } else {
                (0..50).collect()
            };
            assert_eq!(taken(&seen), expected, "{case}");
        }
    }
}

/// A transient consumer whose `terminate` panics after it finished: it ended on its own, so it
/// is not restarted, and everything was handled; the panic is reported.
#[tokio::test]
async fn a_panic_in_terminate_after_the_end_is_reported_and_balances() {
    for policy in [
        RestartPolicy::transient(),
        RestartPolicy::transient().redeliver(),
    ] {
        let (pipeline, seen) = side_run(Side::Terminate, policy);
        let (report, error) = report_of(within(pipeline.run()).await);
        balanced(&report);
        let side = stage(&report, "side");
        assert_eq!(side.events_in, 50, "{report}");
        assert_eq!(report.totals().lost, 0, "{report}");
        assert_eq!(taken(&seen), (0..50).collect::<Vec<_>>());
        let error = error.expect("the panic fails the run");
        assert_eq!(error.stage(), "side");
        assert!(
            error.to_string().contains("panicked in Terminate"),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Panics in a producer's side callbacks.

/// Counts to 60 (its values share the count); panics once in the callback `at`.
struct SideProducer {
    at: Side,
    armed: Arc<AtomicBool>,
    next: Arc<AtomicU64>,
    end: u64,
    policy: RestartPolicy<NoInput>,
    told: Arc<Mutex<Vec<(String, genstage::CancelReason)>>>,
}

impl SideProducer {
    fn strike(&self, here: Side) {
        if self.at == here && self.armed.swap(false, Ordering::SeqCst) {
            panic!("SideProducer panicked in {here:?}");
        }
    }
}

impl Producer for SideProducer {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_on(&self.next, demand, self.end))
    }
    fn init(&mut self, _ctx: &mut Context<'_, Self>) {
        self.strike(Side::Init);
    }
    fn handle_consumer_subscribe(&mut self, _: &Subscriber, _ctx: &mut Context<'_, Self>) {
        self.strike(Side::Subscribe);
    }
    async fn handle_consumer_cancel(
        &mut self,
        subscriber: &Subscriber,
        reason: &genstage::CancelReason,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        self.told
            .lock()
            .unwrap()
            .push((subscriber.consumer().to_string(), reason.clone()));
        self.strike(Side::Cancel);
        Ok(Vec::new())
    }
    async fn terminate(&mut self, _: &StageStatus) {
        self.strike(Side::Terminate);
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        self.policy
    }
}

/// Records what it handles; with `until`, stops taking (cancels itself by finishing) never: it
/// is the plain sink of the producer tests.
struct Collect(Seen);

impl Consumer for Collect {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
}

/// A producer that panics once in `init` or `handle_consumer_subscribe`: temporary, the run
/// fails naming it and its consumers are cancelled with nothing lost unaccounted; transient, it
/// is restarted and every event reaches the two consumers once.
#[tokio::test]
async fn a_panic_in_a_producers_side_callback_fails_or_restarts_it() {
    for at in [Side::Init, Side::Subscribe] {
        for transient in [false, true] {
            let case = format!("{at:?} transient {transient}");
            let (a, b) = (Seen::default(), Seen::default());
            let armed = Arc::new(AtomicBool::new(true));
            let next = Arc::new(AtomicU64::new(0));
            let policy = if transient {
                RestartPolicy::transient()
            } else {
                RestartPolicy::temporary()
            };
            let mut pipeline = Pipeline::new();
            let p = pipeline.add_producer_with_as(Some("p".into()), move || SideProducer {
                at,
                armed: armed.clone(),
                next: next.clone(),
                end: 60,
                policy,
                told: Arc::default(),
            });
            let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
            let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
            pipeline.subscribe(&p, &ca).subscribe(&p, &cb);
            let (report, error) = report_of(within(pipeline.run()).await);
            balanced(&report);
            let handled = stage(&report, "a").events_in + stage(&report, "b").events_in;
            if transient {
                assert!(error.is_none(), "{case}: {error:?}\n{report}");
                assert_eq!(stage(&report, "p").restarts, 1, "{case}: {report}");
                assert_eq!(handled, 60, "{case}: {report}");
                let mut all = taken(&a);
                all.extend(taken(&b));
                all.sort_unstable();
                assert_eq!(all, (0..60).collect::<Vec<_>>(), "{case}");
            } else {
                let error = error.unwrap_or_else(|| panic!("{case}: fails\n{report}"));
                assert_eq!(error.stage(), "p", "{case}");
                assert!(
                    error.to_string().contains(&format!("panicked in {at:?}")),
                    "{case}: {error}"
                );
                assert_eq!(
                    stage(&report, "p").emitted,
                    handled + report.totals().lost,
                    "{case}: {report}"
                );
            }
        }
    }
}

/// A producer (counting for ever) whose `handle_consumer_cancel` panics when told that one of
/// its two consumers failed: temporary, the producer fails and stops the other consumer;
/// transient, it restarts and the other consumer goes on until a graceful shutdown, getting
/// every event the failed one was not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_handle_consumer_cancel_when_a_consumer_fails() {
    for transient in [false, true] {
        let case = format!("transient {transient}");
        let (a, b) = (Seen::default(), Seen::default());
        let armed = Arc::new(AtomicBool::new(true));
        let next = Arc::new(AtomicU64::new(0));
        let policy = if transient {
            RestartPolicy::transient()
        } else {
            RestartPolicy::temporary()
        };
        let mut pipeline = Pipeline::new();
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let p = pipeline.add_producer_with_as(Some("p".into()), move || SideProducer {
            at: Side::Cancel,
            armed: armed.clone(),
            next: next.clone(),
            end: u64::MAX,
            policy,
            told: t.clone(),
        });
        let ca = pipeline.add_consumer_named(
            "a",
            FailsOn {
                event: 3,
                seen: a.clone(),
                opens: None,
            },
        );
        let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
        pipeline.subscribe(&p, &ca).subscribe(&p, &cb);
        let running = pipeline.start();
        let result = if transient {
            within(async {
                while told.lock().unwrap().is_empty() {
                    tokio::task::yield_now().await;
                }
                let before = b.lock().unwrap().len();
                while b.lock().unwrap().len() < before + 20 {
                    tokio::task::yield_now().await;
                }
            })
            .await;
            within(running.shutdown()).await
        } else {
            within(running).await
        };
        let (report, error) = report_of(result);
        balanced(&report);
        let told = told.lock().unwrap().clone();
        assert_eq!(told.len(), 1, "{case}: {told:?}\n{report}");
        assert_eq!(told[0].0, "a", "{case}: {told:?}");
        assert_eq!(
            told[0].1,
            genstage::CancelReason::Failed { cause: "a".into() },
            "{case}"
        );
        let error = error.unwrap_or_else(|| panic!("{case}: a fails\n{report}"));
        assert_eq!(error.stage(), "a", "{case}: {error:?}");
        let (sa, sb, sp) = (
            stage(&report, "a"),
            stage(&report, "b"),
            stage(&report, "p"),
        );
        assert!(sa.failed(), "{case}: {report}");
        // `a` was sent 0..10 and failed on its first batch, 0..5.
        assert_eq!(
            (sa.events_in, lost(sa, LossReason::FailedBatch), sa.lost),
            (0, 5, 10),
            "{case}: {report}"
        );
        if transient {
            assert_eq!(
                (sp.restarts, sp.status.clone(), report.totals().lost),
                (1, StageStatus::ShutDown, 10),
                "{case}: {report}"
            );
            assert_eq!(sb.events_in, sp.emitted - 10, "{case}: {report}");
            assert_eq!(taken(&b), (10..sp.emitted).collect::<Vec<_>>(), "{case}");
        } else {
            assert!(sp.failed(), "{case}: {report}");
            assert_eq!(
                sp.emitted,
                sb.events_in + report.totals().lost,
                "{case}: {report}"
            );
            assert_eq!(
                sb.status,
                StageStatus::Cancelled {
                    cause: Some("p".into())
                },
                "{case}: {report}"
            );
        }
    }
}

/// Records what it handles; each batch waits for a permit of `gate` first.
struct Gated {
    gate: Arc<Semaphore>,
    seen: Seen,
}

impl Consumer for Gated {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.gate.acquire().await.expect("open").forget();
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
}

/// Records what it handles; fails on `event`.
struct FailsOn {
    event: u64,
    seen: Seen,
    /// Opened wide when it fails.
    opens: Option<Arc<Semaphore>>,
}

impl Consumer for FailsOn {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.contains(&self.event) {
            if let Some(gate) = &self.opens {
                gate.add_permits(1 << 20);
            }
            return Err(format!("FailsOn failed on {}", self.event).into());
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
}

// ---------------------------------------------------------------------------------------------
// Broadcasts and partitions whose consumer or producer_consumer fails and restarts.

/// Counts `0..end` (its values share the count), broadcast or partitioned by parity.
struct Caster {
    next: Arc<AtomicU64>,
    end: u64,
    partitioned: bool,
}

impl Producer for Caster {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_on(&self.next, demand, self.end))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        by_parity_or_to_all(self.partitioned)
    }
}

impl Partition<u64> for Caster {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// Records the batches it handles; fails (before recording) on a batch holding one of its
/// faults.
struct Rec {
    faults: Faults,
    fault: Fault,
    seen: Seen,
    policy: RestartPolicy<u64>,
}

impl Consumer for Rec {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if let Some(&event) = events.iter().find(|&&event| self.faults.strikes(event)) {
            fail(self.fault, "Rec", event)?;
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

fn transient(redeliver: bool) -> RestartPolicy<u64> {
    if redeliver {
        RestartPolicy::transient().redeliver()
    } else {
        RestartPolicy::transient()
    }
}

/// `expected` less one contiguous run of it holding `failed_on`, of `lost` events, is `seen`.
fn seen_but_a_batch(seen: &[u64], expected: &[u64], failed_on: u64, lost: u64, case: &str) {
    let at = expected
        .iter()
        .position(|&n| n == failed_on)
        .expect("fails on an expected event");
    // Where `seen` first differs from `expected`: the failed batch's first event.
    let start = seen
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(seen.len());
    let end = start + lost as usize;
    assert!(
        lost > 0 && start <= at && end > at,
        "{case}: lost {lost} around {at}"
    );
    let mut kept = expected[..start].to_vec();
    kept.extend_from_slice(&expected[end..]);
    assert_eq!(seen, kept, "{case}");
}

/// A broadcast with a selector per consumer (evens, threes, fives: 150 passes all three, 80 of
/// `0..300` none), one consumer transient, failing once on 150, in each position: the others get
/// exactly their events; it gets its own, all with redelivery, all but the failed batch without;
/// the events no selector accepts are discarded; every edge balances.
#[tokio::test]
async fn a_selective_broadcast_with_a_restarting_consumer_in_each_position() {
    let selectors: [fn(&u64) -> bool; 3] = [|n| n % 2 == 0, |n| n % 3 == 0, |n| n % 5 == 0];
    for failing in 0..3 {
        for redeliver in [false, true] {
            for fault in [Fault::Error, Fault::Panic] {
                let case = format!("failing {failing} redeliver {redeliver} {fault:?}");
                let mut pipeline = Pipeline::new();
                let next = Arc::new(AtomicU64::new(0));
                let p = pipeline.add_producer_named(
                    "p",
                    Caster {
                        next,
                        end: 300,
                        partitioned: false,
                    },
                );
                let mut seen = Vec::new();
                for (i, selector) in selectors.iter().enumerate() {
                    let s = Seen::default();
                    seen.push(s.clone());
                    let faults = Faults::on(&[(150, u32::from(i == failing))]);
                    let policy = if i == failing {
                        transient(redeliver)
                    } else {
                        RestartPolicy::temporary()
                    };
                    let c = pipeline.add_consumer_with_as(Some(format!("c{i}")), move || Rec {
                        faults: faults.clone(),
                        fault,
                        seen: s.clone(),
                        policy,
                    });
                    pipeline.subscribe_selected(&p, &c, options(10, 5), *selector);
                }
                let (report, error) = report_of(within(pipeline.run()).await);
                balanced(&report);
                assert!(error.is_none(), "{case}: {error:?}\n{report}");
                assert_eq!(stage(&report, "p").discarded, 80, "{case}: {report}");
                for (i, selector) in selectors.iter().enumerate() {
                    let expected: Vec<u64> = (0..300).filter(selector).collect();
                    let c = stage(&report, &format!("c{i}"));
                    assert_eq!(c.status, StageStatus::Finished, "{case}: c{i}");
                    if i != failing || redeliver {
                        assert_eq!(taken(&seen[i]), expected, "{case}: c{i}");
                        assert_eq!(
                            (c.events_in, c.lost),
                            (expected.len() as u64, 0),
                            "{case}: c{i}\n{report}"
                        );
                    }
                    if i == failing {
                        assert_eq!(c.restarts, 1, "{case}: {report}");
                        if redeliver {
                            assert!(c.redelivered > 0, "{case}: {report}");
                        } else {
                            let failed = lost(c, LossReason::FailedBatch);
                            assert_eq!(c.lost, failed, "{case}: {report}");
                            assert_eq!(
                                c.events_in + failed,
                                expected.len() as u64,
                                "{case}: {report}"
                            );
                            seen_but_a_batch(&taken(&seen[i]), &expected, 150, failed, &case);
                        }
                    } else {
                        assert_eq!(c.restarts, 0, "{case}: c{i}");
                    }
                }
            }
        }
    }
}

/// Passes events on; fails (emitting nothing of the batch) on a batch holding one of its faults;
/// broadcasts or partitions by parity.
struct Relay {
    faults: Faults,
    fault: Fault,
    partitioned: bool,
    policy: RestartPolicy<u64>,
}

impl ProducerConsumer for Relay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        if let Some(&event) = events.iter().find(|&&event| self.faults.strikes(event)) {
            match self.fault {
                Fault::Error => return Err(format!("Relay failed on {event}").into()),
                Fault::Panic => panic!("Relay panicked on {event}"),
            }
        }
        Ok(events)
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        by_parity_or_to_all(self.partitioned)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

impl Partition<u64> for Relay {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// A broadcasting (second consumer with a selector) or partitioning producer_consumer, transient,
/// failing once on 150: with redelivery every consumer gets exactly its events in order; without,
/// each loses the part of the failed batch it would have got, and nothing else.
#[tokio::test]
async fn a_broadcasting_or_partitioning_producer_consumer_fails_and_restarts() {
    for partitioned in [false, true] {
        for redeliver in [false, true] {
            for fault in [Fault::Error, Fault::Panic] {
                let case = format!("partitioned {partitioned} redeliver {redeliver} {fault:?}");
                let mut pipeline = Pipeline::new();
                let p = pipeline.add_producer_as(Some("p".into()), from_iter(0..300u64));
                let faults = Faults::on(&[(150, 1)]);
                let policy = transient(redeliver);
                let m = pipeline.add_producer_consumer_with_as(Some("m".into()), move || Relay {
                    faults: faults.clone(),
                    fault,
                    partitioned,
                    policy,
                });
                pipeline.subscribe(&p, &m);
                let (a, b) = (Seen::default(), Seen::default());
                let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
                let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
                let expected_a: Vec<u64> = if partitioned {
                    pipeline.subscribe_with(&m, &ca, options(10, 5).partition(0));
                    pipeline.subscribe_with(&m, &cb, options(10, 5).partition(1));
                    (0..300).filter(|n| n % 2 == 0).collect()
                } else {
                    pipeline.subscribe(&m, &ca);
                    pipeline.subscribe_selected(&m, &cb, options(10, 5), |n: &u64| n % 2 == 1);
                    (0..300).collect()
                };
                let expected_b: Vec<u64> = (0..300).filter(|n| n % 2 == 1).collect();
                let (report, error) = report_of(within(pipeline.run()).await);
                balanced(&report);
                assert!(error.is_none(), "{case}: {error:?}\n{report}");
                let sm = stage(&report, "m");
                assert_eq!(sm.restarts, 1, "{case}: {report}");
                if redeliver {
                    assert_eq!(sm.lost, 0, "{case}: {report}");
                    assert!(sm.redelivered > 0, "{case}: {report}");
                    assert_eq!(taken(&a), expected_a, "{case}");
                    assert_eq!(taken(&b), expected_b, "{case}");
                } else {
                    // The failed batch, m's input of at most 5 events around 150, is lost at m.
                    let failed = lost(sm, LossReason::FailedBatch);
                    assert_eq!(sm.lost, failed, "{case}: {report}");
                    assert!((1..=5).contains(&failed), "{case}: {report}");
                    let handled = stage(&report, "a").events_in + stage(&report, "b").events_in;
                    assert_eq!(
                        report.totals().lost,
                        failed,
                        "{case}: only the failed batch is lost\n{report}"
                    );
                    let (a, b) = (taken(&a), taken(&b));
                    assert_eq!(handled, (a.len() + b.len()) as u64, "{case}: {report}");
                    // What each misses is its share of one run of the input, around 150.
                    let missing = |expected: &[u64], got: &[u64]| -> Vec<u64> {
                        expected
                            .iter()
                            .filter(|n| !got.contains(n))
                            .copied()
                            .collect()
                    };
                    let (missing_a, missing_b) =
                        (missing(&expected_a, &a), missing(&expected_b, &b));
                    let mut batch: Vec<u64> = missing_a.iter().chain(&missing_b).copied().collect();
                    batch.sort_unstable();
                    batch.dedup();
                    assert_eq!(batch.len() as u64, failed, "{case}: {batch:?}");
                    assert!(batch.contains(&150), "{case}: {batch:?}");
                    assert!(
                        batch.windows(2).all(|w| w[1] == w[0] + 1),
                        "{case}: {batch:?}"
                    );
                    assert_eq!(
                        missing(&batch, &missing_a),
                        missing(&batch, &expected_a),
                        "{case}"
                    );
                    assert_eq!(
                        missing(&batch, &missing_b),
                        missing(&batch, &expected_b),
                        "{case}"
                    );
                    // In order, each.
                    assert!(a.windows(2).all(|w| w[0] < w[1]), "{case}");
                    assert!(b.windows(2).all(|w| w[0] < w[1]), "{case}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdowns and aborts arriving while a call waits for its events to go out, while a
// producer accumulates, while a manual consumer asks for nothing.

/// Emits what it is pushed, from `handle_call` (answered once the events are dispatched) or
/// `handle_cast`; its `handle_demand` has nothing of its own (it returns nothing, and is asked
/// again after a back-off, taking its messages in between).
struct Pusher {
    accumulate: bool,
}

struct Push(Vec<u64>);

impl Producer for Pusher {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        Ok(Emit::more(Vec::new()))
    }
    fn producer_options(&self) -> ProducerOptions {
        let options = ProducerOptions::for_producer();
        if self.accumulate {
            options.demand(DemandMode::Accumulate)
        } else {
            options
        }
    }
}

impl HandleCall<Push> for Pusher {
    type Reply = ();
    type Emitted = Vec<u64>;
    async fn handle_call(
        &mut self,
        Push(events): Push,
        reply: ReplyTo<()>,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        reply.reply(());
        Ok(events)
    }
}

impl HandleCast<Push> for Pusher {
    type Emitted = Vec<u64>;
    async fn handle_cast(
        &mut self,
        Push(events): Push,
        _ctx: &mut Context<'_, Self>,
    ) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    Shutdown,
    ShutdownWithin,
    Abort,
}

/// A pushed batch waits in the buffer (its consumer, gated, has no demand; the call is answered
/// once the events are given to the dispatcher, as GenStage's `{:reply, …, events, …}`); the
/// pipeline is then shut down or aborted. Shut down, the gate opens and every event is handled.
/// Aborted or timed out, the buffered and unhandled events are lost with their reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ending_while_a_call_waits_for_its_events_to_go_out() {
    for ending in [Ending::Shutdown, Ending::ShutdownWithin, Ending::Abort] {
        let case = format!("{ending:?}");
        let gate = Arc::new(Semaphore::new(0));
        let seen = Seen::default();
        let mut pipeline = Pipeline::new();
        let p = pipeline.add_producer_named("p", Pusher { accumulate: false });
        let c = pipeline.add_consumer_named(
            "c",
            Gated {
                gate: gate.clone(),
                seen: seen.clone(),
            },
        );
        pipeline.subscribe(&p, &c);
        let running = pipeline.start();
        within(p.call(Push((0..10).collect())))
            .await
            .expect("dispatched at once");
        let second = tokio::spawn({
            let p = p.clone();
            async move { p.call(Push((10..20).collect())).await }
        });
        within(async {
            while p.estimate_buffered_count().await.expect("running") < 10 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let result = match ending {
            Ending::Shutdown => {
                let shutdown = tokio::spawn(running.shutdown());
                gate.add_permits(1 << 20);
                within(shutdown).await.expect("joined")
            }
            Ending::ShutdownWithin => {
                within(running.shutdown_within(Duration::from_millis(50))).await
            }
            Ending::Abort => within(running.abort()).await,
        };
        let answer = within(second).await.expect("joined");
        let (report, error) = report_of(result);
        balanced(&report);
        let (sp, sc) = (stage(&report, "p"), stage(&report, "c"));
        assert_eq!(sp.emitted, 20, "{case}: {report}");
        match ending {
            Ending::Shutdown => {
                assert!(error.is_none(), "{case}: {error:?}");
                assert_eq!(answer, Ok(()), "{case}");
                assert_eq!((sc.events_in, report.totals().lost), (20, 0), "{case}");
                assert_eq!(taken(&seen), (0..20).collect::<Vec<_>>(), "{case}");
                assert_eq!(sp.status, StageStatus::ShutDown, "{case}: {report}");
            }
            Ending::ShutdownWithin | Ending::Abort => {
                assert_eq!(answer, Ok(()), "{case}");
                assert_eq!(sc.events_in, 0, "{case}: {report}");
                assert_eq!(
                    (
                        lost(sp, LossReason::Buffered),
                        lost(sc, LossReason::Unhandled)
                    ),
                    (10, 10),
                    "{case}: {report}"
                );
                if ending == Ending::ShutdownWithin {
                    let Some(PipelineError::ShutdownTimeout { busy, .. }) = &error else {
                        panic!("{case}: {error:?}");
                    };
                    assert!(busy.contains(&"c".to_string()), "{case}: {busy:?}");
                }
            }
        }
    }
}

/// A producer accumulating demand, with events cast to it waiting in its buffer, is shut down:
/// a graceful shutdown delivers what it emitted (buffered ones included) or, at the least, ends
/// within its time limit with the buffered events lost as `Buffered`; an abort loses them as
/// `Buffered`. Nothing hangs and the report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accumulating_producer_with_buffered_events_shut_down_or_aborted() {
    for ending in [Ending::Shutdown, Ending::ShutdownWithin, Ending::Abort] {
        let case = format!("{ending:?}");
        let seen = Seen::default();
        let mut pipeline = Pipeline::new();
        let p = pipeline.add_producer_named("p", Pusher { accumulate: true });
        let c = pipeline.add_consumer_named("c", Collect(seen.clone()));
        pipeline.subscribe(&p, &c);
        let running = pipeline.start();
        p.cast(Push((0..7).collect())).expect("running");
        within(async {
            while p.estimate_buffered_count().await.expect("running") < 7 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let result = match ending {
            Ending::Shutdown => within(running.shutdown()).await,
            Ending::ShutdownWithin => within(running.shutdown_within(Duration::from_secs(5))).await,
            Ending::Abort => within(running.abort()).await,
        };
        let (report, error) = report_of(result);
        balanced(&report);
        let (sp, sc) = (stage(&report, "p"), stage(&report, "c"));
        assert_eq!(sp.emitted, 7, "{case}: {report}");
        match ending {
            Ending::Shutdown | Ending::ShutdownWithin => {
                // What the producer emitted is delivered by a graceful shutdown.
                assert!(error.is_none(), "{case}: {error:?}\n{report}");
                assert_eq!(
                    (sc.events_in, report.totals().lost),
                    (7, 0),
                    "{case}: {report}"
                );
                assert_eq!(taken(&seen), (0..7).collect::<Vec<_>>(), "{case}");
            }
            Ending::Abort => {
                assert_eq!(lost(sp, LossReason::Buffered), 7, "{case}: {report}");
                assert_eq!(sc.events_in, 0, "{case}: {report}");
            }
        }
    }
}

/// A consumer in manual demand that never asks beyond its first `max_demand`, fed by a producer
/// counting for ever: a graceful shutdown ends at once with the 10 it got handled, nothing lost;
/// with 10 more waiting in a producer's buffer (pushed), a shutdown cannot deliver them, and
/// `shutdown_within` ends naming the producer, the 10 lost as `Buffered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_consumer_that_asks_for_nothing_more_is_shut_down() {
    // Nothing buffered.
    let seen = Seen::default();
    let mut pipeline = Pipeline::new();
    let p = pipeline.add_producer_as(Some("p".into()), from_iter(0u64..));
    let c = pipeline.add_consumer_named("c", Manual { seen: seen.clone() });
    pipeline.subscribe(&p, &c);
    let running = pipeline.start();
    within(async {
        while seen.lock().unwrap().len() < 10 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report = within(running.shutdown()).await.expect("a clean shutdown");
    balanced(&report);
    assert_eq!(stage(&report, "c").events_in, 10, "{report}");
    assert_eq!(report.totals().lost, 0, "{report}");
    assert_eq!(stage(&report, "p").emitted, 10, "{report}");

    // Ten more buffered, which the consumer never asks for.
    let seen = Seen::default();
    let mut pipeline = Pipeline::new();
    let p = pipeline.add_producer_named("p", Pusher { accumulate: false });
    let c = pipeline.add_consumer_named("c", Manual { seen: seen.clone() });
    pipeline.subscribe(&p, &c);
    let running = pipeline.start();
    p.cast(Push((0..20).collect())).expect("running");
    within(async {
        while seen.lock().unwrap().len() < 10 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (report, error) =
        report_of(within(running.shutdown_within(Duration::from_millis(100))).await);
    balanced(&report);
    let Some(PipelineError::ShutdownTimeout { busy, .. }) = &error else {
        panic!("{error:?}\n{report}");
    };
    assert!(busy.contains(&"p".to_string()), "{busy:?}\n{report}");
    assert_eq!(stage(&report, "c").events_in, 10, "{report}");
    assert_eq!(
        lost(stage(&report, "p"), LossReason::Buffered),
        10,
        "{report}"
    );
    assert_eq!(report.totals().lost, 10, "{report}");
}

/// Manual demand, max 10; records and never asks.
struct Manual {
    seen: Seen,
}

impl Consumer for Manual {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn handle_subscribe(&mut self, _: &Subscription, _ctx: &mut Context<'_, Self>) -> Demand {
        Demand::Manual
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
}

// ---------------------------------------------------------------------------------------------
// An ending while a broadcast consumer handles its redelivered batch.

/// Records what it handles; fails once on 20, and holds the redelivered 20 at `gate`, telling
/// `waiting` when it does.
struct Redelivered {
    failed: Arc<AtomicBool>,
    waiting: Arc<AtomicBool>,
    gate: Arc<Semaphore>,
    seen: Seen,
}

impl Consumer for Redelivered {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if events.contains(&20) {
            if !self.failed.swap(true, Ordering::SeqCst) {
                return Err("Redelivered failed on 20".into());
            }
            self.waiting.store(true, Ordering::SeqCst);
            self.gate.acquire().await.expect("open").forget();
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient().redeliver()
    }
}

/// `p` broadcasts `0..100` to `a` and to `r`, which fails on 20 and holds its redelivery; the
/// pipeline is shut down (then the gate opens: both get everything, nothing lost), shut down
/// within a deadline or aborted (the report balances, only `Unhandled`, `Buffered` or
/// `ConsumerGone` losses, and `a` never handled more than the broadcast's pace allows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ending_while_a_broadcast_consumer_handles_its_redelivered_batch() {
    for ending in [Ending::Shutdown, Ending::ShutdownWithin, Ending::Abort] {
        let case = format!("{ending:?}");
        let gate = Arc::new(Semaphore::new(0));
        let waiting = Arc::new(AtomicBool::new(false));
        let (a, r) = (Seen::default(), Seen::default());
        let mut pipeline = Pipeline::new();
        let p = pipeline.add_producer_named(
            "p",
            Caster {
                next: Arc::default(),
                end: 100,
                partitioned: false,
            },
        );
        let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
        let (failed, w, g, s) = (
            Arc::new(AtomicBool::new(false)),
            waiting.clone(),
            gate.clone(),
            r.clone(),
        );
        let cr = pipeline.add_consumer_with_as(Some("r".into()), move || Redelivered {
            failed: failed.clone(),
            waiting: w.clone(),
            gate: g.clone(),
            seen: s.clone(),
        });
        pipeline.subscribe(&p, &ca).subscribe(&p, &cr);
        let running = pipeline.start();
        within(async {
            while !waiting.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let result = match ending {
            Ending::Shutdown => {
                let shutdown = tokio::spawn(running.shutdown());
                gate.add_permits(1 << 20);
                within(shutdown).await.expect("joined")
            }
            Ending::ShutdownWithin => {
                within(running.shutdown_within(Duration::from_millis(50))).await
            }
            Ending::Abort => within(running.abort()).await,
        };
        let (report, error) = report_of(result);
        balanced(&report);
        let (sa, sr) = (stage(&report, "a"), stage(&report, "r"));
        assert_eq!(sr.restarts, 1, "{case}: {report}");
        assert!(sr.redelivered >= 1, "{case}: {report}");
        if ending == Ending::Shutdown {
            assert!(error.is_none(), "{case}: {error:?}");
            let emitted = stage(&report, "p").emitted;
            assert_eq!(
                (sa.events_in, sr.events_in),
                (emitted, emitted),
                "{case}: {report}"
            );
            assert_eq!(report.totals().lost, 0, "{case}: {report}");
            assert_eq!(taken(&a), (0..emitted).collect::<Vec<_>>(), "{case}");
            assert_eq!(taken(&r), (0..emitted).collect::<Vec<_>>(), "{case}");
        } else {
            // `r` handled 0..20 only (the redelivered 20 never returned).
            assert_eq!(taken(&r), (0..20).collect::<Vec<_>>(), "{case}");
            assert_eq!(sr.events_in, 20, "{case}: {report}");
            for row in &report.stages {
                for loss in &row.losses {
                    assert!(
                        matches!(
                            loss.reason,
                            LossReason::Unhandled | LossReason::Buffered | LossReason::ConsumerGone
                        ),
                        "{case}: {report}"
                    );
                }
            }
            assert!(sr.lost >= 1, "{case}: {report}");
            if ending == Ending::ShutdownWithin {
                let Some(PipelineError::ShutdownTimeout { busy, .. }) = &error else {
                    panic!("{case}: {error:?}");
                };
                assert!(busy.contains(&"r".to_string()), "{case}: {busy:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ConsumerSupervisor children failing during a graceful shutdown.

/// A supervisor's 10 children all run, held, when a graceful shutdown starts; then the odd ones
/// fail once. Transient, they are restarted during the shutdown and all 10 handled; temporary,
/// the 5 odd ones are lost as `ChildFailed`; aborted with children waiting for a long restart
/// delay, they are lost as `Unhandled`. Each ending balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_children_failing_during_a_shutdown() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Case {
        Transient,
        Temporary,
        AbortWhileRestarting,
    }
    for case in [Case::Transient, Case::Temporary, Case::AbortWhileRestarting] {
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let failed: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (g, st, f) = (gate.clone(), started.clone(), failed.clone());
        let child = move |event: u64| {
            let (g, st, f) = (g.clone(), st.clone(), f.clone());
            async move {
                st.fetch_add(1, Ordering::SeqCst);
                g.acquire().await.expect("open").forget();
                let mut failed = f.lock().unwrap();
                if event % 2 == 1 && !failed.contains(&event) {
                    failed.push(event);
                    return Err(format!("child failed on {event}"));
                }
                Ok(())
            }
        };
        let jobs = ConsumerSupervisor::new(child).max_demand(10).min_demand(0);
        let jobs = match case {
            Case::Transient => jobs.transient().max_restarts(100),
            Case::Temporary => jobs,
            Case::AbortWhileRestarting => jobs
                .transient()
                .max_restarts(100)
                .restart_delay(Duration::from_secs(3600)),
        };
        let counts = jobs.watch_counts();
        let mut pipeline = Pipeline::new();
        let p = pipeline.add_producer_as(Some("p".into()), from_iter(0..10u64));
        let jobs = pipeline.add_consumer_named("jobs", jobs);
        pipeline.subscribe(&p, &jobs);
        let running = pipeline.start();
        within(async {
            while started.load(Ordering::SeqCst) < 10 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let result = match case {
            Case::Transient | Case::Temporary => {
                let shutdown = tokio::spawn(running.shutdown());
                gate.add_permits(1 << 20);
                within(shutdown).await.expect("joined")
            }
            Case::AbortWhileRestarting => {
                gate.add_permits(1 << 20);
                within(async {
                    loop {
                        let now = *counts.borrow();
                        if now.restarting == 5 && now.handled == 5 {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                })
                .await;
                within(running.abort()).await
            }
        };
        let (report, error) = report_of(result);
        balanced(&report);
        let sj = stage(&report, "jobs");
        match case {
            Case::Transient => {
                assert!(error.is_none(), "{case:?}: {error:?}");
                assert_eq!((sj.events_in, sj.lost), (10, 0), "{case:?}: {report}");
                assert_eq!(counts.borrow().restarts, 5, "{case:?}");
            }
            Case::Temporary => {
                assert_eq!((sj.events_in, sj.lost), (5, 5), "{case:?}: {report}");
                assert_eq!(lost(sj, LossReason::ChildFailed), 5, "{case:?}: {report}");
            }
            Case::AbortWhileRestarting => {
                assert_eq!((sj.events_in, sj.lost), (5, 5), "{case:?}: {report}");
                assert_eq!(lost(sj, LossReason::Unhandled), 5, "{case:?}: {report}");
                assert_eq!(sj.status, StageStatus::Aborted, "{case:?}: {report}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A consumer added at run time to a partitioned producer's free partition, failing there.

/// A partitioned producer whose partition 1 has lost its consumer (cancelled through the
/// handle); a consumer added at run time by a constructor, transient with redelivery, takes it
/// and fails once on an event: it is restarted, and partition 1's events are each handled once,
/// in order, between the old consumer and the new, until a graceful shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_added_to_a_free_partition_fails_and_restarts() {
    let gate = Arc::new(Semaphore::new(0));
    let (even, old, new) = (Seen::default(), Seen::default(), Seen::default());
    let tag = Arc::new(Mutex::new(None));
    let mut pipeline = Pipeline::new();
    let p = pipeline.add_producer_named(
        "p",
        Caster {
            next: Arc::default(),
            end: u64::MAX,
            partitioned: true,
        },
    );
    let ce = pipeline.add_consumer_named("even", Collect(even.clone()));
    let co = pipeline.add_consumer_named(
        "old",
        TaggedGate {
            tag: tag.clone(),
            gate: gate.clone(),
            seen: old.clone(),
        },
    );
    pipeline.subscribe_with(&p, &ce, options(10, 5).partition(0));
    pipeline.subscribe_with(&p, &co, options(10, 5).partition(1));
    let running = pipeline.start();
    gate.add_permits(2);
    within(async {
        while old.lock().unwrap().len() < 10 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let t = tag.lock().unwrap().expect("subscribed");
    within(running.cancel(t)).await.expect("cancelled");
    gate.add_permits(1 << 20);
    let last_old = *old.lock().unwrap().last().expect("some");
    let faults = Faults::on(&[(301, 1)]);
    let n = new.clone();
    let cn = within(
        running.add_consumer_with_as(Some("new".into()), move || Rec {
            faults: faults.clone(),
            fault: Fault::Panic,
            seen: n.clone(),
            policy: transient(true),
        }),
    )
    .await
    .expect("added");
    within(running.subscribe_with(&p, &cn, options(10, 5).partition(1)))
        .await
        .expect("subscribed");
    within(async {
        while new.lock().unwrap().last().is_none_or(|&n| n < 311) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (report, error) = report_of(within(running.shutdown()).await);
    balanced(&report);
    assert!(error.is_none(), "{error:?}\n{report}");
    let emitted = stage(&report, "p").emitted;
    assert_eq!(
        taken(&even),
        (0..emitted).filter(|n| n % 2 == 0).collect::<Vec<_>>()
    );
    let mut odd = taken(&old);
    assert!(last_old < 301);
    odd.extend(taken(&new));
    assert_eq!(odd, (0..emitted).filter(|n| n % 2 == 1).collect::<Vec<_>>());
    let sn = stage(&report, "new");
    assert_eq!((sn.restarts, sn.lost), (1, 0), "{report}");
    assert!(sn.redelivered >= 1, "{report}");
    assert_eq!(report.totals().lost, 0, "{report}");
}

/// Records its subscription's tag, and what it handles, each batch after a permit of `gate`.
struct TaggedGate {
    tag: Arc<Mutex<Option<SubscriptionTag>>>,
    gate: Arc<Semaphore>,
    seen: Seen,
}

impl Consumer for TaggedGate {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        *self.tag.lock().unwrap() = Some(subscription.tag());
        Demand::Automatic
    }
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.gate.acquire().await.expect("open").forget();
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
}

// ---------------------------------------------------------------------------------------------
// Panics in a producer_consumer's partition function and selectors, restarted by its policy.

/// Passes events on, partitioned by parity or broadcast to selectors; its partition function
/// panics once on 150 (or, `always`, every time).
struct RouteFails {
    armed: Arc<AtomicBool>,
    partitioned: bool,
    policy: RestartPolicy<u64>,
}

impl ProducerConsumer for RouteFails {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        by_parity_or_to_all(self.partitioned)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

impl Partition<u64> for RouteFails {
    fn partition(&self, event: &u64) -> Option<usize> {
        if *event == 150 && self.armed.swap(false, Ordering::SeqCst) {
            panic!("the partition function panicked on 150");
        }
        Some((event % 2) as usize)
    }
}

/// Runs `0..300` through `m`, a transient producer_consumer (with or without redelivery) that
/// partitions by parity into `a` and `b`, or broadcasts to `a` (evens) and `b` (odds), whose
/// partition function, or `b`'s selector, panics once on 150; or, `in_producer`, the same with
/// the producer itself partitioning or broadcasting. Returns the report and what `a` and `b`
/// got.
async fn routing_panic(
    partitioned: bool,
    redeliver: bool,
    in_producer: bool,
) -> (Report, Option<PipelineError>, Vec<u64>, Vec<u64>) {
    let armed = Arc::new(AtomicBool::new(true));
    let mut pipeline = Pipeline::new();
    let (a, b) = (Seen::default(), Seen::default());
    let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
    let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
    let selector_armed = armed.clone();
    let odd = move |n: &u64| {
        if *n == 150 && selector_armed.swap(false, Ordering::SeqCst) {
            panic!("the selector panicked on 150");
        }
        n % 2 == 1
    };
    macro_rules! wire {
        ($m:expr) => {
            if partitioned {
                pipeline.subscribe_with(&$m, &ca, options(10, 5).partition(0));
                pipeline.subscribe_with(&$m, &cb, options(10, 5).partition(1));
            } else {
                pipeline.subscribe_selected(&$m, &ca, options(10, 5), |n: &u64| n % 2 == 0);
                pipeline.subscribe_selected(&$m, &cb, options(10, 5), odd);
            }
        };
    }
    if in_producer {
        let next = Arc::new(AtomicU64::new(0));
        let a2 = armed.clone();
        let m = pipeline.add_producer_with_as(Some("m".into()), move || RoutingProducer {
            next: next.clone(),
            armed: a2.clone(),
            partitioned,
        });
        wire!(m);
    } else {
        let p = pipeline.add_producer_as(Some("p".into()), from_iter(0..300u64));
        let policy = transient(redeliver);
        let a2 = armed.clone();
        let m = pipeline.add_producer_consumer_with_as(Some("m".into()), move || RouteFails {
            armed: a2.clone(),
            partitioned,
            policy,
        });
        pipeline.subscribe(&p, &m);
        wire!(m);
    }
    let (report, error) = report_of(within(pipeline.run()).await);
    let (a, b) = (taken(&a), taken(&b));
    (report, error, a, b)
}

/// Counts `0..300` (its values share the count), transient; partitions by parity or
/// broadcasts, its partition function panicking once on 150.
struct RoutingProducer {
    next: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    partitioned: bool,
}

impl Producer for RoutingProducer {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_on(&self.next, demand.min(10), 300))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        by_parity_or_to_all(self.partitioned)
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient()
    }
}

impl Partition<u64> for RoutingProducer {
    fn partition(&self, event: &u64) -> Option<usize> {
        if *event == 150 && self.armed.swap(false, Ordering::SeqCst) {
            panic!("the partition function panicked on 150");
        }
        Some((event % 2) as usize)
    }
}

/// The report of a run whose routing panicked once balances, each consumer got its events in
/// order and none twice, and what is missing is what the report counts as lost.
fn routing_panic_accounted(
    case: &str,
    report: &Report,
    error: Option<&PipelineError>,
    a: &[u64],
    b: &[u64],
) {
    assert!(error.is_none(), "{case}: {error:?}\n{report}");
    balanced(report);
    assert_eq!(stage(report, "m").restarts, 1, "{case}: {report}");
    assert!(a.windows(2).all(|w| w[0] < w[1]), "{case}: {a:?}");
    assert!(b.windows(2).all(|w| w[0] < w[1]), "{case}: {b:?}");
    assert!(
        a.iter().all(|n| n % 2 == 0) && b.iter().all(|n| n % 2 == 1),
        "{case}"
    );
    let missing = 300 - a.len() - b.len();
    assert_eq!(
        missing as u64,
        report.totals().lost,
        "{case}: what is missing is what is lost\n{report}"
    );
}

/// A transient producer or producer_consumer whose partition function panics once on 150 is
/// restarted; each partition's consumer gets its events in order, none twice, and the batch
/// the function panicked on is counted lost, unless a redelivering producer_consumer handles it
/// again: the report balances.
#[tokio::test]
async fn a_partition_function_panic_in_a_restarted_stage_is_accounted() {
    for (redeliver, in_producer) in [(false, false), (true, false), (false, true)] {
        let case = format!("redeliver {redeliver} in_producer {in_producer}");
        let (report, error, a, b) = routing_panic(true, redeliver, in_producer).await;
        routing_panic_accounted(&case, &report, error.as_ref(), &a, &b);
        assert_eq!(report.totals().lost > 0, !redeliver, "{case}: {report}");
    }
}

/// A selector that panics in a restarted broadcasting stage (producer or producer_consumer):
/// every selector runs before the broadcast sends anything or uses up any demand, so the batch
/// is lost whole, counted once, and the report balances. (It had sent the consumers whose
/// selectors ran first their part, which the stage counted lost as well: emitted 600 = handled
/// 598 + lost 5, not balanced.)
#[tokio::test]
async fn a_selector_panic_in_a_restarted_broadcasting_stage_is_accounted() {
    for (redeliver, in_producer) in [(false, false), (true, false), (false, true)] {
        let case = format!("redeliver {redeliver} in_producer {in_producer}");
        let (report, error, a, b) = routing_panic(false, redeliver, in_producer).await;
        routing_panic_accounted(&case, &report, error.as_ref(), &a, &b);
    }
}

/// A producer_consumer's partition function that panics on the output of a batch fails that
/// batch, as a callback's failure does: it is lost with the failed batch (`FailedBatch`), or,
/// with `redeliver`, handled again, and every event arrives. (It was counted lost "in its buffer
/// when it stopped" though the stage went on, and lost even with `redeliver`.)
#[tokio::test]
async fn a_partition_function_panic_is_a_failed_batch_and_redelivered() {
    for redeliver in [false, true] {
        let case = format!("redeliver {redeliver}");
        let (report, error, a, b) = routing_panic(true, redeliver, false).await;
        routing_panic_accounted(&case, &report, error.as_ref(), &a, &b);
        let m = stage(&report, "m");
        if redeliver {
            assert_eq!(m.lost, 0, "{case}: {report}");
            assert_eq!(a.len() + b.len(), 300, "{case}");
        } else {
            assert_eq!(lost(m, LossReason::FailedBatch), m.lost, "{case}: {report}");
        }
    }
}

/// Passes events on, partitioned by parity; its partition function panics on 150 as long as
/// `strikes` lasts, one strike each time.
struct StrikesOn150 {
    strikes: Arc<AtomicUsize>,
}

impl ProducerConsumer for StrikesOn150 {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::partition(2)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        transient(true)
    }
}

impl Partition<u64> for StrikesOn150 {
    fn partition(&self, event: &u64) -> Option<usize> {
        if *event == 150
            && self
                .strikes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
        {
            panic!("the partition function panicked on 150");
        }
        Some((event % 2) as usize)
    }
}

/// A redelivering producer_consumer whose partition function panics on 150 twice: on the output
/// of 150's batch, then on that of 150 handed again alone. Each time the event is handed again, as
/// after a callback's failure, and every event arrives, none lost. (Until the redelivery path
/// dispatched an event's output after it had counted the event handled, the second panic lost it.)
#[tokio::test]
async fn a_routing_panic_on_a_redelivered_event_hands_it_again() {
    let mut pipeline = Pipeline::new();
    let (a, b) = (Seen::default(), Seen::default());
    let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
    let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
    let p = pipeline.add_producer_as(Some("p".into()), from_iter(0..300u64));
    let strikes = Arc::new(AtomicUsize::new(2));
    let m = pipeline.add_producer_consumer_with_as(Some("m".into()), move || StrikesOn150 {
        strikes: strikes.clone(),
    });
    pipeline.subscribe(&p, &m);
    pipeline.subscribe_with(&m, &ca, options(10, 5).partition(0));
    pipeline.subscribe_with(&m, &cb, options(10, 5).partition(1));
    let (report, error) = report_of(within(pipeline.run()).await);
    assert!(error.is_none(), "{error:?}\n{report}");
    balanced(&report);
    let m = stage(&report, "m");
    assert_eq!(
        (m.restarts, m.lost, m.events_in, m.emitted),
        (2, 0, 300, 300),
        "{report}"
    );
    assert_eq!(taken(&a), (0..300).step_by(2).collect::<Vec<u64>>());
    assert_eq!(taken(&b), (1..300).step_by(2).collect::<Vec<u64>>());
}

// ---------------------------------------------------------------------------------------------
// A side callback that fails every time: the restart limit, not a loop.

/// A consumer that panics in `init`, `handle_subscribe` or `batch_from` every time, restarted
/// (max 3 restarts): the fourth failure ends it with `RestartLimit`, every failure listed, and
/// the report balances; with redelivery and `batch_from`, the poison is the batch's first event.
#[tokio::test]
async fn a_side_callback_failing_every_time_reaches_the_restart_limit() {
    for at in [Side::Init, Side::Subscribe, Side::BatchFrom] {
        for redeliver in [false, true] {
            let case = format!("{at:?} redeliver {redeliver}");
            let seen = Seen::default();
            let mut pipeline = Pipeline::new();
            let numbers = pipeline.add_producer_as(Some("numbers".into()), from_iter(0..50u64));
            let s = seen.clone();
            let policy = transient(redeliver).max_restarts(3, Duration::from_secs(60));
            let side = pipeline.add_consumer_with_as(Some("side".into()), move || SideConsumer {
                at,
                // Armed in every value: fails every time.
                armed: Arc::new(AtomicBool::new(true)),
                policy,
                seen: s.clone(),
            });
            pipeline.subscribe(&numbers, &side);
            let (report, error) = report_of(within(pipeline.run()).await);
            balanced(&report);
            let Some(PipelineError::RestartLimit {
                stage: name,
                failures,
                poison,
                ..
            }) = &error
            else {
                panic!("{case}: {error:?}\n{report}");
            };
            assert_eq!(name, "side", "{case}");
            assert_eq!(failures.len(), 4, "{case}: {failures:?}");
            assert!(
                failures
                    .iter()
                    .all(|f| f.contains(&format!("panicked in {at:?}"))),
                "{case}: {failures:?}"
            );
            let side = stage(&report, "side");
            assert_eq!((side.restarts, side.events_in), (3, 0), "{case}: {report}");
            assert!(taken(&seen).is_empty(), "{case}");
            if at == Side::BatchFrom && redeliver {
                assert_eq!(*poison, Some(0), "{case}");
            } else {
                assert_eq!(*poison, None, "{case}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A failure during a graceful shutdown; a cancel racing a failure.

/// Records what it handles, each batch after a permit of `gate`; fails once (its values share
/// `armed`), after the gate, on the first batch it is let through with; tells `holding` when it
/// waits at the gate.
struct FailsAfterGate {
    gate: Arc<Semaphore>,
    armed: Arc<AtomicBool>,
    holding: Arc<AtomicBool>,
    tag: Arc<Mutex<Option<SubscriptionTag>>>,
    seen: Seen,
    policy: RestartPolicy<u64>,
}

impl Consumer for FailsAfterGate {
    type Input = u64;
    fn handle_subscribe(
        &mut self,
        subscription: &Subscription,
        _: &mut Context<'_, Self>,
    ) -> Demand {
        *self.tag.lock().unwrap() = Some(subscription.tag());
        Demand::Automatic
    }
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.holding.store(true, Ordering::SeqCst);
        self.gate.acquire().await.expect("open").forget();
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(format!("FailsAfterGate failed on {events:?}").into());
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        self.policy
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Race {
    /// A graceful shutdown starts while the consumer holds its first batch; then it fails.
    Shutdown,
    /// Its subscription is cancelled through the handle while it holds its first batch; then
    /// it fails.
    Cancel,
}

/// A consumer holding its first batch of a producer counting for ever; then a graceful shutdown
/// or a cancel of its subscription; then it fails on that batch. Transient, it is restarted
/// and handles every event it was sent but the failed batch (all of them with redelivery);
/// temporary, the run fails naming it. The run ends, and the report balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_during_a_shutdown_or_racing_a_cancel() {
    for race in [Race::Shutdown, Race::Cancel] {
        for policy in [None, Some(false), Some(true)] {
            let case = format!("{race:?} restart/redeliver {policy:?}");
            let gate = Arc::new(Semaphore::new(0));
            let holding = Arc::new(AtomicBool::new(false));
            let tag = Arc::new(Mutex::new(None));
            let seen = Seen::default();
            let mut pipeline = Pipeline::new();
            let p = pipeline.add_producer_as(Some("p".into()), from_iter(0u64..));
            let (g, h, t, s) = (gate.clone(), holding.clone(), tag.clone(), seen.clone());
            let armed = Arc::new(AtomicBool::new(true));
            let restart = match policy {
                None => RestartPolicy::temporary(),
                Some(redeliver) => transient(redeliver),
            };
            let c = pipeline.add_consumer_with_as(Some("c".into()), move || FailsAfterGate {
                gate: g.clone(),
                armed: armed.clone(),
                holding: h.clone(),
                tag: t.clone(),
                seen: s.clone(),
                policy: restart,
            });
            pipeline.subscribe(&p, &c);
            let running = pipeline.start();
            within(async {
                while !holding.load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
            })
            .await;
            let result = match race {
                Race::Shutdown => {
                    let shutdown = tokio::spawn(running.shutdown());
                    gate.add_permits(1 << 20);
                    within(shutdown).await.expect("joined")
                }
                Race::Cancel => {
                    let tag = tag.lock().unwrap().expect("subscribed");
                    within(running.cancel(tag)).await.expect("cancelled");
                    gate.add_permits(1 << 20);
                    within(running).await
                }
            };
            let (report, error) = report_of(result);
            balanced(&report);
            let (sp, sc) = (stage(&report, "p"), stage(&report, "c"));
            // Cancelled, it was sent its first 10 and nothing more; shut down, what it was sent
            // before the producer stopped.
            let emitted = sp.emitted;
            if race == Race::Cancel {
                assert_eq!(emitted, 10, "{case}: {report}");
            }
            match policy {
                None => {
                    let error = error.unwrap_or_else(|| panic!("{case}: fails\n{report}"));
                    assert_eq!(error.stage(), "c", "{case}");
                    assert_eq!(lost(sc, LossReason::FailedBatch), 5, "{case}: {report}");
                    assert_eq!(sc.events_in + sc.lost, emitted, "{case}: {report}");
                }
                Some(redeliver) => {
                    assert!(error.is_none(), "{case}: {error:?}\n{report}");
                    assert_eq!(sc.restarts, 1, "{case}: {report}");
                    let (handled, failed) = if redeliver {
                        (emitted, 0)
                    } else {
                        (emitted - 5, 5)
                    };
                    assert_eq!(
                        (sc.events_in, lost(sc, LossReason::FailedBatch), sc.lost),
                        (handled, failed, failed),
                        "{case}: {report}"
                    );
                    let expected: Vec<u64> = if redeliver {
                        (0..emitted).collect()
                    } else {
                        (5..emitted).collect()
                    };
                    assert_eq!(taken(&seen), expected, "{case}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A consumer added at run time to a broadcast whose other consumer restarts.

/// Records what it handles; fails once (its values share `armed`) on each batch holding a
/// multiple of 50 past 0, until `armed` is spent.
struct FailsOnFifties {
    armed: Arc<AtomicUsize>,
    seen: Seen,
}

impl Consumer for FailsOnFifties {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        if let Some(n) = events.iter().find(|&&n| n > 0 && n % 50 == 0) {
            let left = self.armed.load(Ordering::SeqCst);
            if left > 0
                && self
                    .armed
                    .compare_exchange(left, left - 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return Err(format!("FailsOnFifties failed on {n}").into());
            }
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
            .redeliver()
            .max_restarts(10, Duration::from_secs(60))
    }
}

/// A broadcast counting for ever to `a` and to `r`, which fails (redelivering) three times;
/// a consumer with a selector (multiples of 3) is added while it runs; then a graceful
/// shutdown. `a` and `r` get every event, `late` every multiple of 3 from where it joined, in
/// order, nothing is lost, and every edge balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_added_to_a_broadcast_whose_other_consumer_restarts() {
    let (a, r, late) = (Seen::default(), Seen::default(), Seen::default());
    let mut pipeline = Pipeline::new();
    let p = pipeline.add_producer_named(
        "p",
        Caster {
            next: Arc::default(),
            end: u64::MAX,
            partitioned: false,
        },
    );
    let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
    let armed = Arc::new(AtomicUsize::new(3));
    let rs = r.clone();
    let cr = pipeline.add_consumer_with_as(Some("r".into()), move || FailsOnFifties {
        armed: armed.clone(),
        seen: rs.clone(),
    });
    pipeline.subscribe(&p, &ca).subscribe(&p, &cr);
    let running = pipeline.start();
    let cl = within(running.add_consumer_named("late", Collect(late.clone())))
        .await
        .expect("added");
    within(running.subscribe_selected(&p, &cl, options(10, 5), |n: &u64| n.is_multiple_of(3)))
        .await
        .expect("subscribed");
    within(async {
        while late.lock().unwrap().len() < 60 || r.lock().unwrap().len() < 200 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let report = within(running.shutdown()).await.expect("a clean shutdown");
    balanced(&report);
    assert_eq!(report.totals().lost, 0, "{report}");
    let emitted = stage(&report, "p").emitted;
    let all: Vec<u64> = (0..emitted).collect();
    assert_eq!(taken(&a), all);
    assert_eq!(taken(&r), all);
    let sr = stage(&report, "r");
    assert_eq!(sr.restarts, 3, "{report}");
    assert_eq!(sr.events_in, emitted, "{report}");
    let late = taken(&late);
    let from = late[0];
    assert_eq!(
        late,
        (from..emitted).filter(|n| n % 3 == 0).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Liveness after a routing panic: the demand the lost batch took is not lost with it.

/// Counts for ever (its values share the count), 7 events per call at most, transient;
/// partitions by parity or broadcasts; its partition function, or the selector of the
/// subscription `armed` is handed to, panics once on 150.
struct EndlessRouting {
    next: Arc<AtomicU64>,
    armed: Arc<AtomicBool>,
    partitioned: bool,
}

impl Producer for EndlessRouting {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_on(&self.next, demand.min(7), u64::MAX))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        by_parity_or_to_all(self.partitioned)
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient()
    }
}

impl Partition<u64> for EndlessRouting {
    fn partition(&self, event: &u64) -> Option<usize> {
        if *event == 150 && self.armed.swap(false, Ordering::SeqCst) {
            panic!("the partition function panicked on 150");
        }
        Some((event % 2) as usize)
    }
}

/// After a partition function or a selector panicked once in a restarted producer counting for
/// ever, both consumers (max 10, min 5) go on getting events: past 2 000 each, then a graceful
/// shutdown ends the run with a balanced report. (The broadcast had stalled for ever: the
/// consumers whose selectors ran before the panic had used up the demand of events never sent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_go_on_after_a_routing_panic_in_a_restarted_producer() {
    for partitioned in [true, false] {
        let case = format!("partitioned {partitioned}");
        let armed = Arc::new(AtomicBool::new(true));
        let (a, b) = (Seen::default(), Seen::default());
        let mut pipeline = Pipeline::new();
        let (next, a2) = (Arc::new(AtomicU64::new(0)), armed.clone());
        let m = pipeline.add_producer_with_as(Some("m".into()), move || EndlessRouting {
            next: next.clone(),
            armed: a2.clone(),
            partitioned,
        });
        let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
        let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
        if partitioned {
            pipeline.subscribe_with(&m, &ca, options(10, 5).partition(0));
            pipeline.subscribe_with(&m, &cb, options(10, 5).partition(1));
        } else {
            let selector_armed = armed.clone();
            pipeline.subscribe_selected(&m, &ca, options(10, 5), |n: &u64| n.is_multiple_of(2));
            pipeline.subscribe_selected(&m, &cb, options(10, 5), move |n: &u64| {
                if *n == 150 && selector_armed.swap(false, Ordering::SeqCst) {
                    panic!("the selector panicked on 150");
                }
                n % 2 == 1
            });
        }
        let running = pipeline.start();
        within(async {
            while a.lock().unwrap().len() < 2000 || b.lock().unwrap().len() < 2000 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let (report, error) = report_of(within(running.shutdown()).await);
        assert!(error.is_none(), "{case}: {error:?}\n{report}");
        assert_eq!(stage(&report, "m").restarts, 1, "{case}: {report}");
        balanced(&report);
        // The batch the panic struck (at most 7), whole, and nothing else.
        let emitted = stage(&report, "m").emitted;
        let lost = report.totals().lost;
        assert!((1..=7).contains(&lost), "{case}: {report}");
        let (a, b) = (taken(&a), taken(&b));
        assert_eq!(
            emitted - lost,
            (a.len() + b.len()) as u64,
            "{case}: {report}"
        );
        assert!(!a.contains(&150) && !b.contains(&150), "{case}");
    }
}

// ---------------------------------------------------------------------------------------------
// A resubscription racing a failure.

/// A partition's consumer, transient (with or without redelivery), holds its first batch; its
/// subscription is replaced by one with other demand settings (same partition) through the
/// handle; then it fails on that batch. It is restarted, and goes on on the new subscription:
/// the partition's events are each handled once, in order, but the failed batch (handed again
/// with redelivery); the other partition is untouched; then a graceful shutdown balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubscription_racing_a_failure_of_a_partition_consumer() {
    for redeliver in [false, true] {
        let case = format!("redeliver {redeliver}");
        let gate = Arc::new(Semaphore::new(0));
        let holding = Arc::new(AtomicBool::new(false));
        let tag = Arc::new(Mutex::new(None));
        let (even, odd) = (Seen::default(), Seen::default());
        let mut pipeline = Pipeline::new();
        let p = pipeline.add_producer_named(
            "p",
            Caster {
                next: Arc::default(),
                end: u64::MAX,
                partitioned: true,
            },
        );
        let (g, h, t, s) = (gate.clone(), holding.clone(), tag.clone(), even.clone());
        let armed = Arc::new(AtomicBool::new(true));
        let ce = pipeline.add_consumer_with_as(Some("even".into()), move || FailsAfterGate {
            gate: g.clone(),
            armed: armed.clone(),
            holding: h.clone(),
            tag: t.clone(),
            seen: s.clone(),
            policy: transient(redeliver),
        });
        let co = pipeline.add_consumer_named("odd", Collect(odd.clone()));
        pipeline.subscribe_with(&p, &ce, options(10, 5).partition(0));
        pipeline.subscribe_with(&p, &co, options(10, 5).partition(1));
        let running = pipeline.start();
        within(async {
            while !holding.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let old = tag.lock().unwrap().expect("subscribed");
        let new = within(running.resubscribe(old, &p, &ce, options(20, 10).partition(0)))
            .await
            .expect("resubscribed");
        assert_ne!(old, new, "{case}");
        gate.add_permits(1 << 20);
        within(async {
            while even.lock().unwrap().len() < 500 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        let (report, error) = report_of(within(running.shutdown()).await);
        balanced(&report);
        assert!(error.is_none(), "{case}: {error:?}\n{report}");
        let emitted = stage(&report, "p").emitted;
        let se = stage(&report, "even");
        assert_eq!(se.restarts, 1, "{case}: {report}");
        assert_eq!(
            taken(&odd),
            (0..emitted).filter(|n| n % 2 == 1).collect::<Vec<_>>(),
            "{case}"
        );
        // The first batch was 0, 2, 4, 6, 8.
        let expected: Vec<u64> = (0..emitted)
            .filter(|n| n % 2 == 0 && (redeliver || *n >= 10))
            .collect();
        assert_eq!(taken(&even), expected, "{case}\n{report}");
        let failed = if redeliver { 0 } else { 5 };
        assert_eq!(
            (lost(se, LossReason::FailedBatch), report.totals().lost),
            (failed, failed),
            "{case}: {report}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A broadcasting or partitioning producer_consumer whose side callbacks panic once.

/// Passes events on, broadcast or partitioned by parity; panics once (its values share
/// `armed`) in `init`, `handle_subscribe` or `handle_consumer_subscribe`.
struct SideRelay {
    at: Side,
    armed: Arc<AtomicBool>,
    partitioned: bool,
}

impl SideRelay {
    fn strike(&self, here: Side) {
        if self.at == here && self.armed.swap(false, Ordering::SeqCst) {
            panic!("SideRelay panicked in {here:?}");
        }
    }
}

impl ProducerConsumer for SideRelay {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn subscribe_options(&self) -> SubscribeOptions {
        options(10, 5)
    }
    fn init(&mut self, _ctx: &mut Context<'_, Self>) {
        self.strike(Side::Init);
    }
    fn handle_subscribe(&mut self, _: &Subscription, _ctx: &mut Context<'_, Self>) -> Demand {
        self.strike(Side::Subscribe);
        Demand::Automatic
    }
    fn handle_consumer_subscribe(&mut self, _: &Subscriber, _ctx: &mut Context<'_, Self>) {
        // `Cancel` stands for the consumer side here.
        self.strike(Side::Cancel);
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        by_parity_or_to_all(self.partitioned)
    }
    fn restart_policy(&self) -> RestartPolicy<u64> {
        RestartPolicy::transient()
    }
}

impl Partition<u64> for SideRelay {
    fn partition(&self, event: &u64) -> Option<usize> {
        Some((event % 2) as usize)
    }
}

/// A broadcasting or partitioning producer_consumer, transient, that panics once in `init`,
/// `handle_subscribe` or `handle_consumer_subscribe` (before it handled anything): restarted,
/// it passes every event on, each consumer gets exactly its events in order, nothing is lost.
#[tokio::test]
async fn a_dispatching_producer_consumer_panicking_in_a_side_callback_restarts() {
    for partitioned in [false, true] {
        for at in [Side::Init, Side::Subscribe, Side::Cancel] {
            let case = format!("partitioned {partitioned} {at:?}");
            let mut pipeline = Pipeline::new();
            let p = pipeline.add_producer_as(Some("p".into()), from_iter(0..200u64));
            let armed = Arc::new(AtomicBool::new(true));
            let m = pipeline.add_producer_consumer_with_as(Some("m".into()), move || SideRelay {
                at,
                armed: armed.clone(),
                partitioned,
            });
            pipeline.subscribe(&p, &m);
            let (a, b) = (Seen::default(), Seen::default());
            let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
            let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
            let expected_a: Vec<u64> = if partitioned {
                pipeline.subscribe_with(&m, &ca, options(10, 5).partition(0));
                pipeline.subscribe_with(&m, &cb, options(10, 5).partition(1));
                (0..200).filter(|n| n % 2 == 0).collect()
            } else {
                pipeline.subscribe(&m, &ca);
                pipeline.subscribe_selected(&m, &cb, options(10, 5), |n: &u64| n % 2 == 1);
                (0..200).collect()
            };
            let (report, error) = report_of(within(pipeline.run()).await);
            balanced(&report);
            assert!(error.is_none(), "{case}: {error:?}\n{report}");
            assert_eq!(stage(&report, "m").restarts, 1, "{case}: {report}");
            assert_eq!(report.totals().lost, 0, "{case}: {report}");
            assert_eq!(taken(&a), expected_a, "{case}");
            assert_eq!(
                taken(&b),
                (0..200).filter(|n| n % 2 == 1).collect::<Vec<_>>(),
                "{case}"
            );
        }
    }
}

/// Emits `0..20`, up to 17 more than it is asked for, the last with its final events (its
/// values share the count); broadcasts.
struct Overfull {
    next: Arc<AtomicU64>,
}

impl Producer for Overfull {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_on(&self.next, demand + 17, 20))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
    fn restart_policy(&self) -> RestartPolicy<NoInput> {
        RestartPolicy::transient()
    }
}

/// Found by the chaos test (seed 10, shrunk): a broadcasting producer that emitted all its events
/// at once, more than it was asked for, buffers the rest; its consumer's selector panics on 11
/// as the buffer is drained, which loses that dispatch (`7..=11`, what the consumer could take).
/// The restarted producer goes on draining its buffer, and ends. (It waited for an ask that its
/// consumer, sent nothing, never made: the run hung.)
#[tokio::test]
async fn a_selector_panic_draining_the_buffer_lets_the_restarted_producer_drain_it() {
    let mut pipeline = Pipeline::new();
    let seen = Seen::default();
    let c = pipeline.add_consumer_named("c", Collect(seen.clone()));
    let next = Arc::new(AtomicU64::new(0));
    let p =
        pipeline.add_producer_with_as(Some("p".into()), move || Overfull { next: next.clone() });
    let armed = Arc::new(AtomicBool::new(true));
    pipeline.subscribe_selected(&p, &c, options(7, 0), move |n: &u64| {
        if *n == 11 && armed.swap(false, Ordering::SeqCst) {
            panic!("the selector panicked on 11");
        }
        n % 4 == 2
    });
    let (report, error) = report_of(within(pipeline.run()).await);
    assert!(error.is_none(), "{error:?}\n{report}");
    balanced(&report);
    assert_eq!(taken(&seen), vec![2, 6, 14, 18], "{report}");
    assert_eq!(
        lost(stage(&report, "p"), LossReason::FailedBatch),
        5,
        "{report}"
    );
}

/// Found by the chaos test (seed 1360): a broadcasting producer_consumer whose consumer `a` can
/// take one event at a time (`max_demand` 1, its selector rejecting most) dispatches the output
/// of a batch in several dispatches, and `b`'s selector panics on 2, after 0 and 1 went out. The
/// batch is handled (what went out of it stays out), and only the interrupted dispatch is lost:
/// nothing is sent twice, even with redelivery, and what is missing is what is lost. (The batch
/// was failed, and handed again: 0 and 1 reached `b` twice; without redelivery they reached it
/// though their batch was counted lost.)
#[tokio::test]
async fn a_selector_panic_after_part_of_a_batchs_output_went_out_loses_only_the_dispatch() {
    for redeliver in [false, true] {
        let case = format!("redeliver {redeliver}");
        let mut pipeline = Pipeline::new();
        let (a, b) = (Seen::default(), Seen::default());
        let ca = pipeline.add_consumer_named("a", Collect(a.clone()));
        let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
        let p = pipeline.add_producer_as(Some("p".into()), from_iter(0..40u64));
        let policy = transient(redeliver);
        let armed = Arc::new(AtomicBool::new(true));
        let m = pipeline.add_producer_consumer_with_as(Some("m".into()), move || RouteFails {
            armed: Arc::new(AtomicBool::new(false)),
            partitioned: false,
            policy,
        });
        pipeline.subscribe_with(&p, &m, options(4, 0));
        pipeline.subscribe_selected(&m, &ca, options(1, 0), |n: &u64| n % 4 == 2);
        pipeline.subscribe_selected(&m, &cb, options(10, 5), move |n: &u64| {
            if *n == 2 && armed.swap(false, Ordering::SeqCst) {
                panic!("the selector panicked on 2");
            }
            true
        });
        let (report, error) = report_of(within(pipeline.run()).await);
        assert!(error.is_none(), "{case}: {error:?}\n{report}");
        balanced(&report);
        let (a, b) = (taken(&a), taken(&b));
        assert!(a.windows(2).all(|w| w[0] < w[1]), "{case}: {a:?}");
        assert!(b.windows(2).all(|w| w[0] < w[1]), "{case}: {b:?}");
        assert_eq!(stage(&report, "m").restarts, 1, "{case}: {report}");
        let missing = (0..40u64).filter(|n| !b.contains(n)).count() as u64;
        assert_eq!(
            (missing, lost(stage(&report, "m"), LossReason::FailedBatch)),
            (report.totals().lost, report.totals().lost),
            "{case}: what b misses is what m lost with the dispatch\n{report}"
        );
        assert!(missing > 0, "{case}: {b:?}");
    }
}

/// Emits `0..end`, 33 more than it is asked for, the last with its final events; broadcasts;
/// temporary.
struct AllAtOnce {
    next: Arc<AtomicU64>,
    end: u64,
}

impl Producer for AllAtOnce {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        Ok(count_on(&self.next, demand + 33, self.end))
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// Passes its events on.
struct Pass;

impl ProducerConsumer for Pass {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
}

/// Found by the chaos test (seed 1380, shrunk): a temporary broadcasting producer emits all its
/// events at once; its buffer is drained in several dispatches, the last of which `c`'s selector
/// panics in (on 51). What the dispatches before it sent goes out all the same: `m` gets
/// `0..=50`, only 51 is lost, and the report balances. (The stage stopped for good with them in
/// its deliveries, neither sent nor counted lost.)
#[tokio::test]
async fn a_selector_panic_stopping_a_stage_for_good_sends_what_went_out_before_it() {
    let mut pipeline = Pipeline::new();
    let (from_m, direct) = (Seen::default(), Seen::default());
    let c = pipeline.add_consumer_named("c", Collect(direct.clone()));
    let cm = pipeline.add_consumer_named("cm", Collect(from_m.clone()));
    let p = pipeline.add_producer_named(
        "p",
        AllAtOnce {
            next: Arc::new(AtomicU64::new(0)),
            end: 52,
        },
    );
    let m = pipeline.add_producer_consumer_named("m", Pass);
    pipeline.subscribe_with(&p, &m, options(15, 7));
    pipeline.subscribe_with(&m, &cm, options(1, 0));
    pipeline.subscribe_selected(&p, &c, options(1, 0), move |n: &u64| {
        if *n == 51 {
            panic!("the selector panicked on 51");
        }
        n.is_multiple_of(4)
    });
    let (report, error) = report_of(within(pipeline.run()).await);
    assert!(
        matches!(&error, Some(PipelineError::StagePanicked { stage, .. }) if stage == "p"),
        "{error:?}\n{report}"
    );
    balanced(&report);
    assert_eq!(taken(&from_m), (0..51).collect::<Vec<u64>>(), "{report}");
    assert_eq!(
        taken(&direct),
        (0..51).step_by(4).collect::<Vec<u64>>(),
        "{report}"
    );
    assert_eq!(
        lost(stage(&report, "p"), LossReason::FailedBatch),
        1,
        "{report}"
    );
}

/// Passes its events on to every consumer (that its selector lets).
struct Spread;

impl ProducerConsumer for Spread {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        Ok(events)
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::broadcast()
    }
}

/// Fails (panics) on its `at`-th batch, once; records what it handles before.
struct FailsAt {
    at: usize,
    batches: usize,
    seen: Seen,
}

impl Consumer for FailsAt {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.batches += 1;
        if self.batches == self.at {
            panic!("FailsAt panicked at batch {}", self.at);
        }
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
}

/// Found by the chaos test (seed 1619072, shrunk): a broadcasting producer_consumer finds, as it
/// sends, that a consumer has stopped (it failed); the consumer's leaving drains the buffer, and
/// the other consumer's selector panics in that drain. The deliveries still in hand go out (or
/// are counted lost with the consumer gone) before the drain runs: the report balances. (They
/// were dropped as the panic unwound the send, neither sent nor counted: one event in 23.)
/// Repeated, as the consumer's end races the sends.
#[tokio::test]
async fn a_selector_panic_in_the_drain_a_gone_consumer_frees_loses_no_delivery() {
    for round in 0..50 {
        let mut pipeline = Pipeline::new();
        let (a, b) = (Seen::default(), Seen::default());
        let ca = pipeline.add_consumer_named(
            "a",
            FailsAt {
                at: 4,
                batches: 0,
                seen: a.clone(),
            },
        );
        let cb = pipeline.add_consumer_named("b", Collect(b.clone()));
        let p = pipeline.add_producer_as(Some("p".into()), from_iter(0..11u64));
        let m = pipeline.add_producer_consumer_named("m", Spread);
        let other = pipeline.add_producer_consumer_named("other", Pass);
        let cc = pipeline.add_consumer_named("c", Collect(Seen::default()));
        pipeline.subscribe_with(&p, &m, options(14, 0));
        pipeline.subscribe_with(&p, &other, options(1, 0));
        pipeline.subscribe_with(&other, &cc, options(1, 0));
        pipeline.subscribe_with(&m, &ca, options(2, 1));
        let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
        pipeline.subscribe_selected(&m, &cb, options(6, 0), move |n: &u64| {
            let mut seen = seen.lock().unwrap();
            if seen.insert(*n) && seen.len() == 11 {
                drop(seen);
                panic!("the selector panicked on its 11th event");
            }
            n % 3 == 2
        });
        let (report, _) = report_of(within(pipeline.run()).await);
        let totals = report.totals();
        assert_eq!(
            totals.emitted,
            totals.handled + totals.discarded + totals.lost,
            "round {round}: {report}"
        );
        assert!(report.balanced(), "round {round}: {report}");
    }
}
