//! Checks of a pipeline's wiring before it runs.

use std::collections::HashSet;

use crate::demand::DemandLimits;
use crate::dispatcher::MAX_PARTITIONS;
use crate::error::{DispatchSetupError, PipelineError};
use crate::names::{self, Naming};
use crate::options::{CancelMode, SubscribeOptions};

use super::{DispatchInfo, Edge, Pipeline, Role, StageEntry, StageId};

/// An edge's demand limits and cancel mode, from its `options` (already over its consumer's
/// defaults); `names` gives its producer's and consumer's names for the error.
pub(super) fn edge_terms(
    options: SubscribeOptions,
    names: impl FnOnce() -> (String, String),
) -> Result<(DemandLimits, CancelMode), PipelineError> {
    let limits = DemandLimits::from_options(&options).map_err(|error| {
        let (producer, consumer) = names();
        PipelineError::InvalidSubscription {
            producer,
            consumer,
            error,
        }
    })?;
    Ok((limits, options.cancel.unwrap_or_default()))
}

/// The partition `edge` takes of its producer, whose dispatcher is `info`, once its options fit
/// that dispatcher: a selector only if it broadcasts, a partition, in range, if and only if it
/// partitions. `consumer` names the edge's consumer for the error. Whether another edge has taken
/// the partition is the caller's to check.
pub(super) fn edge_partition(
    info: DispatchInfo,
    edge: &Edge,
    consumer: impl FnOnce() -> String,
) -> Result<Option<usize>, DispatchSetupError> {
    if edge.selected && !info.selects {
        return Err(DispatchSetupError::NotBroadcast {
            consumer: consumer(),
        });
    }
    match (info.partitions, edge.options.partition) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(DispatchSetupError::NotPartitioned {
            consumer: consumer(),
        }),
        (Some(_), None) => Err(DispatchSetupError::PartitionMissing {
            consumer: consumer(),
        }),
        (Some(partitions), Some(partition)) if partition >= partitions => {
            Err(DispatchSetupError::PartitionOutOfRange {
                consumer: consumer(),
                partition,
                partitions,
            })
        }
        (Some(_), Some(partition)) => Ok(Some(partition)),
    }
}

impl Pipeline {
    /// The stages' names made unique (see `names.rs`), in the order they were added.
    pub(super) fn unique_names(&self) -> Result<Vec<String>, PipelineError> {
        let requested: Vec<(&str, Naming)> = self
            .stages
            .iter()
            .map(|stage| (stage.name.as_str(), stage.naming))
            .collect();
        names::unique_names(&requested)
    }

    /// Makes the stages' names unique (see `names.rs`).
    pub(super) fn disambiguate_names(&mut self) -> Result<(), PipelineError> {
        let unique = self.unique_names()?;
        for (stage, name) in self.stages.iter_mut().zip(unique) {
            stage.name = name;
        }
        Ok(())
    }

    /// Marks these stages as the instances of one group of `pipeline!`, named `C[0]`, `C[1]`, ….
    pub(crate) fn mark_group(&mut self, stages: &[StageId]) {
        let Some(first) = stages.first() else {
            return;
        };
        for id in stages {
            if let (true, Some(stage)) = (id.pipeline == self.id, self.stages.get_mut(id.index)) {
                stage.naming.group = Some(first.index);
            }
        }
    }

    /// Checks the wiring and resolves each edge's demand limits and cancel mode.
    pub(super) fn validate(&self) -> Result<Vec<(DemandLimits, CancelMode)>, PipelineError> {
        let name = |i: usize| self.stages[i].name.clone();
        let out = self.edges_out();
        let mut fed = vec![false; self.stages.len()];
        for edge in &self.edges {
            fed[edge.consumer] = true;
        }
        for (index, stage) in self.stages.iter().enumerate() {
            let feeds = !out[index].is_empty();
            let fed = fed[index];
            // One that waits for consumers may start without: they come through the handle.
            if stage.role != Role::Consumer && !feeds && !stage.dispatch.waits {
                return Err(PipelineError::NoConsumer { stage: name(index) });
            }
            if stage.role != Role::Producer && !fed {
                return Err(PipelineError::NoProducer { stage: name(index) });
            }
        }
        if let Some(error) = self.stages.iter().find_map(StageEntry::unrebuildable) {
            return Err(error);
        }
        if let Some(cycle) = self.find_cycle(&out) {
            return Err(PipelineError::Cycle {
                stages: cycle.into_iter().map(name).collect(),
            });
        }
        self.check_dispatch(&out)?;
        self.edges
            .iter()
            .map(|edge| {
                edge_terms(
                    edge.options
                        .or(self.stages[edge.consumer].subscribe_defaults),
                    || (name(edge.producer), name(edge.consumer)),
                )
            })
            .collect()
    }

    /// Checks the subscriptions to each stage against its dispatcher: a partitioned stage has one
    /// consumer per partition (none at all is allowed of one that waits for consumers), and only a
    /// broadcast has selectors, and each of its consumers once.
    fn check_dispatch(&self, out: &[Vec<usize>]) -> Result<(), PipelineError> {
        for (index, stage) in self.stages.iter().enumerate() {
            let name = |i: usize| self.stages[i].name.clone();
            let fail = |error| PipelineError::InvalidDispatch {
                stage: name(index),
                error,
            };
            let info = stage.dispatch;
            match info.partitions {
                Some(0) => return Err(fail(DispatchSetupError::NoPartitions)),
                Some(partitions) if partitions > MAX_PARTITIONS => {
                    return Err(fail(DispatchSetupError::TooManyPartitions { partitions }))
                }
                _ => {}
            }
            if info.partitions.is_some() && !info.routes {
                return Err(fail(DispatchSetupError::NoPartitionFunction));
            }
            let mut takers: Vec<Option<usize>> = vec![None; info.partitions.unwrap_or(0)];
            let mut subscribed = HashSet::new();
            for edge in out[index].iter().map(|&edge| &self.edges[edge]) {
                if info.broadcasts && !subscribed.insert(edge.consumer) {
                    return Err(fail(DispatchSetupError::AlreadySubscribed {
                        consumer: name(edge.consumer),
                    }));
                }
                let taken = edge_partition(info, edge, || name(edge.consumer)).map_err(fail)?;
                let Some(partition) = taken else {
                    continue;
                };
                if let Some(first) = takers[partition] {
                    return Err(fail(DispatchSetupError::PartitionTaken {
                        consumer: name(edge.consumer),
                        partition,
                        taken_by: name(first),
                    }));
                }
                takers[partition] = Some(edge.consumer);
            }
            // A stage that waits for consumers and has none at the start keeps its events until
            // consumers come (see `WithoutConsumers::Wait`); one that has some must have them all.
            let waits_for_all = info.waits && out[index].is_empty();
            if let Some(partition) = takers
                .iter()
                .position(Option::is_none)
                .filter(|_| !waits_for_all)
            {
                return Err(fail(DispatchSetupError::PartitionVacant {
                    partition,
                    partitions: takers.len(),
                }));
            }
        }
        Ok(())
    }

    /// The edges out of each stage, by index, in the order they were added: looked up once, so
    /// that checking a pipeline takes time in proportion to its stages and edges (a group of
    /// thousands of consumers), not to their product.
    fn edges_out(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.stages.len()];
        for (index, edge) in self.edges.iter().enumerate() {
            out[edge.producer].push(index);
        }
        out
    }

    /// A cycle of subscriptions, if any, as the stages on it; `out` is [`edges_out`](Self::edges_out).
    fn find_cycle(&self, out: &[Vec<usize>]) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        let n = self.stages.len();
        let mut marks = vec![Mark::New; n];
        let successors = |i: usize| out[i].iter().map(|&edge| self.edges[edge].consumer);
        for root in 0..n {
            if marks[root] != Mark::New {
                continue;
            }
            // Iterative depth-first search; `path` holds the open stages.
            let mut path = vec![root];
            let mut iters = vec![successors(root)];
            marks[root] = Mark::Open;
            while let Some(iter) = iters.last_mut() {
                match iter.next() {
                    Some(next) if marks[next] == Mark::Open => {
                        let start = path.iter().position(|&s| s == next).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Some(next) if marks[next] == Mark::New => {
                        marks[next] = Mark::Open;
                        path.push(next);
                        iters.push(successors(next));
                    }
                    Some(_) => {}
                    None => {
                        iters.pop();
                        if let Some(done) = path.pop() {
                            marks[done] = Mark::Done;
                        }
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::{Dispatch, Partition};
    use crate::options::{ProducerOptions, WithoutConsumers};
    use crate::stage::{Consumer, Emit, Producer, StageResult};

    /// A producer that partitions into two when `partitioned`, and waits for consumers when told.
    struct Feed {
        without: WithoutConsumers,
        partitioned: bool,
    }

    impl Producer for Feed {
        type Output = u64;
        async fn handle_demand(&mut self, _: usize) -> StageResult<Emit<u64>> {
            Ok(Emit::more(Vec::new()))
        }
        fn dispatcher(&self) -> Dispatch<Self, u64> {
            if self.partitioned {
                Dispatch::partition(2)
            } else {
                Dispatch::demand()
            }
        }
        fn producer_options(&self) -> ProducerOptions {
            ProducerOptions::for_producer().without_consumers(self.without)
        }
    }

    impl Partition<u64> for Feed {
        fn partition(&self, event: &u64) -> Option<usize> {
            Some((event % 2) as usize)
        }
    }

    struct Sink;

    impl Consumer for Sink {
        type Input = u64;
        async fn handle_events(&mut self, _: Vec<u64>) -> StageResult<()> {
            Ok(())
        }
    }

    /// The checks of a pipeline of one feed, subscribed to by a sink on each of `partitions`
    /// (`None`: one sink, on no partition; `Some(&[])`: no sink).
    fn check(without: WithoutConsumers, partitions: Option<&[usize]>) -> Result<(), String> {
        let mut pipeline = Pipeline::new();
        let feed = pipeline.add_producer_named(
            "feed",
            Feed {
                without,
                partitioned: partitions.is_some(),
            },
        );
        match partitions {
            None => {
                let sink = pipeline.add_consumer(Sink);
                pipeline.subscribe(&feed, &sink);
            }
            Some(partitions) => {
                for &partition in partitions {
                    let sink = pipeline.add_consumer(Sink);
                    let options = SubscribeOptions::new().partition(partition);
                    pipeline.subscribe_with(&feed, &sink, options);
                }
            }
        }
        validated(&pipeline)
    }

    /// The checks' result, its error as the user reads it (`PipelineError` is not `PartialEq`).
    fn validated(pipeline: &Pipeline) -> Result<(), String> {
        pipeline
            .validate()
            .map(drop)
            .map_err(|error| error.to_string())
    }

    fn vacant(partition: usize) -> String {
        PipelineError::InvalidDispatch {
            stage: "feed".to_owned(),
            error: DispatchSetupError::PartitionVacant {
                partition,
                partitions: 2,
            },
        }
        .to_string()
    }

    #[test]
    fn only_a_stage_that_waits_may_start_without_consumers() {
        let lonely = PipelineError::NoConsumer {
            stage: "feed".to_owned(),
        }
        .to_string();
        let mut pipeline = Pipeline::new();
        pipeline.add_producer_named(
            "feed",
            Feed {
                without: WithoutConsumers::Stop,
                partitioned: false,
            },
        );
        assert_eq!(validated(&pipeline), Err(lonely));
        let mut pipeline = Pipeline::new();
        pipeline.add_producer_named(
            "feed",
            Feed {
                without: WithoutConsumers::Wait,
                partitioned: false,
            },
        );
        assert_eq!(validated(&pipeline), Ok(()));
        assert_eq!(check(WithoutConsumers::Stop, None), Ok(()));
        assert_eq!(check(WithoutConsumers::Wait, None), Ok(()));
    }

    #[test]
    fn a_partitioned_stage_that_waits_needs_all_its_partitions_taken_or_none() {
        assert_eq!(
            check(WithoutConsumers::Stop, Some(&[])),
            Err(PipelineError::NoConsumer {
                stage: "feed".to_owned()
            }
            .to_string())
        );
        assert_eq!(check(WithoutConsumers::Wait, Some(&[])), Ok(()));
        assert_eq!(check(WithoutConsumers::Wait, Some(&[0])), Err(vacant(1)));
        assert_eq!(check(WithoutConsumers::Wait, Some(&[1])), Err(vacant(0)));
        assert_eq!(check(WithoutConsumers::Stop, Some(&[0])), Err(vacant(1)));
        assert_eq!(check(WithoutConsumers::Wait, Some(&[0, 1])), Ok(()));
    }
}
