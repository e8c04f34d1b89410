//! [`HttpClients`]: one pooled `reqwest::Client` per distinct proxy.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use refresh_core::ProviderError;
use refresh_core::domain::{ProxyScheme, ProxyUrl};
use reqwest::header::{CONTENT_TYPE, DATE, RETRY_AFTER};
use tokio::time::Instant;

use super::body::read_capped;
use super::config::HttpConfig;
use super::request::{HttpResponse, Outgoing, RequestBody};
use super::transport_error::{Phase, map_transport_error};

/// The HTTP clients of the executors: one pooled `reqwest::Client` (rustls,
/// no OpenSSL) per distinct account proxy, built on first use and reused
/// across refreshes, bounded in number ([`HttpConfig::max_clients`]).
///
/// Proxies fail closed: a client for a proxy routes every request through
/// it (environment proxy variables are ignored, and so is `NO_PROXY`), and
/// a proxy the client cannot use is a
/// [`ProviderError::Configuration`] before anything is sent, never a
/// direct connection. An account without a proxy connects directly, again
/// ignoring proxy environment variables.
///
/// Cloning is cheap and shares the pool: [`register_all`](crate::register_all)
/// gives the four executors one pool.
#[derive(Clone)]
pub struct HttpClients {
    inner: Arc<Inner>,
}

struct Inner {
    config: HttpConfig,
    /// Keyed by the exposed proxy URL ("" = direct). The key holds the
    /// proxy password, so this map is never formatted.
    clients: moka::sync::Cache<String, reqwest::Client>,
    built: AtomicU64,
}

impl HttpClients {
    /// An empty pool with `config`.
    pub fn new(config: HttpConfig) -> Self {
        // Clamped as `HttpConfig::validate` bounds them: moka refuses idle
        // times past 1000 years, and a pool must hold one client.
        let clients = moka::sync::Cache::builder()
            .max_capacity(config.max_clients.max(1))
            .time_to_idle(
                config
                    .client_idle_timeout
                    .clamp(Duration::from_secs(1), Duration::from_secs(30 * 24 * 3600)),
            )
            .build();
        Self {
            inner: Arc::new(Inner {
                config,
                clients,
                built: AtomicU64::new(0),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// How many clients were built since the pool was made: one per
    /// distinct proxy while they stay pooled, however many refreshes ran.
    pub fn clients_built(&self) -> u64 {
        self.inner.built.load(Ordering::Relaxed)
    }

    /// The pooled client of `proxy` (`None`: direct), built on first use.
    fn client(&self, proxy: Option<&ProxyUrl>) -> Result<reqwest::Client, ProviderError> {
        let key = proxy.map_or_else(String::new, |p| p.expose().to_owned());
        self.inner
            .clients
            .try_get_with(key, || {
                let client = build_client(&self.inner.config, proxy)?;
                self.inner.built.fetch_add(1, Ordering::Relaxed);
                Ok(client)
            })
            .map_err(|e: Arc<ProviderError>| (*e).clone())
    }

    /// Sends `out` and reads its response under the size cap. The call is
    /// bounded by `out.timeout` and by `deadline`, whichever comes first.
    ///
    /// # Errors
    /// [`ProviderError::Configuration`] for an unusable proxy or request,
    /// [`ProviderError::NotSent`] when the connection could not be made
    /// (or the deadline had already passed), [`ProviderError::Ambiguous`]
    /// for a failure after the request may have been written (timeout,
    /// reset, a body cut short).
    pub(crate) async fn send(
        &self,
        out: Outgoing<'_>,
        deadline: Instant,
    ) -> Result<HttpResponse, ProviderError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ProviderError::transport(
                false,
                "the refresh deadline passed before the request was sent",
            ));
        }
        let client = self.client(out.proxy)?;
        let url = reqwest::Url::parse(out.url).map_err(|e| ProviderError::Configuration {
            // The URL itself is not shown: it is configuration, but may
            // carry credentials in its user info.
            reason: format!("invalid upstream URL ({e})"),
        })?;
        let mut request = client
            .request(out.method, url)
            .timeout(out.timeout.min(remaining));
        for (name, value) in out.headers {
            request = request.header(name, value);
        }
        request = match out.body {
            RequestBody::Empty => request,
            RequestBody::Json(body) => request.header(CONTENT_TYPE, "application/json").body(body),
            RequestBody::Form(body) => request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| map_transport_error(&e, Phase::Send))?;
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (retry_after, date) = (header(RETRY_AFTER), header(DATE));
        let body = read_capped(&mut response, self.inner.config.max_body_bytes)
            .await
            .map_err(|e| map_transport_error(&e, Phase::Body))?;
        Ok(HttpResponse {
            status,
            retry_after,
            date,
            body,
        })
    }
}

impl Default for HttpClients {
    fn default() -> Self {
        Self::new(HttpConfig::default())
    }
}

impl fmt::Debug for HttpClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClients")
            .field("config", &self.inner.config)
            .field("pooled", &self.inner.clients.entry_count())
            .field("built", &self.clients_built())
            .finish()
    }
}

/// A client routing everything through `proxy`, or direct without one.
fn build_client(
    config: &HttpConfig,
    proxy: Option<&ProxyUrl>,
) -> Result<reqwest::Client, ProviderError> {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(config.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(std::time::Duration::from_secs(60));
    let builder = match proxy {
        None => builder.no_proxy(),
        Some(proxy) => {
            // REFERENCE §2.1: socks5 is upgraded to socks5h, so host names
            // are resolved by the proxy (no local DNS lookup leaks them).
            let url = match proxy.scheme() {
                ProxyScheme::Socks5 => proxy.expose().replacen("socks5://", "socks5h://", 1),
                _ => proxy.expose().to_owned(),
            };
            let unusable = || ProviderError::Configuration {
                reason: format!(
                    "the account's {} proxy cannot be used by the HTTP client",
                    proxy.scheme().as_str()
                ),
            };
            // hyper-util reads the proxy back as an `http::Uri` and, when
            // that fails, intercepts nothing: the request would go direct.
            // Refuse what it cannot read (fail closed, REFERENCE defect 16).
            if url.parse::<http::Uri>().is_err() {
                return Err(unusable());
            }
            let proxy = reqwest::Proxy::all(url).map_err(|_| unusable())?;
            builder.proxy(proxy)
        }
    };
    builder.build().map_err(|e| ProviderError::Configuration {
        reason: format!(
            "the HTTP client cannot be built: {}",
            super::transport_error::root_cause(&e)
        ),
    })
}
