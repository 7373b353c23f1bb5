//! A dispatcher of the user's that breaks the `Dispatcher` contract, end to end: the stage fails
//! with a `ContractBreach` that names the rule it broke (the run's error names the stage), the run
//! ends (a breach used to hang it, or panic the stage), and the report balances, with the events the
//! dispatcher took counted as lost to it.

use std::time::Duration;

use genstage::dispatcher::{
    ContractBreach, DispatchError, DispatchOptions, Dispatcher, Outbox, SubscriptionId,
};
use genstage::{
    Dispatch, Emit, LossReason, Pipeline, PipelineError, Producer, Report, StageResult,
    SubscribeOptions,
};

mod dispatch_stages;
use dispatch_stages::*;

/// How [`FirstOnly`] breaks its contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaks {
    /// `capacity()` says 1 000 000, whatever its consumer asked for.
    Capacity,
    /// It sends half of each batch and drops the rest.
    Swallow,
    /// It sends each batch to subscription 9999, which does not exist.
    WrongSub,
}

/// The `Dispatcher` documentation's example (everything to the consumer that subscribed first),
/// broken as `breaks` says.
struct FirstOnly {
    breaks: Breaks,
    first: Option<(SubscriptionId, usize)>,
    others: Vec<SubscriptionId>,
}

impl FirstOnly {
    fn new(breaks: Breaks) -> Self {
        FirstOnly {
            breaks,
            first: None,
            others: Vec::new(),
        }
    }
}

impl Dispatcher<u64> for FirstOnly {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        _options: &DispatchOptions<u64>,
    ) -> Result<usize, DispatchError> {
        match self.first {
            None => self.first = Some((sub, 0)),
            Some(_) => self.others.push(sub),
        }
        Ok(0)
    }
    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        if self.first.is_some_and(|(first, _)| first == sub) {
            self.first = (!self.others.is_empty()).then(|| (self.others.remove(0), 0));
        } else {
            self.others.retain(|&other| other != sub);
        }
        0
    }
    fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, u64>) -> usize {
        match &mut self.first {
            Some((first, wants)) if *first == sub => {
                *wants = wants.saturating_add(demand);
                demand
            }
            _ => 0,
        }
    }
    fn dispatch(
        &mut self,
        mut events: Vec<u64>,
        out: &mut Outbox<'_, u64>,
    ) -> Result<Vec<u64>, DispatchError> {
        let Some((first, wants)) = &mut self.first else {
            return Ok(events);
        };
        let rest = events.split_off((*wants).min(events.len()));
        *wants -= events.len();
        match self.breaks {
            Breaks::Swallow => {
                events.truncate(events.len() / 2);
                out.send(*first, events);
            }
            Breaks::WrongSub => out.send(9999, events),
            Breaks::Capacity => out.send(*first, events),
        }
        Ok(rest)
    }
    fn capacity(&self) -> usize {
        match self.breaks {
            Breaks::Capacity => 1_000_000,
            _ => self.first.map_or(0, |(_, wants)| wants),
        }
    }
    fn consumers(&self) -> usize {
        usize::from(self.first.is_some()) + self.others.len()
    }
}

/// `0..100`, as asked, through a [`FirstOnly`] that breaks as `breaks` says.
struct Src {
    next: u64,
    breaks: Breaks,
}

impl Producer for Src {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> StageResult<Emit<u64>> {
        let stop = 100.min(self.next + demand as u64);
        let events = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == 100 {
            Emit::last(events)
        } else {
            Emit::more(events)
        })
    }
    fn dispatcher(&self) -> Dispatch<Self, u64> {
        Dispatch::custom(FirstOnly::new(self.breaks))
    }
}

/// Runs `src -> [a, b]` (`max_demand` 10), `src` dispatching through a `FirstOnly` that breaks
/// as `breaks` says; returns the breach, the run's message and its report, and what `a` received.
async fn run_broken(breaks: Breaks) -> (ContractBreach, String, Box<Report>, Vec<u64>) {
    let mut pipeline = Pipeline::new();
    let src = pipeline.add_producer_named("src", Src { next: 0, breaks });
    let (a, a_batches) = Collect::new();
    let a = pipeline.add_consumer_named("a", a);
    let b = pipeline.add_consumer_named("b", Collect::new().0);
    let options = SubscribeOptions::new().max_demand(10);
    pipeline.subscribe_with(&src, &a, options);
    pipeline.subscribe_with(&src, &b, options);
    // A breach used to hang the run: the test fails then, rather than wait for the runner.
    let Ok(ran) = tokio::time::timeout(Duration::from_secs(10), pipeline.run()).await else {
        panic!("the run with a dispatcher that breaks its contract ({breaks:?}) hung");
    };
    let message = match &ran {
        Ok(report) => panic!("the run ended cleanly: {report}"),
        Err(error) => error.to_string(),
    };
    let (breach, report) = match ran {
        Err(PipelineError::StageFailed {
            stage,
            error,
            report,
        }) => {
            assert_eq!(stage, "src");
            let breach = error
                .downcast_ref::<ContractBreach>()
                .unwrap_or_else(|| panic!("not a breach: {error}"))
                .clone();
            (breach, report)
        }
        other => panic!("not a stage failure: {other:?}"),
    };
    balanced(&report);
    let received = flat(&a_batches);
    (breach, message, report, received)
}

/// `(emitted, events_out, losses)` of stage `name`.
fn counts(report: &Report, name: &str) -> (u64, u64, Vec<(u64, LossReason)>) {
    let stage = report.stage(name).unwrap();
    let losses = stage
        .losses
        .iter()
        .map(|loss| (loss.count, loss.reason))
        .collect();
    (stage.emitted, stage.events_out, losses)
}

// F5: `capacity()` says more than `dispatch` then takes. Asked for 1 000 000, `src` emits all 100
// events; its consumer asked for 10, which go to `a`, and the 90 the dispatcher hands back from the
// buffer, where `capacity()` said they would all be taken, are lost to the breach (they used to
// vanish from the report in a debug assertion's panic).
#[tokio::test]
async fn a_dispatcher_whose_capacity_overstates_what_it_takes_fails_its_stage() {
    let (breach, message, report, received) = run_broken(Breaks::Capacity).await;
    assert_eq!(
        breach,
        ContractBreach::Capacity {
            capacity: 1_000_000,
            handed: 90,
            leftover: 90
        }
    );
    assert_eq!(
        message,
        "stage `src` failed: its dispatcher broke its contract: `capacity()` said its consumers \
         could take 1000000 events, but `dispatch`, handed 90, handed 90 back"
    );
    assert_eq!(
        counts(&report, "src"),
        (100, 10, vec![(90, LossReason::BrokenDispatcher)])
    );
    assert_eq!(received, (0..10).collect::<Vec<_>>());
    let totals = report.totals();
    assert_eq!((totals.emitted, totals.handled, totals.lost), (100, 10, 90));
}

// F6: a dispatcher that sends half of each batch and drops the rest. The stage asked for 10 fails
// on its first batch: nothing of it is sent, and the 10 are lost to the breach (the run used to
// hang, its report unbalanced).
#[tokio::test]
async fn a_dispatcher_that_drops_events_fails_its_stage() {
    let (breach, message, report, received) = run_broken(Breaks::Swallow).await;
    assert_eq!(
        breach,
        ContractBreach::Unaccounted {
            call: "dispatch",
            handed: 10,
            held: 0,
            accounted: 5
        }
    );
    assert_eq!(
        message,
        "stage `src` failed: its dispatcher broke its contract: `dispatch` was handed 10 events \
         while it held 0, and accounted for 5 (sent, discarded, handed back or held): each must be \
         one of these"
    );
    assert_eq!(
        counts(&report, "src"),
        (10, 0, vec![(10, LossReason::BrokenDispatcher)])
    );
    assert!(received.is_empty());
    let totals = report.totals();
    assert_eq!((totals.emitted, totals.handled, totals.lost), (10, 0, 10));
}

// F6: a dispatcher that sends to a subscription that does not exist. The run used to hang, and
// report the events as sent to a consumer that had stopped.
#[tokio::test]
async fn a_dispatcher_that_sends_to_an_unknown_subscription_fails_its_stage() {
    let (breach, message, report, received) = run_broken(Breaks::WrongSub).await;
    assert_eq!(
        breach,
        ContractBreach::UnknownSubscription {
            sub: 9999,
            events: 10
        }
    );
    assert_eq!(
        message,
        "stage `src` failed: its dispatcher broke its contract: it sent 10 events to subscription \
         9999, which is not one of the stage's"
    );
    assert_eq!(
        counts(&report, "src"),
        (10, 0, vec![(10, LossReason::BrokenDispatcher)])
    );
    assert!(received.is_empty());
    let totals = report.totals();
    assert_eq!((totals.emitted, totals.handled, totals.lost), (10, 0, 10));
}
