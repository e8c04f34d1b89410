//! `serve`: the HTTP token sidecar on axum.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/accounts/{id}/access-token` | `{"access_token", "expires_at", "token_type"}` |
//! | `POST /v1/accounts/{id}/refresh[?force=true]` | `{"outcome", "account"}` |
//! | `GET /v1/accounts[?platform=&status=&after=&limit=]` | `{"accounts": [...], "next_after"}` |
//! | `GET /v1/accounts/{id}` | the account, without secrets |
//! | `POST /v1/logins` | `{"session_id", "authorize_url", "expires_at"}` (201) |
//! | `POST /v1/logins/{session_id}/complete` | the new account, without secrets (201) |
//! | `GET /healthz` | liveness |
//! | `GET /readyz` | database (and Redis) reachable |
//! | `GET /metrics` | Prometheus text |
//! | `GET /`, `/accounts`, `/login`, ... | the status page (see [`ui`]) |

mod api_error;
mod auth;
mod logins;
mod routes;
mod ui;

pub(crate) use ui::UiSection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use refresh_facade::RefreshStack;
use refresh_facade::events::{EventRecorder, Observers};
use refresh_facade::metrics::Metrics;
use tracing::{info, warn};

use self::api_error::ApiError;
use self::auth::ApiKeys;
use crate::config::Loaded;
use crate::error::CliError;
use crate::keys::Missing;
use crate::output;

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) stack: RefreshStack,
    pub(crate) metrics: Metrics,
    pub(crate) keys: ApiKeys,
    /// The status page.
    pub(crate) ui: ui::UiState,
}

type Shared = Arc<AppState>;

/// The router.
pub(crate) fn router(state: Shared) -> Router {
    let v1 = Router::new()
        .route("/accounts", get(routes::list_accounts))
        .route("/accounts/{id}", get(routes::show_account))
        .route("/accounts/{id}/access-token", get(routes::access_token))
        .route("/accounts/{id}/refresh", post(routes::refresh))
        .route("/logins", post(logins::begin))
        .route("/logins/{session_id}/complete", post(logins::complete))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_key,
        ))
        .fallback(routes::not_found);
    Router::new()
        .nest("/v1", v1)
        .merge(ui::routes(state.ui.config.enabled))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_body))
        // Outside the routes, so fallbacks (404, 405) and refusals carry
        // the security headers too; it sets no content type.
        .layer(middleware::from_fn(ui::headers::security_headers))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_request,
        ))
        .with_state(state)
}

/// The largest request body accepted (no route reads one today).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The shortest API key `serve` accepts.
const MIN_API_KEY_CHARS: usize = 16;

/// Refuses a declared body over [`MAX_BODY_BYTES`] before any handler
/// runs (413, JSON).
async fn limit_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Accepts connections until `shutdown`, each served by hyper with a
/// bound on reading a request's headers (a client trickling them in, a
/// slowloris, is disconnected), then lets open requests finish.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
    header_read_timeout: Duration,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_read_timeout);
                    let connection =
                        graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                // Out of descriptors, or a connection aborted before
                // accept: keep serving, without spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn require_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if !state.keys.is_empty() {
        let header = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !state.keys.accepts(header) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

async fn count_request(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .record_http(&route, response.status().as_u16());
    response
}

/// `serve`.
pub(crate) async fn run(
    loaded: &Loaded,
    worker: bool,
    insecure_loopback: bool,
) -> Result<(), CliError> {
    let c = &loaded.config;
    let addr: SocketAddr = c.serve.listen.trim().parse().map_err(|_| {
        CliError::config(
            "configuration: key `serve.listen`: expected IP:PORT, such as 127.0.0.1:8080",
        )
    })?;
    if let Some(index) = c
        .serve
        .api_keys
        .iter()
        .position(|k| k.expose().chars().count() < MIN_API_KEY_CHARS)
    {
        return Err(CliError::config(format!(
            "configuration: key `serve.api_keys`: key {} is shorter than {MIN_API_KEY_CHARS} characters; use a random key of at least {MIN_API_KEY_CHARS} (e.g. `openssl rand -hex 32`)",
            index + 1
        )));
    }
    if c.serve.api_keys.is_empty() {
        if !insecure_loopback {
            return Err(CliError::config(
                "serve needs API keys: set serve.api_keys (or OAUTH_REFRESH_SERVE__API_KEYS), or pass --insecure-loopback with a loopback --listen address",
            ));
        }
        if !addr.ip().is_loopback() {
            return Err(CliError::config(format!(
                "--insecure-loopback serves without API keys only on a loopback address, not {addr}"
            )));
        }
    }
    let metrics = Metrics::new();
    let recorder = EventRecorder::new();
    let observer = Observers(vec![metrics.observer(), recorder.observer()]);
    let (stack, _) =
        crate::stack::build(loaded, false, Missing::Fail, Some(Arc::new(observer))).await?;
    metrics.set_layered(stack.has_redis());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::with(format!("cannot listen on {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::with("cannot read the listening address", e))?;
    let keys = ApiKeys::new(&c.serve.api_keys);
    if keys.is_empty() {
        warn!(%local, "serving /v1 WITHOUT API keys (--insecure-loopback)");
    }
    let state = Arc::new(AppState {
        stack: stack.clone(),
        metrics: metrics.clone(),
        keys,
        ui: ui::UiState::new(
            &c.serve.api_keys,
            Arc::new(stack.database().event_log()),
            recorder.clone(),
            c.serve.ui.clone(),
        ),
    });
    let shutdown = crate::shutdown::on_signal();
    let events = Arc::new(stack.database().event_log());
    let _recorder = recorder.start(events, c.serve.ui.retention(), shutdown.clone());
    let worker = worker
        .then(|| crate::worker::spawn(stack.clone(), shutdown.clone(), c.background.interval));
    let mut server = tokio::spawn(accept_loop(
        listener,
        router(state),
        shutdown.clone(),
        c.serve.header_read_timeout,
    ));
    info!(%local, worker = worker.is_some(), redis = stack.has_redis(), "serving");
    output::print_line(&format!("listening on http://{local}"));

    let mut server_done = false;
    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        _ = &mut server => {
            server_done = true;
            if !shutdown.is_cancelled() {
                return Err(CliError::new("the HTTP server stopped"));
            }
        }
    }
    let grace = c.shutdown_grace();
    let deadline = Instant::now() + grace;
    if !server_done && tokio::time::timeout(grace, &mut server).await.is_err() {
        warn!("requests still open when the shutdown grace period ended; closing them");
        server.abort();
    }
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    crate::worker::finish(&stack, left).await
}
