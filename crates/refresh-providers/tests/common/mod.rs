//! Fixtures shared by the integration tests: executors pointed at a local
//! base URL, accounts of each platform, contexts on a fixed clock, the
//! emulator's provider and token path of a platform, unsigned JWTs, a
//! captured `tracing` log, and local HTTP and SOCKS5 proxies.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use refresh_core::plugin::*;
use refresh_core::{ManualClock, ProxyUrl};
use refresh_providers::emulator::{EmulatedProvider, paths};
use refresh_providers::{DiscoveryTiming, HttpClients, ProvidersConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// Panics when a captured `log` or the `Debug`/`Display` texts in `shown`
/// contain any of `secrets`; the message gives a secret's length, never
/// the secret.
pub fn assert_never_shown(log: &str, shown: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log shows a secret ({} chars)",
            secret.len()
        );
        assert!(
            !shown.contains(secret.as_str()),
            "a Debug or Display shows a secret ({} chars)",
            secret.len()
        );
    }
}

/// The refresh token the error cases present: token-like, so any leak
/// shows.
pub const CLAIMED: &str = "RT-claimed-Wd2Kq8Ls5Nf1Xz9";

/// The emulated provider of `platform`.
pub fn emulated(platform: &Platform) -> EmulatedProvider {
    match platform {
        Platform::Anthropic => EmulatedProvider::Claude,
        Platform::OpenAi => EmulatedProvider::OpenAi,
        Platform::Gemini => EmulatedProvider::Gemini,
        _ => EmulatedProvider::Antigravity,
    }
}

/// The emulator's token endpoint of `platform`.
pub fn token_path(platform: &Platform) -> &'static str {
    match platform {
        Platform::Anthropic => paths::CLAUDE_TOKEN,
        Platform::OpenAi => paths::OPENAI_TOKEN,
        _ => paths::GOOGLE_TOKEN,
    }
}

/// An unsigned JWT with `claims` (the shape the emulator issues).
pub fn jwt(claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(&json!({"alg": "RS256", "typ": "JWT"})),
        enc(claims)
    )
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

static GLOBAL: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The capture of every TRACE event of this test binary, from every
    /// thread and every test, from the first call on. A process-wide
    /// subscriber, not a scoped one: a scoped (`set_default`) subscriber
    /// misses events whose callsite interest another test's thread cached
    /// first, which made log assertions flaky. Leak checks only get
    /// stricter for seeing other tests' events too.
    pub fn global() -> Self {
        GLOBAL
            .get_or_init(|| {
                let captured = Self::default();
                let writer = captured.clone();
                let subscriber = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::TRACE)
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish();
                tracing::subscriber::set_global_default(subscriber)
                    .expect("no other global subscriber in this test binary");
                captured
            })
            .clone()
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// What a test proxy saw.
#[derive(Default)]
pub struct Seen {
    pub tunnels: AtomicUsize,
    pub authorization: Mutex<Vec<String>>,
}

/// A tiny HTTP proxy on 127.0.0.1: `CONNECT host:port` opens a tunnel;
/// an absolute-form request (`POST http://host:port/path`) is relayed as
/// is to that host (HTTP/1.1 servers accept absolute-form targets). Each
/// counts as one tunnel.
pub async fn http_proxy() -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(http_tunnel(client, Arc::clone(&counter)));
        }
    });
    (url, seen)
}

async fn http_tunnel(mut client: TcpStream, seen: Arc<Seen>) {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if let Some(auth) = text.lines().find_map(|l| {
        l.strip_prefix("Proxy-Authorization: ")
            .or_else(|| l.strip_prefix("proxy-authorization: "))
    }) {
        seen.authorization.lock().unwrap().push(auth.to_owned());
    }
    let mut parts = text.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let authority = if method == "CONNECT" {
        target.to_owned()
    } else {
        target
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let Ok(mut upstream) = TcpStream::connect(&authority).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    seen.tunnels.fetch_add(1, Ordering::SeqCst);
    if method == "CONNECT" {
        let _ = client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await;
    } else if upstream.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads a SOCKS5 CONNECT request (after the method negotiation):
/// `(address type, host, port)` for an IPv4 address (1) or a name (3);
/// `None` for another address type.
pub async fn socks5_target(client: &mut TcpStream) -> std::io::Result<Option<(u8, String, u16)>> {
    let mut request = [0_u8; 4];
    client.read_exact(&mut request).await?;
    let host = match request[3] {
        1 => {
            let mut ip = [0_u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let mut len = [0_u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0_u8; len[0] as usize];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => return Ok(None),
    };
    let mut port = [0_u8; 2];
    client.read_exact(&mut port).await?;
    Ok(Some((request[3], host, u16::from_be_bytes(port))))
}
