//! [`TokenProviderBuilder`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::local_cache::LocalCache;
use super::{ExecutorRegistry, ProviderInner, TokenMetrics, TokenProvider};
use crate::concurrency::SingleFlight;
use crate::domain::Platform;
use crate::flow::RefreshFlow;
use crate::policy::ProviderRefreshPolicy;
use crate::ports::TokenCache;

/// Builds a [`TokenProvider`].
pub struct TokenProviderBuilder {
    pub(super) flow: RefreshFlow,
    pub(super) executors: ExecutorRegistry,
    pub(super) shared: Option<Arc<dyn TokenCache>>,
    pub(super) policies: HashMap<Platform, ProviderRefreshPolicy>,
    pub(super) skew: Duration,
    pub(super) capacity: u64,
    pub(super) local_max_age: Duration,
}

impl TokenProviderBuilder {
    /// The cache shared by all instances (Redis in production).
    pub fn shared_cache(mut self, cache: Arc<dyn TokenCache>) -> Self {
        self.shared = Some(cache);
        self
    }

    /// Overrides the policy of one platform.
    pub fn policy(mut self, platform: Platform, policy: ProviderRefreshPolicy) -> Self {
        self.policies.insert(platform, policy);
        self
    }

    /// The refresh skew (default 3 min).
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Capacity of the in-process cache, in accounts (default 100 000).
    pub fn local_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long the in-process cache serves an entry before reading the
    /// account again (default 30 s), whatever the token's expiry. This
    /// bounds how long a change made by ANOTHER process without a shared
    /// cache (an operator's relogin, disable or removal from the CLI) goes
    /// unseen here; changes made through this process are seen at once.
    /// The warm path still touches no store within this age.
    pub fn local_max_age(mut self, age: Duration) -> Self {
        self.local_max_age = age;
        self
    }

    /// Builds the provider.
    pub fn build(self) -> TokenProvider {
        TokenProvider {
            inner: Arc::new(ProviderInner {
                flow: self.flow,
                executors: self.executors,
                shared: self.shared,
                local: LocalCache::new(self.capacity),
                policies: self.policies,
                skew: self.skew,
                local_max_age: self.local_max_age,
                metrics: TokenMetrics::default(),
                flights: Arc::new(SingleFlight::new()),
                by_id: Arc::new(SingleFlight::new()),
            }),
        }
    }
}
