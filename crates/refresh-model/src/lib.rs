//! A model-checked proof of refresh-core's cross-process refresh protocol
//! (the generation claim) and the counterexamples of the Go algorithm it
//! replaced. Dev-only: the tests run the checks; see the README for the
//! action → code map, the bounds and what the model does not cover.
//!
//! - [`protocol::Protocol`]: `RefreshFlow` over the ports' contracts, each
//!   port call one atomic action, with removable [`protocol::Protections`].
//! - [`go::GoAlgorithm`]: `SET NX` + plain `DEL`, fixed TTL, lock-free on a
//!   Redis error, blind row update.
//! - [`check`]: an exhaustive breadth-first check, whose counterexamples
//!   are therefore the shortest; [`trace`] prints one.

pub mod env;
pub mod go;
pub mod protocol;

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::hash::Hash;
use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Path};

/// The result of one breadth-first check.
pub struct Report<M: Model> {
    /// Distinct states visited.
    pub unique_states: usize,
    /// States generated, repeats included.
    pub total_states: usize,
    /// Deepest level reached.
    pub max_depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Property name → the shortest path that is its example (`sometimes`)
    /// or counterexample (`always`).
    pub discoveries: BTreeMap<&'static str, Path<M::State, M::Action>>,
}

impl<M: Model> Report<M> {
    /// Whether `property` has a discovery.
    pub fn found(&self, property: &str) -> bool {
        self.discoveries.contains_key(property)
    }

    /// One line: states, depth, time.
    pub fn summary(&self) -> String {
        format!(
            "{} unique states ({} generated), depth {}, {:.1} s",
            self.unique_states,
            self.total_states,
            self.max_depth,
            self.elapsed.as_secs_f64()
        )
    }
}

/// When a breadth-first check stops.
#[derive(Clone, Debug)]
pub enum Until {
    /// Every reachable state was visited.
    Exhausted,
    /// The first level where an `always` property fails (its
    /// counterexample is then among the shortest).
    FirstFailure,
    /// Each of these properties has a discovery (or the states ran out).
    Found(Vec<&'static str>),
}

/// Checks `model` breadth-first on `threads` threads until `until`. A
/// state that breaks an `always` property has no successors in these
/// models, so with one thread the counterexample recorded is at the first
/// level where one exists.
pub fn check<M>(model: M, threads: usize, until: Until) -> Report<M>
where
    M: Model + Send + Sync + 'static,
    M::State: Clone + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + PartialEq + Send + Sync + 'static,
{
    let started = Instant::now();
    let builder = model.checker().threads(threads);
    let builder = match until {
        Until::Exhausted => builder,
        Until::FirstFailure => builder.finish_when(HasDiscoveries::AnyFailures),
        Until::Found(names) => {
            builder.finish_when(HasDiscoveries::AllOf(names.into_iter().collect()))
        }
    };
    let checker = builder.spawn_bfs().join();
    Report {
        unique_states: checker.unique_state_count(),
        total_states: checker.state_count(),
        max_depth: checker.max_depth(),
        elapsed: started.elapsed(),
        discoveries: checker.discoveries().into_iter().collect(),
    }
}

/// The shortest counterexample to (or example of) `property`: breadth-first
/// checks bounded at depth 1, 2, ... up to `max_depth` (the checker keeps
/// overwriting a discovery with later ones, so the unbounded check's path
/// is not always the shortest). Returns the path and the last report.
#[allow(clippy::type_complexity)]
pub fn shortest<M>(
    model: M,
    property: &'static str,
    max_depth: usize,
) -> (Option<Path<M::State, M::Action>>, Report<M>)
where
    M: Model + Clone + Send + Sync + 'static,
    M::State: Clone + Hash + PartialEq + Send + Sync + 'static,
    M::Action: Clone + PartialEq + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut depth = 1;
    loop {
        let checker = model
            .clone()
            .checker()
            .target_max_depth(depth + 1)
            .finish_when(HasDiscoveries::AllOf([property].into_iter().collect()))
            .spawn_bfs()
            .join();
        let report = Report {
            unique_states: checker.unique_state_count(),
            total_states: checker.state_count(),
            max_depth: checker.max_depth(),
            elapsed: started.elapsed(),
            discoveries: checker.discoveries().into_iter().collect(),
        };
        let found = report.discoveries.get(property).cloned();
        if found.is_some() || depth >= max_depth {
            return (found, report);
        }
        depth += 1;
    }
}

/// A path as numbered lines: each action and the state it led to.
pub fn trace<S, A>(path: &Path<S, A>) -> String
where
    S: Clone + Display,
    A: Clone + Display,
{
    let steps = path.clone().into_vec();
    let mut out = String::new();
    let _ = writeln!(out, " 0. {:<40} {}", "(initial)", steps[0].0);
    for (i, pair) in steps.windows(2).enumerate() {
        if let Some(action) = &pair[0].1 {
            let _ = writeln!(
                out,
                "{:>2}. {:<40} {}",
                i + 1,
                action.to_string(),
                pair[1].0
            );
        }
    }
    out
}
