//! Prometheus metrics (feature `metrics`): a [`FlowObserver`] for the
//! events of the flow and the token provider, plus values read at scrape
//! time (in-process cache hits, request-path counters, store calls,
//! accounts by status, answered claims waiting to be applied).
//!
//! Labels are platform names, lock layers, fixed outcome names, store and
//! operation names, HTTP routes and status codes: never an account name,
//! an id or a token.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use refresh_core::{CycleReport, FlowObserver, Platform};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::RefreshStack;

/// Latency buckets, seconds: from a local call to a slow upstream.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metrics of one process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    refreshes: IntCounterVec,
    upstream_requests: IntCounterVec,
    upstream_latency: HistogramVec,
    lock_acquisitions: IntCounterVec,
    lock_contentions: IntCounterVec,
    lock_unavailable: IntCounterVec,
    lock_fallbacks: IntCounterVec,
    cache_lookups: IntCounterVec,
    waiter_latency: HistogramVec,
    request_path: IntCounterVec,
    store_calls: IntCounterVec,
    accounts: IntGaugeVec,
    claims_answered: IntGauge,
    background_cycles: IntCounterVec,
    background_cycle_duration: HistogramVec,
    background_accounts: IntCounterVec,
    background_last_cycle: IntGauge,
    http_requests: IntCounterVec,
    scrape_errors: IntCounterVec,
    /// Whether a lock layer failing falls to another (Redis over the
    /// database lease).
    layered: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered in a registry of its own.
    pub fn new() -> Self {
        let r = Registry::new();
        let inner = Inner {
            refreshes: counter(
                &r,
                "oauth_refresh_refreshes_total",
                "Runs of the refresh flow by platform and outcome (refreshed, recovered, still_fresh, held_elsewhere, or the failed stage).",
                &["platform", "outcome"],
            ),
            upstream_requests: counter(
                &r,
                "oauth_refresh_upstream_requests_total",
                "Token requests sent upstream by platform and outcome (ok or the error kind).",
                &["platform", "outcome"],
            ),
            upstream_latency: histogram(
                &r,
                "oauth_refresh_upstream_latency_seconds",
                "Latency of upstream token requests.",
                &["platform"],
            ),
            lock_acquisitions: counter(
                &r,
                "oauth_refresh_lock_acquisitions_total",
                "Refresh leases taken, by lock layer.",
                &["layer"],
            ),
            lock_contentions: counter(
                &r,
                "oauth_refresh_lock_contentions_total",
                "Lease attempts that found the lease held by another instance, by layer.",
                &["layer"],
            ),
            lock_unavailable: counter(
                &r,
                "oauth_refresh_lock_unavailable_total",
                "Lease attempts on a layer that could not be asked.",
                &["layer"],
            ),
            lock_fallbacks: counter(
                &r,
                "oauth_refresh_lock_fallbacks_total",
                "Lease attempts that fell from an unavailable layer to the next one.",
                &["from"],
            ),
            cache_lookups: counter(
                &r,
                "oauth_refresh_cache_lookups_total",
                "Token cache lookups by layer (process, redis) and result (hit, miss).",
                &["layer", "result"],
            ),
            waiter_latency: histogram(
                &r,
                "oauth_refresh_waiter_latency_seconds",
                "Time callers waited for a refresh held elsewhere, by result (hit: got a newer token).",
                &["platform", "result"],
            ),
            request_path: counter(
                &r,
                "oauth_refresh_request_path_total",
                "Request-path refresh counters by platform and event (requested, succeeded, failed, cancelled).",
                &["platform", "event"],
            ),
            store_calls: counter(
                &r,
                "oauth_refresh_store_calls_total",
                "Calls to the account repository (database) and the shared token cache (redis), by operation.",
                &["store", "op"],
            ),
            accounts: gauge_vec(
                &r,
                "oauth_refresh_accounts",
                "Accounts by status.",
                &["status"],
            ),
            claims_answered: gauge(
                &r,
                "oauth_refresh_recovery_records_pending",
                "Generation claims holding an upstream answer not yet applied to the account.",
            ),
            background_cycles: counter(
                &r,
                "oauth_refresh_background_cycles_total",
                "Background refresh cycles by result (complete, cancelled).",
                &["result"],
            ),
            background_cycle_duration: histogram(
                &r,
                "oauth_refresh_background_cycle_duration_seconds",
                "Duration of background refresh cycles.",
                &[],
            ),
            background_accounts: counter(
                &r,
                "oauth_refresh_background_accounts_total",
                "Accounts handled by background cycles, by result (listed, due, refreshed, skipped, failed, marked_error, corrupt, list_error).",
                &["result"],
            ),
            background_last_cycle: gauge(
                &r,
                "oauth_refresh_background_last_cycle_timestamp_seconds",
                "Unix time the last background cycle ended.",
            ),
            http_requests: counter(
                &r,
                "oauth_refresh_http_requests_total",
                "HTTP requests served, by route and status code.",
                &["route", "status"],
            ),
            scrape_errors: counter(
                &r,
                "oauth_refresh_scrape_errors_total",
                "Scrape-time reads that failed (the value shown is the last one read).",
                &["source"],
            ),
            layered: std::sync::atomic::AtomicBool::new(false),
            registry: r,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The observer to hand to the stack builder.
    pub fn observer(&self) -> Arc<dyn FlowObserver> {
        Arc::new(self.clone())
    }

    /// Tells the metrics whether the lock strategy is layered (Redis over
    /// the database lease), so an unavailable Redis counts as a fallback.
    pub fn set_layered(&self, layered: bool) {
        self.inner
            .layered
            .store(layered, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records one background cycle (the observer does this for every
    /// cycle of a stack built with [`observer`](Self::observer)).
    pub fn record_cycle(&self, report: &CycleReport, elapsed: Duration) {
        let i = &self.inner;
        let result = if report.cancelled {
            "cancelled"
        } else {
            "complete"
        };
        i.background_cycles.with_label_values(&[result]).inc();
        i.background_cycle_duration
            .with_label_values(&[] as &[&str])
            .observe(elapsed.as_secs_f64());
        for (name, value) in [
            ("listed", report.total),
            ("due", report.due),
            ("refreshed", report.refreshed),
            ("skipped", report.skipped),
            ("failed", report.failed),
            ("marked_error", report.marked_error),
            ("corrupt", report.corrupt),
            ("list_error", report.list_errors),
        ] {
            i.background_accounts
                .with_label_values(&[name])
                .inc_by(value);
        }
        i.background_last_cycle.set(chrono::Utc::now().timestamp());
    }

    /// Records one HTTP request (`route` is the route template, never the
    /// path with an id).
    pub fn record_http(&self, route: &str, status: u16) {
        self.inner
            .http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    /// Reads the scrape-time values from `stack` (database reads bounded by
    /// `timeout`) and renders everything in the Prometheus text format.
    pub async fn render(&self, stack: &RefreshStack, timeout: Duration) -> String {
        self.refresh_from(stack, timeout).await;
        let mut out = Vec::new();
        let families = self.inner.registry.gather();
        if TextEncoder::new().encode(&families, &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    async fn refresh_from(&self, stack: &RefreshStack, timeout: Duration) {
        let i = &self.inner;
        set_total(
            &i.cache_lookups.with_label_values(&["process", "hit"]),
            stack.tokens().local_hits(),
        );
        for (platform, snap) in stack.tokens().metrics().snapshot() {
            let p = platform.as_str();
            for (event, value) in [
                ("requested", snap.refresh_requests),
                ("succeeded", snap.refresh_successes),
                ("failed", snap.refresh_failures),
                ("cancelled", snap.cancellations),
            ] {
                set_total(&i.request_path.with_label_values(&[p, event]), value);
            }
        }
        for (store, op, calls) in stack.store_calls().snapshot() {
            set_total(&i.store_calls.with_label_values(&[store, op]), calls);
        }
        match tokio::time::timeout(timeout, stack.catalog().count_by_status(None)).await {
            Ok(Ok(counts)) => {
                for (status, n) in [
                    ("active", counts.active),
                    ("disabled", counts.disabled),
                    ("error", counts.error),
                ] {
                    i.accounts
                        .with_label_values(&[status])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            _ => i.scrape_errors.with_label_values(&["accounts"]).inc(),
        }
        // Answered claims are the only ones without an expiry: the count
        // is served by the `refresh_claims_expiry` index.
        use refresh_seaorm::entity::claim;
        let answered = claim::Entity::find()
            .filter(claim::Column::ExpiresAt.is_null())
            .count(stack.database().connection());
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(n)) => i.claims_answered.set(i64::try_from(n).unwrap_or(i64::MAX)),
            _ => i.scrape_errors.with_label_values(&["claims"]).inc(),
        }
    }
}

/// Moves a counter fed from an absolute total read at scrape time.
fn set_total(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

impl FlowObserver for Metrics {
    fn lock_acquired(&self, layer: &'static str) {
        self.inner
            .lock_acquisitions
            .with_label_values(&[layer])
            .inc();
    }

    fn lock_contended(&self, layer: &'static str) {
        self.inner
            .lock_contentions
            .with_label_values(&[layer])
            .inc();
    }

    fn lock_unavailable(&self, layer: &'static str) {
        let i = &self.inner;
        i.lock_unavailable.with_label_values(&[layer]).inc();
        if i.layered.load(std::sync::atomic::Ordering::Relaxed) && layer != "database" {
            i.lock_fallbacks.with_label_values(&[layer]).inc();
        }
    }

    fn upstream_call(&self, platform: &Platform, elapsed: Duration, outcome: &'static str) {
        let i = &self.inner;
        let p = platform.as_str();
        i.upstream_requests.with_label_values(&[p, outcome]).inc();
        i.upstream_latency
            .with_label_values(&[p])
            .observe(elapsed.as_secs_f64());
    }

    fn refresh_finished(&self, platform: &Platform, outcome: &'static str) {
        self.inner
            .refreshes
            .with_label_values(&[platform.as_str(), outcome])
            .inc();
    }

    fn shared_cache_lookup(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.inner
            .cache_lookups
            .with_label_values(&["redis", result])
            .inc();
    }

    fn process_cache_miss(&self) {
        self.inner
            .cache_lookups
            .with_label_values(&["process", "miss"])
            .inc();
    }

    fn background_cycle(&self, report: &CycleReport, elapsed: Duration) {
        self.record_cycle(report, elapsed);
    }

    fn waited(&self, platform: &Platform, waited: Duration, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.inner
            .waiter_latency
            .with_label_values(&[platform.as_str(), result])
            .observe(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observer_events_show_up_in_the_text_format_without_secrets() {
        let metrics = Metrics::new();
        metrics.set_layered(true);
        metrics.refresh_finished(&Platform::Anthropic, "refreshed");
        metrics.upstream_call(&Platform::OpenAi, Duration::from_millis(20), "ok");
        metrics.lock_unavailable("redis");
        metrics.record_http("/v1/accounts/{id}/access-token", 200);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&metrics.inner.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(
            r#"oauth_refresh_refreshes_total{outcome="refreshed",platform="anthropic"} 1"#
        ));
        assert!(text.contains(r#"oauth_refresh_lock_fallbacks_total{from="redis"} 1"#));
        assert!(text.contains("oauth_refresh_upstream_latency_seconds_bucket"));
    }
}
