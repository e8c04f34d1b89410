//! [`ExecutorRegistry`]: the executors by platform.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::Platform;
use crate::ports::RefreshExecutor;

/// The executors known to a deployment, one per platform. Registering a
/// second executor for a platform replaces the first.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: HashMap<Platform, Arc<dyn RefreshExecutor>>,
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an executor under its own platform.
    pub fn with(mut self, executor: Arc<dyn RefreshExecutor>) -> Self {
        self.register(executor);
        self
    }

    /// Adds an executor under its own platform.
    pub fn register(&mut self, executor: Arc<dyn RefreshExecutor>) {
        self.executors.insert(executor.platform(), executor);
    }

    /// The executor of a platform.
    pub fn get(&self, platform: &Platform) -> Option<&Arc<dyn RefreshExecutor>> {
        self.executors.get(platform)
    }

    /// The platforms served.
    pub fn platforms(&self) -> impl Iterator<Item = &Platform> {
        self.executors.keys()
    }

    /// The largest minimum window of any executor (the background refresher
    /// lists accounts due within `max(window, this)`).
    pub fn max_min_window(&self) -> std::time::Duration {
        self.executors
            .values()
            .map(|e| e.min_window())
            .max()
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for ExecutorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.executors.keys()).finish()
    }
}
