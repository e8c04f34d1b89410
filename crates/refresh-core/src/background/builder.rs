//! [`BackgroundRefresherBuilder`].

use std::sync::Arc;

use super::{BackgroundConfig, BackgroundRefresher, Inner, RefreshListener};
use crate::error::ConfigError;
use crate::flow::RefreshFlow;
use crate::ports::ExecutorRegistry;
use crate::ports::TokenCache;

/// Builds a [`BackgroundRefresher`].
pub struct BackgroundRefresherBuilder {
    pub(super) flow: RefreshFlow,
    pub(super) executors: ExecutorRegistry,
    pub(super) cache: Option<Arc<dyn TokenCache>>,
    pub(super) listeners: Vec<Arc<dyn RefreshListener>>,
    pub(super) config: BackgroundConfig,
}

impl BackgroundRefresherBuilder {
    /// The shared cache to invalidate after a refresh.
    pub fn cache(mut self, cache: Arc<dyn TokenCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Adds a post-refresh listener.
    pub fn listener(mut self, listener: Arc<dyn RefreshListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// The configuration.
    pub fn config(mut self, config: BackgroundConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the refresher.
    ///
    /// # Errors
    /// [`ConfigError`] when the configuration is invalid.
    pub fn build(self) -> Result<BackgroundRefresher, ConfigError> {
        self.config.validate()?;
        Ok(BackgroundRefresher {
            inner: Arc::new(Inner {
                flow: self.flow,
                executors: self.executors,
                cache: self.cache,
                listeners: self.listeners,
                config: self.config,
            }),
        })
    }
}
