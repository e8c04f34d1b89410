//! Fixtures shared by the integration tests: executors pointed at a local
//! base URL, accounts of each platform, contexts on a fixed clock.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use refresh_core::plugin::*;
use refresh_core::{ManualClock, ProxyUrl};
use refresh_providers::{DiscoveryTiming, HttpClients, ProvidersConfig};

/// The fixed "now" of every context (2030-01-01T00:00:00Z).
pub const NOW_SECS: i64 = 1_893_456_000;

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW_SECS, 0).unwrap()
}

/// The four built-in platforms.
pub const PLATFORMS: [Platform; 4] = [
    Platform::Anthropic,
    Platform::OpenAi,
    Platform::Gemini,
    Platform::Antigravity,
];

/// Discovery that neither waits nor retries for long: test runs on real
/// time must not wait for the 1/2/4 s backoffs.
pub fn quick_discovery() -> DiscoveryTiming {
    DiscoveryTiming {
        call_timeout: Duration::from_secs(5),
        onboard_polls: 3,
        onboard_interval: Duration::from_millis(1),
        attempts: 2,
        backoff: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(2),
        reserve: Duration::from_millis(500),
    }
}

/// Every upstream of every provider under `base`, with quick discovery.
pub fn config_at(base: &str) -> ProvidersConfig {
    let mut config = ProvidersConfig::default().with_base_url(base);
    config.gemini.discovery = quick_discovery();
    config.antigravity.discovery = quick_discovery();
    config
}

/// The executor of `platform` with `config` over `http`.
pub fn executor_with(
    platform: &Platform,
    config: ProvidersConfig,
    http: HttpClients,
) -> Arc<dyn RefreshExecutor> {
    match platform {
        Platform::Anthropic => refresh_providers::claude::executor(config.claude, http),
        Platform::OpenAi => refresh_providers::openai::executor(config.openai, http),
        Platform::Gemini => refresh_providers::gemini::executor(config.gemini, http),
        Platform::Antigravity => refresh_providers::antigravity::executor(config.antigravity, http),
        other => panic!("no executor for {other}"),
    }
}

/// The executor of `platform` with every URL under `base`.
pub fn executor_at(platform: &Platform, base: &str) -> Arc<dyn RefreshExecutor> {
    executor_with(platform, config_at(base), HttpClients::default())
}

/// An oauth account of `platform` presenting `refresh_token`, with the
/// non-token keys its executor needs (Gemini: code_assist with a project,
/// so no discovery runs unless a test removes it), and an unrelated key.
pub fn account(platform: &Platform, id: i64, refresh_token: &str) -> Account {
    let mut creds = Credentials::new()
        .with("access_token", format!("AT-old-{id}-Qm3Xv8Rt2Lp7"))
        .with("refresh_token", refresh_token)
        .with("intercept_warmup_requests", true);
    match platform {
        Platform::Gemini => {
            creds.insert("oauth_type", "code_assist");
            creds.insert("project_id", "stored-project");
        }
        Platform::Antigravity => {
            creds.insert("email", "ag@example.com");
        }
        _ => {}
    }
    Account::oauth(id, platform.clone(), creds)
}

/// `account` routed through `proxy`.
pub fn with_proxy(mut account: Account, proxy: &str) -> Account {
    account.proxy = Some(proxy.parse::<ProxyUrl>().unwrap());
    account
}

/// A context presenting `token` on a clock at [`now`], due in `timeout`.
pub fn ctx_for(token: &str, timeout: Duration) -> RefreshContext {
    RefreshContext::new(
        Secret::from(token),
        Arc::new(ManualClock::new(now())),
        Instant::now() + timeout,
    )
}

/// A context presenting `token`, due in 10 s.
pub fn ctx(token: &str) -> RefreshContext {
    ctx_for(token, Duration::from_secs(10))
}

/// A port nobody listens on.
pub fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Panics when `shown` contains any of `secrets`.
pub fn assert_hides(shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!shown.contains(secret), "leaked {secret:?} in: {shown}");
    }
}
