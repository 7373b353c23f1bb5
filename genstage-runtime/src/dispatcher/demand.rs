//! GenStage's `DemandDispatcher`: each event goes to one consumer, the one with the most demand.

use super::{DispatchError, DispatchOptions, Dispatcher, Outbox, SubscriptionId};

/// Sends each batch to the consumer with the largest demand, splitting a batch across consumers when
/// one cannot take it all; among equal demands, the consumer that has waited longest goes first.
///
/// Demand a consumer leaves unfulfilled when it cancels stays *pending*, as in GenStage: those events
/// were already requested upstream, so the upstream demand the next asks return is reduced by them.
/// (The stage loops derive a producer's demand from [`Dispatcher::capacity`] instead; see
/// [`Dispatcher`].)
///
/// ```
/// use genstage::dispatcher::{DemandDispatcher, Dispatcher, Outbox};
/// let mut dispatcher = DemandDispatcher::new();
/// dispatcher.subscribe(1).unwrap();
/// dispatcher.subscribe(2).unwrap();
/// assert_eq!(dispatcher.ask(1, 3), 3);
/// assert_eq!(dispatcher.ask(2, 2), 2);
/// let mut deliveries = Vec::new();
/// let events = vec!['a', 'b', 'c', 'd', 'e', 'f'];
/// let leftover = dispatcher.dispatch(events, &mut Outbox::new(&mut deliveries));
/// assert_eq!(deliveries, vec![(1, vec!['a', 'b', 'c']), (2, vec!['d', 'e'])]);
/// assert_eq!(leftover, Ok(vec!['f']));
/// ```
#[derive(Debug, Default, Clone)]
pub struct DemandDispatcher {
    /// `(demand, subscription)`, sorted by demand, largest first; FIFO among equal demands.
    demands: Vec<(usize, SubscriptionId)>,
    /// Demand requested upstream for consumers that have since cancelled.
    pending: usize,
    /// Sum of the demands in `demands`, saturating at `usize::MAX` (as every sum here does: the
    /// runtime keeps demand far below it, but the type takes any `usize`).
    total: usize,
    /// The largest ask expected; set from the first ask when not configured.
    max_demand: Option<usize>,
}

impl DemandDispatcher {
    /// A dispatcher with no consumers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A dispatcher that expects no ask above `max_demand` (it warns otherwise, as GenStage does).
    pub fn with_max_demand(max_demand: usize) -> Self {
        DemandDispatcher {
            max_demand: Some(max_demand),
            ..Self::default()
        }
    }

    /// Demand requested upstream on behalf of consumers that have left.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// `(demand, subscription)` pairs, largest demand first.
    pub fn demands(&self) -> &[(usize, SubscriptionId)] {
        &self.demands
    }

    fn remove(&mut self, sub: SubscriptionId) -> Option<usize> {
        let at = self.demands.iter().position(|&(_, s)| s == sub)?;
        let (demand, _) = self.demands.remove(at);
        self.total = self.total.saturating_sub(demand);
        Some(demand)
    }

    /// The first consumer, the one with the most demand, was sent `n <= demand` events. Its entry
    /// moves down behind every entry with at least its new demand.
    #[inline]
    fn serve_first(&mut self, n: usize) {
        let lowered = self.demands[0].0 - n;
        let to = 1 + self.demands[1..].partition_point(|&(d, _)| d >= lowered);
        self.demands[0].0 = lowered;
        if to > 1 {
            self.demands[..to].rotate_left(1);
        }
        self.total = self.total.saturating_sub(n);
    }
}

impl DemandDispatcher {
    /// A consumer subscribed with no demand yet; returns new upstream demand (always 0).
    ///
    /// # Errors
    ///
    /// The subscription is already registered.
    pub fn subscribe(&mut self, sub: SubscriptionId) -> Result<usize, DispatchError> {
        if self.demands.iter().any(|&(_, s)| s == sub) {
            return Err(DispatchError(format!(
                "subscription {sub} is already registered"
            )));
        }
        self.demands.push((0, sub));
        Ok(0)
    }

    /// A consumer left: its unmet demand becomes pending. Returns new upstream demand (always 0).
    pub fn cancel(&mut self, sub: SubscriptionId) -> usize {
        if let Some(demand) = self.remove(sub) {
            self.pending = self.pending.saturating_add(demand);
        }
        0
    }

    /// A consumer asked for `demand` more; returns the upstream demand not covered by pending.
    pub fn ask(&mut self, sub: SubscriptionId, demand: usize) -> usize {
        let Some(at) = self.demands.iter().position(|&(_, s)| s == sub) else {
            return 0;
        };
        let max = *self.max_demand.get_or_insert(demand);
        if demand > max {
            tracing::warn!(
                "GenStage producer DemandDispatcher expects a maximum demand of {max}; using \
                 different maximum demands will overload greedy consumers; give every consumer \
                 the same max_demand"
            );
        }
        self.total = self.total.saturating_add(demand);
        // Updated in place: the entry moves up past the entries its new demand exceeds, and stays
        // behind those it now equals (FIFO among equal demands). Every entry after it had no more
        // than its old demand, so it never moves down.
        let raised = self.demands[at].0.saturating_add(demand);
        let to = self.demands[..at].partition_point(|&(d, _)| d >= raised);
        self.demands[at].0 = raised;
        if to < at {
            self.demands[to..=at].rotate_right(1);
        }
        let absorbed = self.pending.min(demand);
        self.pending -= absorbed;
        demand - absorbed
    }
}

impl<T: Send + 'static> Dispatcher<T> for DemandDispatcher {
    fn subscribe(
        &mut self,
        sub: SubscriptionId,
        options: &DispatchOptions<T>,
    ) -> Result<usize, DispatchError> {
        if options.partition.is_some() || options.selector.is_some() {
            return Err(DispatchError(
                "a demand dispatcher takes neither a partition nor a selector: partitions need \
                 `Dispatch::partition`, selectors `Dispatch::broadcast`"
                    .to_owned(),
            ));
        }
        DemandDispatcher::subscribe(self, sub)
    }

    fn cancel(&mut self, sub: SubscriptionId) -> usize {
        DemandDispatcher::cancel(self, sub)
    }

    fn ask(&mut self, sub: SubscriptionId, demand: usize, _out: &mut Outbox<'_, T>) -> usize {
        DemandDispatcher::ask(self, sub, demand)
    }

    fn dispatch(
        &mut self,
        mut events: Vec<T>,
        out: &mut Outbox<'_, T>,
    ) -> Result<Vec<T>, DispatchError> {
        while !events.is_empty() {
            let Some(&(demand, sub)) = self.demands.first() else {
                break;
            };
            if demand == 0 {
                break;
            }
            let n = demand.min(events.len());
            let rest = if n == events.len() {
                Vec::new()
            } else {
                events.split_off(n)
            };
            out.send(sub, std::mem::replace(&mut events, rest));
            self.serve_first(n);
        }
        self.pending = self.pending.saturating_sub(events.len());
        Ok(events)
    }

    fn dispatch_whole(&mut self, len: usize) -> Option<SubscriptionId> {
        let &(demand, sub) = self.demands.first()?;
        if len == 0 || demand < len {
            return None;
        }
        self.serve_first(len);
        Some(sub)
    }

    fn capacity(&self) -> usize {
        self.total
    }

    fn consumers(&self) -> usize {
        self.demands.len()
    }
}
