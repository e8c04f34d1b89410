//! Core's lock and token-cache conformance suites against a real
//! `redis-server` and a real 3-master Redis Cluster.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Deployment, backend, delete_prefix};
use refresh_core::ports::{RefreshLock, TokenCache};
use refresh_core::testing::conformance::{RealTime, refresh_lock_suite, token_cache_suite};

const TIME: RealTime = RealTime {
    short_ttl: Duration::from_millis(400),
};

async fn lock_suite(deployment: Deployment) {
    let redis = backend(deployment, "lock-suite").await;
    let prefix = redis.config().key_prefix.clone();
    let make = || {
        let redis = redis.clone();
        async move { Arc::new(redis.lock()) as Arc<dyn RefreshLock> }
    };
    refresh_lock_suite(make, &TIME).await;
    delete_prefix(deployment, &prefix).await;
}

async fn cache_suite(deployment: Deployment) {
    // A fresh prefix per cache: the suite expects every cache to start
    // empty.
    let mut prefixes = Vec::new();
    let made = std::sync::Mutex::new(&mut prefixes);
    let make = || {
        let redis = backend(deployment, "cache-suite");
        async {
            let redis = redis.await;
            made.lock().unwrap().push(redis.config().key_prefix.clone());
            Arc::new(redis.token_cache()) as Arc<dyn TokenCache>
        }
    };
    token_cache_suite(make, &TIME).await;
    for prefix in prefixes {
        delete_prefix(deployment, &prefix).await;
    }
}

on_both!(
    lock_conformance_on_a_single_server,
    lock_conformance_on_a_three_master_cluster,
    lock_suite
);
on_both!(
    token_cache_conformance_on_a_single_server,
    token_cache_conformance_on_a_three_master_cluster,
    cache_suite
);
