//! Probes from the review of the runtime: accounting, hangs and panics in corner cases.
//!
//! Runs are wrapped in a timeout that guards against hangs; it is not a timing assertion.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genstage::{
    BufferKeep, CancelMode, Consumer, Emit, Pipeline, PipelineError, Producer, ProducerConsumer,
    ProducerOptions, Report, StageResult, SubscribeOptions,
};

fn report_of(result: Result<Report, PipelineError>) -> (Report, Option<PipelineError>) {
    match result {
        Ok(report) => (report, None),
        Err(error) => {
            let report = error
                .report()
                .cloned()
                .unwrap_or_else(|| panic!("a run-time failure carries its report: {error}"));
            (report, Some(error))
        }
    }
}

/// A tiny deterministic generator, so that a failing seed can be replayed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    Err(usize),
    Panic(usize),
    /// Awaits for ever on this call.
    Hang(usize),
}

impl Fault {
    fn random(r: &mut Rng, odds: u64) -> Fault {
        if r.below(odds) != 0 {
            return Fault::None;
        }
        let at = 1 + r.below(30) as usize;
        match r.below(6) {
            0 | 1 => Fault::Err(at),
            2 | 3 => Fault::Panic(at),
            4 => Fault::Hang(at),
            _ => Fault::None,
        }
    }

    async fn strike(self, call: usize) -> StageResult<()> {
        match self {
            Fault::Err(at) if at == call => Err(format!("failed at call {call}").into()),
            Fault::Panic(at) if at == call => panic!("panicked at call {call}"),
            Fault::Hang(at) if at == call => std::future::pending().await,
            _ => Ok(()),
        }
    }
}

/// Emits `tag * 1_000_000 + i` for `i` in `0..end`, in shapes chosen at random per call: fewer
/// than asked, more than asked, or nothing.
struct Source {
    tag: u64,
    next: u64,
    end: u64,
    rng: Rng,
    calls: usize,
    fault: Fault,
    yield_sometimes: bool,
    options: ProducerOptions,
}

impl Producer for Source {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        self.calls += 1;
        self.fault.strike(self.calls).await?;
        if self.yield_sometimes && self.rng.below(4) == 0 {
            tokio::task::yield_now().await;
        }
        let n = match self.rng.below(5) {
            0 => 0,
            1 => 1 + self.rng.below(demand as u64),
            2 => demand as u64 + self.rng.below(50),
            _ => demand as u64,
        };
        let stop = self.end.min(self.next + n);
        let events = (self.next..stop)
            .map(|i| self.tag * 1_000_000 + i)
            .collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }
}

/// Unbounded, or small enough to overflow, keeping the first or the last events.
fn random_buffer(r: &mut Rng, default: ProducerOptions) -> ProducerOptions {
    let keep = if r.below(2) == 0 {
        BufferKeep::First
    } else {
        BufferKeep::Last
    };
    match r.below(3) {
        0 => default,
        1 => default.unbounded().buffer_keep(keep),
        _ => default.buffer_size(r.below(40) as usize).buffer_keep(keep),
    }
}

/// Passes on every event, or every second one, or every event and a copy of it (`event + copy`,
/// distinct from every other event of the run).
struct Middle {
    calls: usize,
    fault: Fault,
    filter: bool,
    copy: Option<u64>,
    options: ProducerOptions,
}

impl ProducerConsumer for Middle {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<Vec<u64>> {
        self.calls += 1;
        self.fault.strike(self.calls).await?;
        Ok(if self.filter {
            events.into_iter().filter(|e| e % 2 == 0).collect()
        } else if let Some(copy) = self.copy {
            events.into_iter().flat_map(|e| [e, e + copy]).collect()
        } else {
            events
        })
    }

    fn producer_options(&self) -> ProducerOptions {
        self.options
    }
}

type Seen = Arc<Mutex<Vec<u64>>>;

struct Sink {
    calls: usize,
    fault: Fault,
    seen: Seen,
}

impl Consumer for Sink {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> StageResult<()> {
        self.calls += 1;
        self.fault.strike(self.calls).await?;
        self.seen.lock().unwrap().extend(events);
        Ok(())
    }
}

fn random_options(r: &mut Rng) -> SubscribeOptions {
    let max = 1 + r.below(60) as usize;
    let min = r.below(max as u64) as usize;
    let cancel = match r.below(3) {
        0 => CancelMode::Permanent,
        1 => CancelMode::Transient,
        _ => CancelMode::Temporary,
    };
    SubscribeOptions::new()
        .max_demand(max)
        .min_demand(min)
        .cancel(cancel)
}

/// One random run: 1–2 producers, 0–2 producer_consumers, 1–3 consumers, random wiring, demand,
/// shapes and faults. Returns a description on failure.
async fn random_run(seed: u64) -> Result<(), String> {
    let mut r = Rng(seed | 1);
    let mut pipeline = Pipeline::new();
    let mut desc = format!("seed {seed:#x}:");
    let producers: Vec<_> = (0..1 + r.below(2))
        .map(|i| {
            let fault = Fault::random(&mut r, 4);
            let end = 50 + r.below(400);
            desc += &format!(" p{i}({end}, {fault:?})");
            pipeline.add_producer_named(
                format!("p{i}"),
                Source {
                    tag: i + 1,
                    next: 0,
                    end,
                    rng: Rng(r.next() | 1),
                    calls: 0,
                    fault,
                    yield_sometimes: r.below(2) == 0,
                    options: random_buffer(&mut r, ProducerOptions::for_producer()),
                },
            )
        })
        .collect();
    let middles: Vec<_> = (0..r.below(3))
        .map(|i| {
            let fault = Fault::random(&mut r, 4);
            desc += &format!(" m{i}({fault:?})");
            pipeline.add_producer_consumer_named(
                format!("m{i}"),
                Middle {
                    calls: 0,
                    fault,
                    filter: r.below(3) == 0,
                    copy: (r.below(2) == 0).then_some((i + 1) * 1_000_000_000_000),
                    options: random_buffer(&mut r, ProducerOptions::for_producer_consumer()),
                },
            )
        })
        .collect();
    let seen: Vec<Seen> = (0..1 + r.below(3)).map(|_| Seen::default()).collect();
    let sinks: Vec<_> = seen
        .iter()
        .enumerate()
        .map(|(i, seen)| {
            let fault = Fault::random(&mut r, 4);
            desc += &format!(" c{i}({fault:?})");
            pipeline.add_consumer_named(
                format!("c{i}"),
                Sink {
                    calls: 0,
                    fault,
                    seen: seen.clone(),
                },
            )
        })
        .collect();
    // Every middle takes from one or two producers (or the middle before it), every producer and
    // middle feeds at least one stage, every sink takes from one or two sources.
    let mut fed_p = vec![false; producers.len()];
    let mut fed_m = vec![false; middles.len()];
    for (i, middle) in middles.iter().enumerate() {
        let options = random_options(&mut r);
        if i > 0 && r.below(2) == 0 {
            pipeline.subscribe_with(&middles[i - 1], middle, options);
            fed_m[i - 1] = true;
            desc += &format!(" m{}->m{i}{options:?}", i - 1);
        } else {
            let p = r.below(producers.len() as u64) as usize;
            pipeline.subscribe_with(&producers[p], middle, options);
            fed_p[p] = true;
            desc += &format!(" p{p}->m{i}{options:?}");
        }
    }
    for (i, sink) in sinks.iter().enumerate() {
        for _ in 0..1 + r.below(2) {
            let options = random_options(&mut r);
            let k = r.below((producers.len() + middles.len()) as u64) as usize;
            if k < producers.len() {
                pipeline.subscribe_with(&producers[k], sink, options);
                fed_p[k] = true;
                desc += &format!(" p{k}->c{i}{options:?}");
            } else {
                let m = k - producers.len();
                pipeline.subscribe_with(&middles[m], sink, options);
                fed_m[m] = true;
                desc += &format!(" m{m}->c{i}{options:?}");
            }
        }
    }
    for (p, fed) in fed_p.iter().enumerate() {
        if !fed {
            let options = random_options(&mut r);
            pipeline.subscribe_with(&producers[p], &sinks[0], options);
            desc += &format!(" p{p}->c0{options:?}");
        }
    }
    for (m, fed) in fed_m.iter().enumerate() {
        if !fed {
            let options = random_options(&mut r);
            pipeline.subscribe_with(&middles[m], &sinks[0], options);
            desc += &format!(" m{m}->c0{options:?}");
        }
    }
    let result = match tokio::time::timeout(Duration::from_secs(3), pipeline.run()).await {
        Ok(result) => result,
        Err(_) => {
            // A hang is expected only where a stage awaits for ever in a callback that nothing
            // can cancel: a consumer, or a middle whose consumers are still there.
            return Err(format!("hung: {desc}"));
        }
    };
    let (report, _error) = report_of(result);
    let totals = report.totals();
    if !totals.balanced() {
        return Err(format!("unbalanced {totals:?}: {desc}\n{report:#?}"));
    }
    let mut all = HashSet::new();
    for (i, seen) in seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        for &event in seen.iter() {
            if !all.insert(event) {
                return Err(format!("event {event} handled twice: {desc}"));
            }
        }
        let name = format!("c{i}");
        if seen.len() as u64 != report.stage(&name).unwrap().events_in {
            return Err(format!("{name}'s count differs from the report: {desc}"));
        }
    }
    Ok(())
}

/// Runs `REVIEW_RUNS` (default 200) random pipelines from `REVIEW_SEED`; fails with every run that
/// hung without a stage awaiting for ever, lost count of an event, or handled one twice.
async fn random_runs() {
    let mut failures = Vec::new();
    let runs: u64 = std::env::var("REVIEW_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let base: u64 = std::env::var("REVIEW_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x1234_5678);
    for i in 0..runs {
        let seed = base.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if let Err(failure) = random_run(seed).await {
            // A stage awaiting for ever in its callback may hang a run legitimately.
            if failure.starts_with("hung") && failure.contains("Hang(") {
                if std::env::var("REVIEW_SHOW_HANGS").is_ok() {
                    eprintln!("legit? {failure}\n");
                }
                continue;
            }
            failures.push(failure);
        }
    }
    for failure in &failures {
        eprintln!("{failure}\n");
    }
    assert!(failures.is_empty(), "{} failing runs", failures.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a slow probe of the review (1500 runs passed): REVIEW_RUNS=n cargo test --test review_findings -- --ignored"]
async fn random_pipelines_account_for_every_event() {
    random_runs().await;
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "a slow probe of the review: REVIEW_RUNS=n cargo test --test review_findings -- --ignored"]
async fn random_pipelines_account_for_every_event_on_one_thread() {
    random_runs().await;
}

/// Emits `0..5`, then an empty batch, then `5..n` and ends.
struct EmptySecond {
    calls: usize,
    n: u64,
}

impl Producer for EmptySecond {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        self.calls += 1;
        Ok(match self.calls {
            1 => Emit::more((0..5).collect()),
            2 => Emit::more(Vec::new()),
            _ => Emit::last((5..self.n).collect()),
        })
    }
}

/// `run()` on a runtime without its time driver: the back-off after an empty batch needs a timer.
/// Either the run works or it fails with `NoRuntime` before anything runs. On main, tokio panics
/// inside the producer's task at its first empty batch, and the producer's counts are lost with
/// the task: the report has 5 events handled and none emitted.
#[test]
#[ignore = "fixed on branch first-contact (run() checks for timers, tokio_with_timers); un-ignore once it is merged"]
fn a_runtime_without_timers_is_an_error_not_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let seen = Seen::default();
    let result = runtime.block_on(async {
        let mut pipeline = Pipeline::new();
        let producer = pipeline.add_producer_named("p", EmptySecond { calls: 0, n: 10 });
        let sink = pipeline.add_consumer_named(
            "c",
            Sink {
                calls: 0,
                fault: Fault::None,
                seen: seen.clone(),
            },
        );
        pipeline.subscribe(&producer, &sink);
        pipeline.run().await
    });
    match result {
        Ok(report) => assert_eq!(report.stage("c").unwrap().events_in, 10),
        Err(PipelineError::NoRuntime) => {}
        Err(error) => panic!(
            "{error}; balanced: {}",
            error.report().is_some_and(|r| r.totals().balanced())
        ),
    }
}

/// `DemandError` is public with public fields: formatting any value of it must not panic.
#[test]
fn every_demand_error_formats_without_panicking() {
    let error = genstage::DemandError::MinDemandTooLarge {
        min_demand: 0,
        max_demand: 0,
    };
    assert_eq!(
        error.to_string(),
        "expected min_demand to be equal to or less than 0, got: 0"
    );
}

/// The public `DemandDispatcher` takes any `usize` demand: its sums saturate instead of
/// overflowing (a debug panic, a wrap in release).
#[test]
fn the_demand_dispatcher_never_overflows() {
    use genstage::dispatcher::{DemandDispatcher, Dispatcher};
    let mut dispatcher = DemandDispatcher::new();
    dispatcher.subscribe(1).unwrap();
    dispatcher.subscribe(2).unwrap();
    dispatcher.ask(1, usize::MAX);
    dispatcher.ask(2, usize::MAX);
    dispatcher.ask(1, 1);
    assert_eq!(Dispatcher::<u8>::capacity(&dispatcher), usize::MAX);
    let mut deliveries = Vec::new();
    let leftover = dispatcher.dispatch(vec![1u8, 2, 3], &mut deliveries);
    assert!(leftover.is_empty());
    assert_eq!(deliveries, vec![(1, vec![1, 2, 3])]);
    dispatcher.cancel(1);
    dispatcher.cancel(2);
    assert_eq!(Dispatcher::<u8>::capacity(&dispatcher), 0);
}

/// Panics when dropped: a guard held across an `.await` in a callback.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("guard dropped");
        }
    }
}

/// Emits `0..10` on its first call, then waits for ever holding a [`PanicOnDrop`].
struct GuardedWait {
    calls: usize,
}

impl Producer for GuardedWait {
    type Output = u64;
    async fn handle_demand(&mut self, _demand: usize) -> StageResult<Emit<u64>> {
        self.calls += 1;
        if self.calls == 1 {
            return Ok(Emit::more((0..10).collect()));
        }
        let _guard = PanicOnDrop;
        std::future::pending::<()>().await;
        Ok(Emit::more(Vec::new()))
    }
}

/// A callback dropped because its stage must stop (its consumer failed) panics in its drop: the
/// panic escapes `call_serving` (the future is dropped outside `catch_unwind`), the stage's task
/// panics, and the runtime reports it with every count zeroed (`lost_task`), so the report no
/// longer balances: 10 emitted events, 5 handled, 5 in the failed batch, but 0 emitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "review finding, not fixed: a panic outside a callback's poll (a dropped callback, an event's or a stage's Drop) loses the stage's counts with its task"]
async fn a_panic_in_a_dropped_callback_keeps_the_stage_counts() {
    let seen = Seen::default();
    let mut pipeline = Pipeline::new();
    let producer = pipeline.add_producer_named("p", GuardedWait { calls: 0 });
    let sink = pipeline.add_consumer_named(
        "c",
        Sink {
            calls: 0,
            fault: Fault::Err(2),
            seen: seen.clone(),
        },
    );
    pipeline.subscribe_with(
        &producer,
        &sink,
        SubscribeOptions::new().max_demand(10).min_demand(5),
    );
    let result = tokio::time::timeout(Duration::from_secs(20), pipeline.run())
        .await
        .expect("the run ends");
    let (report, _) = report_of(result);
    assert_eq!(report.stage("p").unwrap().emitted, 10, "{report:#?}");
    assert!(report.totals().balanced(), "{report:#?}");
}
